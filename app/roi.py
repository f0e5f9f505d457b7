"""The region of interest of ``/predict``, ``/measure`` and ``/geojson`` (multipart field ``roi``: a GeoJSON
Polygon in pixel coordinates): it bounds predictions, measurements and GeoJSON exactly as a detected field of
view does, and is intersected with whatever field there already is."""

from __future__ import annotations

import numpy as np
from fastapi import HTTPException

from vessel_lightning.data.annotations import AnnotationInputError, roi_from_geojson

ROI_FIELD = "roi"


def restrict(field: np.ndarray, mode: str, roi: bytes | None) -> tuple[np.ndarray, str]:
    """``field`` inside the region ``roi`` (None: unchanged) and the field's mode (``roi`` when the field was the
    whole frame, else ``<mode>+roi``). Raises HTTPException 422 naming ``roi`` for a bad polygon, one outside the
    photo, or a region that leaves nothing of the field."""
    if roi is None:
        return field, mode
    try:
        region = roi_from_geojson(roi, field.shape)
    except AnnotationInputError as exc:
        raise HTTPException(422, str(exc)) from None
    field = field & region
    if not field.any():
        raise HTTPException(422, "roi: the region of interest does not overlap the field of view")
    return field, ROI_FIELD if mode == "none" else f"{mode}+{ROI_FIELD}"
