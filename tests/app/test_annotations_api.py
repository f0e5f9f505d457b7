"""The annotation endpoints through TestClient (a small in-memory B0 serves): save, list, read back, rasterise,
the worklist, every bad input answered by a 4xx that names its field with nothing written, the API key, a folder
that is missing or goes away, and the region of interest on /predict, /measure and /geojson."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.model_manager import ModelManager
from app.server import create_app, main
from app.settings import Settings
from tests.helpers.app import app_settings, encode, fundus_photo, photo, with_exif_orientation
from vessel_lightning.data.annotations import (
    AnnotationFolderError,
    mask_from_geojson,
    photo_id,
    roi_from_geojson,
)
from vessel_lightning.data.fov import detect_fov
from vessel_lightning.data.geojson import rasterize_geojson

SHAPE = (48, 64)
ROI = {"type": "Polygon", "coordinates": [[[8, 6], [50, 6], [50, 40], [8, 40], [8, 6]]]}


def _manager(settings: Settings) -> ModelManager:
    import torch

    from vessel_lightning.contract import ModelContract
    from vessel_lightning.inference.predictor import Predictor
    from vessel_lightning.models.networks import build_network
    from vessel_lightning.tracking.models import ModelInfo

    torch.manual_seed(0)
    network = build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()
    contract = ModelContract(encoder="efficientnet-b0", size=(64, 64), threshold=0.5)
    info = ModelInfo("models:/vessel-unet@champion", name="vessel-unet", version="7")
    return ModelManager(settings, loader=lambda uri: Predictor(network, contract, info=info))


def _settings(tmp: Path, **kw) -> Settings:
    """Test settings whose model URI is a folder (so no store is asked) that :func:`_manager`'s loader fills."""
    from vessel_lightning.contract import NETWORK_FILE

    folder = tmp / "model"
    folder.mkdir(exist_ok=True)
    (folder / NETWORK_FILE).touch()
    return app_settings("sqlite:///unused.db", tmp, model_uri=str(folder), **kw)


def _start(settings: Settings) -> TestClient:
    manager = _manager(settings)
    client = TestClient(create_app(settings, manager))
    client.__enter__()
    assert manager.wait_ready(120), manager.error
    return client


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    annotations, worklist = tmp_path / "annotations", tmp_path / "worklist"
    annotations.mkdir()
    worklist.mkdir()
    for index, name in enumerate(("b.png", "a.png", "c.jpg")):
        Image.fromarray(photo(*SHAPE, seed=10 + index)).save(worklist / name)
    (worklist / "notes.txt").write_text("not a photo")
    return annotations, worklist


@pytest.fixture
def client(tmp_path: Path, folders: tuple[Path, Path]) -> Iterator[TestClient]:
    annotations, worklist = folders
    settings = _settings(tmp_path, annotations_dir=annotations, worklist_dir=worklist)
    client = _start(settings)
    yield client
    client.__exit__(None, None, None)


def _mask(seed: int = 0) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:12, 5:40] = True
    mask[20:40, 30 + seed] = True
    return mask


def _png(mask: np.ndarray) -> bytes:
    return encode((mask * 255).astype(np.uint8))


def _post(client: TestClient, rgb_bytes: bytes, annotation: bytes, **fields: str | bytes) -> object:
    files: dict[str, tuple] = {"file": ("eye.png", rgb_bytes), "annotation": ("mask.png", annotation)}
    data = {"annotator": "Dr A", "status": "final"}
    for name, value in fields.items():
        if value is None:
            data.pop(name, None)
        elif isinstance(value, bytes):
            files[name] = (name, value)
        else:
            data[name] = value
    return client.post("/annotations", files=files, data=data)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".locks" not in p.parts
    }


