"""The model contract: what a registered network takes and returns, logged with every MLflow model.

Evaluation, batch prediction and the API read it instead of guessing (or reading today's config defaults):
input channels and value range, the size the network was trained at (or its tile size), the threshold tuned
on the validation split, the encoder, the data set and the metrics at logging time. A leaf module: every stage
may import it. Reading one is validated (a pydantic dataclass): an unknown field or a newer contract version is
an error naming it, never a silent drop.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

CONTRACT_KEY = "contract"
CONTRACT_VERSION = 1  # raise it when a field changes meaning; readers refuse contracts newer than they know


NETWORK_FILE = "network.pt"  # a training job's exported network (weights + plain config), under artifacts/
CONTRACT_FILE = "contract.json"  # beside it: the model contract


class ContractError(ValueError):
    """A model without a usable contract; the message names the model."""


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
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
        """Validate :meth:`to_dict` output (a contract without ``version`` is version 1) and rebuild the contract.

        Raises :class:`ContractError` naming ``source`` and the offending field: an unknown field, a missing or
        mistyped one, a version newer than :data:`CONTRACT_VERSION`, a mode other than resize or tiles.
        """
        if not isinstance(data, dict):
            raise ContractError(
                f"{source}: invalid model contract (a JSON object expected, not {type(data).__name__})"
            )
        values = {"version": 1, **data}
        version = values["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ContractError(
                f"{source}: invalid model contract (field 'version': {version!r} is not a version)"
            )
        if version > CONTRACT_VERSION:
            raise ContractError(
                f"{source}: model contract version {version} is newer than this vessel-lightning reads "
                f"(up to {CONTRACT_VERSION}); upgrade vessel-lightning to load this model"
            )
        try:
            contract = cls(**values)
        except ValidationError as exc:
            raise ContractError(f"{source}: invalid model contract ({_describe(exc)})") from None
        except TypeError as exc:
            raise ContractError(f"{source}: invalid model contract ({exc})") from None
        if contract.mode not in ("resize", "tiles"):
            raise ContractError(f"{source}: contract mode must be 'resize' or 'tiles', not {contract.mode!r}")
        return contract

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelContract:
        """Read and validate a ``contract.json`` file; :class:`ContractError` naming the file if unreadable."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ContractError(f"{path}: no readable model contract ({exc})") from exc
        return cls.from_dict(data, source=str(path))


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as ``field 'x': message`` parts, unknown fields said so."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "contract"
        if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            parts.append(f"unknown field {where!r}")
        elif error["type"] == "missing_argument" or error["type"] == "missing":
            parts.append(f"field {where!r} is missing")
        else:
            parts.append(f"field {where!r}: {error['msg']}")
    return "; ".join(parts)
