"""The HTTP API through TestClient, with small real models registered in a tmp SQLite store.

Every endpoint; every bad input (each followed by a normal predict that still works); API key on and off;
the alias moved while 4 clients predict (zero failed requests); the ONNX and OpenVINO backends and `auto`; CORS;
the static UI mount.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.model_manager import ModelManager
from app.server import create_app, main
from app.settings import Settings, SettingsError
from tests.helpers.app import (
    SIZE,
    app_settings,
    encode,
    make_registry,
    multi_frame,
    photo,
    png_bytes,
    raw_png,
    ready_client,
    with_exif_orientation,
)
from vessel_lightning.inference.predictor import Predictor


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store with versions 1 and 2 of a small B0; champion → 1. Restores MLflow's tracking URI."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("serve-registry")
        uri = make_registry(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def client(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API without a key, champion at version 1."""
    from vessel_lightning.tracking.registry import set_alias

    set_alias("1")
    client = ready_client(app_settings(registry, tmp_path_factory.mktemp("serve")))
    yield client
    client.__exit__(None, None, None)


def _predict(client: TestClient, data: bytes, **params) -> object:
    return client.post("/predict", files={"file": ("eye.png", data, "image/png")}, params=params)


def _assert_still_serving(client: TestClient) -> None:
    response = _predict(client, png_bytes(), format="json")
    assert response.status_code == 200, response.text
    assert (response.json()["height"], response.json()["width"]) == SIZE


def test_health_ready_model_and_root(client: TestClient) -> None:
    health = client.get("/health").json()
    device = health.pop("device")
    assert health == {
        "status": "ok",
        "ready": True,
        "model": {
            "name": "vessel-unet",
            "version": "1",
            "alias": "champion",
            "backend": "torch",
            "precision": "fp32",
        },
    }
    assert device["type"] == "cpu" and device["name"] and device["threads"] >= 1
    assert client.get("/ready").status_code == 200
    model = client.get("/model").json()
    assert model["name"] == "vessel-unet" and model["version"] == "1" and model["alias"] == "champion"
    assert model["uri"] == "models:/vessel-unet@champion" and model["backend"] == "torch"
    assert model["device"] == device and model["precision"] == "fp32" and model["batching"] is None
    assert len(model["run_id"]) == 32 and model["load_seconds"] > 0
    assert model["metrics"]["test/f1"] == pytest.approx(0.6) and model["metrics"]["val/f1"] == 0.5
    contract = model["contract"]
    assert contract["threshold"] == 0.4 and contract["size"] == [64, 64]
    assert contract["encoder"] == "efficientnet-b0" and contract["mode"] == "resize"
    root = client.get("/")
    assert root.status_code == 200 and root.json()["ui"] == "not built"
    assert client.get("/nope").status_code == 404


def test_predict_probability_mask_and_json(client: TestClient, registry: str) -> None:
    rgb = photo()
    expected = Predictor.from_uri("models:/vessel-unet/1").predict_proba(rgb)
    response = _predict(client, encode(rgb))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-model-version"] == "1" and response.headers["x-model-name"] == "vessel-unet"
    assert float(response.headers["x-inference-time-ms"]) > 0
    prob = Image.open(io.BytesIO(response.content))
    assert prob.mode == "L" and prob.size == (SIZE[1], SIZE[0])
    assert np.abs(np.asarray(prob).astype(int) - np.round(expected * 255)).max() <= 1
    mask = np.asarray(
        Image.open(io.BytesIO(_predict(client, encode(rgb), format="mask", threshold=0.3).content))
    )
    assert mask.shape == SIZE and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, expected >= 0.3)
    default_mask = np.asarray(Image.open(io.BytesIO(_predict(client, encode(rgb), format="mask").content)))
    assert np.array_equal(default_mask == 255, expected >= 0.4)  # the contract's threshold
    summary = _predict(client, encode(rgb), format="json", threshold=0.3).json()
    # A noise photo has no dark surround: its field is the whole frame (tests/test_app_measurements.py has more).
    assert summary.pop("fov") == {
        "mode": "auto",
        "bbox": [0, 0, SIZE[1], SIZE[0]],
        "diameter_px": 90.0,
        "area_fraction": 1.0,
    }
    assert summary.pop("scale") is None and summary.pop("resample_scale") == 1.0
    assert summary.pop("measurements")["area_density"] == pytest.approx(float((expected >= 0.3).mean()))
    assert summary == {
        "width": SIZE[1],
        "height": SIZE[0],
        "threshold": 0.3,
        "vessel_fraction": pytest.approx(float((expected >= 0.3).mean())),
        "model_version": "1",
    }


