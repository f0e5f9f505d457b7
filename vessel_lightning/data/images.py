"""Reading photos and label images robustly, and resizing them so thin vessels survive.

Every read failure raises :class:`ImageReadError` with the file name; nothing here writes files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


class ImageReadError(ValueError):
    """An image that cannot be decoded (missing, unreadable, truncated, not an image); names the file."""


def claimed_pixels(exc: Image.DecompressionBombError) -> int | None:
    """The pixel count a header claimed, from Pillow's decompression-bomb error (None if its wording changed)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()  # decode now: truncated files fail here, not later in a worker
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{path}: not a readable image") from exc
    except Image.DecompressionBombError as exc:
        pixels = claimed_pixels(exc)
        claim = f"its header claims {pixels:,} pixels" if pixels else str(exc)
        limit = f"{2 * Image.MAX_IMAGE_PIXELS:,}" if Image.MAX_IMAGE_PIXELS else "off"
        raise ImageReadError(
            f"{path}: image too large to decode safely ({claim}; Pillow's limit is {limit})"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # PIL raises these for truncated / corrupt data
        raise ImageReadError(f"{path}: unreadable or truncated image ({exc})") from exc
    if image.width == 0 or image.height == 0:
        raise ImageReadError(f"{path}: image has a zero-sized dimension ({image.width}x{image.height})")
    return ImageOps.exif_transpose(image)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit / 32-bit / float pixel data to 0-255 uint8."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        top = 1.0 if float(np.nanmax(array)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(array) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    top = 255 if int(array.max()) <= 255 else 65535
    return np.clip(array.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


# 16-bit, 32-bit integer and float single-channel modes: scaled to 8 bits by value, then grey to RGB.
WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any decoded PIL image (1, L, LA, P, RGBA, CMYK, I;16, I, F…) as an ``(H, W, 3)`` uint8 RGB array.

    The one conversion for photos read from files (:func:`read_rgb`) and uploads (``app.decode``): wide grey
    modes are scaled down (:func:`to_uint8`), transparent palettes go through RGBA, the rest through PIL.
    """
    if image.mode in WIDE_GRAY_MODES:
        gray = to_uint8(np.asarray(image))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGBA" if "transparency" in image.info else image.mode).convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode a photo to an ``(H, W, 3)`` uint8 RGB array (EXIF orientation applied, 16-bit scaled down)."""
    return pil_to_rgb(_open(Path(path)))


def read_gray(path: str | Path) -> np.ndarray:
    """Decode a label or FOV image to a 2-D uint8 array (colour images are reduced to their maximum channel)."""
    path = Path(path)
    image = _open(path)
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8) * 255
    if image.mode == "P":
        return palette_values(image)
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2) if array.shape[2] >= 3 else array[:, :, 0]
    return to_uint8(array)


def palette_values(image: Image.Image) -> np.ndarray:
    """A palette (mode ``P``) label or FOV image as what its pixels mean, 2-D uint8.

    Palette colours when they tell the used indices apart and one of them is bright (the brightest channel of
    each colour: black/white masks read {0, 255}); else indices {0, 1} as {0, 255} (a {0, 1} mask under a
    grey-ramp palette would otherwise read as all background); else the indices themselves (class index maps
    such as artery/vein labels, whose colours say class, not vessel).
    """
    indices = np.asarray(image, dtype=np.uint8)
    used = np.unique(indices)
    palette = list(image.getpalette() or [])
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours.ravel()[: min(len(palette), 768)] = palette[:768]
    levels = colours.max(axis=1)
    if len(np.unique(levels[used])) == len(used) and levels[used].max() >= 128:
        return levels[indices]
    if set(used.tolist()) <= {0, 1}:
        return indices * np.uint8(255)
    return indices.copy()


