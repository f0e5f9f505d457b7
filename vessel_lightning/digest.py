"""Content digests that name cached and prepared things: one SHA-256 of a file, one of a JSON-able value."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def value_digest(value: Any, length: int | None = None) -> str:
    """The hex SHA-256 of ``value`` as canonical JSON (sorted keys), cut to ``length`` characters if given."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]
