"""The worklist: a folder of photos to annotate (``VESSEL_WORKLIST_DIR``), offered one at a time by name, each
known as annotated when the annotation folder holds its id (the SHA-256 of its pixels)."""

from __future__ import annotations

import threading
from pathlib import Path

from app.decode import decode_image
from app.upload import UploadError
from vessel_lightning.data.annotations import photo_id
from vessel_lightning.data.images import IMAGE_EXTENSIONS


class Worklist:
    """The photos of ``folder`` (image files, sorted by name, hidden files left out); each photo's id is decoded
    once and kept while its size and modification time stay the same."""

    def __init__(self, folder: Path, max_pixels: int) -> None:
        self.folder = folder
        self.max_pixels = max_pixels
        self._ids: dict[str, tuple[int, int, str | None]] = {}  # name → (size, mtime_ns, id or None)
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The photos' file names, sorted."""
        return sorted(
            p.name
            for p in self.folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )

    def path(self, name: str) -> Path | None:
        """The file of photo ``name`` when the listing has it (never a path built from the request)."""
        return self.folder / name if name in self.names() else None

    def photo_id(self, name: str) -> str | None:
        """The annotation id of photo ``name``; None for a file that does not decode (it is never offered)."""
        path = self.folder / name
        stat = path.stat()
        with self._lock:
            known = self._ids.get(name)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        try:
            found: str | None = photo_id(decode_image(path.read_bytes(), self.max_pixels))
        except UploadError:
            found = None
        with self._lock:
            self._ids[name] = (stat.st_size, stat.st_mtime_ns, found)
        return found

    def next(self, annotated: set[str]) -> tuple[str | None, int]:
        """The first photo by name whose id is not in ``annotated`` (None when none is left) and how many are
        left, that one included."""
        left = []
        for name in self.names():
            try:
                found = self.photo_id(name)
            except FileNotFoundError:  # removed meanwhile
                continue
            if found is not None and found not in annotated:
                left.append(name)
        return (left[0] if left else None), len(left)
