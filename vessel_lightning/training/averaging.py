"""An exponential moving average of the weights that validates, checkpoints and exports like the weights themselves.

Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` keeps the average and swaps it in for
validation; this subclass makes it agree with the rest of the training loop:

- **The tuned threshold belongs to the averaged weights.** The module tunes ``val_threshold`` (a buffer) in its own
  ``on_validation_epoch_end``, which Lightning calls *after* the callbacks' hook of the same name: Lightning's
  callback would already have swapped the training weights back, so the threshold tuned on the average would land
  on the training weights and the checkpoint (which stores the average) would keep a stale one. Here the swap back
  waits for ``on_validation_end``, after the module's hook and before :class:`ModelCheckpoint` saves.
- **Only weights and BatchNorm statistics are averaged.** Other floating-point buffers (the tuned threshold) are
  the average's own, not an average of two thresholds tuned on different weights.
- **The average forgets the random start.** A fixed decay of 0.99 still gives the random initial weights 38 % of
  the average after 96 steps (measured: val F1 0.0 at step 96 while the training weights were learning), so the
  decay warms up as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: ``min(decay, (1 + n) / (10 +
  n))`` after ``n`` updates, which averages roughly the last tenth of a short run until ``decay`` takes over.
- **Testing a checkpoint tests what it stores.** After fit, ``trainer.test(ckpt_path=best)`` loads the checkpoint's
  ``state_dict`` (the average); Lightning's callback would then put the training weights back in its
  ``on_load_checkpoint``. Outside fit this one leaves the loaded average alone; resuming a fit restores both.

    vessel-train callbacks=ema callbacks.ema.decay=0.995              # conf/callbacks/ema.yaml
    vessel-train experiment=demo_cpu 'callbacks=[time_budget,ema]'    # beside the demo's time budget
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor


def warmed_decay(decay: float, updates: int) -> float:
    """The decay of the ``updates``-th update after the first (which copies): ``min(decay, (1 + n) / (10 + n))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def ema_with_warm_up(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor | int], None]:
    """An ``AveragedModel`` ``multi_avg_fn``: every tensor moves towards the current one by ``1 - warmed_decay``."""

    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor | int) -> None:
        weight = 1.0 - warmed_decay(decay, int(num_averaged))
        if averaged and torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # AveragedModel groups tensors by device and dtype: integer buffers (counters) take the new value
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


class WeightEMA(EMAWeightAveraging):
    """EMA of the weights (``decay`` per optimizer step), validated, checkpointed, tested and exported.

    Args:
        decay: the average's share kept at each update once warmed up (:func:`warmed_decay`); the average then
            spans ~``1 / (1 - decay)`` steps.
    """

    def __init__(self, decay: float = 0.99) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be between 0 and 1 (exclusive), got {decay}")
        super().__init__(
            decay=decay
        )  # every step updates: the warm-up, not a late start, forgets the random start
        self.decay = decay
        self._kwargs = {"multi_avg_fn": ema_with_warm_up(decay)}  # instead of the parent's fixed-decay avg_fn

    def _own_buffers(self) -> dict[str, torch.Tensor]:
        """The averaged copy's floating-point buffers that are not BatchNorm statistics (e.g. the threshold)."""
        assert self._average_model is not None
        module = self._average_model.module
        normalisation = {
            name
            for name, layer in module.named_modules()
            if isinstance(layer, torch.nn.modules.batchnorm._NormBase)
        }
        return {
            name: buffer
            for name, buffer in module.named_buffers()
            if buffer.is_floating_point() and name.rpartition(".")[0] not in normalisation
        }

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        kept = {name: buffer.clone() for name, buffer in self._own_buffers().items()}
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        for name, buffer in self._own_buffers().items():
            buffer.copy_(kept[name])

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Keep the average in place until the module has tuned its threshold (see :meth:`on_validation_end`)."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
