"""GeoJSON vessel annotations → binary masks.

Annotations come from slit-lamp labelling tools: Polygon / MultiPolygon features in image pixel coordinates
(``[x, y]``, origin top-left, y down), sometimes centre lines (LineString / MultiLineString) drawn at a
configurable width. Files may be a FeatureCollection, a bare list of Features or a single Feature, encoded in
UTF-8, cp1251, or UTF-16/UTF-32 (told by a byte-order mark or by the zero bytes JSON text begins with). A polygon
is its shell minus the union of its holes: a hole reaching outside its shell cuts only the part inside it, and
overlapping holes stay empty. Every problem is reported as an :class:`AnnotationError` that names the file and
the feature.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

POLYGON_TYPES = {"Polygon", "MultiPolygon"}
LINE_TYPES = {"LineString", "MultiLineString"}
POINT_TYPES = {"Point", "MultiPoint"}
KNOWN_TYPES = POLYGON_TYPES | LINE_TYPES | POINT_TYPES | {"GeometryCollection"}
# No image is a million pixels wide: a coordinate beyond this is corrupt, not a vessel off the edge.
MAX_COORDINATE = 1_000_000
MAX_COLLECTION_DEPTH = 32


class _Where(TypedDict):
    """Where a geometry sits: AnnotationError's keyword arguments."""

    source: str
    feature: int


class AnnotationError(ValueError):
    """An annotation that cannot be turned into a mask; the message names the file and feature index."""

    def __init__(self, problem: str, *, source: str = "<annotation>", feature: int | None = None) -> None:
        where = source if feature is None else f"{source}: feature {feature}"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.feature = feature
        self.problem = problem

    # A keyword-only constructor: rebuild faithfully in worker processes.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_annotation_error, (self.problem, self.source, self.feature))


def _rebuild_annotation_error(problem: str, source: str, feature: int | None) -> AnnotationError:
    return AnnotationError(problem, source=source, feature=feature)


class AnnotationWarning(UserWarning):
    """Something odd but harmless in an annotation (e.g. a feature entirely outside the image)."""


@dataclass(frozen=True)
class Annotation:
    """The features of one annotation file, in file order, and the name used in error messages."""

    features: list[dict[str, Any]]
    name: str


@dataclass(frozen=True)
class RasterizedAnnotation:
    """A rasterized annotation: the {0, 1} uint8 mask plus counts for the prepare summary."""

    mask: np.ndarray
    n_features: int
    outside: list[int]  # indices of features that lie entirely outside the image


def _decode(raw: bytes, name: str) -> str:
    # JSON text starts with ASCII, so a BOM or zero bytes in its first four bytes say UTF-16/32 (RFC 8259 §8.1).
    wide = json.detect_encoding(raw)
    if wide.startswith(("utf-16", "utf-32")):
        try:
            return raw.decode(wide)
        except UnicodeDecodeError as exc:
            raise AnnotationError(
                f"looks like {wide.upper()} text but does not decode as it ({exc.reason})", source=name
            ) from exc
    # Labelling tools in the public slit-lamp set wrote some files in cp1251 (Cyrillic properties).
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AnnotationError("not valid UTF-8 or cp1251 text", source=name)


def _features_of(data: Any, name: str) -> list[dict[str, Any]]:
    """The Features of a parsed GeoJSON document (FeatureCollection, list of Features or one Feature)."""
    items: Any
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        items = data.get("features")
        if not isinstance(items, list):
            raise AnnotationError("FeatureCollection has no 'features' list", source=name)
    elif isinstance(data, dict) and data.get("type") == "Feature":
        items = [data]
    elif isinstance(data, dict) and data.get("type") in KNOWN_TYPES:
        items = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise AnnotationError(
            f"not GeoJSON: expected a FeatureCollection, a list of Features or a Feature, got {kind!r}",
            source=name,
        )
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") != "Feature" or "geometry" not in item:
            raise AnnotationError(
                "not a GeoJSON Feature (needs type 'Feature' and 'geometry')", source=name, feature=index
            )
    return items


