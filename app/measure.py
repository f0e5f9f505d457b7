"""What the API reads from a prediction besides its pixels: the field of view, vessel measurements and GeoJSON.

``/predict`` builds its ``json``, ``geojson`` and ``fov`` answers here; ``POST /measure`` and ``POST /geojson``
answer from a probability (or mask) PNG the client already holds, without running the model, so the UI's
Measurements panel can follow its threshold slider. Detection, measurement and vectorising live in
``vessel_lightning``; this module only maps them onto HTTP (query parameters, bodies, status codes).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, HTTPException, Query

from app.decode import DecodeError, decode_image
from vessel_lightning.data.fov import detect_fov, fov_diameter
from vessel_lightning.data.geojson import mask_to_geojson
from vessel_lightning.inference.predictor import Predictor, served_mask
from vessel_lightning.measurements import measure_vessels, um_per_pixel_from_fov

GEOJSON_MEDIA_TYPE = "application/geo+json"

Format = Literal["probability", "mask", "json", "geojson", "fov"]
FieldMode = Literal["auto", "none"]


@dataclass(frozen=True)
class PhysicalScale:
    """The optional physical scale: ``um_per_pixel`` directly, or ``fov_degrees``, the field's angular diameter."""

    um_per_pixel: float | None = None
    fov_degrees: float | None = None


@dataclass(frozen=True)
class PredictOptions:
    """The query of ``POST /predict``: output format, threshold (None: the model's), field mode, physical scale
    (``um_per_pixel`` / ``fov_degrees``) and the model's input resampling (the query's ``scale``)."""

    format: Format = "probability"
    threshold: float | None = None
    fov: FieldMode = "auto"
    physical: PhysicalScale = PhysicalScale()
    resample: float | Literal["auto"] | None = None  # the query's `scale`; None: the served predictor's own


async def physical_scale(
    um_per_pixel: Annotated[
        float | None,
        Query(
            gt=0, le=1e5, description="Physical scale in µm per pixel: measurements also come in µm and mm."
        ),
    ] = None,
    fov_degrees: Annotated[
        float | None,
        Query(
            gt=0,
            le=200,
            description="Angular diameter of the field of view in degrees (fundus cameras: 30–50); the scale "
            "then follows from the field's diameter in pixels. Give this or `um_per_pixel`, not both.",
        ),
    ] = None,
) -> PhysicalScale:
    """The scale query parameters (FastAPI dependency, async: a sync one costs a worker-thread hop per
    request); 422 when both are given."""
    if um_per_pixel is not None and fov_degrees is not None:
        raise HTTPException(422, "give um_per_pixel or fov_degrees, not both")
    return PhysicalScale(um_per_pixel, fov_degrees)


async def predict_options(
    physical: Annotated[PhysicalScale, Depends(physical_scale)],
    format: Annotated[
        Format,
        Query(
            description="`probability`: 8-bit PNG of round(p·255); `mask`: {0, 255} PNG; `json`: size, vessel "
            "fraction, field of view and vessel measurements; `geojson`: vessel regions as Polygons with holes "
            "in pixel coordinates; `fov`: the field of view as a {0, 255} PNG (the model does not run)."
        ),
    ] = "probability",
    threshold: Annotated[
        float | None,
        Query(ge=0, le=1, description="Vessel where round(p·255)/255 ≥ threshold; default: the model's own."),
    ] = None,
    fov: Annotated[
        FieldMode,
        Query(
            description="Field of view: `auto` detects the camera's field (the bright disc of a fundus photo; "
            "the whole frame for photos that fill it) and zeroes predictions outside it; `none`: the whole frame."
        ),
    ] = "auto",
    resample: Annotated[
        str | None,
        Query(
            alias="scale",
            description="Tile models: resample the photo by this factor in (0, 4] before the model (vessels at "
            "the training calibre), or `auto`: by the training photos' field diameter (the contract's "
            "`fov_diameter`) over this photo's. Default 1.",
        ),
    ] = None,
) -> PredictOptions:
    """The query of ``POST /predict`` (FastAPI dependency); 422 for a ``scale`` that is neither ``auto`` nor a
    number in (0, 4]."""
    factor: float | Literal["auto"] | None = None
    if resample == "auto":
        factor = "auto"
    elif resample is not None:
        try:
            factor = float(resample)
        except ValueError:
            factor = math.nan
        if not 0 < factor <= 4:  # also rejects nan
            raise HTTPException(422, f"scale {resample!r} must be 'auto' or a number in (0, 4]")
    return PredictOptions(format, threshold, fov, physical, factor)


