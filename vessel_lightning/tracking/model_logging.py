"""Logging a network as a registered-model bundle (weights, plain config, contract, the checked ONNX export), and
re-logging a model logged before the bundle format."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vessel_lightning.contract import CONTRACT_FILE, CONTRACT_KEY, ModelContract
from vessel_lightning.tracking.bundle import (
    BUNDLE_CALIBRATION,
    BUNDLE_CONFIG,
    BUNDLE_FORMAT,
    BUNDLE_ONNX,
    BUNDLE_WEIGHTS,
    FORMAT_KEY,
    ONNX_KEY,
)
from vessel_lightning.tracking.registry import MODEL_URI_TAG, RegistryError

MODEL_ARTIFACT = "model"
PYFUNC_MODULE = "vessel_lightning.inference.pyfunc_model"  # the file MLflow runs to load a registered model
# A training run's exported network (weights + config): what vessel-relog reads.
NETWORK_ARTIFACT = "network/network.pt"


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in (
        "torch",
        "segmentation-models-pytorch",
        "timm",
        "safetensors",
        "mlflow",
        "vessel-lightning",
    ):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def pyfunc_code_path() -> str:
    """The file MLflow runs to load a registered model (``vessel_lightning/inference/pyfunc_model.py``).

    Named, not imported: the serving code sits in the inference stage above this one.
    """
    import importlib.util

    spec = importlib.util.find_spec(PYFUNC_MODULE)
    if spec is None or spec.origin is None:
        raise RegistryError(f"{PYFUNC_MODULE} is not installed")
    return spec.origin


def log_network_file(
    network_file: str | os.PathLike,
    contract: ModelContract,
    run_id: str,
    name: str = MODEL_ARTIFACT,
    *,
    calibration: Sequence[np.ndarray] = (),
) -> str:
    """:func:`log_network` of a network file (``save_network``'s ``network.pt``: weights and config)."""
    import torch

    bundle = torch.load(network_file, map_location="cpu", weights_only=True)
    if not isinstance(bundle, dict) or "config" not in bundle or "state_dict" not in bundle:
        raise RegistryError(f"{network_file}: not a network file written by save_network")
    return log_network(
        bundle["state_dict"], bundle["config"], contract, run_id, name, calibration=calibration
    )


def log_network(
    network: Any,
    config: Mapping[str, Any],
    contract: ModelContract,
    run_id: str,
    name: str = MODEL_ARTIFACT,
    *,
    calibration: Sequence[np.ndarray] = (),
    onnx: bool = True,
) -> str:
    """Log a network (an ``nn.Module`` or its state dict) built by ``build_network(**config)`` to run ``run_id``
    as a bundle-format MLflow model.

    The model's files are the weights as a state dict (``weights.safetensors``), the network's plain
    ``build_network`` config (``network.json``) and the contract (``contract.json``, also the model's metadata):
    loading builds the network from the config, so no class import path is stored. With ``onnx`` the bundle also
    carries the fp32 ONNX export (``model.onnx``), checked against PyTorch here (the check is in the metadata), so
    a server without PyTorch runs the same network. ``calibration``: RGB crops as the network sees them
    (:func:`~vessel_lightning.data.images.network_crops` of validation photos), saved as PNGs so a server can
    calibrate int8 and prove reduced precision without photos of its own; leave empty for data that must not
    travel with a model. It is an MLflow pyfunc model ("models from code", :func:`pyfunc_code_path`) predicting
    vessel probabilities of an RGB array. Every file is readable by the store's other users (0644). Tags the run
    with the model URI; returns that URI (``models:/m-…``).
    """
    import json
    import tempfile
    from pathlib import Path

    import mlflow
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec
    from safetensors.torch import save_file

    from vessel_lightning.models.networks import build_network, plain_config
    from vessel_lightning.models.onnx import OnnxMismatch, export_checked
    from vessel_lightning.overlays import save_png

    state_dict = network.state_dict() if hasattr(network, "state_dict") else network
    # Outputs only: inputs stay free so a photo may come as uint8 or as floats (the model converts both).
    signature = ModelSignature(
        inputs=None, params=ParamSchema([ParamSpec("output", "string", "probability")])
    )
    active = mlflow.active_run()
    context = None
    if active is None or active.info.run_id != run_id:
        # Resuming a run by id fails when this process's active experiment (a set_experiment made earlier, for
        # another experiment or store) is not the run's: the run's own experiment becomes the active one.
        mlflow.set_experiment(experiment_id=mlflow.MlflowClient().get_run(run_id).info.experiment_id)
        context = mlflow.start_run(run_id=run_id)
    with tempfile.TemporaryDirectory(prefix="vessel-bundle-") as tmp:
        files = {
            "weights": Path(tmp) / BUNDLE_WEIGHTS,
            "network_config": Path(tmp) / BUNDLE_CONFIG,
            "contract": Path(tmp) / CONTRACT_FILE,
        }
        # safetensors refuses tensors sharing memory: each one is saved as its own copy.
        state = {k: v.detach().cpu().clone().contiguous() for k, v in state_dict.items()}
        save_file(state, str(files["weights"]), metadata={"format": BUNDLE_FORMAT})
        files["network_config"].write_text(json.dumps(plain_config(config), indent=2))
        files["contract"].write_text(json.dumps(contract.to_dict(), indent=2))
        metadata: dict[str, Any] = {CONTRACT_KEY: contract.to_dict(), FORMAT_KEY: BUNDLE_FORMAT}
        if onnx:
            module = build_network(**plain_config(config), encoder_weights=None)
            module.load_state_dict(state)
            files["onnx"] = Path(tmp) / BUNDLE_ONNX
            try:
                metadata[ONNX_KEY] = export_checked(module.float().eval(), files["onnx"], contract.size)
            except OnnxMismatch as exc:
                raise RegistryError(str(exc)) from exc
        if calibration:
            files["calibration"] = Path(tmp) / BUNDLE_CALIBRATION
            files["calibration"].mkdir()
            for index, crop in enumerate(calibration):
                save_png(np.asarray(crop, dtype=np.uint8), files["calibration"] / f"crop_{index:02d}.png")
        for path in Path(tmp).rglob("*"):  # safetensors writes 0600; a store shared between users needs 0644
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            if context is not None:
                context.__enter__()
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=pyfunc_code_path(),
                artifacts={key: str(path) for key, path in files.items()},
                pip_requirements=_requirements(),
                signature=signature,
                metadata=metadata,
            )
            mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
        finally:
            if context is not None:
                context.__exit__(None, None, None)
    return info.model_uri


