"""What keeps one careless or hostile client from costing the others: upload bounds and prediction budgets.

* :class:`UploadGuardMiddleware` bounds how long a request body may take to arrive and how many bodies may be
  arriving at once, so stalled uploads cannot hold connections open without end.
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

BODY_METHODS = (b"POST", b"PUT", b"PATCH")


class BodyTimeout(Exception):
    """The request body did not arrive within the body time budget."""


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
    """Refuses a request body that takes over ``body_timeout_s`` to arrive (408) and more than ``max_uploads``
    bodies arriving at once (503), so slow or stalled clients cannot hold connections and memory without end."""

    def __init__(self, app: ASGIApp, body_timeout_s: float, max_uploads: int) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.max_uploads = max_uploads
        self.receiving = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        has_body = scope["type"] == "http" and scope["method"].encode() in BODY_METHODS
        has_body = has_body and (
            headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        )
        if not has_body:
            await self.app(scope, receive, send)
            return
        if self.receiving >= self.max_uploads:
            message = f"server busy: {self.max_uploads} uploads already arriving, retry shortly"
            response = JSONResponse(
                {"detail": message}, status_code=503, headers={"Retry-After": "5", "Connection": "close"}
            )
            await response(scope, receive, send)
            return
        self.receiving += 1
        arriving = True
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        def done() -> None:
            nonlocal arriving
            if arriving:
                arriving = False
                self.receiving -= 1

        async def timed_receive() -> Message:
            if not arriving:  # the body is in: what follows is the wait for a disconnect, which has no limit
                return await receive()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except TimeoutError:
                done()
                raise BodyTimeout(
                    f"request body not received within {self.body_timeout_s:g} s: send it faster"
                ) from None
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                done()
            return message

        try:
            await self.app(scope, timed_receive, send)
        finally:
            done()
