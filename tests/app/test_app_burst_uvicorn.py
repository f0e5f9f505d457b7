"""A burst against a real ``vessel-serve`` on loopback (ONNX Runtime backend, JSON logs): 32 clients each sending a
~67 KB photo at the same moment are all served (the queue holds 64), each answer and log line names its request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.app import encode, make_registry
from tests.helpers.server import burst, multipart, request, served

pytestmark = pytest.mark.slow  # a server start, an ONNX export and 32 predictions

CLIENTS = 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    import mlflow

    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("burst")
    env = {
        "MLFLOW_TRACKING_URI": make_registry(root, versions=1),
        "VESSEL_BACKEND": "onnx",
        "VESSEL_CACHE_DIR": str(root / "onnx-cache"),
        "VESSEL_RELOAD_INTERVAL_S": "0",
        "VESSEL_UI_DIR": str(root / "no-ui"),
        "VESSEL_MAX_QUEUE": "64",
        "VESSEL_LOG_FORMAT": "json",
    }
    log_path = root / "server.log"
    try:
        with served(env, log_path, ready_timeout_s=300) as (port, _):
            yield port, log_path
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_burst_of_32_small_uploads_is_all_served(server: tuple[int, Path]) -> None:
    port, log_path = server
    # incompressible pixels: a ~67 KB PNG, as a CHASE_DB1 photo is on the wire
    photo = encode(np.random.default_rng(5).integers(0, 255, (150, 150, 3), dtype=np.uint8))
    assert 60_000 < len(photo) < 75_000
    body, content_type = multipart(photo)
    results = burst(port, body, content_type, CLIENTS)
    statuses = [status for status, *_ in results]
    assert statuses == [200] * CLIENTS, [answer for status, _, _, answer in results if status != 200]
    assert [headers["x-request-id"] for _, _, headers, _ in results] == [f"burst-{i}" for i in range(CLIENTS)]
    status, _, metrics = request(port, "GET", "/metrics")
    assert status == 200
    line = 'vessel_http_requests_total{method="POST",route="/predict",status="200"}'
    assert f"{line} {CLIENTS}.0" in metrics.decode()
    # every log line is one JSON object; each answer's access line names its request
    lines = [json.loads(text) for text in log_path.read_text().splitlines() if text.strip()]
    access = {entry["request_id"] for entry in lines if entry["logger"] == "uvicorn.access"}
    assert {f"burst-{i}" for i in range(CLIENTS)} <= access
