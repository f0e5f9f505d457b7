"""Data and config builders shared by the tests: the real data folder, composed configs, synthetic photos and
folders, the test store's URI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]


def real_data_dir() -> Path | None:
    """``VESSEL_DATA_DIR``, else ``../shared/data`` beside the repository; None when neither exists."""
    for candidate in (os.environ.get("VESSEL_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None


def compose(config_name: str, overrides: list[str], *, return_hydra_config: bool = False) -> DictConfig:
    """Compose a root config from ``conf/`` the way the CLI does (no Hydra run, no chdir); with
    ``return_hydra_config`` the result keeps its ``hydra`` node."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vessel_lightning.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides, return_hydra_config=return_hydra_config)


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


def manifest_of(cfg: Any) -> dict[str, Any]:
    from vessel_lightning.data.prepare import read_manifest

    return read_manifest(cfg.prepared_dir)


def store_uri(tmp_path: Path) -> str:
    """The URI of the embedded MLflow store a test keeps in ``tmp_path`` (not created here)."""
    return f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
