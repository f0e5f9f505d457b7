"""The API's declared shape: settings from the environment (one error naming every bad variable), the OpenAPI
schema (bodies, media types, error bodies) and answers that match their documented models exactly."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.schemas import ErrorBody, Health, ModelInfo, PredictReadout, Readout, Ready
from app.server import create_app, main
from app.settings import Settings, SettingsError
from tests.helpers.app import encode, make_registry, png_bytes

REPO = Path(__file__).resolve().parents[2]

# A valid, non-default value for every variable: each must reach its field.
ENVIRONMENT = {
    "VESSEL_HOST": ("0.0.0.0", "host", "0.0.0.0"),
    "VESSEL_PORT": ("9001", "port", 9001),
    "VESSEL_MODEL_URI": ("models:/x@y", "model_uri", "models:/x@y"),
    "MLFLOW_TRACKING_URI": ("sqlite:///t.db", "tracking_uri", "sqlite:///t.db"),
    "VESSEL_API_KEY": ("k", "api_key", "k"),
    "VESSEL_MAX_UPLOAD_MB": ("2.5", "max_upload_mb", 2.5),
    "VESSEL_MAX_PIXELS": ("1000", "max_pixels", 1000),
    "VESSEL_RELOAD_INTERVAL_S": ("0", "reload_interval_s", 0.0),
    "VESSEL_BACKEND": ("ONNX", "backend", "onnx"),
    "VESSEL_CORS_ORIGINS": ("http://a,,http://b ", "cors_origins", ("http://a", "http://b")),
    "VESSEL_UI_DIR": ("/srv/ui", "ui_dir", Path("/srv/ui")),
    "VESSEL_WORKERS": ("3", "workers", 3),
    "VESSEL_MAX_QUEUE": ("7", "max_queue", 7),
    "VESSEL_THREADS": (" 2 ", "threads", 2),
    "VESSEL_CACHE_DIR": ("~/onnx", "cache_dir", Path("~/onnx").expanduser()),
    "VESSEL_CALIBRATION_DIR": ("/photos", "calibration_dir", Path("/photos")),
    "VESSEL_ANNOTATIONS_DIR": ("~/labels", "annotations_dir", Path("~/labels").expanduser()),
    "VESSEL_WORKLIST_DIR": ("/photos/todo", "worklist_dir", Path("/photos/todo")),
    "VESSEL_WINDOW": ("256", "window", 256),
    "VESSEL_REQUEST_TIMEOUT_S": ("9", "request_timeout_s", 9.0),
    "VESSEL_BODY_TIMEOUT_S": ("8", "body_timeout_s", 8.0),
    "VESSEL_MAX_UPLOADS": ("4", "max_uploads", 4),
    "VESSEL_MIN_UPLOAD_KBPS": ("8", "min_upload_kbps", 8.0),
    "VESSEL_UPLOAD_BUFFER_MB": ("64", "upload_buffer_mb", 64.0),
    "VESSEL_LARGE_IMAGE_PIXELS": ("0", "large_image_pixels", 0),
    "VESSEL_LARGE_QUEUE": ("5", "large_queue", 5),
    "VESSEL_DEVICE": ("CPU", "device", "cpu"),
    "VESSEL_PRECISION": ("fp32", "precision", "fp32"),
    "VESSEL_COMPILE": ("yes", "compile", True),
    "VESSEL_BATCHING": ("off", "batching", "off"),
    "VESSEL_BATCH_MAX": ("4", "batch_max", 4),
    "VESSEL_BATCH_WAIT_MS": ("1.5", "batch_wait_ms", 1.5),
    "VESSEL_LOG_FORMAT": ("JSON", "log_format", "json"),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_variable_reaches_its_field(clean_env: pytest.MonkeyPatch) -> None:
    fields = {field for _, field, _ in ENVIRONMENT.values()}
    assert fields == set(Settings.__pydantic_fields__) - {"fallback_to_torch"}  # no variable forgotten here
    assert Settings.from_env() == Settings()  # nothing set: the defaults
    for name, (raw, _, _) in ENVIRONMENT.items():
        clean_env.setenv(name, raw)
    settings = Settings.from_env()
    for name, (_, field, expected) in ENVIRONMENT.items():
        assert getattr(settings, field) == expected, name
    for name in ENVIRONMENT:
        clean_env.setenv(name, "")  # an empty variable means the default
    assert Settings.from_env() == Settings()


def test_one_error_names_every_bad_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {
        "VESSEL_PORT": "eighty",
        "VESSEL_MAX_QUEUE": "0",
        "VESSEL_WINDOW": "500",
        "VESSEL_DEVICE": "gpu",
        "VESSEL_BATCHING": "maybe",
        "VESSEL_MAX_UPLOAD_MB": "lots",
    }
    for name, value in bad.items():
        clean_env.setenv(name, value)
    clean_env.setenv("VESSEL_HOST", "0.0.0.0")  # a good one among them is not reported
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    message = str(caught.value)
    lines = message.splitlines()
    assert lines[0] == "6 bad settings:" and len(lines) == 7
    for name, value in bad.items():
        assert sum(line.strip().startswith(f"{name}=") for line in lines) == 1, (name, message)
        assert value in message
    assert "VESSEL_PORT='eighty' is not an integer" in message
    assert "VESSEL_MAX_QUEUE='0' must be ≥ 1" in message
    assert "VESSEL_MAX_UPLOAD_MB='lots' is not a number" in message
    assert "VESSEL_HOST" not in message
    assert main([]) == 2  # vessel-serve stops at start-up with that one message
    out = capsys.readouterr().out
    assert out.startswith("error: 6 bad settings:") and all(name in out for name in bad)


def test_settings_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValueError, match="port"):
        Settings(port=-1)
    with pytest.raises(ValueError, match="backend"):
        Settings(backend="tensorrt")
    with pytest.raises(ValueError, match="Unexpected keyword argument"):
        Settings(max_upload=3)  # type: ignore[call-arg]  # a misspelt knob is an error, not ignored
    assert Settings(window=0).window is None and Settings(workers=0).workers is None


def _schema(tmp_path: Path) -> dict:
    settings = Settings(model_uri="models:/none@none", reload_interval_s=0, ui_dir=tmp_path / "no-ui")
    return create_app(settings).openapi()


def test_openapi_documents_uploads_media_types_and_error_bodies(tmp_path: Path) -> None:
    schema = _schema(tmp_path)
    paths = schema["paths"]
    for path, fields, required in (
        ("/predict", {"file", "roi"}, ["file"]),
        ("/measure", {"file", "fov", "roi"}, ["file"]),
        ("/geojson", {"file", "fov", "roi"}, ["file"]),
        ("/annotations", {"file", "annotation", "model_mask", "annotator", "status", "roi", "note", "threshold"},
         ["file", "annotation", "annotator"]),
        ("/annotations/rasterize", {"annotation", "width", "height"}, ["annotation", "width", "height"]),
    ):  # fmt: skip
        body = paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert set(body["properties"]) == fields and body["required"] == required, path
        files = {"file", "fov", "annotation", "model_mask"} & fields
        assert all(body["properties"][f]["format"] == "binary" for f in files), path
        # Text fields (the region of interest, names, numbers) are plain form values, never null.
        assert all("format" not in body["properties"][f] and "anyOf" not in body["properties"][f]
                   for f in fields - files), path  # fmt: skip
    ok = paths["/predict"]["post"]["responses"]["200"]["content"]
    assert set(ok) == {"image/png", "application/json", "application/geo+json"}
    assert ok["application/json"]["schema"]["$ref"].endswith("/PredictReadout")
    headers = paths["/predict"]["post"]["responses"]["200"]["headers"]
    assert set(headers) == {"X-Model-Version", "X-Model-Name", "X-Inference-Time-Ms"}
    predict_errors = {s for s in paths["/predict"]["post"]["responses"] if s != "200"}
    assert predict_errors == {"400", "401", "408", "413", "415", "422", "500", "503", "504"}
    # Every documented error of every endpoint is our {"detail": "..."}; FastAPI's own 422 body appears nowhere.
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")) and not (path == "/ready" and status == "503"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (method, path, status)
    for path, model in (("/health", "Health"), ("/model", "ModelInfo"), ("/model/reload", "ModelInfo")):
        operation = paths[path].get("get") or paths[path]["post"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model)
    assert paths["/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("/NotReady")
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "/" not in paths  # the UI and the 405 answers are not API operations


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    import mlflow

    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("api")
    settings = Settings(
        tracking_uri=make_registry(root, versions=1),
        backend="torch",
        reload_interval_s=0,
        max_upload_mb=1,
        ui_dir=root / "no-ui",
        cache_dir=root / "onnx-cache",
    )
    with TestClient(create_app(settings)) as test_client:
        assert test_client.app.state.manager.wait_ready(120), test_client.app.state.manager.error
        yield test_client
    mlflow.set_tracking_uri(previous)


def _exactly(model: type[BaseModel], body: dict) -> None:
    """``body`` is a valid ``model`` with no key the model does not document (nested models included)."""
    model.model_validate(body)
    assert set(body) == set(model.model_fields), (model.__name__, set(body) ^ set(model.model_fields))


def test_json_answers_match_their_documented_models(client: TestClient) -> None:
    _exactly(Health, client.get("/health").json())
    _exactly(Ready, client.get("/ready").json())
    _exactly(ModelInfo, client.get("/model").json())
    files = {"file": ("eye.png", png_bytes(), "image/png")}
    readout = client.post("/predict?format=json&um_per_pixel=10", files=files)
    assert readout.status_code == 200, readout.text
    _exactly(PredictReadout, readout.json())
    fov = readout.json()["fov"]
    assert set(fov) == {"mode", "bbox", "diameter_px", "area_fraction"}
    assert set(readout.json()["scale"]) == {"um_per_pixel", "source"}
    mask = encode(np.full((8, 8), 255, np.uint8))
    measured = client.post("/measure", files={"file": ("m.png", mask, "image/png")})
    assert measured.status_code == 200, measured.text
    _exactly(Readout, measured.json())
    for answer in (
        client.post("/predict", files={"other": ("x", b"x")}),  # 400: no file
        client.post("/predict?threshold=2", files=files),  # 422: out of bounds
        client.post("/predict", files={"file": ("x.png", b"not an image", "image/png")}),  # 415
        client.post(
            "/predict", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "image/png"}
        ),  # 413
    ):
        assert answer.status_code in (400, 413, 415, 422), answer.text
        _exactly(ErrorBody, answer.json())


def test_nothing_in_the_wheel_imports_the_test_harnesses() -> None:
    for package in ("app", "vessel_lightning"):
        for source in (REPO / package).rglob("*.py"):
            tree = ast.parse(source.read_text(), str(source))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                assert not any(name.split(".")[0] == "tests" for name in names), source
    assert not (REPO / "app" / "process.py").exists()


def test_the_ui_s_committed_openapi_schema_is_current() -> None:
    from app.openapi_schema import UI_SCHEMA, schema_text

    assert UI_SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        "ui/src/api/openapi.json is stale: run `make api-types` (python -m app.openapi_schema --ui, then "
        "npm run api:types in ui/) and commit both files"
    )


def test_openapi_check_names_the_stale_ui_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m app.openapi_schema --check`` (the pre-commit hook): 0 when the UI's openapi.json matches the
    server and its schema.d.ts what openapi-typescript makes of it (run in ui/ on the relative path); else 1."""
    from app import openapi_schema

    ui = tmp_path / "ui"
    (ui / "src" / "api").mkdir(parents=True)
    fake_ts = ui / "node_modules" / ".bin" / "openapi-typescript"
    fake_ts.parent.mkdir(parents=True)
    fake_ts.write_text('#!/bin/sh\necho "// generated in $(basename "$PWD") from $1"\n')
    fake_ts.chmod(0o755)
    monkeypatch.setattr(openapi_schema, "UI_DIR", ui)
    monkeypatch.setattr(openapi_schema, "UI_SCHEMA", ui / "src" / "api" / "openapi.json")
    monkeypatch.setattr(openapi_schema, "UI_TYPES", ui / "src" / "api" / "schema.d.ts")
    monkeypatch.setattr(openapi_schema, "OPENAPI_TS", fake_ts)
    monkeypatch.setattr(openapi_schema, "schema_text", lambda: '{"openapi": "3.1.0"}\n')

    (ui / "src" / "api" / "openapi.json").write_text('{"openapi": "3.0.0"}\n')
    assert openapi_schema.main(["--check"]) == 1
    assert "ui/src/api/openapi.json and ui/src/api/schema.d.ts: stale" in capsys.readouterr().err

    (ui / "src" / "api" / "openapi.json").write_text('{"openapi": "3.1.0"}\n')
    (ui / "src" / "api" / "schema.d.ts").write_text("// hand-edited\n")
    assert openapi_schema.main(["--check"]) == 1
    assert "ui/src/api/schema.d.ts: stale; run `make api-types`" in capsys.readouterr().err

    (ui / "src" / "api" / "schema.d.ts").write_text("// generated in ui from src/api/openapi.json\n")
    assert openapi_schema.main(["--check"]) == 0
    assert "ui/src/api/openapi.json and ui/src/api/schema.d.ts: current" in capsys.readouterr().out

    fake_ts.unlink()  # no node_modules: the types are left to the UI tests, the schema is still compared
    assert openapi_schema.main(["--check"]) == 0
    assert "schema.d.ts is left to the UI tests" in capsys.readouterr().err
    (ui / "src" / "api" / "openapi.json").write_text('{"openapi": "3.0.0"}\n')
    assert openapi_schema.main(["--check"]) == 1
