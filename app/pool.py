"""The bounded worker pools that run decoding, inference and encoding off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app.errors import Refusal
from app.guard import WorkToken


class InferencePool:
    """A fixed number of worker threads with a bounded queue; :meth:`run` raises 503 when it is full. Work runs
    in its request's context (its log lines name the request's id)."""

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
                raise Refusal(503, "server busy: too many predictions queued, retry shortly", "queue full")
            self.pending += 1
        context = contextvars.copy_context()
        future = self.executor.submit(context.run, _started, token, function, *args)
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


@dataclass(frozen=True)
class Pools:
    """The application's lanes: ``predict`` for photos, ``large`` (one thread, or None) for photos over
    ``VESSEL_LARGE_IMAGE_PIXELS`` so they never queue the small ones, ``measure`` for the map endpoints
    (they never wait behind the model)."""

    predict: InferencePool
    measure: InferencePool
    large: InferencePool | None

    def shutdown(self) -> None:
        """Stop every pool once its queued work is done."""
        for pool in (self.predict, self.measure, self.large):
            if pool is not None:
                pool.shutdown()
