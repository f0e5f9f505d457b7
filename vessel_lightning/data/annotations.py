"""Saved annotations: photos and their corrected vessel masks, in the folder layout ``vessel-prepare data=geojson``
reads, written so that no reader ever sees half a save.

    <dir>/images/<id>.png              the photo's pixels exactly, with no metadata (EXIF and the like can carry
                                       patient data)
    <dir>/annotations/<id>.geojson     the vessel mask as GeoJSON Polygons (outlines on pixel edges, unsimplified:
                                       the project's reader rasterises it back to exactly the saved mask)
    <dir>/meta/<id>.json               the sidecar: version, status, annotator, time, size, counts, model,
                                       threshold, region of interest, note
    <dir>/history/<id>/<v>.geojson     every version saved (the current one too), with its sidecar <v>.json

The id is the SHA-256 of the photo's pixels (:func:`photo_id`), so saving the same photo again makes a new
version of its annotation and keeps the previous ones. Every file is written to a temporary name in its own
folder and renamed into place; a save commits when its sidecar is renamed, and the layout's GeoJSON follows.
A save killed before the commit leaves the previous files where readers look; one killed after it is completed
from the history the next time the folder is opened or that photo saved (:meth:`AnnotationStore.recover`). Saves
of one photo take turns on a lock file (threads and processes alike).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vessel_lightning.data.geojson import (
    AnnotationError,
    mask_to_geojson,
    rasterize_annotation,
    read_annotation,
)

ID_PATTERN = re.compile(r"[0-9a-f]{64}")
STATUSES = ("draft", "final")
FOLDERS = ("images", "annotations", "meta", "history")
LOCK_TIMEOUT_S = 60.0
MAX_NOTE = 2000  # characters of a note, annotator name: labels, not documents
MAX_NAME = 200


class AnnotationInputError(ValueError):
    """A bad part of an annotation to save; ``field`` names it (``annotation``, ``roi``, ``status``...)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class AnnotationFolderError(RuntimeError):
    """The annotation folder is missing, not a folder, not writable, or busy; the message names it."""


class UnknownAnnotation(KeyError):
    """No annotation has this id."""


def photo_id(rgb: np.ndarray) -> str:
    """The annotation id of an ``(H, W, 3)`` uint8 photo: the hex SHA-256 of ``b"<W>x<H>:"`` followed by its
    pixels (row-major RGB bytes). The same pixels give the same id whatever file format or metadata carried them."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"a photo is (H, W, 3) uint8, got shape {rgb.shape}")
    digest = hashlib.sha256(b"%dx%d:" % (rgb.shape[1], rgb.shape[0]))
    digest.update(rgb.data.cast("B"))
    return digest.hexdigest()


def check_id(value: str) -> str:
    """``value`` when it is a 64-character lower-case hex digest; :class:`AnnotationInputError` (field ``id``)
    otherwise, so no id can name a path."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise AnnotationInputError("id", "not an annotation id (64 lower-case hex characters, a SHA-256)")
    return value


def parse_geojson(data: bytes | str | dict[str, Any], field: str) -> Any:
    """Parsed JSON of an uploaded GeoJSON (UTF-8); :class:`AnnotationInputError` naming ``field`` when empty or
    not JSON."""
    if isinstance(data, dict):
        return data
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise AnnotationInputError(field, "not UTF-8 text (send GeoJSON or a mask PNG)") from None
    if not data.strip():
        raise AnnotationInputError(field, "empty")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise AnnotationInputError(
            field, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (RecursionError, ValueError) as exc:
        raise AnnotationInputError(field, f"invalid JSON ({type(exc).__name__})") from None


def _positions(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every ``[x, y]`` of a (nested) coordinates list; malformed parts are left to the reader's own checks."""
    if isinstance(value, list | tuple):
        if len(value) >= 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2]):
            yield value[0], value[1]
        else:
            for item in value:
                yield from _positions(item)


def _geometry_positions(geometry: Any) -> Iterator[tuple[Any, Any]]:
    if not isinstance(geometry, dict):
        return
    if geometry.get("type") == "GeometryCollection":
        for member in geometry.get("geometries") or []:
            yield from _geometry_positions(member)
        return
    yield from _positions(geometry.get("coordinates"))


def _check_inside(features: list[dict[str, Any]], shape: tuple[int, int], field: str) -> None:
    height, width = shape
    for index, feature in enumerate(features):
        for x, y in _geometry_positions(feature.get("geometry")):
            if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= width and 0 <= y <= height):
                raise AnnotationInputError(
                    field,
                    f"feature {index}: coordinate [{x}, {y}] is outside the {width}x{height} photo "
                    f"(x in 0..{width}, y in 0..{height}, pixel edges)",
                )


