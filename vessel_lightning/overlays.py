"""Pictures of predictions: vessels over the photo, and errors against a label in three colours."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

TP_COLOUR = (0, 200, 0)  # found vessel
FP_COLOUR = (255, 0, 200)  # predicted, not in the label
FN_COLOUR = (0, 160, 255)  # missed vessel


def vessel_overlay(
    rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 230, 0), opacity: float = 0.6
) -> np.ndarray:
    """The photo with ``mask`` pixels blended towards ``colour`` at ``opacity``; returns uint8 RGB."""
    out = rgb.astype(np.float32).copy()
    mask = mask.astype(bool)
    out[mask] = (1 - opacity) * out[mask] + opacity * np.asarray(colour, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def error_overlay(
    rgb: np.ndarray, pred: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None
) -> np.ndarray:
    """A darkened photo with true positives, false positives and false negatives in three colours.

    Outside the FOV the photo is darkened further and no error is drawn.
    """
    pred, target = pred.astype(bool), target.astype(bool)
    out = rgb.astype(np.float32) * 0.45
    if fov is not None:
        out[~fov.astype(bool)] *= 0.4
        pred, target = pred & fov.astype(bool), target & fov.astype(bool)
    for region, colour in (
        (pred & target, TP_COLOUR),
        (pred & ~target, FP_COLOUR),
        (~pred & target, FN_COLOUR),
    ):
        out[region] = colour
    return out.astype(np.uint8)


def save_png(array: np.ndarray, path: str | os.PathLike[str], max_side: int | None = None) -> None:
    """Write a uint8 array as PNG, shrunk (area resampling) so its longer side is at most ``max_side``."""
    image = Image.fromarray(array)
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
    image.save(path, format="PNG")
