"""``vessel-download chase_db1``: fetch the official CHASE_DB1 archive, check it, unpack it into the layout
``conf/data/chase_db1.yaml`` reads, and derive the field-of-view masks the official release does not ship.

Offline (or when the host does not answer within ``--timeout`` seconds) it fails at once with where to get the
archive and where to put it; ``--archive FILE`` unpacks a copy downloaded by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CHASE_URL = "https://researchdata.kingston.ac.uk/96/1/CHASEDB1.zip"
CHASE_PAGE = "https://researchdata.kingston.ac.uk/96/"
# SHA-256 of the CHASEDB1.zip checked for the project's shared data (28 images, 56 labels).
CHASE_SHA256 = "2e5ae3e34d94707b36052d30b94a46f22868d54bc333e3f8f86fa9373644b2b0"
CHASE_NAME = re.compile(r"^Image_(\d{2}[LR])(_1stHO|_2ndHO)?\.(jpg|png)$", re.IGNORECASE)


class DownloadError(RuntimeError):
    """The archive could not be fetched or checked; the message says what to do instead."""


def fetch(url: str, timeout: float) -> bytes:
    """The bytes at ``url``; raises :class:`DownloadError` after ``timeout`` seconds without an answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DownloadError(f"could not download {url} ({getattr(exc, 'reason', exc)})") from exc


def derive_fov(rgb: np.ndarray, level: int = 20) -> np.ndarray:
    """A field-of-view mask for a fundus photo: the largest bright region, holes filled, as {0, 255} uint8.

    The camera's circular aperture is far brighter than the black surround, so a low threshold on the red
    channel followed by keeping the largest connected component and filling holes finds it.
    """
    from scipy import ndimage

    bright = rgb[:, :, 0] > level
    bright = ndimage.binary_opening(bright, iterations=2)
    labels, count = ndimage.label(bright)
    if count == 0:
        return np.zeros(rgb.shape[:2], np.uint8)
    sizes = ndimage.sum_labels(bright, labels, range(1, count + 1))
    fov = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return fov.astype(np.uint8) * 255


def unpack_chase(archive: bytes, target: Path, expected_sha256: str | None = CHASE_SHA256) -> int:
    """Check and unpack a CHASE_DB1 zip into ``target`` (images/, 1st_label/, 2nd_label/, mask/).

    Writes into a staging folder renamed into place, so an interrupted unpack leaves nothing half-written.
    Returns the number of images. Raises :class:`DownloadError` on a checksum mismatch or an unexpected archive.
    """
    digest = hashlib.sha256(archive).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise DownloadError(f"checksum mismatch: got sha256 {digest}, expected {expected_sha256}")
    try:
        members = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as exc:
        raise DownloadError("the download is not a zip archive") from exc
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for folder in ("images", "1st_label", "2nd_label", "mask"):
        (staging / folder).mkdir(parents=True)
    images = 0
    try:
        for info in members.infolist():
            match = CHASE_NAME.match(Path(info.filename).name)
            if info.is_dir() or not match:
                continue
            stem, label, _ = match.groups()
            data = members.read(info)
            if label:
                folder = "1st_label" if label.lower() == "_1stho" else "2nd_label"
                (staging / folder / f"Image_{stem}{label}.png").write_bytes(data)
            else:
                (staging / "images" / f"Image_{stem}.jpg").write_bytes(data)
                rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                Image.fromarray(derive_fov(rgb)).save(staging / "mask" / f"Image_{stem}.png")
                images += 1
        if images == 0:
            raise DownloadError("the archive holds no Image_XXY.jpg files: not CHASE_DB1?")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return images


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``vessel-download``."""
    parser = argparse.ArgumentParser(prog="vessel-download", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["chase_db1"])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("VESSEL_DATA_DIR", "data")),
                        help="where data sets live (default $VESSEL_DATA_DIR or ./data)")  # fmt: skip
    parser.add_argument("--archive", type=Path, help="unpack this CHASEDB1.zip instead of downloading")
    parser.add_argument("--url", default=CHASE_URL)
    parser.add_argument("--sha256", default=CHASE_SHA256, help="expected checksum ('' to skip the check)")
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    target = args.data_dir.expanduser().resolve() / "CHASE_DB1"
    if (target / "images").is_dir() and any((target / "images").iterdir()):
        print(f"CHASE_DB1 is already in {target}")
        return 0
    try:
        archive = args.archive.read_bytes() if args.archive else fetch(args.url, args.timeout)
        target.parent.mkdir(parents=True, exist_ok=True)
        count = unpack_chase(archive, target, args.sha256 or None)
    except (DownloadError, OSError) as exc:
        print(
            f"error: {exc}\n"
            f"  Get CHASEDB1.zip from {CHASE_PAGE} (Kingston University research data) and run\n"
            f"    vessel-download chase_db1 --archive /path/to/CHASEDB1.zip --data-dir {args.data_dir}\n"
            f"  or unpack it yourself as {target}/images/Image_01L.jpg, {target}/1st_label/Image_01L_1stHO.png,\n"
            f"  {target}/mask/Image_01L.png (FOV masks), and set VESSEL_DATA_DIR={args.data_dir}.",
            file=sys.stderr,
        )
        return 1
    print(f"CHASE_DB1: {count} images with labels and derived FOV masks in {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
