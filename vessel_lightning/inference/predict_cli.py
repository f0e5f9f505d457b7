"""``vessel-predict``: vessel masks, measurements and GeoJSON for a batch of photos or folders of photos.

    vessel-predict photo1.png photo2.jpg --out results/
    vessel-predict eyes/ --out results/ --model-uri runs:/<run_id>/model --threshold 0.4 --tta
    vessel-predict eyes/ --out results/ --format png,geojson --fov-degrees 30
    vessel-predict slitlamp/images --out slitlamp/annotations --format geojson   # then vessel-prepare data=geojson
    vessel-predict eyes/ --out results/ --backend openvino-bf16 --calibration-dir train-photos/

``--backend`` (default ``auto``, as ``vessel-serve``) picks the runtime: the fastest this CPU runs accurately, cached
per model version and CPU, or a named one (``torch``, ``onnx``, ``openvino``, ...).

For each photo (a folder stands for the image files directly inside it) writes into ``--out``: with
``--format png`` (default) ``<name>.mask.png`` ({0, 255} at the photo's size and the threshold),
``<name>.prob.png`` (probability × 255), ``<name>.overlay.png`` (vessels over the photo) and, when the field of
view was detected, ``<name>.fov.png``; with ``--format geojson`` ``<name>.geojson`` (vessel Polygons in the
pixel convention ``vessel-prepare data=geojson`` reads). Always ``measurements.csv``: one row per photo with
the field of view and the vessel measurements of ``vessel_lightning.measurements`` (inside the
field, in pixels, and in µm when ``--um-per-pixel`` or ``--fov-degrees`` gives the scale).
A photo that cannot be read is reported and skipped; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("png", "geojson")
OUTPUT_SUFFIXES = (".mask.png", ".prob.png", ".overlay.png", ".fov.png")  # ours: never read back as photos
CSV_NAME = "measurements.csv"
CSV_LEAD = ("photo", "width", "height", "threshold", "fov", "fov_diameter_px", "scale")


def expand_photos(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder becomes the image files directly inside it (sorted), except our own outputs."""
    from vessel_lightning.data.images import IMAGE_EXTENSIONS

    photos: list[Path] = []
    for path in paths:
        if path.is_dir():
            photos.extend(
                p
                for p in sorted(path.iterdir())
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not p.name.lower().endswith(OUTPUT_SUFFIXES)
            )
        else:
            photos.append(path)
    return photos


def _formats(value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in chosen if v not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--format takes {', '.join(FORMATS)} (comma-separated), not {value!r}"
        )
    return chosen


