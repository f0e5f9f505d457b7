"""Shared fixtures: the real data folder (skip when absent), a prepared synthetic data set, a tmp MLflow store,
a B0 network. The builders they use live in ``tests/helpers/``."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers.data import data_config, make_masks_folder, real_data_dir, store_uri


@pytest.fixture(autouse=True)
def _root_handlers_restored():
    """Stream handlers a test installs on the root logger (``vessel-serve``'s logging config, run in-process) go
    when it ends: they write to the stream the test captured, which pytest then closes."""
    import logging

    root = logging.getLogger()
    before = set(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in before and type(h) is logging.StreamHandler]:
        root.removeHandler(handler)


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
