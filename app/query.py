"""The query parameters of ``POST /predict``, ``/measure`` and ``/geojson``, read and checked (FastAPI dependencies).

Values FastAPI cannot check by type alone (``scale``, or both scales given at once) are refused here with a 422 that
names the parameter; what they mean for a photo is :mod:`app.measure`'s and the library's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query

from app.measure import FieldMode, PhysicalScale

Format = Literal["probability", "mask", "json", "geojson", "fov"]


@dataclass(frozen=True)
class PredictOptions:
    """The query of ``POST /predict``: output format, threshold (None: the model's), field mode, physical scale
    (``um_per_pixel`` / ``fov_degrees``) and the model's input resampling (the query's ``scale``)."""

    format: Format = "probability"
    threshold: float | None = None
    fov: FieldMode = "auto"
    physical: PhysicalScale = field(default_factory=PhysicalScale)
    resample: float | Literal["auto"] | None = None  # the query's `scale`; None: the served predictor's own


async def physical_scale(
    um_per_pixel: Annotated[
        float | None,
        Query(
            gt=0, le=1e5, description="Physical scale in µm per pixel: measurements also come in µm and mm."
        ),
    ] = None,
    fov_degrees: Annotated[
        float | None,
        Query(
            gt=0,
            le=200,
            description="Angular diameter of the field of view in degrees (fundus cameras: 30–50); the scale "
            "then follows from the field's diameter in pixels. Give this or `um_per_pixel`, not both.",
        ),
    ] = None,
) -> PhysicalScale:
    """The scale query parameters (FastAPI dependency, async: a sync one costs a worker-thread hop per
    request); 422 when both are given."""
    if um_per_pixel is not None and fov_degrees is not None:
        raise HTTPException(422, "give um_per_pixel or fov_degrees, not both")
    return PhysicalScale(um_per_pixel, fov_degrees)


async def predict_options(
    physical: Annotated[PhysicalScale, Depends(physical_scale)],
    format: Annotated[
        Format,
        Query(
            description="`probability`: 8-bit PNG of round(p·255); `mask`: {0, 255} PNG; `json`: size, vessel "
            "fraction, field of view and vessel measurements; `geojson`: vessel regions as Polygons with holes "
            "in pixel coordinates; `fov`: the field of view as a {0, 255} PNG (the model does not run)."
        ),
    ] = "probability",
    threshold: Annotated[
        float | None,
        Query(ge=0, le=1, description="Vessel where round(p·255)/255 ≥ threshold; default: the model's own."),
    ] = None,
    fov: Annotated[
        FieldMode,
        Query(
            description="Field of view: `auto` detects the camera's field (the bright disc of a fundus photo; "
            "the whole frame for photos that fill it) and zeroes predictions outside it; `none`: the whole frame."
        ),
    ] = "auto",
    resample: Annotated[
        str | None,
        Query(
            alias="scale",
            description="Tile models: resample the photo by this factor in (0, 4] before the model (vessels at "
            "the training calibre), or `auto`: by the training photos' field diameter (the contract's "
            "`fov_diameter`) over this photo's. Default 1.",
        ),
    ] = None,
) -> PredictOptions:
    """The query of ``POST /predict`` (FastAPI dependency); 422 for a ``scale`` that is neither ``auto`` nor a
    number in (0, 4]."""
    factor: float | Literal["auto"] | None = None
    if resample == "auto":
        factor = "auto"
    elif resample is not None:
        try:
            factor = float(resample)
        except ValueError:
            factor = math.nan
        if not 0 < factor <= 4:  # also rejects nan
            raise HTTPException(422, f"scale {resample!r} must be 'auto' or a number in (0, 4]")
    return PredictOptions(format, threshold, fov, physical, factor)


MapThreshold = Annotated[
    float,
    Query(
        ge=0,
        le=1,
        description="Vessel where v/255 ≥ threshold (a {0, 255} mask gives the same at any 0 < t ≤ 1).",
    ),
]