def test_save_list_read_back_and_resave(client: TestClient, folders: tuple[Path, Path]) -> None:
    root = folders[0]
    assert client.get("/annotations/settings").json() == {"enabled": True, "count": 0, "worklist": True}
    rgb = photo(*SHAPE)
    model_mask = _mask(0)
    corrected = _mask(0)
    corrected[30:33, 40:60] = True
    corrected[10:12, 5:10] = False
    first = _post(
        client, encode(rgb), _png(corrected), model_mask=_png(model_mask), threshold="0.4", note="OD"
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body == {
        "id": photo_id(rgb),
        "version": 1,
        "count": 1,
        "vessel_pixels": int(corrected.sum()),
        "added": int((corrected & ~model_mask).sum()),
        "removed": 10,
        "status": "final",
        "annotator": "Dr A",
    }
    meta = json.loads((root / "meta" / f"{body['id']}.json").read_text())
    assert meta["model"] == {
        "mask": "uploaded",
        "name": "vessel-unet",
        "version": "7",
        "uri": "models:/vessel-unet@champion",
    }
    assert (meta["threshold"], meta["note"]) == (0.4, "OD")

    read = client.get(f"/annotations/{body['id']}")
    assert read.status_code == 200 and read.headers["content-type"] == "application/geo+json"
    assert np.array_equal(mask_from_geojson(read.content, SHAPE), corrected)  # the project's reader: exact

    again = _post(client, encode(rgb), _png(_mask(3)), status="draft", annotator="Dr B")
    assert again.status_code == 200 and again.json()["version"] == 2 and again.json()["count"] == 1
    assert np.array_equal(
        mask_from_geojson(client.get(f"/annotations/{body['id']}").content, SHAPE), _mask(3)
    )
    assert np.array_equal(rasterize_geojson(root / "history" / body["id"] / "1.geojson", SHAPE), corrected)
    other = _post(client, encode(photo(*SHAPE, seed=5)), _png(_mask(1)))
    listed = client.get("/annotations").json()
    assert listed["count"] == 2 and [i["id"] for i in listed["items"]] == [other.json()["id"], body["id"]]
    assert listed["items"][1] | {"saved_at": None} == {
        "id": body["id"], "version": 2, "status": "draft", "annotator": "Dr B", "saved_at": None,
        "width": 64, "height": 48, "vessel_pixels": int(_mask(3).sum()), "note": None,
    }  # fmt: skip
    assert client.get("/annotations/settings").json()["count"] == 2
    assert "/" not in json.dumps(listed).replace("application/", "")  # no server path anywhere


def test_a_geojson_annotation_and_the_models_own_mask(client: TestClient) -> None:
    rgb = photo(*SHAPE, seed=3)
    geojson = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[2, 2], [30, 2], [30, 5], [2, 5], [2, 2]]]}}]}  # fmt: skip
    served = client.post("/predict", files={"file": ("e.png", encode(rgb))}, params={"format": "mask"})
    model_mask = np.asarray(Image.open(io.BytesIO(served.content))) > 0
    saved = _post(client, encode(rgb), json.dumps(geojson).encode())
    assert saved.status_code == 201, saved.text
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2:5, 2:30] = True
    assert saved.json()["vessel_pixels"] == 84
    # Without model_mask the served model's mask at its threshold is the reference.
    assert saved.json()["added"] == int((mask & ~model_mask).sum())
    assert saved.json()["removed"] == int((model_mask & ~mask).sum())


