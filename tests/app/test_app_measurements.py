"""The field of view, vessel measurements and GeoJSON through the HTTP API (TestClient, a small real model).

/predict zeroes predictions outside the detected field (``fov=auto``, the default) or not (``fov=none``);
``format=fov|json|geojson``; ``POST /measure`` and ``POST /geojson`` answer from the probability PNG at any
threshold exactly as ``/predict`` does for the photo; the scale parameters; every bad parameter gets a 422 that
names it; /docs lists the parameters.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.server import create_app
from tests.helpers.app import app_settings, encode, make_registry, png_bytes
from vessel_lightning.data.fov import detect_fov, fov_diameter
from vessel_lightning.data.geojson import mask_to_geojson
from vessel_lightning.inference.predictor import served_mask
from vessel_lightning.measurements import measure_vessels, um_per_pixel_from_fov

HEIGHT, WIDTH = 96, 120


def fundus(seed: int = 0) -> np.ndarray:
    """A fundus-like photo: a bright, textured disc (radius 44) on a near-black surround."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    disc = (rows - 48) ** 2 + (cols - 60) ** 2 <= 44**2
    rgb = rng.integers(0, 8, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[disc] = rng.integers(90, 255, (int(disc.sum()), 3), dtype=np.uint8)
    return rgb


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API serving one small B0 (champion, version 1), no key; restores MLflow's tracking URI."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("measure-registry")
        uri = make_registry(root, versions=1)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        with TestClient(create_app(app_settings(uri, root))) as client:
            assert client.app.state.manager.wait_ready(120), client.app.state.manager.error
            yield client
    mlflow.set_tracking_uri(previous)


def _predict(client: TestClient, data: bytes, **params):
    return client.post("/predict", files={"file": ("eye.png", data, "image/png")}, params=params)


def _map(client: TestClient, path: str, png: bytes, field_png: bytes | None = None, **params):
    """POST ``png`` as ``file`` (and ``field_png`` as ``fov``) to ``path`` with query ``params``."""
    files = {"file": ("probability.png", png, "image/png")}
    if field_png is not None:
        files["fov"] = ("fov.png", field_png, "image/png")
    return client.post(path, files=files, params=params)


def _gray(content: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(content))
    assert image.mode == "L"
    return np.asarray(image)


def _as_json(value: object) -> object:
    return json.loads(json.dumps(value))


@pytest.fixture(scope="module")
def served(client: TestClient) -> dict[str, object]:
    """The fundus photo, its detected field and what /predict returns for it (probability and field PNGs)."""
    rgb = fundus()
    photo = encode(rgb)
    probability = _predict(client, photo)
    field_png = _predict(client, photo, format="fov")
    assert probability.status_code == 200 and field_png.status_code == 200
    return {
        "photo": photo,
        "field": detect_fov(rgb),
        "probability_png": probability.content,
        "values": _gray(probability.content),
        "field_png": field_png.content,
    }


def test_detected_field_zeroes_predictions_outside_it(client: TestClient, served: dict) -> None:
    field, values = served["field"], served["values"]
    assert 0.4 < field.mean() < 0.9  # the disc, not the frame
    assert np.array_equal(_gray(served["field_png"]), field.astype(np.uint8) * 255)
    assert values[~field].max() == 0 and values[field].max() > 0
    unmasked = _gray(_predict(client, served["photo"], fov="none").content)
    assert unmasked[~field].max() > 0  # the random model "sees" vessels in the dark surround
    assert np.abs(unmasked[field].astype(int) - values[field]).max() <= 1
    whole = _gray(_predict(client, served["photo"], format="fov", fov="none").content)
    assert whole.min() == 255 and whole.shape == (HEIGHT, WIDTH)
    # A photo without a dark surround (noise filling the frame) keeps the whole frame.
    assert _gray(_predict(client, png_bytes(), format="fov").content).min() == 255


def test_json_reports_field_and_the_measurements_of_its_mask(client: TestClient, served: dict) -> None:
    field, values = served["field"], served["values"]
    densities = []
    for threshold in (0.3, 0.6):
        body = _predict(client, served["photo"], format="json", threshold=threshold).json()
        mask = served_mask(values / 255.0, threshold) & field
        rows, cols = np.nonzero(field)
        assert body["fov"] == {
            "mode": "auto",
            "bbox": [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1],
            "diameter_px": round(fov_diameter(field), 2),
            "area_fraction": pytest.approx(float(field.mean())),
        }
        assert body["fov"]["diameter_px"] == pytest.approx(88, abs=3)
        assert body["measurements"] == _as_json(measure_vessels(mask, field).to_dict())
        assert body["scale"] is None and body["threshold"] == threshold and body["model_version"] == "1"
        assert (body["width"], body["height"]) == (WIDTH, HEIGHT)
        assert body["vessel_fraction"] == pytest.approx(float(mask.mean()))
        densities.append(body["measurements"]["area_density"])
    assert densities[0] > densities[1] > 0


def test_measure_endpoint_agrees_with_predict_json_at_every_threshold(
    client: TestClient, served: dict
) -> None:
    for threshold in (0.25, 0.5, 0.62):
        predicted = _predict(client, served["photo"], format="json", threshold=threshold).json()
        measured = _map(
            client, "/measure", served["probability_png"], served["field_png"], threshold=threshold
        )
        assert measured.status_code == 200, measured.text
        body = measured.json()
        assert body["measurements"] == predicted["measurements"]
        assert body["fov"] == predicted["fov"] | {"mode": "uploaded"}
        assert body["threshold"] == threshold and "model_version" not in body
    # Without a field the whole frame counts; a {0, 255} mask PNG measures like the map it came from.
    mask = served_mask(served["values"] / 255.0, 0.5)
    whole = _map(client, "/measure", encode(mask.astype(np.uint8) * 255)).json()
    assert whole["fov"]["mode"] == "none" and whole["fov"]["area_fraction"] == 1.0
    expected = measure_vessels(mask, np.ones_like(mask)).to_dict()
    assert whole["measurements"] == _as_json(expected)


def test_geojson_from_predict_and_from_the_map(client: TestClient, served: dict) -> None:
    mask = served_mask(served["values"] / 255.0, 0.4) & served["field"]
    response = _predict(client, served["photo"], format="geojson", threshold=0.4)
    assert response.status_code == 200 and response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    model = {"model": "models:/vessel-unet@champion", "model_version": "1", "threshold": 0.4}
    assert collection == _as_json(mask_to_geojson(mask, properties=model))
    assert collection["type"] == "FeatureCollection" and collection["features"]
    from_map = _map(client, "/geojson", served["probability_png"], served["field_png"], threshold=0.4)
    assert from_map.status_code == 200 and from_map.headers["content-type"] == "application/geo+json"
    assert from_map.json() == _as_json(mask_to_geojson(mask, properties={"threshold": 0.4}))


def test_physical_scale(client: TestClient, served: dict) -> None:
    field = served["field"]
    mask = served_mask(served["values"] / 255.0, 0.5) & field
    body = _predict(client, served["photo"], format="json", threshold=0.5, um_per_pixel=5).json()
    assert body["scale"] == {"um_per_pixel": 5.0, "source": "um_per_pixel"}
    assert body["measurements"] == _as_json(measure_vessels(mask, field, um_per_pixel=5.0).to_dict())
    assert (
        body["measurements"]
        != _predict(client, served["photo"], format="json", threshold=0.5).json()["measurements"]
    )
    by_angle = _map(
        client, "/measure", served["probability_png"], served["field_png"], threshold=0.5, fov_degrees=45
    ).json()
    um = um_per_pixel_from_fov(fov_diameter(field), 45)
    assert by_angle["scale"] == {
        "um_per_pixel": pytest.approx(um),
        "source": "fov_degrees",
        "fov_degrees": 45.0,
    }
    assert by_angle["measurements"] == _as_json(measure_vessels(mask, field, um_per_pixel=um).to_dict())


BAD = {
    "fov mode": ("/predict", {"fov": "maybe"}, None, 422, "fov"),
    "format": ("/predict", {"format": "jpeg"}, None, 422, "format"),
    "threshold above 1": ("/predict", {"threshold": 1.5}, None, 422, "threshold"),
    "threshold nan": ("/predict", {"threshold": "nan"}, None, 422, "threshold"),
    "um_per_pixel zero": ("/predict", {"format": "json", "um_per_pixel": 0}, None, 422, "um_per_pixel"),
    "um_per_pixel text": ("/measure", {"um_per_pixel": "big"}, None, 422, "um_per_pixel"),
    "fov_degrees too wide": ("/measure", {"fov_degrees": 400}, None, 422, "fov_degrees"),
    "both scales": ("/predict", {"um_per_pixel": 5, "fov_degrees": 45}, None, 422, "not both"),
    "resample text": ("/predict", {"scale": "big"}, None, 422, "scale 'big' must be 'auto' or a number"),
    "resample too large": ("/predict", {"scale": "5"}, None, 422, "scale '5' must be"),
    "resample of a resize model": (
        "/predict",
        {"scale": "0.5"},
        None,
        422,
        "scale=0.5: scale 0.5 applies to tile",
    ),
    "measure threshold": ("/measure", {"threshold": 2}, None, 422, "threshold"),
    "geojson threshold": ("/geojson", {"threshold": -1}, None, 422, "threshold"),
    "fov of another size": ("/measure", {}, encode(np.full((10, 10), 255, np.uint8)), 422, "fov is 10x10"),
    "empty fov": ("/measure", {}, encode(np.zeros((HEIGHT, WIDTH), np.uint8)), 422, "fov: the field"),
    "fov not an image": ("/measure", {}, b"just text\n", 415, "fov: not an image"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_parameters_are_named_in_the_error(client: TestClient, served: dict, name: str) -> None:
    path, params, field_png, status, words = BAD[name]
    source = served["photo"] if path == "/predict" else served["probability_png"]
    response = client.post(
        path,
        files={"file": ("a.png", source, "image/png")}
        | ({"fov": ("fov.png", field_png, "image/png")} if field_png else {}),
        params=params,
    )
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_measure_refuses_bad_uploads(client: TestClient) -> None:
    assert client.post("/measure", data={"other": "x"}).status_code == 400
    text = client.post("/measure", files={"file": ("a.png", b"not a png", "image/png")})
    assert text.status_code == 415 and "not an image" in text.json()["detail"]


def test_openapi_documents_every_query_parameter(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def params(path: str) -> dict[str, dict]:
        return {p["name"]: p for p in paths[path]["post"].get("parameters", []) if p["in"] == "query"}

    predict = params("/predict")
    assert set(predict) == {"format", "threshold", "fov", "scale", "um_per_pixel", "fov_degrees"}
    assert set(params("/measure")) == {"threshold", "um_per_pixel", "fov_degrees"}
    assert set(params("/geojson")) == {"threshold"}
    assert all(p.get("description") for p in predict.values())
    assert set(predict["format"]["schema"]["enum"]) == {"probability", "mask", "json", "geojson", "fov"}


def test_map_endpoints_need_the_api_key_when_set(client: TestClient, tmp_path) -> None:
    import mlflow

    settings = app_settings(mlflow.get_tracking_uri(), tmp_path, api_key="s3cret")
    with TestClient(create_app(settings)) as keyed:
        png = encode(np.zeros((8, 8), np.uint8))
        assert _map(keyed, "/measure", png).status_code == 401
        assert _map(keyed, "/geojson", png).status_code == 401
        ok = keyed.post("/measure", files={"file": ("m.png", png)}, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200, ok.text


def test_scale_auto_resamples_a_tile_model_by_the_field_diameters(client: TestClient, tmp_path) -> None:
    """A tile model trained on photos whose field is 44 px wide reads the 88 px fundus at about half size."""
    import mlflow
    import torch

    from app.model_manager import ModelManager
    from vessel_lightning.contract import ModelContract
    from vessel_lightning.inference.predictor import Predictor
    from vessel_lightning.models.networks import build_network
    from vessel_lightning.tracking.bundle import ModelInfo

    torch.manual_seed(0)
    network = build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()
    contract = ModelContract(
        encoder="efficientnet-b0", mode="tiles", size=(64, 64), threshold=0.5, fov_diameter=44.0
    )
    settings = app_settings(mlflow.get_tracking_uri(), tmp_path, model_uri=str(tmp_path / "tile-model"))
    manager = ModelManager(settings, loader=lambda uri: Predictor(network, contract, info=ModelInfo(uri)))
    rgb = fundus()
    field = detect_fov(rgb)
    factor = 44.0 / fov_diameter(field)
    assert 0.45 < factor < 0.55
    with TestClient(create_app(settings, manager)) as tiles:
        assert manager.wait_ready(120), manager.error
        served = manager.current.predictor
        body = _predict(tiles, encode(rgb), format="json", scale="auto").json()
        assert body["resample_scale"] == round(factor, 4)
        assert _predict(tiles, encode(rgb), format="json", scale="0.75").json()["resample_scale"] == 0.75
        assert _predict(tiles, encode(rgb), format="json").json()["resample_scale"] == 1.0
        auto = _gray(_predict(tiles, encode(rgb), scale="auto").content)
        expected = np.round(served.predict_proba(rgb, field, scale=factor) * 255)
        assert np.abs(auto.astype(int) - expected).max() <= 1
        native = _gray(_predict(tiles, encode(rgb)).content)
        assert np.abs(native.astype(int) - auto).max() > 10  # resampling changed what the model saw
        # Without the training field's diameter, auto is refused by name.
        manager.current = dataclasses.replace(
            manager.current, predictor=Predictor(network, dataclasses.replace(contract, fov_diameter=None))
        )
        refused = _predict(tiles, encode(rgb), scale="auto")
        assert refused.status_code == 422 and "fov_diameter" in refused.json()["detail"]


def test_measure_answers_while_a_prediction_holds_the_model(
    client: TestClient, served: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/measure has its own worker: the UI's panel never waits behind a prediction."""
    import threading
    import time

    predictor = client.app.state.manager.current.predictor
    started, release = threading.Event(), threading.Event()
    original = predictor.predict_proba

    def held(*args, **kwargs):
        started.set()
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict_proba", held)
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(_predict(client, served["photo"]).status_code))
    worker.start()
    try:
        assert started.wait(30)
        start = time.perf_counter()
        measured = _map(client, "/measure", served["probability_png"], served["field_png"], threshold=0.5)
        # Answered while the model is held (the hold lasts 30 s; a shared worker would wait it out).
        assert measured.status_code == 200 and time.perf_counter() - start < 10
    finally:
        release.set()
        worker.join(60)
    assert answers == [200]
