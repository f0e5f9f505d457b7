# Serving image: the API and the built UI on one port, CPU only, non-root.
#   docker build -f docker/app.Dockerfile -t vessel-lightning-app .
#   docker run -p 8000:8000 -e MLFLOW_TRACKING_URI=http://mlflow:5000 vessel-lightning-app
# The same install commands as CI (Makefile `install`): torch/torchvision pinned, the rest from constraints.txt.

# --- stage 1: the Next.js static export -------------------------------------------------------------
FROM node:20-bookworm-slim AS ui
WORKDIR /src/ui
ENV NEXT_TELEMETRY_DISABLED=1
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build

# --- stage 2: the Python runtime --------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VESSEL_HOST=0.0.0.0 \
    VESSEL_PORT=8000 \
    VESSEL_UI_DIR=/srv/vessel/ui/out \
    VESSEL_RUNS_DIR=/data/runs
WORKDIR /srv/vessel
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml constraints.txt README.md ./
COPY vessel_lightning/ vessel_lightning/
COPY conf/ conf/
COPY app/ app/
RUN pip install -c constraints.txt ".[serve]"
COPY --from=ui /src/ui/out/ /srv/vessel/ui/out/
RUN useradd --create-home --uid 10001 vessel && mkdir -p /data/runs && chown -R vessel /data
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
CMD ["vessel-serve"]
