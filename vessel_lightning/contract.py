"""The model contract: what a registered network takes and returns, logged with every MLflow model.

Evaluation, batch prediction and the API read it instead of guessing (or reading today's config defaults):
input channels and value range, the size the network was trained at (or its tile size), the threshold tuned
on the validation split, the encoder, the data set and the metrics at logging time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CONTRACT_KEY = "contract"
CONTRACT_VERSION = 1


NETWORK_FILE = "network.pt"  # a training job's exported network (weights + plain config), under artifacts/
CONTRACT_FILE = "contract.json"  # beside it: the model contract


class ContractError(ValueError):
    """A model without a usable contract; the message names the model."""


@dataclass(frozen=True)
class ModelContract:
    """What a network takes and returns (MONAI-bundle style metadata)."""

    encoder: str
    arch: str = "unet"
    mode: str = "resize"  # resize: whole image resized to `size` | tiles: sliding window of `size`
    size: tuple[int, int] = (512, 512)  # (height, width) trained at, or the tile size
    threshold: float = 0.5  # recommended, tuned on the validation split
    dataset: str = ""
    in_channels: int = 3
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    output: str = "logits [N, 1, H, W]; sigmoid gives the vessel probability"
    input_divisor: int = 32  # H and W must be multiples of this
    metrics: dict[str, float] = field(default_factory=dict)
    split: dict[str, float] = field(
        default_factory=dict
    )  # val_fraction, test_fraction, seed of the training data
    fov_diameter: float | None = (
        None  # median field-of-view diameter (px) of the training photos; for scale=auto
    )
    version: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        out = asdict(self)
        out["size"], out["value_range"] = list(self.size), list(self.value_range)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> ModelContract:
        """Rebuild from :meth:`to_dict` output; raises :class:`ContractError` naming ``source`` if invalid."""
        try:
            values = dict(data)
            values["size"] = tuple(int(v) for v in values["size"])
            values["value_range"] = tuple(float(v) for v in values.get("value_range", (0.0, 1.0)))
            known = set(cls.__dataclass_fields__)
            contract = cls(**{k: v for k, v in values.items() if k in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"{source}: invalid model contract ({exc})") from exc
        if contract.mode not in ("resize", "tiles"):
            raise ContractError(f"{source}: contract mode must be 'resize' or 'tiles', not {contract.mode!r}")
        return contract
