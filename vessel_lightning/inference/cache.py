"""The backend cache: one folder per registered model version (``$VESSEL_CACHE_DIR``, default
``~/.cache/vessel-lightning/onnx``) holding the checked fp32 ONNX file, its int8 and OpenVINO derivatives, the
calibration crops and ``meta.json`` (what each file is and how it was checked, and ``auto``'s decisions).

The fp32 ONNX file comes from the registered bundle (exported and checked against PyTorch when the model was
logged); a model logged before bundles carried it is exported here once, where PyTorch is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vessel_lightning.contract import ModelContract
from vessel_lightning.digest import file_sha256, value_digest
from vessel_lightning.inference.settings import BackendError, BackendSettings, ExportRecord
from vessel_lightning.models.onnx import OnnxMismatch, OnnxNetwork
from vessel_lightning.tracking.bundle import (
    BUNDLE_CALIBRATION,
    BundleError,
    ModelInfo,
    bundle_artifacts,
    download_bundle_file,
    source_uri,
)

FP32_FILE = "model.onnx"
# Changing how int8 models are calibrated changes this, so cached int8 files of an older recipe are not reused.
CALIBRATION_RECIPE = "2: native-resolution tile crops for tile models; MinMax"


def cache_folder(cache_dir: Path, info: ModelInfo, tracking_uri: str) -> Path:
    """The cache folder of one model version: readable name plus a hash of where it came from."""
    digest = value_digest([tracking_uri, info.name, info.version, info.run_id, info.uri], 12)
    name = f"{info.name or 'model'}-v{info.version or 'x'}-{digest}"
    return cache_dir / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def read_meta(folder: Path) -> dict[str, Any]:
    """The folder's ``meta.json`` (empty when absent or unreadable)."""
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Replace the folder's ``meta.json`` atomically."""
    temporary = folder / f"meta.json.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(meta, indent=2))
    os.replace(temporary, folder / "meta.json")


def update_meta(folder: Path, key: str, record: dict[str, Any]) -> None:
    """Set one entry of the folder's ``meta.json``."""
    write_meta(folder, read_meta(folder) | {key: record})


def export_record(path: Path, source: str, cached: bool, record: dict[str, Any]) -> ExportRecord:
    """What ``GET /model`` says of a file a backend runs: name, digest, size, origin and checks, no path."""
    return ExportRecord(
        file=path.name,
        sha256=record.get("sha256", ""),
        bytes=path.stat().st_size if path.exists() else 0,
        source=source,
        cached=cached,
        check={k: v for k, v in record.items() if k in ("max_abs_diff", "opset", "calibration_photos")},
        seconds=record.get("seconds"),
    )


