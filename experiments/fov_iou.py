"""IoU of the detected field of view (``detect_fov``) against the official FOV masks of CHASE_DB1 and HRF.

    python experiments/fov_iou.py --data-dir $VESSEL_DATA_DIR

Prints one line per photo (IoU, detected and official diameter, seconds) and the minimum, median and worst
photo per data set. Every photo of both data sets, all splits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vessel_lightning.data.fov import detect_fov, fov_diameter
from vessel_lightning.data.images import read_gray, read_rgb


def pairs(data_dir: Path) -> dict[str, list[tuple[Path, Path]]]:
    """(photo, official FOV mask) per data set."""
    chase = data_dir / "CHASE_DB1"
    out = {
        "CHASE_DB1": [(p, chase / "mask" / f"{p.stem}.png") for p in sorted((chase / "images").glob("*.jpg"))]
    }
    out["HRF"] = [
        (p, p.parent.parent / "mask" / f"{p.stem}_mask.tif")
        for p in sorted((data_dir / "HRF").glob("*/images/*"))
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    for name, items in pairs(args.data_dir).items():
        ious, seconds = [], []
        for photo, mask in items:
            rgb = read_rgb(photo)
            official = read_gray(mask) >= 128
            start = time.perf_counter()
            fov = detect_fov(rgb)
            seconds.append(time.perf_counter() - start)
            iou = float((fov & official).sum() / (fov | official).sum())
            ious.append(iou)
            print(
                f"{name} {photo.name}: IoU {iou:.4f}, diameter {fov_diameter(fov):.1f} px "
                f"(official mask {fov_diameter(official):.1f}), {seconds[-1] * 1000:.0f} ms"
            )
        worst = items[int(np.argmin(ious))][0].name
        print(
            f"== {name}: {len(ious)} photos, IoU min {min(ious):.4f} ({worst}), median {np.median(ious):.4f}, "
            f"all ≥ 0.98: {min(ious) >= 0.98}; detect median {np.median(seconds) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
