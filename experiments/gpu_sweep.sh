#!/usr/bin/env bash
# Train several experiments side by side on one GPU where no MLflow store is reachable (a lent or air-gapped
# GPU machine), then pack each job for `vessel-import-run` on the machine that holds the store.
#
#   VESSEL_DATA_DIR=/data bash experiments/gpu_sweep.sh OUT_DIR chase_gpu chase_gpu_b3 hrf_gpu [-- overrides]
#
# Each job logs to CSV (logger=csv) and skips the trainer's test pass (vessel-eval scores the test split
# later, with the repository's protocol). Jobs on one data set share its prepared folder (prepare's lock).
# Per job, OUT_DIR gets <experiment>.tgz (split into 15 MiB parts when larger): the resolved config,
# metrics.csv, figures, network.pt, contract.json and the job's output (stdout.log; left in OUT_DIR as
# <experiment>.log when the job wrote no network). With HALF=1 the network's tensors are stored as float16
# (half the bytes, for transfer limits); they load back into a float32 network.
# Back home:  cat OUT_DIR/chase_gpu.tgz* | tar -xz -C jobs/chase_gpu && vessel-import-run jobs/chase_gpu
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
shift
experiments=()
while [[ $# -gt 0 && $1 != "--" ]]; do
  experiments+=("$1")
  shift
done
[[ ${1:-} == "--" ]] && shift
overrides=("$@")
python=${PYTHON:-python3}
jobs_dir=${JOBS_DIR:-$out/jobs}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1

"$python" - <<'EOF'
import torch
print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

pids=()
for exp in "${experiments[@]}"; do
  "$python" -m vessel_lightning.tracking.train "experiment=$exp" logger=csv test=false \
    ++trainer.enable_progress_bar=false "~callbacks.rich_progress_bar" "hydra.run.dir=$jobs_dir/$exp" "${overrides[@]}" >"$out/$exp.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    echo "${experiments[$i]}: done"
  else
    echo "${experiments[$i]}: FAILED (exit $?); the end of $out/${experiments[$i]}.log:"
    tail -n 25 "$out/${experiments[$i]}.log"
    status=1
  fi
done

for exp in "${experiments[@]}"; do
  job=$jobs_dir/$exp
  [[ -f $job/artifacts/network.pt ]] || continue
  if [[ ${HALF:-0} == 1 ]]; then
    "$python" - "$job/artifacts/network.pt" <<'EOF'
import sys, torch
path = sys.argv[1]
bundle = torch.load(path, weights_only=True)
fits = lambda t: t.is_floating_point() and t.abs().max().item() < 6e4
bundle["state_dict"] = {k: t.half() if fits(t) else t for k, t in bundle["state_dict"].items()}
torch.save(bundle, path)
EOF
  fi
  mv "$out/$exp.log" "$job/stdout.log"
  tar -czf "$out/$exp.tgz" -C "$job" --exclude=checkpoints .
  if [[ $(stat -c %s "$out/$exp.tgz") -gt $((15 * 1024 * 1024)) ]]; then
    split -b 15M -d "$out/$exp.tgz" "$out/$exp.tgz.part"
    rm "$out/$exp.tgz"
  fi
  grep -h "Trainer.fit" "$job/stdout.log" | tail -n 1 || true
done
# One line per job: optimizer steps reached and the best validation F1 (read as vessel-import-run reads them).
"$python" - "$jobs_dir" "${experiments[@]}" <<'EOF'
import sys
from pathlib import Path
from vessel_lightning.tracking.offline import read_metrics
jobs = Path(sys.argv[1])
print(f"{'experiment':<16} {'steps':>6} {'epochs':>6} {'best val/f1':>11}")
for exp in sys.argv[2:]:
    metrics = read_metrics(sorted(jobs.glob(f"{exp}/csv/version_*/metrics.csv")))
    steps = max((step for _, _, step in metrics), default=0)
    epochs = max((int(value) + 1 for key, value, _ in metrics if key == "epoch"), default=0)
    f1 = max((value for key, value, _ in metrics if key == "val/f1"), default=float("nan"))
    print(f"{exp:<16} {steps:>6} {epochs:>6} {f1:>11.4f}")
EOF
ls -l "$out"
exit $status