def _fetch(model_uri: str, name: str, folder: Path) -> Path:
    """One bundle file copied into ``folder`` under its own name (downloaded beside it, then moved in)."""
    staging = folder / f".download-{os.getpid()}"
    try:
        local = download_bundle_file(model_uri, name, staging)
        target = folder / Path(name).name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(local, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fp32_onnx(
    contract: ModelContract, info: ModelInfo, module: Any | None, settings: BackendSettings, folder: Path
) -> tuple[OnnxNetwork, ExportRecord]:
    """The checked fp32 ONNX model of a version: from the cache; else the bundle's export; else exported here from
    ``module`` (PyTorch) and checked. Raises :class:`BackendError` when none of these is possible."""
    path = folder / FP32_FILE
    record = read_meta(folder).get("fp32", {})
    if path.is_file() and record.get("checked") and record.get("sha256") == file_sha256(path):
        return OnnxNetwork(path, settings.threads), export_record(path, record["source"], True, record)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    artifacts = _artifacts(info)
    if "onnx" in artifacts:
        try:
            fetched = _fetch(source_uri(info), artifacts["onnx"], folder)
        except BundleError as exc:
            raise BackendError(str(exc)) from exc
        if fetched != path:
            os.replace(fetched, path)
        record = {"source": "bundle", "checked": True} | _bundle_check(info)
    elif module is not None:
        from vessel_lightning.models.onnx import export_checked

        try:
            record = {"source": "export", "checked": True} | export_checked(module, path, contract.size)
        except OnnxMismatch as exc:
            raise BackendError(str(exc)) from exc
        except Exception as exc:
            raise BackendError(
                f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from exc
    else:
        raise BackendError(
            f"{info.uri} carries no ONNX export and PyTorch is not installed here: re-log it where PyTorch is "
            f"(vessel-relog {info.uri}), or serve it with the GPU image"
        )
    record |= {"sha256": file_sha256(path), "seconds": round(time.perf_counter() - start, 2)}
    update_meta(folder, "fp32", record)
    return OnnxNetwork(path, settings.threads), export_record(path, record["source"], False, record)


@dataclass(frozen=True)
class CheckedExport:
    """What every CPU runtime starts from: the checked fp32 ONNX network of a model version (``reference``, what
    derived networks are compared with) and its record, the contract, the version's cache folder, the calibration
    photos (None: none) and the runtime's threads."""

    reference: OnnxNetwork
    record: ExportRecord
    contract: ModelContract
    folder: Path
    calibration: Path | None
    threads: int | None


def _artifacts(info: ModelInfo) -> dict[str, str]:
    try:
        return bundle_artifacts(source_uri(info))
    except Exception:  # a folder export or a model the store cannot describe: no bundle files to fetch
        return {}


def _bundle_check(info: ModelInfo) -> dict[str, Any]:
    import mlflow.models

    from vessel_lightning.tracking.bundle import ONNX_KEY

    metadata = mlflow.models.get_model_info(source_uri(info)).metadata or {}
    return dict(metadata.get(ONNX_KEY, {}))


def calibration_folder(info: ModelInfo, settings: BackendSettings, folder: Path) -> Path | None:
    """Where calibration photos come from: ``settings.calibration_dir`` when set, else the crops the registered
    bundle carries (copied into the cache folder once), else None."""
    if settings.calibration_dir is not None:
        return Path(settings.calibration_dir)
    local = folder / BUNDLE_CALIBRATION
    if local.is_dir():
        return local
    artifacts = _artifacts(info)
    if "calibration" not in artifacts:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch(source_uri(info), artifacts["calibration"], folder)
    except BundleError:
        return None


def calibration_photos(folder: Path, limit: int = 16) -> list[Path]:
    """Up to ``limit`` photos from ``folder`` (recursively, sorted) for int8 calibration."""
    from vessel_lightning.data.images import IMAGE_EXTENSIONS

    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return found[:limit]


def calibration_inputs(
    photos: Sequence[Path], contract: ModelContract, crops: int = 4
) -> Iterator[np.ndarray]:
    """Float batches [N, 3, h, w] in [0, 1] like the ones the served network sees, one batch per photo
    (:func:`~vessel_lightning.data.images.network_crops`)."""
    from vessel_lightning.data.images import network_crops, read_rgb

    for photo in photos:
        windows = network_crops(read_rgb(photo), contract.mode, contract.size, crops)
        yield (np.stack(windows).transpose(0, 3, 1, 2).astype(np.float32) / 255.0).copy()


def calibration_id(photos: Sequence[Path]) -> str:
    """A short hash of the calibration recipe and the photos' names and sizes (names cached int8 files)."""
    return value_digest([CALIBRATION_RECIPE, *((p.name, p.stat().st_size) for p in photos)], 12)


def require_calibration(calibration: Path | None) -> list[Path]:
    """The calibration photos of ``calibration``; :class:`BackendError` when there are none."""
    if calibration is None or not Path(calibration).is_dir():
        raise BackendError(
            "int8 backends need calibration photos: set VESSEL_CALIBRATION_DIR to a folder of photos (or serve a "
            "model registered with calibration crops)"
        )
    photos = calibration_photos(Path(calibration))
    if not photos:
        raise BackendError(f"no calibration photos found in {Path(calibration).name}")
    return photos
