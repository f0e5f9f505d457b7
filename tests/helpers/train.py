"""Helpers and fixtures for the training tests: synthetic samples, shrunk configs, the CLI in a subprocess.

Test modules import the fixtures they use from here (pytest reads fixtures only from conftest.py and the
test module itself).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from lightning import Callback, Trainer
from omegaconf import DictConfig, open_dict

from tests.helpers.data import compose

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = 64


def synthetic_sample(seed: int, size: int = TINY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (RGB image uint8, vessel mask bool, FOV bool) of a fundus-like picture with dark line vessels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    fov = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= (size * 0.47) ** 2
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(4):
        # A straight "vessel" 2-3 px wide through a random point at a random angle.
        cy, cx, angle = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(0, np.pi)
        dist = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
        mask |= dist <= rng.uniform(1.0, 1.6)
    mask &= fov
    image = np.empty((size, size, 3))
    image[..., 0], image[..., 1], image[..., 2] = 0.75, 0.45, 0.25
    image[mask] *= 0.45
    image += rng.normal(0, 0.03, image.shape)
    image[~fov] = 0.02
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), mask, fov


def data_overrides(data_cfg: DictConfig) -> list[str]:
    """Hydra overrides that reproduce a ``tiny_prepared`` data node (so the CLI and compose use the same data)."""
    return [
        f"data={data_cfg.name}",
        f"data.root={data_cfg.root}",
        f"data.prepared_dir={data_cfg.prepared_dir}",
        f"data.size={data_cfg.size}",
        f"data.val_fraction={data_cfg.val_fraction}",
        f"data.test_fraction={data_cfg.test_fraction}",
        f"data.batch_size={data_cfg.batch_size}",
        "data.workers=0",
        "data.num_workers=0",
    ]


def small_overrides(runs_dir: Path | str) -> list[str]:
    """Hydra overrides that shrink training to a few CPU steps of a randomly initialised B0."""
    return [
        f"paths.runs_dir={runs_dir}",
        "model.encoder_weights=null",
        "model.num_samples=2",
        "trainer=cpu",
        "trainer.precision=32-true",  # the same numerics on every CPU (bf16 units or not)
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        "~callbacks.rich_progress_bar",
        "callbacks.mlflow_artifacts.figure_every_n_epochs=1",
        "callbacks.mlflow_artifacts.log_model=false",  # logging a model costs seconds; one test turns it on
        "callbacks.serving_cost.size=64",  # the cost columns exist without timing 512² forwards in every test
    ]


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose ``conf/train.yaml`` with ``overrides`` (with the hydra node, set as the current HydraConfig)."""
    cfg = compose("train", overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        # hydra.main hands jobs the config without its hydra node.
        del cfg["hydra"]
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
    return cfg


def run_train_cli(
    args: list[str], cwd: Path, env: dict[str, str | None] | None = None, timeout: int = 240
) -> subprocess.CompletedProcess:
    """Run ``python -m vessel_lightning.tracking.train <args>`` in ``cwd``; return the finished process.

    ``env`` entries are added to the environment; those with value None are removed from it.
    """
    full_env = {**os.environ, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-m", "vessel_lightning.tracking.train", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class CrashAfterSteps(Callback):
    """Raises after ``steps`` optimizer steps: stands in for a training killed mid-way."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: Trainer, *args: object) -> None:
        if trainer.global_step >= self.steps:
            raise RuntimeError(f"simulated crash after {trainer.global_step} steps")


def mlflow_runs(uri: str) -> list:
    """Return every run in the store at ``uri`` (all experiments, active or not)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(ids, run_view_type=ViewType.ALL)


def sweep_runs(uri: str) -> tuple[object, list]:
    """Return ``(parent, jobs)`` of the one sweep in the store at ``uri``; fails unless every other run nests
    under the parent (tag ``mlflow.parentRunId``)."""
    runs = mlflow_runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    jobs = [r for r in runs if r is not parent]
    assert all(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in jobs)
    return parent, jobs


def artifact_paths(uri: str, run_id: str, path: str | None = None) -> list[str]:
    """Return the paths of all files logged as artifacts of a run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found: list[str] = []
    for item in client.list_artifacts(run_id, path):
        found.extend(artifact_paths(uri, run_id, item.path) if item.is_dir else [item.path])
    return found


def synthetic_items(seeds: list[int]) -> list[dict[str, torch.Tensor]]:
    """Data-module-style items (``image``, ``mask``, ``fov`` tensors) of ``synthetic_sample`` pictures."""
    items = []
    for seed in seeds:
        image, mask, fov = synthetic_sample(seed)
        items.append(
            {
                "image": torch.from_numpy(image).permute(2, 0, 1).float() / 255,
                "mask": torch.from_numpy(mask)[None].float(),
                "fov": torch.from_numpy(fov)[None].float(),
            }
        )
    return items


def quiet_trainer(root: Path, **kwargs: object) -> Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar or summary; ``kwargs`` go to the Trainer."""
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


def prepare_process(root: Path, out: Path, workers: int = 0) -> subprocess.Popen:
    """``vessel-prepare`` of a ``masks`` folder at 256² in a child process (output discarded)."""
    command = [
        sys.executable,
        "-m",
        "vessel_lightning.data.prepare",
        "data=masks",
        f"data.root={root}",
        f"data.prepared_dir={out}",
        f"data.workers={workers}",
        "data.size=256",
        f"hydra.run.dir={out.parent / 'hydra'}",
    ]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
