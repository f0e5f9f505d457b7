"""What reading the mask costs next to the model: field of view, measurements and GeoJSON on real predictions.

    MLFLOW_TRACKING_URI=sqlite:///…/mlflow.db python experiments/bench_measure.py --data-dir $VESSEL_DATA_DIR

On the CHASE_DB1 test photos (999×960) and one HRF test photo (3504×2336, 8 MP): the model's prediction (window
512 as served), ``detect_fov``, ``measure_vessels`` on the thresholded prediction (and on the 8 MP manual label)
and ``mask_to_geojson`` — medians of ``--repeats`` runs, in one process, side by side — plus the GeoJSON size and
its round trip (IoU of the rasterized export against the mask) at several simplification tolerances.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from vessel_lightning.data.fov import detect_fov
from vessel_lightning.data.geojson import mask_to_geojson, rasterize_geojson
from vessel_lightning.data.images import read_gray, read_rgb
from vessel_lightning.inference.predictor import Predictor, served_mask
from vessel_lightning.measurements import measure_vessels

CHASE_TEST = [f"Image_{n}{side}" for n in (11, 12, 13, 14) for side in "LR"]
TOLERANCES = (0.0, 0.5, 0.75, 1.0)


def cpu() -> str:
    """The CPU model and its vector flags (benchmarks on a shared machine must say where they ran)."""
    info = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if "Model name" in line), "?")
    cores = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("CPU(s)")), "?"
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("Flags")), []
    )
    vector = [f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma"))]
    return f"{model}, {cores} CPUs, {' '.join(sorted(vector))}"


CPU_SECONDS: dict[
    str, float
] = {}  # the process's CPU time of the last timed call per label: contention-proof


def timed(fn, repeats: int, label: str = "") -> tuple[float, object]:
    """Median wall seconds of ``repeats`` calls and the last result; the median CPU seconds go to CPU_SECONDS."""
    seconds, cpu_seconds, result = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - start_cpu)
    CPU_SECONDS[label] = statistics.median(cpu_seconds)
    return statistics.median(seconds), result


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def bench_photo(
    name: str, rgb: np.ndarray, predictor: Predictor | None, repeats: int, label: np.ndarray | None = None
) -> dict[str, float]:
    """Times and GeoJSON figures of one photo's prediction (``predictor``) or, without one, of its ``label``."""
    fov_s, fov = timed(lambda: detect_fov(rgb), repeats, "fov")
    if predictor is not None:
        model_s, prob = timed(lambda: predictor.predict_proba(rgb), 1, "model")
        mask = served_mask(np.where(fov, prob, 0), predictor.threshold)
    else:
        model_s, mask = float("nan"), label & fov
    measure_s, _ = timed(lambda: measure_vessels(mask, fov), repeats, "measure")
    row = {
        "model_s": model_s,
        "fov_s": fov_s,
        "measure_s": measure_s,
        "measure_cpu_s": CPU_SECONDS["measure"],
        "model_cpu_s": CPU_SECONDS.get("model", float("nan")) if predictor is not None else float("nan"),
    }
    for tolerance in TOLERANCES:
        export_s, collection = timed(lambda t=tolerance: mask_to_geojson(mask, simplify_tolerance=t), 1)
        text = json.dumps(collection, separators=(",", ":"))
        back = rasterize_geojson(json.loads(text), mask.shape).astype(bool)
        row |= {f"geojson_s@{tolerance}": export_s, f"geojson_mb@{tolerance}": len(text) / 1e6,
                f"iou@{tolerance}": iou(back, mask), f"features@{tolerance}": len(collection["features"])}  # fmt: skip
    print(
        f"{name}: model {model_s:.2f} s (CPU {row['model_cpu_s']:.2f} s) | detect_fov {fov_s * 1000:.0f} ms | measure {measure_s * 1000:.0f} ms "
        f"(CPU {CPU_SECONDS['measure'] * 1000:.0f} ms; {measure_s / model_s:.3f}× the model) | GeoJSON "
        + ", ".join(
            f"tol {t}: {row[f'geojson_mb@{t}']:.2f} MB {row[f'geojson_s@{t}']:.2f} s IoU {row[f'iou@{t}']:.4f}"
            for t in TOLERANCES
        ),
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hrf-photo", default="test/images/09_h.jpg")
    parser.add_argument(
        "--chase-photos", type=int, default=len(CHASE_TEST), help="how many CHASE_DB1 test photos"
    )
    parser.add_argument(
        "--hrf-mask", choices=("prediction", "label"), default="prediction", help="HRF figures of"
    )
    args = parser.parse_args()
    print(f"CPU: {cpu()} (shared machine: other jobs ran beside this one)")
    predictor = Predictor.from_uri(args.model_uri, window=512)
    print(
        f"model {predictor.info.uri} v{predictor.info.version}, threshold {predictor.threshold:.3f}, window 512"
    )
    rows = []
    for name in CHASE_TEST[: args.chase_photos]:
        rgb = read_rgb(args.data_dir / "CHASE_DB1" / "images" / f"{name}.jpg")
        rows.append(bench_photo(name, rgb, predictor, args.repeats))
    if rows:
        print(f"== CHASE_DB1 test, medians over {len(rows)} photos:")
        for key in rows[0]:
            values = [r[key] for r in rows]
            print(f"   {key}: {statistics.median(values):.4f} (min {min(values):.4f})")
        print(f"   measure / model: {statistics.median(r['measure_s'] / r['model_s'] for r in rows):.4f}")
    hrf = args.data_dir / "HRF" / args.hrf_photo
    label = read_gray(hrf.parent.parent / "av_manual" / f"{hrf.stem}_AVmanual.png") > 0
    if args.hrf_mask == "prediction":
        bench_photo(f"HRF {hrf.name} prediction", read_rgb(hrf), predictor, args.repeats)
    else:
        bench_photo(f"HRF {hrf.name} manual label", read_rgb(hrf), None, args.repeats, label)
    label_s, _ = timed(lambda: measure_vessels(label), args.repeats, "label")
    print(
        f"HRF {hrf.name} manual label (8 MP, {label.mean():.3f} vessel): measure {label_s * 1000:.0f} ms "
        f"(CPU {CPU_SECONDS['label'] * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
