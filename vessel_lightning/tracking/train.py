"""vessel-train: train a VesselSegmenter from the composed Hydra config (``conf/train.yaml``).

vessel-train data=chase_db1 data.root=/path/to/CHASE_DB1 model/encoder=b0
vessel-train -m model/encoder=b0,b1 loss=dice_bce,dice
vessel-train ckpt_path=last

The tracked entry point: it composes the training stage (``vessel_lightning.training``) with the MLflow store
(run start, resume id, ``init_from``, post-fit registration), so it sits in tracking, above training.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from vessel_lightning.config import CONFIG_DIR
from vessel_lightning.tracking import runs  # registers the MLflow resolvers the config uses

log = logging.getLogger(__name__)

RESOLVED_CONFIG = "config.yaml"  # in the job's output folder


def build_datamodule(data_cfg: DictConfig) -> Any:
    """Return the LightningDataModule for a ``data`` config: ``VesselDataModule(data_cfg)``, or the class named
    by ``data_cfg._target_`` called the same way (for other data sources)."""
    target = data_cfg.get("_target_")
    if target:
        return hydra.utils.get_class(target)(data_cfg)
    from vessel_lightning.data.datamodule import VesselDataModule

    return VesselDataModule(data_cfg)


def instantiate_group(group_cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` in a config group (callbacks, loggers); null entries skip."""
    if not group_cfg:
        return []
    return [hydra.utils.instantiate(c) for c in group_cfg.values() if c is not None and "_target_" in c]


def resolve_ckpt_path(ckpt_path: str | None, runs_dir: str, task_name: str) -> str | None:
    """Return the checkpoint file to resume from: ``ckpt_path`` itself, or for ``"last"`` the newest
    ``last.ckpt`` under ``<runs_dir>/<task_name>/`` (None when there is none)."""
    if not ckpt_path:
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"checkpoint {ckpt_path} does not exist")
        return str(Path(ckpt_path).resolve())
    candidates = sorted(
        (Path(runs_dir) / task_name).rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if not candidates:
        raise FileNotFoundError(f"ckpt_path=last: no last.ckpt under {Path(runs_dir) / task_name}")
    return str(candidates[0].resolve())


def default_run_name(cfg: DictConfig) -> str:
    """``<arch>-<encoder>`` (``unet-efficientnet-b0``, ``transunet-efficientnet-b3``), or ``unet_plain-w<width>``."""
    arch = str(OmegaConf.select(cfg, "model.net.arch", default="unet"))
    encoder = OmegaConf.select(cfg, "model.net.encoder_name", default=None)
    if encoder is not None:
        return f"{arch}-{encoder}"
    width = OmegaConf.select(cfg, "model.net.width", default=None)
    return f"{arch}-w{width}" if width is not None else arch


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """The run's MLflow tags: arch, encoder, dataset, loss, task, sweep tags in a multirun, and ``cfg.tags``."""
    tags = {
        "arch": str(OmegaConf.select(cfg, "model.net.arch", default="unet")),
        "encoder": str(OmegaConf.select(cfg, "model.net.encoder_name", default="")),
        "dataset": str(OmegaConf.select(cfg, "data.name", default="")),
        "loss": "+".join(OmegaConf.select(cfg, "loss", default={}) or {}),
        "task": str(cfg.get("task_name", "")),
    }
    tags.update(runs.hydra_job_info())
    tags.update({str(k): str(v) for k, v in (cfg.get("tags") or {}).items()})
    return tags


def _prepare_mlflow(cfg: DictConfig, run_id: str | None) -> None:
    """Fill the MLflow logger config: run id to resume, tags, run name; create store and experiment."""
    mlflow_cfg = OmegaConf.select(cfg, "logger.mlflow")
    if mlflow_cfg is None:
        return
    runs.ensure_store(mlflow_cfg.tracking_uri)
    runs.ensure_experiment(mlflow_cfg.tracking_uri, mlflow_cfg.experiment_name)
    tags = run_tags(cfg)
    with open_dict(cfg):
        mlflow_cfg.run_id = run_id
        mlflow_cfg.tags = tags
        if not mlflow_cfg.get("run_name"):
            mlflow_cfg.run_name = default_run_name(cfg)
        if "sweep_job" in tags:
            mlflow_cfg.run_name = f"{mlflow_cfg.run_name} #{tags['sweep_job']}"


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (and optionally test) a model as the config says.

    Takes the composed ``train`` config. Returns ``(metric_dict, object_dict)``: the final callback metrics of
    fit and test as floats, and the objects built (cfg, datamodule, model, callbacks, loggers, trainer).
    Loggers are finalized in all cases, with status FAILED when an exception escapes.
    """
    import lightning as L
    import torch

    from vessel_lightning.training.callbacks import find_mlflow_logger
    from vessel_lightning.training.ddp import sync_batchnorm_where_it_runs

    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.runs_dir, cfg.task_name)
    run_id = runs.run_id_from_checkpoint(ckpt_path) if ckpt_path else None
    if ckpt_path and OmegaConf.select(cfg, "callbacks.model_checkpoint") is not None:
        # Keep writing beside the checkpoint we resume from: ModelCheckpoint restores its best path only there.
        with open_dict(cfg):
            cfg.callbacks.model_checkpoint.dirpath = str(Path(ckpt_path).parent)
    _prepare_mlflow(cfg, run_id)
    config_yaml = write_resolved_config(cfg) if _rank_zero() else OmegaConf.to_yaml(cfg, resolve=True)

    log.info("data: %s", cfg.data.get("name"))
    datamodule = build_datamodule(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    warm = None
    if cfg.get("init_from") and not ckpt_path:  # a resumed run takes its weights from the checkpoint
        from vessel_lightning.tracking.warm_start import warm_start

        warm = warm_start(model.net, str(cfg.init_from), OmegaConf.select(cfg, "logger.mlflow.tracking_uri"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    sync_batchnorm_where_it_runs(cfg.trainer)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    object_dict = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "callbacks": callbacks,
        "loggers": loggers,
        "trainer": trainer,
    }

    status = "failed"
    try:
        mlflow_logger = find_mlflow_logger(trainer)
        if mlflow_logger is not None:
            _log_run_start(mlflow_logger, config_yaml, cfg, resumed=run_id is not None)
            if warm is not None:
                mlflow_logger.experiment.set_tag(mlflow_logger.run_id, "init_from", warm.source)
                mlflow_logger.experiment.set_tag(mlflow_logger.run_id, "init_from.loaded", warm.summary)
        metric_dict: dict[str, Any] = {}
        if cfg.get("train", True):
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
            if "val/f1" not in trainer.callback_metrics and not trainer.interrupted:
                # max_steps ended training before any validation: validate once so the run has val metrics.
                trainer.validate(model=model, datamodule=datamodule, verbose=False)
            metric_dict.update(trainer.callback_metrics)
        if cfg.get("test", False):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if not best:
                log.warning("no best checkpoint: testing the current weights")
            trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
            metric_dict.update(trainer.callback_metrics)
        if cfg.get("register") and mlflow_logger is not None and trainer.is_global_zero:
            from vessel_lightning.tracking.registry import register

            name, alias = cfg.registry.name, cfg.registry.get("alias")
            assert mlflow_logger.run_id is not None  # the logger's run exists once it has logged
            version = register(mlflow_logger.run_id, name, alias)
            log.info("registered %s version %s%s", name, version, f" ({alias})" if alias else "")
        status = "success"
    finally:
        for logger in loggers:
            logger.finalize(status)
    metric_dict = {k: float(v) for k, v in metric_dict.items()}
    return metric_dict, object_dict


def _rank_zero() -> bool:
    # DDP's extra processes run this module again with LOCAL_RANK/RANK set: only the first one writes files.
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def write_resolved_config(cfg: DictConfig) -> str:
    """Write the resolved config to ``<output_dir>/config.yaml`` (what ``vessel-import-run`` reads back when no
    store was reachable) and return its text. Hydra's own ``.hydra/config.yaml`` keeps the interpolations."""
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / RESOLVED_CONFIG).write_text(config_yaml)
    return config_yaml


