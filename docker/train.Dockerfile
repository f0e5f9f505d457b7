# Training image for a GPU host:
#   docker build -f docker/train.Dockerfile -t vessel-lightning-train .
#   docker run --gpus all -v /data:/data -e VESSEL_DATA_DIR=/data -e MLFLOW_TRACKING_URI=http://mlflow:5000 \
#     vessel-lightning-train vessel-train data=chase_db1 trainer=gpu model/encoder=b3
# PyPI's torch 2.14.1 wheels carry the CUDA runtime and cuDNN (nvidia-* wheels), so the image needs only the
# host's NVIDIA driver (NVIDIA Container Toolkit); the same install commands as CI (Makefile `install`).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VESSEL_DATA_DIR=/data \
    VESSEL_RUNS_DIR=/runs \
    HF_HUB_OFFLINE=1
WORKDIR /srv/vessel
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml constraints.txt README.md ./
COPY vessel_lightning/ vessel_lightning/
COPY conf/ conf/
COPY app/ app/
RUN pip install -c constraints.txt . \
    && useradd --create-home --uid 10001 vessel && mkdir -p /runs /data && chown vessel /runs
USER 10001
# Hydra writes job folders under $VESSEL_RUNS_DIR; mount it to keep checkpoints.
VOLUME ["/runs"]
CMD ["vessel-train", "--help"]
