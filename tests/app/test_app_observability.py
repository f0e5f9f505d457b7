"""What an operator sees of the service: ``/metrics`` (scraped with prometheus_client's own parser), request ids in
answers and log records, JSON log lines, and answers that name no server path."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.logs import JsonFormatter, RequestIdFilter, sane_request_id
from app.redact import public, public_text
from app.server import create_app
from tests.helpers.app import app_settings, make_registry, png_bytes, ready_client

N = 3
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])(?:/[\w.@+-]+){2,}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import mlflow

    previous = mlflow.get_tracking_uri()
    yield make_registry(tmp_path_factory.mktemp("observed-registry"), versions=1)
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def client(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API on the PyTorch backend with dynamic batching on (so the CPU shows batch sizes too)."""
    client = ready_client(app_settings(registry, tmp_path_factory.mktemp("observed"), batching="on"))
    yield client
    client.__exit__(None, None, None)


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``, parsed by prometheus_client: (name, sorted labels) → value."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _predict(client: TestClient, **headers: str):
    return client.post(
        "/predict",
        files={"file": ("eye.png", png_bytes(), "image/png")},
        params={"format": "json"},
        headers=headers,
    )


def test_counters_and_histograms_move_by_exactly_the_requests_made(client: TestClient) -> None:
    before = scrape(client)
    for _ in range(N):
        assert _predict(client).status_code == 200
    after = scrape(client)
    route = {"route": "/predict", "method": "POST"}
    moved = value(after, "vessel_http_requests_total", status="200", **route) - value(
        before, "vessel_http_requests_total", status="200", **route
    )
    assert moved == N
    for name in ("vessel_http_request_duration_seconds_count", "vessel_http_request_duration_seconds_bucket"):
        extra = {"le": "+Inf"} if name.endswith("bucket") else {}
        assert value(after, name, **route, **extra) - value(before, name, **route, **extra) == N
    assert value(after, "vessel_http_request_duration_seconds_sum", **route) > value(
        before, "vessel_http_request_duration_seconds_sum", **route
    )
    inference = "vessel_inference_seconds_count"
    assert value(after, inference, backend="torch") - value(before, inference, backend="torch") == N
    # a 64×64 resize model: one window per photo, so N batches of one window each (the requests came one by one)
    assert value(after, "vessel_batch_windows_count") - value(before, "vessel_batch_windows_count") == N
    assert value(after, "vessel_batch_windows_sum") - value(before, "vessel_batch_windows_sum") == N
    assert (
        value(after, "vessel_batch_windows_bucket", le="1.0")
        - value(before, "vessel_batch_windows_bucket", le="1.0")
        == N
    )
    # the scrapes themselves are counted under their route, and no raw path becomes a label
    assert value(after, "vessel_http_requests_total", route="/metrics", method="GET", status="200") >= 1
    assert value(after, "vessel_queue_depth", lane="predict") == 0
    assert value(after, "vessel_queue_limit", lane="predict") == client.app.state.pools.predict.max_pending
    assert value(after, "vessel_model_ready") == 1 and value(after, "vessel_model_loads_total") == 1
    info = {k: v for (name, labels), _ in after.items() if name == "vessel_model_info" for k, v in labels}
    assert info["name"] == "vessel-unet" and info["version"] == "1" and info["backend"] == "torch"
    assert info["alias"] == "champion" and info["precision"] == "fp32"


def test_unknown_paths_share_one_label(client: TestClient) -> None:
    for path in ("/no/such/thing", "/another-one"):
        assert client.get(path).status_code == 404
    after = scrape(client)
    routes = {dict(labels).get("route") for name, labels in after if name == "vessel_http_requests_total"}
    assert "unmatched" in routes and not any(r and r.startswith(("/no", "/another")) for r in routes)


