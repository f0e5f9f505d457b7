"""``vessel-serve`` in a child process on a loopback port, a multipart body and a flat photo: for real-HTTP tests and
load tests.

with served({"MLFLOW_TRACKING_URI": uri, "VESSEL_BACKEND": "onnx"}, log_path) as (port, process):
    ...  # http://127.0.0.1:<port>, ready (GET /ready answered 200)
"""

from __future__ import annotations

import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"  # loopback only, by design
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def multipart(data: bytes, field: str = "file", filename: str = "eye.png") -> tuple[bytes, str]:
    """A multipart/form-data body holding ``data`` as ``field``; returns the body and its content type."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return (
        head.encode() + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def flat_png(width: int, height: int) -> bytes:
    """A flat reddish PNG: tiny on the wire (~160 KB at 49 MP), full price to predict."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (128, 60, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def answers_ok(port: int, path: str = "/ready") -> bool:
    """Whether ``GET path`` on the loopback ``port`` answers 200 (False while nothing listens)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextmanager
def child_server(
    command: list[str],
    log_path: Path,
    ready: Callable[[], bool],
    ready_timeout_s: float,
    *,
    name: str = "server",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    poll_s: float = 0.3,
) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own session (servers whose workers would outlive a signal to the main process), its
    output to ``log_path``; yield the process once ``ready()`` is true. Raises RuntimeError with the log's tail
    when the process exits or is not ready within ``ready_timeout_s``. The whole process group is stopped on exit
    (SIGTERM, then SIGKILL after 20 s)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not ready():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n" + log_path.read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} not ready in {ready_timeout_s:.0f} s:\n" + log_path.read_text()[-3000:]
                    )
                time.sleep(poll_s)
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def served(
    env: Mapping[str, str], log_path: Path, ready_timeout_s: float = 600, cwd: Path = REPO
) -> Iterator[tuple[int, subprocess.Popen]]:
    """Run ``python -m app.server`` with ``env`` added (host and a free port set here), output to ``log_path``.

    ``cwd`` is the checkout whose code runs (another worktree, to compare two versions side by side).

    Yields ``(port, process)`` once ``GET /ready`` answers 200 (:func:`child_server`: the log's tail when it
    exits or is not ready in time, the process group stopped on exit).
    """
    port = free_port()
    full_env = os.environ | dict(env) | {"VESSEL_HOST": HOST, "VESSEL_PORT": str(port)}
    with child_server(
        [sys.executable, "-m", "app.server"],
        log_path,
        lambda: answers_ok(port),
        ready_timeout_s,
        env=full_env,
        cwd=cwd,
    ) as process:
        yield port, process


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 60,
):
    """One HTTP request to 127.0.0.1:``port``; returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def predict(port: int, data: bytes, query: str = "format=json") -> tuple[int, dict, bytes]:
    """POST ``data`` to /predict as multipart field ``file``."""
    body, content_type = multipart(data)
    return request(port, "POST", f"/predict?{query}", body, {"Content-Type": content_type})


def burst(
    port: int, body: bytes, content_type: str, clients: int, query: str = "format=json", timeout: float = 300
) -> list[tuple[int, float, dict, bytes]]:
    """``clients`` threads, each on its own connection, POST ``body`` to /predict at the same moment (a barrier
    releases them together); returns each one's (status, seconds until its answer, headers, body), in client
    order. A connection error counts as status 0."""
    import threading

    barrier = threading.Barrier(clients)
    results: list[tuple[int, float, dict, bytes]] = [(0, 0.0, {}, b"")] * clients

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        headers = {"Content-Type": content_type, "X-Request-ID": f"burst-{index}"}
        try:
            connection.connect()
            barrier.wait()
            start = time.perf_counter()
            connection.request("POST", f"/predict?{query}", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            results[index] = (
                response.status,
                time.perf_counter() - start,
                dict(response.getheaders()),
                answer,
            )
        except OSError as exc:
            results[index] = (0, 0.0, {}, str(exc).encode())
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
