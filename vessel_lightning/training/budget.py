"""Training to a wall-clock budget (``trainer.max_time``) that still ends well on a slower machine.

Lightning's ``max_time`` stops in the middle of an epoch, so the weights of the last minutes are never validated
and a step-based learning-rate schedule is cut off wherever the time runs out. :class:`TimeBudget` reads the same
clock (Lightning's ``Timer``, which ``max_time`` creates) and
- anneals the learning rate over the budget's time (cosine from the optimizer's rate to ``eta_min``), so a slow
  machine makes fewer steps but still ends at a small learning rate;
- stops after the last validation that leaves no room for another epoch, so the final weights are validated and
  the best checkpoint is one of them;
- says at the end what the run reached and why it stopped: steps, epochs, time, precision and the CPU.

    vessel-train experiment=demo_cpu                       # uses it: callbacks.time_budget, trainer.max_time 13 min
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, Timer

from vessel_lightning.hardware import cpu_features

log = logging.getLogger(__name__)


def cosine_factor(progress: float, floor: float) -> float:
    """The learning rate's share of its initial value at ``progress`` (0 → 1) of a cosine from 1 down to
    ``floor``; progress past 1 stays at ``floor``."""
    progress = min(max(progress, 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class BudgetReport:
    """What a budgeted run reached: the figures :class:`TimeBudget` prints and logs at the end of fit."""

    stopped_by: (
        str  # time budget | time budget (mid-epoch) | early stopping | max_epochs/max_steps | interrupted
    )
    steps: int
    epochs: int
    minutes: float
    budget_minutes: float
    seconds_per_step: float
    best_score: float | None
    best_epoch: int | None
    precision: str
    device: str

    def line(self) -> str:
        """One human sentence, e.g. for the console and the run's description."""
        best = (
            f"; best val/f1 {self.best_score:.4f} (epoch {self.best_epoch})"
            if self.best_score is not None
            else ""
        )
        return (
            f"stopped by {self.stopped_by} after {self.steps} steps ({self.epochs} epochs) in {self.minutes:.1f} of "
            f"{self.budget_minutes:.1f} min, {self.seconds_per_step:.2f} s/step, {self.precision} on {self.device}"
            f"{best}"
        )


class TimeBudget(Callback):
    """Anneal the learning rate over ``trainer.max_time`` and stop at the last epoch that fits in it.

    Args:
        anneal: set the learning rate of every optimizer's parameter groups before each step to a cosine over the
            budget's elapsed share (then leave ``scheduler`` null: two schedules would fight).
        eta_min: the learning rate at the end of the budget.
        margin: stop when the time left is under ``margin`` × the last epoch's duration (training + validation).
    """

    def __init__(self, anneal: bool = True, eta_min: float = 1.0e-6, margin: float = 1.0) -> None:
        self.anneal = anneal
        self.eta_min = eta_min
        self.margin = margin
        self.stopped_early = False  # this callback stopped the run at an epoch end
        self.report: BudgetReport | None = None
        self._epoch_started: float | None = None
        self._last_epoch_s: float | None = None

    def _timer(self, trainer: Trainer) -> Timer:
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)  # type: ignore[attr-defined]  # Lightning sets it from a connector
        if timer is None or timer.time_remaining() is None:
            raise ValueError(
                "callbacks.time_budget needs trainer.max_time (e.g. trainer.max_time=00:00:13:00): "
                "the budget it anneals and stops by"
            )
        return timer

    def budget_s(self, trainer: Trainer) -> float:
        """The budget in seconds (``trainer.max_time``)."""
        timer = self._timer(trainer)
        return timer.time_elapsed() + (timer.time_remaining() or 0.0)

    def progress(self, trainer: Trainer) -> float:
        """The elapsed share of the budget (0 at the start of training, 1 when it is spent)."""
        return self._timer(trainer).time_elapsed() / max(self.budget_s(trainer), 1e-9)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._timer(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.anneal and trainer.lr_scheduler_configs:
            raise ValueError(
                "callbacks.time_budget anneals the learning rate over trainer.max_time itself: set scheduler=none "
                "(or callbacks.time_budget.anneal=false to keep the configured scheduler)"
            )
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group.setdefault(
                    "initial_lr", group["lr"]
                )  # kept in the optimizer's state: a resume anneals on

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_started = time.monotonic()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.anneal:
            return
        progress = self.progress(trainer)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                initial = group["initial_lr"]
                group["lr"] = cosine_factor(progress, min(self.eta_min / initial, 1.0)) * initial

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self._epoch_started is None:
            return
        self._last_epoch_s = time.monotonic() - self._epoch_started
        remaining = self._timer(trainer).time_remaining() or 0.0
        if remaining < self.margin * self._last_epoch_s and not trainer.should_stop:
            log.info(
                "time budget: %.0f s left, an epoch takes %.0f s: stopping after this validation",
                remaining,
                self._last_epoch_s,
            )
            trainer.should_stop = True
            self.stopped_early = True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.report = self._report(trainer)
        log.info("training %s", self.report.line())
        print(
            f"Training {self.report.line()}", flush=True
        )  # the last words of a long run, also without logging
        from vessel_lightning.training.callbacks import find_mlflow_logger

        mlflow_logger = find_mlflow_logger(trainer)
        if mlflow_logger is not None:
            client, run_id = mlflow_logger.experiment, mlflow_logger.run_id
            for key, value in asdict(self.report).items():
                if value is not None:
                    client.set_tag(run_id, f"budget.{key}", str(value))

    def _report(self, trainer: Trainer) -> BudgetReport:
        timer = self._timer(trainer)
        elapsed = timer.time_elapsed()
        early = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)  # type: ignore[attr-defined]  # Lightning sets it from a connector
        if self.stopped_early:
            stopped_by = "time budget"
        elif (timer.time_remaining() or 0.0) <= 0:
            stopped_by = "time budget (mid-epoch)"
        elif early is not None and early.stopped_epoch > 0:
            stopped_by = "early stopping"
        elif trainer.interrupted:
            stopped_by = "interrupted"
        else:
            stopped_by = "max_epochs/max_steps"
        checkpoint = trainer.checkpoint_callback
        best_score = getattr(checkpoint, "best_model_score", None)
        best_path = getattr(checkpoint, "best_model_path", "") or ""
        best_epoch = _epoch_from_path(best_path)
        device = (
            cpu_features().describe()
            if trainer.strategy.root_device.type == "cpu"
            else str(trainer.strategy.root_device)
        )
        return BudgetReport(
            stopped_by=stopped_by,
            steps=trainer.global_step,
            epochs=trainer.current_epoch,
            minutes=elapsed / 60,
            budget_minutes=self.budget_s(trainer) / 60,
            seconds_per_step=elapsed / max(trainer.global_step, 1),
            best_score=float(best_score) if best_score is not None else None,
            best_epoch=best_epoch,
            precision=str(trainer.precision),
            device=device,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"stopped_early": self.stopped_early}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopped_early = bool(state_dict.get("stopped_early", False))


def _epoch_from_path(path: str) -> int | None:
    """The epoch in a checkpoint name written as ``epoch_{epoch:03d}`` (the configured ModelCheckpoint), else None."""
    stem = path.rsplit("/", 1)[-1].removesuffix(".ckpt")
    digits = stem.removeprefix("epoch_")
    return int(digits) if digits != stem and digits.isdigit() else None
