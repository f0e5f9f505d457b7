"""Loading a logged model by URI: ``models:/name@alias``, ``models:/name/version``, ``runs:/<id>/model`` or an
exported folder (``network.pt`` + ``contract.json``, no MLflow needed).

A registered model is a bundle (MONAI-style): the weights as a state dict (``weights.safetensors``), the plain
``build_network`` config (``network.json``) and the contract; loading builds the network from the config, so no
class import path is stored. Versions logged before the bundle format (a pickled whole module, MLflow's
``pytorch`` flavor) load too; ``vessel-relog`` re-logs them as bundles.

mlflow itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vessel_lightning.contract import (
    CONTRACT_FILE,
    CONTRACT_KEY,
    NETWORK_FILE,
    ContractError,
    ModelContract,
)

if TYPE_CHECKING:  # torch is imported by the loaders that need it, not by the registry CLIs
    from torch import nn

BUNDLE_FORMAT = "vessel-bundle/1"  # the MLmodel metadata's FORMAT_KEY for bundle-format models
FORMAT_KEY = "format"
BUNDLE_WEIGHTS = "weights.safetensors"  # the state dict
BUNDLE_CONFIG = "network.json"  # the build_network keyword arguments
BUNDLE_ONNX = "model.onnx"  # the fp32 ONNX export, checked against PyTorch when logged
BUNDLE_CALIBRATION = (
    "calibration"  # a few validation crops (PNG) that calibrate int8 and prove reduced precision
)
ONNX_KEY = "onnx"  # the MLmodel metadata's record of the export's check
_PATH = re.compile(r"(?:[A-Za-z]+://)?(?:/[^\s/:'\"]+)+/([^\s/:'\"]+)")


class BundleError(RuntimeError):
    """A registered model whose files cannot be read; the message names the bundle file, not where it lies."""


def without_paths(text: str) -> str:
    """``text`` with every absolute path or file URI cut to its last part (answers name files, not places)."""
    return _PATH.sub(r"\1", text)


@dataclass(frozen=True)
class ModelInfo:
    """Where a loaded model came from (for the API's /model and the evaluation summary)."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    load_seconds: float = 0.0


def load_logged_model(model_uri: str) -> tuple[nn.Module, ModelContract, ModelInfo]:
    """Load an MLflow-logged network and its contract from ``models:/…``, ``runs:/…`` or a local model folder.

    A folder holding ``network.pt`` and ``contract.json`` (a training job's ``artifacts/``, e.g. one trained with
    ``logger=csv`` on a machine without a store) loads without MLflow. Raises :class:`ContractError` when the
    model carries no contract; MLflow's own errors (unknown alias or version, unreachable store) propagate for
    the caller to report.
    """
    start = time.perf_counter()
    if is_exported_model(model_uri):
        return _load_exported(Path(model_uri), start)
    import mlflow.models

    info = mlflow.models.get_model_info(model_uri)
    contract = require_contract(info.metadata, model_uri)
    network = _load_logged_network(model_uri, info.flavors)
    name, version, alias = parse_registry_uri(model_uri) or (None, None, None)
    if name and alias:  # parse_registry_uri gives an alias only with a name
        version = alias_version(name, alias)
    elapsed = time.perf_counter() - start
    return (
        network.eval(),
        contract,
        ModelInfo(model_uri, name, version, alias, info.run_id, round(elapsed, 3)),
    )


def is_bundle(flavors: dict[str, Any]) -> bool:
    """Whether an MLmodel's ``flavors`` describe a bundle-format model (not a pickled pytorch module)."""
    artifacts = flavors.get("python_function", {}).get("artifacts") or {}
    return "pytorch" not in flavors and {"weights", "network_config"} <= set(artifacts)


def _load_logged_network(model_uri: str, flavors: dict[str, Any]) -> nn.Module:
    """The network of a logged model: built from its bundle, or unpickled from an old pytorch-flavor model."""
    if "pytorch" in flavors:  # logged before the bundle format; `vessel-relog` re-logs it as one
        import mlflow.pytorch

        return mlflow.pytorch.load_model(model_uri, map_location="cpu")
    if not is_bundle(flavors):
        raise ContractError(
            f"{model_uri}: neither a bundle-format model nor a pytorch model (not logged by vessel-train?)"
        )
    import tempfile

    artifacts = flavors["python_function"]["artifacts"]
    with tempfile.TemporaryDirectory(prefix="vessel-model-") as tmp:
        weights = download_bundle_file(model_uri, artifacts["weights"]["path"], Path(tmp))
        config = download_bundle_file(model_uri, artifacts["network_config"]["path"], Path(tmp))
        return load_bundle_network(weights, config)


def download_bundle_file(model_uri: str, name: str, folder: Path) -> Path:
    """Download one file (or folder) ``name`` of a logged model's artifacts into ``folder``; returns its path.

    Raises :class:`BundleError` naming the file and the cause (an unreadable file, a store that does not answer),
    without the server paths MLflow's message carries.
    """
    from mlflow.exceptions import MlflowException

    folder.mkdir(parents=True, exist_ok=True)
    try:
        if model_uri.startswith("models:/"):
            from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

            local = ModelsArtifactRepository(model_uri).download_artifacts(name, dst_path=str(folder))
        else:
            import mlflow.artifacts

            uri = f"{model_uri.rstrip('/')}/{name}"
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder))
    except (MlflowException, OSError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        cause = next((line for line in lines[1:] if "#####" not in line), lines[0] if lines else repr(exc))
        raise BundleError(f"cannot read the model's {name}: {without_paths(cause)}") from exc
    return Path(local)


def bundle_artifacts(model_uri: str) -> dict[str, str]:
    """The bundle's files by role (``weights``, ``network_config``, ``contract``, ``onnx``, ``calibration``) →
    their names in the model's artifacts; empty for a model that is not a bundle (or not logged)."""
    if is_exported_model(model_uri):
        return {}
    import mlflow.models

    flavors = mlflow.models.get_model_info(model_uri).flavors
    if not is_bundle(flavors):
        return {}
    return {role: entry["path"] for role, entry in flavors["python_function"]["artifacts"].items()}


def describe_logged_model(model_uri: str) -> tuple[ModelContract, ModelInfo]:
    """The contract and :class:`ModelInfo` of a logged model without loading its network (no PyTorch): what a
    server that runs the bundle's ONNX export needs."""
    start = time.perf_counter()
    if is_exported_model(model_uri):
        folder = Path(model_uri)
        return ModelContract.read(folder / CONTRACT_FILE), ModelInfo(str(folder), name=folder.name)
    import mlflow.models

    info = mlflow.models.get_model_info(model_uri)
    contract = require_contract(info.metadata, model_uri)
    name, version, alias = parse_registry_uri(model_uri) or (None, None, None)
    if name and alias:
        version = alias_version(name, alias)
    elapsed = round(time.perf_counter() - start, 3)
    return contract, ModelInfo(model_uri, name, version, alias, info.run_id, elapsed)


def source_uri(info: ModelInfo) -> str:
    """The URI that names exactly the version ``info`` describes (``models:/name/version`` for a registered
    version, even when it was loaded through an alias that may move)."""
    if info.name and info.version and info.uri.startswith("models:/"):
        return f"models:/{info.name}/{info.version}"
    return info.uri


def load_bundle_network(weights: str | os.PathLike, config: str | os.PathLike) -> nn.Module:
    """Build a network from a bundle's ``network.json`` and load its ``weights.safetensors``; in eval mode.

    Raises ValueError naming the file when the config does not build or the weights do not fit it.
    """
    from safetensors.torch import load_file

    from vessel_lightning.models.networks import build_network

    try:
        network = build_network(**json.loads(Path(config).read_text()), encoder_weights=None)
    except (OSError, TypeError, ValueError) as exc:
        raise ValueError(f"{config}: not a buildable network config ({exc})") from exc
    try:
        network.load_state_dict(load_file(str(weights), device="cpu"))
    except RuntimeError as exc:
        raise ValueError(
            f"{weights}: weights do not fit the network of {config} ({str(exc).splitlines()[0]})"
        ) from exc
    return network.float().eval()


def load_bundle(
    weights: str | os.PathLike, config: str | os.PathLike, contract: str | os.PathLike
) -> tuple[nn.Module, ModelContract]:
    """The network (:func:`load_bundle_network`) and validated contract of a bundle's three files."""
    return load_bundle_network(weights, config), ModelContract.read(contract)


def is_exported_model(model_uri: str) -> bool:
    """Whether ``model_uri`` is a folder holding an exported ``network.pt`` (loads without MLflow)."""
    return (Path(model_uri) / NETWORK_FILE).is_file()


def _load_exported(folder: Path, start: float) -> tuple[nn.Module, ModelContract, ModelInfo]:
    """The network and contract a training job exported into ``folder`` (no MLflow, no training code)."""
    from vessel_lightning.models.networks import load_network

    contract = ModelContract.read(folder / CONTRACT_FILE)
    network = load_network(folder / NETWORK_FILE).float()  # float16 transfer copies load back as float32
    elapsed = round(time.perf_counter() - start, 3)
    return network.eval(), contract, ModelInfo(str(folder), name=folder.name, load_seconds=elapsed)


def parse_registry_uri(model_uri: str) -> tuple[str, str | None, str | None] | None:
    """``(name, version, alias)`` of ``models:/name/version`` or ``models:/name@alias``; None for other URIs."""
    if not model_uri.startswith("models:/"):
        return None
    name, sep, alias = model_uri[len("models:/") :].partition("@")
    if sep:
        return (name, None, alias) if name and alias else None
    name, _, version = name.partition("/")
    return name, version or None, None


def alias_version(name: str, alias: str, tracking_uri: str | None = None) -> str:
    """The version number ``models:/name@alias`` points at now."""
    from mlflow.tracking import MlflowClient

    return str(MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)


def require_contract(metadata: dict[str, Any] | None, source: str) -> ModelContract:
    """The contract inside an MLmodel metadata dict, or :class:`ContractError` naming ``source``."""
    if not metadata or CONTRACT_KEY not in metadata:
        raise ContractError(
            f"{source}: the model carries no '{CONTRACT_KEY}' metadata (not logged by vessel-train?)"
        )
    return ModelContract.from_dict(metadata[CONTRACT_KEY], source=source)
