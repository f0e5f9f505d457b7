"""Every error answer is ``{"detail": "one line"}`` with the status of today's API: the exception handlers."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.guard import BodyTimeout, BodyTooLarge, WorkToken
from app.measure import MeasureError
from app.metrics import note_rejection
from app.upload import UploadError

log = logging.getLogger("vessel_serve")


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error answer: ``{"detail": message}``."""
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class Refusal(HTTPException):
    """An HTTPException that refuses or stops a request for a ``reason`` named in ``GET /metrics``."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail, headers=headers)
        self.reason = reason


def over_budget(token: WorkToken) -> HTTPException:
    """504 when the prediction ran past its budget, 503 when it never left the queue within it."""
    budget = f"{token.budget_s:g} s (VESSEL_REQUEST_TIMEOUT_S)"
    if token.started.is_set():
        message = f"prediction stopped: it took longer than its time budget of {budget}"
        return Refusal(504, message, "over budget")
    return Refusal(
        503,
        f"server busy: the prediction waited its whole time budget of {budget} in the queue, retry later",
        "waited out its budget",
        headers={"Retry-After": "5"},
    )


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    # FastAPI's own answer, with the refusal's reason noted.
    if isinstance(exc, Refusal):
        note_rejection(request.scope, exc.reason)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=exc.headers)
    if not isinstance(exc.detail, str):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return error(exc.status_code, exc.detail, exc.headers)


async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own 422 body is a list of objects; ours is one line naming the first bad parameter.
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error(422, f"invalid request: {where} {first.get('msg', '')}".strip())


async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
    note_rejection(request.scope, "body too large")
    return error(413, str(exc))


async def _bad_upload(request: Request, exc: UploadError) -> JSONResponse:
    if exc.status == 413:
        note_rejection(request.scope, "image too large")
    return error(exc.status, exc.message)


async def _unmeasurable(_request: Request, exc: MeasureError) -> JSONResponse:
    return error(422, str(exc))


async def _slow_body(request: Request, exc: BodyTimeout) -> JSONResponse:
    note_rejection(request.scope, exc.reason)
    return error(408, str(exc), headers={"Connection": "close"})


async def _gone(request: Request, _exc: ClientDisconnect) -> Response:
    # Not a server error: one line, and an answer nobody will read.
    client = f"{request.client.host}:{request.client.port}" if request.client else "client"
    log.info(
        "%s %s: %s hung up before the answer; its work is dropped", request.method, request.url.path, client
    )
    return Response(status_code=499)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return error(500, f"internal error: {type(exc).__name__}")


def add_exception_handlers(app: FastAPI) -> None:
    """Answer HTTP errors, validation errors, upload limits, unmeasurable maps, slow bodies, hang-ups and surprises
    as the API always has."""
    # Starlette types a handler as taking any Exception; it calls each with the class it is registered for.
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(BodyTooLarge, _too_large)  # type: ignore[arg-type]
    app.add_exception_handler(UploadError, _bad_upload)  # type: ignore[arg-type]
    app.add_exception_handler(MeasureError, _unmeasurable)  # type: ignore[arg-type]
    app.add_exception_handler(BodyTimeout, _slow_body)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
