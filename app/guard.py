"""What keeps one careless or hostile client from costing the others: upload bounds and prediction budgets.

* :class:`UploadGuardMiddleware` bounds a request body's size, how long it may take to arrive and how many
  bodies may be arriving at once, so large or stalled uploads cannot hold memory and connections without end.
* :class:`WorkToken` carries a prediction's time budget and its client's presence into the worker thread; the
  predictor's network checks it before every batch of windows, so work whose client left or whose budget ran
  out stops within one batch instead of running to the end.
* :func:`client_gone` resolves when the client hangs up after its body was read.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vessel_lightning.inference.predictor import Predictor


class BodyTimeout(Exception):
    """The request body did not arrive within the body time budget."""


class BodyTooLarge(Exception):
    """The request body passed the upload limit while it was being read."""


class Cancelled(Exception):
    """A prediction stopped before its end: its client left or its time budget ran out (the message says)."""


class WorkToken:
    """A prediction's time budget (from its creation) and cancel flag, shared by the request and its worker."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.deadline = time.monotonic() + budget_s
        self.started = threading.Event()  # set by the worker: the request left the queue
        self._reason: str | None = None

    def remaining(self) -> float:
        """Seconds left in the budget (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def cancel(self, reason: str) -> None:
        """Ask the worker to stop at its next check."""
        self._reason = reason

    def check(self) -> None:
        """Raise :class:`Cancelled` when the request was cancelled or the budget is spent."""
        if self._reason is None and time.monotonic() > self.deadline:
            self._reason = f"over the {self.budget_s:g} s time budget"
        if self._reason is not None:
            raise Cancelled(self._reason)


class _CheckedNetwork:
    """Calls the network after checking the token: the predictor's only call site, once per batch of windows."""

    def __init__(self, network: Any, token: WorkToken) -> None:
        self.network = network
        self.token = token

    def __call__(self, batch: Any) -> Any:
        self.token.check()
        return self.network(batch)


def watched(predictor: Predictor, token: WorkToken) -> Predictor:
    """A shallow copy of ``predictor`` whose network checks ``token`` before each forward pass."""
    copied = copy.copy(predictor)
    copied.network = _CheckedNetwork(predictor.network, token)
    return copied


async def client_gone(request: Request) -> None:
    """Return once the client has hung up (call after the body was read; in-flight bodies are not consumed)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class UploadGuardMiddleware:
    """Bounds every request body: over ``max_bytes`` is refused (413, by Content-Length before reading, else
    while streaming), a body taking over ``body_timeout_s`` to arrive too (408), and beyond ``max_uploads``
    bodies arriving at once the next is refused at once (503): slow or stalled clients cannot hold connections
    and memory without end."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float, max_uploads: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s
        self.max_uploads = max_uploads
        self.receiving = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(413, self._too_large(), scope, receive, send)
            return
        if declared in (None, b"0") and b"transfer-encoding" not in headers:  # no body: nothing to bound
            await self.app(scope, receive, send)
            return
        if self.receiving >= self.max_uploads:
            busy = f"server busy: {self.max_uploads} uploads already arriving, retry shortly"
            await _refuse(503, busy, scope, receive, send, {"Retry-After": "5"})
            return
        self.receiving += 1
        arriving, seen = True, 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        def arrived() -> None:
            nonlocal arriving
            if arriving:
                arriving = False
                self.receiving -= 1

        async def guarded_receive() -> Message:
            nonlocal seen
            if not arriving:  # the body is in: what follows is the wait for a disconnect, which has no limit
                return await receive()
            try:
                message = await asyncio.wait_for(
                    receive(), max(deadline - asyncio.get_running_loop().time(), 0)
                )
            except TimeoutError:
                arrived()
                raise BodyTimeout(
                    f"request body not received within {self.body_timeout_s:g} s: send it faster"
                ) from None
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                arrived()
                raise BodyTooLarge(self._too_large())
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                arrived()
            return message

        try:
            await self.app(scope, guarded_receive, send)
        finally:
            arrived()

    def _too_large(self) -> str:
        return f"request body too large (limit {self.max_bytes / 1024 / 1024:g} MB)"


async def _refuse(
    status: int,
    message: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer without reading the body, and close the connection (what is left of the body is not read)."""
    response = JSONResponse(
        {"detail": message}, status_code=status, headers={"Connection": "close"} | (headers or {})
    )
    await response(scope, receive, send)
