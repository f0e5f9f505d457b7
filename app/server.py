"""The HTTP API (FastAPI): health, readiness, model info, prediction and reload, plus the static UI at ``/``.

Decoding, inference and PNG encoding run in a bounded thread pool, so the event loop keeps answering
``/health`` under full load; requests beyond the queue limit get 503 instead of piling up memory. Photos over
``VESSEL_LARGE_IMAGE_PIXELS`` get a lane of their own, so one huge photo never queues the small ones behind it;
every prediction has a time budget, and stops when its client hangs up (``app.guard``).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from app.decode import DecodeError, decode_image, pixel_count
from app.guard import (
    BodyTimeout,
    BodyTooLarge,
    Cancelled,
    UploadGuardMiddleware,
    WorkToken,
    client_gone,
    watched,
)
from app.measure import (
    GEOJSON_MEDIA_TYPE,
    MapThreshold,
    PhysicalScale,
    PredictOptions,
    encode_png,
    field_from_png,
    field_of_view,
    geojson_bytes,
    mask_from_png,
    physical_scale,
    predict_options,
    readout,
    resample_factor,
)
from app.model_manager import LoadedModel, ModelManager
from app.settings import Settings, SettingsError
from app.upload import UploadError, read_file_field, read_file_fields
from vessel_lightning.inference.backends import BACKENDS
from vessel_lightning.inference.device import DEVICE_CHOICES, DeviceError, describe_device, resolve_device
from vessel_lightning.inference.predictor import probability_png_values, served_mask

API_KEY_HEADER = "X-API-Key"
MODEL_HEADERS = ("X-Model-Version", "X-Model-Name", "X-Inference-Time-Ms")

log = logging.getLogger("vessel_serve")


class InferencePool:
    """A fixed number of worker threads with a bounded queue; :meth:`run` raises 503 when it is full."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self.max_pending = workers + max_queue
        self.pending = 0
        self._lock = threading.Lock()

    async def run(self, function: Any, *args: Any, token: WorkToken | None = None) -> Any:
        """Run ``function(*args)`` in a worker and await its result.

        Cancelling the await drops the call if it is still queued; a running call stops at its next ``token``
        check. Either way its slot is freed only when the worker is done with it, so the bound stays true.
        """
        with self._lock:
            if self.pending >= self.max_pending:
                raise HTTPException(503, "server busy: too many predictions queued, retry shortly")
            self.pending += 1
        future = self.executor.submit(_started, token, function, *args)
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future: Any) -> None:
        with self._lock:
            self.pending -= 1

    def shutdown(self) -> None:
        """Stop the workers once queued work is done."""
        self.executor.shutdown(wait=True, cancel_futures=True)


def _started(token: WorkToken | None, function: Any, *args: Any) -> Any:
    if token is not None:
        token.check()  # its client left or its budget ran out while it waited in the queue
        token.started.set()
    return function(*args)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def run_prediction(
    model: LoadedModel,
    data: bytes,
    max_pixels: int,
    options: PredictOptions,
    threshold: float,
    token: WorkToken | None = None,
) -> tuple[bytes, str, float]:
    """Decode, predict and encode one upload; returns the body, its media type and the model time in ms.

    With a ``token``, raises :class:`Cancelled` at the first check after it is cancelled or spent.
    """
    rgb = decode_image(data, max_pixels)
    field = field_of_view(rgb, options.fov)
    if options.format == "fov":
        return encode_png(field), "image/png", 0.0
    inside = None if options.fov == "none" else field
    scale = resample_factor(model.predictor, rgb, inside, options)
    predictor = model.predictor if token is None else watched(model.predictor, token)
    start = time.perf_counter()
    prob = predictor.predict_proba(rgb, inside, scale=scale)
    inference_ms = (time.perf_counter() - start) * 1000
    if token is not None:
        token.check()
    if options.format == "probability":
        return encode_png(probability_png_values(prob)), "image/png", inference_ms
    mask = served_mask(prob, threshold)
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
    body = readout(mask, field, options.fov, threshold, options.physical)
    body |= {"model_version": model.version, "resample_scale": round(scale, 4)}
    return json.dumps(body).encode(), "application/json", inference_ms


def run_measurement(
    data: bytes, fov: bytes | None, max_pixels: int, threshold: float, scale: PhysicalScale, output: str
) -> tuple[bytes, str]:
    """Threshold an uploaded probability (or mask) PNG inside the uploaded field; measurements or GeoJSON."""
    mask = mask_from_png(data, max_pixels, threshold)
    field = field_from_png(fov, mask.shape, max_pixels)
    if output == "geojson":
        return geojson_bytes(mask & field, {"threshold": threshold}), GEOJSON_MEDIA_TYPE
    body = readout(mask, field, "none" if fov is None else "uploaded", threshold, scale)
    return json.dumps(body).encode(), "application/json"


