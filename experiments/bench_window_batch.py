"""Windows per forward call, side by side: the speed and the peak memory of one backend at several batch sizes.

The Predictor slides windows over a photo and runs them through the network ``batch_windows`` at a time. One worker
process per batch size loads the model and the backend once (``use_backend``, as ``vessel-eval`` does), predicts
the photo once (its peak RSS, VmHWM, after that first photo is what the batch size costs in memory), then the
workers take turns, round by round, each predicting the photo ``--repeats`` times, so a busy neighbour slows every
variant alike. Prints the CPU, medians of wall and process-CPU time per photo, the peak RSS, and whether the
probabilities of every batch size are identical.

    python experiments/bench_window_batch.py --tracking-uri sqlite:///runs/mlflow/mlflow.db --backend onnx \\
        --batches 1 4 --photo <data>/CHASE_DB1/images/Image_11L.jpg --repeats 3 --rounds 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def vm_hwm_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB (``bench_serve.peak_rss_mb``)."""
    from bench_serve import peak_rss_mb  # beside this script in experiments/

    return peak_rss_mb(os.getpid())["VmHWM"]


def worker(args: argparse.Namespace) -> None:
    """Serve ``run`` / ``quit`` commands from stdin, one JSON line per answer on stdout."""
    import numpy as np
    from PIL import Image

    from vessel_lightning.inference.backends import use_backend
    from vessel_lightning.inference.predictor import Predictor
    from vessel_lightning.inference.settings import BackendSettings

    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    rgb = np.asarray(Image.open(args.photo).convert("RGB"))
    predictor = Predictor.from_uri(args.model_uri, window=args.window)
    use_backend(predictor, args.backend, BackendSettings(cache_dir=args.cache_dir, threads=args.threads))
    predictor.batch_windows = args.batch
    prob = predictor.predict_proba(rgb)
    first = {"batch": args.batch, "rss_after_first_mb": vm_hwm_mb(), "windows": args.window}
    first["digest"] = hashlib.sha256(prob.tobytes()).hexdigest()[:16]
    print(json.dumps(first), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        wall, cpu = [], []
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            predictor.predict_proba(rgb)
            wall.append((time.perf_counter() - w0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)
    print(json.dumps({"peak_mb": vm_hwm_mb()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""))
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--window", type=int, default=512, help="vessel-serve's window")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3, help="photos per worker per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, help="backend cache (default: a temporary folder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from vessel_lightning.hardware import cpu_features

    print(f"CPU {cpu_features().describe()}; {args.threads} threads; backend {args.backend}", flush=True)
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="bench-window-batch-"))
    common = [sys.executable, __file__, "--worker", "--tracking-uri", args.tracking_uri, "--model-uri",
              args.model_uri, "--backend", args.backend, "--photo", str(args.photo), "--window", str(args.window),
              "--threads", str(args.threads), "--repeats", str(args.repeats), "--cache-dir", str(cache)]  # fmt: skip
    workers, first = {}, {}
    for batch in args.batches:  # one at a time: the first builds the backend into the cache for the others
        proc = subprocess.Popen([*common, "--batch", str(batch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)  # fmt: skip
        first[batch] = json.loads(proc.stdout.readline())
        workers[batch] = proc
    wall = {b: [] for b in args.batches}
    cpu = {b: [] for b in args.batches}
    for _ in range(args.rounds):
        for batch, proc in workers.items():
            proc.stdin.write("run\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            wall[batch] += answer["wall"]
            cpu[batch] += answer["cpu"]
    peak = {}
    for batch, proc in workers.items():
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        peak[batch] = json.loads(proc.stdout.readline())["peak_mb"]
        proc.wait()
    base = args.batches[-1]
    print(f"\n{args.rounds} rounds × {args.repeats} photos per batch size, interleaved; medians")
    print(
        "| windows per call | wall ms | CPU ms | CPU vs batch "
        + f"{base} | RSS after first photo MB | peak MB |"
    )
    print("|---|---|---|---|---|---|")
    for batch in args.batches:
        ratio = statistics.median(cpu[batch]) / statistics.median(cpu[base])
        print(f"| {batch} | {statistics.median(wall[batch]):.0f} | {statistics.median(cpu[batch]):.0f} | "
              f"{ratio:.3f} | {first[batch]['rss_after_first_mb']:.0f} | {peak[batch]:.0f} |")  # fmt: skip
    digests = {first[b]["digest"] for b in args.batches}
    print(f"probabilities identical across batch sizes: {len(digests) == 1}")


if __name__ == "__main__":
    main()