def relog(model_uri: str) -> tuple[str, str]:
    """Re-log a model logged before the bundle format (a pickled module), or a bundle logged before bundles carried
    their ONNX export, as a bundle with its export, in the run that logged it.

    Takes ``models:/name@alias``, ``models:/name/version`` or ``runs:/<id>/model``. The weights and config come
    from the run's ``network/network.pt`` (every vessel-train and vessel-import-run run has it), the contract from
    the model. Moves the run's model tag to the new model; returns ``(run id, new model URI)``. RegistryError when
    the model is a bundle already or its run has no network file.
    """
    import tempfile

    import mlflow
    import mlflow.artifacts
    import mlflow.models
    from mlflow.exceptions import MlflowException

    from vessel_lightning.tracking.bundle import is_bundle, require_contract

    info = mlflow.models.get_model_info(model_uri)
    if is_bundle(info.flavors) and "onnx" in info.flavors["python_function"]["artifacts"]:
        raise RegistryError(f"{model_uri} is a bundle with its ONNX export already: nothing to re-log")
    contract = require_contract(info.metadata, model_uri)
    if not info.run_id:
        raise RegistryError(f"{model_uri} names no run to re-log it in")
    with tempfile.TemporaryDirectory(prefix="vessel-relog-") as tmp:
        try:
            network_file = mlflow.artifacts.download_artifacts(
                run_id=info.run_id, artifact_path=NETWORK_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise RegistryError(
                f"run {info.run_id} of {model_uri} has no {NETWORK_ARTIFACT} to re-log ({str(exc).splitlines()[0]})"
            ) from exc
        return info.run_id, log_network_file(network_file, contract, info.run_id)
