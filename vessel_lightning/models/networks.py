"""The segmentation network: an smp model with its input normalization inside, built from plain values.

Inference (evaluation, serving) imports only this module, so it must not depend on training code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

# ImageNet statistics: what every smp `efficientnet-bN` "imagenet" config.json holds; used when the config
# file is not in the local cache, since smp's own lookup (`get_preprocessing_params`) downloads it.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

NETWORK_FILE_FORMAT = "vessel-network-v1"


class NormalizedSegmenter(nn.Module):
    """Wraps a segmentation model so that it takes float images in [0, 1] and returns logits.

    The mean and std are buffers, so they travel with the state dict and no caller can get preprocessing wrong.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Take float images [N, 3, H, W] in [0, 1]; return logits [N, 1, H, W]."""
        return self.model((image - self.mean) / self.std)


def _pretrained_settings(encoder_name: str, encoder_weights: str) -> dict[str, str]:
    from segmentation_models_pytorch.encoders import encoders

    if encoder_name not in encoders:
        raise KeyError(f"unknown encoder {encoder_name!r}; smp knows {sorted(encoders)}")
    settings = encoders[encoder_name]["pretrained_settings"]
    if encoder_weights not in settings:
        raise KeyError(
            f"encoder {encoder_name!r} has no {encoder_weights!r} weights; choose one of {sorted(settings)}"
        )
    return settings[encoder_weights]


def _cached_hub_file(repo_id: str, filename: str, revision: str) -> Path | None:
    # Looks only in the local Hugging Face cache: never touches the network (smp's own download retries ~25 s).
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def hub_cache_hint(encoder_name: str, encoder_weights: str = "imagenet") -> str:
    """Return a human-readable note on where pretrained encoder weights must be placed to load offline."""
    settings = _pretrained_settings(encoder_name, encoder_weights)
    repo_id, revision = settings["repo_id"], settings["revision"]
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
    return (
        f"Put config.json and model.safetensors of the Hugging Face repo {repo_id} (revision {revision}) in "
        f"{folder}/ (on a connected machine: `hf download {repo_id} --revision {revision}`, then copy "
        f"{Path(constants.HF_HUB_CACHE)}), or give model.weights_path=<file.safetensors|.pth> "
        f"(the encoder's state dict), or set model.encoder_weights=null to train from scratch."
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub's host accepts a TCP connection within ``timeout`` seconds (answers at once
    where name resolution fails, instead of the hub client's ~25 s of retries). True behind an HTTPS proxy,
    which only the download itself can try."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _fetch_hub_file(repo_id: str, filename: str, revision: str, what: str, hint: str) -> Path:
    """The file from the local Hugging Face cache, else downloaded into it (with a progress bar), as smp does.

    Raises FileNotFoundError saying why (``HF_HUB_OFFLINE=1``, the hub cannot be reached, the download failed)
    and ``hint`` when there is no local copy and none can be fetched.
    """
    found = _cached_hub_file(repo_id, filename, revision)
    if found is not None:
        return found
    from huggingface_hub import constants, hf_hub_download

    missing = f"no local copy of {what}"
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(f"{missing}, and HF_HUB_OFFLINE=1 forbids downloading it. {hint}")
    if not _hub_reachable():
        raise FileNotFoundError(
            f"{missing}, and {constants.ENDPOINT} cannot be reached to download it. {hint}"
        )
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except Exception as exc:  # any network or HTTP failure: the same advice
        raise FileNotFoundError(f"{missing}; downloading it from {repo_id} failed ({exc}). {hint}") from exc


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Accept a bare state dict or one wrapped the way training scripts often save it.
    return state.get("state_dict", state) if isinstance(state, dict) else state


def resolve_encoder_weights(
    encoder_name: str, encoder_weights: str | None, weights_path: str | os.PathLike | None = None
) -> Path | None:
    """Find the file holding the encoder's pretrained weights: ``weights_path``, the local Hugging Face cache, or
    a download into that cache from smp's hub repository (as smp does) when the hub can be reached.

    Takes the encoder name, the weights name (``"imagenet"``, ``"advprop"`` or None) and an optional explicit file.
    Returns the file to load (None when no pretrained weights are wanted); offline (``HF_HUB_OFFLINE=1``, or no
    connection) raises FileNotFoundError at once, naming where to put the file.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"encoder weights file {path} does not exist")
        return path
    if encoder_weights is None:
        return None
    settings = _pretrained_settings(encoder_name, encoder_weights)
    return _fetch_hub_file(
        settings["repo_id"],
        "model.safetensors",
        settings["revision"],
        f"the {encoder_weights!r} weights for {encoder_name!r}",
        hub_cache_hint(encoder_name, encoder_weights),
    )


