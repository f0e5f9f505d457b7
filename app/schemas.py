"""What the API's bodies look like, for ``/docs`` and ``/openapi.json`` (and the UI's generated types).

The JSON answers are pydantic models. The binary ones (PNG maps) and GeoJSON are media types of the same
``200``. Every error is ``{"detail": "one readable line"}`` (:class:`ErrorBody`), whatever raised it. The
uploads are documented here too: the routers read multipart bodies with their own bounded parser
(:mod:`app.upload`), not FastAPI's form parsing, so the request body is declared by :func:`multipart_body`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.measure import GEOJSON_MEDIA_TYPE


def _unlisted_keys_allowed(schema: dict[str, Any]) -> None:
    # JSON Schema allows unlisted keys when it says nothing; saying `true` makes generated TS types index-signed.
    schema.pop("additionalProperties", None)


class _Open(BaseModel):
    """A documented answer that may carry more keys than it lists (the server adds; clients ignore)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_unlisted_keys_allowed)


class ErrorBody(BaseModel):
    """Every error answer: one readable line (the UI shows it as is)."""

    detail: str = Field(description="What went wrong and, where the client can act, what to do.")


class ModelSummary(_Open):
    """The served model in a few words (``/health``, ``/ready``)."""

    name: str | None
    version: str | None
    alias: str | None
    backend: str
    precision: str


class Health(_Open):
    """``GET /health``: answers while the model loads and under load."""

    status: Literal["ok"]
    ready: bool = Field(description="Whether a model is loaded (as `/ready`).")
    model: ModelSummary | None
    device: dict[str, Any] = Field(description="What the model runs on: type, name, threads or GPU memory.")


class RegistryStatus(_Open):
    """Whether the model registry answered the last look-up of the served alias."""

    reachable: bool | None = Field(
        description="False while the tracking server cannot be reached (the loaded model keeps serving); null "
        "before the first look-up or for a model URI without an alias."
    )
    error: str | None = Field(description="Why the last look-up failed, null when it worked.")


class Ready(_Open):
    """``GET /ready`` when a model is loaded."""

    ready: Literal[True]
    model: ModelSummary
    registry: RegistryStatus


class NotReady(_Open):
    """``GET /ready`` (503) while the model loads or after it failed to load."""

    ready: Literal[False]
    detail: str
    error: str | None = Field(description="The last load failure, or null while the first load runs.")


class ModelInfo(_Open):
    """``GET /model``: the served model, where it came from, what it runs on and its contract."""

    name: str | None
    version: str | None
    alias: str | None
    uri: str
    run_id: str | None
    backend: str = Field(description="The inference backend (`torch`, `onnx`, `onnx-int8`, `openvino`...).")
    precision: str
    device: dict[str, Any]
    batching: dict[str, Any] | None = Field(description="Dynamic batching statistics, null when off.")
    backend_details: dict[str, Any]
    load_seconds: float | None
    metrics: dict[str, float] = Field(description="The registered run's metrics (test F1 and so on).")
    contract: dict[str, Any] = Field(
        description="What the network takes and returns (threshold, size, mode...)."
    )
    inference: dict[str, Any] = Field(description="How photos reach the network: resize or sliding window.")
    registry: RegistryStatus


class FieldOfView(BaseModel):
    """Where the measurements counted."""

    mode: str = Field(
        description="`auto` (detected), `none` (the whole frame) or `uploaded`; `roi` for the region of interest "
        "alone, `auto+roi` or `uploaded+roi` for the two intersected."
    )
    bbox: tuple[int, int, int, int] | None = Field(
        description="[left, top, right, bottom] in pixel edges (right and bottom exclusive); null when empty."
    )
    diameter_px: float
    area_fraction: float


class PhysicalScaleInfo(_Open):
    """The physical scale the measurements used."""

    um_per_pixel: float
    source: Literal["um_per_pixel", "fov_degrees"]
    fov_degrees: float | None = None


