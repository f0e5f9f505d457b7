"""``vessel-train trainer=ddp`` run for real: two CPU processes (gloo) on tiny CHASE_DB1 tiles, a single run, its
resume, and a multirun of two DDP jobs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.helpers.train import REPO_ROOT, mlflow_runs, run_train_cli, sweep_runs
from vessel_lightning.threshold import best_f1_threshold

PROBE = "+callbacks.rank_probe._target_=tests.helpers.ddp.RankProbe"


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the runs of this module prepare CHASE_DB1 (once: later runs find it up to date)."""
    return tmp_path_factory.mktemp("prepared")


def ddp_args(data_dir: Path, prepared_root: Path, runs_dir: Path, probe: str) -> list[str]:
    """``trainer=ddp`` on two CPU processes, a few steps of a random B0 on 64² CHASE_DB1 tiles."""
    return [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=3",
        "++trainer.limit_val_batches=2",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        "data=chase_db1",
        f"data.root={data_dir / 'CHASE_DB1'}",
        f"data.prepared_dir={prepared_root / 'chase_db1-tiles-64'}",
        "data.mode=tiles",
        "data.size=64",
        "data.batch_size=2",
        "data.workers=0",
        f"paths.runs_dir={runs_dir}",
        "model.encoder_weights=null",
        "model.num_samples=2",
        "test=false",
        "~callbacks.rich_progress_bar",
        "callbacks.serving_cost.size=64",
        PROBE,
        f"+callbacks.rank_probe.folder={probe}",
    ]


def _env() -> dict[str, str | None]:
    # The extra DDP processes import the probe from tests/: the checkout must be on their path.
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"MLFLOW_TRACKING_URI": None, "PYTHONPATH": path, "VESSEL_SWEEP_ID": None}


def _probes(folder: Path) -> tuple[dict, dict]:
    return tuple(json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1))  # type: ignore[return-value]


