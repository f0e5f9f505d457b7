"""Every option of every config group of ``train.yaml`` composes, resolves and instantiates."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from lightning import Callback, Trainer
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
from omegaconf import OmegaConf

from tests.helpers.train import compose_train
from vessel_lightning.config import CONFIG_DIR
from vessel_lightning.tracking.runs import flatten_config
from vessel_lightning.tracking.train import instantiate_group, metric_value, resolve_ckpt_path
from vessel_lightning.training.losses import CompoundLoss, build_loss
from vessel_lightning.training.module import VesselSegmenter


def options(group: str) -> list[str]:
    """Names of the options of a config group (files starting with _ are shared bases, not options)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def compose(tmp_path: Path, *overrides: str):
    return compose_train([f"paths.runs_dir={tmp_path / 'runs'}", *overrides], tmp_path / "out")


def test_groups_have_the_expected_options() -> None:
    assert options("model/encoder") == [f"b{i}" for i in range(8)]
    assert {"dice_bce", "dice", "bce", "focal", "tversky"} <= set(options("loss"))
    assert {"plateau", "cosine", "none"} <= set(options("scheduler"))
    assert {"default", "cpu", "gpu", "ddp"} <= set(options("trainer"))
    assert {"mlflow", "csv", "none"} <= set(options("logger"))
    assert options("experiment") and options("debug")


def test_default_config_resolves_with_the_seed_defaults(tmp_path: Path) -> None:
    cfg = compose(tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["data"]["batch_size"] == 8
    assert resolved["optimized_metric"] == "val/f1_best"
    assert resolved["model"]["optimizer"]["_target_"] == "torch.optim.Adam"
    assert resolved["model"]["scheduler"] | {"_partial_": True} == {
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "_partial_": True,
        "mode": "max",
        "factor": 0.5,
        "patience": 5,
    }
    assert resolved["model"]["scheduler_monitor"] == "val/f1"
    assert resolved["callbacks"]["early_stopping"]["patience"] == 20
    assert resolved["model"]["loss"] == resolved["loss"]
    assert resolved["model"]["net"]["bn_momentum"] == 0.1
    assert resolved["logger"]["mlflow"]["tracking_uri"].startswith("sqlite:///")


@pytest.mark.parametrize("name", options("model/encoder"))
def test_encoder_options_build_the_model(tmp_path: Path, name: str) -> None:
    cfg = compose(tmp_path, f"model/encoder={name}", "model.encoder_weights=null")
    assert cfg.model.net.encoder_name == f"efficientnet-{name}"
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, VesselSegmenter)
    assert isinstance(model.hparams.net, dict)  # plain values in the checkpoint, no OmegaConf objects
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("name", options("loss"))
def test_loss_options(tmp_path: Path, name: str) -> None:
    cfg = compose(tmp_path, f"loss={name}")
    loss = build_loss(OmegaConf.to_container(cfg.model.loss, resolve=True))
    assert isinstance(loss, CompoundLoss) and set(loss.terms) <= set(cfg.loss)


