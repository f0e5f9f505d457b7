"""PyTorch as a backend: which device runs the network (``auto``, ``cpu``, ``cuda``, ``cuda:N``), the network on
a CUDA GPU (:class:`CudaNetwork`: half precision, channels_last, cuDNN autotuning, warmed up at load), the
Predictor's array operations on a GPU (:class:`TorchOps`), and PyTorch on the CPU as an array network. The only
inference module that imports torch at the top: the CPU serving path never imports it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vessel_lightning.contract import ModelContract
from vessel_lightning.inference.settings import (
    DEVICE_CHOICES,
    PRECISIONS,
    BackendError,
    BackendResult,
    DeviceError,
    is_device_spec,
)
from vessel_lightning.models.onnx import TorchArrays, compare

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str | torch.device | None, setting: str = "device") -> torch.device:
    """The ``torch.device`` for ``spec`` (``auto``/None: CUDA when available, else CPU).

    ``setting`` names where the value came from (``VESSEL_DEVICE``, ``--device``) for the error message.
    Raises :class:`DeviceError` for an unknown value, for CUDA without a usable GPU, or for a GPU index that
    does not exist.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if not is_device_spec(text):
        raise DeviceError(f"{setting}={spec!r}: use {DEVICE_CHOICES}")
    available = torch.cuda.is_available()
    if text == "auto":
        return torch.device("cuda:0" if available else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not available:
        raise DeviceError(
            f"{setting}={spec}: PyTorch sees no CUDA GPU here (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda or 'none'}); use {setting}=cpu or auto"
        )
    device = torch.device(text if ":" in text else "cuda:0")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"{setting}={spec}: this machine has {count} CUDA device(s) (cuda:0…cuda:{count - 1})"
        )
    return device


def describe_gpu(device: torch.device) -> dict[str, Any]:
    """JSON-ready facts about a CUDA ``device``: name, capability and memory in MiB."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    properties = torch.cuda.get_device_properties(index)
    mib = 1024 * 1024
    return {
        "type": "cuda",
        "index": index,
        "name": properties.name,
        "capability": f"{properties.major}.{properties.minor}",
        "memory_total_mib": round(properties.total_memory / mib),
        "memory_allocated_mib": round(torch.cuda.memory_allocated(index) / mib, 1),
        "memory_reserved_mib": round(torch.cuda.memory_reserved(index) / mib, 1),
        "max_memory_allocated_mib": round(torch.cuda.max_memory_allocated(index) / mib, 1),
    }


def supports_bf16(device: torch.device) -> bool:
    """Whether ``device`` is a GPU with native bfloat16 (Ampere, compute capability 8.0, and newer)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The GPU precision for ``precision`` on ``device``: ``auto`` is fp16 on a GPU, fp32 on the CPU.

    fp16 keeps 10 mantissa bits to bf16's 7, and a U-Net's activations stay far inside fp16's range, so it is the
    more accurate half format for inference (``experiments/device_check.sh`` measures both). Raises
    :class:`BackendError` for an unknown value, half precision on the CPU, or bf16 on a GPU without it.
    """
    device = torch.device(device)
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
        # Module.to takes memory_format beside device and dtype; torch's overloads leave that combination out.
        network = network.to(device=device, dtype=self.dtype, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
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

    def arrays(self, batch: np.ndarray) -> np.ndarray:
        """:meth:`forward` from and to host arrays (for checks that compare networks)."""
        return self(torch.from_numpy(np.ascontiguousarray(batch))).cpu().numpy()

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
    are compared with the fp32 network's on the same GPU (reported, not a gate: the F1 condition is measured on
    real photos, see ``experiments/device_check.sh``)."""
    chosen = resolve_precision(precision, device)
    result = BackendResult(None, "torch", device=str(device), precision=chosen, compiled=compile)
    if check and chosen != "fp32":
        reference = CudaNetwork(copy.deepcopy(network), device, "fp32")
        fast = CudaNetwork(network, device, chosen, compile=compile)
        result.check = {"max_abs_diff_vs_fp32": compare(reference.arrays, fast.arrays, contract.size)}
        del reference
        torch.cuda.empty_cache()
    else:
        fast = CudaNetwork(network, device, chosen, compile=compile)
    result.network = fast
    return result


def torch_cpu(network: nn.Module, threads: int | None) -> BackendResult:
    """PyTorch fp32 on the CPU as an array network."""
    return BackendResult(TorchArrays(network.float().eval(), threads), "torch")


class TorchOps:
    """The Predictor's array operations on a GPU: the photo is uploaded once (pinned, as uint8) and windows,
    blending and resampling stay on the device until the probabilities come back."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def context(self) -> Any:
        return torch.inference_mode()

    def upload(self, rgb: np.ndarray) -> torch.Tensor:
        writable = rgb.flags.writeable and rgb.flags.c_contiguous  # a decoded photo may be a read-only view
        pixels = torch.from_numpy(rgb if writable else rgb.copy())
        pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        return pixels.permute(2, 0, 1).contiguous().float().div_(255.0)

    def pad(self, image: torch.Tensor, pad_h: int, pad_w: int, mode: str) -> torch.Tensor:
        return F.pad(image, (0, pad_w, 0, pad_h), mode="reflect" if mode == "reflect" else "replicate")

    def zeros(self, height: int, width: int) -> torch.Tensor:
        return torch.zeros(height, width, device=self.device)

    def stack(self, arrays: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(arrays)

    def weights(self, weights: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(weights)).to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float())

    def flip(self, batch: torch.Tensor, axis: int) -> torch.Tensor:
        return batch.flip(axis)

    def resize(self, prob: torch.Tensor, height: int, width: int) -> torch.Tensor:
        resized = F.interpolate(prob[None, None], size=(height, width), mode="bilinear", align_corners=False)
        return resized[0, 0]

    def to_host(self, prob: torch.Tensor) -> np.ndarray:
        return prob.clamp(0, 1).cpu().numpy().astype(np.float32, copy=False)
