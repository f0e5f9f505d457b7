"""Annotations: save a corrected vessel mask with its photo (``POST /annotations``), list and read them back,
rasterise a GeoJSON with the project's own reader, and the worklist of photos still to annotate.

Storage is the library's (:class:`vessel_lightning.data.annotations.AnnotationStore`): the layout
``vessel-prepare data=geojson`` reads, atomic writes, versions. The server chooses every file name; no answer
carries a server path.
"""

from __future__ import annotations

import logging
import mimetypes
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import FileResponse, Response

from app.decode import decode_image, sniff_format
from app.dependencies import ManagerDep, PoolsDep, SettingsDep, require_api_key
from app.measure import GEOJSON_MEDIA_TYPE, encode_png
from app.model_manager import LoadedModel
from app.pipeline import run_prediction
from app.query import PredictOptions
from app.schemas import (
    AnnotationList,
    AnnotationSaved,
    AnnotationSettings,
    AnnotationUpload,
    RasterizeUpload,
    WorklistNext,
    errors,
    multipart_body,
    success,
)
from app.settings import Settings
from app.upload import UploadError, read_file_fields
from app.worklist import Worklist
from vessel_lightning.data.annotations import (
    AnnotationFolderError,
    AnnotationInputError,
    AnnotationStore,
    SavedAnnotation,
    UnknownAnnotation,
    check_id,
    mask_from_geojson,
    roi_from_geojson,
    roi_geometry,
)

log = logging.getLogger("vessel_serve")
router = APIRouter(tags=["annotations"])

ANNOTATIONS_ENV = Settings.env_name("annotations_dir")
WORKLIST_ENV = Settings.env_name("worklist_dir")
TEXT_FIELDS = ("annotator", "status", "roi", "note", "threshold")
MAX_SIDE = 100_000  # a rasterised mask's side; the pixel count is bounded by VESSEL_MAX_PIXELS too


def open_annotations(settings: Settings) -> AnnotationStore | None:
    """The annotation folder of ``settings`` (None when unset), checked and recovered at start-up; raises
    :class:`AnnotationFolderError` naming ``VESSEL_ANNOTATIONS_DIR`` when it is missing or not writable."""
    if settings.annotations_dir is None:
        return None
    return AnnotationStore(settings.annotations_dir, setting=ANNOTATIONS_ENV)


def open_worklist(settings: Settings) -> Worklist | None:
    """The worklist of ``settings`` (None when unset); raises :class:`AnnotationFolderError` naming
    ``VESSEL_WORKLIST_DIR`` when it is not a folder."""
    if settings.worklist_dir is None:
        return None
    if not settings.worklist_dir.is_dir():
        raise AnnotationFolderError(f"{WORKLIST_ENV}={settings.worklist_dir}: no such folder")
    return Worklist(settings.worklist_dir, settings.max_pixels)


def _store(request: Request) -> AnnotationStore:
    store = getattr(request.app.state, "annotations", None)
    if store is None:
        raise HTTPException(503, f"annotations are off: the server has no {ANNOTATIONS_ENV}")
    return store


def _worklist(request: Request) -> Worklist:
    worklist = getattr(request.app.state, "worklist", None)
    if worklist is None:
        raise HTTPException(503, f"no worklist: the server has no {WORKLIST_ENV}")
    return worklist


def _folder_failure(exc: AnnotationFolderError) -> HTTPException:
    # The log has the folder; the answer names the setting only (no server paths in answers).
    log.error("annotation folder: %s", exc)
    problem = str(exc).split(": ", 1)[-1]
    return HTTPException(503, f"{ANNOTATIONS_ENV}: {problem}")


StoreDep = Annotated[AnnotationStore, Depends(_store)]
AnnotationId = Annotated[str, Path(description="The annotation's id (64 hex characters).")]


@router.get("/annotations/settings", response_model=AnnotationSettings, responses=errors())
async def annotation_settings(request: Request) -> dict[str, Any]:
    """Whether this server saves annotations, how many it holds, and whether it has a worklist."""
    store = getattr(request.app.state, "annotations", None)
    return {
        "enabled": store is not None,
        "count": store.count() if store is not None else 0,
        "worklist": getattr(request.app.state, "worklist", None) is not None,
    }


def _text(fields: dict[str, bytes], name: str) -> str | None:
    if name not in fields:
        return None
    try:
        return fields[name].decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, f"{name}: not UTF-8 text") from None