def _log_run_start(mlflow_logger: Any, config_yaml: str, cfg: DictConfig, resumed: bool) -> None:
    client, run_id = mlflow_logger.experiment, mlflow_logger.run_id
    # What the CPU (or GPU) trained in: trainer=cpu picks bf16-mixed where the CPU has bf16 units.
    client.set_tag(run_id, "precision", str(OmegaConf.select(cfg, "trainer.precision", default="")))
    if resumed:
        # Params of the first start stay; re-logging a changed value (ckpt_path, output_dir) is an MLflow error.
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "resumed", "true")
        client.log_text(run_id, config_yaml, f"config/config_resumed_{time.strftime('%Y%m%d-%H%M%S')}.yaml")
        return
    runs.log_params(client, run_id, runs.flatten_config(cfg))
    client.log_text(run_id, config_yaml, "config/config.yaml")


def metric_value(metric_dict: dict[str, float], name: str | None) -> float | None:
    """Return the metric named ``name`` from ``metric_dict`` (None when ``name`` is None)."""
    if not name:
        return None
    if name not in metric_dict:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metric_dict)}")
    return metric_dict[name]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: train, and return the value of ``optimized_metric`` for sweepers.

    In a multirun a failed job is logged and returns NaN, so the other jobs of the sweep still run (Optuna
    counts a NaN trial as failed); a single run re-raises.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from vessel_lightning.training.ddp import ddp_job

    try:
        with ddp_job():  # under a multirun, DDP's extra processes run this job alone, in its folder
            metric_dict, _ = train(cfg)
        return metric_value(metric_dict, cfg.get("optimized_metric"))
    except Exception:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            log.exception("job %s failed; the sweep goes on", HydraConfig.get().job.num)
            return math.nan
        raise


if __name__ == "__main__":
    main()
