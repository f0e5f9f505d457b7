"""The loader's former home: versions registered before the tracking package was split run pyfunc code that
imports ``vessel_lightning.tracking.models`` by name, so this name stays. New code imports
:mod:`vessel_lightning.tracking.bundle`."""

from vessel_lightning.tracking.bundle import (
    BUNDLE_CONFIG,
    BUNDLE_FORMAT,
    BUNDLE_WEIGHTS,
    FORMAT_KEY,
    ModelInfo,
    load_bundle,
    load_logged_model,
)

__all__ = [
    "BUNDLE_CONFIG",
    "BUNDLE_FORMAT",
    "BUNDLE_WEIGHTS",
    "FORMAT_KEY",
    "ModelInfo",
    "load_bundle",
    "load_logged_model",
]
