"""The registered-model format: a bundle (safetensors weights + plain network config + contract) served as an
MLflow pyfunc model; versions logged the old way (a pickled whole module) keep loading and can be re-logged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vessel_lightning.contract import ModelContract
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.tracking.bundle import BUNDLE_CONFIG, BUNDLE_WEIGHTS
from vessel_lightning.tracking.commands import relog_main
from vessel_lightning.tracking.model_logging import log_network
from vessel_lightning.tracking.registry import MODEL_URI_TAG, register
from vessel_lightning.tracking.store import ensure_experiment

# A small network that needs no pretrained weights: fast to build, log and load.
CONFIG = {"arch": "unet_plain", "width": 4, "depth": 2}
CONTRACT = ModelContract(encoder="", arch="unet_plain", dataset="masks", size=(32, 32), threshold=0.45)


@pytest.fixture(scope="module")
def network():
    from vessel_lightning.models.networks import build_network

    torch.manual_seed(0)
    return build_network(**CONFIG).eval()


def _rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def _experiment() -> None:
    import mlflow

    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.get_tracking_uri(), "format-test"))


def _model_files(model_uri: str) -> list[str]:
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    return sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())


def test_registered_model_is_a_bundle_that_loads_without_a_class_path(store: str, network) -> None:
    import mlflow

    _experiment()
    with mlflow.start_run() as run:
        model_uri = log_network(network, CONFIG, CONTRACT, run.info.run_id)
    register(run.info.run_id, alias="champion")
    info = mlflow.models.get_model_info("models:/vessel-unet@champion")
    assert "pytorch" not in info.flavors  # no pickled module
    files = _model_files(model_uri)
    assert f"artifacts/{BUNDLE_WEIGHTS}" in files and f"artifacts/{BUNDLE_CONFIG}" in files
    assert "artifacts/contract.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pth", ".pt"))]
    from safetensors.torch import load_file

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    weights = load_file(str(local / "artifacts" / BUNDLE_WEIGHTS))
    assert weights.keys() == network.state_dict().keys()
    assert json.loads((local / "artifacts" / BUNDLE_CONFIG).read_text()) == CONFIG

    predictor = Predictor.from_uri("models:/vessel-unet@champion")
    assert predictor.contract == CONTRACT and predictor.info.version == "1"
    expected = Predictor(network, CONTRACT).predict_proba(_rgb())
    np.testing.assert_allclose(predictor.predict_proba(_rgb()), expected, atol=1e-6)


def test_a_run_is_logged_to_by_id_whatever_experiment_the_process_had_set(store: str, network) -> None:
    """A training run logs its model by run id after the run has ended (Lightning's logger made it): an active
    experiment set earlier in the process for another experiment must not stop it."""
    import mlflow

    run_experiment = ensure_experiment(store, "format-test-a")
    run = mlflow.MlflowClient().create_run(run_experiment)
    mlflow.set_experiment(experiment_id=ensure_experiment(store, "format-test-b"))
    model_uri = log_network(network, CONFIG, CONTRACT, run.info.run_id)
    assert mlflow.active_run() is None
    logged = mlflow.MlflowClient().get_run(run.info.run_id)
    assert logged.info.experiment_id == run_experiment and logged.data.tags[MODEL_URI_TAG] == model_uri


def test_mlflow_pyfunc_predicts_on_an_image_array(store: str, network) -> None:
    import mlflow
    import mlflow.pyfunc

    _experiment()
    with mlflow.start_run() as run:
        log_network(network, CONFIG, CONTRACT, run.info.run_id)
    register(run.info.run_id, alias="champion")
    model = mlflow.pyfunc.load_model("models:/vessel-unet@champion")
    rgb = _rgb(1)
    expected = Predictor(network, CONTRACT).predict_proba(rgb)
    prob = model.predict(rgb)
    assert prob.shape == (40, 56) and prob.dtype == np.float32
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    np.testing.assert_allclose(model.predict(rgb.astype(np.float32) / 255.0), expected, atol=1e-6)
    mask = model.predict(rgb, params={"output": "mask"})
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(mask.astype(bool), np.round(expected * 255) / 255 >= CONTRACT.threshold)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        model.predict(np.zeros((4, 4), np.uint8))


def _log_the_old_way(network, contract_dict: dict, tmp_path: Path) -> str:
    """A run as vessel-train logged it before the bundle format: network/network.pt and a pickled pytorch model."""
    import mlflow
    import mlflow.pytorch

    from vessel_lightning.models.networks import save_network

    _experiment()
    with mlflow.start_run() as run:
        path = save_network(tmp_path / "network.pt", network, CONFIG)
        mlflow.log_artifact(str(path), "network")
        info = mlflow.pytorch.log_model(
            network,
            name="model",
            serialization_format="pickle",
            pip_requirements=["torch"],
            metadata={"contract": contract_dict},
        )
        mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return run.info.run_id


def test_a_version_registered_the_old_way_still_loads(store: str, network, tmp_path: Path) -> None:
    old_contract = CONTRACT.to_dict()
    old_contract.pop("version")  # contracts from before the field: version 1
    run_id = _log_the_old_way(network, old_contract, tmp_path)
    assert register(run_id, alias="champion") == "1"
    predictor = Predictor.from_uri("models:/vessel-unet@champion")
    assert predictor.contract == CONTRACT and predictor.contract.version == 1
    np.testing.assert_allclose(
        predictor.predict_proba(_rgb()), Predictor(network, CONTRACT).predict_proba(_rgb()), atol=1e-6
    )


def test_relog_turns_an_old_version_into_a_bundle_and_moves_the_alias(
    store: str, network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    run_id = _log_the_old_way(network, CONTRACT.to_dict(), tmp_path)
    register(run_id, alias="champion")
    assert relog_main(["models:/vessel-unet@champion", "--alias", "champion"]) == 0
    assert "version 2" in capsys.readouterr().out
    info = mlflow.models.get_model_info("models:/vessel-unet@champion")
    assert "pytorch" not in info.flavors and info.run_id == run_id
    predictor = Predictor.from_uri("models:/vessel-unet@champion")
    assert predictor.info.version == "2" and predictor.contract == CONTRACT
    np.testing.assert_allclose(
        predictor.predict_proba(_rgb()), Predictor(network, CONTRACT).predict_proba(_rgb()), atol=1e-6
    )
    assert relog_main(["models:/vessel-unet/2"]) == 1  # already a bundle: said, nothing logged
    assert "already" in capsys.readouterr().err


def test_a_model_whose_contract_has_an_unknown_field_does_not_load(
    store: str, network, tmp_path: Path
) -> None:
    from vessel_lightning.contract import ContractError

    run_id = _log_the_old_way(network, {**CONTRACT.to_dict(), "colour_space": "lab"}, tmp_path)
    with pytest.raises(ContractError, match=r"unknown field 'colour_space'"):
        Predictor.from_uri(f"runs:/{run_id}/model")


def test_the_bundle_carries_its_checked_onnx_export_and_calibration_crops_readable_by_all(
    store: str, network
) -> None:
    import mlflow

    from vessel_lightning.models.onnx import OnnxNetwork

    _experiment()
    crops = [_rgb(seed)[:32, :32] for seed in range(3)]
    with mlflow.start_run() as run:
        model_uri = log_network(network, CONFIG, CONTRACT, run.info.run_id, calibration=crops)
    files = _model_files(model_uri)
    assert "artifacts/model.onnx" in files
    assert [f for f in files if f.startswith("artifacts/calibration/")] == [
        f"artifacts/calibration/crop_{i:02d}.png" for i in range(3)
    ]
    check = mlflow.models.get_model_info(model_uri).metadata["onnx"]
    assert max(check["max_abs_diff"].values()) <= 1e-4 and check["opset"] == 17
    # Every stored file is 0644 (safetensors writes 0600): a store shared between users serves them all.
    location = mlflow.get_logged_model(model_uri.removeprefix("models:/")).artifact_location
    stored = Path(location.removeprefix("file://"))
    modes = {p.name: p.stat().st_mode & 0o777 for p in stored.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    batch = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(batch)).numpy()
    assert np.abs(OnnxNetwork(local / "artifacts" / "model.onnx")(batch) - expected).max() <= 1e-4
    saved = np.asarray(Image.open(local / "artifacts" / "calibration" / "crop_01.png"))
    assert np.array_equal(saved, crops[1])


def test_a_bundle_serves_on_the_cpu_from_its_onnx_export_without_the_module(
    store: str, network, tmp_path
) -> None:
    import mlflow

    from vessel_lightning.inference.backends import load_predictor
    from vessel_lightning.inference.settings import BackendSettings

    _experiment()
    with mlflow.start_run() as run:
        log_network(network, CONFIG, CONTRACT, run.info.run_id)
    register(run.info.run_id, alias="champion")
    predictor, result = load_predictor(
        "models:/vessel-unet@champion", "onnx", BackendSettings(tracking_uri=store, cache_dir=tmp_path)
    )
    assert predictor.module is None and result.backend == "onnx" and result.exports[0].source == "bundle"
    expected = Predictor(network, CONTRACT).predict_proba(_rgb())
    np.testing.assert_allclose(predictor.predict_proba(_rgb()), expected, atol=1e-5)


def test_a_version_logged_before_the_tracking_package_was_split_still_loads(
    store: str, network, tmp_path
) -> None:
    """Registered versions run the pyfunc code they were logged with: that file imports
    ``vessel_lightning.tracking.models`` and ``vessel_lightning.inference.predictor`` by name."""
    import mlflow
    import mlflow.pyfunc

    from vessel_lightning.tracking.model_logging import pyfunc_code_path

    legacy = Path(__file__).parent / "legacy" / "pyfunc_model_2026_12.py"
    assert "vessel_lightning.tracking.models import load_bundle" in legacy.read_text()
    _experiment()
    import vessel_lightning.tracking.model_logging as model_logging

    original = model_logging.pyfunc_code_path
    model_logging.pyfunc_code_path = lambda: str(legacy)  # log it exactly as the earlier layout did
    try:
        with mlflow.start_run() as run:
            log_network(network, CONFIG, CONTRACT, run.info.run_id, onnx=False)
    finally:
        model_logging.pyfunc_code_path = original
    assert pyfunc_code_path() != str(legacy)
    register(run.info.run_id, alias="champion")
    rgb = _rgb(2)
    expected = Predictor(network, CONTRACT).predict_proba(rgb)
    np.testing.assert_allclose(
        mlflow.pyfunc.load_model("models:/vessel-unet@champion").predict(rgb), expected, atol=1e-6
    )
    np.testing.assert_allclose(
        Predictor.from_uri("models:/vessel-unet@champion").predict_proba(rgb), expected, atol=1e-6
    )
