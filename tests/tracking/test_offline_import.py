"""vessel-import-run: a job trained with logger=csv (no store reachable) becomes a complete MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers.train import (
    artifact_paths,
    compose_train,
    data_overrides,
    mlflow_runs,
    small_overrides,
)
from vessel_lightning.models.networks import load_network
from vessel_lightning.tracking.offline import ImportRunError, JobFolder, main, read_metrics
from vessel_lightning.tracking.train import train

pytestmark = pytest.mark.slow  # each test trains the job it imports


@pytest.fixture
def csv_job(tiny_prepared: DictConfig, tmp_path: Path) -> Path:
    """A finished tiny training job that logged to CSV only."""
    job = tmp_path / "job"
    cfg = compose_train(
        [*data_overrides(tiny_prepared), *small_overrides(tmp_path / "runs"), "logger=csv", "test=false"], job
    )
    train(cfg)
    return job


def test_import_makes_a_run_with_params_metric_history_artifacts_and_model(
    csv_job: Path,
    mlflow_env: str,
) -> None:
    assert not Path(mlflow_env.removeprefix("sqlite:///")).exists()  # the import creates the store
    assert main([str(csv_job), "--tag", "device=test-cpu", "--register", "--alias", "champion"]) == 0

    (run,) = mlflow_runs(mlflow_env)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.net.encoder_name"] == "efficientnet-b0"
    assert run.data.params["trainer.max_epochs"] == "2"
    assert run.data.tags["device"] == "test-cpu" and run.data.tags["imported_from"] == "job"
    assert run.data.tags["encoder"] == "efficientnet-b0" and run.data.tags["loss"] == "dice+bce"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_env)
    csv_rows = [m for m in read_metrics(JobFolder.find(csv_job).metrics) if m[0] == "val/f1"]
    history = client.get_metric_history(run.info.run_id, "val/f1")
    assert len(history) == len(csv_rows) == 2  # one per epoch, with the CSV's steps
    assert sorted((h.step, round(h.value, 6)) for h in history) == sorted(
        (step, round(value, 6)) for _, value, step in csv_rows
    )

    files = artifact_paths(mlflow_env, run.info.run_id)
    assert {"config/config.yaml", "network/network.pt", "network/contract.json"} <= set(files)
    assert "figures/learning_curves.png" in files and "model/MLmodel" not in files

    # The registered model predicts what the job's own network.pt predicts, with the job's contract.
    from mlflow.models import get_model_info

    from vessel_lightning.tracking.bundle import is_bundle, load_logged_model

    info = get_model_info("models:/vessel-unet@champion")
    assert is_bundle(info.flavors)
    assert info.run_id == run.info.run_id
    contract = json.loads((csv_job / "artifacts" / "contract.json").read_text())
    assert info.metadata["contract"]["threshold"] == contract["threshold"]
    assert info.metadata["contract"]["dataset"] == contract["dataset"] == "masks"
    model, _, _ = load_logged_model("models:/vessel-unet@champion")
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(image), load_network(csv_job / "artifacts" / "network.pt")(image))


def test_import_refuses_unfinished_or_broken_jobs_before_creating_a_run(
    csv_job: Path,
    tmp_path: Path,
    mlflow_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (csv_job / "artifacts" / "contract.json").unlink()
    with pytest.raises(ImportRunError, match=r"missing .*contract\.json"):
        JobFolder.find(csv_job)
    assert main([str(csv_job)]) == 2
    assert "contract.json" in capsys.readouterr().err

    assert main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such job folder" in capsys.readouterr().err

    broken = tmp_path / "metrics.csv"
    broken.write_text("epoch,step,val/f1\n0,7,oops\n")
    with pytest.raises(ImportRunError, match=r"metrics\.csv, line 2"):
        read_metrics([broken])

    assert main([str(csv_job), "--tag", "no-equals-sign"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert not Path(mlflow_env.removeprefix("sqlite:///")).exists()  # nothing was created
