"""End-to-end training: real data module, real network, real MLflow SQLite store (all tiny, on CPU)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers.train import (
    artifact_paths,
    compose_train,
    data_overrides,
    mlflow_runs,
    quiet_trainer,
    run_train_cli,
    small_overrides,
    sweep_runs,
    synthetic_items,
)
from vessel_lightning.models.networks import load_network
from vessel_lightning.tracking.train import resolve_ckpt_path, train

REQUIRED_KEYS = {"train/loss", "val/loss", "val/f1", "val/iou", "val/precision", "val/recall", "val/f1_best"}

pytestmark = (
    pytest.mark.slow
)  # every test here trains (tiny, but real steps), so `make test-fast` leaves them out


def test_train_logs_run_metrics_and_artifacts(
    tiny_prepared: DictConfig,
    tmp_path: Path,
    mlflow_env: str,
) -> None:
    runs = tmp_path / "runs"
    model_overrides = [
        "callbacks.mlflow_artifacts.log_model=true",
        "register=true",
        "registry.alias=champion",
    ]
    cfg = compose_train(
        [*data_overrides(tiny_prepared), *small_overrides(runs), *model_overrides], runs / "train" / "job"
    )
    metrics, objects = train(cfg)

    assert REQUIRED_KEYS | {"test/f1", "test/iou"} <= set(metrics)
    assert metrics["val/f1_best"] >= metrics["val/f1"] - 1e-6
    (run,) = mlflow_runs(mlflow_env)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.net.encoder_name"] == "efficientnet-b0"
    assert run.data.tags["encoder"] == "efficientnet-b0"
    assert run.data.tags["dataset"] == tiny_prepared.name
    assert REQUIRED_KEYS | {"test/f1", "test/iou"} <= set(run.data.metrics)
    # Per-epoch values, not just the last one.
    from mlflow.tracking import MlflowClient

    history = MlflowClient(mlflow_env).get_metric_history(run.info.run_id, "val/iou")
    assert len(history) == cfg.trainer.max_epochs

    files = artifact_paths(mlflow_env, run.info.run_id)
    assert "config/config.yaml" in files
    assert "network/network.pt" in files and "model/MLmodel" not in files  # the model lives in the store
    assert "figures/learning_curves.png" in files and "figures/predictions_final.png" in files
    ckpts = [f for f in files if f.startswith("checkpoints/") and f.endswith(".ckpt")]
    assert ckpts == [f"checkpoints/{Path(objects['trainer'].checkpoint_callback.best_model_path).name}"]

    # network.pt (inference's file) holds the best checkpoint's weights and needs no training code to load.
    best = objects["trainer"].checkpoint_callback.best_model_path
    from vessel_lightning.training.module import VesselSegmenter

    reloaded = VesselSegmenter.load_from_checkpoint(best, weights_only=False).eval()
    network = load_network(cfg.paths.output_dir + "/artifacts/network.pt")
    image = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(network(image), reloaded(image), atol=1e-5, rtol=1e-4)

    # The same weights as a registered MLflow model (a bundle: weights, config, contract; no pickled module),
    # with the contract evaluation and serving read.
    from mlflow.models import get_model_info

    from vessel_lightning.tracking.bundle import is_bundle, load_logged_model

    uri = "models:/vessel-unet/1"
    assert MlflowClient(mlflow_env).get_model_version("vessel-unet", "1").run_id == run.info.run_id
    assert str(MlflowClient(mlflow_env).get_model_version_by_alias("vessel-unet", "champion").version) == "1"
    assert is_bundle(get_model_info(uri).flavors)
    logged, _, _ = load_logged_model(uri)
    with torch.no_grad():
        torch.testing.assert_close(logged(image), reloaded(image), atol=1e-5, rtol=1e-4)
    contract = get_model_info(uri).metadata["contract"]
    assert contract["encoder"] == "efficientnet-b0" and contract["size"] == [64, 64]
    assert contract["threshold"] == pytest.approx(float(reloaded.val_threshold))
    assert 0 < contract["threshold"] < 1


def test_resume_after_crash_continues_the_same_mlflow_run(
    tiny_prepared: DictConfig,
    tmp_path: Path,
    mlflow_env: str,
) -> None:
    runs = tmp_path / "runs"
    base = [*data_overrides(tiny_prepared), *small_overrides(runs), "trainer.max_epochs=3", "test=false"]
    # 2 training batches per epoch: the crash at step 3 falls in epoch 1, after epoch 0's checkpoint.
    crash = ["+callbacks.crash._target_=tests.helpers.train.CrashAfterSteps", "+callbacks.crash.steps=3"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_train(base + crash, runs / "train" / "first"))
    (run,) = mlflow_runs(mlflow_env)
    assert run.info.status == "FAILED"
    last = resolve_ckpt_path("last", str(runs), "train")
    assert last is not None and Path(last).name == "last.ckpt"
    assert "val_f1_best.max_value" in torch.load(last, weights_only=False)["state_dict"]

    metrics, objects = train(compose_train([*base, "ckpt_path=last"], runs / "train" / "second"))

    (resumed,) = mlflow_runs(mlflow_env)
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed"] == "true"
    trainer = objects["trainer"]
    assert (
        trainer.current_epoch == 3 and trainer.global_step == 6
    )  # continued, not restarted (would be 6 + 2)
    from mlflow.tracking import MlflowClient

    epochs = [m.value for m in MlflowClient(mlflow_env).get_metric_history(run.info.run_id, "val/f1")]
    assert len(epochs) == 3  # epoch 0 from the first start, epochs 1 and 2 after resuming
    assert metrics["val/f1_best"] == pytest.approx(max(epochs))  # the best score survived the restart
    files = artifact_paths(mlflow_env, run.info.run_id, "config")
    assert "config/config.yaml" in files and any("config_resumed_" in f for f in files)


def test_multirun_two_encoders_is_one_grouped_sweep(tiny_prepared: DictConfig, tmp_path: Path) -> None:
    # A relative runs folder and chdir into each job: the store must still be one absolute SQLite file.
    args = [
        "-m",
        "model/encoder=b0,b1",
        "hydra/launcher=basic",
        "hydra.job.chdir=true",
        *data_overrides(tiny_prepared),
        *small_overrides("runs"),
        "++trainer.max_steps=2",
        "trainer.max_epochs=1",
        "test=false",
    ]
    done = run_train_cli(args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None})
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'mlflow.db'}"
    parent, found = sweep_runs(uri)
    assert parent.data.tags["sweep_kind"] == "grid" and parent.info.status == "FINISHED"
    assert sorted(r.data.tags["encoder"] for r in found) == ["efficientnet-b0", "efficientnet-b1"]
    assert all(r.info.status == "FINISHED" for r in found)
    assert len({r.data.tags["sweep_id"] for r in found}) == 1
    assert sorted(r.data.tags["sweep_job"] for r in found) == ["0", "1"]
    assert not list(tmp_path.rglob("mlruns")) and len(list(tmp_path.rglob("*.db"))) == 1


def test_failed_job_does_not_stop_the_sweep(tiny_prepared: DictConfig, tmp_path: Path, monkeypatch) -> None:
    # Job 0 asks for ImageNet weights that are not in the (empty) cache and may not be downloaded (offline): it
    # fails fast; job 1 must still run.
    args = [
        "-m",
        *data_overrides(tiny_prepared),
        *small_overrides(tmp_path / "runs"),
        "model.encoder_weights=imagenet,null",  # after small_overrides, which sets it to null
        "++trainer.max_steps=1",
        "trainer.max_epochs=1",
        "test=false",
    ]
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    done = run_train_cli(
        args,
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no local copy of the 'imagenet' weights" in done.stdout + done.stderr
    _, (run,) = sweep_runs(uri)
    assert run.info.status == "FINISHED" and run.data.tags["sweep_job"] == "1"
    # max_steps=1 ends the only epoch before its validation: train() validates once at the end instead.
    assert {"val/f1", "val/f1_best"} <= set(run.data.metrics)


def test_overfits_two_images(tmp_path: Path) -> None:
    """The wiring learns: two 64×64 images are fitted to F1 > 0.9 (eval mode, inside the FOV)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from vessel_lightning.training.module import VesselSegmenter

    samples = synthetic_items([0, 1])
    L.seed_everything(0)
    model = VesselSegmenter(
        net={"encoder_name": "efficientnet-b0"},
        loss={"dice": 1.0, "bce": 1.0},
        optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
    )
    trainer = quiet_trainer(tmp_path, max_steps=50)
    trainer.fit(model, DataLoader(samples, batch_size=2))

    batch = next(iter(DataLoader(samples, batch_size=2)))
    model.eval()
    with torch.no_grad():
        pred = torch.sigmoid(model(batch["image"])) > 0.5
    inside = batch["fov"] > 0.5
    truth = batch["mask"] > 0.5
    tp = (pred & truth & inside).sum().item()
    f1 = 2 * tp / ((pred & inside).sum().item() + (truth & inside).sum().item())
    assert f1 > 0.9, f"F1 after 50 steps: {f1:.3f}"