def _registered_versions(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).search_model_versions("name = 'vessel-unet'")


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_once_and_resumes(
    data_dir: Path, prepared_root: Path, tmp_path: Path
) -> None:
    runs_dir, probe = tmp_path / "runs", tmp_path / "probe"
    args = ddp_args(data_dir, prepared_root, runs_dir, str(probe))
    done = run_train_cli(
        [*args, "register=true", "callbacks.mlflow_artifacts.log_model=true"], tmp_path, _env(), timeout=600
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "sync_batchnorm off" in out and "distributed_backend=gloo" in out  # no override needed on CPU
    assert "MEMBER: 2/2" in out  # really two processes

    first, second = _probes(probe)
    assert (first["rank"], second["rank"]) == (0, 1)
    # The distributed sampler: each process trains on its own half of the tiles, together all of them.
    assert first["sampler"] == second["sampler"] == "DistributedSampler"
    assert first["sampler_replicas"] == second["sampler_replicas"] == 2
    a, b = set(first["train_indices"]), set(second["train_indices"])
    assert not a & b and a | b == set(range(len(a) + len(b)))
    assert first["train_ids"] != second["train_ids"]

    # Validation: each process saw other tiles; F1 and the tuned threshold come from both, on both.
    (v0,), (v1,) = first["validations"], second["validations"]
    local0, local1 = v0["local"], v1["local"]
    assert local0 != local1
    tp, fp, fn = (local0[k] + local1[k] for k in ("tp", "fp", "fn"))
    assert v0["val/f1"] == v1["val/f1"] == pytest.approx(2 * tp / max(2 * tp + fp + fn, 1), abs=1e-6)
    hist = np.asarray(local0["hist"]) + np.asarray(local1["hist"])
    assert v0["threshold"] == v1["threshold"] == pytest.approx(best_f1_threshold(hist[0], hist[1])[0])
    assert v0["val/loss"] == v1["val/loss"]

    # Rank 0 alone writes: one run, one best checkpoint (+ last), one registered version.
    uri = f"sqlite:///{runs_dir / 'mlflow' / 'mlflow.db'}"
    (run,) = mlflow_runs(uri)
    assert run.info.status == "FINISHED" and run.data.metrics["val/f1"] == pytest.approx(v0["val/f1"])
    (job_dir,) = (runs_dir / "train").iterdir()
    assert sorted(p.name for p in (job_dir / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    assert [v.run_id for v in _registered_versions(uri)] == [run.info.run_id]
    assert (job_dir / "train_ddp_process_1.log").is_file()  # the second process logged into the same folder

    # ckpt_path=last: both processes resume, into the same run.
    resumed = run_train_cli(
        [*args, "ckpt_path=last", "trainer.max_epochs=2", "callbacks.mlflow_artifacts.log_model=false"],
        tmp_path,
        _env(),
        timeout=600,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    (again,) = mlflow_runs(uri)
    assert again.info.run_id == run.info.run_id and again.data.tags.get("resumed") == "true"
    first, second = _probes(probe)
    assert len(first["validations"]) == len(second["validations"]) == 1  # only epoch 2 ran
    from mlflow.tracking import MlflowClient

    epochs = [m.value for m in MlflowClient(uri).get_metric_history(run.info.run_id, "epoch")]
    assert max(epochs) == 1.0  # the second epoch, logged to the first run


@pytest.mark.slow
def test_a_multirun_of_two_ddp_jobs_keeps_each_job_in_its_own_folder(
    data_dir: Path, prepared_root: Path, tmp_path: Path
) -> None:
    runs_dir = tmp_path / "runs"
    args = ddp_args(data_dir, prepared_root, runs_dir, "${paths.output_dir}/probe")
    done = run_train_cli(["-m", *args, "seed=1,2"], tmp_path, _env(), timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]

    (sweep_dir,) = (runs_dir / "train" / "multirun").iterdir()
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == [
        "0",
        "1",
    ]  # no sweep of the extra ranks
    for job in ("0", "1"):
        folder = sweep_dir / job
        first, second = _probes(folder / "probe")
        assert (first["rank"], second["rank"], first["world_size"]) == (0, 1, 2)
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        assert (folder / "train_ddp_process_1.log").is_file()
        assert OmegaConf.load(folder / "config.yaml").seed == int(job) + 1
    parent, jobs = sweep_runs(f"sqlite:///{runs_dir / 'mlflow' / 'mlflow.db'}")
    assert sorted(r.data.tags["sweep_job"] for r in jobs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in [parent, *jobs])


def test_sync_batchnorm_is_kept_for_cuda_and_turned_off_with_a_log_line_elsewhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from vessel_lightning.training.ddp import sync_batchnorm_where_it_runs

    gpu = OmegaConf.create({"accelerator": "gpu", "sync_batchnorm": True})
    assert sync_batchnorm_where_it_runs(gpu) and gpu.sync_batchnorm
    cpu = OmegaConf.create({"accelerator": "cpu", "sync_batchnorm": True})
    with caplog.at_level("WARNING"):
        assert not sync_batchnorm_where_it_runs(cpu)
    assert cpu.sync_batchnorm is False
    assert "sync_batchnorm off: SyncBatchNorm runs only on CUDA devices" in caplog.text


def test_an_extra_ddp_process_of_a_multirun_job_runs_that_job_alone_in_its_folder() -> None:
    from vessel_lightning.training.ddp import job_command

    command = job_command("vessel_lightning.tracking.train", ["seed=2", "trainer=ddp"], "/x/multirun/t/1", 1)
    assert "-m" in command and command[command.index("-m") + 1] == "vessel_lightning.tracking.train"
    assert command.count("-m") == 1  # the module flag only: not a multirun again
    assert command[3:] == [
        "seed=2",
        "trainer=ddp",
        'hydra.run.dir="/x/multirun/t/1"',
        "hydra.job.name=train_ddp_process_1",
        "hydra.output_subdir=null",
    ]
