"""The sliding-window grid shared by data preparation (tile sampling) and inference (window blending).

A leaf module: it imports nothing of the project, so every stage may use it.
"""

from __future__ import annotations

import math


def window_origins(length: int, window: int, overlap: float = 0.0) -> list[int]:
    """Start offsets of windows of ``window`` px covering ``length`` px, evenly spaced, the last flush with the end.

    Consecutive windows overlap by at least ``overlap`` (a fraction of the window).
    """
    if length <= window:
        return [0]
    stride = max(1, int(window * (1.0 - overlap)))
    count = math.ceil((length - window) / stride) + 1
    return [round(i * (length - window) / (count - 1)) for i in range(count)]
