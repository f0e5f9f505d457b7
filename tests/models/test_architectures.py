"""The three architectures (unet, transunet, unet_plain): contract, global attention, ONNX, sweep to registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from tests.helpers.train import (
    data_overrides,
    run_train_cli,
    small_overrides,
    sweep_runs,
)
from vessel_lightning.models.architectures import TransformerBottleneck, count_parameters, gflop
from vessel_lightning.models.networks import build_network, load_network, save_network

ARCHS = {
    "unet": {"arch": "unet"},
    "transunet": {"arch": "transunet", "hidden_size": 64, "num_layers": 2, "num_heads": 4, "mlp_dim": 128},
    "unet_plain": {"arch": "unet_plain", "width": 8},
}


@pytest.mark.parametrize("name", ARCHS)
def test_every_architecture_maps_01_images_to_logits_at_any_size(name: str) -> None:
    network = build_network(**ARCHS[name]).eval()
    for shape in ((1, 3, 64, 64), (2, 3, 96, 160), (1, 3, 160, 64)):  # square, wide and tall
        with torch.no_grad():
            out = network(torch.rand(*shape))
        assert out.shape == (shape[0], 1, *shape[2:]) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ARCHS)
def test_saved_network_reloads_to_the_same_outputs(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_network(**ARCHS[name]).eval()
    reloaded = load_network(save_network(tmp_path / "network.pt", network, ARCHS[name]))
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(image), network(image))


def test_transformer_attends_globally_over_a_non_square_map() -> None:
    torch.manual_seed(0)
    bottleneck = TransformerBottleneck(16, hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64).eval()
    # proj_out starts at zero (the network starts as its U-Net): give it weights to see the attention's output.
    torch.nn.init.normal_(bottleneck.proj_out.weight, std=0.5)
    features = torch.rand(1, 16, 3, 7)
    changed = features.clone()
    changed[0, :, 0, 0] += 1.0  # one token in a corner
    with torch.no_grad():
        before, after = bottleneck(features), bottleneck(changed)
    assert before.shape == features.shape
    # The far corner moves too: a 1×1-projected map can only change there through self-attention.
    assert (after - before)[0, :, 2, 6].abs().max() > 1e-4
    assert (after - before)[0, :, 1:, 1:].abs().amin(dim=0).gt(0).all()


def test_transformer_starts_as_identity_and_rejects_bad_heads() -> None:
    bottleneck = TransformerBottleneck(16, hidden_size=32, num_layers=1, num_heads=4, mlp_dim=64)
    features = torch.rand(2, 16, 4, 4)
    torch.testing.assert_close(bottleneck(features), features)
    with pytest.raises(ValueError, match="hidden_size 30 is not divisible by num_heads 4"):
        TransformerBottleneck(16, hidden_size=30, num_heads=4)


def test_unet_plain_refuses_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="unet_plain has no pretrained encoder"):
        build_network(arch="unet_plain", encoder_weights="imagenet")


def test_sizes_match_the_published_ones() -> None:
    # Ronneberger's U-Net (width 64, padded, with BatchNorm) has 31.0 M parameters (the paper's architecture, our
    # code); B0's smp Unet cost is smp's and the FLOP counter's (23.7 GFLOP at 512² with today's versions), so only
    # its structure is asserted: it grows with the pixel count, and the lean decoder costs less. The plain U-Net's
    # cost grows with width².
    assert count_parameters(build_network(arch="unet_plain", width=64)) == pytest.approx(31.04e6, rel=1e-3)
    unet = build_network(arch="unet")
    assert gflop(unet, 512, 512) / gflop(unet, 256, 256) == pytest.approx(4.0, rel=0.02)
    assert gflop(build_network(arch="unet", decoder_channels=[128, 64, 32, 16, 8])) < gflop(unet)
    narrow, wide = (gflop(build_network(arch="unet_plain", width=w), 128, 128) for w in (8, 16))
    assert wide / narrow == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize("name", ["transunet", "unet_plain"])
def test_onnx_export_matches_pytorch_at_two_sizes(name: str, tmp_path: Path) -> None:
    from vessel_lightning.models.onnx import OnnxNetwork, export_onnx

    torch.manual_seed(0)
    network = build_network(**ARCHS[name]).eval()
    if name == "transunet":
        torch.nn.init.normal_(network.model.transformer.proj_out.weight, std=0.05)
    export_onnx(network, tmp_path / "model.onnx", (64, 64))
    session = OnnxNetwork(tmp_path / "model.onnx")
    for shape in ((1, 3, 64, 64), (2, 3, 96, 160)):
        image = torch.rand(*shape)
        with torch.no_grad():
            expected = network(image)
        assert np.abs(session(image.numpy()) - expected.numpy()).max() <= 1e-4


@pytest.mark.slow
def test_multirun_over_the_three_architectures_trains_registers_and_serves(
    tiny_prepared: DictConfig,
    tmp_path: Path,
    mlflow_env: str,
) -> None:
    import mlflow

    uri = mlflow_env
    args = [
        "-m",
        "model=unet_plain,unet,transunet",
        "hydra/launcher=basic",
        *data_overrides(tiny_prepared),
        *small_overrides(tmp_path / "runs"),
        "callbacks.mlflow_artifacts.log_model=true",
        "register=true",
        "++trainer.max_steps=2",
        "trainer.max_epochs=1",
        "test=false",
    ]
    done = run_train_cli(args, cwd=tmp_path, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {r.data.tags["arch"]: r for r in sweep_runs(uri)[1]}
    assert set(runs) == {"unet_plain", "unet", "transunet"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert len({r.data.tags["sweep_id"] for r in runs.values()}) == 1
    assert runs["unet_plain"].info.run_name == "unet_plain-w64 #0"
    assert runs["transunet"].info.run_name == "transunet-efficientnet-b0 #2"

    rgb = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        _reload_and_predict(runs, rgb)
    finally:
        mlflow.set_tracking_uri(previous)


def _reload_and_predict(runs: dict, rgb: np.ndarray) -> None:
    from vessel_lightning.inference.predictor import Predictor

    for version, arch in enumerate(["unet_plain", "unet", "transunet"], start=1):
        predictor = Predictor.from_uri(f"models:/vessel-unet/{version}")
        assert predictor.info.run_id == runs[arch].info.run_id
        assert predictor.contract.arch == arch
        for shape in ((70, 90, 3), (130, 64, 3)):
            prob = predictor.predict_proba(rgb if shape == rgb.shape else np.zeros(shape, np.uint8))
            assert prob.shape == shape[:2] and 0 <= prob.min() <= prob.max() <= 1
