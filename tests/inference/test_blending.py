"""Sliding-window blending: overlapping windows are averaged with Gaussian weights (or equal ones), and a pixel
that one window covers keeps that window's probability exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vessel_lightning.contract import ModelContract
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.tiling import window_origins, window_weights


class WindowIndexNet(nn.Module):
    """Logit ``k`` everywhere in the ``k``-th window it sees (counting across calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.arange(self.seen, self.seen + x.shape[0], dtype=torch.float32)
        self.seen += x.shape[0]
        return index[:, None, None, None].expand(x.shape[0], 1, *x.shape[2:]).clone()


def _contract() -> ModelContract:
    return ModelContract(
        encoder="efficientnet-b0", dataset="masks", size=(64, 64), threshold=0.5, mode="tiles"
    )


def test_window_weights_are_a_centred_gaussian_and_equal_for_mean() -> None:
    weights = window_weights(64, 96)
    assert weights.shape == (64, 96) and weights.dtype == np.float32
    assert np.array_equal(weights, weights[::-1]) and np.array_equal(weights, weights[:, ::-1])  # centred
    assert weights.max() == pytest.approx(1.0, abs=5e-3)  # the centre falls between pixels
    assert weights.min() == pytest.approx(1e-6) and weights[0, 48] < 1e-3  # borders count least, never 0
    assert not weights.flags.writeable  # shared between calls (cached): nobody may change it
    # sigma is 1/8 of each side: one sigma from the centre along the rows, the weight is exp(-1/2)
    sigma = 0.125 * 96
    centre = (96 - 1) / 2
    col = round(centre + sigma)
    expected = math.exp(-0.5 * ((col - centre) / sigma) ** 2) * math.exp(-0.5 * (0.5 / 8) ** 2)
    assert float(weights[32, col]) == pytest.approx(expected, rel=1e-4)
    assert np.array_equal(window_weights(64, 96, "mean"), np.ones((64, 96)))
    with pytest.raises(ValueError, match="blend must be one of gaussian, mean, not 'max'"):
        window_weights(8, 8, "max")
    with pytest.raises(ValueError, match="blend must be one of"):
        Predictor(WindowIndexNet(), _contract(), blend="max")


@pytest.mark.parametrize("blend", ["gaussian", "mean"])
def test_overlapping_windows_are_blended_by_their_weights(blend: str) -> None:
    # A 64×96 photo (no padding): two 64² windows at columns 0 and 32, overlapping on columns 32..63.
    assert window_origins(96, 64, 0.25) == [0, 32]
    predictor = Predictor(WindowIndexNet(), _contract(), overlap=0.25, blend=blend, batch_windows=1)
    prob = predictor.predict_proba(np.zeros((64, 96, 3), np.uint8))
    first, second = 1 / (1 + math.exp(0)), 1 / (1 + math.exp(-1))  # sigmoid of logits 0 and 1
    np.testing.assert_allclose(prob[:, :32], first, rtol=1e-6)  # one window: its probability, exactly
    np.testing.assert_allclose(prob[:, 64:], second, rtol=1e-6)
    w = window_weights(64, 64, blend)[32].astype(np.float64)
    expected = [(first * w[32 + i] + second * w[i]) / (w[32 + i] + w[i]) for i in range(32)]
    np.testing.assert_allclose(prob[32, 32:64], np.array(expected), rtol=1e-5)
    if blend == "mean":
        np.testing.assert_allclose(prob[:, 32:64], (first + second) / 2, rtol=1e-6)
    else:  # each window counts more towards its own centre: a smooth ramp, no seam
        assert np.all(np.diff(prob[32, 31:65]) >= 0) and prob[32, 33] < 0.55 < 0.68 < prob[32, 62]
