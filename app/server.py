"""The HTTP API (FastAPI): health, readiness, model info, prediction and reload, plus the static UI at ``/``.

``create_app`` builds the shared state (settings, model manager, worker pools) on ``app.state`` and includes
the routers of :mod:`app.routes`, whose dependencies (:mod:`app.dependencies`) read it. Decoding, inference
and PNG encoding run in bounded thread pools (:mod:`app.pool`), so the event loop keeps answering ``/health``
under full load; requests beyond the queue limit get 503 instead of piling up memory. Photos over
``VESSEL_LARGE_IMAGE_PIXELS`` get a lane of their own, so one huge photo never queues the small ones behind it;
every prediction has a time budget, and stops when its client hangs up (``app.guard``).
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.errors import add_exception_handlers
from app.guard import UploadGuardMiddleware
from app.logs import REQUEST_ID_HEADER, RequestIdMiddleware, logging_config
from app.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from app.model_manager import ModelManager
from app.pool import InferencePool, Pools
from app.routes import annotations as annotation_routes
from app.routes import maps, model, predict, ui
from app.schemas import MODEL_HEADERS
from app.settings import Settings, SettingsError
from vessel_lightning.data.annotations import AnnotationFolderError
from vessel_lightning.inference.backends import resolve_device
from vessel_lightning.inference.settings import BACKENDS, DEVICE_CHOICES, DeviceError

log = logging.getLogger("vessel_serve")


def create_app(settings: Settings | None = None, manager: ModelManager | None = None) -> FastAPI:
    """The FastAPI application for ``settings`` (default: :meth:`Settings.from_env`) and ``manager`` (default:
    one for ``settings``); the model loads in the background once the app starts (lifespan)."""
    settings = settings or Settings.from_env()
    manager = manager or ModelManager(settings)
    pools = Pools(
        predict=InferencePool(settings.resolved_workers(manager.device_type), settings.max_queue),
        measure=InferencePool(1, settings.max_queue),  # measurements never wait behind the model
        # One thread for photos over the large-image threshold: they wait for each other, never the small ones.
        large=InferencePool(1, settings.large_queue) if settings.large_image_pixels else None,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            manager.stop()
            pools.shutdown()

    app = FastAPI(
        title="vessel-lightning", summary="Blood-vessel segmentation of eye photographs", lifespan=lifespan
    )
    app.state.settings, app.state.manager, app.state.pools = settings, manager, pools
    app.state.metrics = metrics = Metrics(manager, pools)
    # A missing or read-only annotation folder stops the start (AnnotationFolderError names the variable).
    app.state.annotations = annotation_routes.open_annotations(settings)
    app.state.worklist = annotation_routes.open_worklist(settings)
    add_exception_handlers(app)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    routers = (model.router, predict.router, maps.router, annotation_routes.router)
    for router in routers:
        app.include_router(router)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=[*MODEL_HEADERS, REQUEST_ID_HEADER],
        )
    app.add_middleware(
        UploadGuardMiddleware,
        max_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
        max_uploads=settings.max_uploads,
        min_bytes_per_s=settings.min_upload_kbps * 1024,
        buffer_bytes=settings.upload_buffer_bytes,
    )
    # Outermost last: every answer, the guard's refusals included, is counted and carries the request's id.
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    app.add_middleware(RequestIdMiddleware)
    ui.json_405(app, routers)
    ui.mount_ui(app, settings)
    return app


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
    config = logging_config(settings.log_format)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)  # warnings are log lines too (JSON when asked), not stray stderr text
    os.environ.setdefault(
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"
    )  # a server has no terminal to draw on
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    try:
        app = create_app(settings)
    except AnnotationFolderError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=config, workers=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
