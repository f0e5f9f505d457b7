"""Segmentation scores at native resolution: pooled confusion counts, clDice, thin-vessel recall, ROC AUC.

Everything is computed inside a field-of-view mask when one is given, and pooled over all pixels of all
images unless a name says per-image. Probabilities are accumulated as histograms (``BINS`` bins on [0, 1],
:mod:`vessel_lightning.threshold`), so AUC and the F1-optimal threshold are exact up to that bin width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vessel_lightning.threshold import BINS, best_f1_threshold, probability_histograms


@dataclass
class Counts:
    """Pixel confusion counts; add them up across images for pooled scores."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def scores(self) -> dict[str, float]:
        """F1 (= Dice), IoU, precision, recall and accuracy; 0 where a denominator is 0."""

        def ratio(a: float, b: float) -> float:
            return float(a / b) if b else 0.0

        return {
            "f1": ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
            "iou": ratio(self.tp, self.tp + self.fp + self.fn),
            "precision": ratio(self.tp, self.tp + self.fp),
            "recall": ratio(self.tp, self.tp + self.fn),
            "accuracy": ratio(self.tp + self.tn, self.tp + self.fp + self.fn + self.tn),
        }


def _inside(array: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    return array if fov is None else array & fov


def confusion(pred: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None) -> Counts:
    """Confusion counts of boolean ``pred`` against boolean ``target``, only where ``fov`` is true."""
    pred, target = pred.astype(bool), target.astype(bool)
    region = np.ones_like(target) if fov is None else fov.astype(bool)
    tp = int((pred & target & region).sum())
    fp = int((pred & ~target & region).sum())
    fn = int((~pred & target & region).sum())
    return Counts(tp, fp, fn, int(region.sum()) - tp - fp - fn)


def skeleton(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide centre lines of a boolean mask (scikit-image's skeletonize)."""
    from skimage.morphology import skeletonize

    return skeletonize(mask.astype(bool))


@dataclass
class SkeletonCounts:
    """Counts behind clDice: skeleton pixels of the prediction inside the label, and the reverse."""

    pred_skel_in_target: int = 0
    pred_skel: int = 0
    target_skel_in_pred: int = 0
    target_skel: int = 0

    def __add__(self, other: SkeletonCounts) -> SkeletonCounts:
        return SkeletonCounts(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, int, int, int]:
        return (self.pred_skel_in_target, self.pred_skel, self.target_skel_in_pred, self.target_skel)

    def cldice(self) -> float:
        """clDice = 2·Tprec·Tsens / (Tprec + Tsens) (Shit et al., CVPR 2021); 0 when undefined."""
        tprec = self.pred_skel_in_target / self.pred_skel if self.pred_skel else 0.0
        tsens = self.target_skel_in_pred / self.target_skel if self.target_skel else 0.0
        return 2 * tprec * tsens / (tprec + tsens) if tprec + tsens else 0.0


def skeleton_counts(pred: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None) -> SkeletonCounts:
    """Topology counts of boolean masks: how much of each skeleton lies inside the other mask."""
    pred, target = pred.astype(bool), target.astype(bool)
    pred_skel = _inside(skeleton(pred), fov)
    target_skel = _inside(skeleton(target), fov)
    return SkeletonCounts(
        int((pred_skel & target).sum()),
        int(pred_skel.sum()),
        int((target_skel & pred).sum()),
        int(target_skel.sum()),
    )


def cldice(pred: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None) -> float:
    """clDice of one pair of boolean masks (1 for identical masks with any vessel)."""
    return skeleton_counts(pred, target, fov).cldice()


def thin_vessels(target: np.ndarray, max_radius: float = 1.0) -> np.ndarray:
    """Label pixels at most ``max_radius`` px from the background (vessels up to ~3 px wide at radius 1)."""
    from scipy.ndimage import distance_transform_edt

    target = target.astype(bool)
    return target & (distance_transform_edt(target) <= max_radius)


def thin_counts(pred: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None) -> tuple[int, int]:
    """(thin label pixels predicted as vessel, thin label pixels), inside ``fov``."""
    thin = _inside(thin_vessels(target), fov)
    return int((thin & pred.astype(bool)).sum()), int(thin.sum())


@dataclass
class ProbabilityHistogram:
    """Histograms of predicted probabilities over vessel and background pixels, for AUC and thresholds."""

    positive: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    negative: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def add(self, prob: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None) -> None:
        """Accumulate one image's probabilities (float in [0, 1]) split by its boolean label."""
        fov_t = None if fov is None else torch.from_numpy(np.asarray(fov, bool))
        counts = probability_histograms(
            torch.from_numpy(np.asarray(prob)), torch.from_numpy(np.asarray(target, bool)), fov_t
        )
        self.positive += counts[0].numpy()
        self.negative += counts[1].numpy()

    def auc(self) -> float:
        """Area under the ROC curve (ties within a bin count one half)."""
        pos, neg = self.positive.astype(np.float64), self.negative.astype(np.float64)
        if not pos.sum() or not neg.sum():
            return 0.0
        neg_below = np.cumsum(neg) - neg
        return float((pos * (neg_below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))

    def best_threshold(self, low: float = 0.05, high: float = 0.95) -> tuple[float, float]:
        """The threshold in [low, high] (on bin edges) with the highest pooled F1, and that F1."""
        return best_f1_threshold(self.positive, self.negative, low, high)
