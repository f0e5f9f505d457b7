"""A callback that records what each DDP process saw, for the tests that run ``vessel-train trainer=ddp``.

Added from the command line (``+callbacks.rank_probe._target_=tests.helpers.ddp.RankProbe``); every process writes
``rank<N>.json`` into ``folder``: its training sampler and sample indices, its local validation counts and the
validation results it ended with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer


class RankProbe(Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.record: dict[str, Any] = {"train_ids": [], "validations": []}

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        sampler = trainer.train_dataloader.sampler
        self.record.update(
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            sampler=type(sampler).__name__,
            sampler_replicas=getattr(sampler, "num_replicas", None),
            train_indices=[int(i) for i in sampler],
        )

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, *args: Any
    ) -> None:
        self.record["train_ids"].append(list(batch["id"]))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Runs before the module's own hook: the metric states and histograms are still this process's alone.
        if trainer.sanity_checking:
            return
        f1 = pl_module.val_metrics["f1"]
        hist = pl_module._val_hist
        self.record["local"] = {
            "tp": int(f1.tp.sum()),
            "fp": int(f1.fp.sum()),
            "fn": int(f1.fn.sum()),
            "hist": hist.cpu().tolist() if hist is not None else None,
        }

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        self.record["validations"].append(
            {
                **{k: float(metrics[k]) for k in ("val/f1", "val/f1_best", "val/loss") if k in metrics},
                "threshold": float(pl_module.val_threshold),
                "local": self.record.pop("local", None),
            }
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))
