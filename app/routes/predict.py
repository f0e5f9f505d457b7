"""``POST /predict``: the served model on one uploaded photo, within its lane, time budget and client's patience."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from app.decode import pixel_count
from app.dependencies import ManagerDep, PoolsDep, SettingsDep, current_model, require_api_key
from app.errors import over_budget
from app.guard import Cancelled, WorkToken, client_gone
from app.pipeline import run_prediction
from app.query import PredictOptions, predict_options
from app.roi import ROI_FIELD
from app.schemas import MODEL_HEADERS, PhotoUpload, PredictReadout, errors, multipart_body, success
from app.upload import read_file_fields
from vessel_lightning.inference.predictor import check_scale

router = APIRouter(tags=["prediction"])


@router.post(
    "/predict",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses=success(
        "By `format`: the probability or mask PNG, the field of view PNG, JSON measurements or GeoJSON.",
        PredictReadout,
        png=True,
        geojson=True,
        headers=MODEL_HEADERS,
    )
    | errors(400, 401, 408, 413, 415, 422, 503, 504),
    openapi_extra=multipart_body(PhotoUpload),
)
async def predict(
    request: Request,
    options: Annotated[PredictOptions, Depends(predict_options)],
    settings: SettingsDep,
    manager: ManagerDep,
    pools: PoolsDep,
) -> Response:
    """Vessel probability PNG (default), mask PNG, JSON with measurements, GeoJSON, or the field of view PNG
    of the uploaded photo (multipart field `file`), inside the region of interest when one is sent (field
    `roi`)."""
    # One model for the whole request, whatever a reload does meanwhile; taken after the query is validated.
    model = current_model(manager)
    threshold = model.predictor.threshold if options.threshold is None else options.threshold
    fields = await read_file_fields(
        request.headers.get("content-type", ""), request.stream(), settings.max_upload_bytes, (ROI_FIELD,)
    )
    upload, roi = fields["file"], fields.get(ROI_FIELD)
    if options.resample is not None and options.format != "fov":  # fov never resamples
        try:
            check_scale(options.resample, model.predictor.contract)
        except ValueError as exc:
            raise HTTPException(422, f"scale={options.resample}: {exc}") from None
    lane = pools.predict
    if pools.large is not None and (pixel_count(upload) or 0) > settings.large_image_pixels:
        lane = pools.large
    token = WorkToken(settings.request_timeout_s)
    work = asyncio.ensure_future(
        lane.run(
            run_prediction, model, upload, settings.max_pixels, options, threshold, token, roi, token=token
        )
    )
    gone = asyncio.ensure_future(client_gone(request))
    try:
        await asyncio.wait({work, gone}, timeout=token.remaining(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not work.done():
        token.cancel("client disconnected" if gone.done() else "over the time budget")
        work.cancel()
        if gone.done():
            raise ClientDisconnect()
        raise over_budget(token)
    try:
        body, media_type, inference_ms = work.result()
    except Cancelled:
        raise over_budget(token) from None
    if options.format != "fov":
        request.app.state.metrics.inference.labels(model.backend).observe(inference_ms / 1000)
    headers = {
        "X-Model-Version": model.version,
        "X-Model-Name": model.predictor.info.name or "",
        "X-Inference-Time-Ms": f"{inference_ms:.1f}",
        "Cache-Control": "no-store",
    }
    return Response(body, media_type=media_type, headers=headers)
