"""Metrics equal a hand computation on a fixed tiny batch, counting only pixels inside the FOV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vessel_lightning.inference.predictor import served_mask
from vessel_lightning.metrics import Counts, ProbabilityHistogram, confusion
from vessel_lightning.overlays import FN_COLOUR, FP_COLOUR, TP_COLOUR
from vessel_lightning.threshold import BINS, best_f1_threshold, is_vessel
from vessel_lightning.training.callbacks import overlay_figure
from vessel_lightning.training.module import VesselSegmenter, segmentation_metrics, update_in_fov

# One 1×1×3×4 image: probabilities, truth and FOV. Threshold 0.5: vessel where prob ≥ 0.5 (0.5 itself is).
PROBS = torch.tensor([[[[0.9, 0.8, 0.2, 0.6], [0.1, 0.5, 0.7, 0.3], [0.95, 0.9, 0.8, 0.99]]]])
TRUTH = torch.tensor([[[[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]]])
FOV = torch.tensor([[[[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]])
# Inside the FOV (first two rows): pred = [1,1,0,1, 0,1,1,0], truth = [1,0,1,1, 0,1,0,0]
# → TP 3 (px 0, 3, 5), FP 2 (px 1, 6), FN 1 (px 2). The bottom row (4 TP) must not count.
TP, FP, FN = 3, 2, 1


def test_metrics_match_hand_computation_inside_fov() -> None:
    metrics = segmentation_metrics()
    update_in_fov(metrics, PROBS, TRUTH, FOV)
    got = {k: v.item() for k, v in metrics.compute().items()}
    assert got["f1"] == pytest.approx(2 * TP / (2 * TP + FP + FN))  # 6/9
    assert got["iou"] == pytest.approx(TP / (TP + FP + FN))  # 3/6
    assert got["precision"] == pytest.approx(TP / (TP + FP))  # 3/5
    assert got["recall"] == pytest.approx(TP / (TP + FN))  # 3/4
    # Counting the whole image instead (TP 7, FP 2, FN 1) gives other values:
    everything = segmentation_metrics()
    update_in_fov(everything, PROBS, TRUTH, torch.ones_like(FOV))
    assert everything.compute()["iou"].item() == pytest.approx(7 / 10)


def test_metrics_accumulate_pixels_over_batches() -> None:
    # Two updates pool their pixel counts (micro average), as one update of both would.
    metrics = segmentation_metrics()
    update_in_fov(metrics, PROBS, TRUTH, FOV)
    update_in_fov(metrics, PROBS, TRUTH, torch.ones_like(FOV))  # this time all 12 pixels: TP 7, FP 2, FN 1
    assert metrics.compute()["iou"].item() == pytest.approx(10 / (10 + 4 + 2))


def test_module_validation_logs_fov_metrics_of_its_own_predictions() -> None:
    torch.manual_seed(0)
    model = VesselSegmenter(
        net={"encoder_name": "efficientnet-b0"},
        loss={"dice": 1.0},
        optimizer=torch.optim.Adam,
    ).eval()
    image = torch.rand(2, 3, 32, 48)  # not square on purpose
    mask = (torch.rand(2, 1, 32, 48) > 0.5).float()
    fov = torch.zeros(2, 1, 32, 48)
    fov[:, :, 4:28, 6:40] = 1
    with torch.no_grad():
        model.validation_step({"image": image, "mask": mask, "fov": fov, "id": ["a", "b"]}, 0)
        pred = torch.sigmoid(model(image)) >= 0.5
    inside, truth = fov > 0.5, mask > 0.5
    tp = (pred & truth & inside).sum().item()
    fp = (pred & ~truth & inside).sum().item()
    fn = (~pred & truth & inside).sum().item()
    got = model.val_metrics.compute()
    assert got["val/f1"].item() == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)
    assert got["val/iou"].item() == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
    assert model.val_samples["prob"].shape == (2, 1, 32, 48)


def test_best_threshold_maximizes_f1_over_histograms() -> None:
    # Vessel probabilities 0.9, 0.8, 0.3; background 0.6, 0.2, 0.1. Cutting between 0.2 and 0.3 gives
    # TP 3, FP 1, FN 0 → F1 6/7, better than 0.5 (TP 2, FP 1, FN 1 → 2/3) or 0.7 (TP 2, FN 1 → 4/5).
    def hist(values: list[float]) -> np.ndarray:
        return np.bincount((np.array(values) * BINS).astype(int), minlength=BINS)

    threshold, f1 = best_f1_threshold(hist([0.9, 0.8, 0.3]), hist([0.6, 0.2, 0.1]))
    assert 0.2 < threshold <= 0.3
    assert f1 == pytest.approx(6 / 7)


def test_a_window_without_fov_pixels_counts_nothing_and_does_not_fail() -> None:
    # A small validation window in a fundus photo's dark corner: the FOV is empty there.
    metrics = segmentation_metrics()
    update_in_fov(metrics, PROBS, TRUTH, torch.zeros_like(FOV))
    update_in_fov(metrics, PROBS, TRUTH, FOV)
    assert metrics.compute()["iou"].item() == pytest.approx(TP / (TP + FP + FN))


@pytest.mark.parametrize("threshold", [0.5, 0.4])
def test_one_rule_for_vessel_in_training_evaluation_and_serving(threshold: float) -> None:
    # Probabilities on the threshold itself (representable exactly in 8 bits: 0.4 is not, 102/255 is) count as
    # vessel in every stage: training metrics (val/f1), the threshold search, evaluation and the served mask.
    t = threshold if threshold == 0.5 else 102 / 255
    probs = np.array([t, t - 1e-3, t + 1e-3, 1.0], np.float32)
    truth = np.array([True, False, True, True])
    want = np.array([True, False, True, True])
    assert np.array_equal(is_vessel(probs, t), want)
    metrics = segmentation_metrics()
    update_in_fov(metrics, torch.from_numpy(probs), torch.from_numpy(truth).float(), torch.ones(4), t)
    assert metrics.compute()["f1"].item() == pytest.approx(1.0)  # p > t would miss the first pixel: F1 0.8
    assert confusion(is_vessel(probs, t), truth) == Counts(tp=3, fp=0, fn=0, tn=1)
    quantised = np.round(probs * 255) / 255  # what the probability PNG carries
    assert np.array_equal(served_mask(quantised, t), is_vessel(quantised, t))
    # The threshold search cuts at bin edges with the same rule: the edge 0.3 keeps the two vessel pixels at 0.3.
    hist = ProbabilityHistogram()
    hist.add(np.array([0.3, 0.3, 0.7]), np.array([True, True, False]))
    assert hist.best_threshold(low=0.3) == (pytest.approx(0.3), pytest.approx(0.8))


def test_training_figure_draws_errors_in_the_evaluation_colours() -> None:
    # One 8×8 sample: a vessel column predicted (TP), a background column predicted (FP), a missed column (FN).
    mask, prob = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    mask[..., 1] = 1
    prob[..., 1] = 0.9
    prob[..., 3] = 0.5  # on the threshold: vessel (p ≥ t), so a false positive
    mask[..., 5] = 1
    samples = {
        "image": torch.full((1, 3, 8, 8), 0.5),
        "mask": mask,
        "fov": torch.ones(1, 1, 8, 8),
        "prob": prob,
    }
    figure = overlay_figure(samples, threshold=0.5)
    overlay = figure[:8, 12:20]  # image, a 4-px gap, then the overlay
    assert tuple(overlay[0, 1]) == TP_COLOUR
    assert tuple(overlay[0, 3]) == FP_COLOUR
    assert tuple(overlay[0, 5]) == FN_COLOUR
