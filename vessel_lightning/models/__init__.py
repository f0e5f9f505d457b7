"""Networks shared by training, evaluation and serving (no training code here)."""

from vessel_lightning.models.networks import (
    NormalizedSegmenter,
    build_network,
    load_network,
    recalibrate_batchnorm,
    save_network,
    set_batchnorm_momentum,
)

__all__ = [
    "NormalizedSegmenter",
    "build_network",
    "load_network",
    "recalibrate_batchnorm",
    "save_network",
    "set_batchnorm_momentum",
]