def resample_factor(
    predictor: Predictor, rgb: np.ndarray, field: np.ndarray | None, options: PredictOptions
) -> float:
    """The factor the photo is resampled by before the model: the query's ``scale`` (``auto`` by the library's
    rule, from ``field`` or, when None, the detected one) or the served predictor's own; 422 when the model
    cannot (a resize model, or ``auto`` without the training field's diameter in the contract)."""
    if options.resample is None:
        return predictor.scale_for(rgb, field)
    try:  # a view sharing the network: the library's own checks and auto rule for this request's scale
        view = Predictor(
            predictor.network, predictor.contract, device=predictor.device, scale=options.resample
        )
    except ValueError as exc:
        raise HTTPException(422, f"scale={options.resample}: {exc}") from None
    return view.scale_for(rgb, field)


MapThreshold = Annotated[
    float,
    Query(
        ge=0,
        le=1,
        description="Vessel where v/255 ≥ threshold (a {0, 255} mask gives the same at any 0 < t ≤ 1).",
    ),
]


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
    """The boolean field of ``rgb``: detected (``auto``) or the whole frame (``none``)."""
    if mode == "none":
        return np.ones(rgb.shape[:2], dtype=bool)
    return detect_fov(rgb)


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


def _scale(options: PhysicalScale, field: np.ndarray) -> tuple[float | None, dict[str, Any] | None]:
    if options.um_per_pixel is not None:
        return options.um_per_pixel, {"um_per_pixel": options.um_per_pixel, "source": "um_per_pixel"}
    if options.fov_degrees is not None:
        value = um_per_pixel_from_fov(fov_diameter(field), options.fov_degrees)
        return value, {"um_per_pixel": value, "source": "fov_degrees", "fov_degrees": options.fov_degrees}
    return None, None


def readout(
    mask: np.ndarray, field: np.ndarray, field_mode: str, threshold: float, physical: PhysicalScale
) -> dict[str, Any]:
    """The JSON both ``/predict?format=json`` and ``/measure`` return about a mask inside its field
    (``field_mode``: how the field was found, ``auto``, ``none`` or ``uploaded``); vessels outside it do not count.

    Raises HTTPException 422 when the field is empty.
    """
    if not field.any():
        raise HTTPException(
            422, "the field of view is empty: nothing to measure (fov=none measures the frame)"
        )
    mask = mask & field
    um, scale_json = _scale(physical, field)
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
    ``served_mask``) or {0, 255} mask PNG. Raises :class:`app.decode.DecodeError`."""
    values = decode_image(data, max_pixels)[..., 0]
    # The rule applied once per 8-bit value, then looked up: one pass over an 8 MP map instead of five.
    return served_mask(np.arange(256) / 255.0, threshold)[values]


def field_from_png(data: bytes | None, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
    """The uploaded field (non-zero is inside), or the whole frame when none was sent; 422 when its size differs
    from the map's or it is empty, :class:`DecodeError` (its message starting ``fov:``) when it is no image."""
    if data is None:
        return np.ones(shape, dtype=bool)
    try:
        field = decode_image(data, max_pixels)[..., 0] > 0
    except DecodeError as exc:
        raise DecodeError(exc.status, f"fov: {exc.message}") from None
    if field.shape != shape:
        raise HTTPException(
            422,
            f"fov is {field.shape[1]}x{field.shape[0]} but the map is {shape[1]}x{shape[0]}: send the field of "
            "the same photo",
        )
    if not field.any():
        raise HTTPException(422, "fov: the field of view is empty (no non-zero pixel)")
    return field