def create_app(settings: Settings | None = None, manager: ModelManager | None = None) -> FastAPI:
    """The FastAPI application; the model loads in the background once the app starts (lifespan)."""
    settings = settings or Settings.from_env()
    manager = manager or ModelManager(settings)
    pool = InferencePool(settings.resolved_workers(manager.device.type), settings.max_queue)
    measure_pool = InferencePool(1, settings.max_queue)  # measurements never wait behind the model
    # One thread for photos over the large-image threshold: they wait for each other, never the small ones.
    large_pool = InferencePool(1, settings.large_queue) if settings.large_image_pixels else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            manager.stop()
            pool.shutdown()
            measure_pool.shutdown()
            if large_pool is not None:
                large_pool.shutdown()

    app = FastAPI(
        title="vessel-lightning", summary="Blood-vessel segmentation of eye photographs", lifespan=lifespan
    )
    app.state.settings, app.state.manager, app.state.pool = settings, manager, pool
    app.state.large_pool = large_pool

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"invalid request: {where} {first.get('msg', '')}".strip())

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _error(413, str(exc))

    @app.exception_handler(UploadError)
    async def _bad_upload(_request: Request, exc: UploadError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(BodyTimeout)
    async def _slow_body(_request: Request, exc: BodyTimeout) -> JSONResponse:
        return _error(408, str(exc), headers={"Connection": "close"})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> Response:
        # Not a server error: one line, and an answer nobody will read.
        client = f"{request.client.host}:{request.client.port}" if request.client else "client"
        log.info(
            "%s %s: %s hung up before the answer; its work is dropped",
            request.method,
            request.url.path,
            client,
        )
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, f"internal error: {type(exc).__name__}")

    async def require_api_key(request: Request) -> None:  # async: no worker-thread hop per request
        if settings.api_key is None:
            return
        given = request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")

    def loaded_model() -> LoadedModel:
        model = manager.current
        if model is None:
            reason = "the model is still loading" if manager.error is None else f"no model: {manager.error}"
            raise HTTPException(503, reason, headers={"Retry-After": "5"})
        return model

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: answers while the model loads and under load; says what the model runs on."""
        model = manager.current
        return {
            "status": "ok",
            "ready": model is not None,
            "model": model.summary() if model else None,
            "device": describe_device(manager.device),
        }

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """200 when a model is loaded, else 503 with the reason."""
        model = manager.current
        if model is None:
            detail = "the model is still loading" if manager.error is None else f"no model: {manager.error}"
            return JSONResponse({"ready": False, "detail": detail, "error": manager.error}, status_code=503)
        return JSONResponse({"ready": True, "model": model.summary()})

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        """Name, version, alias, run id, backend, load time, metrics and contract of the served model."""
        return loaded_model().describe()

    @app.post("/model/reload", dependencies=[Depends(require_api_key)])
    async def reload_model() -> dict[str, Any]:
        """Re-resolve the alias now and load its version if it moved; returns the ``/model`` JSON."""
        try:
            model = await asyncio.to_thread(manager.reload)
        except Exception as exc:
            raise HTTPException(503, f"reload failed: {manager.error or exc}") from exc
        return model.describe()

    @app.post("/predict", dependencies=[Depends(require_api_key)])
    async def predict(
        request: Request, options: Annotated[PredictOptions, Depends(predict_options)]
    ) -> Response:
        """Vessel probability PNG (default), mask PNG, JSON with measurements, GeoJSON, or the field of view PNG
        of the uploaded photo (multipart field `file`)."""
        model = loaded_model()  # one model for the whole request, whatever a reload does meanwhile
        threshold = model.predictor.threshold if options.threshold is None else options.threshold
        upload = await read_file_field(
            request.headers.get("content-type", ""), request.stream(), settings.max_upload_bytes
        )
        lane = pool
        if large_pool is not None and (pixel_count(upload) or 0) > settings.large_image_pixels:
            lane = large_pool
        token = WorkToken(settings.request_timeout_s)
        work = asyncio.ensure_future(
            lane.run(
                run_prediction, model, upload, settings.max_pixels, options, threshold, token, token=token
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
            raise _over_budget(token)
        try:
            body, media_type, inference_ms = work.result()
        except DecodeError as exc:
            raise HTTPException(exc.status, exc.message) from None
        except Cancelled:
            raise _over_budget(token) from None
        headers = {
            "X-Model-Version": model.version,
            "X-Model-Name": model.predictor.info.name or "",
            "X-Inference-Time-Ms": f"{inference_ms:.1f}",
            "Cache-Control": "no-store",
        }
        return Response(body, media_type=media_type, headers=headers)

    async def from_map(request: Request, threshold: float, scale: PhysicalScale, output: str) -> Response:
        fields = await _read_files(request, optional=("fov",))
        try:
            body, media_type = await measure_pool.run(
                run_measurement,
                fields["file"],
                fields.get("fov"),
                settings.max_pixels,
                threshold,
                scale,
                output,
            )
        except DecodeError as exc:
            raise HTTPException(exc.status, exc.message) from None
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})

    @app.post("/measure", dependencies=[Depends(require_api_key)])
    async def measure(
        request: Request,
        scale: Annotated[PhysicalScale, Depends(physical_scale)],
        threshold: MapThreshold = 0.5,
    ) -> Response:
        """Vessel measurements (the `measurements` JSON of `/predict?format=json`) of a probability PNG from
        `/predict` or a {0, 255} mask PNG (multipart field `file`) at `threshold`, inside the field of view PNG
        of `/predict?format=fov` (field `fov`; default the whole frame). The model does not run."""
        return await from_map(request, threshold, scale, "json")

    @app.post("/geojson", dependencies=[Depends(require_api_key)])
    async def geojson(request: Request, threshold: MapThreshold = 0.5) -> Response:
        """The vessel regions of a probability or mask PNG (field `file`, optional field `fov`, as for
        `/measure`) at `threshold`, as GeoJSON Polygons with holes in pixel coordinates. The model does not run."""
        return await from_map(request, threshold, PhysicalScale(), "geojson")

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=list(MODEL_HEADERS),
        )
    app.add_middleware(
        UploadGuardMiddleware,
        max_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
        max_uploads=settings.max_uploads,
    )
    _json_405(app)
    _mount_ui(app, settings)
    return app


async def _read_files(request: Request, optional: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The bytes of multipart field ``file`` (400 when absent) and of the ``optional`` fields sent, in memory
    (:func:`app.upload.read_file_fields`)."""
    return await read_file_fields(
        request.headers.get("content-type", ""),
        request.stream(),
        request.app.state.settings.max_upload_bytes,
        optional,
    )


