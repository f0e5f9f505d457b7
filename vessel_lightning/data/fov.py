"""The field of view (FOV) of a photo that comes without a mask, and its size.

A fundus camera images the retina as a bright disc (often cut by the top and bottom of the frame) on a dark
surround; vessels "found" outside it are artefacts of the rim. :func:`detect_fov` finds that disc from the
photo alone; a photo without a dark surround (a slit-lamp photo fills the frame) gets the whole frame.
:func:`fov_diameter` is the diameter of the disc in pixels, which, with the camera's field of view in
degrees, gives the scale of the photo (µm per pixel) and, between two cameras, the ratio of their calibres.
Measured against the official FOV masks of every CHASE_DB1 and HRF photo in ``experiments/RESULTS.md``.
"""

from __future__ import annotations

import numpy as np

# Threshold between the surround's level and the inside's: 10 % of the way up (IoU ≥ 0.9949 on every CHASE_DB1
# and HRF photo; 5 % suits CHASE_DB1 slightly better, 20 % HRF, see experiments/fov_iou.py).
THRESHOLD_FRACTION = 0.1
MIN_CONTRAST = 20  # inside minus surround, 8-bit: below this there is no dark surround to speak of
DISC_FILL = 0.95  # the field must fill at least this much of its fitted circle (within the frame)
FULL_FRAME = 0.97  # a field covering this much of the frame is the whole frame


class FOVError(ValueError):
    """A field-of-view mask that cannot be used (wrong shape or dtype)."""


def detect_fov(rgb: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)`` field of view of an ``(H, W, 3)`` uint8 RGB photo.

    Fundus photos: the bright disc on the dark surround (pixels whose brightest channel is above the surround's
    level plus 10 % of the contrast, largest connected region, holes filled). Photos whose corners are not dark,
    or whose bright region is not a disc, or covers ≥ 97 % of the frame, get all True.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    full = np.ones((height, width), dtype=bool)
    if min(height, width) < 16:
        return full
    value = np.maximum(np.maximum(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])  # far faster than max(axis=2)
    patch = max(2, min(height, width) // 50)
    corners = np.concatenate(
        [
            value[:patch, :patch].ravel(),
            value[:patch, -patch:].ravel(),
            value[-patch:, :patch].ravel(),
            value[-patch:, -patch:].ravel(),
        ]
    )
    dark = _median_uint8(corners)
    inner = _median_uint8(value[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4])
    if inner - dark < MIN_CONTRAST:
        return full
    field = value > dark + THRESHOLD_FRACTION * (inner - dark)
    field = _largest_region(field)
    if field is None:
        return full
    field = _fill_holes(field)
    if np.count_nonzero(field) / field.size >= FULL_FRAME or not _is_disc(field):
        return full
    return field


def _median_uint8(values: np.ndarray) -> float:
    """``float(np.median(values))`` of uint8 values, from their histogram (one pass, no sort)."""
    counts = np.cumsum(np.bincount(values.ravel(), minlength=256))
    size = int(counts[-1])
    low = int(np.searchsorted(counts, (size - 1) // 2, side="right"))  # the two middle order statistics
    high = int(np.searchsorted(counts, size // 2, side="right"))
    return (low + high) / 2


def _labels(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """4-connected regions of a boolean mask (scipy's default structure): their count with the background and an
    int32 label image (OpenCV's labelling, ~2× faster than scipy's)."""
    import cv2

    return cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)


def _largest_region(mask: np.ndarray) -> np.ndarray | None:
    """The largest 4-connected region of ``mask`` (the first in raster order among equals, as scipy's labels and
    ``argmax`` chose); None when the mask is empty."""
    count, labels = _labels(mask)
    if count <= 1:
        return None
    if count == 2:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count)
    sizes[0] = 0
    largest = np.flatnonzero(sizes == sizes.max())
    if len(largest) > 1:  # a tie: OpenCV does not promise scipy's raster-order numbering, so ask scipy
        from scipy import ndimage as ndi

        labels, _ = ndi.label(mask)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        return labels == sizes.argmax()
    return labels == largest[0]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not touch the frame filled: the background is flooded
    (4-connected) from a one-pixel frame around it, and what the flood did not reach is a hole."""
    import cv2

    outside = np.pad(~mask, 1, constant_values=True).view(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    return outside[1:-1, 1:-1] != 2


def _rim(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the field's boundary pixels that are not on the frame's edge."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    rim = mask & ~inner
    rim[0], rim[-1], rim[:, 0], rim[:, -1] = False, False, False, False
    rows, cols = np.nonzero(rim)
    return rows, cols


def _fit_circle(rows: np.ndarray, cols: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares circle (Kåsa) through boundary points: ``(centre row, centre col, radius)``."""
    if len(rows) < 8:
        return None
    y, x = rows.astype(np.float64), cols.astype(np.float64)
    design = np.column_stack([x, y, np.ones_like(x)])
    (a, b, c), *_ = np.linalg.lstsq(design, x * x + y * y, rcond=None)
    cx, cy = a / 2, b / 2
    radius_sq = c + cx * cx + cy * cy
    return (cy, cx, float(np.sqrt(radius_sq))) if radius_sq > 0 else None


def _is_disc(field: np.ndarray) -> bool:
    """Whether ``field`` fills ≥ 95 % of its fitted circle (within the frame) and spills little outside it."""
    circle = _fit_circle(*_rim(field))
    if circle is None:
        return False
    cy, cx, radius = circle
    step = max(1, max(field.shape) // 1000)  # a sample of the grid is plenty for a 5 % test
    field = field[::step, ::step]
    rows = np.arange(0, field.shape[0] * step, step)[:, None] - cy
    cols = np.arange(0, field.shape[1] * step, step)[None, :] - cx
    disc = rows * rows + cols * cols <= radius * radius
    overlap = float(np.count_nonzero(disc & field))
    inside = float(np.count_nonzero(disc))
    return overlap / max(1.0, inside) >= DISC_FILL and overlap / float(np.count_nonzero(field)) >= DISC_FILL


def fov_diameter(fov: np.ndarray) -> float:
    """Diameter in pixels of the field of view ``fov`` (boolean ``(H, W)``).

    A disc (cut by the frame or not): the diameter of the circle fitted to its boundary inside the frame, so a
    disc cut at the top and bottom (HRF) still gets its full diameter. A field that fills the frame (or has no
    boundary inside it): the frame's longer side.
    """
    fov = np.asarray(fov, dtype=bool)
    if fov.ndim != 2:
        raise FOVError(f"the field of view must be a 2-D mask, got shape {fov.shape}")
    if not fov.any():
        raise FOVError("the field of view is empty")
    rows, cols = _rim(fov)
    circle = _fit_circle(rows, cols) if len(rows) >= max(8, 0.05 * sum(fov.shape)) else None
    if circle is None:
        return float(max(fov.shape))
    return 2.0 * circle[2]


def apply_fov(prob: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    """``prob`` with every pixel outside ``fov`` set to 0 (``fov`` None: unchanged); shapes must agree."""
    if fov is None:
        return prob
    if fov.shape != prob.shape[:2]:
        raise FOVError(
            f"field of view is {fov.shape[1]}x{fov.shape[0]}, image is {prob.shape[1]}x{prob.shape[0]}"
        )
    return np.where(fov.astype(bool), prob, np.zeros((), dtype=prob.dtype))
