"""What the API computes from a photo's mask besides its pixels: field of view, measurements, GeoJSON, PNG bytes.

``/predict`` builds its ``json``, ``geojson`` and ``fov`` answers here; ``POST /measure`` and ``POST /geojson``
answer from a probability (or mask) PNG the client already holds, without running the model, so the UI's
Measurements panel can follow its threshold slider. Plain functions on arrays and bytes: detection, measurement
and vectorising come from ``vessel_lightning``; reading the query is :mod:`app.query`'s, and the status codes are
:mod:`app.errors`' (:class:`MeasureError` is a 422, :class:`~app.upload.UploadError` carries its own).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

import numpy as np

from app.decode import decode_image
from app.upload import UploadError
from vessel_lightning.data.fov import fov_diameter
from vessel_lightning.data.geojson import mask_to_geojson
from vessel_lightning.inference.photo import PhysicalScale
from vessel_lightning.inference.photo import field_of_view as photo_field
from vessel_lightning.inference.predictor import served_mask
from vessel_lightning.measurements import measure_vessels

GEOJSON_MEDIA_TYPE = "application/geo+json"

FieldMode = Literal["auto", "none"]


class MeasureError(ValueError):
    """A map and field that cannot be measured together: an empty field, or sizes that differ."""


@functools.cache
def _png_options() -> list[int]:
    import cv2

    # zlib level 1, no row filter, run-length matches: a 512² probability map encodes 2-4× faster than with
    # Pillow's level 1 (adaptive filters) and no larger; the same pixels (experiments/profile_predict.py).
    return [
        *(cv2.IMWRITE_PNG_COMPRESSION, 1),
        *(cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE),
        *(cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE),
    ]


def encode_png(array: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of ``array`` (uint8 or bool, bool as {0, 255})."""
    import cv2

    if array.dtype == bool:
        array = array.view(np.uint8) * np.uint8(255)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array, dtype=np.uint8), _png_options())
    if not ok:
        raise ValueError(f"PNG encoding failed for a {array.shape} {array.dtype} array")
    return encoded.tobytes()


def field_of_view(rgb: np.ndarray, mode: FieldMode) -> np.ndarray:
    """The boolean field of ``rgb`` as the API names its modes: detected (``auto``) or the whole frame (``none``)."""
    return photo_field(rgb, "none" if mode == "none" else "detect")


def describe_field(field: np.ndarray, mode: str) -> dict[str, Any]:
    """The field as JSON: mode, bounding box ``[left, top, right, bottom]`` in pixel edges (right and bottom
    exclusive, the GeoJSON convention), diameter in pixels and the fraction of the frame it covers."""
    rows, cols = np.flatnonzero(field.any(axis=1)), np.flatnonzero(field.any(axis=0))
    bbox = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1] if rows.size else None
    return {
        "mode": mode,
        "bbox": bbox,
        "diameter_px": round(float(fov_diameter(field)), 2) if rows.size else 0.0,
        "area_fraction": float(field.mean()),
    }


def readout(
    mask: np.ndarray, field: np.ndarray, field_mode: str, threshold: float, physical: PhysicalScale
) -> dict[str, Any]:
    """The JSON both ``/predict?format=json`` and ``/measure`` return about a mask inside its field
    (``field_mode``: how the field was found, ``auto``, ``none`` or ``uploaded``); vessels outside it do not count.

    Raises :class:`MeasureError` when the field is empty.
    """
    if not field.any():
        raise MeasureError("the field of view is empty: nothing to measure (fov=none measures the frame)")
    mask = mask & field
    um, scale_json = physical.resolve(field)
    return {
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "threshold": threshold,
        "vessel_fraction": float(mask.mean()),
        "fov": describe_field(field, field_mode),
        "scale": scale_json,
        "measurements": measure_vessels(mask, field, um_per_pixel=um).to_dict(),
    }


def geojson_bytes(mask: np.ndarray, properties: dict[str, Any]) -> bytes:
    """The vessel regions of ``mask`` as a GeoJSON FeatureCollection (compact UTF-8 JSON), ``properties`` (model,
    threshold) in every Feature."""
    return json.dumps(mask_to_geojson(mask, properties=properties), separators=(",", ":")).encode()


def mask_from_png(data: bytes, max_pixels: int, threshold: float) -> np.ndarray:
    """The vessel mask of an uploaded probability PNG (vessel where ``v / 255 ≥ threshold``, the rule of
    ``served_mask``) or {0, 255} mask PNG. Raises :class:`~app.upload.UploadError`."""
    values = decode_image(data, max_pixels)[..., 0]
    # The rule applied once per 8-bit value, then looked up: one pass over an 8 MP map instead of five.
    return served_mask(np.arange(256) / 255.0, threshold)[values]


def field_from_png(data: bytes | None, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
    """The uploaded field (non-zero is inside), or the whole frame when none was sent; :class:`MeasureError` when
    its size differs from the map's or it is empty, :class:`~app.upload.UploadError` (its message starting
    ``fov:``) when it is no image."""
    if data is None:
        return np.ones(shape, dtype=bool)
    try:
        field = decode_image(data, max_pixels)[..., 0] > 0
    except UploadError as exc:
        raise UploadError(exc.status, f"fov: {exc.message}") from None
    if field.shape != shape:
        raise MeasureError(
            f"fov is {field.shape[1]}x{field.shape[0]} but the map is {shape[1]}x{shape[0]}: send the field of "
            "the same photo",
        )
    if not field.any():
        raise MeasureError("fov: the field of view is empty (no non-zero pixel)")
    return field
