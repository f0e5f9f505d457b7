"""Photos per second of batch prediction: the in-process engine against Ray with 1 and 2 actors, side by side in one
run, on CHASE_DB1 and HRF photos; the peak memory of each Ray actor.

Every setting predicts the same photos into a fresh folder (PNG masks, detected field, measurements) with the same
model and runtime; the Ray figures include starting the actors and loading the model in each (what a batch pays),
not starting Ray itself (once, before the first setting). The machine (CPU model, cores) is printed first.

    python experiments/bench_ray_predict.py --data-dir $VESSEL_DATA_DIR --model-uri models:/vessel-unet@champion \
        --limit 8 --backend onnx                                  # 8 photos of each data set
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

DATASETS = {"chase_db1": "CHASE_DB1/images", "hrf": "HRF/test/images"}


def photos_of(data_dir: Path, name: str, limit: int) -> list[Path]:
    from vessel_lightning.inference.predict_cli import expand_photos

    return expand_photos([data_dir / DATASETS[name]])[:limit]


def run_local(photos: list[Path], out: Path, args: argparse.Namespace) -> dict:
    from vessel_lightning.inference.predict_cli import predict_batch

    started = time.perf_counter()
    summary = predict_batch(
        photos,
        out,
        model_uri=args.model_uri,
        backend=args.backend,
        tracking_uri=args.tracking_uri,
        overwrite=True,
    )
    wall = time.perf_counter() - started
    return {
        "engine": "local",
        "photos": len(photos),
        "wall_s": round(wall, 2),
        "photos_per_s": round(len(photos) / wall, 3),
        "failed": len(summary.errors),
    }


def run_ray(photos: list[Path], out: Path, actors: int, args: argparse.Namespace) -> dict:
    from vessel_lightning.inference.backends import load_predictor
    from vessel_lightning.inference.outputs import MeasurementsTable, OutputSpec
    from vessel_lightning.inference.ray_engine import ModelSpec, predict_with_ray
    from vessel_lightning.inference.settings import BackendSettings
    from vessel_lightning.tracking.registry import connect

    settings = BackendSettings(tracking_uri=connect(args.tracking_uri))
    predictor, result = load_predictor(args.model_uri, args.backend, settings, "cpu")  # resolves auto once
    spec = OutputSpec(out)
    peaks: dict[str, float] = {}
    started = time.perf_counter()
    table = MeasurementsTable(spec, photos, predictor.threshold)
    model = ModelSpec(predictor.info.uri, result.backend, settings)
    table.add_all(predict_with_ray(photos, spec, model, predictor.threshold, actors=actors, peaks=peaks))
    table.close()
    wall = time.perf_counter() - started
    return {
        "engine": f"ray x{actors}",
        "photos": len(photos),
        "wall_s": round(wall, 2),
        "photos_per_s": round(len(photos) / wall, 3),
        "failed": len(table.failed),
        "peak_rss_mb_per_actor": sorted(peaks.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("VESSEL_DATA_DIR", "data")))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--tracking-uri")
    parser.add_argument(
        "--backend", default="onnx", help="the same runtime for every setting (auto decides once)"
    )
    parser.add_argument("--limit", type=int, default=8, help="photos per data set")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    print(
        next((line for line in cpu.splitlines() if line.startswith("Model name")), "CPU: ?"),
        f"cores {os.cpu_count()}",
    )

    from vessel_lightning.inference.ray_engine import connect as ray_connect

    print("ray:", ray_connect(), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.datasets:
            photos = photos_of(args.data_dir, name, args.limit)
            results = [run_local(photos, Path(folder) / f"{name}-local", args)]
            results += [run_ray(photos, Path(folder) / f"{name}-ray{n}", n, args) for n in args.actors]
            for result in results:
                print(json.dumps({"dataset": name, **result}), flush=True)


if __name__ == "__main__":
    main()
