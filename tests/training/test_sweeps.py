"""Sweeps that search and compare: the Optuna sweeper, sweep parent runs and their summary, promotion with a
constraint. Fast tests use hand-made runs in a temporary store; the slow ones train tiny models for real."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import DictConfig

import vessel_lightning.tracking.runs  # noqa: F401 - registers the config resolvers
from tests.helpers.train import artifact_paths, data_overrides, mlflow_runs, run_train_cli, small_overrides
from vessel_lightning.tracking.commands import promote_main, runs_main
from vessel_lightning.tracking.registry import MODEL_URI_TAG, RegistryError
from vessel_lightning.tracking.run_listing import Constraint, best_run, sweep_parent
from vessel_lightning.tracking.store import ensure_experiment, ensure_store, runs_page_url
from vessel_lightning.tracking.sweep_summary import pareto_front, summarize_sweep, sweep_table

# ---------------------------------------------------------------- the Optuna sweeper (no training)


def test_search_space_maps_hydra_sweeps_to_optuna_distributions() -> None:
    from hydra_plugins.vessel_optuna_sweeper.optuna_sweeper import search_space
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    params = {
        "model/encoder": "choice(b0, b1, b2)",
        "optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
        "loss.cldice.weight": "interval(0.0, 1.0)",
        "data.size": "choice(256, 384, 512)",
        "model.net.decoder_channels": "choice([256,128,64,32,16], [128,64,32,16,8])",
        "trainer.max_epochs": "range(10, 40, step=10)",
        "data.tiles_per_image": "tag(int, interval(2, 8))",
    }
    # The command line fixes one key of the search space and re-ranges another.
    space, fixed = search_space(params, ["data.size=64", "model/encoder=b0,b1", "seed=7"])
    assert sorted(fixed) == ["data.size=64", "seed=7"]
    assert space["model/encoder"] == CategoricalDistribution(["b0", "b1"])
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["loss.cldice.weight"] == FloatDistribution(0.0, 1.0)
    # Lists stay override text that Hydra parses back into lists.
    assert space["model.net.decoder_channels"].choices == ("[256,128,64,32,16]", "[128,64,32,16,8]")
    assert space["trainer.max_epochs"] == IntDistribution(10, 30, step=10)
    assert space["data.tiles_per_image"] == IntDistribution(2, 8)
    assert "data.size" not in space


def test_search_space_refuses_what_optuna_cannot_search() -> None:
    from hydra_plugins.vessel_optuna_sweeper.optuna_sweeper import search_space

    with pytest.raises(ValueError, match="empty range"):
        search_space({"x": "range(5, 5)"}, [])


def test_sweeper_refuses_a_direction_optuna_does_not_know() -> None:
    from hydra_plugins.vessel_optuna_sweeper.optuna_sweeper import OptunaSweeper

    assert OptunaSweeper(direction="minimize").direction == "minimize"
    with pytest.raises(ValueError, match=r"hydra\.sweeper\.direction.*'maximise'"):
        OptunaSweeper(direction="maximise")


def test_chase_optuna_composes_with_a_seeded_sampler_and_storage_beside_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra.utils import instantiate
    from hydra_plugins.vessel_optuna_sweeper.optuna_sweeper import OptunaSweeper
    from optuna.samplers import TPESampler

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _compose_with_hydra(["hparams_search=chase_optuna", f"paths.runs_dir={tmp_path / 'runs'}"])
    sweeper_cfg = cfg.hydra.sweeper
    assert set(sweeper_cfg.params) == {
        "model/encoder",
        "optimizer.lr",
        "loss.dice",
        "loss.bce",
        "loss.cldice.weight",
        "data.size",
        "model.net.decoder_channels",
    }
    assert cfg.optimized_metric == "val/f1_best" and "cldice" in cfg.loss and cfg.data.mode == "tiles"
    assert sweeper_cfg.storage == f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'optuna.db'}"
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'mlflow.db'}"
    sweeper = instantiate(sweeper_cfg)
    # Hydra's plugin scan may import the module a second time: compare by name, not class identity.
    assert type(sweeper).__qualname__ == OptunaSweeper.__qualname__
    assert isinstance(sweeper.sampler_cfg, TPESampler)
    assert sweeper_cfg.sampler.seed == 42 and sweeper.trial_number_key == "++tags.optuna_trial"


def test_optuna_search_composes_for_the_slurm_and_parallel_launchers(tmp_path: Path) -> None:
    for launcher, target in (
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ):
        cfg = _compose_with_hydra(
            ["hparams_search=chase_optuna", f"hydra/launcher={launcher}", "hydra.sweeper.n_jobs=4"]
        )
        assert cfg.hydra.launcher._target_ == target and cfg.hydra.sweeper.n_jobs == 4
        # The Hydra callback that makes the sweep's parent run is there whatever the launcher.
        assert cfg.hydra.callbacks.mlflow_store._target_.endswith("tracking.runs.PrepareTrackingStore")


def _compose_with_hydra(overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=True)


# ---------------------------------------------------------------- summary and promotion on hand-made runs


@pytest.fixture
def sweep_store(store: str):
    """A store with one sweep parent and four child runs (one without cost metrics); returns (uri, parent id, ids)."""
    from mlflow.tracking import MlflowClient

    uri = store
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(uri, "sweep-test")
    parent = client.create_run(
        experiment_id, run_name="sweep", tags={"sweep_id": "abc123", "sweep_role": "parent"}
    )
    ids = {}
    for name, encoder, f1, cpu_ms in (
        ("b0", "b0", 0.70, 120.0),
        ("b1", "b1", 0.74, 160.0),
        ("b2", "b2", 0.72, 140.0),
        ("b3", "b3", 0.76, None),  # no cost measured: never meets a cost constraint
    ):
        tags = {
            "mlflow.parentRunId": parent.info.run_id,
            "sweep_params": json.dumps(
                {"model/encoder": encoder, "data.size": "64", "tags.optuna_trial": name}
            ),
            MODEL_URI_TAG: "models:/m-fake",
        }
        run = client.create_run(experiment_id, run_name=f"unet-{name}", tags=tags)
        client.log_metric(run.info.run_id, "val/f1_best", f1)
        client.log_metric(run.info.run_id, "cost/gflop", 20.0 + int(encoder[1]))
        if cpu_ms is not None:
            client.log_metric(run.info.run_id, "cost/cpu_ms", cpu_ms)
        client.set_terminated(run.info.run_id, "FINISHED")
        ids[name] = run.info.run_id
    return uri, parent.info.run_id, ids


def test_sweep_summary_goes_to_the_parent_run(sweep_store, tmp_path: Path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    uri, parent, ids = sweep_store
    (tmp_path / "optimization_results.yaml").write_text("best_trial: 3\n")
    client = MlflowClient(uri)
    table = summarize_sweep(client, parent, "val/f1_best", tmp_path)
    # Only the parameter that differs is a column (data.size is the same in every job; tags are no parameter).
    assert table.params == ["model/encoder"]
    assert [r["model/encoder"] for r in table.rows] == ["b3", "b1", "b2", "b0"]
    assert {"val/f1_best", "cost/gflop", "cost/cpu_ms"} <= set(table.metrics)
    assert table.rows[0]["cost/cpu_ms"] is None
    files = artifact_paths(uri, parent)
    assert sorted(files) == [
        "sweep/accuracy_vs_cost.png",
        "sweep/optimization_results.yaml",
        "sweep/summary.csv",
        "sweep/summary.md",
    ]
    run = client.get_run(parent)
    assert run.data.tags["best_run_id"] == ids["b3"] and run.data.metrics["best/val/f1_best"] == 0.76
    assert run.data.metrics["runs"] == 4
    csv_text = Path(client.download_artifacts(parent, "sweep/summary.csv", str(tmp_path))).read_text()
    assert csv_text.splitlines()[1].startswith(f"unet-b3,{ids['b3']},FINISHED")
    png = Path(client.download_artifacts(parent, "sweep/accuracy_vs_cost.png", str(tmp_path))).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # The terminal shows the same rows, best first, found by a prefix of the sweep id or of the parent run id.
    assert sweep_parent("sweep-test", "abc") == parent == sweep_parent("sweep-test", parent[:8])
    assert runs_main(["--experiment", "sweep-test", "--sweep", "abc"]) == 0
    out = capsys.readouterr().out
    assert out.index("unet-b3") < out.index("unet-b1") < out.index("unet-b2") < out.index("unet-b0")
    assert "160.0" in out and "0.7600" in out
    assert runs_main(["--experiment", "sweep-test", "--sweep", "zzz"]) == 1
    assert "no sweep matching 'zzz'" in capsys.readouterr().err


def test_best_by_with_a_latency_constraint(sweep_store, capsys) -> None:
    _, _, ids = sweep_store
    assert best_run("sweep-test", "val/f1_best").run_id == ids["b3"]
    # The best whose CPU time is under 150 ms: b1 is more accurate but slower, b3 was never measured.
    assert (
        best_run("sweep-test", "val/f1_best", where=[Constraint.parse("cost/cpu_ms<150")]).run_id == ids["b2"]
    )
    both = [Constraint.parse("cost/cpu_ms <= 120"), Constraint.parse("cost/gflop>=20")]
    assert best_run("sweep-test", "val/f1_best", where=both).run_id == ids["b0"]
    assert best_run("sweep-test", "val/f1_best", sweep="abc", where=both).run_id == ids["b0"]
    with pytest.raises(RegistryError, match=r"none of the 4 runs with a model meets cost/cpu_ms<50"):
        best_run("sweep-test", "val/f1_best", where=[Constraint.parse("cost/cpu_ms<50")])
    for bad in ("cpu_ms", "cost/cpu_ms<fast", "cost/cpu_ms<<3", "<150"):
        with pytest.raises(RegistryError, match="expected <metric><op><number>"):
            Constraint.parse(bad)
    assert promote_main(["--experiment", "sweep-test", "--where", "cost/cpu_ms<fast"]) == 1
    assert capsys.readouterr().err.startswith("error: --where 'cost/cpu_ms<fast': expected")
    assert promote_main(["--experiment", "sweep-test", "--where", "cost/cpu_ms<1"]) == 1
    assert "none of the 4 runs" in capsys.readouterr().err


def test_pareto_front_keeps_runs_nothing_beats_on_both() -> None:
    points = [(100.0, 0.70), (150.0, 0.69), (160.0, 0.74), (200.0, 0.74), (250.0, 0.80)]
    assert pareto_front(points) == [(100.0, 0.70), (160.0, 0.74), (250.0, 0.80)]


def test_sweep_table_with_one_run_lists_all_its_overrides() -> None:
    from types import SimpleNamespace

    run = SimpleNamespace(
        info=SimpleNamespace(run_id="r1", run_name="only", status="FINISHED"),
        data=SimpleNamespace(
            tags={"sweep_params": json.dumps({"a": "1", "b": "x"}), "sweep_job": "0"},
            metrics={"val/f1_best": 0.5},
        ),
    )
    table = sweep_table([run])
    assert table.params == ["a", "b"] and table.rows[0]["trial"] == "0"


def test_new_experiments_open_in_the_model_training_view(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_store(uri)
    experiment_id = ensure_experiment(uri, "kinds")
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert runs_page_url(experiment_id, "http://127.0.0.1:5000/") == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    )


# ---------------------------------------------------------------- real sweeps of tiny models


def _tiny_args(tiny: DictConfig) -> list[str]:
    return [
        *data_overrides(tiny),
        *small_overrides("runs"),
        "++trainer.max_steps=2",
        "trainer.max_epochs=1",
        "test=false",
    ]


@pytest.mark.slow
def test_optuna_search_of_three_trials_is_one_group_and_resumes(
    tiny_prepared: DictConfig, tmp_path: Path
) -> None:
    import optuna

    args = [
        "-m",
        "hparams_search=chase_optuna",
        *_tiny_args(tiny_prepared),
        "data.mode=resize",  # the tiny images are whole 64² pictures, not tiles of a photo
        "data.size=64",  # fixes the search space's tile size
        "hydra.sweeper.n_trials=3",
    ]
    done = run_train_cli(args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    store = tmp_path / "runs" / "mlflow"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    runs = mlflow_runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 4 and len(children) == 3
    assert parent.data.tags["sweep_kind"] == "optuna" and parent.info.status == "FINISHED"
    assert sorted(r.data.tags["optuna_trial"] for r in children) == ["0", "1", "2"]
    assert all(r.data.params["data.size"] == "64" for r in children)
    assert len({r.data.params["optimizer.lr"] for r in children}) == 3  # three different suggestions
    # The study sits beside the MLflow store and its best is the best child run.
    study = optuna.load_study(study_name="chase_optuna", storage=f"sqlite:///{store / 'optuna.db'}")
    best_child = max(children, key=lambda r: r.data.metrics["val/f1_best"])
    assert study.best_value == pytest.approx(best_child.data.metrics["val/f1_best"])
    assert str(study.best_trial.number) == best_child.data.tags["optuna_trial"]
    assert parent.data.tags["best_run_id"] == best_child.info.run_id
    assert "sweep/optimization_results.yaml" in artifact_paths(uri, parent.info.run_id)
    assert f"Optuna best: trial {study.best_trial.number}" in done.stdout + done.stderr
    assert "#/experiments/" in done.stderr and "/runs?workflowType=machine_learning" in done.stderr

    # The same command asking for 4 trials resumes the study: one more trial, numbered 3.
    again = run_train_cli(
        [*args[:-1], "hydra.sweeper.n_trials=4"], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None}, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    new = [r for r in mlflow_runs(uri) if r.info.run_id not in {x.info.run_id for x in runs}]
    assert sorted(r.data.tags.get("optuna_trial", "parent") for r in new) == ["3", "parent"]
    assert (
        len(optuna.load_study(study_name="chase_optuna", storage=f"sqlite:///{store / 'optuna.db'}").trials)
        == 4
    )


@pytest.fixture(scope="module")
def parallel_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, object]:
    """A finished B0/B1 grid sweep run by the joblib launcher (2 jobs side by side, models logged) into a fresh
    store; returns (folder, store URI, the finished process)."""
    from tests.helpers.data import data_config, make_masks_folder
    from vessel_lightning.data.prepare import prepare

    root = tmp_path_factory.mktemp("parallel_sweep")
    tiny = data_config(
        [
            "data=masks",
            f"data.root={make_masks_folder(root / 'raw', count=6, size=(64, 80))}",
            f"data.prepared_dir={root / 'prepared'}",
            "data.size=64",
            "data.val_fraction=0.2",
            "data.test_fraction=0.2",
            "data.batch_size=2",
            "data.workers=0",
        ]
    )
    prepare(tiny, progress=False)
    args = [
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "model/encoder=b0,b1",
        *_tiny_args(tiny),
        "callbacks.mlflow_artifacts.log_model=true",  # promotion registers a logged model
    ]
    done = run_train_cli(args, cwd=root, env={"MLFLOW_TRACKING_URI": None}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, f"sqlite:///{root / 'runs' / 'mlflow' / 'mlflow.db'}", done


@pytest.mark.slow
def test_parallel_grid_sweep_is_one_parent_with_nested_jobs_and_a_summary(parallel_sweep) -> None:
    _, uri, done = parallel_sweep
    runs = mlflow_runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and sorted(r.data.tags["encoder"] for r in children) == [
        "efficientnet-b0",
        "efficientnet-b1",
    ]
    assert {r.data.tags["sweep_id"] for r in runs} == {parent.data.tags["sweep_id"]}
    assert parent.data.tags["sweep_kind"] == "grid" and parent.info.status == "FINISHED"
    a, b = sorted(children, key=lambda r: r.info.start_time)
    assert b.info.start_time < a.info.end_time  # really side by side, in two worker processes
    for child in children:
        assert child.data.metrics["cost/gflop"] > 0 and child.data.metrics["cost/cpu_ms"] > 0
        assert child.data.metrics["cost/size"] == 64
    best = max(children, key=lambda r: r.data.metrics["val/f1_best"])
    assert parent.data.metrics["best/val/f1_best"] == best.data.metrics["val/f1_best"]
    assert {"sweep/summary.csv", "sweep/summary.md", "sweep/accuracy_vs_cost.png"} <= set(
        artifact_paths(uri, parent.info.run_id)
    )
    assert f"grouped under run {parent.info.run_id}" in done.stderr


@pytest.mark.slow
def test_promote_the_best_run_under_a_latency_limit_from_a_sweep(parallel_sweep, monkeypatch, capsys) -> None:
    import mlflow

    _, uri, _ = parallel_sweep
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    try:
        children = [r for r in mlflow_runs(uri) if "mlflow.parentRunId" in r.data.tags]
        fast, slow = sorted(children, key=lambda r: r.data.metrics["cost/cpu_ms"])
        limit = (fast.data.metrics["cost/cpu_ms"] + slow.data.metrics["cost/cpu_ms"]) / 2
        assert not math.isclose(fast.data.metrics["cost/cpu_ms"], slow.data.metrics["cost/cpu_ms"])
        sweep_id = fast.data.tags["sweep_id"]
        assert runs_main(["--sweep", sweep_id]) == 0
        table = capsys.readouterr().out
        assert "unet-efficientnet-b0 #0" in table and "unet-efficientnet-b1 #1" in table
        where = f"cost/cpu_ms<{limit:.3f}"
        assert promote_main(["--experiment", "vessel-lightning", "--sweep", sweep_id, "--where", where]) == 0
        out = capsys.readouterr().out
        assert f"version 1 from run {fast.info.run_id}" in out and "cost/cpu_ms=" in out
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_mlflow_ui_shows_the_sweep_as_one_group_with_its_summary(parallel_sweep) -> None:
    """In a real browser: the printed URL lands on the training runs, the sweep is one row that expands to its
    jobs, and the parent run's artifacts hold the summary table."""
    import os
    import shutil

    from mlflow.tracking import MlflowClient

    from tests.helpers.mlflow_server import mlflow_server

    chromium = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("no Chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    root, uri, _ = parallel_sweep
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("vessel-lightning").experiment_id
    parent = next(r for r in mlflow_runs(uri) if r.data.tags.get("sweep_role") == "parent")
    served = root / "served-artifacts"
    with (
        mlflow_server(uri, served, root / "mlflow-ui.log", ready_timeout_s=90, cwd=root) as base,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(runs_page_url(experiment_id, base))
        name_cell = page.locator("[role=gridcell]").filter(has_text=parent.info.run_name)
        name_cell.wait_for(timeout=90_000)
        # The runs grid, not the GenAI overview the UI opens by default (which has no runs grid).
        assert f"/experiments/{experiment_id}/runs?workflowType=machine_learning" in page.url
        assert page.get_by_text("unet-efficientnet-b0 #0").count() == 0  # jobs folded under their sweep
        name_cell.locator("button").first.click()  # the row's expand button
        page.get_by_text("unet-efficientnet-b0 #0").wait_for(timeout=30_000)
        page.get_by_text("unet-efficientnet-b1 #1").wait_for(timeout=30_000)
        page.goto(f"{base}/#/experiments/{experiment_id}/runs/{parent.info.run_id}/artifacts")
        page.get_by_text("sweep", exact=True).first.click(timeout=60_000)
        page.get_by_text("accuracy_vs_cost.png").wait_for(timeout=30_000)
        page.get_by_text("summary.md").click()
        page.get_by_text("cost/cpu_ms").first.wait_for(timeout=30_000)  # the table's header, rendered
        browser.close()


@pytest.mark.slow  # runs the vessel-train CLI in a process
def test_a_sweep_that_cannot_start_leaves_its_parent_run_failed(tmp_path: Path) -> None:
    # The sweeper raises before any job (nothing to search): Hydra skips on_multirun_end.
    args = ["-m", "hparams_search=chase_optuna", "~hydra.sweeper.params", "paths.runs_dir=runs"]
    done = run_train_cli(args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None}, timeout=120)
    assert done.returncode != 0 and "nothing to search" in done.stdout + done.stderr
    (parent,) = mlflow_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'mlflow.db'}")
    assert parent.data.tags["sweep_role"] == "parent" and parent.info.status == "FAILED"
