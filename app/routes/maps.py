"""``POST /measure`` and ``POST /geojson``: measurements or vessel regions of a probability (or mask) PNG the
client already holds, inside its field of view; the model does not run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.dependencies import PoolsDep, SettingsDep, require_api_key
from app.measure import PhysicalScale
from app.pipeline import run_measurement
from app.pool import Pools
from app.query import MapThreshold, physical_scale
from app.roi import ROI_FIELD
from app.schemas import MapUpload, Readout, errors, multipart_body, success
from app.settings import Settings
from app.upload import read_file_fields

router = APIRouter(tags=["maps"], dependencies=[Depends(require_api_key)])
_ERRORS = errors(400, 401, 408, 413, 415, 422, 503)


async def _from_map(
    request: Request, settings: Settings, pools: Pools, threshold: float, scale: PhysicalScale, output: str
) -> Response:
    fields = await read_file_fields(
        request.headers.get("content-type", ""),
        request.stream(),
        settings.max_upload_bytes,
        ("fov", ROI_FIELD),
    )
    body, media_type = await pools.measure.run(
        run_measurement,
        fields["file"],
        fields.get("fov"),
        settings.max_pixels,
        threshold,
        scale,
        output,
        fields.get(ROI_FIELD),
    )
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})


@router.post(
    "/measure",
    response_class=Response,
    responses=success("The measurements JSON.", Readout) | _ERRORS,
    openapi_extra=multipart_body(MapUpload),
)
async def measure(
    request: Request,
    settings: SettingsDep,
    pools: PoolsDep,
    scale: Annotated[PhysicalScale, Depends(physical_scale)],
    threshold: MapThreshold = 0.5,
) -> Response:
    """Vessel measurements (the `measurements` JSON of `/predict?format=json`) of a probability PNG from
    `/predict` or a {0, 255} mask PNG (multipart field `file`) at `threshold`, inside the field of view PNG
    of `/predict?format=fov` (field `fov`; default the whole frame) and the region of interest (field `roi`,
    a GeoJSON Polygon in pixel coordinates; intersected with `fov`). The model does not run."""
    return await _from_map(request, settings, pools, threshold, scale, "json")


@router.post(
    "/geojson",
    response_class=Response,
    responses=success("The vessel regions as a GeoJSON FeatureCollection.", geojson=True) | _ERRORS,
    openapi_extra=multipart_body(MapUpload),
)
async def geojson(
    request: Request, settings: SettingsDep, pools: PoolsDep, threshold: MapThreshold = 0.5
) -> Response:
    """The vessel regions of a probability or mask PNG (field `file`, optional fields `fov` and `roi`, as for
    `/measure`) at `threshold`, as GeoJSON Polygons with holes in pixel coordinates. The model does not run."""
    return await _from_map(request, settings, pools, threshold, PhysicalScale(), "geojson")
