"""Sweeps beyond one process: parallel jobs into one store, a two-job sweep on a one-node SLURM cluster (run here),
the SLURM and DDP configs for GPUs (composed here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers.slurm import PARTITION, slurm_cluster
from tests.helpers.train import data_overrides, run_train_cli, small_overrides, sweep_runs


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_in_parallel_into_one_store(
    tiny_prepared: DictConfig, tmp_path: Path
) -> None:
    args = [
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "model/encoder=b0,b1",
        *data_overrides(tiny_prepared),
        *small_overrides("runs"),
        "++trainer.max_steps=2",
        "trainer.max_epochs=1",
        "test=false",
    ]
    done = run_train_cli(args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr  # really the parallel launcher
    _, found = sweep_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'mlflow.db'}")
    assert sorted(r.data.tags["encoder"] for r in found) == ["efficientnet-b0", "efficientnet-b1"]
    assert all(r.info.status == "FINISHED" for r in found)
    assert len({r.data.tags["sweep_id"] for r in found}) == 1
    # the two jobs overlapped in time: each started before the other ended
    (a, b) = sorted(found, key=lambda r: r.info.start_time)
    assert b.info.start_time < a.info.end_time


@pytest.mark.slow
def test_submitit_launcher_runs_a_two_job_sweep_on_a_slurm_cluster(
    tiny_prepared: DictConfig, tmp_path: Path
) -> None:
    with slurm_cluster() as cluster:
        args = [
            "-m",
            "hydra/launcher=slurm",
            f"hydra.launcher.partition={PARTITION}",
            "hydra.launcher.gpus_per_node=null",  # the test node has CPUs only
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=15",
            "model/encoder=b0,b1",
            *data_overrides(tiny_prepared),
            *small_overrides("runs"),
            "++trainer.max_steps=2",
            "trainer.max_epochs=1",
            "test=false",
        ]
        done = run_train_cli(
            args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None, **cluster.env}, timeout=900
        )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (sweep_dir,) = (tmp_path / "runs" / "train" / "multirun").iterdir()
    # submitit's own records: one SLURM job per sweep point, each with its log and its pickled result.
    job_logs = sorted((sweep_dir / ".submitit").rglob("*_log.out"))
    assert len(job_logs) == 2 and len(list((sweep_dir / ".submitit").rglob("*_result.pkl"))) == 2
    parent, found = sweep_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'mlflow.db'}")
    assert sorted(r.data.tags["encoder"] for r in found) == ["efficientnet-b0", "efficientnet-b1"]
    assert all(r.info.status == "FINISHED" for r in [parent, *found])


def _compose_with_hydra(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_composes_for_a_gpu_sweep() -> None:
    cfg = _compose_with_hydra(["hydra/launcher=slurm", "trainer=gpu", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.partition == "gpu" and launcher.array_parallelism == 16


def test_ddp_trainer_config_is_multi_gpu_data_parallel(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = _compose_with_hydra(["trainer=ddp"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 2 and cfg.trainer.sync_batchnorm
    # The same keys build a real Trainer here when pointed at CPU processes.
    trainer = instantiate(
        cfg.trainer,
        accelerator="cpu",
        devices=2,
        precision="32-true",
        logger=False,
        default_root_dir=str(tmp_path),
    )
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.num_devices == 2