def read_fov(path: str | Path) -> np.ndarray:
    """A field-of-view mask as {0, 1} uint8 by what its pixels mean ({0, k}: k is inside; else ≥ 128 of full
    scale; palette and 16-bit images as :func:`read_gray` reads them). An empty field raises
    :class:`ImageReadError` naming the file (scores inside it would be 0 without a word)."""
    values = read_gray(path)
    mask, _ = binarize(values)
    if not mask.any():
        raise ImageReadError(
            f"{path}: the field-of-view mask is empty (values {np.unique(values)[:6].tolist()}): nothing is inside"
        )
    return mask


def binarize(values: np.ndarray, rule: str = "threshold") -> tuple[np.ndarray, bool]:
    """Turn a label image into a {0, 1} uint8 mask.

    ``rule="threshold"``: vessel where the value is ≥ 128 (half of full scale); ``"nonzero"``: vessel where
    the value is > 0 (index maps such as HRF's artery/vein labels). Returns the mask and whether the input
    held values other than 0 and one "on" value (a non-binary mask that was thresholded).
    """
    present = np.unique(values)
    if rule == "nonzero":
        return (values > 0).astype(np.uint8), False
    if rule != "threshold":
        raise ValueError(f"unknown binarize rule {rule!r} (use 'threshold' or 'nonzero')")
    non_binary = len(present) > 2 or (len(present) == 2 and present[0] != 0)
    if not non_binary and len(present) == 2:
        return (values == present[1]).astype(np.uint8), False  # a {0, k} mask: k marks vessels
    return (values >= 128).astype(np.uint8), non_binary


def resize_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a photo to ``(height, width)`` with antialiased Lanczos (keeps thin-vessel contrast)."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, size: tuple[int, int], threshold: float = 0.35) -> np.ndarray:
    """Resize a {0, 1} mask to ``(height, width)``: area-weighted (box) average of the label, then threshold.

    Why box at 0.35: nearest and bilinear sample the label at a few points per output pixel, so a 1-2 px
    vessel survives or vanishes depending on where the grid falls and thin vessels break into dashes. Box
    averaging gives each output pixel the fraction of its footprint that is vessel; keeping pixels that are at
    least 35 % vessel keeps thin vessels connected without fattening the wide ones. Measured on the test
    labels, resized to 512² and back to native size, inside the FOV (``experiments/measure_resize.py``):

    ============  ======================  ====================  ======================
    method        CHASE_DB1 F1 / thin rec  HRF F1 / thin recall  HRF skeleton kept
    ============  ======================  ====================  ======================
    nearest       0.926 / 0.753            0.860 / 0.566         0.833
    bilinear≥0.5  0.932 / 0.751            0.855 / 0.480         0.744
    box≥0.5       0.932 / 0.921            0.863 / 0.549         0.809
    box≥0.35      0.932 / 0.921            0.862 / 0.749         0.917
    box≥0.25      0.907 / 0.999            0.841 / 0.890         0.976
    ============  ======================  ====================  ======================
    """
    height, width = size
    if mask.shape == (height, width):
        return mask.astype(np.uint8)
    fraction = Image.fromarray(mask.astype(np.float32)).resize((width, height), Image.Resampling.BOX)
    return (np.asarray(fraction) >= threshold).astype(np.uint8)


def network_crops(rgb: np.ndarray, mode: str, size: tuple[int, int], crops: int = 4) -> list[np.ndarray]:
    """Crops of a photo as a network trained in ``mode`` at ``size`` sees it: a ``resize`` model the whole photo
    resized to ``size``; a ``tiles`` model up to ``crops`` windows of ``size`` cut at native resolution, spread
    over the photo (not a shrunken photo, whose vessels are thinner). What int8 calibration and the reduced
    precision gate run on."""
    from vessel_lightning.tiling import window_origins

    height, width = size
    if mode != "tiles" or rgb.shape[0] < height or rgb.shape[1] < width:
        return [resize_image(rgb, (height, width))]
    origins = [
        (top, left)
        for top in window_origins(rgb.shape[0], height)
        for left in window_origins(rgb.shape[1], width)
    ]
    chosen = sorted({round(i * (len(origins) - 1) / max(crops - 1, 1)) for i in range(crops)})
    return [rgb[t : t + height, lf : lf + width] for t, lf in (origins[i] for i in chosen)]
