"""Registry round trip, promotion, native-resolution evaluation and batch prediction on a tmp SQLite store."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.data import make_masks_folder
from tests.helpers.registry import eval_cfg, logged_run, tiny_contract
from vessel_lightning.contract import ContractError, ModelContract
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.tiling import window_origins
from vessel_lightning.tracking.commands import promote_main, runs_main
from vessel_lightning.tracking.registry import register
from vessel_lightning.tracking.run_listing import best_run


def test_register_alias_load_predict_round_trip(store: str, network) -> None:
    from vessel_lightning.tracking.bundle import load_logged_model

    run_id = logged_run(network, tiny_contract())
    assert register(run_id, alias="champion") == "1"
    assert register(run_id, alias="champion") == "1"  # the same run is not registered twice
    loaded, _, _ = load_logged_model("models:/vessel-unet@champion")
    for shape in ((1, 3, 64, 64), (2, 3, 96, 160)):
        x = torch.rand(*shape)
        with torch.no_grad():
            out = loaded(x)
            assert out.shape == (shape[0], 1, *shape[2:]) and out.dtype == torch.float32
            assert torch.allclose(out, network(x), atol=1e-5)
    predictor = Predictor.from_uri("models:/vessel-unet@champion")
    assert predictor.info.version == "1" and predictor.info.alias == "champion"
    assert predictor.contract == tiny_contract() and predictor.threshold == 0.4
    rgb = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    prob = predictor.predict_proba(rgb)
    assert prob.shape == (70, 90) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1


def test_predictor_runs_at_the_contract_size(network) -> None:
    seen: list[tuple[int, ...]] = []
    hook = network.register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[0].shape)))
    try:
        Predictor(network, tiny_contract(size=(256, 256))).predict_proba(np.zeros((100, 130, 3), np.uint8))
        assert seen == [(1, 3, 256, 256)]
        seen.clear()
        tiles = Predictor(network, tiny_contract(size=(64, 64), mode="tiles"), overlap=0.25, batch_windows=16)
        prob = tiles.predict_proba(np.zeros((100, 130, 3), np.uint8))
        assert prob.shape == (100, 130)
        assert seen and all(s[2:] == (64, 64) for s in seen)
    finally:
        hook.remove()


def test_tile_predictor_window_trades_calls_for_context(network) -> None:
    seen: list[tuple[int, ...]] = []
    hook = network.register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[0].shape)))
    rgb = np.random.default_rng(1).integers(0, 255, (200, 330, 3), dtype=np.uint8)
    try:
        tiles = Predictor(network, tiny_contract(size=(64, 64), mode="tiles"), overlap=0.25, batch_windows=64)
        small = tiles.predict_proba(rgb)
        assert [s[2:] for s in seen] == [(64, 64)]
        assert seen[0][0] == len(window_origins(224, 64, 0.25)) * len(
            window_origins(352, 64, 0.25)
        )  # padded to /32
        seen.clear()
        wide = Predictor(network, tiny_contract(size=(64, 64), mode="tiles"), overlap=0.25, window=128)
        assert wide.window_size(200, 330) == (128, 128) and wide.window_size(40, 100) == (64, 128)
        large = wide.predict_proba(rgb)
        assert all(s[2:] == (128, 128) for s in seen) and sum(s[0] for s in seen) == 2 * 4
        assert large.shape == small.shape == (200, 330)
        # Same network, different context: close, not equal (BatchNorm in eval mode is per-pixel affine).
        assert 0 < np.abs(large - small).mean() < 0.05
    finally:
        hook.remove()
    with pytest.raises(
        ValueError, match="window 100 must be a positive multiple of the model's input divisor 32"
    ):
        Predictor(network, tiny_contract(size=(64, 64), mode="tiles"), window=100)


def test_tile_predictor_scale_resamples_the_photo_and_scores_at_native_size(network) -> None:
    import torch.nn.functional as F

    from vessel_lightning.data.images import resize_image

    seen: list[tuple[int, ...]] = []
    hook = network.register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[0].shape)))
    rgb = np.random.default_rng(2).integers(0, 255, (200, 330, 3), dtype=np.uint8)
    tiles = tiny_contract(size=(64, 64), mode="tiles")
    try:
        half = Predictor(network, tiles, overlap=0.25, scale=0.5, batch_windows=64).predict_proba(rgb)
        # 100×165 after resampling, padded to 128×192: the window grid of the smaller photo
        assert seen == [(len(window_origins(128, 64, 0.25)) * len(window_origins(192, 64, 0.25)), 3, 64, 64)]
    finally:
        hook.remove()
    native = Predictor(network, tiles, overlap=0.25, batch_windows=64)
    small = torch.from_numpy(native.predict_proba(resize_image(rgb, (100, 165))))
    expected = F.interpolate(small[None, None], size=(200, 330), mode="bilinear", align_corners=False)[0, 0]
    assert half.shape == (200, 330) and half.dtype == np.float32
    np.testing.assert_allclose(half, expected.numpy(), atol=1e-6)
    assert np.abs(half - native.predict_proba(rgb)).mean() > 1e-3  # the network did see another photo
    with pytest.raises(ValueError, match=r"scale 0\.5 applies to tile models only"):
        Predictor(network, tiny_contract(size=(64, 64)), scale=0.5)
    with pytest.raises(ValueError, match=r"scale 0 must be in \(0, 4\]"):
        Predictor(network, tiles, scale=0)


def test_promote_best_by_picks_the_best_of_three(store: str, network, capsys) -> None:
    ids = {f1: logged_run(network, tiny_contract(), {"val/f1_best": f1}) for f1 in (0.61, 0.83, 0.72)}
    assert best_run("registry-test", "val/f1_best").run_id == ids[0.83]
    assert promote_main(["--experiment", "registry-test", "--best-by", "val/f1_best"]) == 0
    assert "version 1 from run " + ids[0.83] in capsys.readouterr().out
    version = register(ids[0.61])
    assert promote_main(["--version", version]) == 0
    assert Predictor.from_uri("models:/vessel-unet@champion").info.run_id == ids[0.61]
    assert runs_main(["--experiment", "registry-test"]) == 0
    table = capsys.readouterr().out
    assert table.index("0.8300") < table.index("0.7200") < table.index("0.6100")
    # A chosen run, not the best one (the lean model for a CPU server): registered once, alias moved.
    assert promote_main(["--run-id", ids[0.72]]) == 0
    assert promote_main(["--run-id", ids[0.72]]) == 0
    assert (
        capsys.readouterr().out.count(f"vessel-unet version 3 from run {ids[0.72]}; champion → version 3")
        == 2
    )
    assert Predictor.from_uri("models:/vessel-unet@champion").info.run_id == ids[0.72]


def test_promote_errors_are_one_line(store: str, network, capsys) -> None:
    assert promote_main(["--version", "7"]) == 1
    assert capsys.readouterr().err.strip() == "error: model 'vessel-unet' has no version 7"
    assert promote_main(["--experiment", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no experiment named 'nope'") and err.count("\n") == 1
    assert promote_main(["--run-id", "0" * 32]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "0" * 32 in err and err.count("\n") == 1


def test_missing_store_is_reported_not_created(tmp_path: Path, capsys, monkeypatch) -> None:
    missing = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    assert promote_main(["--version", "1"]) == 1
    assert "no tracking store" in capsys.readouterr().err
    assert not missing.exists()


def test_vessel_eval_writes_every_output_at_native_resolution(store: str, network, tmp_path: Path) -> None:
    import mlflow

    from vessel_lightning.evaluation.evaluate import evaluate

    root = make_masks_folder(tmp_path / "raw", count=6, size=(70, 90))
    run_id = logged_run(network, tiny_contract(size=(64, 64)))
    register(run_id, alias="champion")
    summary = evaluate(eval_cfg(tmp_path, root, "models:/vessel-unet@champion"))
    out = tmp_path / "eval"
    written = json.loads((out / "summary.json").read_text())
    assert written == summary
    for key in ("f1", "iou", "precision", "recall", "auc", "cldice", "thin_recall", "f1_per_image_mean",
                "iou_per_image_mean", "threshold"):  # fmt: skip
        assert isinstance(summary[key], float), key
    assert summary["threshold"] == 0.4 and summary["at_threshold_0.5"]["threshold"] == 0.5
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == summary["n_images"] == 3
    assert {(r["height"], r["width"]) for r in rows} == {("70", "90")}  # scored at native size
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 3 and Image.open(overlays[0]).size == (90, 70)
    evaluation = mlflow.search_runs(experiment_names=["vessel-eval"], output_format="list")
    assert len(evaluation) == 1 and evaluation[0].data.tags["model_version"] == "1"
    assert evaluation[0].data.metrics["test/f1"] == summary["f1"]
    from mlflow.tracking import MlflowClient

    assert MlflowClient().get_model_version("vessel-unet", "1").tags["eval.masks.test.f1"] == str(
        summary["f1"]
    )


def test_vessel_eval_bad_inputs_exit_with_one_line(store: str, network, tmp_path: Path, caplog) -> None:
    import mlflow

    from vessel_lightning.evaluation.evaluate import _main

    root = make_masks_folder(tmp_path / "raw", count=3, size=(40, 40))
    register(logged_run(network, tiny_contract()), alias="champion")
    with mlflow.start_run() as bare:  # a model logged without a contract
        mlflow.pytorch.log_model(
            network, name="model", serialization_format="pickle", pip_requirements=["torch"]
        )
    cases = {
        "models:/vessel-unet@nope": "nope",
        "models:/vessel-unet/9": "9",
        f"runs:/{bare.info.run_id}/model": "no 'contract' metadata",
    }
    for uri, expected in cases.items():
        caplog.clear()
        with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
            _main(eval_cfg(tmp_path, root, uri))
        assert exit_info.value.code == 1
        assert expected in caplog.text and "Traceback" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
        _main(eval_cfg(tmp_path, root, "models:/vessel-unet@champion", "data.test_fraction=0"))
    assert "the 'test' split of masks" in caplog.text and "is empty" in caplog.text


def test_contract_rejects_garbage() -> None:
    with pytest.raises(ContractError, match="m1: invalid model contract"):
        ModelContract.from_dict({"encoder": "x"} | {"size": "big"}, source="m1")
    with pytest.raises(ContractError, match="mode must be"):
        ModelContract.from_dict({"encoder": "x", "size": [64, 64], "mode": "weird"})


def test_vessel_predict_writes_masks_and_overlays(store: str, network, tmp_path: Path, capsys) -> None:
    from vessel_lightning.inference.predict_cli import main as predict_main

    register(logged_run(network, tiny_contract()), alias="champion")
    photos = []
    for i, size in enumerate(((50, 60), (64, 64))):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(photos[-1])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code = predict_main([*map(str, photos), str(tmp_path / "broken.png"), "--out", str(tmp_path / "res"),
                         "--threshold", "0.3", "--backend", "torch"])  # fmt: skip
    assert code == 1  # one photo failed, the others were written
    assert "broken.png: not a readable image" in capsys.readouterr().err
    mask = np.asarray(Image.open(tmp_path / "res" / "p0.mask.png"))
    prob = np.asarray(Image.open(tmp_path / "res" / "p0.prob.png"))
    assert mask.shape == prob.shape == (50, 60) and set(np.unique(mask)) <= {0, 255}
    expected = Predictor.from_uri("models:/vessel-unet@champion").predict_proba(
        np.full((50, 60, 3), 120, np.uint8)
    )
    assert np.array_equal(prob, np.round(expected * 255).astype(np.uint8))
    assert np.array_equal(mask == 255, prob / 255.0 >= 0.3)  # the served rule: the 8-bit value thresholded
    assert Image.open(tmp_path / "res" / "p1.overlay.png").size == (64, 64)


@pytest.mark.slow  # ~6 s: exports a backend, evaluates and predicts
def test_eval_and_predict_run_on_a_chosen_backend(
    store: str, network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    pytest.importorskip("openvino")
    from vessel_lightning.evaluation.evaluate import evaluate
    from vessel_lightning.inference.predict_cli import main as predict_main

    monkeypatch.setenv("VESSEL_CACHE_DIR", str(tmp_path / "cache"))
    root = make_masks_folder(tmp_path / "raw", count=4, size=(70, 90))
    register(logged_run(network, tiny_contract(size=(64, 64))), alias="champion")
    uri = "models:/vessel-unet@champion"
    reference = evaluate(eval_cfg(tmp_path, root, uri, "log_to_mlflow=false", "overlays=false"))
    fast = evaluate(
        eval_cfg(tmp_path, root, uri, "log_to_mlflow=false", "overlays=false", "backend=openvino")
    )
    assert reference["protocol"]["backend"] == "torch" and fast["protocol"]["backend"] == "openvino"
    assert abs(fast["f1"] - reference["f1"]) < 1e-3 and abs(fast["auc"] - reference["auc"]) < 1e-3
    Image.fromarray(np.full((50, 60, 3), 120, np.uint8)).save(tmp_path / "eye.png")
    assert predict_main([str(tmp_path / "eye.png"), "--out", str(tmp_path / "res"), "--backend", "onnx"]) == 0
    assert "backend onnx" in capsys.readouterr().out
    prob = np.asarray(Image.open(tmp_path / "res" / "eye.prob.png")).astype(int)
    expected = Predictor.from_uri(uri).predict_proba(np.full((50, 60, 3), 120, np.uint8))
    assert np.abs(prob - np.round(expected * 255)).max() <= 1
    assert len(list((tmp_path / "cache").glob("*/model.onnx"))) == 1  # exported once, shared by both CLIs


def test_parse_registry_uri() -> None:
    from vessel_lightning.tracking.bundle import parse_registry_uri

    assert parse_registry_uri("models:/vessel-unet@champion") == ("vessel-unet", None, "champion")
    assert parse_registry_uri("models:/vessel-unet/3") == ("vessel-unet", "3", None)
    assert parse_registry_uri("models:/vessel-unet@") is None
    assert parse_registry_uri("runs:/abc/model") is None
