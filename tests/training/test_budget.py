"""TimeBudget: the learning rate follows a cosine over trainer.max_time and training stops after the last
validation that leaves room for another epoch. A tiny model trains on a fake clock (each batch advances it by one
second), so the decisions are exact and nothing waits for real time."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import timer as lightning_timer
from torch.utils.data import DataLoader, TensorDataset

from tests.helpers.data import compose
from vessel_lightning.training import budget as budget_module
from vessel_lightning.training.budget import TimeBudget, _epoch_from_path, cosine_factor

TRAIN_BATCHES, VAL_BATCHES = 4, 1  # one epoch = 5 s on the fake clock


class Clock:
    """A monotonic clock that only the model moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Tiny(L.LightningModule):
    """Linear regression whose steps and validation steps each take one fake second; records (time, lr)."""

    def __init__(self, clock: Clock, lr: float = 0.1, scheduler: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["clock"])
        self.clock = clock
        self.layer = torch.nn.Linear(2, 1)
        self.lrs: list[tuple[float, float]] = []
        self.started: float | None = None

    def on_train_start(self) -> None:
        self.started = self.clock.now

    def training_step(self, batch, batch_idx):
        self.lrs.append((self.clock.now - self.started, self.optimizers().param_groups[0]["lr"]))
        self.clock.now += 1.0
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        self.clock.now += 1.0
        x, y = batch
        self.log("val/f1", -torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        if not self.hparams.scheduler:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}


def loader(batches: int) -> DataLoader:
    x = torch.randn(batches * 2, 2)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=2)


def fit(monkeypatch: pytest.MonkeyPatch, seconds: float, callback: TimeBudget, **module_kwargs) -> tuple:
    clock = Clock()
    fake_time = SimpleNamespace(monotonic=clock.monotonic)
    monkeypatch.setattr(lightning_timer, "time", fake_time)
    monkeypatch.setattr(budget_module, "time", fake_time)
    model = Tiny(clock, **module_kwargs)
    trainer = L.Trainer(
        max_time={"seconds": seconds},
        max_epochs=100,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(model, loader(TRAIN_BATCHES), loader(VAL_BATCHES))
    return trainer, model


def test_cosine_factor_runs_from_one_to_the_floor() -> None:
    assert cosine_factor(0.0, 0.01) == pytest.approx(1.0)
    assert cosine_factor(0.5, 0.0) == pytest.approx(0.5)
    assert cosine_factor(1.0, 0.01) == pytest.approx(0.01)
    assert cosine_factor(1.7, 0.01) == pytest.approx(0.01)  # past the budget it stays at the floor
    assert cosine_factor(0.25, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_stops_after_the_last_epoch_that_fits_and_anneals_over_the_budget(monkeypatch) -> None:
    # 23 s: after epoch 4 (20 s) only 3 s are left, under one 5 s epoch, so it stops there, validated, where
    # Lightning's max_time alone would cut epoch 5 after three of its batches.
    callback = TimeBudget(eta_min=0.0)
    trainer, model = fit(monkeypatch, 23, callback)
    assert trainer.global_step == 4 * TRAIN_BATCHES
    assert trainer.current_epoch == 4
    assert callback.stopped_early
    report = callback.report
    assert report.stopped_by == "time budget" and report.steps == 16 and report.epochs == 4
    assert report.budget_minutes == pytest.approx(23 / 60)
    assert report.minutes == pytest.approx(20 / 60)
    assert "16 steps" in report.line() and "time budget" in report.line()
    # Every step's learning rate is the cosine at its share of the 23 s, from 0.1 at the start.
    assert model.lrs[0] == (0.0, pytest.approx(0.1))
    for elapsed, lr in model.lrs:
        assert lr == pytest.approx(0.1 * cosine_factor(elapsed / 23, 0.0))
    assert model.lrs[-1][1] < 0.1 * 0.12  # the last step (at 18 s of 23) is far down the cosine


def test_without_annealing_the_configured_learning_rate_stays(monkeypatch) -> None:
    callback = TimeBudget(anneal=False)
    _, model = fit(monkeypatch, 23, callback)
    assert {lr for _, lr in model.lrs} == {0.1}


def test_a_generous_budget_leaves_the_stop_to_max_epochs(monkeypatch) -> None:
    callback = TimeBudget()
    clock_epochs = 100
    trainer, _ = fit(monkeypatch, clock_epochs * 5 * 10, callback)
    assert trainer.current_epoch == 100 and not callback.stopped_early
    assert callback.report.stopped_by == "max_epochs/max_steps"


def test_refuses_a_second_schedule_and_a_missing_budget(monkeypatch) -> None:
    with pytest.raises(ValueError, match="scheduler=none"):
        fit(monkeypatch, 23, TimeBudget(), scheduler=True)
    model = Tiny(Clock())
    trainer = L.Trainer(max_epochs=1, callbacks=[TimeBudget()], logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match=r"trainer\.max_time"):
        trainer.fit(model, loader(TRAIN_BATCHES), loader(VAL_BATCHES))


def test_best_epoch_is_read_from_the_checkpoint_name() -> None:
    assert _epoch_from_path("/runs/x/checkpoints/epoch_012.ckpt") == 12
    assert _epoch_from_path("/runs/x/checkpoints/last.ckpt") is None
    assert _epoch_from_path("") is None


def test_the_demo_trains_to_its_budget_with_the_time_cosine() -> None:
    cfg = compose("train", ["experiment=demo_cpu"])
    assert cfg.scheduler is None  # one schedule: the budget's cosine
    assert cfg.callbacks.time_budget._target_ == "vessel_lightning.training.budget.TimeBudget"
    assert cfg.trainer.max_time == "00:00:13:00"
