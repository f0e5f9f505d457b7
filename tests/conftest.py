"""Shared fixtures: the real data folder (skip when absent), synthetic data sets, composed configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    """``VESSEL_DATA_DIR``, else ``../shared/data`` beside the repository; None when neither exists."""
    for candidate in (os.environ.get("VESSEL_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read a real data set (the ``data_dir`` fixture) are slow: ``make test-fast`` leaves them out."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real data not found: set VESSEL_DATA_DIR (CI sets it)")
    return found


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose a root config from ``conf/`` the way the CLI does (no Hydra run, no chdir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)


def data_config(overrides: list[str]) -> DictConfig:
    """The resolved ``data`` node of ``prepare.yaml`` with ``overrides`` applied (detached from the root)."""
    cfg = compose("prepare", overrides)
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))


def synthetic_eye(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A reddish photo with darker random curved vessels of 1-4 px, and their binary mask."""
    mask_img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_img)
    for _ in range(int(rng.integers(4, 8))):
        points = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(4)]
        draw.line(points, fill=255, width=int(rng.integers(1, 5)))
    mask = (np.asarray(mask_img) > 0).astype(np.uint8)
    base = np.array([190, 90, 60], dtype=np.float32)
    photo = base + rng.normal(0, 8, size=(height, width, 3))
    photo[mask > 0] *= 0.55
    return np.clip(photo, 0, 255).astype(np.uint8), mask


def make_masks_folder(root: Path, count: int = 6, size: tuple[int, int] = (64, 80), seed: int = 0) -> Path:
    """A generic ``masks`` layout (images/*.png + masks/*.png) with synthetic vessels; returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo, mask = synthetic_eye(rng, *size)
        Image.fromarray(photo).save(root / "images" / f"eye_{i:02d}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"eye_{i:02d}.png")
    return root


@pytest.fixture
def tiny_prepared(tmp_path: Path) -> DictConfig:
    """A prepared synthetic data set (6 images at 64×64: 4 train, 1 val, 1 test) as a resolved ``data`` config.

    Training tests compose their root config and put this node in place of ``data``.
    """
    from vessel_lightning.data.prepare import prepare

    root = make_masks_folder(tmp_path / "raw", count=6, size=(64, 80))
    cfg = data_config(
        [
            "data=masks",
            f"data.root={root}",
            f"data.prepared_dir={tmp_path / 'prepared'}",
            "data.size=64",
            "data.val_fraction=0.2",
            "data.test_fraction=0.2",
            "data.batch_size=2",
            "data.workers=0",
        ]
    )
    prepare(cfg, progress=False)
    return cfg


def manifest_of(cfg: Any) -> dict[str, Any]:
    from vessel_lightning.data.prepare import read_manifest

    return read_manifest(cfg.prepared_dir)


def store_uri(tmp_path: Path) -> str:
    """The URI of the embedded MLflow store a test keeps in ``tmp_path`` (not created here)."""
    return f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh embedded MLflow store in tmp (its URI; also $MLFLOW_TRACKING_URI and MLflow's global tracking URI,
    restored afterwards)."""
    import mlflow

    from vessel_lightning.tracking.store import ensure_store

    uri = store_uri(tmp_path)
    ensure_store(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def network():
    """A B0 U-Net (random weights, seed 0, eval mode), shared by a module's tests."""
    import torch

    from vessel_lightning.models.networks import build_network

    torch.manual_seed(0)
    return build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()


@pytest.fixture
def mlflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow at a fresh SQLite store in ``tmp_path``; return its URI."""
    uri = store_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
