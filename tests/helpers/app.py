"""Builders shared by the serving tests: image bytes in every accepted (and rejected) form, a tmp registry.

No tests here; the serving test modules import these helpers.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from app.settings import Settings
from vessel_lightning.contract import ModelContract

SIZE = (70, 90)  # (height, width) of the standard test photo, not the model's 64×64


def photo(height: int = SIZE[0], width: int = SIZE[1], seed: int = 0) -> np.ndarray:
    """A random RGB uint8 photo."""
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    """``image`` saved in ``fmt`` to bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_bytes(seed: int = 0) -> bytes:
    """The standard test photo as PNG bytes."""
    return encode(photo(seed=seed))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def raw_png(width: int, height: int, depth: int = 8, color_type: int = 2, rows: bytes = b"\x00") -> bytes:
    """A PNG with a hand-made header (any declared size, even 0 or 10⁵×10⁵) and a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def multi_frame(fmt: str) -> bytes:
    """A two-frame GIF or TIFF whose frames differ in size (first 40×50, second 30×60)."""
    first = Image.fromarray(photo(40, 50, seed=1))
    second = Image.fromarray(photo(30, 60, seed=2))
    if fmt == "GIF":
        first, second = first.convert("P"), second.convert("P")
    return encode(first, fmt, save_all=True, append_images=[second])


def with_exif_orientation(rgb: np.ndarray, orientation: int = 6) -> bytes:
    """JPEG bytes carrying an EXIF orientation tag (6: rotate 90° clockwise to display)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(rgb, "JPEG", exif=exif.tobytes())


def make_registry(root: Path, versions: int = 2, mode: str = "resize") -> str:
    """A SQLite store under ``root`` with ``versions`` registered B0 models (different random weights).

    ``mode`` is their contract's (``tiles``: served by sliding window). ``champion`` points at version 1.
    Returns the tracking URI; MLflow's global URI is set to it.
    """
    import mlflow
    import torch

    from vessel_lightning.models.networks import build_network
    from vessel_lightning.tracking.model_logging import log_network
    from vessel_lightning.tracking.registry import register
    from vessel_lightning.tracking.store import ensure_experiment, ensure_store

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    ensure_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.get_tracking_uri(), "serve-test"))
    contract = ModelContract(
        encoder="efficientnet-b0",
        dataset="masks",
        size=(64, 64),
        threshold=0.4,
        metrics={"val/f1": 0.5},
        mode=mode,
    )
    for seed in range(versions):
        torch.manual_seed(seed)
        network = build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()
        with mlflow.start_run() as run:
            mlflow.log_metric("test/f1", 0.6 + seed / 10)
            log_network(network, {"encoder_name": "efficientnet-b0"}, contract, run.info.run_id)
        register(run.info.run_id, alias="champion" if seed == 0 else None)
    return uri


def app_settings(registry: str, tmp: Path, **kw) -> Settings:
    """Settings for a test service on ``registry``: PyTorch backend, no polling, small limits, no UI; ``kw``
    overrides any field."""
    base = Settings(
        tracking_uri=registry,
        backend="torch",
        reload_interval_s=0,
        max_upload_mb=1,
        max_pixels=4_000_000,
        ui_dir=tmp / "no-ui",
        cache_dir=tmp / "onnx-cache",
    )
    return dataclasses.replace(base, **kw)


def fundus_photo(
    height: int, width: int, radius: float, seed: int = 0, dark: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """A reddish disc of ``radius`` (cut by the frame when larger than it) on a nearly black, noisy surround."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    disc = (rows - height / 2 + 0.5) ** 2 + (cols - width / 2 + 0.5) ** 2 <= radius**2
    photo = rng.normal(dark, 2, (height, width, 3))
    # Fundus photos darken towards the rim; the field must still reach it.
    shade = 1 - 0.6 * np.hypot(rows - height / 2, cols - width / 2) / radius
    inside = np.stack([170 * shade, 70 * shade, 30 * shade], axis=2) + rng.normal(0, 6, (height, width, 3))
    photo[disc] = inside[disc]
    return np.clip(photo, 0, 255).astype(np.uint8), disc


def ready_client(settings: Settings):  # -> TestClient (fastapi's import kept out of the module's top)
    """A TestClient of the app entered (its lifespan started) once its model is loaded; leave it with
    ``client.__exit__(None, None, None)``."""
    from fastapi.testclient import TestClient

    from app.server import create_app

    client = TestClient(create_app(settings))
    client.__enter__()
    assert client.app.state.manager.wait_ready(120), client.app.state.manager.error
    return client
