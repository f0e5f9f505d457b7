"""Backends that run the network for the Predictor (serving, evaluation, batch prediction): PyTorch eager, ONNX
Runtime fp32, ONNX Runtime int8, OpenVINO f32 / bf16 / int8 (:mod:`~vessel_lightning.inference.openvino_backend`)
and ``auto``, the fastest of these that this CPU runs accurately
(:mod:`~vessel_lightning.inference.backend_choice`); PyTorch on a CUDA GPU (:class:`CudaNetwork`: half precision,
channels_last, cuDNN autotuning, warmed up at load).

ONNX files are exported once per registered model version into a cache folder (``$VESSEL_CACHE_DIR``, default
``~/.cache/vessel-lightning/onnx``), keyed by tracking store, name, version and run id, and the fp32 export is
checked against PyTorch (max abs difference of the probabilities, and of the logits relative to their largest
magnitude, ≤ 1e-4) before it is used. The int8
model (static QDQ: uint8 activations, int8 weights) is calibrated on real photos from a folder; its accuracy is
not implied by this module — measure F1 before choosing it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vessel_lightning.contract import ModelContract
from vessel_lightning.digest import file_sha256, value_digest
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.tracking.models import ModelInfo

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FP32_TOLERANCE = 1e-4
OPSET = 17
# Changing how int8 models are calibrated changes this, so cached int8 files of an older recipe are not reused.
CALIBRATION_RECIPE = "2: native-resolution tile crops for tile models; MinMax"

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A backend that cannot be built (export failed, check failed, no calibration photos); one line."""


