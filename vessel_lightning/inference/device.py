"""Which device runs the network, and what it is: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

One rule for the API (``VESSEL_DEVICE`` / ``--device``), ``vessel-eval device=`` and ``vessel-predict --device``:
``auto`` takes the first CUDA GPU when PyTorch sees one, else the CPU; asking for CUDA where there is none is an
error that names the setting, not a silent fall-back to a 30× slower CPU.
"""

from __future__ import annotations

import re
from typing import Any

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def is_device_spec(text: str) -> bool:
    """Whether ``text`` is a device setting's syntax (``auto``, ``cpu``, ``cuda``, ``cuda:N``; any case)."""
    return bool(_DEVICE.match(text.strip().lower()))


class DeviceError(ValueError):
    """A device setting that cannot be honoured here; the message names the setting."""


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


def describe_device(device: torch.device) -> dict[str, Any]:
    """JSON-ready facts about ``device`` for ``/health`` and ``/model``: type, name and, on a GPU, memory in MiB."""
    if device.type != "cuda":
        return {"type": "cpu", "name": cpu_name(), "threads": torch.get_num_threads()}
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


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``lscpu``, else ``platform``)."""
    from vessel_lightning.hardware import cpu_features

    return cpu_features().model


def supports_bf16(device: torch.device) -> bool:
    """Whether ``device`` is a GPU with native bfloat16 (Ampere, compute capability 8.0, and newer)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
