"""The one predictor shared by evaluation, batch prediction and the API: load → preprocess → predict → postprocess.

It takes an RGB photo at any size and returns vessel probabilities at that size. ``resize`` models see the
photo resized to their training size (the same Lanczos resampling as data preparation) and their
probabilities are resized back bilinearly; ``tiles`` models slide a window of their tile size over the
full-resolution photo with overlapping windows, averaged with Gaussian weights. Optional flip test-time augmentation averages the
identity, horizontal and vertical flips. No training code is imported here.

On the CPU the arithmetic is NumPy's and the network an array network (ONNX Runtime, OpenVINO, or a PyTorch
module wrapped as :class:`~vessel_lightning.models.onnx.TorchArrays`), so serving on the CPU needs no PyTorch; on a
GPU it is PyTorch's (:class:`~vessel_lightning.inference.torch_runtime.TorchOps`).
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any

import numpy as np

from vessel_lightning.contract import ModelContract
from vessel_lightning.data.fov import apply_fov, detect_fov, fov_diameter
from vessel_lightning.data.images import resize_image
from vessel_lightning.models.onnx import TorchArrays, sigmoid
from vessel_lightning.threshold import is_vessel
from vessel_lightning.tiling import require_blend, window_origins, window_weights
from vessel_lightning.tracking.bundle import ModelInfo, load_logged_model

AUTO = "auto"


def probability_png_values(prob: np.ndarray) -> np.ndarray:
    """Probabilities as the 8-bit values of a probability PNG: ``round(p · 255)``."""
    scaled = np.clip(prob, 0.0, 1.0)  # a new array: the steps below reuse it rather than allocate three more
    scaled *= 255.0
    return np.round(scaled, out=scaled).astype(np.uint8)


def served_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    """The mask users download: vessel where the 8-bit probability ``v`` has ``v / 255 ≥ threshold``.

    Thresholding the quantised value (in float64, as browsers compute) makes the API's mask, ``vessel-predict``
    and the UI's in-browser thresholding of the probability PNG agree pixel for pixel at every threshold.
    """
    return is_vessel(probability_png_values(prob).astype(np.float64) / 255.0, threshold)


# CPU forward calls hold about this many pixels: 4 windows of 256², 1 of 512². Measured in one interleaved run
# (experiments/bench_window_batch.py, a 999×960 photo, 2 threads; experiments/RESULTS.md): PyTorch at 512² windows
# took 0.62× the CPU time and 430 MB less peak memory at 1 per call than at 4, ONNX Runtime 0.96× and 570 MB less;
# PyTorch at 256² windows took 1.22× the time at 1 per call than at 4. The values do not depend on it (1e-6).
CPU_PIXELS_PER_CALL = 512 * 512


def cpu_windows_per_call(tile_h: int, tile_w: int) -> int:
    """Windows of ``tile_h`` × ``tile_w`` per CPU forward call: as many as hold :data:`CPU_PIXELS_PER_CALL`, at
    least one."""
    return max(1, CPU_PIXELS_PER_CALL // (tile_h * tile_w))


def check_scale(
    scale: float | str, contract: ModelContract, reference_diameter: float | None = None
) -> tuple[float | str, float | None]:
    """``scale`` (a factor in (0, 4] or ``"auto"``) checked against ``contract``: returns the factor (or ``"auto"``)
    and the training field diameter in pixels that ``auto`` matches (``reference_diameter``, else the contract's;
    None for a fixed factor). Raises ValueError when the model cannot be resampled so."""
    reference: float | None = None
    if scale == AUTO:
        given = reference_diameter or contract.fov_diameter
        if contract.mode == "tiles" and not given:
            raise ValueError(
                "scale=auto needs the training set's field-of-view diameter: this model's contract has no "
                "fov_diameter (trained before it was recorded); give reference_diameter (px)"
            )
        reference = float(given) if given else None
    elif isinstance(scale, str):
        raise ValueError(f"scale must be a number or 'auto', not {scale!r}")
    else:
        scale = float(scale)
        if not 0 < scale <= 4:
            raise ValueError(f"scale {scale:g} must be in (0, 4]")
    if scale not in (1, AUTO) and contract.mode != "tiles":  # auto is 1 for resize models
        raise ValueError(
            f"scale {scale:g} applies to tile models only; this {contract.mode} model always sees its "
            f"{contract.size[0]}x{contract.size[1]} input"
        )
    return scale, reference


def resample_factor(
    scale: float | str,
    reference_diameter: float | None,
    contract: ModelContract,
    rgb: np.ndarray,
    fov: np.ndarray | None = None,
) -> float:
    """The factor ``rgb`` is resampled by before the network, for a ``scale`` and reference diameter from
    :func:`check_scale`: the fixed factor, or with ``"auto"`` the training field diameter over the photo's (``fov``,
    detected when None), clipped to [0.05, 4]."""
    if scale != AUTO:
        return float(scale)
    if contract.mode != "tiles" or reference_diameter is None:
        return 1.0
    field = detect_fov(rgb) if fov is None else np.asarray(fov, dtype=bool)
    if field.all():  # no disc: a photo that fills the frame has no field diameter to match
        return 1.0
    return float(np.clip(reference_diameter / fov_diameter(field), 0.05, 4.0))


class NumpyOps:
    """The Predictor's array operations on the CPU, in float32 NumPy (and OpenCV for resampling)."""

    def context(self) -> Any:
        return contextlib.nullcontext()

    def upload(self, rgb: np.ndarray) -> np.ndarray:
        return rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)

    def pad(self, image: np.ndarray, pad_h: int, pad_w: int, mode: str) -> np.ndarray:
        widths = [(0, 0)] * (image.ndim - 2) + [(0, pad_h), (0, pad_w)]
        return np.pad(image, widths, mode="reflect" if mode == "reflect" else "edge")

    def zeros(self, height: int, width: int) -> np.ndarray:
        return np.zeros((height, width), dtype=np.float32)

    def stack(self, arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack(arrays)

    def weights(self, weights: np.ndarray) -> np.ndarray:
        return weights

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(np.asarray(logits, dtype=np.float32))

    def flip(self, batch: np.ndarray, axis: int) -> np.ndarray:
        return np.ascontiguousarray(np.flip(batch, axis))

    def resize(self, prob: np.ndarray, height: int, width: int) -> np.ndarray:
        import cv2

        # Bilinear with half-pixel centres and no antialiasing: PyTorch's interpolate(align_corners=False).
        return cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)

    def to_host(self, prob: np.ndarray) -> np.ndarray:
        return np.clip(prob, 0, 1).astype(np.float32, copy=False)


