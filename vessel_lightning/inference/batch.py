"""``vessel-predict``: vessel masks, probability maps and overlays for a batch of photos.

    vessel-predict photo1.png photo2.jpg --out results/
    vessel-predict eyes/*.png --out results/ --model-uri runs:/<run_id>/model --threshold 0.4 --tta
    vessel-predict eyes/*.png --out results/ --backend openvino-bf16 --calibration-dir train-photos/

``--backend`` (default ``auto``, as ``vessel-serve``) picks the runtime: the fastest this CPU runs accurately, cached
per model version and CPU, or a named one (``torch``, ``onnx``, ``openvino``, ...).

For each photo writes ``<name>.mask.png`` ({0, 255} at the photo's size and the threshold),
``<name>.prob.png`` (probability × 255) and ``<name>.overlay.png`` (vessels over the photo) into ``--out``.
A photo that cannot be read is reported and skipped; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``vessel-predict``."""
    from vessel_lightning.inference.backends import BACKENDS
    from vessel_lightning.registry import DEFAULT_ALIAS, DEFAULT_MODEL_NAME

    parser = argparse.ArgumentParser(prog="vessel-predict", description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path, help="image files (PNG, JPEG, TIFF, BMP, WebP)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--model-uri", default=f"models:/{DEFAULT_MODEL_NAME}@{DEFAULT_ALIAS}")
    parser.add_argument("--threshold", type=float, help="default: the model's recommended threshold")
    parser.add_argument("--tta", action="store_true", help="average flips (3× slower)")
    parser.add_argument("--device", default="cpu")
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

    from mlflow.exceptions import MlflowException
    from tqdm.auto import tqdm

    from vessel_lightning.data.images import ImageReadError, read_rgb
    from vessel_lightning.inference.backends import BackendError, use_backend
    from vessel_lightning.inference.contract import ContractError
    from vessel_lightning.inference.overlays import save_png, vessel_overlay
    from vessel_lightning.inference.predictor import Predictor, probability_png_values, served_mask
    from vessel_lightning.registry import RegistryError, connect

    try:
        uri = connect(args.tracking_uri)
        predictor = Predictor.from_uri(args.model_uri, tta=args.tta, device=args.device)
        backend = use_backend(predictor, args.backend, tracking_uri=uri, calibration_dir=args.calibration_dir)
    except (MlflowException, ContractError, RegistryError, BackendError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    threshold = predictor.threshold if args.threshold is None else args.threshold
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = {p.resolve() for p in args.photos}
    failed = 0
    for photo in tqdm(args.photos, desc="predict", unit="img"):
        targets = {kind: args.out / f"{photo.stem}.{kind}.png" for kind in ("mask", "prob", "overlay")}
        if inputs & {t.resolve() for t in targets.values()}:
            print(
                f"error: {photo}: an output would overwrite an input photo; choose another --out",
                file=sys.stderr,
            )
            failed += 1
            continue
        try:
            rgb = read_rgb(photo)
        except ImageReadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        prob = predictor.predict_proba(rgb)
        mask = served_mask(prob, threshold)
        save_png((mask * 255).astype(np.uint8), targets["mask"])
        save_png(probability_png_values(prob), targets["prob"])
        save_png(vessel_overlay(rgb, mask), targets["overlay"])
    done = len(args.photos) - failed
    print(
        f"{done} photo(s) → {args.out} (model {predictor.info.uri}, threshold {threshold:.2f}, "
        f"backend {backend.backend})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