@dataclass
class BackendResult:
    """The network to give the Predictor and what was done to get it (shown by ``GET /model``)."""

    network: nn.Module
    backend: str
    details: dict[str, Any] = field(default_factory=dict)


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` interface the Predictor expects (logits out)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits [N, 1, H, W] of a float batch [N, 3, H, W] in [0, 1]."""
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def torch_threads(backend: str, threads: int | None) -> int | None:
    """PyTorch's intra-op threads for a Predictor serving ``backend`` on the CPU: ``threads`` (None: PyTorch's
    default) when PyTorch runs the network, 1 when ONNX Runtime or OpenVINO does.

    The Predictor's own PyTorch work beside such a network (uint8 to float, sigmoid, blending) is elementwise, so
    its values do not depend on the count, but a 2-thread OpenMP region waits for a core the runtime's pool (or a
    neighbour) holds: a 512² sigmoid took 7.9 ms on 2 threads and 0.1 ms on 1 on a busy 2-core machine.
    """
    return threads if backend == "torch" else 1


def window_batch(backend: str) -> int | None:
    """Windows per forward call for a Predictor serving ``backend`` on the CPU (None: the Predictor's rule by
    pixels per call, :func:`~vessel_lightning.inference.predictor.cpu_windows_per_call`).

    1 for OpenVINO at every window size: a compiled network and its buffers per input shape, so batches of 4 (and
    the last, shorter one) held ~200 MB more after a 999×960 photo for the same values and speed
    (``experiments/RESULTS.md``).
    """
    return 1 if backend.startswith("openvino") else None


def resolve_precision(precision: str, device: torch.device) -> str:
    """The GPU precision for ``precision`` on ``device``: ``auto`` is fp16 on a GPU, fp32 on the CPU.

    fp16 keeps 10 mantissa bits to bf16's 7, and a U-Net's activations stay far inside fp16's range, so it is the
    more accurate half format for inference (``experiments/device_check.sh`` measures both). Raises
    :class:`BackendError` for an unknown value, half precision on the CPU, or bf16 on a GPU without it.
    """
    from vessel_lightning.inference.device import supports_bf16

    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if precision in ("auto", "fp32"):
            return "fp32"
        raise BackendError(f"precision {precision} is for a CUDA device; the {device.type} backends run fp32")
    if precision == "bf16" and not supports_bf16(device):
        raise BackendError(
            f"precision bf16 needs a GPU of compute capability ≥ 8.0 ({device} has less); use fp16"
        )
    return "fp16" if precision == "auto" else precision


class CudaNetwork(nn.Module):
    """A network on a CUDA GPU, set up for inference speed; logits come back as float32 on the GPU.

    Weights and inputs in ``precision`` (fp16/bf16 halve memory traffic and use tensor cores), channels_last
    memory format (what cuDNN's tensor-core convolutions want), cuDNN autotuning for the fixed window shapes.
    With ``compile`` the network is compiled by ``torch.compile(mode="reduce-overhead")`` (CUDA graphs) and
    batches are padded to a power of two, so a handful of graphs cover every batch size.
    """

    def __init__(
        self, network: nn.Module, device: torch.device, precision: str = "fp16", compile: bool = False
    ) -> None:
        super().__init__()
        torch.backends.cudnn.benchmark = True
        self.device = device
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.compiled = compile
        network = network.to(device=device, dtype=self.dtype, memory_format=torch.channels_last).eval()
        self.network = torch.compile(network, mode="reduce-overhead", dynamic=False) if compile else network

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits [N, 1, H, W] (float32, on the GPU) of a float batch [N, 3, H, W] in [0, 1]."""
        count = batch.shape[0]
        batch = batch.to(self.device, non_blocking=True)
        batch = batch.to(dtype=self.dtype, memory_format=torch.channels_last)
        if self.compiled and count & (count - 1):  # pad to a power of two: one CUDA graph per bucket
            padding = (1 << count.bit_length()) - count
            batch = torch.cat([batch, batch.new_zeros(padding, *batch.shape[1:])])
        with torch.inference_mode():
            return self.network(batch)[:count].float()

    def warm_up(self, size: Sequence[int], max_batch: int) -> dict[str, Any]:
        """Run every batch size up to ``max_batch`` at ``size`` once, so cuDNN's autotuning (and compilation)
        happens at load, not in a user's request; returns what it cost."""
        start = time.perf_counter()
        sizes = (
            sorted({1 << i for i in range(max_batch.bit_length())} | {max_batch}) if self.compiled else None
        )
        for count in sizes or range(1, max_batch + 1):
            self(torch.zeros(count, 3, *size, device=self.device))
        torch.cuda.synchronize(self.device)
        return {"warm_up_seconds": round(time.perf_counter() - start, 2), "shape": [max_batch, 3, *size]}


def default_cache_dir() -> Path:
    """``$VESSEL_CACHE_DIR`` or ``~/.cache/vessel-lightning/onnx``."""
    env = os.environ.get("VESSEL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vessel-lightning" / "onnx"


def cache_folder(cache_dir: Path, info: ModelInfo, tracking_uri: str) -> Path:
    """The cache folder of one model version: readable name plus a hash of where it came from."""
    digest = value_digest([tracking_uri, info.name, info.version, info.run_id, info.uri], 12)
    name = f"{info.name or 'model'}-v{info.version or 'x'}-{digest}"
    return cache_dir / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    temporary = folder / f"meta.json.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(meta, indent=2))
    os.replace(temporary, folder / "meta.json")


def export_onnx(network: nn.Module, path: Path, size: Sequence[int]) -> None:
    """Export ``network`` to ``path`` (legacy TorchScript exporter, dynamic batch, height and width).

    Written to a temporary file first, so a concurrent reader never sees half a model.
    """
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    example = torch.rand(1, 3, *size)
    network.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about shape inference it then handles
        torch.onnx.export(
            network,
            (example,),
            str(temporary),
            dynamo=False,  # the legacy exporter handles the encoder's dynamic padding; checked to 7e-7
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "logits": {0: "batch", 2: "height", 3: "width"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
        )
    os.replace(temporary, path)


def compare(network: nn.Module, candidate: nn.Module, size: Sequence[int], seed: int = 0) -> dict[str, float]:
    """Max abs difference of logits and probabilities between a reference network and a candidate backend
    (ONNX, int8, OpenVINO, half precision on a GPU) on a fixed random batch, of the logits relative to their
    largest magnitude (float32 rounding grows with it), and the mean abs difference of the probabilities."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.rand(2, 3, *size, generator=generator)
    with torch.inference_mode():
        expected = network(batch).float()
        got = candidate(batch).float().to(expected.device)
    logits = float((expected - got).abs().max())
    probability = (torch.sigmoid(expected) - torch.sigmoid(got)).abs()
    return {
        "logits": logits,
        "logits_relative": logits / max(1.0, float(expected.abs().max())),
        "probability": float(probability.max()),
        "probability_mean": float(probability.mean()),
    }


def fp32_mismatch(diff: dict[str, float]) -> bool:
    """Whether a fp32 runtime's :func:`compare` result exceeds :data:`FP32_TOLERANCE` (probabilities, and logits
    relative to their magnitude: a trained model's logits reach ±100, where float32 rounds at ~1e-5)."""
    return max(diff["probability"], diff["logits_relative"]) > FP32_TOLERANCE


def calibration_photos(folder: Path, limit: int = 16) -> list[Path]:
    """Up to ``limit`` photos from ``folder`` (recursively, sorted) for int8 calibration."""
    from vessel_lightning.data.images import IMAGE_EXTENSIONS

    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return found[:limit]


def calibration_inputs(
    photos: Sequence[Path], contract: ModelContract, crops: int = 4
) -> Iterator[np.ndarray]:
    """Float batches [N, 3, h, w] in [0, 1] like the ones the served network sees, one batch per photo.

    A resize model gets each photo resized to its input size; a tile model gets up to ``crops`` windows of its
    tile size cut from the photo at native resolution (spread over the image), not a shrunken whole photo whose
    vessels are thinner and whose activation ranges differ from what the sliding window feeds it.
    """
    from vessel_lightning.data.images import read_rgb, resize_image
    from vessel_lightning.tiling import window_origins

    height, width = (int(v) for v in contract.size)
    for photo in photos:
        rgb = read_rgb(photo)
        if contract.mode != "tiles" or rgb.shape[0] < height or rgb.shape[1] < width:
            windows = [resize_image(rgb, (height, width))]
        else:
            origins = [
                (top, left)
                for top in window_origins(rgb.shape[0], height)
                for left in window_origins(rgb.shape[1], width)
            ]
            chosen = sorted({round(i * (len(origins) - 1) / max(crops - 1, 1)) for i in range(crops)})
            windows = [rgb[t : t + height, lf : lf + width] for t, lf in (origins[i] for i in chosen)]
        yield (np.stack(windows).transpose(0, 3, 1, 2).astype(np.float32) / 255.0).copy()


def calibration_id(photos: Sequence[Path]) -> str:
    """A short hash of the calibration recipe and the photos' names and sizes (names cached int8 files)."""
    return value_digest([CALIBRATION_RECIPE, *((p.name, p.stat().st_size) for p in photos)], 12)


def quantize_int8(fp32_path: Path, int8_path: Path, photos: Sequence[Path], contract: ModelContract) -> None:
    """Static QDQ int8 quantization (uint8 activations, int8 per-channel weights) calibrated on ``photos``
    (see :func:`calibration_inputs`)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = calibration_inputs(photos, contract)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"image": batch}

    prepared = int8_path.with_name(f"{int8_path.stem}.pre.{os.getpid()}.onnx")
    temporary = int8_path.with_name(f"{int8_path.name}.{os.getpid()}.tmp")
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(temporary),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.replace(temporary, int8_path)
    finally:
        for leftover in (prepared, temporary):
            leftover.unlink(missing_ok=True)


def _fp32_onnx(
    network: nn.Module, contract: ModelContract, folder: Path, threads: int | None
) -> tuple[OnnxNetwork, dict[str, Any]]:
    """The checked fp32 ONNX model of ``folder``: exported and compared on first use, reused afterwards."""
    path = folder / "model.onnx"
    meta = _read_meta(folder)
    record = meta.get("fp32", {})
    if path.is_file() and record.get("sha256") == file_sha256(path) and record.get("checked"):
        return OnnxNetwork(path, threads), record | {"cached": True}
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        export_onnx(network, path, contract.size)
    except Exception as exc:
        raise BackendError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    seconds = time.perf_counter() - start
    onnx_network = OnnxNetwork(path, threads)
    diff = compare(network, onnx_network, contract.size)
    if fp32_mismatch(diff):
        path.unlink(missing_ok=True)
        raise BackendError(f"ONNX export differs from PyTorch by {diff} (> {FP32_TOLERANCE}); not used")
    record = {
        "sha256": file_sha256(path),
        "checked": True,
        "max_abs_diff": diff,
        "export_seconds": round(seconds, 2),
    }
    _write_meta(folder, _read_meta(folder) | {"fp32": record})
    return onnx_network, record | {"cached": False}


def build_cuda(
    network: nn.Module,
    contract: ModelContract,
    device: torch.device,
    precision: str = "auto",
    *,
    compile: bool = False,
    check: bool = True,
) -> BackendResult:
    """``network`` as a :class:`CudaNetwork` on ``device``; with ``check`` its probabilities on a fixed random batch
    are compared with the fp32 network's on the same GPU (reported in the details, not a gate: the F1 condition is
    measured on real photos, see ``experiments/device_check.sh``)."""
    chosen = resolve_precision(precision, device)
    details: dict[str, Any] = {"device": str(device), "precision": chosen, "compiled": compile}
    if check and chosen != "fp32":
        import copy

        reference = CudaNetwork(copy.deepcopy(network), device, "fp32")
        fast = CudaNetwork(network, device, chosen, compile=compile)
        details["max_abs_diff_vs_fp32"] = compare(reference, fast, contract.size)
        del reference
        torch.cuda.empty_cache()
    else:
        fast = CudaNetwork(network, device, chosen, compile=compile)
    return BackendResult(fast, "torch", details)


def int8_onnx(
    folder: Path, contract: ModelContract, calibration_dir: Path | None
) -> tuple[Path, dict[str, Any]]:
    """The int8 QDQ ONNX model of ``folder`` (beside its checked ``model.onnx``), calibrated on the photos of
    ``calibration_dir`` on first use and reused afterwards; returns its path and its record."""
    if calibration_dir is None or not Path(calibration_dir).is_dir():
        raise BackendError(
            "int8 backends need calibration photos: set VESSEL_CALIBRATION_DIR to a folder of photos"
        )
    photos = calibration_photos(Path(calibration_dir))
    if not photos:
        raise BackendError(f"no calibration photos found in {calibration_dir}")
    int8_path = folder / f"model.int8-{calibration_id(photos)}.onnx"
    int8_record = _read_meta(folder).get(int8_path.name, {})
    cached = int8_path.is_file() and int8_record.get("sha256") == file_sha256(int8_path)
    if not cached:
        start = time.perf_counter()
        try:
            quantize_int8(folder / "model.onnx", int8_path, photos, contract)
        except Exception as exc:
            raise BackendError(f"int8 quantization failed: {type(exc).__name__}: {exc}") from exc
        int8_record = {
            "sha256": file_sha256(int8_path),
            "calibration_photos": len(photos),
            "quantize_seconds": round(time.perf_counter() - start, 2),
        }
        _write_meta(folder, _read_meta(folder) | {int8_path.name: int8_record})
    return int8_path, int8_record | {"cached": cached}


def build_backend(
    backend: str,
    network: nn.Module,
    contract: ModelContract,
    info: ModelInfo,
    *,
    tracking_uri: str = "",
    cache_dir: Path | None = None,
    calibration_dir: Path | None = None,
    threads: int | None = None,
    window: int | None = None,
    device: torch.device | None = None,
    precision: str = "auto",
    compile: bool = False,
) -> BackendResult:
    """The network for ``backend`` (one of :data:`BACKENDS`; ``auto`` times this CPU's candidates and serves the
    fastest that passes the mask gate, timed at the served ``window`` of tile models, see
    :mod:`vessel_lightning.inference.backend_choice`) on ``device`` (default: the CPU); raises
    :class:`BackendError`.

    On a CUDA device the backend is PyTorch (``auto`` or ``torch``; :func:`build_cuda`: ONNX Runtime and OpenVINO
    here are CPU builds), with ``precision`` and ``compile``; on the CPU, half precision is refused.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = device or torch.device("cpu")
    if device.type == "cuda":
        if backend not in ("auto", "torch"):
            raise BackendError(f"backend {backend} runs on the CPU; on {device} the backend is torch")
        return build_cuda(network, contract, device, precision, compile=compile)
    resolve_precision(precision, device)  # half precision asked for on the CPU is an error, not ignored
    if backend == "torch":
        return BackendResult(network.eval(), "torch", {"device": "cpu", "precision": "fp32"})
    if backend == "auto":
        from vessel_lightning.inference.backend_choice import choose_backend

        return choose_backend(
            network, contract, info, tracking_uri=tracking_uri, cache_dir=cache_dir,
            calibration_dir=calibration_dir, threads=threads, window=window,
        )  # fmt: skip
    folder = cache_folder(cache_dir or default_cache_dir(), info, tracking_uri)
    fp32, record = _fp32_onnx(network.eval(), contract, folder, threads)
    details = {"onnx_path": str(fp32.path), "fp32": record}
    if backend.startswith("openvino"):
        from vessel_lightning.inference.openvino_backend import build_openvino

        return build_openvino(backend, network, contract, folder, calibration_dir, threads, details)
    if backend == "onnx":
        return BackendResult(fp32, "onnx", details)
    int8_path, int8_record = int8_onnx(folder, contract, calibration_dir)
    int8 = OnnxNetwork(int8_path, threads)
    int8_record = int8_record | {"max_abs_diff_vs_torch": compare(network, int8, contract.size)}
    return BackendResult(int8, "onnx-int8", details | {"onnx_path": str(int8_path), "int8": int8_record})


def use_backend(
    predictor: Predictor,
    backend: str,
    *,
    tracking_uri: str = "",
    cache_dir: Path | None = None,
    calibration_dir: Path | None = None,
    threads: int | None = None,
    precision: str = "auto",
) -> BackendResult:
    """Swap ``predictor``'s network for ``backend``'s on the predictor's device (for ``vessel-eval`` and
    ``vessel-predict``); returns what :func:`build_backend` returned. On a GPU ``auto`` and ``torch`` give the
    GPU backend in ``precision`` and CPU backends are refused with :class:`BackendError`.

    On the CPU the predictor then follows ``vessel-serve``'s rules for the backend it got (``auto`` included):
    PyTorch's threads (:func:`torch_threads`) and windows per call (:func:`window_batch`)."""
    result = build_backend(
        backend, predictor.network, predictor.contract, predictor.info, tracking_uri=tracking_uri,
        cache_dir=cache_dir, calibration_dir=calibration_dir, threads=threads, window=predictor.window,
        device=predictor.device, precision=precision,
    )  # fmt: skip
    predictor.network = result.network
    if predictor.device.type == "cpu":
        predictor.threads = torch_threads(result.backend, threads or predictor.threads)
        predictor.batch_windows = window_batch(result.backend) or predictor.batch_windows
    return result
