"""Segmentation losses on logits, all restricted to the field of view (FOV), combinable by weight.

Every loss takes ``logits`` [N, 1, H, W], a binary ``target`` of the same shape and an optional ``fov`` mask
(1 inside, 0 outside); pixels outside the FOV contribute nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _fov_or_ones(target: torch.Tensor, fov: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(target) if fov is None else fov.to(target.dtype)


class DiceLoss(nn.Module):
    """Soft Dice loss over all FOV pixels of the batch: ``1 - (2·Σpt + s) / (Σp + Σt + s)``."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None
    ) -> torch.Tensor:
        fov = _fov_or_ones(target, fov)
        probs = torch.sigmoid(logits) * fov
        target = target * fov
        inter = (probs * target).sum()
        return 1 - (2 * inter + self.smooth) / (probs.sum() + target.sum() + self.smooth)


class BCELoss(nn.Module):
    """Binary cross-entropy on logits, averaged over FOV pixels; ``pos_weight`` up-weights vessel pixels."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None
    ) -> torch.Tensor:
        fov = _fov_or_ones(target, fov)
        pos_weight = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        per_pixel = F.binary_cross_entropy_with_logits(
            logits, target, reduction="none", pos_weight=pos_weight
        )
        return (per_pixel * fov).sum() / fov.sum().clamp_min(1.0)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) on logits, averaged over FOV pixels."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None
    ) -> torch.Tensor:
        fov = _fov_or_ones(target, fov)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-bce)  # probability given to the true class
        per_pixel = (1 - p_t) ** self.gamma * bce
        if self.alpha is not None:
            per_pixel = per_pixel * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return (per_pixel * fov).sum() / fov.sum().clamp_min(1.0)


class TverskyLoss(nn.Module):
    """Tversky loss: ``1 - TP / (TP + α·FP + β·FN)`` with soft counts over FOV pixels (α=β=0.5 is Dice)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None
    ) -> torch.Tensor:
        fov = _fov_or_ones(target, fov)
        probs = torch.sigmoid(logits) * fov
        target = target * fov
        tp = (probs * target).sum()
        fp = (probs * (1 - target)).sum()
        fn = ((1 - probs) * target).sum()
        return 1 - (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)


def soft_skeleton(x: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """Differentiable skeleton of a soft mask [N, 1, H, W] by iterated min/max pooling (Shit et al. 2021)."""

    def erode(t: torch.Tensor) -> torch.Tensor:
        return torch.minimum(-F.max_pool2d(-t, (3, 1), 1, (1, 0)), -F.max_pool2d(-t, (1, 3), 1, (0, 1)))

    def dilate(t: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(t, 3, 1, 1)

    skel = F.relu(x - dilate(erode(x)))
    for _ in range(iterations):
        x = erode(x)
        delta = F.relu(x - dilate(erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


class SoftClDiceLoss(nn.Module):
    """Soft centre-line Dice (clDice): rewards keeping thin vessels connected; skeletons taken inside the FOV."""

    def __init__(self, iterations: int = 10, smooth: float = 1.0) -> None:
        super().__init__()
        self.iterations, self.smooth = iterations, smooth

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None
    ) -> torch.Tensor:
        fov = _fov_or_ones(target, fov)
        probs = torch.sigmoid(logits) * fov
        target = target * fov
        skel_pred = soft_skeleton(probs, self.iterations) * fov
        skel_true = soft_skeleton(target, self.iterations) * fov
        precision = ((skel_pred * target).sum() + self.smooth) / (skel_pred.sum() + self.smooth)
        sensitivity = ((skel_true * probs).sum() + self.smooth) / (skel_true.sum() + self.smooth)
        return 1 - 2 * precision * sensitivity / (precision + sensitivity)


LOSS_TERMS: dict[str, type[nn.Module]] = {
    "dice": DiceLoss,
    "bce": BCELoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "cldice": SoftClDiceLoss,
}
"""Names usable as terms in a loss config, mapped to their classes."""


class CompoundLoss(nn.Module):
    """A weighted sum of named loss terms; ``forward`` also returns each term for logging."""

    def __init__(self, terms: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {name: float(weights[name]) for name in self.terms}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {name: term(logits, target, fov) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, parts


def build_loss(spec: Mapping[str, Any]) -> CompoundLoss:
    """Build a CompoundLoss from plain config values.

    Takes a mapping from term name (a key of ``LOSS_TERMS``) to either a weight or a mapping with ``weight`` and
    the term's keyword arguments, e.g. ``{"dice": 1.0, "bce": {"weight": 1.0, "pos_weight": 2.0}}``. A term
    with weight 0 or null is left out. Returns the combined loss.
    """
    terms: dict[str, nn.Module] = {}
    weights: dict[str, float] = {}
    for name, value in spec.items():
        if name not in LOSS_TERMS:
            raise KeyError(f"unknown loss term {name!r}; known terms: {sorted(LOSS_TERMS)}")
        kwargs = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weight = kwargs.pop("weight", 1.0)
        if not weight:
            continue
        terms[name] = LOSS_TERMS[name](**kwargs)
        weights[name] = weight
    if not terms:
        raise ValueError(f"loss config {dict(spec)} has no term with a non-zero weight")
    return CompoundLoss(terms, weights)
