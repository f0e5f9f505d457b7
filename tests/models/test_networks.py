"""The network: normalization inside, shapes, BatchNorm momentum, offline pretrained weights, network files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from vessel_lightning.models.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_network,
    load_network,
    recalibrate_batchnorm,
    save_network,
)


def _encoder_bns(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.model.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.fixture(scope="module")
def b0() -> nn.Module:
    torch.manual_seed(0)
    return build_network(encoder_name="efficientnet-b0").eval()


def test_takes_unit_range_images_of_any_size_and_returns_logits(b0: nn.Module) -> None:
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = b0(x)
        inner = b0.model(
            (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        )
    assert out.shape == (2, 1, 64, 96)
    torch.testing.assert_close(out, inner)  # the normalization happens inside
    assert {"mean", "std"} <= set(b0.state_dict())  # and travels with the weights


def test_encoder_batchnorm_momentum_is_set_deliberately(b0: nn.Module) -> None:
    assert {bn.momentum for bn in _encoder_bns(b0)} == {0.1}
    slow = build_network(encoder_name="efficientnet-b0", bn_momentum=0.01)
    assert {bn.momentum for bn in _encoder_bns(slow)} == {0.01}


def test_momentum_decides_how_fast_running_statistics_settle() -> None:
    # Ten train-mode batches: with momentum m the running mean covers 1 - (1 - m)^10 of the way to the batch
    # mean: ~65 % at 0.1, ~10 % at smp's 0.01 (why short runs look dead in eval mode with smp's default).
    def first_bn_running_mean(momentum: float | None) -> torch.Tensor:
        torch.manual_seed(0)
        net = build_network(encoder_name="efficientnet-b0").train()
        bn = _encoder_bns(net)[0]
        bn.momentum = momentum  # None: a plain average of the batch means, i.e. where the statistics settle
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for _ in range(10):
                net(torch.rand(2, 3, 32, 32, generator=g) * 0.2 + 0.8)
        return bn.running_mean

    settled = first_bn_running_mean(None)

    def fraction(momentum: float) -> float:
        return float(first_bn_running_mean(momentum) @ settled / (settled @ settled))

    assert fraction(0.1) == pytest.approx(1 - 0.9**10, abs=0.05)
    assert fraction(0.01) == pytest.approx(1 - 0.99**10, abs=0.03)


def _no_download(*args, **kwargs):
    raise AssertionError("offline: nothing may be downloaded")


def test_imagenet_offline_without_local_copy_fails_fast_with_where_to_put_it(tmp_path, monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_download)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as info:
        build_network(encoder_name="efficientnet-b3", encoder_weights="imagenet")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "no local copy of the 'imagenet' weights" in message and "HF_HUB_OFFLINE=1" in message
    assert str(tmp_path / "hub" / "models--smp-hub--efficientnet-b3.imagenet" / "snapshots") in message
    # The advice names keys Hydra accepts (model.encoder_weights, model.weights_path), not model.net.*.
    assert "model.encoder_weights=null" in message and "model.weights_path=" in message
    assert "model.net." not in message


def test_imagenet_with_the_hub_unreachable_fails_fast_without_trying(tmp_path, monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    from vessel_lightning.models import networks

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(networks, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_download)
    with pytest.raises(FileNotFoundError, match="cannot be reached") as info:
        build_network(encoder_name="efficientnet-b0", encoder_weights="imagenet")
    assert constants.ENDPOINT in str(info.value)


def test_imagenet_weights_are_downloaded_into_the_cache_when_the_hub_answers(tmp_path, monkeypatch) -> None:
    """The online path: smp's hub repository and revision are asked for model.safetensors, and the file the hub
    client returns is what the encoder loads (the hub client is replaced: this machine has no network)."""
    import huggingface_hub
    from huggingface_hub import constants
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import encoders

    from vessel_lightning.models import networks

    settings = encoders["efficientnet-b0"]["pretrained_settings"]["imagenet"]
    state = _fake_pretrained_encoder_state()
    calls = []

    def fake_download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename, revision))
        path = tmp_path / "downloaded" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path))
        return str(path)

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(networks, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    net = build_network(encoder_name="efficientnet-b0", encoder_weights="imagenet")
    assert calls == [(settings["repo_id"], "model.safetensors", settings["revision"])]
    key = "_conv_stem.weight"
    torch.testing.assert_close(net.model.encoder.state_dict()[key], state[key])

    def failing_download(*args, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(
        FileNotFoundError, match=r"downloading it from smp-hub/efficientnet-b0\.imagenet failed"
    ):
        build_network(encoder_name="efficientnet-b0", encoder_weights="imagenet")


def test_missing_weights_path_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_network(encoder_weights="imagenet", weights_path=tmp_path / "missing.safetensors")


def _fake_pretrained_encoder_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    donor = build_network(encoder_name="efficientnet-b0")
    return {k: v.clone() for k, v in donor.model.encoder.state_dict().items()}


def test_imagenet_weights_load_from_the_hugging_face_cache_layout(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders["efficientnet-b0"]["pretrained_settings"]["imagenet"]
    snapshot = (
        tmp_path / "hub" / "models--smp-hub--efficientnet-b0.imagenet" / "snapshots" / settings["revision"]
    )
    snapshot.mkdir(parents=True)
    state = _fake_pretrained_encoder_state()
    save_file(state, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]}))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    net = build_network(encoder_name="efficientnet-b0", encoder_weights="imagenet")
    key = "_conv_stem.weight"
    torch.testing.assert_close(net.model.encoder.state_dict()[key], state[key])
    torch.testing.assert_close(net.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert {bn.momentum for bn in _encoder_bns(net)} == {0.1}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_imagenet_weights_load_from_a_local_file(tmp_path, suffix: str) -> None:
    state = _fake_pretrained_encoder_state()
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    net = build_network(encoder_name="efficientnet-b0", encoder_weights="imagenet", weights_path=path)
    key = "_blocks.3._depthwise_conv.weight"
    torch.testing.assert_close(net.model.encoder.state_dict()[key], state[key])


def test_network_file_round_trip(b0: nn.Module, tmp_path: Path) -> None:
    path = save_network(
        tmp_path / "network.pt", b0, {"encoder_name": "efficientnet-b0", "encoder_weights": "x"}
    )
    loaded = load_network(path)
    assert not loaded.training
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), b0(x))
    assert torch.load(path, weights_only=True)["config"] == {"encoder_name": "efficientnet-b0"}


def test_models_package_imports_no_training_code() -> None:
    code = (
        "import sys, vessel_lightning.models as m; "
        "bad = [k for k in sys.modules if k.startswith(('vessel_lightning.training', 'lightning', 'mlflow', 'hydra'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_recalibrate_batchnorm_sets_the_average_batch_statistics() -> None:
    torch.manual_seed(0)
    net = build_network(encoder_name="efficientnet-b0", bn_momentum=0.01).eval()
    first = _encoder_bns(net)[0]
    seen_means = []
    hook = first.register_forward_hook(lambda mod, inp, out: seen_means.append(inp[0].mean(dim=(0, 2, 3))))
    batches = [torch.rand(2, 3, 32, 32) * 0.3 + 0.1 * i for i in range(3)]
    assert recalibrate_batchnorm(net, batches) == 3
    hook.remove()
    torch.testing.assert_close(first.running_mean, torch.stack(seen_means).mean(0), atol=1e-5, rtol=1e-4)
    assert first.momentum == 0.01 and not net.training  # restored


def test_depthwise_convolutions_compute_in_fp32_under_cpu_autocast_only(network) -> None:
    import copy
    import pickle

    from vessel_lightning.models.networks import fp32_depthwise_on_cpu

    patched = copy.deepcopy(network)
    keys = list(patched.state_dict())
    assert fp32_depthwise_on_cpu(patched) == 16  # B0's MBConv blocks
    assert fp32_depthwise_on_cpu(patched) == 16  # idempotent
    assert list(patched.state_dict()) == keys
    layer = next(m for m in patched.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
    original = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
    x = torch.randn(2, layer.in_channels, 24, 24)
    with torch.no_grad():
        assert torch.equal(layer(x), original(x))  # outside autocast: the same layer
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, slow = layer(x), original(x)
        exact = original(x)
    assert fast.dtype == slow.dtype == torch.bfloat16  # what autocast would give the next layer
    assert torch.equal(fast, exact.to(torch.bfloat16))  # computed in fp32, rounded once
    assert not torch.equal(slow, fast)  # bf16 inputs and weights: another result
    # A whole network: the same outputs outside autocast, and it survives pickling (module-level classes).
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(pickle.loads(pickle.dumps(patched))(image), network(image))


def test_the_training_module_keeps_depthwise_convolutions_fp32_unless_told() -> None:
    from vessel_lightning.models.networks import _Fp32DepthwiseOnCpu
    from vessel_lightning.training.module import VesselSegmenter

    def depthwise(**kwargs) -> list[bool]:
        module = VesselSegmenter(
            net={"encoder_name": "efficientnet-b0"}, loss={"dice": 1.0, "bce": 1.0}, optimizer=torch.optim.Adam,
            **kwargs,
        )  # fmt: skip
        return [
            isinstance(m, _Fp32DepthwiseOnCpu) for m in module.net.modules() if getattr(m, "groups", 1) > 1
        ]

    assert depthwise() == [True] * 16
    assert depthwise(cpu_fp32_depthwise=False) == [False] * 16


@pytest.mark.parametrize(
    "arch, kwargs",
    [
        ("unet", {}),
        ("unetplusplus", {}),
        ("transunet", {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "mlp_dim": 32}),
        ("unet", {"encoder_name": "timm-efficientnet-b0"}),
        ("unet_plain", {"width": 8, "depth": 2}),
    ],
)
def test_every_parameter_gets_a_gradient(arch: str, kwargs: dict) -> None:
    # DDP fails in its first step on parameters the loss never reaches (smp's EfficientNet classifier head).
    net = build_network(arch=arch, **kwargs).train()
    net(torch.rand(2, 3, 64, 64)).sum().backward()
    assert [name for name, p in net.named_parameters() if p.grad is None] == []


def test_weights_saved_with_the_classifier_leftovers_still_load() -> None:
    import segmentation_models_pytorch as smp

    from vessel_lightning.models.networks import NormalizedSegmenter

    torch.manual_seed(0)
    old = NormalizedSegmenter(
        smp.create_model("unet", encoder_name="efficientnet-b0", encoder_weights=None, classes=1),
        IMAGENET_MEAN,
        IMAGENET_STD,
    ).eval()
    assert "model.encoder._conv_head.weight" in old.state_dict()
    new = build_network(encoder_name="efficientnet-b0").eval()
    new.load_state_dict(old.state_dict())  # strict: nothing missing, the extra entries are skipped
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=0, atol=0)
    assert not any(
        k.startswith(("model.encoder._conv_head.", "model.encoder._bn1.")) for k in new.state_dict()
    )
