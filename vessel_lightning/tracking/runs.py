"""MLflow tracking for training: the store made once per run or sweep, sweep parent runs, tags, params, resume ids.

Where the store lives is ``vessel_lightning.tracking.store``'s answer (``<runs_dir>/mlflow/`` as absolute paths, or
``$MLFLOW_TRACKING_URI``); the ``${mlflow_tracking_uri:<runs_dir>}`` resolver puts it in the config.
mlflow itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vessel_lightning.tracking.store import (
    ensure_experiment,
    ensure_store,
    optuna_storage_uri,
    runs_page_url,
    sqlite_path,
    tracking_uri,
)

log = logging.getLogger(__name__)

SWEEP_ID_ENV = "VESSEL_SWEEP_ID"
SWEEP_PARENT_ENV = "VESSEL_SWEEP_PARENT_RUN_ID"  # the parent run every job of the sweep nests under
PARENT_RUN_TAG = "mlflow.parentRunId"  # what the MLflow UI groups nested runs by
# MLflow 3 accepts parameter values up to 6000 characters; longer ones are cut rather than failing the run.
MAX_PARAM_LENGTH = 6000


OmegaConf.register_new_resolver("mlflow_tracking_uri", tracking_uri, replace=True)
OmegaConf.register_new_resolver("optuna_storage", optuna_storage_uri, replace=True)


class PrepareTrackingStore(Callback):
    """Hydra callback: resolves the store URI and creates the store once, before any job of a run or sweep starts.

    It exports the absolute URI as ``MLFLOW_TRACKING_URI`` (unless already set) and a fresh sweep id, so jobs,
    also those in launcher worker processes, all write the same store and carry the same sweep tag. A sweep
    (grid or Optuna) gets one parent run whose id the jobs inherit through ``VESSEL_SWEEP_PARENT_RUN_ID``, so
    the UI shows the sweep as one expandable row; when the sweep ends the parent gets its summary.
    """

    def _prepare(self, config: DictConfig) -> tuple[str, str] | None:
        """Create store and experiment; return ``(uri, experiment id)``, None without an MLflow logger."""
        if OmegaConf.select(config, "logger.mlflow") is None:
            return None
        runs_dir = OmegaConf.select(config, "paths.runs_dir", default="runs")
        uri = tracking_uri(runs_dir)
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ["MLFLOW_TRACKING_URI"] = uri
        ensure_store(uri)
        name = OmegaConf.select(config, "logger.mlflow.experiment_name", throw_on_resolution_failure=False)
        if not name:
            return None
        return uri, ensure_experiment(uri, str(name))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._prepared = self._prepare(config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        prepared = getattr(self, "_prepared", None)
        if prepared:
            print(browse_hint(*prepared), file=sys.stderr)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_id = uuid.uuid4().hex[:12]
        os.environ[SWEEP_ID_ENV] = sweep_id
        prepared = self._prepare(config)
        if prepared is not None:
            parent = start_sweep_run(*prepared, config, sweep_id)
            os.environ[SWEEP_PARENT_ENV] = parent
            # Hydra skips on_multirun_end when the sweeper raises: the parent must not stay RUNNING.
            atexit.register(_fail_unfinished_sweep, prepared[0], parent)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEEP_ID_ENV, None)
        parent = os.environ.pop(SWEEP_PARENT_ENV, None)
        if parent:
            try:
                finish_sweep_run(tracking_uri(), parent, config)
            except Exception:  # the jobs' runs are logged already; a summary failure must not hide them
                log.exception("sweep summary of parent run %s failed", parent)


def _fail_unfinished_sweep(uri: str, parent_run_id: str) -> None:
    if os.environ.get(SWEEP_PARENT_ENV) != parent_run_id:
        return  # on_multirun_end ended it
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).set_terminated(parent_run_id, "FAILED")


def sweep_kind(config: DictConfig) -> str:
    """``optuna`` for the Optuna sweeper, ``grid`` for Hydra's basic sweeper (any other: its class name)."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    if "optuna" in target.lower():
        return "optuna"
    return "grid" if target.endswith("BasicSweeper") or not target else target.rsplit(".", 1)[-1]


def task_overrides(node: Any) -> list[str]:
    """The command-line overrides as typed: a value such as ``${paths.output_dir}/probe`` stays unresolved (it
    belongs to the job, and outside a job it cannot be resolved)."""
    if node is None:
        return []
    if not OmegaConf.is_config(node):
        return list(node)
    task = OmegaConf.to_container(node, resolve=False)
    if not isinstance(task, list):
        raise TypeError(f"hydra.overrides.task: expected a list, got {type(task).__name__}")
    return [str(o) for o in task]


