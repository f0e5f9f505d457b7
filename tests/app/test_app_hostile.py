"""Hostile and accidental requests to the API (issue 22), in process: each case once answered wrongly.

Wrong methods on API paths get a JSON 405 (not the UI's HTML 404), a client file name's length does not matter,
two ``file`` fields are refused by name, the pixel limit quoted is the configured one, and the upload reader
keeps a photo in memory. Real-server cases (hang-ups, stalls, budgets, lanes) are in test_app_hostile_uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from app.upload import UploadError, read_file_field
from tests.helpers.app import SIZE, make_registry, png_bytes, raw_png
from tests.helpers.server import multipart


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API with a built UI mounted at ``/`` (index.html and the export's 404.html)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("hostile")
    ui = root / "ui"
    ui.mkdir()
    (ui / "index.html").write_text("<html><body>vessel ui</body></html>")
    (ui / "404.html").write_text("<html><body>page not found</body></html>")
    settings = Settings(
        tracking_uri=make_registry(root, versions=1),
        backend="torch",
        reload_interval_s=0,
        max_upload_mb=1,
        max_pixels=4_000_000,
        ui_dir=ui,
        cache_dir=root / "onnx-cache",
    )
    with TestClient(create_app(settings)) as test_client:
        assert test_client.app.state.manager.wait_ready(120), test_client.app.state.manager.error
        yield test_client
    mlflow.set_tracking_uri(previous)


def _post(client: TestClient, body: bytes, content_type: str, query: str = "format=json"):
    return client.post(f"/predict?{query}", content=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/predict", "POST"),
        ("GET", "/model/reload", "POST"),
        ("DELETE", "/model", "GET"),
        ("HEAD", "/health", "GET"),
    ],
)
def test_wrong_method_on_an_api_path_is_a_json_405(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["content-type"] == "application/json" and response.headers["allow"] == allow
    if method != "HEAD":  # a HEAD answer has no body
        assert f"{method} is not allowed on {path}" in response.json()["detail"]
    # the UI keeps its own pages and its 404
    assert client.get("/").text.startswith("<html>") and client.get("/").status_code == 200
    assert client.get("/no/such/page").status_code == 404 and "page not found" in client.get("/nope").text


def test_a_client_file_name_of_any_length_is_ignored(client: TestClient) -> None:
    for length in (4_180, 4_300, 100_000):
        body, content_type = multipart(png_bytes(), filename="e" * length + ".png")
        response = _post(client, body, content_type)
        assert response.status_code == 200, (length, response.text)
        assert (response.json()["height"], response.json()["width"]) == SIZE


def test_two_file_fields_are_refused_naming_the_field(client: TestClient) -> None:
    first, content_type = multipart(png_bytes())
    boundary = content_type.split("boundary=")[1]
    second = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.png"\r\n\r\n'.encode()
        + png_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    body = first[: first.rindex(f"--{boundary}--".encode())] + second
    response = _post(client, body, content_type)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "field 'file' was sent 2 times: send one image per request"


def test_413_quotes_the_configured_pixel_limit_not_pillows(client: TestClient) -> None:
    for width, height in ((20_000, 20_000), (3_000, 2_000)):  # over Pillow's own bomb limit, and under it
        body, content_type = multipart(raw_png(width, height))
        response = _post(client, body, content_type)
        assert response.status_code == 413, response.text
        detail = response.json()["detail"]
        assert f"{width * height} pixels (limit 4000000)" in detail and "178956970" not in detail, detail


def test_malformed_multipart_bodies_are_400_with_a_reason(client: TestClient) -> None:
    body, content_type = multipart(png_bytes())
    cut = _post(client, body[:-20], content_type)
    assert cut.status_code == 400 and "closing boundary" in cut.json()["detail"]
    no_boundary = _post(client, body, "multipart/form-data")
    assert no_boundary.status_code == 400 and "no boundary" in no_boundary.json()["detail"]
    assert _post(client, body, content_type).status_code == 200


def test_upload_reader_keeps_the_file_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload touched the disk")

    for name in ("TemporaryFile", "SpooledTemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    data = bytes(range(256)) * (20 * 4096)  # 20 MiB
    body, content_type = multipart(data)

    async def chunks():
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    assert asyncio.run(read_file_field(content_type, chunks(), len(body))) == data
    with pytest.raises(UploadError, match="no file"):
        asyncio.run(read_file_field("application/json", chunks(), len(body)))


def test_new_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "VESSEL_REQUEST_TIMEOUT_S": "7.5",
        "VESSEL_BODY_TIMEOUT_S": "3",
        "VESSEL_MAX_UPLOADS": "5",
        "VESSEL_LARGE_IMAGE_PIXELS": "0",
        "VESSEL_LARGE_QUEUE": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    limits = (settings.request_timeout_s, settings.body_timeout_s, settings.max_uploads)
    assert limits == (7.5, 3.0, 5) and (settings.large_image_pixels, settings.large_queue) == (0, 1)
    monkeypatch.setenv("VESSEL_MAX_UPLOADS", "0")
    with pytest.raises(ValueError, match="VESSEL_MAX_UPLOADS"):
        Settings.from_env()