ACCEPTED = {
    "jpeg": (lambda: encode(photo(), "JPEG"), SIZE),
    "tiff": (lambda: encode(photo(), "TIFF"), SIZE),
    "bmp": (lambda: encode(photo(), "BMP"), SIZE),
    "webp": (lambda: encode(photo(), "WEBP"), SIZE),
    "png-16bit-gray": (lambda: encode(Image.fromarray(photo()[..., 0].astype(np.uint16) * 257)), SIZE),
    "png-rgba": (lambda: encode(Image.fromarray(photo()).convert("RGBA")), SIZE),
    "png-palette": (lambda: encode(Image.fromarray(photo()).convert("P")), SIZE),
    "jpeg-cmyk": (lambda: encode(Image.fromarray(photo()).convert("CMYK"), "JPEG"), SIZE),
    "jpeg-exif-rotated": (lambda: with_exif_orientation(photo()), (SIZE[1], SIZE[0])),
    "gif-multi-frame": (lambda: multi_frame("GIF"), (40, 50)),
    "tiff-multi-frame": (lambda: multi_frame("TIFF"), (40, 50)),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted_formats_answer_at_their_size(client: TestClient, name: str) -> None:
    make, (height, width) = ACCEPTED[name]
    response = _predict(client, make())
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (width, height)


def test_wrong_content_type_with_valid_bytes_is_trusted(client: TestClient) -> None:
    files = {"file": ("notes.txt", encode(photo(), "JPEG"), "text/plain")}
    response = client.post("/predict", files=files, params={"format": "json"})
    assert response.status_code == 200 and response.json()["width"] == SIZE[1]


def _truncated(fmt: str) -> bytes:
    data = encode(photo(), fmt)
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "empty file": (b"", 400),
    "text": (b"just some text\n" * 10, 415),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", 415),
    "zip": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(60), 415),
    "truncated png": (_truncated("PNG"), 400),
    "truncated jpeg": (_truncated("JPEG"), 400),
    "decompression bomb": (raw_png(100_000, 100_000), 413),
    "too many pixels": (raw_png(3000, 2000), 413),
    "zero-sized": (raw_png(0, 64), 400),
    "body over limit": (b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024), 413),
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_upload_gets_json_error_then_service_still_predicts(client: TestClient, name: str) -> None:
    data, status = BAD_UPLOADS[name]
    response = _predict(client, data)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    _assert_still_serving(client)


BAD_REQUESTS = {
    "no body": (lambda c: c.post("/predict"), 400),
    "form without file": (lambda c: c.post("/predict", data={"other": "x"}), 400),
    "file field is text": (
        lambda c: c.post("/predict", files={"other": ("a.png", png_bytes(), "image/png")}),
        400,
    ),
    "raw body, no multipart": (
        lambda c: c.post("/predict", content=png_bytes(), headers={"content-type": "image/png"}),
        400,
    ),
    "unknown format": (lambda c: _predict(c, png_bytes(), format="jpeg"), 422),
    "threshold above 1": (lambda c: _predict(c, png_bytes(), format="mask", threshold=1.5), 422),
    "threshold below 0": (lambda c: _predict(c, png_bytes(), threshold=-0.1), 422),
    "threshold not a number": (lambda c: _predict(c, png_bytes(), threshold="high"), 422),
    "threshold nan": (lambda c: _predict(c, png_bytes(), threshold="nan"), 422),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_json_error_then_service_still_predicts(client: TestClient, name: str) -> None:
    send, status = BAD_REQUESTS[name]
    response = send(client)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str)
    _assert_still_serving(client)