def preprocessing_params(
    encoder_name: str, encoder_weights: str | None = "imagenet"
) -> dict[str, list[float]]:
    """Return ``{"mean": [...], "std": [...]}`` for an encoder, read offline.

    Reads the config.json smp's ``get_preprocessing_params`` would download when it is in the local Hugging Face
    cache; otherwise falls back to ImageNet statistics (what every smp EfficientNet imagenet config holds).
    """
    try:
        settings = _pretrained_settings(encoder_name, encoder_weights or "imagenet")
    except KeyError:
        settings = None
    if settings is not None:
        cfg_file = _cached_hub_file(settings["repo_id"], "config.json", settings["revision"])
        if cfg_file is not None:
            cfg = json.loads(cfg_file.read_text())
            return {"mean": list(cfg["mean"]), "std": list(cfg["std"])}
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def set_batchnorm_momentum(module: nn.Module, momentum: float | None) -> int:
    """Set ``momentum`` on every BatchNorm layer inside ``module``; return how many layers were changed."""
    count = 0
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = momentum
            count += 1
    return count


# Layers smp's EfficientNet encoders keep from the ImageNet classifier but never run (smp deletes only the final
# linear layer): the 1×1 head convolution to 1280+ channels and its BatchNorm. Their parameters never get a gradient,
# which DDP rejects in the first step ("parameters that were not used in producing the loss").
CLASSIFIER_LEFTOVERS: dict[str, tuple[str, ...]] = {
    "EfficientNetEncoder": ("_conv_head", "_bn1"),  # efficientnet-bN (and the timm-efficientnet family below)
    "EfficientNetBaseEncoder": ("conv_head", "bn2"),
}


def _leftover_names(encoder: nn.Module) -> tuple[str, ...]:
    for cls in type(encoder).__mro__:
        if cls.__name__ in CLASSIFIER_LEFTOVERS and all(
            hasattr(encoder, name) for name in CLASSIFIER_LEFTOVERS[cls.__name__]
        ):
            return CLASSIFIER_LEFTOVERS[cls.__name__]
    return ()


def _skip_removed_layers(
    names: tuple[str, ...],
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    *args: Any,
) -> None:
    # Weights saved before the layers were removed (registered models, checkpoints, smp's pretrained files)
    # still load: their entries for the removed layers are dropped.
    for key in [k for k in state_dict if k.startswith(tuple(f"{prefix}{n}." for n in names))]:
        del state_dict[key]


def drop_classifier_leftovers(encoder: nn.Module) -> tuple[str, ...]:
    """Remove the classifier layers an smp EfficientNet encoder builds but never runs (:data:`CLASSIFIER_LEFTOVERS`),
    so every parameter left gets a gradient. State dicts that still hold them load as before (their entries are
    ignored). Returns the names removed (none for other encoders)."""
    import functools

    names = _leftover_names(encoder)
    if not names:
        return ()
    for name in names:
        delattr(encoder, name)
    encoder.register_load_state_dict_pre_hook(functools.partial(_skip_removed_layers, names))
    return names


class _Fp32DepthwiseOnCpu:
    """Mixed into a depthwise convolution: under CPU autocast it computes in float32 and returns autocast's dtype.

    oneDNN's bf16 depthwise convolutions are slow on the CPU, in the backward pass above all: in a B0 training step
    (batch 8 of 256², bf16 autocast, channels_last) the 16 depthwise convolutions' backward took 355 of the step's
    ~950 ms; computed in float32 the step took 0.80 s instead of 0.97 s (``experiments/bench_train_step.py
    --precisions bf16 bf16-dwfp32``). The output goes back to the autocast dtype, so every other layer sees what it
    saw before. GPU autocast and plain float32 are left alone (cuDNN's half-precision depthwise kernels are fast).
    """

    # A mixin: the convolution class it is mixed into has the forward that mypy cannot see here.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float()).to(torch.get_autocast_dtype("cpu"))  # type: ignore[misc]
        return super().forward(x)  # type: ignore[misc]


_FP32_DEPTHWISE: dict[type, type] = {}


def _fp32_depthwise_class(cls: type) -> type:
    """The subclass of ``cls`` with :class:`_Fp32DepthwiseOnCpu` mixed in, one per class, importable by name from
    this module (so a pickled network finds it)."""
    if cls not in _FP32_DEPTHWISE:
        name = f"Fp32DepthwiseOnCpu_{cls.__module__.replace('.', '_')}_{cls.__qualname__.replace('.', '_')}"
        subclass = type(name, (_Fp32DepthwiseOnCpu, cls), {"__module__": __name__})
        globals()[name] = subclass
        _FP32_DEPTHWISE[cls] = subclass
    return _FP32_DEPTHWISE[cls]


def fp32_depthwise_on_cpu(module: nn.Module) -> int:
    """Make every depthwise convolution in ``module`` compute in float32 under CPU autocast (see
    :class:`_Fp32DepthwiseOnCpu`); parameters, state-dict keys and results outside CPU autocast are unchanged.
    Returns how many convolutions were changed (16 in an EfficientNet-B0 encoder)."""
    count = 0
    for layer in module.modules():
        if isinstance(layer, _Fp32DepthwiseOnCpu):
            count += 1
        elif isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels:
            layer.__class__ = _fp32_depthwise_class(type(layer))
            count += 1
    return count