class Readout(_Open):
    """Size, vessel fraction, field of view and vessel measurements of a mask inside its field (``/measure``)."""

    width: int
    height: int
    threshold: float
    vessel_fraction: float
    fov: FieldOfView
    scale: PhysicalScaleInfo | None
    measurements: dict[str, Any] = Field(
        description="Vessel area, skeleton length, calibre percentiles, tortuosity, branch points, fractal "
        "dimension; in µm and mm too when a scale was given."
    )


class PredictReadout(Readout):
    """``POST /predict?format=json``: the :class:`Readout` of the predicted mask, with the model's version."""

    model_version: str
    resample_scale: float = Field(description="The factor the photo was resampled by before the model.")


ROI_DESCRIPTION = (
    "A region of interest: a GeoJSON Polygon in pixel coordinates ([x, y], origin top-left, y down) as text. "
    "Predictions, measurements and GeoJSON are restricted to it as to a detected field of view."
)


class PhotoUpload(BaseModel):
    """The multipart/form-data body of ``POST /predict``."""

    file: bytes = Field(
        description="The photo: PNG, JPEG, TIFF, BMP or WebP (8 or 16 bit, grey or colour).",
        json_schema_extra={"format": "binary"},
    )
    roi: str | None = Field(None, description=ROI_DESCRIPTION)


class MapUpload(BaseModel):
    """The multipart/form-data body of ``POST /measure`` and ``POST /geojson``."""

    file: bytes = Field(
        description="A probability PNG from `/predict` or a {0, 255} mask PNG.",
        json_schema_extra={"format": "binary"},
    )
    fov: bytes | None = Field(
        None,
        description="The field of view PNG of `/predict?format=fov` (non-zero is inside); default: the frame.",
        json_schema_extra={"format": "binary"},
    )
    roi: str | None = Field(None, description=ROI_DESCRIPTION + " Intersected with `fov`.")


class AnnotationUpload(BaseModel):
    """The multipart/form-data body of ``POST /annotations``."""

    file: bytes = Field(
        description="The photo, as `/predict` takes it.", json_schema_extra={"format": "binary"}
    )
    annotation: bytes = Field(
        description="The corrected mask: a PNG of the photo's size (non-zero is vessel) or a GeoJSON in the "
        "project's convention (pixel coordinates, every coordinate inside the photo).",
        json_schema_extra={"format": "binary"},
    )
    annotator: str = Field(description="Who made the annotation.")
    status: Literal["draft", "final"] = Field("draft", description="`draft` or `final`.")
    roi: str | None = Field(
        None, description=ROI_DESCRIPTION + " Kept in the sidecar; training counts only it."
    )
    note: str | None = Field(None, description="A free note, kept in the sidecar.")
    threshold: float | None = Field(
        None, ge=0, le=1, description="The threshold the model's mask was cut at."
    )
    model_mask: bytes | None = Field(
        None,
        description="The model's thresholded mask (PNG, the photo's size), to count the pixels added and "
        "removed; without it the served model predicts it.",
        json_schema_extra={"format": "binary"},
    )


class RasterizeUpload(BaseModel):
    """The multipart/form-data body of ``POST /annotations/rasterize``."""

    annotation: bytes = Field(
        description="A GeoJSON annotation in the project's convention.",
        json_schema_extra={"format": "binary"},
    )
    width: int = Field(ge=1, description="The photo's width in pixels.")
    height: int = Field(ge=1, description="The photo's height in pixels.")


class AnnotationSettings(BaseModel):
    """``GET /annotations/settings``: whether annotations can be saved here, how many there are, and whether a
    worklist of photos to annotate is configured."""

    enabled: bool = Field(description="Whether the server has an annotation folder (VESSEL_ANNOTATIONS_DIR).")
    count: int = Field(description="Annotations held.")
    worklist: bool = Field(description="Whether `GET /worklist/next` offers photos (VESSEL_WORKLIST_DIR).")


