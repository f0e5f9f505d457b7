"""Start a network from another model's weights wherever parameter names and shapes match (``init_from``).

    vessel-train experiment=chase_b0_lean init_from=models:/vessel-unet@champion   # the champion's encoder
    vessel-train init_from=runs/train/<date>/<time>/checkpoints/best.ckpt          # a Lightning checkpoint

The usual uses: a variant of the champion with another decoder or head keeps the trained encoder; fine-tuning
a model on another data set. Tensors whose name is absent from the new network or whose shape differs are
skipped and counted; a source that shares nothing with the network is an error, not a silent cold start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class WarmStartError(ValueError):
    """``init_from`` names nothing loadable, or nothing in it fits the network; the message is one line."""


@dataclass(frozen=True)
class WarmStart:
    """What ``warm_start`` copied: tensors loaded, skipped for their shape, and left at their initialisation."""

    source: str
    loaded: int
    shape_mismatch: int
    not_in_source: int

    @property
    def summary(self) -> str:
        return (
            f"{self.loaded} tensors from {self.source}; {self.shape_mismatch} skipped (other shape), "
            f"{self.not_in_source} not in the source (kept their initialisation)"
        )


def source_state(source: str, tracking_uri: str | None = None) -> dict[str, torch.Tensor]:
    """The network state dict of a Lightning checkpoint (``*.ckpt``) or a logged model URI / folder (read from
    ``tracking_uri``, default: ``$MLFLOW_TRACKING_URI`` or the embedded store)."""
    path = Path(source).expanduser()
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise WarmStartError(f"init_from: checkpoint {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=False).get("state_dict")
        if not isinstance(state, dict):
            raise WarmStartError(f"init_from: {path} has no state_dict (not a Lightning checkpoint)")
        return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    from vessel_lightning.tracking.bundle import load_logged_model
    from vessel_lightning.tracking.registry import connect

    connect(tracking_uri)
    network, _, _ = load_logged_model(source)
    return network.state_dict()


def warm_start(network: nn.Module, source: str, tracking_uri: str | None = None) -> WarmStart:
    """Copy every tensor of ``source`` into ``network`` whose name and shape match; return the counts."""
    state = source_state(source, tracking_uri)
    own = network.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    parameters = {name for name, _ in network.named_parameters()}
    if not parameters & set(matched):  # input normalisation buffers alike are no warm start
        raise WarmStartError(
            f"init_from: no weight of {source} matches this network by name and shape "
            f"({len(state)} tensors in the source, {len(own)} in the network): another architecture?"
        )
    network.load_state_dict(matched, strict=False)
    report = WarmStart(
        source=source,
        loaded=len(matched),
        shape_mismatch=sum(1 for k, v in state.items() if k in own and own[k].shape != v.shape),
        not_in_source=sum(1 for k in own if k not in state),
    )
    log.info("init_from: %s", report.summary)
    return report
