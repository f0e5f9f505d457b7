# The MLflow tracking server of docker/compose.yaml, as uid 10001: the project's pinned MLflow and psycopg2 for a
# PostgreSQL backend store; artifacts on a volume, served through the server (--serve-artifacts).
#   docker build -f docker/mlflow.Dockerfile -t vessel-lightning-mlflow .
#   docker run -e MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://mlflow@postgres:5432/mlflow \
#     -e PGPASSWORD_FILE=/run/secrets/postgres_password -v artifacts:/mlflow/artifacts vessel-lightning-mlflow
# Settings are MLflow's own variables (MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, MLFLOW_HOST,
# MLFLOW_PORT, MLFLOW_SERVER_ALLOWED_HOSTS); PGPASSWORD_FILE names a file holding the database password.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/mlflow \
    MLFLOW_HOST=0.0.0.0 \
    MLFLOW_PORT=5000 \
    MLFLOW_BACKEND_STORE_URI=sqlite:////mlflow/db/mlflow.db \
    MLFLOW_ARTIFACTS_DESTINATION=/mlflow/artifacts \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
WORKDIR /mlflow
COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt mlflow psycopg2-binary \
    && rm /tmp/constraints.txt \
    && useradd --create-home --home-dir /home/mlflow --uid 10001 --user-group mlflow \
    && mkdir -p /mlflow/db /mlflow/artifacts && chown -R mlflow:mlflow /mlflow
COPY docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint.sh
USER 10001
EXPOSE 5000

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MLFLOW_PORT', '5000'), timeout=4).status != 200)"]
ENTRYPOINT ["mlflow-entrypoint.sh"]
CMD ["mlflow", "server", "--serve-artifacts"]
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="vessel-lightning-mlflow" \
      org.opencontainers.image.description="MLflow tracking server for vessel-lightning (PostgreSQL or SQLite store, served artifacts)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
