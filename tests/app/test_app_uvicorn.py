"""The real thing: ``python -m app.server`` under uvicorn on a free loopback port, with a tmp registry.

Four clients predict while the alias moves; the poller switches versions with zero failed requests; /health
answers promptly under that load; a chunked upload over the limit is refused and the service keeps serving.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers.app import make_registry, png_bytes
from tests.helpers.server import multipart, predict, request, served

pytestmark = pytest.mark.slow  # the server start (imports, a tmp registry) alone takes ~25 s on 2 cores


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A uvicorn process serving champion (version 1) with a 0.5 s alias poll; yields (port, tracking URI)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("uvicorn")
    uri = make_registry(root)
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "VESSEL_BACKEND": "torch",
        "VESSEL_RELOAD_INTERVAL_S": "0.5",
        "VESSEL_MAX_UPLOAD_MB": "1",
        "VESSEL_UI_DIR": str(root / "no-ui"),
        "VESSEL_THREADS": "2",
    }
    try:
        with served(env, root / "server.log", ready_timeout_s=120) as (port, _):
            yield port, uri
    finally:
        mlflow.set_tracking_uri(previous)


def test_endpoints_over_real_http(server: tuple[int, str]) -> None:
    port, _ = server
    status, _, body = request(port, "GET", "/health")
    assert status == 200 and json.loads(body)["model"]["version"] == "1"
    status, _, body = request(port, "GET", "/model")
    assert status == 200 and json.loads(body)["contract"]["threshold"] == 0.4
    status, headers, body = predict(port, png_bytes(), "format=probability")
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
    assert headers["x-model-version"] == "1" and float(headers["x-inference-time-ms"]) > 0


def test_chunked_upload_over_the_limit_is_refused_then_serving_continues(server: tuple[int, str]) -> None:
    port, _ = server
    body, content_type = multipart(b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        # No Content-Length: the limit must hold while streaming, not only from the header.
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        connection.request(
            "POST", "/predict", body=chunks, headers={"Content-Type": content_type}, encode_chunked=True
        )
        response = connection.getresponse()
        assert response.status == 413 and "too large" in json.loads(response.read())["detail"]
    finally:
        connection.close()
    assert predict(port, png_bytes())[0] == 200


def test_alias_moves_under_four_clients_with_zero_failures(server: tuple[int, str]) -> None:
    from vessel_lightning.tracking.registry import set_alias

    port, uri = server
    import mlflow

    mlflow.set_tracking_uri(uri)
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    health_seconds: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            try:
                status, headers, _ = predict(port, png_bytes())
            except OSError as exc:  # a dropped connection is a failed request too
                status, headers = -1, {"error": str(exc)}
            with lock:
                results.append((status, headers.get("x-model-version", "")))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(1.0)
        set_alias("2")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            start = time.perf_counter()
            _, _, body = request(port, "GET", "/health", timeout=10)
            health_seconds.append(time.perf_counter() - start)
            if json.loads(body)["model"]["version"] == "2":
                break
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)
        set_alias("1")
    statuses = [status for status, _ in results]
    assert statuses and statuses.count(200) == len(statuses), [s for s in statuses if s != 200]
    assert {version for _, version in results} == {"1", "2"}, "the poller did not switch to version 2"
    assert max(health_seconds) < 1.0, health_seconds  # /health is not stuck behind inference