class AnnotationSaved(_Open):
    """``POST /annotations``: what was saved."""

    id: str = Field(description="The annotation's id: the SHA-256 of the photo's pixels (64 hex characters).")
    version: int = Field(description="1 for a new photo; each later save of the same photo adds one.")
    count: int = Field(description="Annotations the folder now holds.")
    vessel_pixels: int
    added: int | None = Field(
        description="Vessel pixels added against the model's mask (null: no model mask)."
    )
    removed: int | None = Field(description="Vessel pixels removed against the model's mask.")
    status: Literal["draft", "final"]
    annotator: str


class AnnotationItem(_Open):
    """One saved annotation in ``GET /annotations``."""

    id: str
    version: int
    status: Literal["draft", "final"]
    annotator: str
    saved_at: str = Field(description="When it was saved (ISO 8601, UTC).")
    width: int
    height: int
    vessel_pixels: int
    note: str | None


class AnnotationList(BaseModel):
    """``GET /annotations``: every saved annotation, newest first."""

    count: int
    items: list[AnnotationItem]


class WorklistNext(BaseModel):
    """``GET /worklist/next``: the next photo without an annotation."""

    name: str = Field(description="Its file name: fetch it from `/worklist/photos/{name}`.")
    remaining: int = Field(description="Photos of the worklist without an annotation, this one included.")


def multipart_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring a required multipart/form-data request body shaped like ``model``."""
    schema = model.model_json_schema()
    for name, info in model.model_fields.items():
        field = schema["properties"][name]
        field.pop("default", None)
        if "bytes" in str(info.annotation):  # bytes fields are files on the wire
            field.pop("anyOf", None)
            field.update(type="string", format="binary")
        elif "anyOf" in field:  # an optional text or number field: sent or not, never null
            field.update(next(kind for kind in field.pop("anyOf") if kind.get("type") != "null"))
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_GEOJSON = {
    "schema": {"type": "object", "description": "A GeoJSON FeatureCollection of Polygons with holes."}
}

ERROR_DESCRIPTIONS = {
    400: "Not a multipart/form-data upload with field `file`, malformed, or an undecodable image.",
    401: "Missing or wrong API key (header `X-API-Key`), when the server has one.",
    408: "The request body did not arrive within VESSEL_BODY_TIMEOUT_S.",
    413: "The body is over VESSEL_MAX_UPLOAD_MB, or the image over VESSEL_MAX_PIXELS.",
    404: "No such annotation, or no photo of that name in the worklist (or the worklist is done).",
    415: "The upload is not an image this server decodes.",
    422: "A bad query parameter, a field sent twice, or nothing to measure (an empty field of view).",
    500: "An unexpected server error (logged).",
    503: "No model yet (still loading, or it failed to load), or the server is busy: retry after Retry-After.",
    504: "The prediction ran past VESSEL_REQUEST_TIMEOUT_S.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the error ``statuses`` (and 500), each an :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in sorted({*statuses, 500})
    }


# What /predict says about its answer (CORS exposes them to a UI on another origin).
MODEL_HEADERS = {
    "X-Model-Version": "The registry version of the model that answered (empty for a run or a folder).",
    "X-Model-Name": "Its registered name.",
    "X-Inference-Time-Ms": "Milliseconds in the model's forward passes (0 for `format=fov`).",
}


def success(
    description: str,
    model: type[BaseModel] | None = None,
    *,
    png: bool = False,
    geojson: bool = False,
    headers: dict[str, str] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The ``200`` of an endpoint answering ``model`` JSON and/or a PNG map and/or GeoJSON, with ``headers``
    (name: description)."""
    content: dict[str, Any] = {}
    if png:
        content["image/png"] = _BINARY
    if geojson:
        content[GEOJSON_MEDIA_TYPE] = _GEOJSON
    answer: dict[str, Any] = {"description": description, "content": content}
    if model is not None:
        answer["model"] = model
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return {200: answer}