@pytest.mark.parametrize("name", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_optimizer_and_scheduler_options(tmp_path: Path, name: str, scheduler: str) -> None:
    cfg = compose(tmp_path, f"optimizer={name}", f"scheduler={scheduler}")
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = hydra.utils.instantiate(cfg.model.optimizer)(params=params)
    assert isinstance(optimizer, torch.optim.Optimizer)
    partial = hydra.utils.instantiate(cfg.model.scheduler)
    if scheduler == "none":
        assert partial is None
    else:
        built = partial(optimizer=optimizer)
        assert isinstance(built, torch.optim.lr_scheduler.LRScheduler) and built.optimizer is optimizer


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_options(tmp_path: Path, name: str) -> None:
    # GPU configs are instantiated on CPU here: the point is that every key is a valid Trainer argument.
    cfg = compose(tmp_path, f"trainer={name}", "trainer.accelerator=cpu")
    trainer = hydra.utils.instantiate(cfg.trainer)
    assert isinstance(trainer, Trainer)


@pytest.mark.parametrize("name", options("callbacks"))
def test_callbacks_options(tmp_path: Path, name: str) -> None:
    cfg = compose(tmp_path, f"callbacks={name}")
    callbacks = instantiate_group(cfg.get("callbacks"))
    if name == "none":
        assert callbacks == []
    else:  # every option adds to the default set, so none of them may come out empty
        assert callbacks and all(isinstance(c, Callback) for c in callbacks)


def test_callbacks_default(tmp_path: Path) -> None:
    cfg = compose(tmp_path)
    callbacks = instantiate_group(cfg.callbacks)
    names = {type(c).__name__ for c in callbacks}
    assert {
        "ModelCheckpoint",
        "EarlyStopping",
        "LearningRateMonitor",
        "RichProgressBar",
        "MlflowArtifacts",
    } <= names
    assert all(isinstance(c, Callback) for c in callbacks)
    ckpt = next(c for c in callbacks if type(c).__name__ == "ModelCheckpoint")
    assert ckpt.monitor == "val/f1" and ckpt.mode == "max" and ckpt.save_last
    assert ckpt.dirpath == str(tmp_path / "out" / "checkpoints")


@pytest.mark.parametrize("name", options("logger"))
def test_logger_options(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose(tmp_path, f"logger={name}")
    loggers = instantiate_group(cfg.get("logger"))
    expected = {"mlflow": [MLFlowLogger], "csv": [CSVLogger], "none": []}[name]
    assert [type(lg) for lg in loggers] == expected
    if name == "mlflow":
        # The embedded store is an absolute SQLite path under the runs folder.
        assert loggers[0]._tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'mlflow.db'}"


def test_mlflow_tracking_uri_env_overrides_the_embedded_store(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    cfg = compose(tmp_path)
    assert cfg.logger.mlflow.tracking_uri == "http://tracking.example:5000"


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_options(tmp_path: Path, name: str) -> None:
    cfg = compose(tmp_path, f"experiment={name}", "model.encoder_weights=null")
    OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(hydra.utils.instantiate(cfg.model), VesselSegmenter)
    assert isinstance(hydra.utils.instantiate(cfg.trainer, accelerator="cpu"), Trainer)


def test_gpu_experiments_differ_from_chase_gpu_in_one_thing_each(tmp_path: Path) -> None:
    def flat(name: str) -> dict[str, str]:
        resolved = OmegaConf.to_container(compose(tmp_path, f"experiment={name}"), resolve=True)
        return flatten_config({k: v for k, v in resolved.items() if k not in ("paths", "logger")})

    base = flat("chase_gpu")
    assert base["trainer.accelerator"] == "gpu" and base["trainer.precision"] == "bf16-mixed"
    assert base["data.mode"] == "tiles" and base["data.size"] == "512" and base["data.cache_images"] == "True"
    assert base["trainer.max_time"] == "00:00:06:00" and base["model.net.encoder_name"] == "efficientnet-b0"

    def changed(name: str) -> set[str]:
        other = flat(name)
        return {k for k in base.keys() | other.keys() if base.get(k) != other.get(k)} - {"tags.experiment"}

    assert changed("chase_gpu_b3") == {"model.net.encoder_name"}
    assert {k.split(".")[1] for k in changed("hrf_gpu")} <= {
        "name",
        "root",
        "source",
        "prepared_dir",
        "tiles_per_image",
    }
    assert flat("hrf_gpu")["data.name"] == "hrf"


@pytest.mark.parametrize("name", options("debug"))
def test_debug_options(tmp_path: Path, name: str) -> None:
    cfg = compose(tmp_path, f"debug={name}")
    OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(hydra.utils.instantiate(cfg.trainer), Trainer)
    instantiate_group(cfg.get("callbacks"))


@pytest.mark.parametrize("name", options("data"))
def test_data_options_compose_with_train(tmp_path: Path, name: str) -> None:
    cfg = compose(tmp_path, f"data={name}")
    resolved = OmegaConf.to_container(cfg.data, resolve=True)
    assert resolved["name"] == name and resolved["batch_size"] == 8


def test_ckpt_path_last_finds_the_newest_last_checkpoint(tmp_path: Path) -> None:
    import os

    older = tmp_path / "train" / "2026-01-01" / "checkpoints" / "last.ckpt"
    newer = tmp_path / "train" / "multirun" / "x" / "0" / "checkpoints" / "last.ckpt"
    for i, path in enumerate((older, newer)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
    assert resolve_ckpt_path("last", str(tmp_path), "train") == str(newer)
    assert resolve_ckpt_path(None, str(tmp_path), "train") is None
    with pytest.raises(FileNotFoundError):
        resolve_ckpt_path("last", str(tmp_path), "eval")
    with pytest.raises(FileNotFoundError):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), str(tmp_path), "train")


def test_metric_value_names_what_was_logged() -> None:
    assert metric_value({"val/f1_best": 0.5}, "val/f1_best") == 0.5
    assert metric_value({"val/f1_best": 0.5}, None) is None
    with pytest.raises(KeyError, match="val/f1_best"):
        metric_value({"val/f1_best": 0.5}, "val/dice")
