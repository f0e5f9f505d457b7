"""Serving speed per backend, side by side in one run: bare model vs end-to-end ``POST /predict``.

For each backend (torch, onnx, onnx-int8) the app is built in-process (FastAPI + TestClient: multipart
parsing, decoding, inference in the pool, PNG encoding; no TCP) and timed on a 512×512 PNG; the bare model
is timed on a [1, 3, H, W] tensor at the contract size. Large photos (CHASE_DB1 999×960, HRF 3504×2336) give the
overhead ratio end-to-end / bare model. The ratio to the fp32 floor (~151 ms: 23.7 GFLOP at ~157 GFLOP/s on
the 2-core AVX2 reference machine) is printed for the 512² medians.

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

import numpy as np
from PIL import Image

FP32_FLOOR_MS = 151.0
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


def summary(times: list[float]) -> dict[str, float]:
    """Median and p95 in ms."""
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
    }


def bench_backend(backend: str, args: argparse.Namespace, tracking_uri: str) -> dict[str, object]:
    """Bare-model and end-to-end timings of one backend."""
    import torch
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
        height, width = model.predictor.contract.size
        # The same photo as the end-to-end request: activations (and denormals) depend on the input.
        photo = np.asarray(Image.open(io.BytesIO(synthetic_png(512, 512))).resize((width, height)))
        tensor = torch.from_numpy(photo.transpose(2, 0, 1).copy())[None].float() / 255.0

        def bare() -> None:
            with torch.inference_mode():
                model.predictor.network(tensor)

        def post(data: bytes) -> Callable[[], None]:
            def call() -> None:
                response = client.post("/predict", files={"file": ("x.png", data, "image/png")})
                assert response.status_code == 200, response.text

            return call

        calls = {"bare": bare, "predict_512_png": post(synthetic_png(512, 512))}
        times = timed(calls, args.repeats)
        result: dict[str, object] = {
            "backend": backend,
            "served_backend": model.backend,
            "ready_s": round(ready_s, 1),
            **{name: summary(values) for name, values in times.items()},
        }
        for name, (h, w) in LARGE_SIZES.items():
            pair = timed({"bare": bare, "large": post(synthetic_png(h, w))}, args.large_repeats, warmup=1)
            stats = summary(pair["large"])
            ratio = stats["median_ms"] / statistics.median(pair["bare"])
            result[f"predict_{name}"] = stats | {"ratio_to_bare": round(ratio, 2)}
        bare_median = result["bare"]["median_ms"]
        result["ratio_to_fp32_floor"] = {
            "bare": round(bare_median / FP32_FLOOR_MS, 2),
            "predict_512_png": round(result["predict_512_png"]["median_ms"] / FP32_FLOOR_MS, 2),
        }
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
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        tracking_uri = args.tracking_uri or temporary_registry(Path(scratch))
        args.cache_dir = args.cache_dir or Path(scratch) / "onnx-cache"
        results = [bench_backend(b, args, tracking_uri) for b in args.backends.split(",") if b]
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_average_at_end": os.getloadavg(),
        "model": args.model_uri if args.tracking_uri else "random-weight B0, contract size 512",
    }
    print(json.dumps(machine))
    header = (
        f"{'backend':10} {'bare med/p95':>15} {'/predict 512 med/p95':>22} {'floor ratio':>12} "
        + " ".join(f"{n + ' ratio':>22}" for n in LARGE_SIZES)
    )
    print(header)
    for row in results:
        if "error" in row:
            print(f"{row['backend']:10} error: {row['error']}")
            continue
        bare, e2e = row["bare"], row["predict_512_png"]
        large = " ".join(
            f"{row[f'predict_{n}']['median_ms']:>12} ms ({row[f'predict_{n}']['ratio_to_bare']:>4}x)"
            for n in LARGE_SIZES
        )
        print(
            f"{row['backend']:10} {bare['median_ms']:>7}/{bare['p95_ms']:<7} {e2e['median_ms']:>10}/{e2e['p95_ms']:<11} "
            f"{row['ratio_to_fp32_floor']['predict_512_png']:>12} {large}"
        )
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