def _mask_png(data: bytes, shape: tuple[int, int], max_pixels: int, field: str) -> np.ndarray:
    """The boolean mask of an uploaded mask PNG (non-zero in any channel is vessel), the photo's size."""
    try:
        values = decode_image(data, max_pixels)
    except UploadError as exc:
        raise UploadError(exc.status, f"{field}: {exc.message}") from None
    if values.shape[:2] != shape:
        raise AnnotationInputError(
            field,
            f"the mask is {values.shape[1]}x{values.shape[0]} but the photo is {shape[1]}x{shape[0]}: "
            "send a mask of the photo's size",
        )
    return np.asarray(values.any(axis=2))


def _annotation_mask(data: bytes, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
    if not data.strip():
        raise AnnotationInputError("annotation", "empty: send a mask PNG or a GeoJSON")
    if sniff_format(data) is not None:
        return _mask_png(data, shape, max_pixels, "annotation")
    return mask_from_geojson(data, shape, "annotation")


def _save(
    store: AnnotationStore,
    fields: dict[str, bytes],
    text: dict[str, str | None],
    threshold: float | None,
    model: LoadedModel | None,
    max_pixels: int,
) -> SavedAnnotation:
    """Decode, check and save one annotation upload (in a worker thread)."""
    try:
        rgb = decode_image(fields["file"], max_pixels)
    except UploadError as exc:
        raise UploadError(exc.status, f"file: {exc.message}") from None
    shape = rgb.shape[:2]
    mask = _annotation_mask(fields["annotation"], shape, max_pixels)
    roi = roi_mask = None
    if text["roi"] is not None:
        roi = roi_geometry(text["roi"])
        roi_mask = roi_from_geojson(roi, shape)
    model_info: dict[str, Any] = {}
    model_mask = None
    if "model_mask" in fields:
        model_mask = _mask_png(fields["model_mask"], shape, max_pixels, "model_mask")
        model_info["mask"] = "uploaded"
    if model is not None:
        info = model.predictor.info
        model_info |= {"name": info.name, "version": model.version, "uri": info.uri}
        if model_mask is None:  # the model's own mask at this threshold, as /predict?format=mask answers it
            cut = model.predictor.threshold if threshold is None else threshold
            roi_bytes = None if text["roi"] is None else text["roi"].encode()
            try:
                png, _, _ = run_prediction(
                    model, fields["file"], max_pixels, PredictOptions(format="mask"), cut, None, roi_bytes
                )
            except HTTPException as exc:  # e.g. a region outside the detected field: no counts, still saved
                log.info("annotation saved without the model's mask: %s", exc.detail)
            else:
                model_mask = _mask_png(png, shape, max_pixels, "model_mask")
                model_info["mask"] = "predicted"
    return store.save(
        rgb,
        mask,
        annotator=text["annotator"] or "",
        status=text["status"] or "draft",
        roi=roi,
        roi_mask=roi_mask,
        note=text["note"],
        threshold=threshold,
        model_mask=model_mask,
        model=model_info,
    )


SAVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnnotationSaved, "description": "A new version of an existing annotation."},
    201: {"description": "The photo's first annotation."},
}


@router.post(
    "/annotations",
    dependencies=[Depends(require_api_key)],
    status_code=201,
    response_model=AnnotationSaved,
    responses=SAVE_RESPONSES | errors(400, 401, 408, 413, 415, 422, 503),
    openapi_extra=multipart_body(AnnotationUpload),
)
async def save_annotation(
    request: Request,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    manager: ManagerDep,
    pools: PoolsDep,
) -> dict[str, Any]:
    """Save the corrected mask (field `annotation`: a mask PNG or GeoJSON) of the photo (field `file`) as the
    next version of that photo's annotation; the previous versions are kept. Nothing is written when any field
    is wrong."""
    fields = await read_file_fields(
        request.headers.get("content-type", ""),
        request.stream(),
        settings.max_upload_bytes,
        ("annotation", "model_mask", *TEXT_FIELDS),
    )
    if "annotation" not in fields:
        raise UploadError(400, "no field 'annotation': send the corrected mask (PNG or GeoJSON)")
    text = {name: _text(fields, name) for name in TEXT_FIELDS}
    if text["annotator"] is None:
        raise HTTPException(422, "annotator: missing; say who made this annotation")
    threshold = None
    if text["threshold"] is not None:
        try:
            threshold = float(text["threshold"])
        except ValueError:
            raise HTTPException(422, f"threshold: {text['threshold']!r} is not a number") from None
    try:
        saved = await pools.measure.run(
            _save, store, fields, text, threshold, manager.current, settings.max_pixels
        )
    except AnnotationInputError as exc:
        raise HTTPException(422, str(exc)) from None
    except UploadError as exc:
        raise HTTPException(exc.status, exc.message) from None
    except AnnotationFolderError as exc:
        raise _folder_failure(exc) from None
    response.status_code = 201 if saved.version == 1 else 200
    return {
        "id": saved.id,
        "version": saved.version,
        "count": saved.count,
        "vessel_pixels": saved.vessel_pixels,
        "added": saved.added,
        "removed": saved.removed,
        "status": saved.status,
        "annotator": saved.annotator,
    }


