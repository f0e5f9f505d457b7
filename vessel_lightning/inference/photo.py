"""One photo through the model, the way ``vessel-predict`` and ``POST /predict`` both do it: field of view →
resampling scale → probabilities → the served mask → GeoJSON and vessel measurements (in µm with a scale)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from vessel_lightning.data.fov import detect_fov, fov_diameter
from vessel_lightning.inference.predictor import Predictor, served_mask
from vessel_lightning.measurements import measure_vessels, um_per_pixel_from_fov

FieldMode = Literal["detect", "none"]


@dataclass(frozen=True)
class PhysicalScale:
    """The optional physical scale: ``um_per_pixel`` directly, or ``fov_degrees``, the field's angular diameter
    (fundus cameras: 30–50°), from which the scale follows by the field's diameter in pixels."""

    um_per_pixel: float | None = None
    fov_degrees: float | None = None

    def resolve(self, field: np.ndarray) -> tuple[float | None, dict[str, Any] | None]:
        """µm per pixel for a photo whose field is ``field``, and how it was found (None, None without a scale).
        A photo that fills the frame takes its longer side as the field's diameter."""
        if self.um_per_pixel is not None:
            return self.um_per_pixel, {"um_per_pixel": self.um_per_pixel, "source": "um_per_pixel"}
        if self.fov_degrees is not None:
            diameter = float(max(field.shape)) if field.all() else fov_diameter(field)
            value = um_per_pixel_from_fov(diameter, self.fov_degrees)
            return value, {"um_per_pixel": value, "source": "fov_degrees", "fov_degrees": self.fov_degrees}
        return None, None


def field_of_view(rgb: np.ndarray, mode: FieldMode) -> np.ndarray:
    """The boolean field of ``rgb``: detected (``detect``) or the whole frame (``none``)."""
    if mode == "none":
        return np.ones(rgb.shape[:2], dtype=bool)
    return detect_fov(rgb)


@dataclass(frozen=True)
class PhotoPrediction:
    """What one photo gave: its field of view (``field``; all True for the whole frame), the resampling ``scale``
    the model saw it at, the vessel probabilities and the threshold of the served mask."""

    field: np.ndarray
    scale: float
    prob: np.ndarray
    threshold: float

    @cached_property
    def mask(self) -> np.ndarray:
        """The served mask (:func:`~vessel_lightning.inference.predictor.served_mask`)."""
        return served_mask(self.prob, self.threshold)

    @property
    def whole_frame(self) -> bool:
        return bool(self.field.all())

    def geojson(self, properties: dict[str, Any]) -> dict[str, Any]:
        """The vessel regions as a GeoJSON FeatureCollection with ``properties`` in every Feature."""
        from vessel_lightning.data.geojson import mask_to_geojson

        return mask_to_geojson(self.mask, properties=properties)

    def measurements(
        self, physical: PhysicalScale = PhysicalScale(), histogram: bool = False
    ) -> dict[str, Any]:
        """Vessel measurements of the mask inside the field (in µm and mm too with a ``physical`` scale)."""
        um, _ = physical.resolve(self.field)
        return measure_vessels(self.mask, self.field, um_per_pixel=um).to_dict(histogram=histogram)


def predict_photo(
    predictor: Predictor,
    rgb: np.ndarray,
    field: FieldMode | np.ndarray = "detect",
    *,
    threshold: float | None = None,
    scale: float | None = None,
) -> PhotoPrediction:
    """Run ``predictor`` on one RGB photo inside its field of view.

    ``field``: ``"detect"`` (the camera's field; the whole frame for photos that fill it), ``"none"`` (the whole
    frame, nothing zeroed) or a boolean mask; ``threshold``: the served mask's (None: the model's); ``scale``: the
    resampling factor (None: the predictor's rule for this photo and field).
    """
    fov = field_of_view(rgb, field) if isinstance(field, str) else np.asarray(field, dtype=bool)
    inside = None if isinstance(field, str) and field == "none" else fov
    chosen = predictor.scale_for(rgb, inside) if scale is None else scale
    prob = predictor.predict_proba(rgb, inside, scale=chosen)
    return PhotoPrediction(fov, chosen, prob, predictor.threshold if threshold is None else threshold)
