"""The annotation loop, end to end on the CPU with small photos: predict → correct → save through the API →
prepare → fine-tune from the champion (experiment=finetune_annotations) → register → promote → the server follows
the alias, and now agrees with the corrections better than the old champion did.

That is a check that the loop learns on the photos it learned from (two of the three trained, one validated), not
a measure of accuracy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.server import create_app
from tests.helpers.app import app_settings, encode, make_registry
from tests.helpers.data import synthetic_eye
from tests.helpers.train import compose_train, mlflow_runs, small_overrides
from vessel_lightning.config import DEFAULT_EXPERIMENT
from vessel_lightning.tracking.train import train

pytestmark = pytest.mark.slow  # trains a B0 for a few dozen steps (~1-2 min on 2 cores)

SIZE = 64
# The third photo's annotator judged only its left part: the region of interest bounds its field in training.
LEFT = {"type": "Polygon", "coordinates": [[[0, 0], [40, 0], [40, 64], [0, 64], [0, 0]]]}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _served_mask(client: TestClient, png: bytes, roi: dict | None) -> tuple[np.ndarray, str]:
    files = {"file": ("eye.png", png)} | ({"roi": (None, json.dumps(roi))} if roi else {})
    answer = client.post("/predict", files=files, params={"format": "mask", "fov": "none"})
    assert answer.status_code == 200, answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content))) > 0, answer.headers["X-Model-Version"]


def test_corrections_saved_through_the_api_fine_tune_a_model_that_agrees_with_them_better(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from vessel_lightning.tracking.commands import promote_main

    previous_uri = mlflow.get_tracking_uri()
    uri = make_registry(tmp_path / "store", versions=1)  # vessel-unet v1 (champion): an untrained B0 at 64²
    mlflow.set_experiment(
        DEFAULT_EXPERIMENT
    )  # make_registry left its own active; training logs into this one
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    settings = app_settings(uri, tmp_path, annotations_dir=annotations)
    rng = np.random.default_rng(7)
    photos = [synthetic_eye(rng, SIZE, SIZE) for _ in range(3)]
    rois = [None, None, LEFT]
    try:
        with TestClient(create_app(settings)) as client:
            assert client.app.state.manager.wait_ready(120), client.app.state.manager.error
            # Predict, correct (the annotator's mask is the true vessels), save.
            before = []
            for (rgb, truth), roi in zip(photos, rois, strict=True):
                model_mask, version = _served_mask(client, encode(rgb), roi)
                assert version == "1"
                fields = {"annotator": "test", "status": "final"} | ({"roi": json.dumps(roi)} if roi else {})
                files = {
                    "file": ("eye.png", encode(rgb)),
                    "annotation": ("mask.png", encode(truth * 255)),
                    "model_mask": ("model.png", encode(model_mask.astype(np.uint8) * 255)),
                }
                saved = client.post("/annotations", files=files, data=fields)
                assert saved.status_code == 201, saved.text
                region = np.ones(truth.shape, bool) if roi is None else _left(truth.shape)
                before.append(_iou(model_mask & region, truth.astype(bool) & region))
            assert client.get("/annotations").json()["count"] == 3

            # Prepare and fine-tune from the champion (the experiment's own init_from), register the result.
            runs = tmp_path / "runs"
            cfg = compose_train(
                [
                    "experiment=finetune_annotations",
                    *small_overrides(runs),
                    f"data.root={annotations}",
                    f"data.prepared_dir={tmp_path / 'prepared'}",
                    "data.mode=resize",  # the test champion's contract: the whole photo at 64²
                    f"data.size={SIZE}",
                    "data.batch_size=2",
                    "data.workers=0",
                    "data.num_workers=0",
                    "optimizer.lr=0.003",  # the stand-in champion is untrained: a real one needs the default
                    "trainer.max_epochs=40",
                    "~callbacks.early_stopping",
                    "callbacks.mlflow_artifacts.log_model=true",  # registration needs the logged model
                ],
                runs / "train" / "job",
            )
            assert cfg.init_from == "models:/vessel-unet@champion" and cfg.register
            train(cfg)

            # Promote the new version with the documented command; the server follows the alias.
            assert promote_main(["--version", "2", "--tracking-uri", uri]) == 0
            assert client.post("/model/reload").json()["version"] == "2"
            after = []
            for (rgb, truth), roi in zip(photos, rois, strict=True):
                mask, version = _served_mask(client, encode(rgb), roi)
                assert version == "2"
                region = np.ones(truth.shape, bool) if roi is None else _left(truth.shape)
                after.append(_iou(mask & region, truth.astype(bool) & region))
    finally:
        mlflow.set_tracking_uri(previous_uri)

    print(f"IoU with the corrections, old champion {np.round(before, 3)} → fine-tuned {np.round(after, 3)}")
    assert np.mean(after) > np.mean(before) + 0.15, (before, after)

    # The fine-tune run says what it trained on: the annotation set as an MLflow dataset input.
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    (tuned,) = [r for r in mlflow_runs(uri) if r.data.tags.get("experiment") == "finetune_annotations"]
    (dataset,) = [d.dataset for d in tuned.inputs.dataset_inputs]
    assert (dataset.name, dataset.digest) == ("annotations", manifest["fingerprint"][:12])
    assert json.loads(dataset.profile)["samples"] == 3
    assert tuned.data.tags["init_from"] == "models:/vessel-unet@champion"
    # The third photo's region of interest became its field: outside it nothing counted in training.
    fields = {s["source_image"]: s for s in manifest["samples"]}
    assert manifest["has_fov"] and len(fields) == 3
    left = [
        s
        for s in manifest["samples"]
        if (np.asarray(Image.open(tmp_path / "prepared" / s["fov"])) == 0).any()
    ]
    assert len(left) == 1
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "prepared" / left[0]["fov"])) > 0, _left((SIZE, SIZE))
    )


def _left(shape: tuple[int, int]) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    region[:, :40] = True
    return region
