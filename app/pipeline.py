"""The work a request does in a worker thread: decode, predict (or threshold) and encode one upload. The photo
goes through the model as ``vessel-predict`` sends it (:func:`~vessel_lightning.inference.photo.predict_photo`)."""

from __future__ import annotations

import json
import time

import numpy as np

from app.decode import decode_image
from app.guard import WorkToken, watched
from app.measure import (
    GEOJSON_MEDIA_TYPE,
    PhysicalScale,
    encode_png,
    field_from_png,
    field_of_view,
    geojson_bytes,
    mask_from_png,
    readout,
)
from app.model_manager import LoadedModel
from app.query import PredictOptions
from app.roi import restrict
from vessel_lightning.inference.photo import FieldMode, predict_photo
from vessel_lightning.inference.predictor import check_scale, probability_png_values, resample_factor


def run_prediction(
    model: LoadedModel,
    data: bytes,
    max_pixels: int,
    options: PredictOptions,
    threshold: float,
    token: WorkToken | None = None,
    roi: bytes | None = None,
) -> tuple[bytes, str, float]:
    """Decode, predict and encode one upload; returns the body, its media type and the model time in ms.

    ``roi``: a GeoJSON Polygon bounding the field (:mod:`app.roi`). With a ``token``, raises
    :class:`Cancelled` at the first check after it is cancelled or spent.
    """
    rgb = decode_image(data, max_pixels)
    field, mode = restrict(field_of_view(rgb, options.fov), options.fov, roi)
    if options.format == "fov":
        return encode_png(field), "image/png", 0.0
    inside: FieldMode | np.ndarray = "none" if mode == "none" else field
    scale = None  # the served predictor's own rule
    if options.resample is not None:  # the query's, checked against the contract by the route before queueing
        contract = model.predictor.contract
        within = None if mode == "none" else field
        scale = resample_factor(*check_scale(options.resample, contract), contract, rgb, within)
    predictor = model.predictor if token is None else watched(model.predictor, token)
    start = time.perf_counter()
    result = predict_photo(predictor, rgb, inside, threshold=threshold, scale=scale)
    inference_ms = (time.perf_counter() - start) * 1000
    if token is not None:
        token.check()
    if options.format == "probability":
        return encode_png(probability_png_values(result.prob)), "image/png", inference_ms
    mask = result.mask
    if options.format == "mask":
        return encode_png(mask), "image/png", inference_ms
    if options.format == "geojson":
        # The same properties as vessel-predict --format geojson writes.
        properties = {
            "model": model.predictor.info.uri,
            "model_version": model.version,
            "threshold": threshold,
        }
        return geojson_bytes(mask, properties), GEOJSON_MEDIA_TYPE, inference_ms
    body = readout(mask, field, mode, threshold, options.physical)
    body |= {"model_version": model.version, "resample_scale": round(result.scale, 4)}
    return json.dumps(body).encode(), "application/json", inference_ms


def run_measurement(
    data: bytes,
    fov: bytes | None,
    max_pixels: int,
    threshold: float,
    scale: PhysicalScale,
    output: str,
    roi: bytes | None = None,
) -> tuple[bytes, str]:
    """Threshold an uploaded probability (or mask) PNG inside the uploaded field (and region of interest);
    measurements or GeoJSON."""
    mask = mask_from_png(data, max_pixels, threshold)
    field = field_from_png(fov, mask.shape, max_pixels)
    field, mode = restrict(field, "none" if fov is None else "uploaded", roi)
    if output == "geojson":
        return geojson_bytes(mask & field, {"threshold": threshold}), GEOJSON_MEDIA_TYPE
    body = readout(mask, field, mode, threshold, scale)
    return json.dumps(body).encode(), "application/json"
