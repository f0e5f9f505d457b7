"""What every backend decision takes and gives, without PyTorch: the names of the backends, precisions and devices,
the one frozen :class:`BackendSettings` that travels from a command or the server to the backend that is built,
and the typed :class:`BackendResult` it returns."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class BackendError(RuntimeError):
    """A backend that cannot be built (export failed, check failed, no calibration photos); one line."""


class DeviceError(ValueError):
    """A device setting that cannot be honoured here; the message names the setting."""


def is_device_spec(text: str) -> bool:
    """Whether ``text`` is a device setting's syntax (``auto``, ``cpu``, ``cuda``, ``cuda:N``; any case)."""
    return bool(_DEVICE.match(text.strip().lower()))


def default_cache_dir() -> Path:
    """``$VESSEL_CACHE_DIR`` or ``~/.cache/vessel-lightning/onnx``."""
    env = os.environ.get("VESSEL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vessel-lightning" / "onnx"


@dataclass(frozen=True)
class BackendSettings:
    """How a backend is built: where the model came from (``tracking_uri``), where exports are cached
    (``cache_dir``; None: :func:`default_cache_dir`), photos that calibrate int8 and prove reduced precision
    (``calibration_dir``; None: the crops the registered bundle carries), CPU threads (None: every core), the GPU
    precision and compilation, and the served sliding window of tile models (None: the contract's tile)."""

    tracking_uri: str = ""
    cache_dir: Path | None = None
    calibration_dir: Path | None = None
    threads: int | None = None
    precision: str = "auto"
    compile: bool = False
    window: int | None = None

    @property
    def cache_root(self) -> Path:
        """The cache folder in use: ``cache_dir`` or :func:`default_cache_dir`."""
        return self.cache_dir or default_cache_dir()


@dataclass(frozen=True)
class ExportRecord:
    """A file a backend runs (an ONNX or OpenVINO export): its name, size and digest, never where it lies, and
    what was checked or done to make it."""

    file: str
    sha256: str
    bytes: int
    source: str  # "bundle" (logged with the model), "export" (exported here), "convert", "quantize"
    cached: bool = False
    check: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None


@dataclass
class BackendResult:
    """The network to give the Predictor (an array network on the CPU, a PyTorch module on a GPU) and how it came
    to be (``GET /model`` shows :meth:`describe`)."""

    network: Any
    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    exports: list[ExportRecord] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)  # the served network against the fp32 reference
    auto: dict[str, Any] | None = None  # what auto timed, refused and chose, and why
    compiled: bool = False
    warm_up: dict[str, Any] | None = None
    fallback_reason: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about the backend, with no server path in them."""
        found = {
            "device": self.device,
            "precision": self.precision,
            "exports": [asdict(record) for record in self.exports],
            "check": self.check,
            "auto": self.auto,
            "compiled": self.compiled,
            "warm_up": self.warm_up,
            "fallback_reason": self.fallback_reason,
        }
        return {key: value for key, value in found.items() if value not in (None, [], {}, False)}
