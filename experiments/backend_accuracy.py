"""Does a serving backend cost accuracy? F1 on held-out splits for every CPU backend, side by side.

    python experiments/backend_accuracy.py --model-uri models:/vessel-unet@champion --data-dir ../shared/data \
        --datasets chase_db1,hrf --hrf-limit 7 --hrf-scale 0.42

Protocol: the model's own contract (size, mode, threshold), each data set's test split at native resolution,
inside the FOV, pooled F1 at the contract threshold, 512² sliding window as ``vessel-serve``. int8 is calibrated
on CHASE_DB1 training-split photos only (never on a split it is scored on); the same photos feed ``auto``'s mask
gate, whose number (pixel F1 of the backend's masks against fp32 PyTorch's on the first
``auto.GATE_PHOTOS`` of them) is printed beside the test F1, so the gate's threshold can be read
against the test drop. Also printed: the pixel F1 between each backend's and PyTorch's masks on the test photos,
and the median time per photo.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--backends", default="torch,onnx,openvino,openvino-bf16,onnx-int8,openvino-int8")
    parser.add_argument("--datasets", default="chase_db1", help="comma-separated: chase_db1, hrf")
    parser.add_argument(
        "--hrf-limit", type=int, default=0, help="score only the first N HRF test photos (0: all)"
    )
    parser.add_argument(
        "--hrf-scale", type=float, default=1.0, help="Predictor scale on HRF (0.42: CHASE calibre)"
    )
    parser.add_argument("--cache-dir", type=Path, help="backend cache (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--window",
        type=int,
        default=512,
        help="sliding window of tile models, as vessel-serve (0: the tile size)",
    )
    args = parser.parse_args()

    import numpy as np
    from hydra import compose, initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR
    from vessel_lightning.data.prepare import load_sample
    from vessel_lightning.evaluation.evaluate import evaluation_samples
    from vessel_lightning.inference.auto import GATE_PHOTOS, gate_masks, mask_f1
    from vessel_lightning.inference.backends import build_backend
    from vessel_lightning.inference.cache import calibration_inputs, calibration_photos
    from vessel_lightning.inference.predictor import Predictor
    from vessel_lightning.inference.settings import BackendSettings
    from vessel_lightning.metrics import Counts, confusion
    from vessel_lightning.models.onnx import TorchArrays
    from vessel_lightning.tracking.bundle import load_logged_model
    from vessel_lightning.tracking.registry import connect

    uri = connect(args.tracking_uri)
    network, contract, info = load_logged_model(args.model_uri)
    folders = {"chase_db1": "CHASE_DB1", "hrf": "HRF"}
    sets = {}
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for name in args.datasets.split(","):
            data = compose("eval", [f"data={name}", f"data.root={args.data_dir / folders[name]}"]).data
            samples, rule = evaluation_samples(data, args.split, contract)
            if name == "hrf" and args.hrf_limit:
                samples = samples[: args.hrf_limit]
            scale = args.hrf_scale if name == "hrf" else 1.0
            sets[name] = ([load_sample(s, label_rule=rule) for s in samples], scale)
        chase = compose("eval", [f"data.root={args.data_dir / 'CHASE_DB1'}"]).data
        train, _ = evaluation_samples(chase, "train", contract)
    print(
        f"{info.uri} (version {info.version}): threshold {contract.threshold}, {contract.mode} {contract.size}, "
        f"window {args.window or 'tile'}; "
        + ", ".join(f"{n}: {len(s)} {args.split} photos, scale {sc}" for n, (s, sc) in sets.items())
    )
    print(
        f"{'data set':10} {'backend':14} {'F1':>8} {'drop':>8} {'mask F1 vs 1st':>17} {'gate F1':>8} {'s/image':>8}"
    )
    rows = []
    reference: dict[str, tuple[float, list]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        calibration = Path(scratch) / "calibration"
        calibration.mkdir()
        for sample in train:  # calibration photos: CHASE_DB1 training split only
            (calibration / sample.image.name).symlink_to(sample.image.resolve())
        gate_batches = list(calibration_inputs(calibration_photos(calibration, GATE_PHOTOS), contract))
        gate_reference = gate_masks(TorchArrays(network), gate_batches, contract.threshold)
        for backend in args.backends.split(","):
            settings = BackendSettings(
                tracking_uri=uri,
                calibration_dir=calibration,
                cache_dir=args.cache_dir or Path(scratch) / "cache",
            )
            built = build_backend(backend, network, contract, info, settings)
            gate = mask_f1(gate_masks(built.network, gate_batches, contract.threshold), gate_reference)
            for name, (loaded, scale) in sets.items():
                predictor = Predictor(built.network, contract, window=args.window or None, scale=scale)
                counts, seconds, masks = Counts(), [], []
                for sample in loaded:
                    start = time.perf_counter()
                    prob = predictor.predict_proba(sample.rgb)
                    seconds.append(time.perf_counter() - start)
                    mask = prob >= contract.threshold
                    fov = sample.fov.astype(bool) if sample.fov is not None else np.ones_like(mask)
                    masks.append(mask & fov)
                    counts += confusion(mask, sample.mask.astype(bool), sample.fov)
                f1 = counts.scores()["f1"]
                reference.setdefault(name, (f1, masks))
                agreement = mask_f1(masks, reference[name][1])
                row = {
                    "dataset": name,
                    "backend": backend,
                    "f1": round(f1, 5),
                    "drop": round(reference[name][0] - f1, 5),
                    "mask_f1_vs_first": round(agreement, 5),
                    "gate_f1": round(gate, 5),
                    "median_s": round(statistics.median(seconds), 2),
                }
                rows.append(row)
                print(
                    f"{name:10} {backend:14} {f1:8.4f} {row['drop']:8.4f} {agreement:17.4f} {gate:8.4f} "
                    f"{row['median_s']:8.2f}",
                    flush=True,
                )
    if args.out:
        args.out.write_text(json.dumps({"model": info.uri, "version": info.version, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