def test_batchnorm_recalibration_callback_moves_frozen_statistics(tmp_path: Path) -> None:
    # Momentum 0 freezes the running statistics at their initial values (mean 0) during training; only the
    # callback's re-estimation before validation can move them.
    import lightning as L
    from torch.utils.data import DataLoader

    from vessel_lightning.training.callbacks import BatchNormRecalibration
    from vessel_lightning.training.module import VesselSegmenter

    (sample,) = synthetic_items([0])
    loader = DataLoader([sample, sample], batch_size=2)

    def first_bn_mean(callbacks: list) -> torch.Tensor:
        L.seed_everything(0)
        model = VesselSegmenter(
            net={"encoder_name": "efficientnet-b0", "bn_momentum": 0.0},
            loss={"dice": 1.0},
            optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
            channels_last=True,
        )
        trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0, callbacks=callbacks)
        trainer.fit(model, loader, loader)
        bn = next(m for m in model.net.model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert bn.momentum == 0.0
        return bn.running_mean.abs().max()

    assert first_bn_mean([]) == 0
    assert first_bn_mean([BatchNormRecalibration()]) > 0.01


def test_checkpoint_reloads_without_the_pretrained_weights_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from vessel_lightning.models.networks import build_network
    from vessel_lightning.training.module import VesselSegmenter

    weights = tmp_path / "encoder.safetensors"
    save_file(dict(build_network().model.encoder.state_dict()), str(weights))
    model = VesselSegmenter(
        net={"encoder_name": "efficientnet-b0"},
        loss={"dice": 1.0},
        optimizer=functools.partial(torch.optim.Adam),
        encoder_weights="imagenet",
        weights_path=str(weights),
    )
    checkpoint = {"hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    weights.unlink()

    assert model.hparams.weights_path == str(weights)  # the live module's hparams are untouched
    assert checkpoint["encoder_pretrained"] == "imagenet"
    reloaded = VesselSegmenter(**checkpoint["hyper_parameters"])  # what load_from_checkpoint does
    reloaded.load_state_dict(model.state_dict())


@pytest.mark.parametrize("name", ["fdr", "overfit"])
def test_debug_configs_train(tiny_prepared: DictConfig, tmp_path: Path, mlflow_env: str, name: str) -> None:
    runs = tmp_path / "runs"
    overrides = [*data_overrides(tiny_prepared), f"paths.runs_dir={runs}", f"debug={name}"]
    overrides += ["model.encoder_weights=null", "trainer.max_epochs=1"]
    metrics, _ = train(compose_train(overrides, runs / "debug" / name))
    assert "val/f1" in metrics
