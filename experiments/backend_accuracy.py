"""Does a serving backend cost accuracy? F1 on a held-out split for torch, onnx and onnx-int8, side by side.

    python experiments/backend_accuracy.py --model-uri models:/vessel-unet@champion --data-dir ../shared/data

Protocol: the model's own contract (size, mode, threshold), CHASE_DB1 test split at native resolution, inside
the FOV, pooled F1 at the contract threshold. int8 is calibrated on training-split photos only (never on the
split it is scored on). Prints F1 per backend, the drop against torch, and the median time per image.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument(
        "--window",
        type=int,
        default=512,
        help="sliding window of tile models, as vessel-serve (0: the tile size)",
    )
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR
    from vessel_lightning.data.prepare import load_sample
    from vessel_lightning.evaluation.evaluate import evaluation_samples
    from vessel_lightning.evaluation.metrics import Counts, confusion
    from vessel_lightning.inference.backends import build_backend
    from vessel_lightning.inference.predictor import Predictor, load_logged_model
    from vessel_lightning.registry import connect

    uri = connect(args.tracking_uri)
    network, contract, info = load_logged_model(args.model_uri)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        data = compose("eval", [f"data.root={args.data_dir / 'CHASE_DB1'}"]).data
    samples, rule = evaluation_samples(data, args.split, contract)
    train, _ = evaluation_samples(data, "train", contract)
    loaded = [load_sample(s, label_rule=rule) for s in samples]
    print(
        f"{info.uri} (version {info.version}): {len(samples)} {args.split} images, threshold {contract.threshold}, "
        f"{contract.mode} {contract.size}, window {args.window or 'tile'}"
    )
    print(f"{'backend':10} {'F1':>8} {'drop':>8} {'s/image':>8}")
    reference = None
    with tempfile.TemporaryDirectory() as calibration:
        for sample in train:  # calibration photos: training split only
            (Path(calibration) / sample.image.name).symlink_to(sample.image.resolve())
        for backend in args.backends.split(","):
            built = build_backend(
                backend, network, contract, info, tracking_uri=uri, calibration_dir=Path(calibration)
            )
            predictor = Predictor(built.network, contract, window=args.window or None)
            counts, seconds = Counts(), []
            for sample in loaded:
                start = time.perf_counter()
                prob = predictor.predict_proba(sample.rgb)
                seconds.append(time.perf_counter() - start)
                counts += confusion(prob >= contract.threshold, sample.mask.astype(bool), sample.fov)
            f1 = counts.scores()["f1"]
            reference = f1 if reference is None else reference
            print(f"{backend:10} {f1:8.4f} {reference - f1:8.4f} {statistics.median(seconds):8.2f}")


if __name__ == "__main__":
    main()
