"""WeightEMA: the average of the weights is what validation sees, what the checkpoint stores with the threshold
tuned on it, and what testing the checkpoint evaluates. A tiny module tunes its threshold the way the vessel
module does (a buffer set in its own ``on_validation_epoch_end``, which Lightning calls after the callbacks')."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from tests.helpers.data import compose
from vessel_lightning.training.averaging import WeightEMA, warmed_decay

DECAY = 0.8
TRAIN_BATCHES = 3


class Tiny(L.LightningModule):
    """Linear layer and a BatchNorm; the 'tuned threshold' is a function of the weights being validated."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.norm = torch.nn.BatchNorm1d(1)
        self.register_buffer("val_threshold", torch.tensor(0.5))
        self.trained: list[torch.Tensor] = []  # the weights after each optimizer step
        self.validated: list[torch.Tensor] = []
        self.tested: list[torch.Tensor] = []

    def forward(self, x):
        return self.norm(self.layer(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.trained.append(self.layer.weight.detach().clone())

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.validated.append(self.layer.weight.detach().clone())
        self.log("val/f1", -torch.nn.functional.mse_loss(self(x), y))

    def on_validation_epoch_end(self) -> None:
        self.val_threshold.fill_(float(self.layer.weight.sum()))

    def test_step(self, batch, batch_idx):
        self.tested.append(self.layer.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


def loader(batches: int, seed: int = 0) -> DataLoader:
    x = torch.randn(batches * 4, 2, generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorDataset(x, 3 * x[:, :1] - x[:, 1:]), batch_size=4)


def fit(tmp_path, epochs: int = 2, decay: float = DECAY) -> tuple[L.Trainer, Tiny, ModelCheckpoint]:
    torch.manual_seed(0)
    model = Tiny()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/f1", mode="max", save_last=True)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[WeightEMA(decay=decay), checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(model, loader(TRAIN_BATCHES), loader(1, seed=1))
    return trainer, model, checkpoint


def ema(weights: list[torch.Tensor], decay: float, average: torch.Tensor | None = None, done: int = 0):
    """The average after ``weights`` (the first update copies them unless an ``average`` of ``done`` updates is
    given), each later update with the warmed-up decay."""
    for n, w in enumerate(weights, start=done):
        average = w if n == 0 else warmed_decay(decay, n) * average + (1 - warmed_decay(decay, n)) * w
    return average


def test_the_decay_warms_up_to_its_value() -> None:
    decays = [warmed_decay(0.99, n) for n in range(1, 2000)]
    assert decays[0] == pytest.approx(2 / 11)
    assert all(a <= b for a, b in itertools.pairwise(decays))
    assert decays[-1] == 0.99 and warmed_decay(0.99, 880) < 0.99


def test_validation_and_the_checkpoint_hold_the_average_with_the_threshold_tuned_on_it(tmp_path) -> None:
    _, model, checkpoint = fit(tmp_path)
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    expected = ema(model.trained, DECAY)
    # What the last validation saw, and what the checkpoint stores, is the EMA of every step's weights ...
    assert torch.allclose(model.validated[-1], expected, atol=1e-6)
    assert torch.allclose(saved["state_dict"]["layer.weight"], expected, atol=1e-6)
    assert not torch.allclose(saved["current_model_state"]["layer.weight"], expected, atol=1e-3)
    # ... with the threshold the module tuned on those weights (not an average of two thresholds, not stale).
    assert saved["state_dict"]["val_threshold"].item() == pytest.approx(float(expected.sum()), abs=1e-6)
    # BatchNorm statistics are averaged with the weights (the average's own, not the training copy's).
    assert not torch.equal(
        saved["state_dict"]["norm.running_mean"], saved["current_model_state"]["norm.running_mean"]
    )
    # After fit the module holds the average (Lightning copies it in at the end of training).
    assert torch.allclose(model.layer.weight, expected, atol=1e-6)


def test_testing_a_checkpoint_tests_the_average_it_stores(tmp_path) -> None:
    trainer, model, checkpoint = fit(tmp_path)
    best = torch.load(checkpoint.best_model_path, weights_only=False)
    trainer.test(model, loader(1, seed=2), ckpt_path=checkpoint.best_model_path, weights_only=False)
    assert torch.equal(model.tested[-1], best["state_dict"]["layer.weight"])
    assert not torch.allclose(model.tested[-1], best["current_model_state"]["layer.weight"], atol=1e-3)


def test_resuming_a_fit_goes_on_as_if_never_stopped(tmp_path) -> None:
    _, whole, _ = fit(tmp_path / "whole", epochs=2)
    _, _, checkpoint = fit(tmp_path / "first", epochs=1)
    torch.manual_seed(0)
    resumed = Tiny()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[WeightEMA(decay=DECAY), ModelCheckpoint(dirpath=tmp_path / "resumed", save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(resumed, loader(TRAIN_BATCHES), loader(1, seed=1), ckpt_path=checkpoint.last_model_path)
    # Training went on from the training weights (not the average) and the average from the saved average.
    assert len(resumed.trained) == TRAIN_BATCHES
    for mine, uninterrupted in zip(resumed.trained, whole.trained[TRAIN_BATCHES:], strict=True):
        assert torch.allclose(mine, uninterrupted, atol=1e-6)
    assert torch.allclose(resumed.layer.weight, whole.layer.weight, atol=1e-6)
    assert torch.allclose(resumed.layer.weight, ema(whole.trained, DECAY), atol=1e-6)


def test_a_decay_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"callbacks\.ema\.decay"):
        WeightEMA(decay=1.0)


def test_the_ema_callbacks_compose_alone_and_beside_the_demos_budget() -> None:
    for overrides in (["callbacks=ema"], ["experiment=demo_cpu", "callbacks=[time_budget,ema]"]):
        cfg = compose("train", overrides)
        names = {node._target_.rpartition(".")[2] for node in cfg.callbacks.values() if node}
        assert {"WeightEMA", "ModelCheckpoint", "EarlyStopping"} <= names
        assert ("TimeBudget" in names) == ("experiment=demo_cpu" in overrides)
    assert "ema" not in compose("train", ["experiment=demo_cpu"]).callbacks  # measured: no gain there
