"""The sliding-window grid shared by data preparation (tile sampling) and inference (window blending), and the
weights with which overlapping windows are blended.

A leaf module: it imports nothing of the project, so every stage may use it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

BLENDS = ("gaussian", "mean")
# nnU-Net's and MONAI's importance map: a Gaussian with sigma 1/8 of the window side, so window borders (where the
# network sees least context) count least where windows overlap.
GAUSSIAN_SIGMA = 0.125


def window_origins(length: int, window: int, overlap: float = 0.0) -> list[int]:
    """Start offsets of windows of ``window`` px covering ``length`` px, evenly spaced, the last flush with the end.

    Consecutive windows overlap by at least ``overlap`` (a fraction of the window).
    """
    if length <= window:
        return [0]
    stride = max(1, int(window * (1.0 - overlap)))
    count = math.ceil((length - window) / stride) + 1
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def require_blend(blend: str) -> str:
    """``blend`` itself when it is one of ``BLENDS``; ValueError naming the choices otherwise."""
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")
    return blend


@functools.lru_cache(maxsize=16)  # one per window shape: computed once, never modified in place
def window_weights(height: int, width: int, blend: str = "gaussian") -> np.ndarray:
    """The weight (float32) of each pixel of an ``height`` × ``width`` window when overlapping windows are averaged.

    ``"mean"``: all 1 (equal weight); ``"gaussian"``: a Gaussian centred on the window, sigma ``GAUSSIAN_SIGMA`` of
    its side, 1 at the centre and above 1e-6 at the corners (a pixel covered by one window keeps that window's
    probability exactly, whatever its weight). The array is shared between calls: read-only.
    """
    if require_blend(blend) == "mean":
        weights = np.ones((height, width), dtype=np.float32)
    else:

        def axis(n: int) -> np.ndarray:
            offset = np.arange(n, dtype=np.float64) - (n - 1) / 2
            return np.exp(-0.5 * (offset / (GAUSSIAN_SIGMA * n)) ** 2)

        weights = np.maximum(axis(height)[:, None] * axis(width)[None, :], 1e-6).astype(np.float32)
    weights.flags.writeable = False
    return weights
