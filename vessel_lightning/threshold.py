"""The one rule for "vessel", and the search for its threshold: every stage imports them from here.

A pixel is vessel when its probability ``p ≥ t``: training metrics (``val/f1``, which picks checkpoints and
champions), the validation threshold search, evaluation, serving (on the 8-bit probability), the UI and the
mask gate all count the same pixels. Probabilities are accumulated as histograms (``BINS`` bins on [0, 1]), so
the F1-optimal threshold is exact up to that bin width without keeping every pixel (torchmetrics' binned
precision-recall curve gives the same threshold at ~1000× the cost per validation batch,
``experiments/bench_threshold_search.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:  # the serving path is torch-free: only the training-side histograms need it
    import torch

BINS = 1000

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def is_vessel(prob: Array, threshold: float) -> Array:
    """Boolean vessel mask of probabilities ``prob`` (NumPy or torch): ``prob ≥ threshold``."""
    return prob >= threshold


def probability_histograms(
    probs: torch.Tensor, target: torch.Tensor, fov: torch.Tensor | None = None
) -> torch.Tensor:
    """Counts ``[2, BINS]`` of the probabilities of vessel (row 0) and background (row 1) pixels inside ``fov``.

    Bin ``i`` holds probabilities in ``[i / BINS, (i + 1) / BINS)`` (1.0 in the last), so a threshold on a bin
    edge ``i / BINS`` keeps bins ``i`` and above: the rule of :func:`is_vessel`.
    """
    import torch

    target = target > 0.5
    if fov is not None:
        inside = fov > 0.5
        probs, target = probs[inside], target[inside]
    bins = (probs.float() * BINS).long().clamp(0, BINS - 1).flatten()
    target = target.flatten()
    return torch.stack(
        [torch.bincount(bins[target], minlength=BINS), torch.bincount(bins[~target], minlength=BINS)]
    )


def best_f1_threshold(
    positive: np.ndarray, negative: np.ndarray, low: float = 0.05, high: float = 0.95
) -> tuple[float, float]:
    """The threshold with the highest pooled F1, and that F1, from histograms of vessel / background probabilities.

    Bin ``i`` of ``n`` holds probabilities in ``[i / n, (i + 1) / n)``; predicting vessel at ``prob ≥ i / n`` keeps
    bins ``i`` and above. Only edges in ``[low, high]`` are considered (an extreme threshold tuned on a few images
    rarely holds elsewhere). One search for training (``val/threshold``) and evaluation.
    """
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    tp = np.cumsum(positive[::-1])[::-1]  # vessel pixels with prob ≥ edge i / n
    fp = np.cumsum(negative[::-1])[::-1]
    fn = positive.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    edges = np.arange(len(positive)) / len(positive)
    allowed = (edges >= low - 1e-9) & (edges <= high + 1e-9)
    best = int(np.argmax(np.where(allowed, f1, -1.0)))
    return float(edges[best]), float(f1[best])
