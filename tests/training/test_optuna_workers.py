"""One Optuna study, two sweepers at once: the study in a real PostgreSQL server, the runs in an MLflow tracking
server on the same PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from tests.helpers.mlflow_server import mlflow_server
from tests.helpers.postgres import postgres_server
from tests.helpers.train import REPO_ROOT, data_overrides, mlflow_runs, small_overrides


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


def test_a_bare_postgresql_url_is_refused_naming_the_driver_that_is_installed() -> None:
    from hydra_plugins.vessel_optuna_sweeper.optuna_sweeper import OptunaSweeper, check_storage_url

    assert (
        check_storage_url("postgresql+psycopg2://u@127.0.0.1:5432/db")
        == "postgresql+psycopg2://u@127.0.0.1:5432/db"
    )
    assert check_storage_url("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"
    with pytest.raises(
        ValueError, match=r"hydra.sweeper.storage=postgresql://u@h/db: write postgresql\+psycopg2://"
    ):
        OptunaSweeper(storage="postgresql://u@h/db")


@pytest.mark.slow
def test_the_study_lock_makes_two_workers_ask_for_exactly_n_trials(postgres, tmp_path: Path) -> None:
    # Two sweepers asking at once, in threads: together exactly n_trials trials, each with its own number.
    import threading

    from hydra_plugins.vessel_optuna_sweeper.optuna_sweeper import OptunaSweeper
    from optuna.distributions import FloatDistribution

    url = postgres.create_database("locking")
    asked: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            work()
        except BaseException as err:  # a thread's exception would not fail the test by itself
            errors.append(err)

    def work() -> None:
        sweeper = OptunaSweeper(sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 1}, storage=url)
        sweeper.study_name, sweeper.n_trials = "race", 7
        study = sweeper._study()
        while trials := sweeper._ask(study, {"x": FloatDistribution(0, 1)}):
            for trial in trials:
                asked.append(trial.number)
                study.tell(trial, trial.params["x"])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(asked) == list(range(7))


def _worker_command(tiny: DictConfig, storage: str, sweep_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vessel_lightning.tracking.train",
        "-m",
        "hparams_search=chase_optuna",
        *data_overrides(tiny),
        *small_overrides("runs"),
        "++trainer.max_steps=2",
        "trainer.max_epochs=1",
        "test=false",
        "data.mode=resize",  # the tiny images are whole 64² pictures, not tiles of a photo
        "data.size=64",
        "model/encoder=choice(b0, b1)",  # the small ones
        "hydra.sweeper.n_trials=4",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep_dir}",  # two workers on one machine: one folder each
    ]


@pytest.mark.slow
def test_two_sweepers_share_one_study_on_postgresql_and_one_tracking_server(
    postgres, tiny_prepared: DictConfig, tmp_path: Path
) -> None:
    import optuna
    from optuna.trial import TrialState

    storage = postgres.create_database("optuna")
    tracking = postgres.create_database("mlflow")
    with mlflow_server(tracking, tmp_path / "artifacts", tmp_path / "mlflow.log") as uri:
        env = {
            k: v for k, v in os.environ.items() if k not in ("VESSEL_SWEEP_ID", "VESSEL_SWEEP_PARENT_RUN_ID")
        }
        env |= {
            "MLFLOW_TRACKING_URI": uri,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
        }
        workers = []
        for i in range(2):
            log = (tmp_path / f"worker{i}.log").open("w")
            workers.append(
                subprocess.Popen(
                    _worker_command(tiny_prepared, storage, tmp_path / f"sweep{i}"),
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for i, worker in enumerate(workers):
            assert worker.wait(900) == 0, (tmp_path / f"worker{i}.log").read_text()[-4000:]
        runs = mlflow_runs(uri)

    # One study: exactly n_trials trials in all, numbered once each, no parameters proposed twice.
    study = optuna.load_study(study_name="chase_optuna", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4
    assert study.user_attrs["vessel_workers"] == 2

    # Each worker drew its own sampler seed and worked on the study as a whole.
    results = [OmegaConf.load(tmp_path / f"sweep{i}" / "optimization_results.yaml") for i in range(2)]
    assert sorted(r.worker for r in results) == [0, 1]
    assert sorted(r.sampler_seed for r in results) == [42, 43]
    best = max(trials, key=lambda t: t.value)
    assert study.best_trial.number == best.number
    last = max(range(2), key=lambda i: (tmp_path / f"sweep{i}" / "optimization_results.yaml").stat().st_mtime)
    assert results[last].best_trial == best.number  # the last to finish reports the best of both

    # One tracking server: each worker's trials nest under its own parent run; together all four trials.
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("sweep_role") == "parent"}
    assert len(parents) == 2 and all(p.data.tags["sweep_kind"] == "optuna" for p in parents.values())
    by_parent: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        if run.info.run_id not in parents:
            by_parent[run.data.tags["mlflow.parentRunId"]].append(run.data.tags["optuna_trial"])
    assert set(by_parent) == set(parents) and all(by_parent.values())  # both workers ran trials
    assert sorted(t for trials in by_parent.values() for t in trials) == ["0", "1", "2", "3"]
    (best_run,) = [r for r in runs if r.data.tags.get("optuna_trial") == str(best.number)]
    assert best_run.data.metrics["val/f1_best"] == pytest.approx(best.value)
