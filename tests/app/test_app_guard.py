"""The upload guard on its own, driven by hand-made ASGI messages: a burst of fast bodies all pass, stalled ones are
refused once ``max_uploads`` of them wait, a trickle under the minimum rate is cut, and the byte budget holds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app import guard
from app.guard import BodyTimeout, UploadGuardMiddleware

BODY = b"x" * 67_000


async def _reader(scope: dict, receive: Any, send: Any) -> None:
    """An app that reads the whole body, then answers 200."""
    while True:
        message = await receive()
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(length: int | None) -> dict:
    headers = [(b"content-type", b"multipart/form-data; boundary=x")]
    headers += (
        [(b"content-length", str(length).encode())]
        if length is not None
        else [(b"transfer-encoding", b"chunked")]
    )
    return {"type": "http", "method": "POST", "path": "/predict", "headers": headers}


async def _call(
    middleware: UploadGuardMiddleware,
    chunks: list[tuple[float, bytes]],
    length: int | None,
    stall: bool = False,
) -> int:
    """Send ``chunks`` (delay before each, bytes) through ``middleware``, then stall when ``stall``; the status
    it answers."""
    remaining = list(chunks)
    statuses: list[int] = []

    async def receive() -> dict:
        if not remaining:
            await asyncio.sleep(3600)  # stalled for good
        delay, data = remaining.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": data, "more_body": bool(remaining) or stall}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await middleware(_scope(length), receive, send)
    return statuses[0]


def test_a_burst_of_fast_bodies_is_served_whatever_max_uploads_says() -> None:
    async def burst() -> list[int]:
        middleware = UploadGuardMiddleware(_reader, 1 << 20, body_timeout_s=5, max_uploads=2)
        # 64 bodies arrive at once, each in two chunks a little apart (a busy event loop)
        chunks = [(0.0, BODY[:30_000]), (0.05, BODY[30_000:])]
        return await asyncio.gather(*(_call(middleware, chunks, len(BODY)) for _ in range(64)))

    assert asyncio.run(burst()) == [200] * 64


def test_stalled_bodies_hold_max_uploads_then_the_next_is_refused() -> None:
    async def run() -> tuple[int, int]:
        middleware = UploadGuardMiddleware(_reader, 1 << 20, body_timeout_s=1.0, max_uploads=2)
        stalled = [
            asyncio.ensure_future(_call(middleware, [(0.0, b"x" * 100)], len(BODY), stall=True))
            for _ in range(2)
        ]
        await asyncio.sleep(guard.STALLED_S + 0.1)
        assert middleware.stalled() == 2
        refused = await _call(middleware, [(0.0, BODY)], len(BODY))
        with pytest.raises(BodyTimeout, match="not received within 1 s"):
            await stalled[0]
        with pytest.raises(BodyTimeout):
            await stalled[1]
        return refused, await _call(middleware, [(0.0, BODY)], len(BODY))

    refused, after = asyncio.run(run())
    assert refused == 503 and after == 200


def test_a_trickle_under_the_minimum_rate_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "RATE_GRACE_S", 0.2)

    async def run() -> float:
        middleware = UploadGuardMiddleware(
            _reader, 1 << 20, body_timeout_s=30, max_uploads=16, min_bytes_per_s=10_000
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(BodyTimeout, match=r"under the minimum of 9.76562 KB/s") as caught:
            await _call(middleware, [(0.1, b"x" * 100)] * 100, len(BODY))  # ~1 KB/s
        assert caught.value.reason == "body too slow"
        assert middleware.reserved == 0 and not middleware.arriving
        return loop.time() - start

    # cut once its 100-byte chunks fall behind 10 kB/s after the 0.2 s grace: well before the 30 s deadline
    assert asyncio.run(run()) < 1.0


def test_bodies_arriving_at_once_share_a_byte_budget() -> None:
    async def run() -> tuple[list[int], int]:
        middleware = UploadGuardMiddleware(
            _reader, 1 << 20, body_timeout_s=0.5, max_uploads=16, buffer_bytes=3 * len(BODY)
        )
        held = [
            asyncio.ensure_future(_call(middleware, [(0.0, b"x")], len(BODY), stall=True)) for _ in range(3)
        ]
        await asyncio.sleep(0.05)
        refused = [
            await _call(middleware, [(0.0, BODY)], len(BODY)),
            await _call(
                middleware, [(0.0, b"x")], None, stall=True
            ),  # no length: it reserves the whole upload limit
        ]
        await asyncio.gather(*held, return_exceptions=True)  # 408s
        return refused, await _call(middleware, [(0.0, BODY)], len(BODY))

    refused, after = asyncio.run(run())
    assert refused == [503, 503] and after == 200