def mask_from_geojson(
    data: bytes | str | dict[str, Any], shape: tuple[int, int], field: str = "annotation"
) -> np.ndarray:
    """The boolean vessel mask of a GeoJSON annotation in the project's convention on a ``(height, width)``
    photo, rasterised by the project's reader (:mod:`vessel_lightning.data.geojson`).

    Stricter than ``vessel-prepare`` (which skips features off the image): any coordinate outside the photo is an
    :class:`AnnotationInputError` naming ``field``, as is broken JSON or GeoJSON.
    """
    parsed = parse_geojson(data, field)
    try:
        annotation = read_annotation(parsed)
    except (AnnotationError, TypeError) as exc:
        raise AnnotationInputError(field, str(exc).removeprefix("<geojson>: ")) from None
    _check_inside(annotation.features, shape, field)
    try:
        result = rasterize_annotation(annotation, shape, strict=True)
    except AnnotationError as exc:
        raise AnnotationInputError(field, str(exc).removeprefix("<geojson>: ")) from None
    return result.mask.astype(bool)


def roi_from_geojson(
    data: bytes | str | dict[str, Any], shape: tuple[int, int], field: str = "roi"
) -> np.ndarray:
    """The boolean region of interest of a GeoJSON Polygon (or MultiPolygon, or a Feature holding one) in pixel
    coordinates on a ``(height, width)`` photo: pixels whose centre lies inside, as the reader rasterises. Raises
    :class:`AnnotationInputError` naming ``field`` for other geometries, coordinates outside the photo or an
    empty region."""
    parsed = parse_geojson(data, field)
    geometry = (
        parsed.get("geometry") if isinstance(parsed, dict) and parsed.get("type") == "Feature" else parsed
    )
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise AnnotationInputError(field, f"expected a GeoJSON Polygon in pixel coordinates, got {kind!r}")
    region = mask_from_geojson(geometry, shape, field)
    if not region.any():
        raise AnnotationInputError(field, "the region of interest covers no pixel centre")
    return region


def roi_geometry(data: bytes | str | dict[str, Any], field: str = "roi") -> dict[str, Any]:
    """The Polygon geometry of a region of interest as given (a Feature's geometry), for the sidecar."""
    parsed = parse_geojson(data, field)
    if isinstance(parsed, dict) and parsed.get("type") == "Feature":
        parsed = parsed.get("geometry")
    if not isinstance(parsed, dict):
        raise AnnotationInputError(field, "expected a GeoJSON Polygon")
    return parsed


def png_bytes(array: np.ndarray) -> bytes:
    """A PNG of ``array`` (RGB or grey uint8) with no metadata chunk: pixels only."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


@dataclass(frozen=True)
class SavedAnnotation:
    """What a save stored: the id, its new version, the folder's count, pixel counts, status and annotator."""

    id: str
    version: int
    count: int
    vessel_pixels: int
    added: int | None
    removed: int | None
    status: str
    annotator: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if len(value) > limit:
        raise AnnotationInputError(field, f"{len(value)} characters, at most {limit}")
    return value


