"""Distributed data parallel training made to run where it is asked to: SyncBatchNorm only on CUDA devices, and DDP
inside a Hydra multirun (each job's extra processes run that job alone, in its own folder).

Lightning's ``strategy=ddp`` starts the extra processes by running the command line again. In a Hydra multirun that
command is the whole sweep (``-m`` and every sweep value), so each extra process would start a sweep of its own and
the jobs would share one folder; after the first job the process group of that job would also stay behind for the
next. :func:`ddp_job` fixes both for the duration of one job.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

# Set by Lightning's launcher for the extra processes; a later job of the same sweep must choose its own.
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def runs_on_cuda(accelerator: str | None) -> bool:
    """Whether a Trainer with this ``accelerator`` setting trains on CUDA devices (``auto`` asks torch)."""
    name = str(accelerator or "auto").lower()
    if name in ("gpu", "cuda"):
        return True
    if name == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def sync_batchnorm_where_it_runs(trainer_cfg: DictConfig) -> bool:
    """Turn ``trainer_cfg.sync_batchnorm`` off, with a log line saying so, where SyncBatchNorm cannot run (it
    needs CUDA devices; on CPU processes each keeps its own batch statistics). Returns the setting kept."""
    if not trainer_cfg.get("sync_batchnorm"):
        return False
    if runs_on_cuda(trainer_cfg.get("accelerator")):
        log.info("sync_batchnorm: BatchNorm statistics are computed over the batches of all processes")
        return True
    with open_dict(trainer_cfg):
        trainer_cfg.sync_batchnorm = False
    log.warning(
        "sync_batchnorm off: SyncBatchNorm runs only on CUDA devices (accelerator=%s); each process normalises "
        "with its own batch statistics",
        trainer_cfg.get("accelerator"),
    )
    return False


def job_command(module: str, task_overrides: Sequence[str], output_dir: str, local_rank: int) -> list[str]:
    """The command line of one extra DDP process of a multirun job: this job alone (its own overrides, no ``-m``)
    as a single run in the job's folder, logging to ``train_ddp_process_<rank>.log`` there."""
    return [
        sys.executable,
        "-m",
        module,
        *task_overrides,
        f'hydra.run.dir="{output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]


def _multirun_job() -> Any | None:
    """The HydraConfig of the running multirun job, or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc if hc.mode == RunMode.MULTIRUN else None


@contextmanager
def ddp_job() -> Iterator[None]:
    """Around one training job: in a Hydra multirun, DDP's extra processes run this job only, in its folder; after
    the job the process group ends and Lightning's launch settings go, so the next job starts its own.

    Outside a multirun it changes nothing while the job runs.
    """
    from lightning.pytorch.strategies.launchers import subprocess_script

    hc = _multirun_job()
    original = subprocess_script._hydra_subprocess_cmd
    before = {key: os.environ.get(key) for key in _LAUNCH_ENV}
    if hc is not None:
        import __main__

        module = (
            getattr(getattr(__main__, "__spec__", None), "name", None) or "vessel_lightning.tracking.train"
        )
        # As Hydra keeps them (interpolations escaped): the extra process parses them as the command line was.
        task = OmegaConf.to_container(hc.overrides.task, resolve=False)
        if not isinstance(task, list):
            raise TypeError(f"hydra.overrides.task: expected a list, got {type(task).__name__}")
        overrides = [str(o) for o in task]
        output_dir = str(hc.runtime.output_dir)
        cwd = hc.runtime.cwd

        def command(local_rank: int) -> tuple[list[str], str]:
            return job_command(module, overrides, output_dir, local_rank), cwd

        # Lightning looks the function up at launch time: replacing it for this job is enough.
        subprocess_script._hydra_subprocess_cmd = command
    try:
        yield
    finally:
        subprocess_script._hydra_subprocess_cmd = original
        if hc is not None:
            _end_process_group()
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
