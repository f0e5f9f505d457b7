"""Hostile clients against a real ``vessel-serve`` on loopback (issue 22): raw sockets, real hang-ups and stalls.

A client that hangs up mid-upload is one log line, not a 500 with tracebacks; work whose client left stops; a
prediction over its time budget gets 504; a small photo does not wait behind a huge one; stalled uploads get 408
and cannot pile up past ``VESSEL_MAX_UPLOADS``; a 20 MB upload opens no file.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.app import make_registry, png_bytes
from tests.helpers.server import HOST, flat_png, multipart, predict, request, served

pytestmark = pytest.mark.slow  # a server start plus several multi-second predictions on a 16 MP photo

BUDGET_S = 8


HUGE = flat_png(4000, 4000)  # 16 MP: over the 12 MP large-image threshold; ~1,800 windows of 128²


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    """A uvicorn process serving a tile model (sliding window); yields (port, pid, log path)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("hostile-uvicorn")
    env = {
        "MLFLOW_TRACKING_URI": make_registry(root, versions=1, mode="tiles"),
        "VESSEL_BACKEND": "torch",
        "VESSEL_RELOAD_INTERVAL_S": "0",
        "VESSEL_UI_DIR": str(root / "no-ui"),
        "VESSEL_THREADS": "2",
        "VESSEL_WINDOW": "128",  # small batches of windows: a cancel is noticed within milliseconds
        "VESSEL_REQUEST_TIMEOUT_S": str(BUDGET_S),
        "VESSEL_BODY_TIMEOUT_S": "2",
        "VESSEL_MAX_UPLOADS": "2",
    }
    log_path = root / "server.log"
    try:
        with served(env, log_path, ready_timeout_s=120) as (port, process):
            yield port, process.pid, log_path
    finally:
        mlflow.set_tracking_uri(previous)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_upload(port: int, body: bytes, content_type: str, length: int | None = None) -> socket.socket:
    """A raw connection that has sent the request head and ``body`` (``length`` may claim more)."""
    sock = socket.create_connection((HOST, port), timeout=30)
    head = (
        f"POST /predict?format=json HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the response on ``sock``."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read() or b"{}")


def new_log(log_path: Path, offset: int) -> str:
    return log_path.read_text()[offset:]


def test_hanging_up_mid_upload_is_one_line_not_a_500(server: tuple[int, int, Path]) -> None:
    port, _, log_path = server
    offset = len(log_path.read_text())
    body, content_type = multipart(png_bytes())
    for _ in range(5):
        open_upload(port, body[:200], content_type, length=len(body)).close()
        time.sleep(0.3)  # one at a time: VESSEL_MAX_UPLOADS is 2
    time.sleep(0.5)
    log = new_log(log_path, offset)
    assert "Traceback" not in log and "unhandled error" not in log and " 500" not in log, log
    assert len([line for line in log.splitlines() if "hung up" in line]) == 5, log
    assert len(log.splitlines()) == 5, log
    assert predict(port, png_bytes())[0] == 200


def cpu_rate(pid: int, seconds: float) -> float:
    """CPU-seconds per second that ``pid`` uses over the next ``seconds``."""
    start = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - start) / seconds


def test_work_whose_client_hung_up_stops(server: tuple[int, int, Path]) -> None:
    port, pid, log_path = server
    body, content_type = multipart(HUGE)
    sock = open_upload(port, body, content_type)
    try:
        time.sleep(1.5)  # decoded, windows running
        busy = cpu_rate(pid, 2.0)
    finally:
        sock.close()
    time.sleep(1.0)  # one batch of windows to notice
    after = cpu_rate(pid, 3.0)
    # relative, since the machine may be shared: an idle server uses ~1 % of a core
    assert busy > 0.1 and after < busy / 5, f"{busy:.2f} CPU-s/s busy, then {after:.2f} after the hang-up"
    assert "hung up before the answer" in log_path.read_text()
    assert predict(port, png_bytes())[0] == 200


def test_a_prediction_over_its_budget_is_504(server: tuple[int, int, Path]) -> None:
    port, pid, _ = server
    start = time.monotonic()
    status, _, body = predict(port, HUGE)
    elapsed = time.monotonic() - start
    assert status == 504, body
    assert f"longer than its time budget of {BUDGET_S} s" in json.loads(body)["detail"]
    assert BUDGET_S - 0.5 < elapsed < BUDGET_S + 3
    time.sleep(1.0)
    assert cpu_rate(pid, 2.0) < 0.1, "the work over budget went on"


def test_a_small_photo_does_not_wait_behind_a_huge_one(server: tuple[int, int, Path]) -> None:
    port, _, _ = server
    huge: list[int] = []
    thread = threading.Thread(target=lambda: huge.append(predict(port, HUGE)[0]))
    thread.start()
    try:
        time.sleep(2.0)  # the huge photo is being predicted
        start = time.monotonic()
        status, _, body = predict(port, png_bytes())
        waited = time.monotonic() - start
    finally:
        thread.join(60)
    assert status == 200, body
    assert waited < 4.0, f"a 70×90 photo took {waited:.1f} s behind a 16 MP one"
    assert huge == [504]  # it was still running when the small one finished, then ran out of budget


def test_stalled_uploads_time_out_and_cannot_pile_up(server: tuple[int, int, Path]) -> None:
    port, _, _ = server
    body, content_type = multipart(png_bytes())
    stalled = [open_upload(port, body[:100], content_type, length=len(body)) for _ in range(2)]
    time.sleep(0.3)
    start = time.monotonic()
    extra = open_upload(port, body[:100], content_type, length=len(body))
    status, detail = answer(extra)
    assert status == 503 and "2 uploads already arriving" in detail["detail"]
    assert time.monotonic() - start < 1.0
    assert request(port, "GET", "/health", timeout=5)[0] == 200
    for sock in stalled:
        status, detail = answer(sock)
        assert status == 408 and "not received within 2 s" in detail["detail"]
        assert sock.recv(1) == b""  # and the connection is closed
    assert time.monotonic() - start < 5.0
    assert predict(port, png_bytes())[0] == 200


def test_a_20_mb_upload_opens_no_file(server: tuple[int, int, Path]) -> None:
    port, pid, _ = server

    def open_files() -> set[str]:
        found = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("/") and not target.startswith("/dev/"):
                found.add(target)
        return found

    before = open_files()
    data = b"\x89PNG\r\n\x1a\n" + bytes(20_000_000 - 8)
    body, content_type = multipart(data)
    sock = open_upload(port, body[: len(body) // 2], content_type, length=len(body))
    time.sleep(0.5)
    during = open_files() - before
    assert not during, f"files opened while a 20 MB upload arrived: {during}"
    sock.sendall(body[len(body) // 2 :])
    status, _ = answer(sock)
    sock.close()
    assert status == 400  # a PNG signature and zeros: undecodable, but received whole
