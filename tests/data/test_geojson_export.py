"""mask_to_geojson: Polygons with holes in the reader's pixel convention; rasterizing them gives the mask back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vessel_lightning.data.geojson import mask_to_geojson, rasterize_geojson


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / (a | b).sum())


def test_a_single_pixel_is_the_unit_square_at_its_column_and_row() -> None:
    mask = np.zeros((4, 5), bool)
    mask[1, 3] = True  # row 1, column 3
    collection = mask_to_geojson(mask)
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 1
    feature = collection["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert feature["properties"] == {"class": "vessel", "area_px": 1}
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]
    assert sorted(map(tuple, ring[:-1])) == [(3, 1), (3, 2), (4, 1), (4, 2)]  # [x, y], y down


def test_a_ring_becomes_a_polygon_with_a_hole() -> None:
    mask = np.zeros((12, 12), bool)
    mask[2:10, 2:10] = True
    mask[4:8, 4:8] = False
    collection = mask_to_geojson(mask, properties={"model_version": "3"})
    (feature,) = collection["features"]
    outer, hole = feature["geometry"]["coordinates"]
    assert len(outer) == 5 and len(hole) == 5  # collinear pixel-edge vertices are simplified away
    assert feature["properties"]["area_px"] == 64 - 16 and feature["properties"]["model_version"] == "3"
    assert np.array_equal(rasterize_geojson(collection, mask.shape), mask)


@pytest.mark.parametrize("tolerance", [0.0, 0.5])
def test_random_masks_round_trip_exactly(tolerance: float) -> None:
    rng = np.random.default_rng(3)
    for density in (0.2, 0.5, 0.8):
        mask = rng.random((60, 75)) < density
        collection = json.loads(json.dumps(mask_to_geojson(mask, simplify_tolerance=tolerance)))
        assert np.array_equal(rasterize_geojson(collection, mask.shape).astype(bool), mask)
        coords = [
            v
            for f in collection["features"]
            for ring in f["geometry"]["coordinates"]
            for p in ring
            for v in p
        ]
        assert all(isinstance(v, int) for v in coords)  # vertices stay on the pixel grid


def test_thin_diagonal_vessels_round_trip_and_coarser_tolerances_trade_accuracy_for_size() -> None:
    from skimage.draw import line

    mask = np.zeros((200, 200), bool)
    for end in ((190, 60), (120, 199), (10, 199)):
        rr, cc = line(100, 0, *end)
        mask[rr, cc] = True
    exact = mask_to_geojson(mask)
    assert _iou(rasterize_geojson(exact, mask.shape), mask) == 1.0
    coarse = mask_to_geojson(mask, simplify_tolerance=2.0)
    assert len(json.dumps(coarse)) < len(json.dumps(exact))
    assert _iou(rasterize_geojson(coarse, mask.shape), mask) < 0.99  # the reason the default stays at 0.5


def test_empty_mask_and_bad_input() -> None:
    assert mask_to_geojson(np.zeros((5, 5), bool)) == {"type": "FeatureCollection", "features": []}
    with pytest.raises(ValueError, match="2-D"):
        mask_to_geojson(np.zeros((5, 5, 3), bool))
    with pytest.raises(ValueError, match="≥ 0"):
        mask_to_geojson(np.zeros((5, 5), bool), simplify_tolerance=-1)
