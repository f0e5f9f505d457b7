"""The network as an ONNX file: the export, its check against PyTorch, and ONNX Runtime as a plain array function.

Every network the project runs outside PyTorch is a callable from a float32 array ``[N, 3, H, W]`` in [0, 1] to
float32 logits ``[N, 1, H, W]`` (an "array network"): :class:`OnnxNetwork` here, OpenVINO's in inference, and a
PyTorch module behind :class:`TorchArrays`. The registered bundle carries the export made by
:func:`export_checked`, so a server without PyTorch serves the same network. PyTorch is imported only by the
functions that export or wrap a module.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ArrayNetwork = Callable[[np.ndarray], np.ndarray]
FP32_TOLERANCE = 1e-4
OPSET = 17


class OnnxMismatch(ValueError):
    """An ONNX export whose outputs differ from PyTorch's beyond :data:`FP32_TOLERANCE`."""


class OnnxNetwork:
    """An ONNX Runtime session as an array network (logits out), on the CPU.

    ``threads``: ONNX Runtime's intra-op threads (None: every core).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, 1, H, W] of a float batch [N, 3, H, W] in [0, 1]."""
        array = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input_name: array})[0]


class TorchArrays:
    """A PyTorch module on the CPU as an array network: arrays in, arrays out, no gradients.

    ``threads``: PyTorch's intra-op threads for the calling thread (OpenMP's count is per thread; None: as is).
    """

    def __init__(self, module: Any, threads: int | None = None) -> None:
        self.module = module.eval()
        self.threads = threads

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, 1, H, W] of a float batch [N, 3, H, W] in [0, 1]."""
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            return self.module(tensor).float().numpy()


def export_onnx(network: Any, path: Path, size: Sequence[int]) -> None:
    """Export a PyTorch ``network`` to ``path`` (legacy TorchScript exporter, dynamic batch, height and width).

    Written to a temporary file first, so a concurrent reader never sees half a model.
    """
    import torch

    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    example = torch.rand(1, 3, *size)
    network.eval()
    try:
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
    finally:
        temporary.unlink(missing_ok=True)


def check_batch(size: Sequence[int], seed: int = 0) -> np.ndarray:
    """The fixed random batch [2, 3, H, W] in [0, 1) that every backend check compares networks on."""
    return np.random.default_rng(seed).random((2, 3, *size), dtype=np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function in the logits' precision, without overflow warnings."""
    from scipy.special import expit

    return expit(logits)


def compare(reference: ArrayNetwork, candidate: ArrayNetwork, size: Sequence[int]) -> dict[str, float]:
    """How far ``candidate``'s outputs lie from ``reference``'s on :func:`check_batch`: the max abs difference of
    the logits, of the logits relative to their largest magnitude (float32 rounding grows with it), and the max and
    mean abs difference of the probabilities."""
    batch = check_batch(size)
    expected = np.asarray(reference(batch), dtype=np.float32)
    got = np.asarray(candidate(batch), dtype=np.float32)
    logits = float(np.abs(expected - got).max())
    probability = np.abs(sigmoid(expected) - sigmoid(got))
    return {
        "logits": logits,
        "logits_relative": logits / max(1.0, float(np.abs(expected).max())),
        "probability": float(probability.max()),
        "probability_mean": float(probability.mean()),
    }


def fp32_mismatch(diff: dict[str, float]) -> bool:
    """Whether a fp32 runtime's :func:`compare` result exceeds :data:`FP32_TOLERANCE` (probabilities, and logits
    relative to their magnitude: a trained model's logits reach ±100, where float32 rounds at ~1e-5)."""
    return max(diff["probability"], diff["logits_relative"]) > FP32_TOLERANCE


def export_checked(network: Any, path: Path, size: Sequence[int]) -> dict[str, Any]:
    """Export ``network`` to ``path`` and compare ONNX Runtime's outputs with PyTorch's; returns the record
    (``max_abs_diff``, ``export_seconds``, ``opset``). Raises :class:`OnnxMismatch` (and removes the file) when
    they differ beyond :data:`FP32_TOLERANCE`."""
    start = time.perf_counter()
    export_onnx(network, path, size)
    seconds = time.perf_counter() - start
    diff = compare(TorchArrays(network), OnnxNetwork(path), size)
    if fp32_mismatch(diff):
        path.unlink(missing_ok=True)
        raise OnnxMismatch(f"ONNX export differs from PyTorch by {diff} (> {FP32_TOLERANCE}); not used")
    return {"max_abs_diff": diff, "export_seconds": round(seconds, 2), "opset": OPSET}