def test_a_413_and_a_503_show_under_their_status(client: TestClient) -> None:
    before = scrape(client)
    too_large = client.post(
        "/predict",
        content=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert too_large.status_code == 413
    pool = client.app.state.pools.predict
    pending, pool.pending = pool.pending, pool.max_pending  # the queue is full
    try:
        busy = _predict(client)
    finally:
        pool.pending = pending
    assert busy.status_code == 503 and "too many predictions queued" in busy.json()["detail"]
    after = scrape(client)
    for status, reason in (("413", "body too large"), ("503", "queue full")):
        requests = {"route": "/predict", "method": "POST", "status": status}
        assert (
            value(after, "vessel_http_requests_total", **requests)
            - value(before, "vessel_http_requests_total", **requests)
            == 1
        )
        assert (
            value(after, "vessel_rejections_total", status=status, reason=reason)
            - value(before, "vessel_rejections_total", status=status, reason=reason)
            == 1
        )
    assert _predict(client).status_code == 200


def test_load_failures_and_no_model_are_counted(registry: str, tmp_path: Path) -> None:
    settings = app_settings(registry, tmp_path, model_uri="models:/vessel-unet@nobody")
    with TestClient(create_app(settings)) as client:
        manager = client.app.state.manager
        for _ in range(200):
            if manager.error:
                break
            threading.Event().wait(0.05)
        assert client.post("/model/reload").status_code == 503
        assert _predict(client).status_code == 503
        samples = scrape(client)
    assert value(samples, "vessel_model_load_failures_total") == 2  # the start-up load and the reload
    assert value(samples, "vessel_model_loads_total") == 0 and value(samples, "vessel_model_ready") == 0
    assert not any(name == "vessel_model_info" for name, _ in samples)
    assert value(samples, "vessel_rejections_total", status="503", reason="no model") == 1


def test_the_request_id_round_trips_and_reaches_log_records(client: TestClient) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("vessel_serve.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def logs_twice(request: Request) -> dict[str, str]:
        logger.info("on the event loop")
        await request.app.state.pools.measure.run(logger.info, "in a worker thread")
        return {}

    app = client.app
    app.add_api_route("/test-logs", logs_twice, methods=["GET"])
    try:
        given = client.get("/test-logs", headers={"X-Request-ID": "trace-42.a:b_c"})
        made = client.get("/test-logs")
        refused = client.get("/test-logs", headers={"X-Request-ID": "bad id\twith spaces"})
        too_long = client.get("/test-logs", headers={"X-Request-ID": "a" * 129})
    finally:
        app.router.routes.pop()
        logger.removeHandler(handler)
    assert given.headers["x-request-id"] == "trace-42.a:b_c"
    for response in (made, refused, too_long):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    ids = [r.headers["x-request-id"] for r in (given, made, refused, too_long)]
    assert len(set(ids)) == 4
    assert [(r.getMessage(), r.request_id) for r in records] == [  # type: ignore[attr-defined]
        (message, rid) for rid in ids for message in ("on the event loop", "in a worker thread")
    ]
    # errors and refusals carry it too
    assert _predict(client, **{"X-Request-ID": "err-1"}).headers["x-request-id"] == "err-1"
    assert client.get("/no/such/path", headers={"X-Request-ID": "nf-1"}).headers["x-request-id"] == "nf-1"


def test_sane_request_ids() -> None:
    assert sane_request_id("0f8fad5b-d9cb-469f-a165-70867728950e") and sane_request_id("a" * 128)
    for bad in (None, "", "a" * 129, "-leading", "new\nline", 'quote"', "ü", "a b"):
        assert not sane_request_id(bad), bad


def test_json_log_lines_parse_one_object_per_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("vessel_serve.json-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('a "quoted"\nmessage over two lines')
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        logging.getLogger("uvicorn.access").handlers, saved = (
            [handler],
            logging.getLogger("uvicorn.access").handlers,
        )
        try:
            access = logging.getLogger("uvicorn.access")
            access.propagate, propagate = False, access.propagate
            access.setLevel(logging.INFO)
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "POST", "/predict", "1.1", 200)
        finally:
            access.handlers, access.propagate = saved, propagate
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == 'a "quoted"\nmessage over two lines' and first["level"] == "WARNING"
    assert first["request_id"] == "-" and first["logger"] == "vessel_serve.json-test"
    assert "ValueError: boom" in second["exception"]
    assert (third["method"], third["path"], third["status"]) == ("POST", "/predict", 200)


def test_public_cuts_paths_to_names_and_describes_files(tmp_path: Path) -> None:
    model = tmp_path / "cache" / "abc" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"onnx bytes")
    shown = public(
        {"onnx_path": str(model), "why": f"no photos in {tmp_path}/photos", "n": [1, "runs:/x/model"]}
    )
    assert shown == {
        "onnx_file": {"name": "model.onnx", "bytes": 10, "sha256": hashlib.sha256(b"onnx bytes").hexdigest()},
        "why": "no photos in photos",
        "n": [1, "runs:/x/model"],
    }
    assert public_text("file:///srv/store and sqlite:////srv/x/mlflow.db") == "store and mlflow.db"
    for kept in ("models:/vessel-unet@champion", "http://mlflow:5000/api/2.0/x", "1/2 done", "/predict"):
        assert public_text(kept) == kept


def test_no_server_path_in_any_answer_of_an_onnx_model(registry: str, tmp_path: Path) -> None:
    client = ready_client(app_settings(registry, tmp_path, backend="onnx"))
    try:
        model = client.get("/model")
        answers = [
            model,
            client.get("/health"),
            client.get("/ready"),
            client.post("/model/reload"),
            _predict(client),
        ]
    finally:
        client.__exit__(None, None, None)
    assert all(answer.status_code == 200 for answer in answers)
    served = model.json()
    assert served["backend"] == "onnx"
    onnx = next(tmp_path.glob("onnx-cache/*/model.onnx"))
    (export,) = served["backend_details"]["exports"]  # what a client needs of the file, not where it lies
    assert (export["file"], export["bytes"], export["sha256"]) == (
        "model.onnx",
        onnx.stat().st_size,
        hashlib.sha256(onnx.read_bytes()).hexdigest(),
    )
    for answer in answers:
        text = answer.text
        assert str(tmp_path) not in text and "onnx-cache" not in text, text
        assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text)
