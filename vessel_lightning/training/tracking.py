"""MLflow tracking for training: the store made once per run or sweep, experiments, tags, params, resume ids.

Where the store lives is ``vessel_lightning.store``'s answer (``<runs_dir>/mlflow/`` as absolute paths, or
``$MLFLOW_TRACKING_URI``); the ``${mlflow_tracking_uri:<runs_dir>}`` resolver puts it in the config.
mlflow itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vessel_lightning.store import ensure_experiment, ensure_store, tracking_uri

log = logging.getLogger(__name__)

SWEEP_ID_ENV = "VESSEL_SWEEP_ID"
# MLflow 3 accepts parameter values up to 6000 characters; longer ones are cut rather than failing the run.
MAX_PARAM_LENGTH = 6000


OmegaConf.register_new_resolver("mlflow_tracking_uri", tracking_uri, replace=True)


class PrepareTrackingStore(Callback):
    """Hydra callback: resolves the store URI and creates the store once, before any job of a run or sweep starts.

    It exports the absolute URI as ``MLFLOW_TRACKING_URI`` (unless already set) and a fresh sweep id, so jobs,
    also those in launcher worker processes, all write the same store and carry the same sweep tag.
    """

    def _prepare(self, config: DictConfig) -> None:
        if OmegaConf.select(config, "logger.mlflow") is None:
            return
        runs_dir = OmegaConf.select(config, "paths.runs_dir", default="runs")
        uri = tracking_uri(runs_dir)
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ["MLFLOW_TRACKING_URI"] = uri
        ensure_store(uri)
        name = OmegaConf.select(config, "logger.mlflow.experiment_name", throw_on_resolution_failure=False)
        if name:
            ensure_experiment(uri, str(name))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._prepare(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[SWEEP_ID_ENV] = uuid.uuid4().hex[:12]
        self._prepare(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEEP_ID_ENV, None)


def hydra_job_info() -> dict[str, str]:
    """Return sweep tags for the current Hydra job (``sweep_id``, ``sweep_job``, ``sweep_overrides``) or {}.

    Jobs of one multirun share ``sweep_id`` (filter in the MLflow UI with ``tags.sweep_id = '<id>'``).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return {}
    # The sweep folder name (a timestamp) stands in when the Hydra callback did not run.
    sweep_id = os.environ.get(SWEEP_ID_ENV) or Path(str(hc.sweep.dir)).name
    return {
        "sweep_id": sweep_id,
        "sweep_job": str(hc.job.num),
        "sweep_overrides": str(hc.job.override_dirname)[:MAX_PARAM_LENGTH] or "-",
    }


def flatten_config(cfg: Mapping[str, Any] | DictConfig, sep: str = ".") -> dict[str, str]:
    """Flatten a (resolved) config into ``{"a.b.c": "value"}`` strings, the form MLflow params take."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, sub in value.items():
                walk(f"{prefix}{sep}{key}" if prefix else str(key), sub)
        else:
            flat[prefix] = str(value)[:MAX_PARAM_LENGTH]

    walk("", container)
    return flat


def log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches of 100 (MLflow's limit per call)."""
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def run_id_from_checkpoint(ckpt_path: str | os.PathLike) -> str | None:
    """Return the MLflow run id stored in a Lightning checkpoint by ``MlflowArtifacts``, or None."""
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    return ckpt.get("mlflow_run_id")
