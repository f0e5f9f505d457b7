# Training image (PyTorch with CUDA), for a GPU host or, slower, a CPU one:
#   docker build -f docker/train.Dockerfile -t vessel-lightning-train .
#   docker run --gpus all --read-only --tmpfs /tmp --tmpfs /home/vessel -v /data:/data:ro -v runs:/runs \
#     -e MLFLOW_TRACKING_URI=http://mlflow:5000 vessel-lightning-train \
#     vessel-train data=chase_db1 trainer=gpu model/encoder=b3 register=true registry.alias=champion
# PyPI's torch wheels carry the CUDA runtime and cuDNN, so the host needs only the NVIDIA driver (NVIDIA Container
# Toolkit). The lines down to the package install are the same as docker/app.Dockerfile's `torch` stage, so the
# two images share those layers (one copy of PyTorch and CUDA on disk); keep them identical.
# Build arguments as in docker/app.Dockerfile: PYTHON_IMAGE, PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS,
# VERSION and GIT_COMMIT. Data is mounted (read-only is enough: prepared copies go under /runs), never baked in.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

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

FROM torch AS train
ENV VESSEL_DATA_DIR=/data \
    VESSEL_RUNS_DIR=/runs \
    HF_HUB_OFFLINE=1
RUN mkdir -p /runs /data && chown vessel:vessel /runs
USER 10001
# Hydra's job folders, prepared data sets and checkpoints: a volume keeps them.
VOLUME ["/runs"]
CMD ["vessel-train", "--help"]
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="vessel-lightning-train" \
      org.opencontainers.image.description="Vessel segmentation training (Lightning + Hydra + MLflow), PyTorch with CUDA" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
