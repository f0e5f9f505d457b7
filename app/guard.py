"""What keeps one careless or hostile client from costing the others: upload bounds and prediction budgets.

* :class:`UploadGuardMiddleware` bounds request bodies by bytes (each, and all arriving at once) and time (a
  deadline and a minimum rate), and how many may be stalled at once, so large or stalled uploads cannot hold
  memory and connections without end while a burst of fast ones is served.
* :class:`WorkToken` carries a prediction's time budget and its client's presence into the worker thread; the
  predictor's network checks it before every batch of windows, so work whose client left or whose budget ran
  out stops within one batch instead of running to the end.
* :func:`client_gone` resolves when the client hangs up after its body was read.
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import note_rejection
from vessel_lightning.inference.predictor import Predictor

# A body whose reader has waited this long for the client's next bytes counts as stalled; fast uploads, even
# under a busy event loop, wait milliseconds.
STALLED_S = 0.2
# A body is held to the minimum rate only after this long (a slow start, a TLS proxy's buffering).
RATE_GRACE_S = 10.0


class BodyTimeout(Exception):
    """The request body did not arrive within the body time budget, or arrived under the minimum rate."""

    def __init__(self, message: str, reason: str = "body timeout") -> None:
        super().__init__(message)
        self.reason = reason


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


@dataclass(eq=False)  # identity: each body is its own entry
class _Arrival:
    """One request body being received: since when its reader has been waiting on the client (None: not)."""

    waiting_since: float | None = None


class UploadGuardMiddleware:
    """Bounds every request body by bytes and time, never by how many arrive at once, so a burst of fast uploads
    is served while slow ones are cut off.

    * Bytes: over ``max_bytes`` is refused (413, by Content-Length before reading, else while streaming); bodies
      arriving at once may hold ``buffer_bytes`` together (each its Content-Length, or ``max_bytes`` when it has
      none); beyond that the next is refused at once (503).
    * Time: the whole body must arrive within ``body_timeout_s``, and after a grace of :data:`RATE_GRACE_S` at
      ``min_bytes_per_s`` on average (408 otherwise, and the connection is closed).
    * Stalls: when ``max_uploads`` bodies have each waited over :data:`STALLED_S` for their client's next bytes,
      the next upload is refused at once (503): stalled clients cannot pile up connections while they last.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        body_timeout_s: float,
        max_uploads: int,
        min_bytes_per_s: float = 0.0,
        buffer_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s
        self.max_uploads = max_uploads
        self.min_bytes_per_s = min_bytes_per_s
        self.buffer_bytes = buffer_bytes if buffer_bytes is not None else 16 * max_bytes
        self.reserved = 0  # bytes the bodies arriving now may hold together
        self.arriving: set[_Arrival] = set()

    def stalled(self) -> int:
        """Bodies now waiting over :data:`STALLED_S` for their client's next bytes."""
        now = time.monotonic()
        return sum(
            1
            for arrival in self.arriving
            if arrival.waiting_since is not None and now - arrival.waiting_since > STALLED_S
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            note_rejection(scope, "body too large")
            await _refuse(413, self._too_large(), scope, receive, send)
            return
        if declared in (None, b"0") and b"transfer-encoding" not in headers:  # no body: nothing to bound
            await self.app(scope, receive, send)
            return
        stalled = self.stalled()
        if stalled >= self.max_uploads:
            note_rejection(scope, "stalled uploads")
            busy = f"server busy: {stalled} uploads already arriving slowly, retry shortly"
            await _refuse(503, busy, scope, receive, send, {"Retry-After": "5"})
            return
        share = int(declared) if declared is not None and declared.isdigit() else self.max_bytes
        if self.reserved + share > self.buffer_bytes:
            note_rejection(scope, "upload buffer full")
            held = f"{self.reserved / 1024 / 1024:.1f} MB"
            busy = f"server busy: {held} of uploads already arriving, retry shortly"
            await _refuse(503, busy, scope, receive, send, {"Retry-After": "5"})
            return
        arrival = _Arrival()
        self.arriving.add(arrival)
        self.reserved += share
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.body_timeout_s
        seen = 0

        def arrived() -> None:
            if arrival in self.arriving:
                self.arriving.discard(arrival)
                self.reserved -= share

        def behind_at() -> float:
            """When the body falls under the minimum rate unless more bytes come (inf: no minimum)."""
            if self.min_bytes_per_s <= 0:
                return math.inf
            return start + RATE_GRACE_S + seen / self.min_bytes_per_s

        async def guarded_receive() -> Message:
            nonlocal seen
            if arrival not in self.arriving:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            cut = min(deadline, behind_at())
            arrival.waiting_since = time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(cut - loop.time(), 0))
            except TimeoutError:
                arrived()
                raise self._too_slow(cut >= deadline, seen, loop.time() - start) from None
            finally:
                arrival.waiting_since = None
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

    def _too_slow(self, out_of_time: bool, seen: int, elapsed: float) -> BodyTimeout:
        if out_of_time:
            return BodyTimeout(
                f"request body not received within {self.body_timeout_s:g} s: send it faster", "body timeout"
            )
        rate = seen / 1024 / max(elapsed, 1e-9)
        return BodyTimeout(
            f"request body arriving at {rate:.1f} KB/s, under the minimum of "
            f"{self.min_bytes_per_s / 1024:g} KB/s: send it faster",
            "body too slow",
        )


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
