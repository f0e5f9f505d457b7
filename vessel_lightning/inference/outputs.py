"""The files ``vessel-predict`` writes for a batch of photos, whichever engine predicts them: per photo the masks,
GeoJSON and one row of ``measurements.csv``; each file written atomically; a photo that fails is a row with its
``error``; a rerun into the same folder skips the photos whose outputs are complete.

``measurements.csv`` is written once, sorted by photo, when the batch ends; until then every finished row is
appended to a journal beside it (``.measurements.partial.csv``), so an interrupted batch resumes where it stopped.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vessel_lightning.inference.photo import FieldMode

FORMATS = ("png", "geojson")
OUTPUT_SUFFIXES = (".mask.png", ".prob.png", ".overlay.png", ".fov.png")  # ours: never read back as photos
CSV_NAME = "measurements.csv"
JOURNAL_NAME = ".measurements.partial.csv"
CSV_LEAD = ("photo", "width", "height", "threshold", "fov", "fov_diameter_px", "scale")
ERROR_COLUMN = "error"  # empty for a photo that was predicted; what went wrong otherwise


@dataclass(frozen=True)
class OutputSpec:
    """What to write for each photo: into ``out``, the ``formats`` (``png`` masks, ``geojson``), the field of view
    (``detect`` or ``none``), the physical scale for measurements in µm (``um_per_pixel`` or ``fov_degrees``)."""

    out: Path
    formats: tuple[str, ...] = ("png",)
    fov: FieldMode = "detect"
    um_per_pixel: float | None = None
    fov_degrees: float | None = None

    def targets(self, photo: Path) -> dict[str, Path]:
        """The output files of ``photo`` by kind (``mask``, ``prob``, ``overlay``, ``fov``, ``geojson``)."""
        targets: dict[str, Path] = {}
        if "png" in self.formats:
            kinds = ("mask", "prob", "overlay", *(("fov",) if self.fov == "detect" else ()))
            targets |= {kind: self.out / f"{photo.stem}.{kind}.png" for kind in kinds}
        if "geojson" in self.formats:
            targets["geojson"] = self.out / f"{photo.stem}.geojson"
        return targets


def measurement_columns() -> list[str]:
    """The header of ``measurements.csv``: the photo and its field, every measurement, then ``error``."""
    from vessel_lightning.measurements import measure_vessels

    keys = measure_vessels(np.zeros((8, 8), dtype=bool)).to_dict(histogram=True)
    return [*CSV_LEAD, *keys, ERROR_COLUMN]


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path`` (same suffix; what it returns is ignored), then move it
    into place: a reader, or a rerun after a kill, never finds a half-written ``path``."""
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def error_row(photo: Path | str, error: BaseException | str) -> dict[str, Any]:
    """The CSV row of a photo that failed: its name and the first line of what went wrong."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return {"photo": str(photo), ERROR_COLUMN: message}


def predict_to_files(
    predictor: Any, photo: Path, spec: OutputSpec, threshold: float, inputs: set[Path], model: dict[str, Any]
) -> dict[str, Any]:
    """Predict one photo, write its outputs (atomically) and return its CSV row.

    ``inputs``: every photo of the batch (resolved), which no output may overwrite; ``model``: ``uri`` and
    ``version`` for the GeoJSON properties. Raises ValueError naming the photo (unreadable, would overwrite).
    """
    from vessel_lightning.data.fov import fov_diameter
    from vessel_lightning.data.images import read_rgb
    from vessel_lightning.inference.photo import PhysicalScale, predict_photo
    from vessel_lightning.inference.predictor import probability_png_values
    from vessel_lightning.overlays import save_png, vessel_overlay

    targets = spec.targets(photo)
    if inputs & {t.resolve() for t in targets.values()}:
        raise ValueError(f"{photo}: an output would overwrite an input photo; choose another --out")
    rgb = read_rgb(photo)
    result = predict_photo(predictor, rgb, spec.fov, threshold=threshold)
    images = {}
    if "png" in spec.formats:
        images = {
            "mask": (result.mask * 255).astype(np.uint8),
            "prob": probability_png_values(result.prob),
            "overlay": vessel_overlay(rgb, result.mask),
        }
        if "fov" in targets:
            images["fov"] = result.field.astype(np.uint8) * 255
    for kind, array in images.items():
        write_atomically(targets[kind], functools.partial(save_png, array))
    if "geojson" in spec.formats:
        properties = {
            "model": model.get("uri"),
            "model_version": model.get("version"),
            "threshold": threshold,
        }
        text = json.dumps(result.geojson(properties), separators=(",", ":"))
        write_atomically(targets["geojson"], lambda path: path.write_text(text))
    physical = PhysicalScale(spec.um_per_pixel, spec.fov_degrees)
    lead = {
        "photo": str(photo),
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "threshold": threshold,
        "fov": "whole frame" if result.whole_frame else "detected",
        "fov_diameter_px": None if result.whole_frame else round(fov_diameter(result.field), 1),
        "scale": round(result.scale, 4),
    }
    return lead | result.measurements(physical, histogram=True) | {ERROR_COLUMN: ""}


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class MeasurementsTable:
    """``measurements.csv`` of one batch: rows of an earlier run into the same folder (for the photos whose outputs
    are complete), a journal appended and flushed row by row, the sorted table written atomically by ``close``."""

    def __init__(self, spec: OutputSpec, photos: Sequence[Path], threshold: float) -> None:
        self.spec = spec
        self.columns = measurement_columns()
        self.path = spec.out / CSV_NAME
        self.journal_path = spec.out / JOURNAL_NAME
        wanted = {str(p) for p in photos}
        earlier: dict[str, dict[str, Any]] = {}
        for row in [*_read_rows(self.path), *_read_rows(self.journal_path)]:
            if row.get("photo") in wanted:
                earlier[row["photo"]] = row
        # A photo is complete when it has an error-free row at this threshold and every output file exists.
        self.rows: dict[str, dict[str, Any]] = {
            name: row
            for name, row in earlier.items()
            if not row.get(ERROR_COLUMN)
            and row.get("threshold") == str(threshold)
            and all(t.is_file() for t in spec.targets(Path(name)).values())
        }
        spec.out.mkdir(parents=True, exist_ok=True)
        self._journal = self.journal_path.open("a", newline="")
        self._writer = csv.DictWriter(self._journal, fieldnames=self.columns)
        if self._journal.tell() == 0:
            self._writer.writeheader()

    def complete(self, photo: Path) -> bool:
        """Whether ``photo`` was done by an earlier run (its row and files are here)."""
        return str(photo) in self.rows

    def add(self, row: dict[str, Any]) -> None:
        """Record one photo's row (journal first, flushed: an interrupted batch keeps it)."""
        self._writer.writerow(row)
        self._journal.flush()
        self.rows[str(row["photo"])] = row

    def add_all(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def close(self) -> Path:
        """Write ``measurements.csv`` (rows sorted by photo) atomically and drop the journal."""
        self._journal.close()

        def write(path: Path) -> None:
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writeheader()
                for name in sorted(self.rows):
                    writer.writerow(self.rows[name])

        write_atomically(self.path, write)
        self.journal_path.unlink(missing_ok=True)
        return self.path

    @property
    def failed(self) -> list[str]:
        """The photos whose row holds an error."""
        return [name for name, row in self.rows.items() if row.get(ERROR_COLUMN)]
