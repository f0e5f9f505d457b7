"""Safe decoding of uploaded image bytes into ``(H, W, 3)`` uint8 RGB arrays (errors: :class:`app.upload.UploadError`).

The bytes decide the format (the client's content type and file name are ignored). The pixel count is checked
from the header before any pixel data is decoded, so a decompression bomb costs nothing. Multi-frame GIF and
TIFF files give their first frame. Nothing is written to disk.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.upload import UploadError
from vessel_lightning.data.images import claimed_pixels, pil_to_rgb

# Magic numbers of the accepted formats (GIF is accepted for its first frame).
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
ACCEPTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format named by the first bytes of ``data`` (``"PNG"``, ``"WEBP"``…), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in SIGNATURES:
        if data.startswith(magic):
            return name
    return None


def _describe_unknown(data: bytes) -> str:
    for magic, name in _KNOWN_OTHERS:
        if data.startswith(magic):
            return name
    head = data[:512]
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "an unknown binary format"


def pixel_count(data: bytes) -> int | None:
    """Width × height from the header of an accepted format, decoding no pixels; None when it cannot be read."""
    if sniff_format(data) is None:
        return None
    try:
        width, height = _open(data).size
    except Exception:  # decode_image reports what is wrong; here it only decides a queue
        return None
    return width * height


def _open(data: bytes) -> Image.Image:
    """The image's header, parsed; no pixel data is decoded yet."""
    with warnings.catch_warnings():
        # PIL warns (not raises) between its own limit and twice that; the caller's own check decides.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode ``data`` to an ``(H, W, 3)`` uint8 RGB array, EXIF orientation applied.

    Raises :class:`UploadError` with status 400 (empty, truncated, corrupt, zero-sized), 413 (more than
    ``max_pixels`` pixels, checked from the header before decoding) or 415 (not one of the accepted formats).
    """
    if not data:
        raise UploadError(400, "the uploaded file is empty")
    kind = sniff_format(data)
    if kind is None:
        accepted = ", ".join(f for f in ACCEPTED_FORMATS if f != "GIF")
        raise UploadError(
            415, f"not an image: the upload looks like {_describe_unknown(data)} (send {accepted})"
        )
    try:
        image = _open(data)
    except Image.DecompressionBombError as exc:  # over Pillow's own limit, far over any sane max_pixels
        pixels = claimed_pixels(exc)
        claim = f"{pixels} pixels" if pixels else "more pixels than Pillow decodes"
        raise UploadError(413, f"image too large: {claim} (limit {max_pixels})") from exc
    except UnidentifiedImageError as exc:
        raise UploadError(400, f"undecodable {kind} data: the header is missing or corrupt") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(400, f"undecodable {kind} data ({exc})") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise UploadError(400, f"the image has a zero-sized dimension ({width}x{height})")
    if width * height > max_pixels:
        raise UploadError(
            413, f"image too large: {width}x{height} = {width * height} pixels (limit {max_pixels})"
        )
    fast = _plain_png(data, width, height)
    if fast is not None:
        return fast
    try:
        image.seek(0)  # multi-frame GIF/TIFF: the first frame, by design
        image.load()  # a truncated file fails here (PIL's LOAD_TRUNCATED_IMAGES stays off)
        image = ImageOps.exif_transpose(image)
        return pil_to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(400, f"truncated or corrupt {kind} data ({exc})") from exc


def _plain_png(data: bytes, width: int, height: int) -> np.ndarray | None:
    """An 8-bit RGB PNG without EXIF or animation (what cameras, browsers and the UI send) decoded by OpenCV's
    libpng, ~15 % faster than Pillow for the same pixels; None for any other PNG, or when OpenCV fails (Pillow then
    decodes it or says what is wrong)."""
    # IHDR is the first chunk: bit depth at byte 24, colour type at 25 (2: RGB); eXIf may rotate, acTL animates.
    if len(data) < 33 or data[24] != 8 or data[25] != 2 or b"eXIf" in data or b"acTL" in data:
        return None
    if sniff_format(data) != "PNG":
        return None
    import cv2

    # Straight to RGB (no BGR pass); orientation is not OpenCV's to apply (no eXIf here, Pillow's rule elsewhere).
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if rgb is None or rgb.dtype != np.uint8 or rgb.shape != (height, width, 3):
        return None
    return rgb