def test_api_key_on(registry: str, tmp_path: Path) -> None:
    from vessel_lightning.tracking.registry import set_alias

    set_alias("1")
    client = ready_client(app_settings(registry, tmp_path, api_key="s3cret"))
    try:
        assert _predict(client, png_bytes()).status_code == 401
        wrong = client.post("/predict", files={"file": ("a", png_bytes())}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["detail"]
        right = client.post("/predict", files={"file": ("a", png_bytes())}, headers={"X-API-Key": "s3cret"})
        assert right.status_code == 200
        assert client.post("/model/reload").status_code == 401
        assert client.post("/model/reload", headers={"X-API-Key": "s3cret"}).status_code == 200
        for path in ("/health", "/ready", "/model", "/"):
            assert client.get(path).status_code == 200, path  # read-only endpoints stay open
    finally:
        client.__exit__(None, None, None)


def test_api_key_off_by_default(client: TestClient) -> None:
    assert client.app.state.settings.api_key is None
    assert client.post("/model/reload").status_code == 200


def test_no_model_answers_503_while_health_stays_up(registry: str, tmp_path: Path) -> None:
    settings = app_settings(registry, tmp_path, model_uri="models:/vessel-unet@nobody")
    with TestClient(create_app(settings)) as client:
        manager: ModelManager = client.app.state.manager
        for _ in range(200):
            if manager.error:
                break
            threading.Event().wait(0.05)
        health = client.get("/health").json()
        assert health.pop("device")["type"] == "cpu"
        assert health == {"status": "ok", "ready": False, "model": None}
        ready = client.get("/ready")
        assert ready.status_code == 503 and "nobody" in ready.json()["detail"]
        assert client.get("/model").status_code == 503
        response = _predict(client, png_bytes())
        assert response.status_code == 503 and "no model" in response.json()["detail"]
        assert client.post("/model/reload").status_code == 503


def test_registry_unreachable_is_reported_while_the_model_serves(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/ready").json()["registry"] == {"reachable": True, "error": None}

    def refused(*_args, **_kwargs):
        raise ConnectionError("http://mlflow:5000: Connection refused")

    monkeypatch.setattr("app.model_manager.alias_version", refused)  # the tracking server is down
    assert client.post("/model/reload").status_code == 503
    ready = client.get("/ready")
    assert ready.status_code == 200  # the loaded model still serves
    registry = ready.json()["registry"]
    assert registry["reachable"] is False and "Connection refused" in registry["error"]
    assert client.get("/model").json()["registry"] == registry
    _assert_still_serving(client)
    monkeypatch.undo()  # back up
    assert client.post("/model/reload").json()["registry"] == {"reachable": True, "error": None}
    assert client.get("/ready").json()["registry"] == {"reachable": True, "error": None}


def test_alias_moved_while_four_clients_predict(client: TestClient) -> None:
    from vessel_lightning.tracking.registry import set_alias

    stop = threading.Event()
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def hammer() -> None:
        while not stop.is_set():
            response = _predict(client, png_bytes(), format="json")
            with lock:
                results.append((response.status_code, response.headers.get("x-model-version", "")))

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        threading.Event().wait(0.5)
        set_alias("2")
        reloaded = client.post("/model/reload")
        assert reloaded.status_code == 200 and reloaded.json()["version"] == "2"
        threading.Event().wait(0.5)
        set_alias("1")
        assert client.post("/model/reload").json()["version"] == "1"
        threading.Event().wait(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    statuses = [status for status, _ in results]
    assert len(results) > 8 and statuses.count(200) == len(statuses), statuses
    assert {version for _, version in results} == {"1", "2"}


def test_onnx_backend_is_exported_once_checked_and_matches_torch(registry: str, tmp_path: Path) -> None:
    from vessel_lightning.tracking.registry import set_alias

    set_alias("1")
    rgb = encode(photo())
    expected = Predictor.from_uri("models:/vessel-unet/1").predict_proba(photo())
    for cached in (False, True):
        client = ready_client(app_settings(registry, tmp_path, backend="onnx"))
        try:
            model = client.get("/model").json()
            assert model["backend"] == "onnx"
            (fp32,) = model["backend_details"]["exports"]  # the bundle's export, checked when it was logged
            assert fp32["file"] == "model.onnx" and fp32["source"] == "bundle" and fp32["cached"] is cached
            assert max(fp32["check"]["max_abs_diff"].values()) <= 1e-4 and len(fp32["sha256"]) == 64
            assert str(tmp_path) not in json.dumps(model)  # what a client needs, not where it lies
            prob = np.asarray(Image.open(io.BytesIO(_predict(client, rgb).content)))
            assert np.abs(prob.astype(int) - np.round(expected * 255)).max() <= 1
        finally:
            client.__exit__(None, None, None)
    assert len(list((tmp_path / "onnx-cache").glob("*/model.onnx"))) == 1


def test_onnx_int8_without_calibration_falls_back_to_torch(registry: str, tmp_path: Path) -> None:
    client = ready_client(app_settings(registry, tmp_path, backend="onnx-int8"))
    try:
        model = client.get("/model").json()
        assert (
            model["backend"] == "torch"
            and "VESSEL_CALIBRATION_DIR" in model["backend_details"]["fallback_reason"]
        )
        assert _predict(client, png_bytes()).status_code == 200
    finally:
        client.__exit__(None, None, None)


@pytest.mark.slow  # ~6 s: exports and calibrates an int8 model
def test_onnx_int8_is_calibrated_cached_and_close_to_torch(registry: str, tmp_path: Path) -> None:
    from vessel_lightning.tracking.registry import set_alias

    set_alias("1")
    photos = tmp_path / "calibration"
    photos.mkdir()
    for seed in range(3):
        Image.fromarray(photo(seed=seed)).save(photos / f"eye{seed}.png")
    expected = Predictor.from_uri("models:/vessel-unet/1").predict_proba(photo())
    for cached in (False, True):
        client = ready_client(app_settings(registry, tmp_path, backend="onnx-int8", calibration_dir=photos))
        try:
            model = client.get("/model").json()
            assert model["backend"] == "onnx-int8", model["backend_details"]
            _fp32, int8 = model["backend_details"]["exports"]
            assert int8["source"] == "quantize" and int8["cached"] is cached
            assert int8["check"]["calibration_photos"] == 3
            prob = np.asarray(Image.open(io.BytesIO(_predict(client, encode(photo())).content))) / 255
            # int8 is not exact, but it is the same model: close on average, far from a random one.
            assert 0 < np.abs(prob - expected).mean() < 0.05
        finally:
            client.__exit__(None, None, None)
    assert len(list((tmp_path / "onnx-cache").glob("*/model.int8-*.onnx"))) == 1


@pytest.mark.slow  # ~6 s: converts and compiles OpenVINO models
def test_openvino_backends_are_converted_once_checked_and_match_torch(registry: str, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from vessel_lightning.tracking.registry import set_alias

    set_alias("1")
    rgb = encode(photo())
    expected = Predictor.from_uri("models:/vessel-unet/1").predict_proba(photo())
    for backend, cached, precision, limit in [
        ("openvino", False, "f32", 1),
        ("openvino", True, "f32", 1),
        ("openvino-bf16", True, "bf16", 8),  # bf16 keeps 8 mantissa bits: a few 8-bit levels
    ]:
        client = ready_client(app_settings(registry, tmp_path, backend=backend))
        try:
            model = client.get("/model").json()
            assert model["backend"] == backend, model["backend_details"]
            assert model["precision"] == ("bf16" if backend == "openvino-bf16" else "fp32")
            details = model["backend_details"]
            ir = details["exports"][-1]
            assert ir["file"] == "model.xml" and ir["source"] == "convert" and ir["cached"] is cached
            diff = details["check"]["max_abs_diff_vs_fp32"]  # bf16 is judged by its mean (bf16_mismatch)
            assert (diff["probability_mean"] if precision == "bf16" else max(diff.values())) <= details[
                "check"
            ]["tolerance"]
            prob = np.asarray(Image.open(io.BytesIO(_predict(client, rgb).content)))
            assert np.abs(prob.astype(int) - np.round(expected * 255)).max() <= limit
        finally:
            client.__exit__(None, None, None)
    assert len(list((tmp_path / "onnx-cache").glob("*/openvino/model.xml"))) == 1


@pytest.mark.slow
def test_auto_backend_times_gates_and_caches_its_choice(registry: str, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from vessel_lightning.tracking.registry import set_alias

    set_alias("1")
    photos = tmp_path / "calibration"
    photos.mkdir()
    for seed in range(3):
        Image.fromarray(photo(seed=seed)).save(photos / f"eye{seed}.png")
    for cached in (False, True):
        client = ready_client(app_settings(registry, tmp_path, backend="auto", calibration_dir=photos))
        try:
            model = client.get("/model").json()
            auto = model["backend_details"]["auto"]
            assert auto["cached"] is cached and model["backend"] == auto["backend"], auto
            assert {"onnx", "openvino", "torch"} <= set(auto["timings_ms"]) and not auto["refused"]
            gate = auto["mask_f1_vs_fp32"]
            assert model["backend"] in ("torch", "onnx") or gate[model["backend"]] >= 0.995
            assert _predict(client, png_bytes()).status_code == 200
        finally:
            client.__exit__(None, None, None)


def test_calibration_inputs_follow_the_contract(tmp_path: Path) -> None:
    from vessel_lightning.contract import ModelContract
    from vessel_lightning.inference.cache import calibration_inputs

    rgb = photo(seed=4, height=300, width=200)
    Image.fromarray(rgb).save(tmp_path / "eye.png")
    (tiles,) = calibration_inputs(
        [tmp_path / "eye.png"], ModelContract(encoder="b0", mode="tiles", size=(64, 64))
    )
    assert tiles.shape == (4, 3, 64, 64) and tiles.dtype == np.float32
    # Native-resolution crops: the first is the photo's top-left corner, the last its bottom-right one.
    np.testing.assert_allclose(tiles[0], rgb[:64, :64].transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_allclose(tiles[-1], rgb[-64:, -64:].transpose(2, 0, 1) / 255.0, atol=1e-6)
    (resized,) = calibration_inputs([tmp_path / "eye.png"], ModelContract(encoder="b0", size=(64, 64)))
    assert resized.shape == (1, 3, 64, 64) and 0 <= resized.min() <= resized.max() <= 1


def test_cors_off_by_default_and_configurable(client: TestClient, registry: str, tmp_path: Path) -> None:
    origin = {"Origin": "http://localhost:3000"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    settings = app_settings(registry, tmp_path, cors_origins=("http://localhost:3000",), reload_interval_s=0)
    with TestClient(create_app(settings)) as dev:
        response = dev.get("/health", headers=origin)
        assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_static_ui_is_mounted_after_the_api(registry: str, tmp_path: Path) -> None:
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "index.html").write_text("<html><body>vessel ui</body></html>")
    with TestClient(create_app(app_settings(registry, tmp_path, ui_dir=ui))) as client:
        assert "vessel ui" in client.get("/").text
        assert client.get("/health").json()["status"] == "ok"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "VESSEL_HOST": "0.0.0.0",
        "VESSEL_PORT": "9001",
        "VESSEL_MODEL_URI": "models:/other@staging",
        "VESSEL_API_KEY": "k",
        "VESSEL_MAX_UPLOAD_MB": "5",
        "VESSEL_MAX_PIXELS": "1000",
        "VESSEL_RELOAD_INTERVAL_S": "2.5",
        "VESSEL_BACKEND": "torch",
        "VESSEL_CORS_ORIGINS": "http://a, http://b",
        "VESSEL_UI_DIR": str(tmp_path),
        "VESSEL_WINDOW": "768",
    }
    assert Settings.from_env().window == 512  # the default, before the variables are set
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert (settings.host, settings.port, settings.model_uri, settings.api_key) == (
        "0.0.0.0",
        9001,
        "models:/other@staging",
        "k",
    )
    assert settings.max_upload_bytes == 5 * 1024 * 1024 and settings.max_pixels == 1000
    assert settings.reload_interval_s == 2.5 and settings.cors_origins == ("http://a", "http://b")
    assert settings.ui_dir == tmp_path and settings.window == 768
    monkeypatch.setenv("VESSEL_WINDOW", "0")
    assert Settings.from_env().window is None  # the model's own tile size
    monkeypatch.setenv("VESSEL_WINDOW", "500")
    with pytest.raises(SettingsError, match="VESSEL_WINDOW=500 must be a multiple of 32"):
        Settings.from_env()
    monkeypatch.setenv("VESSEL_WINDOW", "512")
    monkeypatch.setenv("VESSEL_PORT", "eighty")
    with pytest.raises(SettingsError, match="VESSEL_PORT"):
        Settings.from_env()
    monkeypatch.setenv("VESSEL_PORT", "8000")
    monkeypatch.setenv("VESSEL_BACKEND", "tensorrt")
    assert main([]) == 2
