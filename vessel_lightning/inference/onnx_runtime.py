"""The ONNX Runtime backends: ``onnx`` (the checked fp32 export) and ``onnx-int8`` (static QDQ: uint8 activations,
int8 per-channel weights, calibrated on real photos). int8's accuracy is not implied here: ``auto``'s mask gate
judges it, and ``experiments/backend_accuracy.py`` measures F1."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vessel_lightning.contract import ModelContract
from vessel_lightning.digest import file_sha256
from vessel_lightning.inference.cache import (
    FP32_FILE,
    CheckedExport,
    calibration_id,
    calibration_inputs,
    export_record,
    read_meta,
    require_calibration,
    update_meta,
)
from vessel_lightning.inference.settings import BackendError, BackendResult, ExportRecord
from vessel_lightning.models.onnx import OnnxNetwork, compare


def quantize_int8(fp32_path: Path, int8_path: Path, photos: Sequence[Path], contract: ModelContract) -> None:
    """Static QDQ int8 quantization (uint8 activations, int8 per-channel weights) calibrated on ``photos``
    (:func:`~vessel_lightning.inference.cache.calibration_inputs`)."""
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


def int8_onnx(folder: Path, contract: ModelContract, calibration: Path | None) -> tuple[Path, ExportRecord]:
    """The int8 QDQ ONNX model of ``folder`` (beside its checked fp32 file), calibrated on the photos of
    ``calibration`` on first use and reused afterwards; returns its path and record."""
    photos = require_calibration(calibration)
    int8_path = folder / f"model.int8-{calibration_id(photos)}.onnx"
    record = read_meta(folder).get(int8_path.name, {})
    cached = int8_path.is_file() and record.get("sha256") == file_sha256(int8_path)
    if not cached:
        start = time.perf_counter()
        try:
            quantize_int8(folder / FP32_FILE, int8_path, photos, contract)
        except Exception as exc:
            raise BackendError(f"int8 quantization failed: {type(exc).__name__}: {exc}") from exc
        record = {
            "sha256": file_sha256(int8_path),
            "calibration_photos": len(photos),
            "seconds": round(time.perf_counter() - start, 2),
        }
        update_meta(folder, int8_path.name, record)
    return int8_path, export_record(int8_path, "quantize", cached, record)


def build_onnx(backend: str, base: CheckedExport) -> BackendResult:
    """``onnx`` (the checked fp32 network itself) or ``onnx-int8`` (calibrated, compared with the fp32 one)."""
    if backend == "onnx":
        return BackendResult(base.reference, "onnx", exports=[base.record])
    int8_path, record = int8_onnx(base.folder, base.contract, base.calibration)
    int8 = OnnxNetwork(int8_path, base.threads)
    check: dict[str, Any] = {"max_abs_diff_vs_fp32": compare(base.reference, int8, base.contract.size)}
    return BackendResult(int8, "onnx-int8", precision="int8", exports=[base.record, record], check=check)
