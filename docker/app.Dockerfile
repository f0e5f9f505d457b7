# Serving image: the API and the built UI on one port, as uid 10001. Two targets of one build:
#   docker build -f docker/app.Dockerfile -t vessel-lightning-app .                      # CPU (the default)
#   docker build -f docker/app.Dockerfile --target gpu -t vessel-lightning-app-gpu .     # one NVIDIA GPU
#   docker run -p 8000:8000 -e MLFLOW_TRACKING_URI=http://mlflow:5000 vessel-lightning-app
#   docker run --gpus all -p 8000:8000 -e MLFLOW_TRACKING_URI=http://mlflow:5000 vessel-lightning-app-gpu
# `make docker` builds every image (and, where Docker Hub cannot be reached, the base images: docker/bases.sh).
# The CPU target installs the `serve` extra alone: ONNX Runtime and OpenVINO run the registered network, with no
# PyTorch and no CUDA wheels. The GPU target adds PyTorch from PyPI (its wheels carry the CUDA runtime and cuDNN,
# so the host needs only the NVIDIA driver and the NVIDIA container toolkit), like the training image, whose
# first steps are these same lines (docker/train.Dockerfile): the two share those layers.
# Build arguments: PYTHON_IMAGE / NODE_IMAGE (the bases), PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS (a
# PyPI mirror or wheelhouse behind a firewall: URLs without credentials, they stay in the image's history),
# VERSION and GIT_COMMIT (the OCI labels). The image holds no data, model or secret; run it with a read-only root
# file system and writable /tmp, $HOME and $VESSEL_CACHE_DIR (docker/compose.yaml does).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# --- the Next.js static export -----------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS ui
WORKDIR /src/ui
ENV NEXT_TELEMETRY_DISABLED=1
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build

# --- Python and the user, shared by every target -----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/vessel \
    VESSEL_CACHE_DIR=/cache \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --create-home --home-dir /home/vessel --uid 10001 --user-group vessel \
    && mkdir -p /cache && chown vessel:vessel /cache
WORKDIR /srv/vessel

# --- PyTorch with CUDA and the package with its training and serving extras (also docker/train.Dockerfile) ---
FROM python AS torch
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml constraints.txt ./
# The dependencies from a skeleton of the package first, so a code (or README) change rebuilds only the layers
# below this one.
RUN mkdir -p vessel_lightning/plugins/hydra_plugins app conf \
    && touch README.md vessel_lightning/__init__.py app/__init__.py \
    && pip install -c constraints.txt ".[train,serve]" \
    && pip uninstall -y vessel-lightning && rm -rf README.md vessel_lightning app conf
COPY README.md ./
COPY vessel_lightning/ vessel_lightning/
COPY conf/ conf/
COPY app/ app/
RUN pip install --no-deps .

# --- target gpu: CUDA, half precision, dynamic batching ----------------------------------------------------
# VESSEL_DEVICE=cuda makes a container started without a GPU stop at once with a clear error (not serve on the CPU).
FROM torch AS gpu
COPY --from=ui /src/ui/out/ /srv/vessel/ui/out/
ENV VESSEL_HOST=0.0.0.0 \
    VESSEL_PORT=8000 \
    VESSEL_UI_DIR=/srv/vessel/ui/out \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    VESSEL_DEVICE=cuda \
    VESSEL_PRECISION=auto \
    VESSEL_BATCHING=auto
USER 10001
EXPOSE 8000
# Liveness on whatever port VESSEL_PORT names (GET /ready tells whether a model is loaded).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('VESSEL_PORT', '8000'), timeout=4).status != 200)"]
CMD ["vessel-serve"]
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="vessel-lightning-app-gpu" \
      org.opencontainers.image.description="Vessel segmentation API and browser UI on an NVIDIA GPU" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"

# --- target cpu (the default: the last stage): ONNX Runtime / OpenVINO, no PyTorch -------------------------
FROM python AS cpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
COPY pyproject.toml constraints.txt ./
# The dependencies from a skeleton of the package first, so a code (or README) change rebuilds only the layers
# below this one.
RUN mkdir -p vessel_lightning/plugins/hydra_plugins app conf \
    && touch README.md vessel_lightning/__init__.py app/__init__.py \
    && pip install -c constraints.txt ".[serve]" \
    && pip uninstall -y vessel-lightning && rm -rf README.md vessel_lightning app conf
COPY README.md ./
COPY vessel_lightning/ vessel_lightning/
COPY conf/ conf/
COPY app/ app/
RUN pip install --no-deps .
COPY --from=ui /src/ui/out/ /srv/vessel/ui/out/
ENV VESSEL_HOST=0.0.0.0 \
    VESSEL_PORT=8000 \
    VESSEL_UI_DIR=/srv/vessel/ui/out \
    VESSEL_DEVICE=cpu
USER 10001
EXPOSE 8000
# Liveness on whatever port VESSEL_PORT names (GET /ready tells whether a model is loaded).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('VESSEL_PORT', '8000'), timeout=4).status != 200)"]
CMD ["vessel-serve"]
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="vessel-lightning-app" \
      org.opencontainers.image.description="Vessel segmentation API and browser UI on the CPU" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
