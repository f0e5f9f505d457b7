"""VesselSegmenter: the LightningModule that trains the vessel segmentation network."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex, BinaryPrecision, BinaryRecall

from vessel_lightning.models.networks import build_network, fp32_depthwise_on_cpu
from vessel_lightning.threshold import best_f1_threshold, is_vessel, probability_histograms
from vessel_lightning.training.losses import build_loss


def segmentation_metrics() -> MetricCollection:
    """Return the pixel metrics (F1, IoU, precision, recall) of vessel masks, accumulated over all pixels.

    They take masks, not probabilities (:func:`update_in_fov` applies the threshold), so they count vessel at
    ``p ≥ t`` as evaluation and serving do, not torchmetrics' own ``p > t``.
    """
    return MetricCollection(
        {
            "f1": BinaryF1Score(),
            "iou": BinaryJaccardIndex(),
            "precision": BinaryPrecision(),
            "recall": BinaryRecall(),
        }
    )


def update_in_fov(
    metrics: MetricCollection,
    probs: torch.Tensor,
    target: torch.Tensor,
    fov: torch.Tensor,
    threshold: float = 0.5,
) -> None:
    """Update ``metrics`` with the masks ``is_vessel(probs, threshold)`` against ``target``, inside the FOV only
    (``fov > 0.5``); outside pixels are not counted."""
    inside = fov > 0.5
    if inside.any():  # a small window in a fundus photo's dark corner holds no FOV pixel: nothing to count
        metrics.update(is_vessel(probs[inside], threshold).long(), target[inside].long())


class VesselSegmenter(LightningModule):
    """Binary vessel segmentation: network, FOV-aware loss, per-stage metrics, optimizer and scheduler.

    Batches are dicts with ``image`` [B, 3, H, W] in [0, 1], ``mask`` and ``fov`` [B, 1, H, W] in {0, 1}.
    Everything it is built from is a plain value or a torch partial, so a checkpoint reloads by itself.
    """

    val_threshold: torch.Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        net: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_monitor: str = "val/f1",
        scheduler_interval: str = "epoch",
        threshold: float = 0.5,
        channels_last: bool = False,
        num_samples: int = 4,
        encoder_weights: str | None = None,
        weights_path: str | None = None,
        cpu_fp32_depthwise: bool = True,
    ) -> None:
        """Take the ``build_network`` kwargs, the ``build_loss`` spec, an optimizer partial (called with
        ``params``), an optional scheduler partial (called with ``optimizer``) and its monitor/interval, the
        metric threshold, whether to use the channels_last memory format, how many validation samples to
        keep for figures, and the encoder's pretrained weights (``"imagenet"`` or None, optionally from a
        local ``weights_path``; they override the same keys in ``net``). ``cpu_fp32_depthwise``: under CPU
        bf16 autocast (``trainer=cpu`` on CPUs with bf16 units) depthwise convolutions compute in float32, which
        is faster there (:func:`~vessel_lightning.models.networks.fp32_depthwise_on_cpu`)."""
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = build_network(
            **{**dict(net), "encoder_weights": encoder_weights, "weights_path": weights_path}
        )
        self.criterion = build_loss(loss)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if cpu_fp32_depthwise:
            fp32_depthwise_on_cpu(self.net)

        base = segmentation_metrics()
        self.train_metrics = base.clone(prefix="train/")
        self.val_metrics = base.clone(prefix="val/")
        self.test_metrics = base.clone(prefix="test/")
        self.val_f1_best = MaxMetric()
        self.val_f1_best.persistent(True)  # in checkpoints, so a resumed run keeps its best score
        # The F1-best threshold of the last validation, saved with each checkpoint (the model contract's).
        self.register_buffer("val_threshold", torch.tensor(float(threshold)))
        self._val_hist: torch.Tensor | None = None
        # A few validation images with their predictions, for the figure callback (CPU tensors).
        self.val_samples: dict[str, torch.Tensor] | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Take float images [N, 3, H, W] in [0, 1]; return logits [N, 1, H, W]."""
        if self.hparams["channels_last"]:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.net(image)

    def _step(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        logits = self(batch["image"])
        loss, parts = self.criterion(logits, batch["mask"], self._fov(batch))
        return loss, parts, logits

    def _log_loss(
        self, stage: str, loss: torch.Tensor, parts: Mapping[str, torch.Tensor], batch_size: int
    ) -> None:
        # Epoch means only: on_step would rename the key to "<stage>/loss_epoch" in the loggers. Under DDP the
        # epoch means are averaged over the processes (one reduction per epoch; nothing without DDP).
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
            sync_dist=True,
        )
        if len(parts) > 1:
            for name, value in parts.items():
                self.log(
                    f"{stage}/loss_{name}",
                    value,
                    on_step=False,
                    on_epoch=True,
                    batch_size=batch_size,
                    sync_dist=True,
                )

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss, parts, logits = self._step(batch)
        n = batch["image"].shape[0]
        self._log_loss("train", loss, parts, n)
        update_in_fov(
            self.train_metrics,
            torch.sigmoid(logits.detach()),
            batch["mask"],
            self._fov(batch),
            self.hparams["threshold"],
        )
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        loss, parts, logits = self._step(batch)
        n = batch["image"].shape[0]
        probs = torch.sigmoid(logits)
        self._log_loss("val", loss, parts, n)
        update_in_fov(self.val_metrics, probs, batch["mask"], self._fov(batch), self.hparams["threshold"])
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self._update_threshold_histograms(probs, batch["mask"], self._fov(batch))
        if batch_idx == 0:
            k = self.hparams["num_samples"]
            self.val_samples = {
                "image": batch["image"][:k].detach().float().cpu(),
                "mask": batch["mask"][:k].detach().float().cpu(),
                "fov": self._fov(batch)[:k].detach().float().cpu(),
                "prob": probs[:k].detach().float().cpu(),
            }

    def _update_threshold_histograms(
        self, probs: torch.Tensor, target: torch.Tensor, fov: torch.Tensor
    ) -> None:
        hist = probability_histograms(probs, target, fov)
        self._val_hist = hist if self._val_hist is None else self._val_hist + hist

    def on_validation_epoch_start(self) -> None:
        self._val_hist = None

    def on_validation_epoch_end(self) -> None:
        # The sanity check's few batches must not count towards the best score.
        if self.trainer.sanity_checking:
            return
        self.val_f1_best.update(self.val_metrics.compute()["val/f1"])
        self.log("val/f1_best", self.val_f1_best.compute(), prog_bar=True, sync_dist=True)
        if self._val_hist is not None:
            hist = self.all_gather(self._val_hist)
            assert isinstance(hist, torch.Tensor)  # a tensor gathered is a tensor
            hist = hist.sum(0) if hist.dim() == 3 else hist  # summed over processes under DDP
            threshold, f1 = best_f1_threshold(hist[0].cpu().numpy(), hist[1].cpu().numpy())
            self.val_threshold.fill_(threshold)
            # From the histograms of all processes: the same value on every rank, nothing left to reduce.
            self.log("val/threshold", threshold, sync_dist=False)
            self.log("val/f1_tuned", f1, sync_dist=False)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        loss, parts, logits = self._step(batch)
        n = batch["image"].shape[0]
        self._log_loss("test", loss, parts, n)
        update_in_fov(
            self.test_metrics,
            torch.sigmoid(logits),
            batch["mask"],
            self._fov(batch),
            self.hparams["threshold"],
        )
        self.log_dict(self.test_metrics, on_step=False, on_epoch=True, batch_size=n)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """Return vessel probabilities [B, 1, H, W] for a batch dict."""
        return torch.sigmoid(self(batch["image"]))

    @staticmethod
    def _fov(batch: Mapping[str, Any]) -> torch.Tensor:
        fov = batch.get("fov")
        return torch.ones_like(batch["mask"]) if fov is None else fov

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The weights are in the state dict: reloading must not need the pretrained file (or network) again.
        hparams = checkpoint.get("hyper_parameters")
        if hparams:
            checkpoint["encoder_pretrained"] = hparams.get("encoder_weights")
            hparams.update(encoder_weights=None, weights_path=None)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Build the optimizer (and scheduler, when configured) from the partials given at construction."""
        assert self.trainer.model is not None  # the trainer has its model when it asks for the optimizer
        optimizer = self.hparams["optimizer"](params=self.trainer.model.parameters())
        if self.hparams["scheduler"] is None:
            return {"optimizer": optimizer}
        scheduler = self.hparams["scheduler"](optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.hparams["scheduler_monitor"],
                "interval": self.hparams["scheduler_interval"],
                "frequency": 1,
            },
        }
