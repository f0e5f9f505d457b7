"""Loading a logged model by URI: ``models:/name@alias``, ``models:/name/version``, ``runs:/<id>/model`` or an
exported folder (``network.pt`` + ``contract.json``, no MLflow needed).

mlflow itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from vessel_lightning.contract import (
    CONTRACT_FILE,
    CONTRACT_KEY,
    NETWORK_FILE,
    ContractError,
    ModelContract,
)


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
    import mlflow.pytorch

    info = mlflow.models.get_model_info(model_uri)
    contract = require_contract(info.metadata, model_uri)
    network = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    name, version, alias = parse_registry_uri(model_uri) or (None, None, None)
    if alias:
        version = alias_version(name, alias)
    elapsed = time.perf_counter() - start
    return (
        network.eval(),
        contract,
        ModelInfo(model_uri, name, version, alias, info.run_id, round(elapsed, 3)),
    )


def is_exported_model(model_uri: str) -> bool:
    """Whether ``model_uri`` is a folder holding an exported ``network.pt`` (loads without MLflow)."""
    return (Path(model_uri) / NETWORK_FILE).is_file()


def _load_exported(folder: Path, start: float) -> tuple[nn.Module, ModelContract, ModelInfo]:
    """The network and contract a training job exported into ``folder`` (no MLflow, no training code)."""
    import json

    from vessel_lightning.models.networks import load_network

    contract_path = folder / CONTRACT_FILE
    try:
        contract_data = json.loads(contract_path.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"{contract_path}: no readable model contract ({exc})") from exc
    contract = ModelContract.from_dict(contract_data, source=str(contract_path))
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
