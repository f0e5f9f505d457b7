"""``init_from``: a network starts from another model's weights wherever names and shapes match."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers.train import (
    compose_train,
    data_overrides,
    mlflow_runs,
    small_overrides,
)
from vessel_lightning.models.networks import build_network
from vessel_lightning.tracking.train import train
from vessel_lightning.tracking.warm_start import WarmStartError, warm_start

LEAN = [128, 64, 32, 16, 8]


B0_CONFIG = {"encoder_name": "efficientnet-b0"}


def _b0(**kw) -> torch.nn.Module:
    return build_network(**B0_CONFIG, encoder_weights=None, **kw)


def _save_ckpt(network: torch.nn.Module, path: Path) -> Path:
    """A file laid out like a Lightning checkpoint of VesselSegmenter (``net.`` prefixed state dict)."""
    torch.save({"state_dict": {f"net.{k}": v for k, v in network.state_dict().items()}, "epoch": 3}, path)
    return path


def _encoder_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    mine, theirs = a.model.encoder.state_dict(), b.model.encoder.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_lean_decoder_takes_the_encoder_of_a_standard_b0(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _b0()
    torch.manual_seed(1)
    lean = _b0(decoder_channels=LEAN)
    decoder_before = {k: v.clone() for k, v in lean.model.decoder.state_dict().items()}
    assert not _encoder_equal(lean, source)

    report = warm_start(lean, str(_save_ckpt(source, tmp_path / "best.ckpt")))

    assert _encoder_equal(lean, source)
    assert report.loaded >= len(source.model.encoder.state_dict())
    assert report.shape_mismatch > 0 and report.not_in_source == 0  # decoder/head: same names, other shapes
    # A decoder tensor with another shape kept its own initialisation.
    changed = [k for k, v in lean.model.decoder.state_dict().items() if not torch.equal(v, decoder_before[k])]
    mismatched = [
        k
        for k, v in lean.model.decoder.state_dict().items()
        if v.shape != source.model.decoder.state_dict()[k].shape
    ]
    assert mismatched and not set(mismatched) & set(changed)


def test_a_source_that_shares_nothing_or_is_missing_is_an_error(tmp_path: Path) -> None:
    plain = build_network(arch="unet_plain", width=8, encoder_weights=None)
    ckpt = _save_ckpt(_b0(), tmp_path / "b0.ckpt")
    with pytest.raises(WarmStartError, match=r"no weight of .*b0\.ckpt matches this network"):
        warm_start(plain, str(ckpt))
    with pytest.raises(WarmStartError, match=r"checkpoint .*absent\.ckpt does not exist"):
        warm_start(plain, str(tmp_path / "absent.ckpt"))
    torch.save({"weights": 1}, tmp_path / "other.ckpt")
    with pytest.raises(WarmStartError, match="has no state_dict"):
        warm_start(plain, str(tmp_path / "other.ckpt"))


@pytest.mark.slow  # trains
def test_train_starts_from_a_logged_model_and_tags_the_run(
    tiny_prepared: DictConfig,
    tmp_path: Path,
    mlflow_env: str,
) -> None:
    import mlflow

    from vessel_lightning.contract import ModelContract
    from vessel_lightning.tracking.model_logging import log_network
    from vessel_lightning.tracking.store import ensure_experiment, ensure_store

    ensure_store(mlflow_env)
    mlflow.set_tracking_uri(mlflow_env)
    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow_env, "source"))
    torch.manual_seed(5)
    source = _b0()
    contract = ModelContract(encoder="efficientnet-b0", dataset="masks", size=(64, 64), threshold=0.5)
    with mlflow.start_run() as run:
        log_network(source, B0_CONFIG, contract, run.info.run_id)

    runs = tmp_path / "runs"
    overrides = [
        *data_overrides(tiny_prepared),
        *small_overrides(runs),
        f"init_from=runs:/{run.info.run_id}/model",
        f"model.net.decoder_channels=[{','.join(map(str, LEAN))}]",
        "train=false",
        "test=false",
    ]
    _, objects = train(compose_train(overrides, runs / "train" / "job"))

    assert _encoder_equal(objects["model"].net, source)
    (trained,) = [r for r in mlflow_runs(mlflow_env) if r.info.run_id != run.info.run_id]
    assert trained.data.tags["init_from"] == f"runs:/{run.info.run_id}/model"
    lean = objects["model"].net.state_dict()
    fitting = sum(1 for k, v in source.state_dict().items() if lean[k].shape == v.shape)
    assert trained.data.tags["init_from.loaded"].startswith(f"{fitting} tensors from runs:/")