def read_annotation(source: str | Path | dict[str, Any] | Sequence[Any]) -> Annotation:
    """Load GeoJSON from a path, a parsed dict or a list of Features.

    Returns the Features in file order. Raises :class:`AnnotationError` naming the file for unreadable text,
    invalid JSON or JSON that is not GeoJSON.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        name = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise AnnotationError(f"cannot read file ({exc.strerror or exc})", source=name) from exc
        text = _decode(raw, name)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AnnotationError(
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", source=name
            ) from exc
        except RecursionError as exc:
            raise AnnotationError("invalid JSON: arrays or objects nested too deeply", source=name) from exc
        except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit conversion limit
            raise AnnotationError(f"invalid JSON: {exc}", source=name) from exc
    elif isinstance(source, dict | list | tuple):
        name, data = "<geojson>", list(source) if isinstance(source, tuple) else source
    else:
        raise TypeError(f"source must be a path, a dict or a list, not {type(source).__name__}")
    return Annotation(features=_features_of(data, name), name=name)


def _check_position(pos: Any, where: _Where) -> tuple[float, float]:
    if not isinstance(pos, list | tuple) or len(pos) < 2:
        raise AnnotationError(f"a position must be [x, y], got {pos!r}", **where)
    x, y = pos[0], pos[1]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y)):
        raise AnnotationError(f"coordinates must be numbers, got {pos!r}", **where)
    if not all(math.isfinite(v) for v in (x, y) if isinstance(v, float)):
        raise AnnotationError(f"non-finite coordinate {pos!r} (NaN or infinity)", **where)
    # Compared before any float(): a 400-digit integer overflows float, and 1e308 draws on the wrong side.
    for v in (x, y):
        if abs(v) > MAX_COORDINATE:
            # float() of a huge int overflows, and str() of one over 4300 digits raises: say its size instead.
            value = (
                f"{v:.3g}"
                if isinstance(v, float) or v.bit_length() < 1000
                else f"a {v.bit_length()}-bit integer"
            )
            raise AnnotationError(
                f"coordinate {value} is beyond ±{MAX_COORDINATE:,} px: not an image pixel position", **where
            )
    return float(x), float(y)


def _check_positions(seq: Any, what: str, where: _Where) -> list[tuple[float, float]]:
    if not isinstance(seq, list | tuple):
        raise AnnotationError(f"{what} must be a list of positions", **where)
    return [_check_position(p, where) for p in seq]


def _check_ring(ring: Any, where: _Where) -> list[tuple[float, float]]:
    points = _check_positions(ring, "a polygon ring", where)
    if len(set(points)) < 3:
        raise AnnotationError(
            f"polygon ring has {len(set(points))} distinct point(s), needs at least 3", **where
        )
    if points[0] != points[-1]:  # some tools omit the closing point; GeoJSON requires it
        points.append(points[0])
    return points


def _check_list(value: Any, what: str, where: _Where) -> list[Any]:
    if not isinstance(value, list | tuple) or not value:
        raise AnnotationError(f"{what} must be a non-empty list", **where)
    return list(value)


def _shapes(
    geometry: dict[str, Any], where: _Where, line_width: float, depth: int = 0
) -> Iterator[dict[str, Any]]:
    """Validated GeoJSON polygon dicts for one geometry (lines and points buffered to ``line_width``)."""
    from shapely.geometry import LineString, MultiPoint

    if not isinstance(geometry, dict):
        raise AnnotationError("geometry must be an object", **where)
    kind = geometry.get("type")
    if kind not in KNOWN_TYPES:
        raise AnnotationError(
            f"unknown geometry type {kind!r} (supported: {', '.join(sorted(KNOWN_TYPES))})", **where
        )
    if kind == "GeometryCollection":
        if depth >= MAX_COLLECTION_DEPTH:
            raise AnnotationError(f"GeometryCollections nested over {MAX_COLLECTION_DEPTH} deep", **where)
        for member in _check_list(geometry.get("geometries"), "GeometryCollection 'geometries'", where):
            yield from _shapes(member, where, line_width, depth + 1)
        return
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = _check_list(coords, "MultiPolygon coordinates", where)
    if kind in POLYGON_TYPES:
        for polygon in polygons:
            rings = [_check_ring(r, where) for r in _check_list(polygon, "Polygon coordinates", where)]
            yield {"type": "Polygon", "coordinates": rings}
        return
    radius = line_width / 2.0
    if kind in LINE_TYPES:
        lines = (
            [coords] if kind == "LineString" else _check_list(coords, "MultiLineString coordinates", where)
        )
        for line in lines:
            points = _check_positions(line, "a line", where)
            if len(set(points)) < 2:
                raise AnnotationError("line has fewer than 2 distinct points", **where)
            yield from _polygons(LineString(points).buffer(radius, cap_style="round", join_style="round"))
        return
    points = (
        [_check_position(coords, where)] if kind == "Point" else _check_positions(coords, "MultiPoint", where)
    )
    yield from _polygons(MultiPoint(points).buffer(radius))


def _polygons(geometry: Any) -> Iterator[dict[str, Any]]:
    """Polygon dicts of a shapely (Multi)Polygon, so every burned shape has the same structure."""
    from shapely.geometry import mapping

    for part in getattr(geometry, "geoms", [geometry]):
        if not part.is_empty:
            yield mapping(part)


def _outside(shapes: list[dict[str, Any]], height: int, width: int) -> bool:
    xs = [x for s in shapes for ring in s["coordinates"] for x, _ in ring]
    ys = [y for s in shapes for ring in s["coordinates"] for _, y in ring]
    return max(xs) <= 0 or max(ys) <= 0 or min(xs) >= width or min(ys) >= height


def rasterize_annotation(
    annotation: Annotation, shape: tuple[int, int], *, line_width: float = 3.0, strict: bool = False
) -> RasterizedAnnotation:
    """Rasterize every feature of ``annotation`` onto a ``(height, width)`` grid as their union.

    A pixel is a vessel when its centre lies inside a polygon's shell and inside none of its holes (a hole
    reaching outside its shell cuts only within it; overlapping holes stay empty); features are OR-ed, so
    overlaps count once. Features entirely outside the image are counted (an error when
    ``strict``). Raises :class:`AnnotationError` naming the file and feature index for invalid geometry.
    """
    from rasterio.features import rasterize

    height, width = int(shape[0]), int(shape[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"shape must be positive (height, width), got {shape!r}")
    burn: list[tuple[dict[str, Any], int]] = []
    holed: list[list[list[tuple[float, float]]]] = []
    outside: list[int] = []
    for index, feature in enumerate(annotation.features):
        where: _Where = {"source": annotation.name, "feature": index}
        if feature["geometry"] is None:  # GeoJSON allows unlocated features; they draw nothing
            continue
        shapes = list(_shapes(feature["geometry"], where, line_width))
        if _outside(shapes, height, width):
            if strict:
                raise AnnotationError(f"feature lies entirely outside the {width}x{height} image", **where)
            outside.append(index)
            continue
        for s in shapes:
            if len(s["coordinates"]) > 1:
                holed.append(s["coordinates"])
            else:
                burn.append((s, 1))
    if burn:
        mask = rasterize(burn, out_shape=(height, width), fill=0, dtype="uint8")
    else:
        mask = np.zeros((height, width), dtype=np.uint8)
    for rings in holed:
        _burn_shell_minus_holes(mask, rings)
    return RasterizedAnnotation(mask=mask, n_features=len(annotation.features), outside=outside)


def _burn_shell_minus_holes(mask: np.ndarray, rings: list[Any]) -> None:
    """OR into ``mask`` the pixels whose centre is inside ``rings[0]`` and inside none of ``rings[1:]``.

    GDAL fills a ring set even-odd, which would paint a hole's part outside its shell and the overlap of two
    holes; rasterizing the shell and the holes' union separately gives the GeoJSON meaning instead.
    """
    from rasterio.features import rasterize
    from rasterio.transform import Affine

    height, width = mask.shape
    xs = [x for x, _ in rings[0]]
    ys = [y for _, y in rings[0]]
    left, top = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    right, bottom = min(width, math.ceil(max(xs)) + 1), min(height, math.ceil(max(ys)) + 1)
    if left >= right or top >= bottom:
        return
    # Only the shell's bounding box, in the image's pixel grid (the translation keeps pixel centres aligned).
    window = {"out_shape": (bottom - top, right - left), "transform": Affine.translation(left, top)}
    shell = rasterize([({"type": "Polygon", "coordinates": [rings[0]]}, 1)], fill=0, dtype="uint8", **window)
    holes = rasterize(
        [({"type": "Polygon", "coordinates": [ring]}, 1) for ring in rings[1:]],
        fill=0,
        dtype="uint8",
        **window,
    )
    mask[top:bottom, left:right] |= shell & (1 - holes)


def rasterize_geojson(
    source: str | Path | dict[str, Any] | Sequence[Any],
    shape: tuple[int, int],
    *,
    line_width: float = 3.0,
    strict: bool = False,
) -> np.ndarray:
    """Rasterize a GeoJSON annotation to a binary vessel mask.

    ``source`` is a path, a parsed GeoJSON dict or a list of Features; ``shape`` is ``(height, width)``.
    Returns a 2-D uint8 array with 1 on vessel pixels and 0 elsewhere: the union of all features, holes cut.
    Lines are drawn ``line_width`` pixels wide. Features entirely outside the image raise a warning
    (an :class:`AnnotationError` when ``strict``).
    """
    result = rasterize_annotation(read_annotation(source), shape, line_width=line_width, strict=strict)
    if result.outside:
        name = source if isinstance(source, str | Path) else "<geojson>"
        warnings.warn(
            f"{name}: {len(result.outside)} feature(s) entirely outside the image (indices {result.outside})",
            AnnotationWarning,
            stacklevel=2,
        )
    return result.mask


DEFAULT_SIMPLIFY_TOLERANCE = 0.5  # px; keeps the round trip at IoU ≥ 0.99 on real predictions (RESULTS.md)


def mask_to_geojson(
    mask: np.ndarray,
    *,
    simplify_tolerance: float = DEFAULT_SIMPLIFY_TOLERANCE,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A binary mask as a GeoJSON FeatureCollection of vessel Polygons (with holes), the reader's inverse.

    Coordinates follow :func:`rasterize_geojson`: ``[x, y]`` in pixels, origin at the top-left corner of the
    image, y down, pixel ``(row r, column c)`` the unit square ``[c, c+1] × [r, r+1]``. Each 4-connected vessel
    region is one Feature; its outline runs along pixel edges and is simplified (Douglas–Peucker, topology
    kept) within ``simplify_tolerance`` px, so every vertex stays on the pixel grid (integer coordinates).
    Rasterizing the result with :func:`rasterize_geojson` gives back the mask exactly at tolerance 0 and within
    IoU 0.99 at the default. ``properties`` (e.g. the model version) is copied into every Feature, beside
    ``"class": "vessel"`` and ``"area_px"``.
    """
    from rasterio.features import shapes
    from shapely.geometry import mapping, shape

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"the mask must be 2-D, got shape {mask.shape}")
    if simplify_tolerance < 0:
        raise ValueError(f"simplify_tolerance must be ≥ 0, got {simplify_tolerance}")
    binary = mask.astype(bool).astype(np.uint8)
    features: list[dict[str, Any]] = []
    for geometry, value in shapes(binary, mask=binary.astype(bool), connectivity=4):
        if value != 1:
            continue
        polygon = shape(geometry)
        area = round(polygon.area)
        if simplify_tolerance > 0:
            polygon = polygon.simplify(simplify_tolerance, preserve_topology=True)
        if polygon.is_empty:
            continue
        rings = mapping(polygon)["coordinates"]
        coordinates = [[[round(x), round(y)] for x, y in ring] for ring in rings]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": coordinates},
                "properties": {"class": "vessel", "area_px": area, **(properties or {})},
            }
        )
    return {"type": "FeatureCollection", "features": features}
