"""``vessel-predict`` over folders: the field of view, one CSV row of measurements per photo, GeoJSON out, and the
correct-and-retrain loop (exported GeoJSON + photos → ``vessel-prepare data=geojson`` → training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.app import fundus_photo
from tests.helpers.registry import eval_cfg, logged_run, tiny_contract
from vessel_lightning.data.fov import detect_fov, fov_diameter
from vessel_lightning.data.geojson import rasterize_geojson
from vessel_lightning.inference.predict_cli import main as predict_main
from vessel_lightning.tracking.registry import register


def _photos(folder: Path, count: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        rgb, _ = fundus_photo(96, 128, 44 + 4 * i, seed=i)
        paths.append(folder / f"eye_{i}.png")
        Image.fromarray(rgb).save(paths[-1])
    return paths


@pytest.mark.slow  # ~8 s: predicts, measures and writes a folder
def test_vessel_predict_over_a_folder_writes_field_csv_and_geojson(
    store: str, network, tmp_path: Path, capsys
) -> None:
    register(logged_run(network, tiny_contract()), alias="champion")
    photos = _photos(tmp_path / "eyes")
    out = tmp_path / "res"
    args = ["--out", str(out), "--format", "png,geojson", "--fov-degrees", "30", "--threshold", "0.3"]
    assert predict_main([str(tmp_path / "eyes"), *args]) == 0
    # A second run over the same folder must not read the first run's outputs as photos.
    assert predict_main([str(tmp_path / "eyes"), *args]) == 0
    with (out / "measurements.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["photo"]).name for r in rows] == ["eye_0.png", "eye_1.png"]
    for photo, row in zip(photos, rows, strict=True):
        rgb = np.asarray(Image.open(photo))
        field = detect_fov(rgb)
        assert np.array_equal(np.asarray(Image.open(out / f"{photo.stem}.fov.png")) > 0, field)
        prob = np.asarray(Image.open(out / f"{photo.stem}.prob.png"))
        mask = np.asarray(Image.open(out / f"{photo.stem}.mask.png")) > 0
        assert (prob[~field] == 0).all() and (prob[field] > 0).any()
        geo = json.loads((out / f"{photo.stem}.geojson").read_text())
        assert np.array_equal(rasterize_geojson(geo, mask.shape).astype(bool), mask)
        assert all(f["properties"]["threshold"] == 0.3 for f in geo["features"])
        assert row["fov"] == "detected" and row["threshold"] == "0.3"
        diameter = fov_diameter(field)
        assert float(row["fov_diameter_px"]) == pytest.approx(diameter, abs=0.05)
        assert float(row["um_per_pixel"]) == pytest.approx(30 * 288 / diameter, rel=1e-4)
        assert int(row["vessel_area_px"]) == int(mask.sum())
        assert float(row["area_density"]) == pytest.approx(mask.sum() / field.sum(), rel=1e-5)
        assert float(row["calibre_mean_um"]) == pytest.approx(
            float(row["calibre_mean_px"]) * 30 * 288 / diameter, rel=1e-4
        )
    assert "2 photo(s)" in capsys.readouterr().out


@pytest.mark.slow  # ~6 s: two prediction runs
def test_vessel_predict_scale_auto_needs_and_uses_the_training_field(
    store: str, network, tmp_path: Path, capsys
) -> None:
    from vessel_lightning.data.fov import fov_diameter

    register(
        logged_run(network, tiny_contract(mode="tiles")), alias="champion"
    )  # a contract without fov_diameter
    photos = _photos(tmp_path / "eyes", count=1)
    out = tmp_path / "res"
    assert predict_main([str(photos[0]), "--out", str(out), "--scale", "auto"]) == 1
    assert "no fov_diameter" in capsys.readouterr().err
    code = predict_main(
        [str(photos[0]), "--out", str(out), "--scale", "auto", "--reference-fov-diameter", "44"]
    )
    assert code == 0
    (row,) = csv.DictReader((out / "measurements.csv").open())
    field = detect_fov(np.asarray(Image.open(photos[0])))
    assert float(row["scale"]) == pytest.approx(44 / fov_diameter(field), abs=1e-4)


def test_vessel_predict_rejects_bad_options(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        predict_main([str(tmp_path), "--out", str(tmp_path / "o"), "--format", "svg"])
    with pytest.raises(SystemExit):
        predict_main(
            [str(tmp_path), "--out", str(tmp_path / "o"), "--um-per-pixel", "2", "--fov-degrees", "30"]
        )
    assert predict_main([str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no image files found" in capsys.readouterr().err


def _export_and_prepare(tmp_path: Path, mode: str = "tiles"):
    from tests.helpers.data import data_config
    from vessel_lightning.data.prepare import prepare, read_manifest

    root = tmp_path / "slitlamp"
    _photos(root / "images", count=6)
    code = predict_main([str(root / "images"), "--out", str(root / "annotations"), "--format", "geojson",
                         "--threshold", "0.45"])  # fmt: skip
    assert code == 0
    cfg = data_config(
        ["data=geojson", f"data.root={root}", f"data.prepared_dir={tmp_path / 'prepared'}", f"data.mode={mode}",
         "data.size=64", "data.val_fraction=0.2", "data.test_fraction=0.2", "data.batch_size=2", "data.workers=0"]
    )  # fmt: skip
    prepare(cfg, progress=False)
    return root, cfg, read_manifest(cfg.prepared_dir)


@pytest.mark.slow  # ~7 s: predicts, exports and prepares again
def test_exported_geojson_prepares_back_to_the_predicted_masks(store: str, network, tmp_path: Path) -> None:
    from vessel_lightning.inference.predictor import Predictor, served_mask

    register(logged_run(network, tiny_contract()), alias="champion")
    root, cfg, manifest = _export_and_prepare(tmp_path)
    assert len(manifest["samples"]) == 6
    predictor = Predictor.from_uri("models:/vessel-unet@champion")
    for sample in manifest["samples"]:
        rgb = np.asarray(Image.open(root / "images" / f"{sample['id']}.png"))
        expected = served_mask(predictor.predict_proba(rgb, "detect"), 0.45)
        prepared = np.asarray(Image.open(Path(cfg.prepared_dir) / sample["mask"])) > 127
        assert np.array_equal(prepared, expected)


def test_vessel_eval_scores_inside_the_detected_field_and_measures_prediction_and_label(
    store: str,
    network,
    tmp_path: Path,
) -> None:
    from tests.helpers.data import make_masks_folder
    from vessel_lightning.data.images import read_gray
    from vessel_lightning.evaluation.evaluate import AGREEMENT_KEYS, EvaluationError, evaluate
    from vessel_lightning.measurements import measure_vessels

    root = make_masks_folder(tmp_path / "raw", count=6, size=(70, 90))
    register(logged_run(network, tiny_contract(size=(64, 64))), alias="champion")
    cfg = eval_cfg(
        tmp_path, root, "models:/vessel-unet@champion", "fov=detect", "scale=auto", "log_to_mlflow=false"
    )
    summary = evaluate(cfg)
    assert summary["protocol"]["fov"] == "detect" and summary["protocol"]["inside_fov"]
    rows = list(csv.DictReader((tmp_path / "eval" / "measurements.csv").open()))
    assert len(rows) == summary["n_images"] == 3
    for row in rows:
        label = read_gray(root / "masks" / f"{row['id']}.png") > 127
        expected = measure_vessels(
            label, detect_fov(np.asarray(Image.open(root / "images" / f"{row['id']}.png")))
        )
        assert float(row["label_skeleton_length_px"]) == pytest.approx(expected.skeleton_length_px, rel=1e-5)
        assert int(row["label_branch_points"]) == expected.branch_points
    agreement = summary["measurement_agreement"]
    assert set(agreement) <= set(AGREEMENT_KEYS) and "area_density" in agreement
    label_density = np.mean([float(r["label_area_density"]) for r in rows])
    assert agreement["area_density"]["label_mean"] == pytest.approx(label_density, abs=1e-6)
    pred_density = np.array([float(r["pred_area_density"]) for r in rows])
    mae = np.abs(pred_density - [float(r["label_area_density"]) for r in rows]).mean()
    assert agreement["area_density"]["mae"] == pytest.approx(mae, abs=1e-6)
    with pytest.raises(EvaluationError, match="fov must be one of"):
        evaluate(eval_cfg(tmp_path, root, "models:/vessel-unet@champion", "fov=maybe", "log_to_mlflow=false"))


@pytest.mark.slow
def test_exported_geojson_and_photos_prepare_and_train(store: str, network, tmp_path: Path) -> None:
    from tests.helpers.train import compose_train, data_overrides, small_overrides
    from vessel_lightning.tracking.train import train

    register(logged_run(network, tiny_contract()), alias="champion")
    _, cfg, manifest = _export_and_prepare(tmp_path)
    assert {s["split"] for s in manifest["samples"]} == {"train", "val", "test"}
    runs = tmp_path / "runs"
    overrides = [
        *data_overrides(cfg),
        "data.mode=tiles",
        *small_overrides(runs),
        "trainer.max_epochs=1",
        "logger=csv",
    ]
    metrics, _ = train(compose_train(overrides, runs / "train" / "job"))
    assert np.isfinite(metrics["train/loss"]) and 0.0 <= metrics["val/f1"] <= 1.0
