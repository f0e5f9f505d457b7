"""Helpers for tests that log, register and evaluate models in a temporary MLflow store (the ``store`` fixture)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.data import compose
from vessel_lightning.contract import ModelContract
from vessel_lightning.tracking.model_logging import log_network
from vessel_lightning.tracking.store import ensure_experiment


def logged_run(network, contract: ModelContract, metrics: dict[str, float] | None = None) -> str:
    import mlflow

    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.get_tracking_uri(), "registry-test"))
    with mlflow.start_run() as run:
        if metrics:
            mlflow.log_metrics(metrics)
        log_network(network, {"encoder_name": "efficientnet-b0"}, contract, run.info.run_id)
    return run.info.run_id


def tiny_contract(**kw) -> ModelContract:
    return ModelContract(
        **{"encoder": "efficientnet-b0", "dataset": "masks", "size": (64, 64), "threshold": 0.4} | kw
    )


def eval_cfg(tmp_path: Path, root: Path, model_uri: str, *extra: str):
    return compose(
        "eval",
        [f"model_uri={model_uri}", "data=masks", f"data.root={root}", f"output_dir={tmp_path / 'eval'}",
         "data.test_fraction=0.5", *extra],
    )  # fmt: skip