def test_the_saved_photo_has_no_metadata_and_the_same_pixels(
    client: TestClient, folders: tuple[Path, Path]
) -> None:
    rgb = photo(*SHAPE, seed=4)
    jpeg = with_exif_orientation(rgb, orientation=6)  # EXIF says: turn 90° to display
    decoded = np.asarray(Image.open(io.BytesIO(client.post(
        "/predict", files={"file": ("e.jpg", jpeg)}, params={"format": "fov", "fov": "none"}
    ).content)))  # fmt: skip
    shown = (decoded.shape[0], decoded.shape[1])
    assert shown == (64, 48)  # the served pixels are the displayed orientation
    saved = _post(client, jpeg, _png(np.zeros(shown, dtype=bool)))
    assert saved.status_code == 201, saved.text
    stored = folders[0] / "images" / f"{saved.json()['id']}.png"
    image = Image.open(stored)
    assert image.getexif() == {} and not image.info.get("exif")
    from app.decode import decode_image

    assert np.array_equal(np.asarray(image), decode_image(jpeg, 10**6))  # what the server and the mask saw
    assert saved.json()["id"] == photo_id(np.asarray(image))


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"annotation": _png(np.zeros((48, 63), dtype=bool))}, 422, "annotation: the mask is 63x48 but the photo is 64x48"),
        ({"annotation": b"   "}, 422, "annotation: empty"),
        ({"annotation": b"{not json"}, 422, "annotation: invalid JSON"),
        ({"annotation": json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [65, 0], [0, 9], [0, 0]]]}).encode()},
         422, "annotation: feature 0: coordinate [65, 0] is outside the 64x48 photo"),
        ({"status": "done"}, 422, "status: 'done': use one of draft, final"),
        ({"annotator": None}, 422, "annotator: missing"),
        ({"threshold": "high"}, 422, "threshold: 'high' is not a number"),
        ({"roi": '{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 49], [0, 0]]]}'}, 422, "roi: feature 0: coordinate [10, 49]"),
        ({"roi": "{"}, 422, "roi: invalid JSON"),
        ({"model_mask": _png(np.zeros((10, 10), dtype=bool))}, 422, "model_mask: the mask is 10x10"),
        ({"file": b""}, 400, "file: the uploaded file is empty"),
        ({"file": b"%PDF-1.4"}, 415, "file: not an image"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(
    client: TestClient, folders: tuple[Path, Path], fields: dict, status: int, detail: str
) -> None:
    before = _files(folders[0])
    rgb = fields.pop("file", encode(photo(*SHAPE)))
    annotation = fields.pop("annotation", _png(_mask()))
    answer = _post(client, rgb, annotation, **fields)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"].startswith(detail), answer.json()["detail"]
    assert _files(folders[0]) == before


def test_broken_bodies_and_ids(client: TestClient) -> None:
    no_annotation = client.post("/annotations", files={"file": ("e.png", encode(photo(*SHAPE)))})
    assert no_annotation.status_code == 400 and "annotation" in no_annotation.json()["detail"]
    assert (
        client.post("/annotations", content=b"x", headers={"content-type": "text/plain"}).status_code == 400
    )
    broken = b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\nabc"
    assert (
        client.post(
            "/annotations", content=broken, headers={"content-type": "multipart/form-data; boundary=b"}
        ).status_code
        == 400
    )
    assert client.get(f"/annotations/{'0' * 64}").json() == {"detail": "no annotation with this id"}
    for bad in ("abc", "A" * 64, "..%2F..%2Fmeta%2Fx", "0" * 63 + "g"):
        answer = client.get(f"/annotations/{bad}")
        assert answer.status_code in (404, 422), (bad, answer.status_code)
        if answer.status_code == 422:
            assert answer.json()["detail"].startswith("id: not an annotation id")
    assert client.get(f"/annotations/{'a' * 63}Z").status_code == 422


def test_rasterize_uses_the_projects_reader(client: TestClient) -> None:
    geojson = {"type": "Polygon", "coordinates": [[[1.5, 1.5], [20.2, 3], [10, 17.7], [1.5, 1.5]]]}
    answer = client.post(
        "/annotations/rasterize",
        files={"annotation": ("a.geojson", json.dumps(geojson))},
        data={"width": "30", "height": "20"},
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(answer.content))
    assert image.mode == "L" and set(np.unique(image)) <= {0, 255}
    assert np.array_equal(np.asarray(image) > 0, rasterize_geojson(geojson, (20, 30)).astype(bool))
    outside = client.post(
        "/annotations/rasterize",
        files={"annotation": ("a", json.dumps(geojson))},
        data={"width": "15", "height": "20"},
    )
    assert outside.status_code == 422 and "outside the 15x20 photo" in outside.json()["detail"]
    missing = client.post(
        "/annotations/rasterize", files={"annotation": ("a", json.dumps(geojson))}, data={"width": "15"}
    )
    assert missing.status_code == 422 and missing.json()["detail"].startswith("height: missing")
    assert client.post("/annotations/rasterize", data={"width": "1", "height": "1"}).status_code == 400


def test_worklist_offers_unlabelled_photos_by_name(client: TestClient, folders: tuple[Path, Path]) -> None:
    worklist = folders[1]
    assert client.get("/worklist/next").json() == {"name": "a.png", "remaining": 3}
    photo_a = client.get("/worklist/photos/a.png")
    assert photo_a.status_code == 200 and photo_a.content == (worklist / "a.png").read_bytes()
    assert photo_a.headers["content-type"] == "image/png"
    assert _post(client, photo_a.content, _png(_mask())).status_code == 201
    assert client.get("/worklist/next").json() == {"name": "b.png", "remaining": 2}
    for name in ("notes.txt", "..%2Fannotations", "missing.png", ".hidden.png"):
        assert client.get(f"/worklist/photos/{name}").status_code == 404, name
    for name in ("b.png", "c.jpg"):
        assert _post(client, client.get(f"/worklist/photos/{name}").content, _png(_mask())).status_code == 201
    assert client.get("/worklist/next").status_code == 404
    assert client.get("/worklist/next").json() == {"detail": "worklist done"}


def test_off_without_a_folder_and_guarded_by_the_key(tmp_path: Path) -> None:
    off = _start(_settings(tmp_path))
    try:
        assert off.get("/annotations/settings").json() == {"enabled": False, "count": 0, "worklist": False}
        answer = _post(off, encode(photo(*SHAPE)), _png(_mask()))
        assert answer.status_code == 503 and "VESSEL_ANNOTATIONS_DIR" in answer.json()["detail"]
        assert off.get("/annotations").status_code == 503
        assert "VESSEL_WORKLIST_DIR" in off.get("/worklist/next").json()["detail"]
    finally:
        off.__exit__(None, None, None)
    (tmp_path / "a").mkdir()
    keyed = _start(_settings(tmp_path, annotations_dir=tmp_path / "a", api_key="k"))
    try:
        assert _post(keyed, encode(photo(*SHAPE)), _png(_mask())).status_code == 401
        raster = {"files": {"annotation": ("a", b"[]")}, "data": {"width": "4", "height": "4"}}
        assert keyed.post("/annotations/rasterize", **raster).status_code == 401
        assert keyed.post("/annotations/rasterize", headers={"X-API-Key": "k"}, **raster).status_code == 200
        files = {"file": ("e.png", encode(photo(*SHAPE))), "annotation": ("m.png", _png(_mask()))}
        ok = keyed.post("/annotations", files=files, data={"annotator": "a"}, headers={"X-API-Key": "k"})
        assert ok.status_code == 201 and ok.json()["status"] == "draft"
        assert keyed.get("/annotations").status_code == 200  # reading needs no key, as for /model
    finally:
        keyed.__exit__(None, None, None)


def test_a_missing_folder_stops_the_start_and_a_vanished_one_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AnnotationFolderError, match=r"VESSEL_ANNOTATIONS_DIR=.*absent: no such folder"):
        create_app(_settings(tmp_path, annotations_dir=tmp_path / "absent"))
    with pytest.raises(AnnotationFolderError, match=r"VESSEL_WORKLIST_DIR=.*absent: no such folder"):
        create_app(_settings(tmp_path, worklist_dir=tmp_path / "absent"))
    monkeypatch.setenv("VESSEL_ANNOTATIONS_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("VESSEL_RELOAD_INTERVAL_S", "0")
    assert main([]) == 2
    assert "error: VESSEL_ANNOTATIONS_DIR=" in capsys.readouterr().out
    folder = tmp_path / "later"
    folder.mkdir()
    client = _start(_settings(tmp_path, annotations_dir=folder))
    try:
        folder.rename(tmp_path / "moved")
        answer = _post(client, encode(photo(*SHAPE)), _png(_mask()))
        assert answer.status_code == 503
        assert (
            answer.json()["detail"].startswith("VESSEL_ANNOTATIONS_DIR: ")
            and str(tmp_path) not in answer.text
        )
    finally:
        client.__exit__(None, None, None)


def test_roi_restricts_predict_measure_and_geojson(client: TestClient) -> None:
    rgb, disc = fundus_photo(*SHAPE, radius=21)
    roi_text = json.dumps(ROI)
    region = roi_from_geojson(ROI, SHAPE)
    field = detect_fov(rgb)
    files = {"file": ("e.png", encode(rgb)), "roi": (None, roi_text)}
    fov = client.post("/predict", files=files, params={"format": "fov"})
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(fov.content))) > 0, field & region)
    probability = np.asarray(
        Image.open(io.BytesIO(client.post("/predict", files=files, params={"fov": "none"}).content))
    )
    assert probability[~region].max() == 0 and probability[region].max() > 0
    readout = client.post("/predict", files=files, params={"format": "json", "threshold": "0"}).json()
    assert readout["fov"]["mode"] == "auto+roi"
    assert readout["fov"]["area_fraction"] == pytest.approx((field & region).mean())
    assert readout["vessel_fraction"] == pytest.approx((field & region).mean())  # threshold 0: all inside
    plain = client.post(
        "/predict", files={"file": files["file"]}, params={"format": "json", "fov": "none"}
    ).json()
    assert plain["fov"]["mode"] == "none"
    alone = client.post("/predict", files=files, params={"format": "json", "fov": "none"}).json()
    assert alone["fov"]["mode"] == "roi" and alone["fov"]["bbox"] == [8, 6, 50, 40]

    everything = encode(np.full(SHAPE, 255, dtype=np.uint8))
    half = np.zeros(SHAPE, dtype=np.uint8)
    half[:, :30] = 255
    measured = client.post("/measure", files={"file": ("m.png", everything), "roi": (None, roi_text)}).json()
    assert measured["fov"]["mode"] == "roi" and measured["vessel_fraction"] == pytest.approx(region.mean())
    both = client.post(
        "/measure",
        files={"file": ("m.png", everything), "fov": ("f.png", encode(half)), "roi": (None, roi_text)},
    ).json()
    assert both["fov"]["mode"] == "uploaded+roi"
    assert both["vessel_fraction"] == pytest.approx((region & (half > 0)).mean())
    geojson = client.post("/geojson", files={"file": ("m.png", everything), "roi": (None, roi_text)})
    assert np.array_equal(mask_from_geojson(geojson.content, SHAPE), region)

    outside = {"type": "Polygon", "coordinates": [[[0, 0], [70, 0], [0, 10], [0, 0]]]}
    bad = client.post("/measure", files={"file": ("m.png", everything), "roi": (None, json.dumps(outside))})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("roi: feature 0: coordinate [70, 0]")
    line = client.post(
        "/predict", files={"file": files["file"], "roi": (None, '{"type": "Point", "coordinates": [1, 1]}')}
    )
    assert line.status_code == 422 and "roi: expected a GeoJSON Polygon" in line.json()["detail"]
    corner = {
        "type": "Polygon",
        "coordinates": [[[0, 0], [3, 0], [3, 3], [0, 3], [0, 0]]],
    }  # off the fundus disc
    away = client.post(
        "/predict",
        files={"file": files["file"], "roi": (None, json.dumps(corner))},
        params={"format": "json"},
    )
    assert away.status_code == 422 and "does not overlap the field of view" in away.json()["detail"]
    assert not disc[:3, :3].any()
