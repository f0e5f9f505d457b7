"""The OpenVINO backends: the checked fp32 ONNX export (or its int8 QDQ twin) compiled by OpenVINO for this CPU,
in f32, bf16 (on CPUs with ``avx512_bf16`` or AMX) or int8 (the ``onnx-int8`` calibration, run by OpenVINO's int8
kernels).

The ONNX file is converted once per model version into OpenVINO IR in the backend cache folder; compiled
networks are kept per input shape (static shapes run ~20 % faster than one dynamic compile) and OpenVINO's own
compiled-blob cache sits beside them. At load the network is compared with the fp32 ONNX Runtime network on a fixed
random batch: f32 must agree as the ONNX export does (:func:`~vessel_lightning.models.onnx.fp32_mismatch`), bf16 to
:data:`BF16_PROBABILITY_TOLERANCE` in mean probability (:func:`bf16_mismatch`); int8 is recorded only (its masks
are judged by ``auto``'s gate).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from vessel_lightning.digest import file_sha256
from vessel_lightning.inference.cache import FP32_FILE, CheckedExport, export_record, read_meta, update_meta
from vessel_lightning.inference.onnx_runtime import int8_onnx
from vessel_lightning.inference.settings import BackendError, BackendResult, ExportRecord
from vessel_lightning.models.onnx import FP32_TOLERANCE, compare, fp32_mismatch

PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
# bf16 keeps 8 bits of mantissa. On the check batch (uniform noise) rounding moved a trained B0's probabilities by
# 0.0052 on average, single pixels by up to 0.066 (a crop of a real photo: 0.0004 and 0.072; a demo champion whose
# served masks differ from fp32's in 0.04 % of the pixels), a random-weight B0's by 0.002 at most. So the largest
# move is no criterion (it refused that model); the mean is: a broken conversion (another network's weights, a wrong
# layout) moves probabilities by tenths on average. What a user's mask loses is judged by ``auto``'s mask gate on
# real photos.
BF16_PROBABILITY_TOLERANCE = 0.02  # mean absolute probability difference
MAX_SHAPES = 8  # compiled shapes kept per network (window batches, resize inputs); least recently used goes


def openvino_available() -> bool:
    """Whether the ``openvino`` package imports (it is part of the ``serve`` extra)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoNetwork:
    """An OpenVINO model as an array network (logits out).

    ``path`` is an IR ``.xml`` (or ONNX) file; ``precision`` is ``f32``, ``bf16`` or ``int8`` (int8 files run their
    non-quantised layers in f32); ``threads`` the inference threads (None: all cores); ``blob_cache`` a folder for
    OpenVINO's compiled-model cache.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        precision: str = "f32",
        threads: int | None = None,
        blob_cache: Path | None = None,
    ) -> None:
        import openvino as ov

        self.path = Path(path)
        self.precision = precision
        self.core = ov.Core()
        if blob_cache is not None:
            self.core.set_property({"CACHE_DIR": str(blob_cache)})
        self.config = {
            "INFERENCE_NUM_THREADS": threads or os.cpu_count() or 1,
            "PERFORMANCE_HINT": "LATENCY",
            # OpenVINO picks bf16 by itself on CPUs that have it: f32 and int8 must say f32.
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        self.model = self.core.read_model(str(path))
        # Per input shape: the compiled model and one infer request per thread (a request is not thread-safe).
        self._compiled: OrderedDict[tuple[int, ...], tuple[Any, dict[int, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def _request_for(self, shape: tuple[int, ...]) -> Any:
        with self._lock:
            entry = self._compiled.get(shape)
            if entry is None:
                model = self.model.clone()
                model.reshape({model.inputs[0].any_name: list(shape)})
                entry = self._compiled[shape] = (self.core.compile_model(model, "CPU", self.config), {})
                while len(self._compiled) > MAX_SHAPES:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(shape)
            compiled, requests = entry
            thread = threading.get_ident()
            if thread not in requests:
                requests[thread] = compiled.create_infer_request()
            return requests[thread]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, 1, H, W] of a float batch [N, 3, H, W] in [0, 1]."""
        array = np.ascontiguousarray(batch, dtype=np.float32)
        result = self._request_for(tuple(array.shape)).infer({0: array})
        return np.array(result[0], dtype=np.float32, copy=True)


