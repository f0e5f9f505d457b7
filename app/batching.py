"""Dynamic batching: forward calls that arrive together from several threads run as one batch.

What Triton and TorchServe call dynamic batching. :class:`DynamicBatcher` wraps a network behind the same
call the Predictor makes (PyTorch tensors on a GPU, arrays on the CPU), so concurrent requests (each in its own inference worker thread) hand
their window batches to one batching thread. That thread takes the first waiting call, waits at most ``max_wait_ms``
for more calls of the same window shape until ``max_batch`` windows are gathered, runs them through the network in
one forward and hands each caller its slice. A GPU then works on 16 windows at once instead of queueing one photo
at a time. A single call larger than ``max_batch`` runs alone; calls of another shape wait for the next batch.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Call:
    batch: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


def _concatenate(batches: list[Any]) -> Any:
    if isinstance(batches[0], np.ndarray):
        return np.concatenate(batches)
    import torch  # a GPU network's batches are tensors

    with torch.inference_mode():
        return torch.cat(batches)


class DynamicBatcher:
    """``network`` behind a batching thread; ``forward`` may be called from any number of threads at once.

    ``max_batch`` bounds the windows per forward; ``max_wait_ms`` bounds how long the first call of a batch waits
    for company (it never waits when the batch is already full). :meth:`stats` counts batches and calls, :meth:`batch_sizes` their sizes.
    """

    def __init__(self, network: Any, max_batch: int = 16, max_wait_ms: float = 3.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch} must be ≥ 1")
        if not 0 <= max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms {max_wait_ms} must be within [0, 1000]")
        self.network = network
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[_Call | None] = queue.Queue()
        self._carry: _Call | None = None
        self._lock = threading.Lock()
        self._batches = 0
        self._calls = 0
        self._windows = 0
        self._largest = 0
        self._sizes: collections.Counter[int] = collections.Counter()  # windows per forward → batches
        self._thread = threading.Thread(target=self._loop, name="dynamic-batcher", daemon=True)
        self._thread.start()

    def __call__(self, batch: Any) -> Any:
        """The network's output for ``batch``, computed together with whatever other calls arrive meanwhile."""
        if not self._thread.is_alive():
            raise RuntimeError("the dynamic batcher is closed")
        call = _Call(batch)
        self._queue.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def close(self, timeout: float = 5.0) -> None:
        """Stop the batching thread once the calls already queued are done."""
        self._queue.put(None)
        self._thread.join(timeout)
        while (
            not self._thread.is_alive()
        ):  # calls that arrived after the stop fail instead of waiting forever
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                call.error = RuntimeError("the dynamic batcher is closed")
                call.done.set()

    def stats(self) -> dict[str, Any]:
        """Batches run, calls served, mean windows per batch and the largest batch so far."""
        with self._lock:
            return {
                "max_batch": self.max_batch,
                "max_wait_ms": self.max_wait_s * 1000,
                "batches": self._batches,
                "calls": self._calls,
                "mean_windows_per_batch": round(self._windows / self._batches, 2) if self._batches else 0.0,
                "largest_batch": self._largest,
            }

    def batch_sizes(self) -> dict[int, int]:
        """How many batches ran with each number of windows so far (windows → batches)."""
        with self._lock:
            return dict(self._sizes)

    def _next(self, timeout: float | None) -> _Call | None:
        if self._carry is not None:
            call, self._carry = self._carry, None
            return call
        if timeout is None:
            return self._queue.get()
        return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()

    def _gather(self, first: _Call) -> tuple[list[_Call], bool]:
        """``first`` and the calls that join it; the flag says the batcher was asked to stop meanwhile."""
        calls, windows = [first], first.batch.shape[0]
        shape = first.batch.shape[1:]
        deadline = time.monotonic() + self.max_wait_s
        while windows < self.max_batch:
            try:
                call = self._next(deadline - time.monotonic())
            except queue.Empty:
                break
            if call is None:
                return calls, True
            if call.batch.shape[1:] != shape or windows + call.batch.shape[0] > self.max_batch:
                self._carry = call  # starts the next batch
                break
            calls.append(call)
            windows += call.batch.shape[0]
        return calls, False

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            calls, stop = self._gather(first)
            self._run(calls)
            if stop:
                if self._carry is not None:
                    self._run([self._carry])
                return

    def _run(self, calls: list[_Call]) -> None:
        sizes = [call.batch.shape[0] for call in calls]
        try:
            batch = calls[0].batch if len(calls) == 1 else _concatenate([c.batch for c in calls])
            output = self.network(batch)
            starts = np.cumsum([0, *sizes])
            for call, start, end in zip(calls, starts[:-1], starts[1:], strict=True):
                call.result = output[start:end]
        except BaseException as exc:  # every waiting caller gets the failure, none hangs
            for call in calls:
                call.error = exc
        finally:
            with self._lock:
                self._batches += 1
                self._calls += len(calls)
                self._windows += sum(sizes)
                self._largest = max(self._largest, sum(sizes))
                self._sizes[sum(sizes)] += 1
            for call in calls:
                call.done.set()
