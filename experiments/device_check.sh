#!/usr/bin/env bash
# One bounded run on a lent GPU machine (bare, offline: Python + torch + lightning + timm, not this project's other
# packages): installs the wheels staged by experiments/stage_device.sh from .device/wheels (no index, no
# downloads), then runs experiments/device_check.py: serving latency per precision, CHASE_DB1 test F1 per
# precision, B0-B7 train steps, chase_gpu training for the time left. Figures land under OUT (summary.json,
# summary.md, logs, the training pack).
#
#   bash experiments/device_check.sh OUT [--smoke] [--budget SECONDS] [--steps serving,accuracy,...]
#
# --smoke: the same steps on the CPU on tiny sizes (a test runs it), so the script works the first time there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
out=$1
shift
python=${PYTHON:-python3}
needed="import segmentation_models_pytorch, hydra, omegaconf, albumentations, fastapi, uvicorn, multipart"
if ! "$python" -c "$needed" 2>/dev/null && compgen -G ".device/wheels/*.whl" >/dev/null; then
  # --no-deps: the machine's own torch, numpy and friends stay; only what it lacks is added
  "$python" -m pip install --quiet --no-index --no-deps --find-links .device/wheels .device/wheels/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export VESSEL_DATA_DIR=${VESSEL_DATA_DIR:-$PWD/.device/data}
exec "$python" experiments/device_check.py "$out" "$@"
