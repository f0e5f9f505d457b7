"""What answers may say about the server's files: their names, sizes and digests, never where they lie.

:func:`public` rewrites a JSON-ready value before it leaves the service: a ``<name>_path`` entry (the backend's
ONNX or OpenVINO file in its cache) becomes ``<name>_file`` with the file's name, size and SHA-256, and any other
absolute path inside a string (an error quoting a file, a model served from a folder) is cut to its last part.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any

_PART = r"[^\s/'\"<>|,;()\[\]{}]+"
# A local URI (file:///…, sqlite:////…), or a POSIX path of two or more parts (or under ~); never the path of a
# URL (http://host/…) or of a models:/ or runs:/ URI.
_ABSOLUTE = re.compile(rf"\b[A-Za-z][\w+.-]*:///+{_PART}(?:/{_PART})*/?|(?<![\w.:/~-])~?(?:/{_PART}){{2,}}/?")
_PATH_KEY = "_path"


def public(value: Any) -> Any:
    """``value`` (dicts, lists and scalars, as JSON holds them) with every server path replaced as described."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.endswith(_PATH_KEY) and isinstance(item, str | os.PathLike):
                out[key[: -len(_PATH_KEY)] + "_file"] = describe_file(Path(item))
            else:
                out[key] = public(item)
        return out
    if isinstance(value, list | tuple):
        return [public(item) for item in value]
    if isinstance(value, str):
        return public_text(value)
    return value


def public_text(text: str) -> str:
    """``text`` with each absolute path (``/srv/cache/x/model.onnx``, ``file:///srv/store``) cut to its last part
    (``model.onnx``, ``store``)."""
    return _ABSOLUTE.sub(lambda match: Path(match.group(0).rstrip("/")).name, text)


def describe_file(path: Path) -> dict[str, Any]:
    """A file as a client may know it: its name, and its size in bytes and SHA-256 when it can be read."""
    try:
        stat = path.stat()
    except OSError:
        return {"name": path.name}
    return {"name": path.name} | _measure(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _measure(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """Size and digest of ``path``, computed once per version of the file (``size`` and ``mtime_ns`` key it)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return {"bytes": size}
    return {"bytes": size, "sha256": digest.hexdigest()}
