"""Which network the Predictor runs, in one place: PyTorch on a CUDA GPU, or on the CPU PyTorch fp32, ONNX Runtime
fp32 / int8, OpenVINO f32 / bf16 / int8, or ``auto`` (the fastest of these this CPU runs accurately).

Every CPU backend starts from the checked fp32 ONNX file of the model version in the backend cache
(:mod:`~vessel_lightning.inference.cache`): runtimes (:mod:`~vessel_lightning.inference.onnx_runtime`,
:mod:`~vessel_lightning.inference.openvino_runtime`) derive from it, and ``auto``
(:mod:`~vessel_lightning.inference.auto`) chooses among them. PyTorch is imported only for the ``torch`` backend,
a GPU, or a model whose bundle lacks its ONNX export (:mod:`~vessel_lightning.inference.torch_runtime`).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from vessel_lightning.contract import ModelContract
from vessel_lightning.hardware import cpu_features
from vessel_lightning.inference.cache import CheckedExport, cache_folder, calibration_folder, fp32_onnx
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.inference.settings import (
    BACKENDS,
    BackendError,
    BackendResult,
    BackendSettings,
    DeviceError,
    is_device_spec,
)
from vessel_lightning.tracking.bundle import ModelInfo

DEFAULT_SETTINGS = BackendSettings()


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (the CPU serving image has none)."""
    return importlib.util.find_spec("torch") is not None


def resolve_device(spec: str | None, setting: str = "device") -> str:
    """The device ``spec`` names here (``"cpu"`` or ``"cuda:N"``); ``auto``/None is the first CUDA GPU PyTorch
    sees, else the CPU. Without PyTorch only the CPU exists. Raises :class:`DeviceError` naming ``setting``."""
    text = (spec or "auto").strip().lower()
    if torch_installed():
        from vessel_lightning.inference.torch_runtime import resolve_device as resolve

        return str(resolve(text, setting))
    if not is_device_spec(text):
        from vessel_lightning.inference.settings import DEVICE_CHOICES

        raise DeviceError(f"{setting}={spec!r}: use {DEVICE_CHOICES}")
    if text.startswith("cuda"):
        raise DeviceError(
            f"{setting}={spec}: PyTorch is not installed here (the CPU image); use {setting}=cpu"
        )
    return "cpu"


def describe_device(device: str, threads: int | None = None) -> dict[str, Any]:
    """JSON-ready facts about ``device`` for ``/health`` and ``/model``: type, name and, on a GPU, memory in
    MiB; on the CPU its model and the threads the backend uses."""
    if device.startswith("cuda"):
        import torch

        from vessel_lightning.inference.torch_runtime import describe_gpu

        return describe_gpu(torch.device(device))
    return {"type": "cpu", "name": cpu_features().model, "threads": threads or os.cpu_count() or 1}


def needs_module(backend: str, device: str = "cpu") -> bool:
    """Whether building ``backend`` on ``device`` needs the network as a PyTorch module: on a GPU, for
    ``torch``, and for ``auto`` where PyTorch is installed (it is then one of the candidates)."""
    return device.startswith("cuda") or backend == "torch" or (backend == "auto" and torch_installed())


def window_batch(backend: str) -> int | None:
    """Windows per forward call for a Predictor serving ``backend`` on the CPU (None: the Predictor's rule by
    pixels per call, :func:`~vessel_lightning.inference.predictor.cpu_windows_per_call`).

    1 for OpenVINO at every window size: a compiled network and its buffers per input shape, so batches of 4 (and
    the last, shorter one) held ~200 MB more after a 999×960 photo for the same values and speed
    (``experiments/RESULTS.md``).
    """
    return 1 if backend.startswith("openvino") else None


