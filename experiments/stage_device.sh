#!/usr/bin/env bash
# Stage what experiments/device_check.sh needs on a bare, offline GPU machine into .device/ (git-ignored), to be
# carried there with the working tree (device tool: carry [".device"]; keep it under 64 MiB):
#   .device/wheels  the packages its image lacks, for CPython 3.12 on x86_64 (pinned as in constraints.txt)
#   .device/data    CHASE_DB1 from $VESSEL_DATA_DIR (images, labels, FOV masks: 3 MB)
#   .device/model   the model to serve and score: MODEL_URI (default the champion) exported as network.pt
#                   (float16 tensors, loaded back as float32) + contract.json
#
#   VESSEL_DATA_DIR=../shared/data bash experiments/stage_device.sh [MODEL_URI]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
dest=.device
rm -rf "$dest" && mkdir -p "$dest/wheels" "$dest/data" "$dest/model"
pin() { grep -i -E "^$1==" constraints.txt | head -n 1; }
packages=()
for name in segmentation_models_pytorch hydra-core omegaconf albumentations albucore stringzilla simsimd \
  pydantic pydantic_core annotated-types typing-inspection typing_extensions fastapi starlette annotated-doc \
  uvicorn h11 click python-multipart anyio idna; do
  packages+=("$(pin "$name")")
done
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any -d "$dest/wheels" "${packages[@]}"
"$python" -m pip wheel --quiet --no-deps -w "$dest/wheels" "$(pin antlr4-python3-runtime)"  # only an sdist on PyPI
cp -r "${VESSEL_DATA_DIR:?set VESSEL_DATA_DIR to the folder holding CHASE_DB1}/CHASE_DB1" "$dest/data/"
"$python" - "${1:-models:/vessel-unet@champion}" "$dest/model" <<'PY'
import shutil, sys, tempfile
from pathlib import Path
import mlflow
import torch
from vessel_lightning.contract import CONTRACT_FILE, NETWORK_FILE
from vessel_lightning.tracking.registry import connect

uri, folder = sys.argv[1], Path(sys.argv[2])
connect()
run_id = mlflow.models.get_model_info(uri).run_id
with tempfile.TemporaryDirectory() as tmp:  # every training run logs network.pt + contract.json under network/
    got = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="network", dst_path=tmp))
    shutil.copy(got / CONTRACT_FILE, folder / CONTRACT_FILE)
    bundle = torch.load(got / NETWORK_FILE, weights_only=True)
half = lambda t: t.half() if t.is_floating_point() and t.abs().max().item() < 6e4 else t
bundle["state_dict"] = {k: half(t) for k, t in bundle["state_dict"].items()}
torch.save(bundle, folder / NETWORK_FILE)
print(f"{uri} (run {run_id}) -> {folder}")
PY
du -sh "$dest"/*