def _is_torch_module(network: Any) -> bool:
    torch = sys.modules.get("torch")  # a PyTorch module exists only where torch was imported already
    return torch is not None and isinstance(network, torch.nn.Module)


class Predictor:
    """Vessel probabilities for RGB photos of any size, following the model's contract.

    ``network`` maps float [N, 3, H, W] in [0, 1] to logits [N, 1, H, W]; ``contract`` says how it was trained;
    ``tta`` averages flips; ``overlap`` is the sliding-window overlap for tile models; ``window`` the side of their
    windows (None: the contract's tile size; larger windows give the fully convolutional network more context and
    fewer seams for the same pixels; a multiple of the contract's ``input_divisor``); ``scale`` resamples the photo
    of a tile model by this factor before the window slides and the probabilities back to the photo's size, so
    vessels reach the network at the calibre it was trained on (a CHASE_DB1 model on HRF photos: 0.42, the ratio
    of their pixels per degree of field of view), or ``"auto"``: each photo by the ratio of the training set's
    field-of-view diameter (the contract's ``fov_diameter``, or ``reference_diameter``) to the photo's detected
    one (photos that fill the frame, and resize models, at 1); ``batch_windows`` how many windows run through
    the network at once (None: on the CPU as many as make ~512² pixels, :func:`cpu_windows_per_call`; all windows
    of the photo in one batch on a GPU); ``blend`` how
    overlapping windows are averaged (:func:`~vessel_lightning.tiling.window_weights`: ``"gaussian"``, the
    default, or ``"mean"``); ``threads`` PyTorch's intra-op threads when ``network`` is a PyTorch module on the
    CPU (None: as they are). On a GPU the photo is uploaded once (pinned, as uint8) and windows, blending and
    resampling stay on the device until the probabilities come back.
    """

    def __init__(
        self,
        network: Any,
        contract: ModelContract,
        *,
        device: Any = "cpu",
        tta: bool = False,
        overlap: float = 0.25,
        window: int | None = None,
        scale: float | str = 1.0,
        reference_diameter: float | None = None,
        batch_windows: int | None = None,
        blend: str = "gaussian",
        info: ModelInfo | None = None,
        threads: int | None = None,
    ) -> None:
        self.scale, self.reference_diameter = check_scale(scale, contract, reference_diameter)
        if window is not None and (window <= 0 or window % contract.input_divisor):
            raise ValueError(
                f"window {window} must be a positive multiple of the model's input divisor {contract.input_divisor}"
            )
        self.device = str(device)
        self.on_gpu = self.device.startswith("cuda")
        self.module = network if _is_torch_module(network) else None  # what backends export and compile
        if self.on_gpu:
            from vessel_lightning.inference.torch_runtime import TorchOps, resolve_device

            self.ops: Any = TorchOps(resolve_device(self.device))
            self.network = network.to(self.ops.device).eval() if self.module is not None else network
        else:
            self.ops = NumpyOps()
            self.network = TorchArrays(network, threads) if self.module is not None else network
        self.contract = contract
        self.tta = tta
        self.overlap = overlap
        self.blend = require_blend(blend)  # at construction, not at the first photo
        self.window = window
        self.batch_windows = batch_windows  # None: windows_per_call's rule for the device and window size
        self.info = info or ModelInfo(uri="<in memory>")

    @classmethod
    def from_uri(cls, model_uri: str, **kwargs: Any) -> Predictor:
        """Load a logged model (``models:/vessel-unet@champion``, ``runs:/<id>/model``, a folder) into a Predictor."""
        network, contract, info = load_logged_model(model_uri)
        return cls(network, contract, info=info, **kwargs)

    @property
    def threshold(self) -> float:
        """The recommended threshold from the contract (tuned on the validation split)."""
        return self.contract.threshold

    def _forward(self, batch: Any) -> Any:
        """Sigmoid probabilities (float32, on the predictor's device) of a float batch [N, 3, H, W] (H, W multiples
        of 32), flips averaged with TTA."""
        ops = self.ops
        prob = ops.probabilities(self.network(batch))
        if self.tta:
            for axis in (3, 2):
                prob = prob + ops.flip(ops.probabilities(self.network(ops.flip(batch, axis))), axis)
            prob = prob / 3
        return prob

    def _pad(self, image: Any, height: int, width: int) -> Any:
        divisor = self.contract.input_divisor
        pad_h = max(height, math.ceil(image.shape[-2] / divisor) * divisor) - image.shape[-2]
        pad_w = max(width, math.ceil(image.shape[-1] / divisor) * divisor) - image.shape[-1]
        mode = "reflect" if pad_h < image.shape[-2] and pad_w < image.shape[-1] else "replicate"
        return self.ops.pad(image, pad_h, pad_w, mode) if pad_h or pad_w else image

    def window_size(self, height: int, width: int) -> tuple[int, int]:
        """The sliding window (h, w) used on an image of ``height`` × ``width``: the contract's tile, or ``window``
        cut to the image (rounded up to the divisor) but never below the tile."""
        tile_h, tile_w = self.contract.size
        if self.window is None:
            return tile_h, tile_w
        divisor = self.contract.input_divisor
        fit_h, fit_w = (math.ceil(n / divisor) * divisor for n in (height, width))
        return max(tile_h, min(self.window, fit_h)), max(tile_w, min(self.window, fit_w))

    def _sliding_window(self, image: Any) -> Any:
        ops = self.ops
        _, height, width = image.shape
        tile_h, tile_w = self.window_size(height, width)
        padded = self._pad(image[None], tile_h, tile_w)[0]
        full_h, full_w = padded.shape[-2:]
        total = ops.zeros(full_h, full_w)
        weight = ops.zeros(full_h, full_w)
        origins = [
            (top, left)
            for top in window_origins(full_h, tile_h, self.overlap)
            for left in window_origins(full_w, tile_w, self.overlap)
        ]
        if len(origins) == 1:  # one window (a 512² upload): no stacking or blending, the same values
            return self._forward(padded[None, :, :tile_h, :tile_w])[0, 0, :height, :width]
        weights = ops.weights(window_weights(tile_h, tile_w, self.blend))
        per_call = self.windows_per_call(tile_h, tile_w)
        for start in range(0, len(origins), per_call):
            chunk = origins[start : start + per_call]
            windows = ops.stack([padded[:, top : top + tile_h, left : left + tile_w] for top, left in chunk])
            for (top, left), prob in zip(chunk, self._forward(windows)[:, 0], strict=True):
                total[top : top + tile_h, left : left + tile_w] += prob * weights
                weight[top : top + tile_h, left : left + tile_w] += weights
        return (total / weight)[:height, :width]

    def windows_per_call(self, tile_h: int, tile_w: int) -> int:
        """Windows of ``tile_h`` × ``tile_w`` per forward call: ``batch_windows`` when set, else on the CPU
        :func:`cpu_windows_per_call` and on a GPU 1024 (every window of a photo at once)."""
        if self.batch_windows:
            return self.batch_windows
        return 1024 if self.on_gpu else cpu_windows_per_call(tile_h, tile_w)

    def scale_for(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> float:
        """The resampling factor this predictor applies to ``rgb``: the fixed ``scale``, or with ``"auto"`` the
        training field diameter over the photo's (``fov``, detected when None), clipped to [0.05, 4]."""
        return resample_factor(self.scale, self.reference_diameter, self.contract, rgb, fov)

    def predict_proba(
        self, rgb: np.ndarray, fov: np.ndarray | str | None = None, *, scale: float | None = None
    ) -> np.ndarray:
        """Vessel probability per pixel of an ``(H, W, 3)`` uint8 RGB photo; returns float32 ``(H, W)`` in [0, 1].

        ``fov``: None (every pixel predicted), a boolean ``(H, W)`` field of view or ``"detect"``
        (:func:`~vessel_lightning.data.fov.detect_fov`); pixels outside the field are 0. ``scale``
        overrides :meth:`scale_for` (a caller that already computed it).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
        if isinstance(fov, str):
            if fov != "detect":
                raise ValueError(f"fov must be a mask, 'detect' or None, not {fov!r}")
            fov = detect_fov(rgb)
        return apply_fov(self._predict(rgb, self.scale_for(rgb, fov) if scale is None else scale), fov)

    def _predict(self, rgb: np.ndarray, scale: float) -> np.ndarray:
        height, width = rgb.shape[:2]
        tiles = self.contract.mode == "tiles"
        size = (max(1, round(height * scale)), max(1, round(width * scale))) if tiles else self.contract.size
        ops = self.ops
        image = ops.upload(resize_image(rgb, size))
        with ops.context():
            if tiles:
                prob = self._sliding_window(image)
            else:
                prob = self._forward(self._pad(image[None], *size))[0, 0, : size[0], : size[1]]
            if (height, width) != size:
                prob = ops.resize(prob, height, width)
            return ops.to_host(prob)
