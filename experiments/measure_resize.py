"""How much of the thinnest vessels survives resizing the labels to the training size.

For each mask resampling method: resize the full-resolution label to S×S, then back to the native size
(bilinear, threshold 0.5 — what evaluation does with predicted probabilities) and compare with the original
label inside the FOV. Prints, per data set and method: round-trip F1, thin-vessel recall (label pixels whose
distance-transform radius is ≤ 1 px) and skeleton pixels kept (full-resolution skeleton pixels still covered
by the downsized mask, measured at native resolution).

    python experiments/measure_resize.py --data-dir ../shared/data --size 512
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt
from skimage.morphology import skeletonize

from vessel_lightning.data.images import binarize, read_gray

R = Image.Resampling


def _frac(mask: np.ndarray, size: int, method: R) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.float32)).resize((size, size), method))


METHODS = {
    "nearest": lambda m, s: _frac(m, s, R.NEAREST) >= 0.5,
    "bilinear>=0.5": lambda m, s: _frac(m, s, R.BILINEAR) >= 0.5,
    "lanczos>=0.5": lambda m, s: _frac(m, s, R.LANCZOS) >= 0.5,
    "box>=0.5": lambda m, s: _frac(m, s, R.BOX) >= 0.5,
    "box>=0.35": lambda m, s: _frac(m, s, R.BOX) >= 0.35,
    "box>=0.25": lambda m, s: _frac(m, s, R.BOX) >= 0.25,
}


def _back(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    up = Image.fromarray(small.astype(np.float32)).resize((shape[1], shape[0]), R.BILINEAR)
    return np.asarray(up) >= 0.5


def _pairs(data_dir: Path, dataset: str):
    if dataset == "CHASE_DB1":
        for img in sorted((data_dir / "CHASE_DB1/images").glob("*.jpg")):
            yield (
                data_dir / f"CHASE_DB1/1st_label/{img.stem}_1stHO.png",
                "threshold",
                data_dir / f"CHASE_DB1/mask/{img.stem}.png",
            )
    else:
        for lab in sorted((data_dir / "HRF/test/av_manual").glob("*.png")):
            stem = lab.stem.replace("_AVmanual", "")
            yield lab, "nonzero", data_dir / f"HRF/test/mask/{stem}_mask.tif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    print(f"size {args.size}; scores pooled over images, inside FOV")
    print(f"{'data set':10} {'method':14} {'F1':>6} {'thin rec':>8} {'skel kept':>9}")
    for dataset in ("CHASE_DB1", "HRF"):
        totals = {m: np.zeros(6) for m in METHODS}
        for label_path, rule, fov_path in _pairs(args.data_dir, dataset):
            label = binarize(read_gray(label_path), rule)[0].astype(bool)
            fov = read_gray(fov_path) >= 128
            thin = label & (distance_transform_edt(label) <= 1.0) & fov
            skeleton = skeletonize(label) & fov
            for name, method in METHODS.items():
                small = method(label, args.size)
                back = _back(small, label.shape) & fov
                tp = (back & label).sum()
                totals[name] += [
                    tp,
                    back.sum(),
                    (label & fov).sum(),
                    (back & thin).sum(),
                    thin.sum(),
                    (back & skeleton).sum() / max(skeleton.sum(), 1),
                ]
        n = len(list(_pairs(args.data_dir, dataset)))
        for name, (tp, pred, true, thin_tp, thin_n, skel) in totals.items():
            f1 = 2 * tp / (pred + true)
            print(f"{dataset:10} {name:14} {f1:6.3f} {thin_tp / thin_n:8.3f} {skel / n:9.3f}")


if __name__ == "__main__":
    main()
