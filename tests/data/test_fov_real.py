"""On the real data sets: the detected field of view against the official FOV masks, and the GeoJSON round trip
of real vessel masks (the champion's predictions are measured in experiments/bench_measure.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vessel_lightning.data.fov import detect_fov, fov_diameter
from vessel_lightning.data.geojson import mask_to_geojson, rasterize_geojson
from vessel_lightning.data.images import read_fov, read_gray, read_rgb

pytestmark = pytest.mark.data


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _check_fov(photo: Path, official_path: Path) -> None:
    official = read_fov(official_path).astype(bool)
    fov = detect_fov(read_rgb(photo))
    assert _iou(fov, official) >= 0.98, photo.name
    assert fov_diameter(fov) == pytest.approx(fov_diameter(official), rel=0.01), photo.name


def test_detected_field_matches_every_chase_db1_fov_mask(data_dir: Path) -> None:
    photos = sorted((data_dir / "CHASE_DB1" / "images").glob("*.jpg"))
    assert len(photos) == 28
    for photo in photos:
        _check_fov(photo, data_dir / "CHASE_DB1" / "mask" / f"{photo.stem}.png")


@pytest.mark.slow
def test_detected_field_matches_every_hrf_fov_mask(data_dir: Path) -> None:
    photos = sorted((data_dir / "HRF").glob("*/images/*"))
    assert len(photos) == 45
    for photo in photos:
        _check_fov(photo, photo.parent.parent / "mask" / f"{photo.stem}_mask.tif")


def test_real_vessel_masks_round_trip_through_geojson(data_dir: Path) -> None:
    for name in ("Image_11L", "Image_14R"):
        mask = read_gray(data_dir / "CHASE_DB1" / "1st_label" / f"{name}_1stHO.png") > 0
        back = rasterize_geojson(mask_to_geojson(mask), mask.shape).astype(bool)
        assert _iou(back, mask) >= 0.99 and np.array_equal(back, mask)