@router.get("/annotations", response_model=AnnotationList, responses=errors(503))
async def list_annotations(store: StoreDep) -> dict[str, Any]:
    """Every saved annotation (its current version), newest first."""
    keys = ("id", "version", "status", "annotator", "saved_at", "width", "height", "vessel_pixels", "note")
    items = [{key: item.get(key) for key in keys} for item in store.items()]
    return {"count": len(items), "items": items}


@router.post(
    "/annotations/rasterize",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses=success("The mask: an 8-bit PNG, 255 on vessel pixels, 0 elsewhere.", png=True)
    | errors(400, 401, 408, 413, 422),
    openapi_extra=multipart_body(RasterizeUpload),
)
async def rasterize(request: Request, settings: SettingsDep, pools: PoolsDep) -> Response:
    """The mask of a GeoJSON annotation (field `annotation`) on a `width` × `height` photo, rasterised by the
    project's own reader: the pixels the saved file and training see."""
    fields = await read_file_fields(
        request.headers.get("content-type", ""),
        request.stream(),
        settings.max_upload_bytes,
        ("annotation", "width", "height"),
        required="annotation",
    )
    size = []
    for name in ("width", "height"):
        raw = _text(fields, name)
        if raw is None:
            raise HTTPException(422, f"{name}: missing (the photo's size in pixels)")
        try:
            value = int(raw)
        except ValueError:
            raise HTTPException(422, f"{name}: {raw!r} is not an integer") from None
        if not 1 <= value <= MAX_SIDE:
            raise HTTPException(422, f"{name}: {value} is not in 1..{MAX_SIDE}")
        size.append(value)
    width, height = size
    if width * height > settings.max_pixels:
        raise HTTPException(413, f"{width}x{height} is over VESSEL_MAX_PIXELS ({settings.max_pixels})")
    try:
        mask = await pools.measure.run(mask_from_geojson, fields["annotation"], (height, width), "annotation")
    except AnnotationInputError as exc:
        raise HTTPException(422, str(exc)) from None
    return Response(encode_png(mask), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/annotations/{annotation_id}",
    response_class=Response,
    responses=success("The annotation's GeoJSON (its current version).", geojson=True)
    | errors(404, 422, 503),
)
async def get_annotation(annotation_id: AnnotationId, store: StoreDep) -> Response:
    """The GeoJSON of annotation `annotation_id`."""
    try:
        check_id(annotation_id)
        body = store.geojson(annotation_id)
    except AnnotationInputError as exc:
        raise HTTPException(422, str(exc)) from None
    except UnknownAnnotation:
        raise HTTPException(404, "no annotation with this id") from None
    return Response(body, media_type=GEOJSON_MEDIA_TYPE, headers={"Cache-Control": "no-store"})


@router.get("/worklist/next", response_model=WorklistNext, responses=errors(404, 503))
async def worklist_next(request: Request, pools: PoolsDep) -> dict[str, Any]:
    """The next photo of the worklist (by file name) without an annotation; 404 when the worklist is done."""
    worklist = _worklist(request)
    store = getattr(request.app.state, "annotations", None)
    annotated = set(store.ids()) if store is not None else set()
    name, remaining = await pools.measure.run(worklist.next, annotated)
    if name is None:
        raise HTTPException(404, "worklist done")
    return {"name": name, "remaining": remaining}


@router.get(
    "/worklist/photos/{name}",
    response_class=FileResponse,
    responses=success("The photo's file, as it is in the worklist.", png=True) | errors(404, 422, 503),
)
async def worklist_photo(name: str, request: Request) -> FileResponse:
    """The photo `name` of the worklist (a name from its listing; nothing else is served)."""
    path = _worklist(request).path(name)
    if path is None:
        raise HTTPException(404, "no photo of that name in the worklist")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-store"})