def _scale(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale takes a number or 'auto', not {value!r}") from None


def measurement_columns() -> list[str]:
    """The header of ``measurements.csv``: the photo and its field, then every measurement."""
    from vessel_lightning.measurements import measure_vessels

    keys = measure_vessels(np.zeros((8, 8), dtype=bool)).to_dict(histogram=True)
    return [*CSV_LEAD, *keys]


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``vessel-predict``."""
    from vessel_lightning.config import DEFAULT_MODEL_URI
    from vessel_lightning.inference.settings import BACKENDS

    parser = argparse.ArgumentParser(prog="vessel-predict", description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path, help="image files or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--model-uri", default=DEFAULT_MODEL_URI)
    parser.add_argument("--threshold", type=float, help="default: the model's recommended threshold")
    parser.add_argument(
        "--format", type=_formats, default=("png",), help="png (default), geojson or png,geojson"
    )
    parser.add_argument(
        "--fov",
        choices=("detect", "none"),
        default="detect",
        help="detect: find the field of view (fundus disc; whole frame otherwise), predict 0 outside it "
        "(default); none: the whole frame",
    )
    parser.add_argument(
        "--scale", type=_scale, default=1.0, help="tile models: resample factor, or 'auto' (field diameters)"
    )
    parser.add_argument(
        "--reference-fov-diameter",
        type=float,
        help="--scale auto for models whose contract has no fov_diameter: the training photos' field diameter (px)",
    )
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--um-per-pixel", type=float, help="physical scale: measurements also in µm")
    scale.add_argument(
        "--fov-degrees", type=float, help="the field's angular diameter (scale from its pixels)"
    )
    parser.add_argument("--tta", action="store_true", help="average flips (3× slower)")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when PyTorch sees a GPU, else CPU), cpu, cuda, cuda:N"
    )
    parser.add_argument(
        "--precision", default="auto", help="on a GPU: auto (fp16), fp32, fp16, bf16 (as VESSEL_PRECISION)"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="runtime on the CPU (auto: the fastest accurate one, as vessel-serve)",
    )
    parser.add_argument(
        "--calibration-dir",
        type=Path,
        default=os.environ.get("VESSEL_CALIBRATION_DIR") or None,
        help="photos for int8 calibration and auto's mask gate (default: $VESSEL_CALIBRATION_DIR)",
    )
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be within [0, 1]")
    for name in ("um_per_pixel", "fov_degrees"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")

    from mlflow.exceptions import MlflowException
    from tqdm.auto import tqdm

    from vessel_lightning.contract import ContractError
    from vessel_lightning.inference.backends import load_predictor, resolve_device
    from vessel_lightning.inference.settings import BackendError, BackendSettings, DeviceError
    from vessel_lightning.tracking.bundle import BundleError
    from vessel_lightning.tracking.registry import RegistryError, connect

    photos = expand_photos(args.photos)
    if not photos:
        print("error: no image files found in " + ", ".join(map(str, args.photos)), file=sys.stderr)
        return 1
    try:
        uri = connect(args.tracking_uri)
        settings = BackendSettings(
            tracking_uri=uri, calibration_dir=args.calibration_dir, precision=args.precision
        )
        predictor, backend = load_predictor(
            args.model_uri,
            args.backend,
            settings,
            resolve_device(args.device, "--device"),
            tta=args.tta,
            scale=args.scale,
            reference_diameter=args.reference_fov_diameter,
        )
    except (
        MlflowException,
        ContractError,
        RegistryError,
        BackendError,
        BundleError,
        DeviceError,
        ValueError,
    ) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    threshold = predictor.threshold if args.threshold is None else args.threshold
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = {p.resolve() for p in photos}
    failed = 0
    with (args.out / CSV_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=measurement_columns())
        writer.writeheader()
        for photo in tqdm(photos, desc="predict", unit="img"):
            try:
                row = predict_one(photo, args, predictor, threshold, inputs)
            except ValueError as exc:  # ImageReadError and overwrite refusals name the photo
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
                continue
            writer.writerow(row)
            handle.flush()  # an interrupted run keeps every finished row
    done = len(photos) - failed
    print(
        f"{done} photo(s) → {args.out} (model {predictor.info.uri}, threshold {threshold:.2f}, "
        f"backend {backend.backend}, {CSV_NAME})"
    )
    return 1 if failed else 0


def predict_one(
    photo: Path, args: argparse.Namespace, predictor: Any, threshold: float, inputs: set[Path]
) -> dict[str, Any]:
    """Predict, write the chosen outputs and return the CSV row of one photo; ValueError names the photo."""
    from vessel_lightning.data.fov import fov_diameter
    from vessel_lightning.data.images import read_rgb
    from vessel_lightning.inference.photo import PhysicalScale, predict_photo
    from vessel_lightning.inference.predictor import probability_png_values
    from vessel_lightning.overlays import save_png, vessel_overlay

    targets: dict[str, Path] = {}
    if "png" in args.format:
        kinds = ("mask", "prob", "overlay", *(("fov",) if args.fov == "detect" else ()))
        targets |= {kind: args.out / f"{photo.stem}.{kind}.png" for kind in kinds}
    if "geojson" in args.format:
        targets["geojson"] = args.out / f"{photo.stem}.geojson"
    if inputs & {t.resolve() for t in targets.values()}:
        raise ValueError(f"{photo}: an output would overwrite an input photo; choose another --out")
    rgb = read_rgb(photo)
    result = predict_photo(predictor, rgb, args.fov, threshold=threshold)
    if "png" in args.format:
        save_png((result.mask * 255).astype(np.uint8), targets["mask"])
        save_png(probability_png_values(result.prob), targets["prob"])
        save_png(vessel_overlay(rgb, result.mask), targets["overlay"])
        if "fov" in targets:
            save_png(result.field.astype(np.uint8) * 255, targets["fov"])
    if "geojson" in args.format:
        properties = {
            "model": predictor.info.uri,
            "model_version": predictor.info.version,
            "threshold": threshold,
        }
        targets["geojson"].write_text(json.dumps(result.geojson(properties), separators=(",", ":")))
    physical = PhysicalScale(args.um_per_pixel, args.fov_degrees)
    lead = {
        "photo": str(photo),
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "threshold": threshold,
        "fov": "whole frame" if result.whole_frame else "detected",
        "fov_diameter_px": None if result.whole_frame else round(fov_diameter(result.field), 1),
        "scale": round(result.scale, 4),
    }
    return lead | result.measurements(physical, histogram=True)


if __name__ == "__main__":
    raise SystemExit(main())
