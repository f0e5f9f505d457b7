"""Native-resolution metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from vessel_lightning.metrics import (
    Counts,
    ProbabilityHistogram,
    cldice,
    confusion,
    thin_counts,
    thin_vessels,
)


def test_confusion_and_scores_by_hand_inside_the_fov() -> None:
    target = np.array([[1, 1, 0, 0], [1, 0, 0, 1]], bool)
    pred = np.array([[1, 0, 1, 0], [1, 0, 1, 1]], bool)
    fov = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)  # the last two pixels do not count
    counts = confusion(pred, target, fov)
    assert counts == Counts(tp=2, fp=1, fn=1, tn=2)
    scores = counts.scores()
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert scores["iou"] == pytest.approx(2 / 4)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert confusion(pred, target).tp == 3  # without the FOV the corner pixel counts


def test_pooled_counts_add_up() -> None:
    assert Counts(1, 2, 3, 4) + Counts(10, 20, 30, 40) == Counts(11, 22, 33, 44)
    assert Counts().scores()["f1"] == 0.0


def _line(shape: tuple[int, int], row: int, width: int = 1) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[row : row + width, 5:-5] = True
    return mask


def test_cldice_of_identical_masks_is_one_and_of_a_shifted_thin_line_less() -> None:
    line = _line((32, 64), 10)
    assert cldice(line, line) == 1.0
    thick = _line((32, 64), 8, width=5)
    assert cldice(thick, thick) == 1.0
    assert cldice(_line((32, 64), 12), line) < 0.5  # shifted by 2 px: the skeletons miss each other
    assert cldice(np.zeros_like(line), line) == 0.0


def test_thin_recall_counts_only_thin_pixels() -> None:
    target = _line((40, 64), 5, width=2) | _line((40, 64), 20, width=9)  # a thin and a wide vessel
    thin = thin_vessels(target)
    assert thin[5:7, 10:50].all()  # the 2-px vessel is thin everywhere
    assert not thin[24, 10:50].any()  # the middle of the 9-px vessel is not
    wide_only = _line((40, 64), 20, width=9)
    hit, total = thin_counts(wide_only, target)
    assert total == thin.sum()
    assert hit == (thin & wide_only).sum()  # only the rims of the wide vessel
    assert thin_counts(target, target) == (total, total)


def test_auc_of_perfect_random_and_inverted_scores() -> None:
    rng = np.random.default_rng(0)
    target = rng.random((64, 64)) < 0.1
    perfect = ProbabilityHistogram()
    perfect.add(np.where(target, 0.9, 0.1), target)
    assert perfect.auc() == pytest.approx(1.0)
    inverted = ProbabilityHistogram()
    inverted.add(np.where(target, 0.1, 0.9), target)
    assert inverted.auc() == pytest.approx(0.0)
    noise = ProbabilityHistogram()
    noise.add(rng.random((64, 64)), target)
    assert noise.auc() == pytest.approx(0.5, abs=0.05)


def test_auc_matches_the_rank_statistic() -> None:
    rng = np.random.default_rng(1)
    target = rng.random(4000) < 0.2
    prob = np.clip(rng.normal(0.35 + 0.3 * target, 0.15), 0, 1)
    histogram = ProbabilityHistogram()
    histogram.add(prob, target)
    pos, neg = prob[target], prob[~target]
    exact = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        pos.size * neg.size
    )
    assert histogram.auc() == pytest.approx(exact, abs=2e-3)


def test_best_threshold_finds_the_separating_value() -> None:
    target = np.array([0, 0, 0, 1, 1, 1], bool)
    prob = np.array([0.1, 0.2, 0.3, 0.7, 0.75, 0.8])
    histogram = ProbabilityHistogram()
    histogram.add(prob, target)
    threshold, f1 = histogram.best_threshold()
    assert 0.3 < threshold <= 0.7 and f1 == 1.0
