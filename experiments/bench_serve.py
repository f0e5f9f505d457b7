"""Serving speed per backend, side by side in one run: end-to-end ``POST /predict`` and the bare model's share.

For each backend (torch, onnx, onnx-int8) the app is built in-process (FastAPI + TestClient: multipart
parsing, decoding, inference in the pool, PNG encoding; no TCP) and timed on a 512×512 PNG and on large photos
(CHASE_DB1 999×960, HRF 3504×2336). The bare model time is the wall time of the network's forward calls inside
the same requests (one 512² pass for a resize model; every sliding window for a tile model), so
``x bare`` = end-to-end / bare is the overhead of decoding, resizing and encoding. The 512² median is also
given against the fp32 floors: B0's (151 ms: 23.7 GFLOP at ~157 GFLOP/s on the 2-core AVX2 reference machine)
and the served model's own (its GFLOP at 512² at the same peak).

Without ``--tracking-uri`` a temporary store with a random-weight B0 (contract size 512) is used: fine for
speed, meaningless for accuracy. ``onnx-int8`` needs ``--calibration-dir`` (real photos).

    python experiments/bench_serve.py --repeats 20 --calibration-dir <data>/CHASE_DB1/images
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

PEAK_GFLOPS = 157.0  # fp32 peak of the 2-core AVX2 reference machine
FP32_FLOOR_MS = 151.0  # B0's smp Unet at 512² (23.7 GFLOP) at that peak: the serving issue's reference floor
LARGE_SIZES = {"chase-999x960": (960, 999), "hrf-3504x2336": (2336, 3504)}


def temporary_registry(root: Path, size: int = 512) -> str:
    """A SQLite store in ``root`` with one random-weight B0 registered as ``vessel-unet@champion``."""
    import mlflow
    import torch

    from vessel_lightning.inference.contract import ModelContract
    from vessel_lightning.models.networks import build_network
    from vessel_lightning.registry import log_network, register
    from vessel_lightning.store import ensure_experiment, ensure_store

    uri = f"sqlite:///{root / 'mlflow.db'}"
    ensure_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.get_tracking_uri(), "bench-serve"))
    torch.manual_seed(0)
    network = build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()
    contract = ModelContract(encoder="efficientnet-b0", size=(size, size), threshold=0.5, dataset="random")
    with mlflow.start_run() as run:
        log_network(network, contract, run.info.run_id)
    register(run.info.run_id, alias="champion")
    return uri


def synthetic_png(height: int, width: int, seed: int = 0) -> bytes:
    """A fundus-like test photo (reddish disc with noise) as PNG bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2) < (min(height, width) / 2.1) ** 2
    rgb = np.clip(np.array([180, 80, 40]) * disc[..., None] + rng.normal(0, 10, (height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def timed(
    functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Wall times in ms of each function, called in turn (so a noisy neighbour hits all of them alike)."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


def summary(times: list[float]) -> dict[str, float]:
    """Median and p95 in ms."""
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 0.95), 1)}


class TimedNetwork:
    """Wraps the served network and adds up the wall time of its forward calls (the bare model's share)."""

    def __init__(self, network: Callable) -> None:
        self.network = network
        self.ms = 0.0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.network(batch)
        self.ms += (time.perf_counter() - start) * 1000
        return out


def bench_backend(backend: str, args: argparse.Namespace, tracking_uri: str) -> dict[str, object]:
    """End-to-end timings of one backend and the bare model's share of each request."""
    from fastapi.testclient import TestClient

    from app.server import create_app
    from app.settings import Settings

    settings = dataclasses.replace(
        Settings(),
        tracking_uri=tracking_uri,
        model_uri=args.model_uri,
        backend=backend,
        reload_interval_s=0,
        fallback_to_torch=False,
        cache_dir=args.cache_dir,
        calibration_dir=args.calibration_dir,
        ui_dir=Path(tempfile.gettempdir()) / "no-ui",
        window=args.window or None,
    )
    start = time.perf_counter()
    with TestClient(create_app(settings)) as client:
        manager = client.app.state.manager
        if not manager.wait_ready(900):
            return {"backend": backend, "error": manager.error}
        if manager.error and manager.current is None:
            return {"backend": backend, "error": manager.error}
        ready_s = time.perf_counter() - start
        model = manager.current
        timer = TimedNetwork(model.predictor.network)
        model.predictor.network = timer

        def post(data: bytes) -> Callable[[], None]:
            def call() -> None:
                response = client.post("/predict", files={"file": ("x.png", data, "image/png")})
                assert response.status_code == 200, response.text

            return call

        result: dict[str, object] = {
            "backend": backend,
            "served_backend": model.backend,
            "inference": model.describe()["inference"],
            "ready_s": round(ready_s, 1),
        }
        for name, (h, w), repeats in [("512_png", (512, 512), args.repeats)] + [
            (n, hw, args.large_repeats) for n, hw in LARGE_SIZES.items()
        ]:
            call = post(synthetic_png(h, w))
            for _ in range(2 if name == "512_png" else 1):
                call()  # warm-up
            total, bare = [], []
            for _ in range(repeats):
                timer.ms = 0.0
                begin = time.perf_counter()
                call()
                total.append((time.perf_counter() - begin) * 1000)
                bare.append(timer.ms)
            ratios = [t / b for t, b in zip(total, bare, strict=True)]
            result[f"predict_{name}"] = summary(total) | {
                "bare_median_ms": round(statistics.median(bare), 1),
                "ratio_to_bare": round(statistics.median(ratios), 2),
            }
        floor_ms = args.model_gflop / PEAK_GFLOPS * 1000
        e2e = result["predict_512_png"]["median_ms"]
        result["fp32_floor_ms"] = round(floor_ms, 1)
        result["ratio_to_b0_fp32_floor"] = round(e2e / FP32_FLOOR_MS, 2)
        result["ratio_to_own_fp32_floor"] = round(e2e / floor_ms, 2)
        details = model.backend_details
        if "fp32" in details:
            result["fp32_check"] = details["fp32"].get("max_abs_diff")
        if "int8" in details:
            result["int8_vs_torch_max_abs_diff"] = details["int8"].get("max_abs_diff_vs_torch")
        return result


def main() -> None:
    """Parse flags, run every backend, print a table and write JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--large-repeats", type=int, default=5)
    parser.add_argument(
        "--tracking-uri", help="a store with the model to serve (default: a temporary random B0)"
    )
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--calibration-dir", type=Path, help="photos for onnx-int8 calibration")
    parser.add_argument("--cache-dir", type=Path, help="ONNX cache (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--window",
        type=int,
        default=512,
        help="sliding window of tile models, as vessel-serve (0: the tile size)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    import mlflow
    import torch

    from vessel_lightning.inference.predictor import load_logged_model
    from vessel_lightning.models.architectures import gflop

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        tracking_uri = args.tracking_uri or temporary_registry(Path(scratch))
        mlflow.set_tracking_uri(tracking_uri)
        network, contract, info = load_logged_model(args.model_uri)
        args.model_gflop = gflop(network, 512, 512)
        args.cache_dir = args.cache_dir or Path(scratch) / "onnx-cache"
        results = [bench_backend(b, args, tracking_uri) for b in args.backends.split(",") if b]
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_average_at_end": os.getloadavg(),
        "model": f"{info.uri} (version {info.version}, {contract.arch} {contract.encoder}, {contract.mode} "
        f"{contract.size[0]}x{contract.size[1]})"
        if args.tracking_uri
        else "random-weight B0, contract size 512",
        "gflop_at_512": round(args.model_gflop, 2),
    }
    print(json.dumps(machine))
    print(
        f"{'backend':10} {'/predict 512 med/p95':>21} {'bare':>7} {'x bare':>7} {'x B0 floor':>10} {'x own floor':>11} "
        + " ".join(f"{n + ' ms (x bare)':>30}" for n in LARGE_SIZES)
    )
    for row in results:
        if "error" in row:
            print(f"{row['backend']:10} error: {row['error']}")
            continue
        e2e = row["predict_512_png"]
        large = " ".join(
            f"{row[f'predict_{n}']['median_ms']:>22} ({row[f'predict_{n}']['ratio_to_bare']:>4}x)"
            for n in LARGE_SIZES
        )
        print(
            f"{row['backend']:10} {e2e['median_ms']:>10}/{e2e['p95_ms']:<10} {e2e['bare_median_ms']:>7} "
            f"{e2e['ratio_to_bare']:>7} {row['ratio_to_b0_fp32_floor']:>10} {row['ratio_to_own_fp32_floor']:>11} {large}"
        )
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
