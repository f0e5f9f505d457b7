"""Request ids and log lines: every request carries an id, every log line of that request names it.

:class:`RequestIdMiddleware` takes the client's ``X-Request-ID`` when it is sane (:func:`sane_request_id`) and
makes one otherwise, keeps it in a context variable for the request's task (and, through :mod:`app.pool`, its
worker threads) and returns it in the response's ``X-Request-ID``. :func:`logging_config` sends the service's and
uvicorn's records through one handler whose :class:`RequestIdFilter` stamps the id on each, as text or as one JSON
object per line (``VESSEL_LOG_FORMAT``).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# Ids the service passes on as given: UUIDs, trace ids, ULIDs; nothing that could break a log line or a header.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
NO_REQUEST = "-"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def sane_request_id(value: str | None) -> bool:
    """Whether a client's ``X-Request-ID`` may be used as the request's id: 1 to 128 characters of letters,
    digits and ``. _ : -``, starting with a letter or digit."""
    return value is not None and _SANE_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """A fresh request id (32 hex digits)."""
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives every HTTP request an id (the client's ``X-Request-ID`` when sane, else a new one), visible to its
    log records and returned in the response's ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope.get("headers") or [] if name == b"x-request-id"), None)
        text = given.decode("latin-1") if given is not None else None
        rid = text if text is not None and sane_request_id(text) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id``: the id of the request being served, or ``-`` outside any request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or NO_REQUEST
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, request id, and the exception
    when there is one; uvicorn's access records also give client, method, path and status as fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _http, status = args
            line |= {"client": client, "method": method, "path": path, "status": status}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(log_format: str = "text", level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` (also uvicorn's ``log_config``) sending the root logger and uvicorn's
    loggers through one stderr handler in ``log_format`` (``text`` or ``json``), each record stamped with its
    request id."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"service": formatter},
        "handlers": {
            "service": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "service",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["service"], "level": level},
        # uvicorn's own loggers keep their levels but write through the service's handler.
        "loggers": {
            name: {"handlers": [], "level": level, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