def _over_budget(token: WorkToken) -> HTTPException:
    """504 when the prediction ran past its budget, 503 when it never left the queue within it."""
    budget = f"{token.budget_s:g} s (VESSEL_REQUEST_TIMEOUT_S)"
    if token.started.is_set():
        return HTTPException(504, f"prediction stopped: it took longer than its time budget of {budget}")
    return HTTPException(
        503,
        f"server busy: the prediction waited its whole time budget of {budget} in the queue, retry later",
        headers={"Retry-After": "5"},
    )


def _json_405(app: FastAPI) -> None:
    """Answer a known API path with the wrong method by a JSON 405, not the UI's HTML 404 page at ``/``."""
    from fastapi.routing import APIRoute

    methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
    allowed: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            allowed.setdefault(route.path, set()).update(route.methods)
    for path, ok in allowed.items():
        endpoint = _not_allowed(", ".join(sorted(ok)))
        app.add_api_route(path, endpoint, methods=sorted(methods - ok), include_in_schema=False)


def _not_allowed(allow: str) -> Any:
    async def not_allowed(request: Request) -> JSONResponse:
        message = f"{request.method} is not allowed on {request.url.path}: use {allow}"
        return _error(405, message, {"Allow": allow})

    return not_allowed


def _mount_ui(app: FastAPI, settings: Settings) -> None:
    """Serve the static UI export at ``/`` after the API routes, or a note at ``/`` when it is not built."""
    if (settings.ui_dir / "index.html").is_file():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=settings.ui_dir, html=True), name="ui")
        return

    @app.get("/", include_in_schema=False)
    async def ui_missing() -> dict[str, Any]:
        return {
            "status": "ok",
            "ui": "not built",
            "detail": "The web UI is not built (build ui/ into ui/out or set VESSEL_UI_DIR). "
            "The API answers at /health, /ready, /model, /predict and /docs.",
        }


def parse_args(argv: Sequence[str] | None, settings: Settings) -> Settings:
    """Apply ``vessel-serve`` flags on top of ``settings`` (from the environment)."""
    import dataclasses

    parser = argparse.ArgumentParser(
        prog="vessel-serve", description="Serve the registered vessel model over HTTP."
    )
    parser.add_argument(
        "--host", default=settings.host, help=f"bind address (VESSEL_HOST, default {settings.host})"
    )
    parser.add_argument(
        "--port", type=int, default=settings.port, help=f"port (VESSEL_PORT, default {settings.port})"
    )
    parser.add_argument("--model-uri", default=settings.model_uri, help="VESSEL_MODEL_URI")
    parser.add_argument("--backend", choices=BACKENDS, default=settings.backend, help="VESSEL_BACKEND")
    parser.add_argument("--tracking-uri", default=settings.tracking_uri, help="MLFLOW_TRACKING_URI")
    parser.add_argument(
        "--device",
        default=settings.device,
        help=f"{DEVICE_CHOICES} (VESSEL_DEVICE, default {settings.device}: CUDA when PyTorch sees a GPU)",
    )
    args = parser.parse_args(argv)
    resolve_device(args.device, "--device" if args.device != settings.device else "VESSEL_DEVICE")
    return dataclasses.replace(
        settings,
        device=args.device,
        host=args.host,
        port=args.port,
        model_uri=args.model_uri,
        backend=args.backend,
        tracking_uri=args.tracking_uri,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``vessel-serve``: run the API (and the UI when built) with uvicorn until interrupted."""
    import uvicorn

    try:
        settings = parse_args(argv, Settings.from_env())
    except (SettingsError, DeviceError) as exc:
        print(f"error: {exc}", flush=True)
        return 2
    if settings.backend not in BACKENDS:
        print(f"error: VESSEL_BACKEND={settings.backend!r}: choose one of {', '.join(BACKENDS)}", flush=True)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", workers=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
