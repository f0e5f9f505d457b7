"""GeoJSON rasterization: the real slit-lamp annotations, every accepted file shape, every rejected input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon, shape
from shapely.ops import unary_union

from vessel_lightning.data.geojson import AnnotationError, AnnotationWarning, rasterize_geojson

SLITLAMP_SHAPE = (1232, 1624)
# Pixel-centre sampling of staircase outlines: measured worst case 0.35 % over the 27 files.
AREA_TOLERANCE = 0.01


def _square(x0: float, y0: float, side: float) -> list[list[float]]:
    return [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]


def _feature(geometry: dict, **properties) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def _collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def _real_files(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "slitlamp" / "annotations").glob("*.geojson"))
    assert len(files) == 27
    return files


@pytest.mark.data
def test_real_annotations_match_the_area_of_their_union(data_dir: Path) -> None:
    for path in _real_files(data_dir):
        mask = rasterize_geojson(path, SLITLAMP_SHAPE)
        assert mask.shape == SLITLAMP_SHAPE and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        features = json.loads(path.read_text())["features"]
        union = unary_union([shape(f["geometry"]).buffer(0) for f in features])
        assert abs(int(mask.sum()) - union.area) <= AREA_TOLERANCE * union.area, path.name


@pytest.mark.data
def test_real_holes_are_empty(data_dir: Path) -> None:
    checked = 0
    for path in _real_files(data_dir):
        features = json.loads(path.read_text())["features"]
        mask = rasterize_geojson(path, SLITLAMP_SHAPE)
        others = unary_union([shape(f["geometry"]).buffer(0) for f in features])
        for feature in features:
            geometry = feature["geometry"]
            polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
            for rings in polygons:
                for hole in rings[1:]:
                    hole_poly = Polygon(hole)
                    # pixels whose centre is deep inside a real hole and not covered by any feature
                    inner = hole_poly.buffer(-1.0).difference(others)
                    if inner.is_empty or hole_poly.area < 20:
                        continue
                    point = inner.representative_point()
                    assert mask[math.floor(point.y), math.floor(point.x)] == 0, path.name
                    checked += 1
    assert checked >= 2  # 178.geojson and 191.geojson carry real holes


def test_overlapping_features_count_once() -> None:
    data = _collection(
        _feature({"type": "Polygon", "coordinates": [_square(10, 10, 20)]}),
        _feature({"type": "Polygon", "coordinates": [_square(20, 20, 20)]}),
    )
    mask = rasterize_geojson(data, (64, 64))
    assert mask.sum() == 20 * 20 * 2 - 10 * 10


def test_hole_is_cut_and_multipolygon_members_are_filled() -> None:
    ring = _square(10, 10, 30)
    hole = _square(20, 20, 10)[::-1]
    data = _feature({"type": "MultiPolygon", "coordinates": [[ring, hole], [_square(50, 50, 5)]]})
    mask = rasterize_geojson(data, (64, 64))
    assert mask.sum() == 30 * 30 - 10 * 10 + 5 * 5
    assert mask[25, 25] == 0 and mask[12, 12] == 1 and mask[52, 52] == 1


def test_fractional_coordinates_and_three_point_slivers_are_harmless() -> None:
    sliver = [[30.2, 30.1], [30.9, 30.4], [30.3, 30.8], [30.2, 30.1]]
    data = _feature({"type": "Polygon", "coordinates": [_square(10.5, 10.5, 30), sliver]})
    mask = rasterize_geojson(data, (64, 64))
    assert 30 * 30 - 2 <= mask.sum() <= 30 * 30 + 2


def test_cp1251_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "cyrillic.geojson"
    text = json.dumps(
        _collection(_feature({"type": "Polygon", "coordinates": [_square(2, 2, 10)]}, label="сосуд")),
        ensure_ascii=False,
    )
    path.write_bytes(text.encode("cp1251"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    assert rasterize_geojson(path, (16, 16)).sum() == 100


def test_bare_list_and_single_feature_files_load(tmp_path: Path) -> None:
    feature = _feature({"type": "Polygon", "coordinates": [_square(2, 2, 10)]})
    (tmp_path / "list.geojson").write_text(json.dumps([feature]))
    (tmp_path / "one.geojson").write_text(json.dumps(feature, indent=2))
    assert rasterize_geojson(tmp_path / "list.geojson", (16, 16)).sum() == 100
    assert rasterize_geojson(str(tmp_path / "one.geojson"), (16, 16)).sum() == 100
    assert rasterize_geojson([feature], (16, 16)).sum() == 100


@pytest.mark.parametrize("width", [1.0, 3.0, 5.0])
def test_linestring_is_drawn_at_the_configured_width(width: float) -> None:
    line = _feature({"type": "LineString", "coordinates": [[10, 50.5], [90, 50.5]]})
    mask = rasterize_geojson(line, (100, 100), line_width=width)
    column = mask[:, 50]
    assert column.sum() == pytest.approx(width, abs=1)
    assert mask.sum() == pytest.approx(80 * width + math.pi * (width / 2) ** 2, rel=0.08)


def test_multilinestring_draws_every_part() -> None:
    lines = _feature(
        {"type": "MultiLineString", "coordinates": [[[5, 10.5], [60, 10.5]], [[5, 40.5], [60, 40.5]]]}
    )
    mask = rasterize_geojson(lines, (64, 64), line_width=3)
    assert mask[10, 30] == 1 and mask[40, 30] == 1 and mask[25, 30] == 0


# ---- bad input: each names the file (and feature index) --------------------------------------------------


def _write(tmp_path: Path, content: str | dict | list) -> Path:
    path = tmp_path / "bad.geojson"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"type": "FeatureCollection", "features": [')
    with pytest.raises(AnnotationError, match=r"bad\.geojson: invalid JSON at line 1"):
        rasterize_geojson(path, (10, 10))


def test_json_that_is_not_geojson(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "not geojson", "items": [1, 2]})
    with pytest.raises(AnnotationError, match=r"bad\.geojson: not GeoJSON"):
        rasterize_geojson(path, (10, 10))
    path = _write(tmp_path, [{"type": "Polygon", "coordinates": [_square(1, 1, 3)]}])
    with pytest.raises(AnnotationError, match=r"bad\.geojson: feature 0: not a GeoJSON Feature"):
        rasterize_geojson(path, (10, 10))


def test_unknown_geometry_type_names_the_feature(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _collection(
            _feature({"type": "Polygon", "coordinates": [_square(1, 1, 3)]}),
            _feature({"type": "Circle", "coordinates": [5, 5]}),
        ),
    )
    with pytest.raises(AnnotationError, match=r"bad\.geojson: feature 1: unknown geometry type 'Circle'"):
        rasterize_geojson(path, (10, 10))


def test_ring_with_fewer_than_three_distinct_points(tmp_path: Path) -> None:
    ring = [[1, 1], [5, 5], [1, 1], [5, 5]]
    path = _write(tmp_path, _collection(_feature({"type": "Polygon", "coordinates": [ring]})))
    with pytest.raises(AnnotationError, match=r"bad\.geojson: feature 0: polygon ring has 2 distinct"):
        rasterize_geojson(path, (10, 10))


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_coordinates(tmp_path: Path, bad: str) -> None:
    ok = json.dumps(_feature({"type": "Polygon", "coordinates": [_square(1, 1, 3)]}))
    broken = (
        f'{{"type": "Feature", "properties": {{}}, "geometry": {{"type": "Polygon", "coordinates": '
        f"[[[1, 1], [{bad}, 2], [3, 3], [1, 1]]]}}}}"
    )
    path = _write(tmp_path, f'{{"type": "FeatureCollection", "features": [{ok}, {broken}]}}')
    with pytest.raises(AnnotationError, match=r"bad\.geojson: feature 1: non-finite coordinate"):
        rasterize_geojson(path, (10, 10))


def test_feature_outside_the_image_warns_or_fails_when_strict(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _collection(
            _feature({"type": "Polygon", "coordinates": [_square(1, 1, 3)]}),
            _feature({"type": "Polygon", "coordinates": [_square(500, 1, 3)]}),
        ),
    )
    with pytest.warns(AnnotationWarning, match=r"1 feature\(s\) entirely outside"):
        mask = rasterize_geojson(path, (10, 10))
    assert mask.sum() == 9
    with pytest.raises(AnnotationError, match=r"bad\.geojson: feature 1: feature lies entirely outside"):
        rasterize_geojson(path, (10, 10), strict=True)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"nope\.geojson: cannot read file"):
        rasterize_geojson(tmp_path / "nope.geojson", (10, 10))
