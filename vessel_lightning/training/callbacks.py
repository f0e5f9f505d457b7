"""Training callbacks: MLflow artifacts (figures, learning curves, best checkpoint, network file) and run id,
BatchNorm recalibration, the trained network's serving cost."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger

from vessel_lightning.overlays import error_overlay
from vessel_lightning.threshold import is_vessel

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

CURVE_KEYS: tuple[str, ...] = ("train/loss", "val/loss", "train/f1", "val/f1", "val/iou", "val/f1_best")


def overlay_figure(
    samples: Mapping[str, torch.Tensor], threshold: float = 0.5, max_side: int = 384
) -> np.ndarray:
    """Compose a figure of sample predictions: one row per sample, the image beside its overlaid prediction.

    Takes ``image`` [K, 3, H, W] in [0, 1], ``mask``, ``fov`` and ``prob`` [K, 1, H, W]. The overlay is the
    evaluation's (:func:`~vessel_lightning.overlays.error_overlay`: true positives green, false positives magenta,
    missed vessel pixels blue, outside the FOV darkened), vessel at ``prob ≥ threshold``. Returns an RGB uint8 array.
    """
    rows = []
    for k in range(samples["image"].shape[0]):
        image = (samples["image"][k].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        mask = samples["mask"][k, 0].numpy() > 0.5
        fov = samples["fov"][k, 0].numpy() > 0.5
        overlay = error_overlay(image, is_vessel(samples["prob"][k, 0].numpy(), threshold), mask, fov)
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        rows.append(_shrink(np.concatenate([image, gap, overlay], axis=1), max_side))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = max_side / max(h / 1, w / 2)  # a row holds two images side by side
    if scale >= 1:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((max(1, int(w * scale)), max(1, int(h * scale)))))


def learning_curves_figure(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    """Plot losses and validation metrics per epoch from ``history`` (dicts with ``epoch`` and metric keys)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    for key in CURVE_KEYS:
        values = [h.get(key, float("nan")) for h in history]
        if all(np.isnan(values)):
            continue
        (ax_loss if key.endswith("loss") else ax_metric).plot(epochs, values, marker=".", label=key)
    for ax, title in ((ax_loss, "loss"), (ax_metric, "metrics (inside FOV)")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def find_mlflow_logger(trainer: Trainer) -> MLFlowLogger | None:
    """Return the trainer's MLFlowLogger, or None when it has none."""
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


def training_fov_diameter(datamodule: Any, limit: int = 32) -> float | None:
    """Median field-of-view diameter (px, native resolution) of up to ``limit`` training photos, for
    ``scale=auto``; None for resize-mode data (its files are not at native size) or photos that fill the frame.

    Reads each sample's prepared FOV mask, or detects the field on its photo when the data set has none.
    """
    from PIL import Image

    from vessel_lightning.data.fov import detect_fov, fov_diameter

    manifest = getattr(datamodule, "manifest", None)
    prepared = getattr(datamodule, "prepared_dir", None)
    if not manifest or prepared is None or manifest.get("mode") != "tiles":
        return None
    diameters = []
    for sample in [s for s in manifest["samples"] if s["split"] == "train"][:limit]:
        if "fov" in sample:
            field = np.asarray(Image.open(Path(prepared) / sample["fov"])) > 127
        else:
            field = detect_fov(np.asarray(Image.open(Path(prepared) / sample["image"]).convert("RGB")))
        if field.any() and not field.all():
            diameters.append(fov_diameter(field))
    return round(float(np.median(diameters)), 1) if diameters else None


class BatchNormRecalibration(Callback):
    """Before each validation, re-estimates the network's BatchNorm statistics over training batches.

    Costs one forward pass over ``max_batches`` training batches (all when None) per validation. Running
    statistics only matter in eval mode, so training itself is unchanged; validation, checkpoints and the
    exported network then use settled statistics even after few steps.
    """

    def __init__(self, max_batches: int | None = None) -> None:
        self.max_batches = max_batches

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loader = trainer.train_dataloader
        if trainer.sanity_checking or loader is None:
            return
        from itertools import islice

        from vessel_lightning.models.networks import recalibrate_batchnorm

        def images() -> Iterator[torch.Tensor]:
            for batch in islice(loader, self.max_batches):
                image = batch["image"].to(pl_module.device)
                if pl_module.hparams.get("channels_last"):
                    image = image.contiguous(memory_format=torch.channels_last)
                yield image

        seen = recalibrate_batchnorm(pl_module.get_submodule("net"), images())
        log.debug("BatchNorm statistics re-estimated over %d training batches", seen)


class ServingCost(Callback):
    """After fit, logs what the trained network costs to serve, so sweeps compare accuracy against speed.

    ``cost/size`` (the side measured at), ``cost/gflop`` (one 3×size×size image, ``models.architectures.gflop``), ``cost/cpu_ms`` (median eager
    fp32 forward on this machine's CPU, ``forward_ms``); ``cost/gpu_ms`` too when the run trained on a GPU.
    CPU times from jobs that ran side by side share the cores: compare runs of one sweep with one launcher.
    """

    def __init__(self, size: int = 512, repeats: int = 3) -> None:
        self.size = size
        self.repeats = repeats

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        import copy

        from vessel_lightning.models.architectures import forward_ms, gflop

        if trainer.global_rank != 0 or self.repeats < 1:
            return
        net = pl_module.get_submodule("net")
        network = copy.deepcopy(net).float().cpu().to(memory_format=torch.channels_last)
        metrics = {
            "cost/size": float(self.size),
            "cost/gflop": gflop(network, self.size, self.size),
            "cost/cpu_ms": forward_ms(network, self.size, self.size, self.repeats),
        }
        if pl_module.device.type == "cuda":
            metrics["cost/gpu_ms"] = forward_ms(net, self.size, self.size, self.repeats, "cuda")
        log.info("serving cost at %d²: %s", self.size, {k: round(v, 2) for k, v in metrics.items()})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