def start_sweep_run(uri: str, experiment_id: str, config: DictConfig, sweep_id: str) -> str:
    """Create the sweep's parent run (RUNNING) in ``experiment_id``; return its id.

    Tags: ``sweep_id``, ``sweep_kind`` (grid | optuna), ``sweep_role=parent``, ``sweep_dir`` and the command's
    overrides; an Optuna sweep also its study name and search space.
    """
    from mlflow.tracking import MlflowClient

    kind = sweep_kind(config)
    overrides = task_overrides(OmegaConf.select(config, "hydra.overrides.task", default=None))
    tags = {
        "sweep_id": sweep_id,
        "sweep_kind": kind,
        "sweep_role": "parent",
        "sweep_dir": str(Path(str(OmegaConf.select(config, "hydra.sweep.dir", default="."))).resolve()),
        "sweep_command": " ".join(["vessel-train", "-m", *overrides])[:MAX_PARAM_LENGTH],
        "task": str(config.get("task_name", "")),
    }
    if kind == "optuna":
        tags["optuna_study"] = str(OmegaConf.select(config, "hydra.sweeper.study_name", default=""))
        space = OmegaConf.select(config, "hydra.sweeper.params", default=None)
        space = OmegaConf.to_container(space, resolve=False) if space is not None else {}
        tags["optuna_space"] = json.dumps(space)[:MAX_PARAM_LENGTH]
    name = f"{config.get('task_name', 'train')} {kind} sweep {sweep_id}"
    run = MlflowClient(uri).create_run(experiment_id, run_name=name, tags=tags)
    log.info("sweep %s: parent MLflow run %s", sweep_id, run.info.run_id)
    return run.info.run_id


def finish_sweep_run(uri: str, parent_run_id: str, config: DictConfig) -> None:
    """Give the parent run its summary (table, chart, best child; the Optuna results file when there is one),
    end it, and print where to see it."""
    from mlflow.tracking import MlflowClient

    from vessel_lightning.tracking.sweep_summary import summarize_sweep

    client = MlflowClient(uri)
    metric = str(config.get("optimized_metric") or "val/f1_best")
    sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir", default=".")))
    status = "FAILED"
    try:
        table = summarize_sweep(client, parent_run_id, metric, sweep_dir)
        status = "FINISHED" if table.rows else "FAILED"
    finally:
        client.set_terminated(parent_run_id, status)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    print(
        f"Sweep of {len(table.rows)} runs grouped under run {parent_run_id} (summary table and chart in its"
        f" artifacts).\n{browse_hint(uri, experiment_id)}",
        file=sys.stderr,
    )


def browse_hint(uri: str, experiment_id: str) -> str:
    """One line telling where to see the runs: the ``mlflow ui`` command for a SQLite store, and the runs page."""
    if sqlite_path(uri):
        return (
            f"Browse: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri {uri} --port 5000,"
            f" then open {runs_page_url(experiment_id)}"
        )
    return f"Browse: {runs_page_url(experiment_id, uri)}"


def hydra_job_info() -> dict[str, str]:
    """Return sweep tags for the current Hydra job or {}: ``sweep_id``, ``sweep_job``, ``sweep_overrides``,
    ``sweep_params`` (the job's overrides as a JSON object) and ``mlflow.parentRunId`` (the sweep's parent run).

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
    params = {}
    for override in task_overrides(hc.overrides.task):
        key, _, value = str(override).partition("=")
        params[key.lstrip("+~")] = value
    info = {
        "sweep_id": sweep_id,
        "sweep_job": str(hc.job.num),
        "sweep_overrides": str(hc.job.override_dirname)[:MAX_PARAM_LENGTH] or "-",
        "sweep_params": json.dumps(params)[:MAX_PARAM_LENGTH],
    }
    parent = os.environ.get(SWEEP_PARENT_ENV)
    if parent:
        info[PARENT_RUN_TAG] = parent
    return info


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


def log_evaluation(
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    folder: str | os.PathLike,
    model: tuple[str, str] | None = None,
    version_tags: Mapping[str, str] | None = None,
) -> str:
    """Log an evaluation as a run of its own in ``experiment`` (created if needed) in the current store: tags,
    params, metrics and ``folder``'s files under ``evaluation/``; with ``model`` (name, version) tag that
    registered version with ``version_tags``. Returns the run id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.get_tracking_uri(), experiment))
    with mlflow.start_run(run_name=run_name, tags=dict(tags)) as run:
        mlflow.log_params(dict(params))
        mlflow.log_metrics(dict(metrics))
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")
    if model is not None:
        client = MlflowClient()
        for key, value in (version_tags or {}).items():
            client.set_model_version_tag(model[0], model[1], key, value)
    return run.info.run_id