def convert_to_ir(onnx_path: Path, folder: Path) -> tuple[Path, ExportRecord]:
    """OpenVINO IR (``openvino/<onnx stem>.xml`` + ``.bin``, weights kept f32) of ``onnx_path``, converted once and
    reused while the ONNX file's hash is unchanged; returns its path and record."""
    import openvino as ov

    target = folder / "openvino" / f"{onnx_path.stem}.xml"
    key = f"openvino/{target.name}"
    source_hash = file_sha256(onnx_path)
    record = read_meta(folder).get(key, {})
    if target.is_file() and target.with_suffix(".bin").is_file() and record.get("onnx_sha256") == source_hash:
        return target, export_record(target, "convert", True, record)
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    temporary = target.with_name(f"{target.stem}.{os.getpid()}.tmp.xml")
    try:
        ov.save_model(ov.Core().read_model(str(onnx_path)), str(temporary), compress_to_fp16=False)
        os.replace(temporary.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(temporary, target)
    except Exception as exc:
        raise BackendError(f"OpenVINO conversion failed: {type(exc).__name__}: {exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_suffix(".bin").unlink(missing_ok=True)
    record = {
        "onnx_sha256": source_hash,
        "sha256": file_sha256(target.with_suffix(".bin")),
        "seconds": round(time.perf_counter() - start, 2),
    }
    update_meta(folder, key, record)
    return target, export_record(target, "convert", False, record)


def bf16_mismatch(diff: dict[str, float]) -> bool:
    """Whether a bf16 network's :func:`~vessel_lightning.models.onnx.compare` result shows a broken conversion: a
    mean probability move over :data:`BF16_PROBABILITY_TOLERANCE` (rounding stays far below)."""
    return diff["probability_mean"] > BF16_PROBABILITY_TOLERANCE


def build_openvino(backend: str, base: CheckedExport) -> BackendResult:
    """The OpenVINO network for ``backend`` (``openvino``, ``openvino-bf16``, ``openvino-int8``) from the checked
    fp32 ONNX file in ``base.folder``, compared with its ONNX Runtime network; raises :class:`BackendError`."""
    reference, exports, contract, folder = base.reference, [base.record], base.contract, base.folder
    calibration, threads = base.calibration, base.threads
    if not openvino_available():
        raise BackendError(f"{backend} needs the openvino package (pip install 'vessel-lightning[serve]')")
    precision = PRECISIONS[backend]
    onnx_path = folder / FP32_FILE
    if precision == "int8":
        onnx_path, int8_record = int8_onnx(folder, contract, calibration)
        exports = [*exports, int8_record]
    ir_path, ir_record = convert_to_ir(onnx_path, folder)
    try:
        compiled = OpenVinoNetwork(ir_path, precision, threads, blob_cache=folder / "openvino" / "blobs")
        diff = compare(reference, compiled, contract.size)
    except Exception as exc:
        raise BackendError(f"OpenVINO {precision} failed: {type(exc).__name__}: {exc}") from exc
    limit = {"f32": FP32_TOLERANCE, "bf16": BF16_PROBABILITY_TOLERANCE}.get(precision)
    # int8 is judged by its masks (auto's gate), not by a tensor tolerance.
    refused = {"f32": fp32_mismatch(diff), "bf16": bf16_mismatch(diff)}
    if refused.get(precision, False):
        raise BackendError(
            f"OpenVINO {precision} differs from fp32 ONNX Runtime by {diff} (> {limit}); not used"
        )
    return BackendResult(
        compiled,
        backend,
        precision={"f32": "fp32"}.get(precision, precision),
        exports=[*exports, ir_record],
        check={"max_abs_diff_vs_fp32": diff, "tolerance": limit},
    )
