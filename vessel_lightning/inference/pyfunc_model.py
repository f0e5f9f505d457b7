"""The MLflow pyfunc face of a registered vessel model. MLflow runs this file to load one ("models from code":
no class is pickled), so MLflow's own tooling serves it::

    mlflow.pyfunc.load_model("models:/vessel-unet@champion").predict(rgb)  # (H, W) float32 probabilities
    mlflow.pyfunc.load_model(uri).predict(rgb, params={"output": "mask"})  # (H, W) uint8 0/1 at its threshold

``rgb`` is an ``(H, W, 3)`` array: uint8 in 0–255, or floats in [0, 1]. Prediction is the project's
:class:`~vessel_lightning.inference.predictor.Predictor` on the CPU, following the model's contract (resize or
sliding window, no test-time augmentation).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

OUTPUTS = ("probability", "mask")


def as_rgb_uint8(model_input: Any) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 photo from a pyfunc input: uint8 as is, other integers in 0–255, floats in [0, 1].

    Raises ValueError naming the shape or value range when the input is neither.
    """
    array = np.asarray(model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError("integer RGB values must lie in 0..255")
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
            raise ValueError("float RGB values must lie in [0, 1] (scale 8-bit values by 1/255)")
        return np.round(np.nan_to_num(array) * 255.0).astype(np.uint8)
    raise ValueError(f"expected a numeric RGB array, got dtype {array.dtype}")


class VesselPyfuncModel(PythonModel):
    """Builds the network from the bundle's plain config and weights; predicts through the project's Predictor."""

    def load_context(self, context: Any) -> None:
        from vessel_lightning.inference.predictor import Predictor
        from vessel_lightning.tracking.bundle import load_bundle

        network, contract = load_bundle(
            context.artifacts["weights"], context.artifacts["network_config"], context.artifacts["contract"]
        )
        self.predictor = Predictor(network, contract)

    # No type hints: MLflow would read them as an input schema and refuse an image array.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """``(H, W)`` float32 probabilities of an RGB array, or with ``params={"output": "mask"}`` the uint8
        0/1 mask at the contract's threshold (as the API serves it)."""
        from vessel_lightning.inference.predictor import served_mask

        output = (params or {}).get("output", "probability")
        if output not in OUTPUTS:
            raise ValueError(f"params output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        prob = self.predictor.predict_proba(as_rgb_uint8(model_input))
        if output == "mask":
            return served_mask(prob, self.predictor.threshold).astype(np.uint8)
        return prob


mlflow.models.set_model(VesselPyfuncModel())