def build_backend(
    backend: str,
    module: Any | None,
    contract: ModelContract,
    info: ModelInfo,
    settings: BackendSettings = DEFAULT_SETTINGS,
    device: str = "cpu",
) -> BackendResult:
    """The network for ``backend`` (one of :data:`BACKENDS`) on ``device``; raises :class:`BackendError`.

    ``module``: the network as a PyTorch module, or None where only the bundle's ONNX export is at hand (then
    ``torch`` cannot be built and ``auto`` does not consider it). On a CUDA device the backend is PyTorch (``auto``
    or ``torch``; ONNX Runtime and OpenVINO here are CPU builds), in ``settings.precision``, compiled with
    ``settings.compile``; on the CPU, half precision is refused.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device.startswith("cuda"):
        if backend not in ("auto", "torch"):
            raise BackendError(f"backend {backend} runs on the CPU; on {device} the backend is torch")
        if module is None:
            raise BackendError(f"on {device} the backend is torch: it needs PyTorch and the network")
        from vessel_lightning.inference.torch_runtime import build_cuda, resolve_device

        return build_cuda(
            module, contract, resolve_device(device), settings.precision, compile=settings.compile
        )
    if settings.precision not in ("auto", "fp32"):  # asked for on the CPU: an error, not ignored
        raise BackendError(f"precision {settings.precision} is for a CUDA device; the cpu backends run fp32")
    if backend == "torch":
        if module is None:
            raise BackendError("backend torch needs PyTorch and the model's network; this server has neither")
        from vessel_lightning.inference.torch_runtime import torch_cpu

        return torch_cpu(module, settings.threads)
    folder = cache_folder(settings.cache_root, info, settings.tracking_uri)
    reference, record = fp32_onnx(contract, info, module, settings, folder)
    base = CheckedExport(
        reference, record, contract, folder, calibration_folder(info, settings, folder), settings.threads
    )

    def build(name: str) -> BackendResult:
        if name == "torch":
            return build_backend("torch", module, contract, info, settings)
        if name.startswith("openvino"):
            from vessel_lightning.inference.openvino_runtime import build_openvino

            return build_openvino(name, base)
        from vessel_lightning.inference.onnx_runtime import build_onnx

        return build_onnx(name, base)

    if backend != "auto":
        return build(backend)
    from vessel_lightning.inference.auto import choose_backend

    return choose_backend(
        reference, contract, folder, build, calibration=base.calibration, threads=settings.threads,
        window=settings.window, torch=module is not None,
    )  # fmt: skip


def use_backend(
    predictor: Predictor, backend: str, settings: BackendSettings = DEFAULT_SETTINGS
) -> BackendResult:
    """Swap ``predictor``'s network for ``backend``'s on the predictor's device (for ``vessel-eval`` and
    ``vessel-predict``); returns what :func:`build_backend` returned. On a GPU ``auto`` and ``torch`` give the
    GPU backend in ``settings.precision`` and CPU backends are refused with :class:`BackendError`.

    On the CPU the predictor then follows ``vessel-serve``'s rule for the backend it got (``auto`` included): its
    windows per call (:func:`window_batch`)."""
    settings = _with_window(settings, predictor.window)
    result = build_backend(
        backend, predictor.module, predictor.contract, predictor.info, settings, predictor.device
    )
    predictor.network = result.network
    if not predictor.on_gpu:
        predictor.batch_windows = window_batch(result.backend) or predictor.batch_windows
    return result


def load_predictor(
    model_uri: str,
    backend: str,
    settings: BackendSettings = DEFAULT_SETTINGS,
    device: str = "cpu",
    **predictor_options: Any,
) -> tuple[Predictor, BackendResult]:
    """A Predictor of the logged model ``model_uri`` running ``backend`` on ``device``, and the backend's result.

    The network is loaded as a PyTorch module only where the backend needs it (:func:`needs_module`); a CPU
    backend otherwise runs the bundle's ONNX export, so this works without PyTorch installed. ``predictor_options``
    go to :class:`Predictor` (``window``, ``tta``, ``scale``, …)."""
    from vessel_lightning.tracking.bundle import describe_logged_model, load_logged_model

    module = None
    if needs_module(backend, device):
        module, contract, info = load_logged_model(model_uri)
    else:
        contract, info = describe_logged_model(model_uri)
    settings = _with_window(settings, predictor_options.get("window"))
    result = build_backend(backend, module, contract, info, settings, device)
    batch = window_batch(result.backend) if not device.startswith("cuda") else None
    predictor_options.setdefault("batch_windows", batch)
    predictor = Predictor(result.network, contract, info=info, device=device, **predictor_options)
    predictor.module = module
    return predictor, result


def _with_window(settings: BackendSettings, window: int | None) -> BackendSettings:
    from dataclasses import replace

    return settings if settings.window is not None or window is None else replace(settings, window=window)