class AnnotationStore:
    """The annotation folder ``root`` (it must exist and be writable: :class:`AnnotationFolderError`, which
    names ``setting`` when given, otherwise). Opening it completes or rolls back any interrupted save."""

    def __init__(self, root: str | os.PathLike, setting: str | None = None) -> None:
        self.root = Path(root)
        self.setting = setting
        self._check_folder()
        for name in (*FOLDERS, ".locks"):
            try:
                (self.root / name).mkdir(exist_ok=True)
            except OSError as exc:
                raise self._folder_error(f"cannot create {name}/ in it ({exc.strerror or exc})") from exc
        # Called with each file's final path once it is renamed into place (tests interrupt saves here).
        self.after_write: Callable[[Path], None] = lambda _path: None
        self.recover()

    def _folder_error(self, problem: str) -> AnnotationFolderError:
        name = f"{self.setting}={self.root}" if self.setting else str(self.root)
        return AnnotationFolderError(f"{name}: {problem}")

    def _check_folder(self) -> None:
        if not self.root.is_dir():
            raise self._folder_error("no such folder (create it, or point the setting at one)")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise self._folder_error("the folder is not writable by this process")

    # Paths ----------------------------------------------------------------------------------------------------
    def image_path(self, annotation_id: str) -> Path:
        return self.root / "images" / f"{check_id(annotation_id)}.png"

    def geojson_path(self, annotation_id: str) -> Path:
        return self.root / "annotations" / f"{check_id(annotation_id)}.geojson"

    def sidecar_path(self, annotation_id: str) -> Path:
        return self.root / "meta" / f"{check_id(annotation_id)}.json"

    def history_dir(self, annotation_id: str) -> Path:
        return self.root / "history" / check_id(annotation_id)

    # Reading --------------------------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """The ids with a committed annotation (a sidecar), sorted."""
        return sorted(p.stem for p in (self.root / "meta").glob("*.json") if ID_PATTERN.fullmatch(p.stem))

    def count(self) -> int:
        """How many photos have an annotation."""
        return len(self.ids())

    def sidecar(self, annotation_id: str) -> dict[str, Any]:
        """The sidecar of ``annotation_id``; :class:`UnknownAnnotation` when there is none."""
        try:
            return json.loads(self.sidecar_path(annotation_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnknownAnnotation(annotation_id) from None

    def items(self) -> list[dict[str, Any]]:
        """Every annotation's sidecar, newest save first."""
        found = []
        for annotation_id in self.ids():
            try:
                found.append(self.sidecar(annotation_id))
            except (UnknownAnnotation, json.JSONDecodeError):  # removed by its owner meanwhile
                continue
        return sorted(found, key=lambda item: (item.get("saved_at", ""), item["id"]), reverse=True)

    def geojson(self, annotation_id: str) -> bytes:
        """The current GeoJSON of ``annotation_id`` (the committed version's, even mid-save)."""
        meta = self.sidecar(annotation_id)
        current = self.geojson_path(annotation_id)
        data = current.read_bytes() if current.is_file() else b""
        if hashlib.sha256(data).hexdigest() != meta.get("annotation_sha256"):
            data = (self.history_dir(annotation_id) / f"{meta['version']}.geojson").read_bytes()
        return data

    # Writing --------------------------------------------------------------------------------------------------
    def _write(self, path: Path, data: bytes) -> None:
        """``data`` into ``path`` atomically: a temporary file in the same folder, synced, then renamed."""
        temporary = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            with open(temporary, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self.after_write(path)

    @contextmanager
    def _locked(self, annotation_id: str) -> Iterator[None]:
        from filelock import FileLock, Timeout

        # A new FileLock (its own descriptor) per save: flock then excludes threads of this process too.
        lock = FileLock(str(self.root / ".locks" / f"{annotation_id}.lock"), thread_local=False)
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout:
            raise self._folder_error(
                f"another save of this photo held its lock over {LOCK_TIMEOUT_S:g} s"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def recover(self, annotation_id: str | None = None) -> None:
        """Finish or undo interrupted saves (of ``annotation_id``, or of every photo in the folder)."""
        if annotation_id is None:
            seen = {p.name.split(".", 1)[0] for folder in FOLDERS for p in (self.root / folder).iterdir()}
            seen |= {
                p.name.split(".")[1] for folder in FOLDERS[:3] for p in (self.root / folder).glob(".*.tmp")
            }
            for found in sorted(i for i in seen if ID_PATTERN.fullmatch(i)):
                with self._locked(found):
                    self._recover(found)
            return
        with self._locked(check_id(annotation_id)):
            self._recover(annotation_id)

    def _recover(self, annotation_id: str) -> None:
        """Under the lock: remove temporary files and uncommitted versions, and roll the layout's GeoJSON forward
        to the committed sidecar's version (a save is committed once its sidecar is in place)."""
        for folder in FOLDERS[:3]:
            for stale in (self.root / folder).glob(f".{annotation_id}.*.tmp"):
                stale.unlink(missing_ok=True)
        history = self.history_dir(annotation_id)
        for stale in history.glob(".*.tmp") if history.is_dir() else ():
            stale.unlink(missing_ok=True)
        try:
            meta = self.sidecar(annotation_id)
        except UnknownAnnotation:
            # Never committed: nothing of it may remain for readers (the photo alone would be an unlabelled image).
            self.geojson_path(annotation_id).unlink(missing_ok=True)
            self.image_path(annotation_id).unlink(missing_ok=True)
            shutil.rmtree(history, ignore_errors=True)
            return
        version = int(meta["version"])
        for path in history.iterdir() if history.is_dir() else ():
            number = path.name.split(".", 1)[0]
            if number.isdigit() and int(number) > version:
                path.unlink(missing_ok=True)
        current = self.geojson_path(annotation_id)
        data = current.read_bytes() if current.is_file() else b""
        if hashlib.sha256(data).hexdigest() != meta.get("annotation_sha256"):
            self._write(current, (history / f"{version}.geojson").read_bytes())

    def save(
        self,
        rgb: np.ndarray,
        mask: np.ndarray,
        *,
        annotator: str,
        status: str,
        roi: dict[str, Any] | None = None,
        roi_mask: np.ndarray | None = None,
        note: str | None = None,
        threshold: float | None = None,
        model_mask: np.ndarray | None = None,
        model: dict[str, Any] | None = None,
    ) -> SavedAnnotation:
        """Save ``mask`` (boolean, the photo's size) as the next version of the annotation of photo ``rgb``.

        ``roi``: the region of interest's GeoJSON geometry, kept in the sidecar (``roi_mask``: its raster, where
        the caller has it); ``model_mask``: the model's thresholded mask, to count the pixels added and removed;
        ``model``: name, version and URI of the model that proposed it. Raises :class:`AnnotationInputError`
        (nothing written) or :class:`AnnotationFolderError`.
        """
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        shape = rgb.shape[:2]
        mask = np.asarray(mask).astype(bool)
        if mask.shape != shape:
            raise AnnotationInputError(
                "annotation", f"the mask is {mask.shape[1]}x{mask.shape[0]}, the photo {shape[1]}x{shape[0]}"
            )
        if model_mask is not None and np.shape(model_mask) != shape:
            raise AnnotationInputError(
                "model_mask",
                f"the mask is {np.shape(model_mask)[1]}x{np.shape(model_mask)[0]}, the photo {shape[1]}x{shape[0]}",
            )
        if status not in STATUSES:
            raise AnnotationInputError("status", f"{status!r}: use one of {', '.join(STATUSES)}")
        annotator = (annotator or "").strip()
        if not annotator:
            raise AnnotationInputError("annotator", "empty: say who made this annotation")
        _text(annotator, "annotator", MAX_NAME)
        _text(note, "note", MAX_NOTE)
        if threshold is not None and not (math.isfinite(threshold) and 0 <= threshold <= 1):
            raise AnnotationInputError("threshold", f"{threshold} is not in [0, 1]")
        if roi is not None and roi_mask is None:
            roi_mask = roi_from_geojson(roi, shape)
        annotation_id = photo_id(rgb)
        geojson = json.dumps(mask_to_geojson(mask, simplify_tolerance=0), separators=(",", ":")).encode()
        model_mask = None if model_mask is None else np.asarray(model_mask).astype(bool)
        self._check_folder()
        try:
            with self._locked(annotation_id):
                self._recover(annotation_id)
                try:
                    previous = int(self.sidecar(annotation_id)["version"])
                except UnknownAnnotation:
                    previous = 0
                version = previous + 1
                vessel_pixels = int(mask.sum())
                added = None if model_mask is None else int((mask & ~model_mask).sum())
                removed = None if model_mask is None else int((model_mask & ~mask).sum())
                meta = {
                    "id": annotation_id,
                    "version": version,
                    "status": status,
                    "annotator": annotator,
                    "note": note,
                    "saved_at": _now(),
                    "width": int(shape[1]),
                    "height": int(shape[0]),
                    "vessel_pixels": vessel_pixels,
                    "added": added,
                    "removed": removed,
                    "roi_pixels": None if roi_mask is None else int(roi_mask.sum()),
                    "threshold": threshold,
                    "model": model or {},
                    "roi": roi,
                    "image": f"images/{annotation_id}.png",
                    "annotation": f"annotations/{annotation_id}.geojson",
                    "annotation_sha256": hashlib.sha256(geojson).hexdigest(),
                }
                sidecar = (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode()
                history = self.history_dir(annotation_id)
                history.mkdir(parents=True, exist_ok=True)
                image = self.image_path(annotation_id)
                if not image.is_file():  # content-addressed: an existing photo is already these pixels
                    self._write(image, png_bytes(rgb))
                self._write(history / f"{version}.geojson", geojson)
                self._write(history / f"{version}.json", sidecar)
                self._write(self.sidecar_path(annotation_id), sidecar)  # the commit
                self._write(self.geojson_path(annotation_id), geojson)
        except OSError as exc:
            raise self._folder_error(f"cannot write ({exc.strerror or exc})") from exc
        return SavedAnnotation(
            id=annotation_id,
            version=version,
            count=self.count(),
            vessel_pixels=vessel_pixels,
            added=added,
            removed=removed,
            status=status,
            annotator=annotator,
        )