@torch.no_grad()
def recalibrate_batchnorm(network: nn.Module, images: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm layer's running statistics as the plain average over ``images`` batches.

    Takes the network and an iterable of float image batches [N, 3, H, W] in [0, 1] (already on the network's
    device); runs them through the network in train mode without gradients, then restores each layer's
    momentum and the network's mode. Returns the number of batches seen. Fixes eval-mode predictions of short
    runs whose running statistics have not settled (smp's EfficientNet momentum 0.01).
    """
    from torch.optim.swa_utils import update_bn

    count = 0

    def counted() -> Iterator[torch.Tensor]:
        nonlocal count
        for batch in images:
            count += 1
            yield batch

    update_bn(counted(), network)  # PyTorch's SWA re-estimation: reset, momentum None, train mode, no grad
    return count


def build_network(
    arch: str = "unet",
    encoder_name: str = "efficientnet-b0",
    encoder_weights: str | None = None,
    weights_path: str | os.PathLike | None = None,
    bn_momentum: float | None = 0.1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> NormalizedSegmenter:
    """Build the segmentation network from plain values.

    Takes the architecture (``unet``: smp Unet; ``transunet``: :class:`TransUNet`, the same U-Net with
    transformer blocks at stride 32; ``unet_plain``: :class:`PlainUNet`, no encoder; any other smp name such as
    ``unetplusplus``), the encoder name, the encoder weights (``"imagenet"`` or None; read only from
    ``weights_path`` or the local Hugging Face cache), the momentum for every encoder BatchNorm layer (smp's
    EfficientNet encoders default to 0.01, which leaves the running statistics unsettled for hundreds of steps;
    0.1 is PyTorch's usual value), optional mean/std overrides, and the architecture's own keyword arguments
    (e.g. ``decoder_channels``; ``hidden_size``, ``num_layers``, ``num_heads`` for transunet; ``width``,
    ``depth`` for unet_plain). Returns a module mapping float images [N, 3, H, W] in [0, 1] to logits
    [N, 1, H, W].
    """
    from vessel_lightning.models.architectures import PlainUNet, TransUNet

    if arch == "unet_plain":
        if encoder_weights is not None or weights_path is not None:
            raise ValueError(
                "unet_plain has no pretrained encoder: set model.encoder_weights=null and no weights_path"
            )
        model: nn.Module = PlainUNet(classes=1, **kwargs)
        if bn_momentum is not None:
            set_batchnorm_momentum(model, bn_momentum)
        return NormalizedSegmenter(
            model, mean if mean is not None else IMAGENET_MEAN, std if std is not None else IMAGENET_STD
        )

    weights_file = resolve_encoder_weights(encoder_name, encoder_weights, weights_path)
    # Weights come from resolve_encoder_weights (the cache, or our own download into it) and load below: smp itself
    # is never asked to download (its retries take ~25 s offline).
    if arch == "transunet":
        network = TransUNet(encoder_name=encoder_name, classes=1, **kwargs)
    else:
        import segmentation_models_pytorch as smp

        network = smp.create_model(
            arch, encoder_name=encoder_name, encoder_weights=None, in_channels=3, classes=1, **kwargs
        )
    drop_classifier_leftovers(network.encoder)
    if weights_file is not None:
        network.encoder.load_state_dict(_load_state_dict_file(weights_file))
    if bn_momentum is not None:
        set_batchnorm_momentum(network.encoder, bn_momentum)
    params = preprocessing_params(encoder_name, encoder_weights)
    return NormalizedSegmenter(
        network, mean if mean is not None else params["mean"], std if std is not None else params["std"]
    )


def plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``build_network`` keyword arguments that rebuild a trained network: ``config`` without the
    pretrained-weight settings (the trained weights travel beside it)."""
    return {k: v for k, v in dict(config).items() if k not in ("encoder_weights", "weights_path")}


def save_network(
    path: str | os.PathLike, network: nn.Module | Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> Path:
    """Save a network as ``{"format", "config", "state_dict"}``, loadable with ``torch.load(weights_only=True)``.

    Takes the destination, the network (or its state dict) and the plain ``build_network`` keyword arguments
    that rebuild it; returns the path written. Pretrained-weight settings are dropped: the weights are saved.
    """
    config = plain_config(config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = network.state_dict() if isinstance(network, nn.Module) else network
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    torch.save({"format": NETWORK_FILE_FORMAT, "config": config, "state_dict": state}, path)
    return path


def load_network(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> NormalizedSegmenter:
    """Load a network saved by ``save_network`` (or the ``network.pt`` artifact of a training run) in eval mode.

    Takes the file and a device; returns the rebuilt network. Needs no training code and no network access.
    """
    bundle = torch.load(path, map_location=map_location, weights_only=True)
    if bundle.get("format") != NETWORK_FILE_FORMAT:
        raise ValueError(f"{path} is not a {NETWORK_FILE_FORMAT} file")
    network = build_network(**bundle["config"], encoder_weights=None)
    network.load_state_dict(bundle["state_dict"])
    return network.eval()
