# Serving image: the API and the built UI on one port, non-root. Two targets of one build:
#   docker build -f docker/app.Dockerfile -t vessel-lightning-app .                         # CPU (default)
#   docker build -f docker/app.Dockerfile --target gpu -t vessel-lightning-app-gpu .        # one NVIDIA GPU
#   docker run -p 8000:8000 -e MLFLOW_TRACKING_URI=http://mlflow:5000 vessel-lightning-app
#   docker run --gpus all -p 8000:8000 -e MLFLOW_TRACKING_URI=http://mlflow:5000 vessel-lightning-app-gpu
# The same install commands as CI (Makefile `install`): torch/torchvision pinned, the rest from constraints.txt.
# PyPI's torch wheels carry the CUDA runtime and cuDNN, so the GPU target needs only the host's NVIDIA driver and
# the NVIDIA container toolkit; it differs from the CPU target in its environment alone.

# --- stage 1: the Next.js static export -------------------------------------------------------------
FROM node:20-bookworm-slim AS ui
WORKDIR /src/ui
ENV NEXT_TELEMETRY_DISABLED=1
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build

# --- stage 2: the Python runtime, shared by both targets -------------------------------------------
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

# --- target gpu: CUDA, half precision, dynamic batching ---------------------------------------------
# VESSEL_DEVICE=cuda makes a container started without a GPU stop at once with a clear error (not serve on the CPU).
FROM runtime AS gpu
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    VESSEL_DEVICE=cuda \
    VESSEL_PRECISION=auto \
    VESSEL_BATCHING=auto

# --- target cpu (the default: the last stage) --------------------------------------------------------
FROM runtime AS cpu
ENV VESSEL_DEVICE=cpu
