"""The static UI at ``/`` (after the API routes), and JSON 405s for API paths called with the wrong method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.errors import error
from app.settings import Settings


def json_405(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Answer a path of ``routers`` (included without a prefix) or of ``app`` with the wrong method by a JSON
    405, not the UI's HTML 404 page at ``/``; the 405 routes sit on ``app``, outside the routers' dependencies
    (no API key is needed to learn the method)."""
    methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
    allowed: dict[str, set[str]] = {}
    for route in [*app.routes, *(route for router in routers for route in router.routes)]:
        if isinstance(route, APIRoute):
            allowed.setdefault(route.path, set()).update(route.methods or ())
    for path, ok in allowed.items():
        endpoint = _not_allowed(", ".join(sorted(ok)))
        app.add_api_route(path, endpoint, methods=sorted(methods - ok), include_in_schema=False)


def _not_allowed(allow: str) -> Any:
    async def not_allowed(request: Request) -> JSONResponse:
        message = f"{request.method} is not allowed on {request.url.path}: use {allow}"
        return error(405, message, {"Allow": allow})

    return not_allowed


def mount_ui(app: FastAPI, settings: Settings) -> None:
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
