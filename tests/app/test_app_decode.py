"""Upload decoding: every accepted format and mode, and every rejected input with its HTTP status."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.decode import decode_image, sniff_format
from app.upload import UploadError
from tests.helpers.app import encode, multi_frame, photo, raw_png, with_exif_orientation

LIMIT = 10_000_000


def _rgb_variants() -> dict[str, tuple[bytes, tuple[int, int]]]:
    rgb = photo(40, 50)
    image = Image.fromarray(rgb)
    gray16 = Image.fromarray((np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30).astype(np.uint16))
    palette_alpha = image.convert("P")
    palette_alpha.info["transparency"] = 0
    return {
        "png-rgb": (encode(rgb), (40, 50)),
        "png-gray": (encode(image.convert("L")), (40, 50)),
        "png-rgba": (encode(image.convert("RGBA")), (40, 50)),
        "png-palette": (encode(image.convert("P")), (40, 50)),
        "png-palette-transparency": (encode(palette_alpha), (40, 50)),
        "png-16bit-gray": (encode(gray16), (40, 50)),
        "png-16bit-rgb": (
            raw_png(
                5, 4, 16, 2, b"".join(b"\x00" + np.full((5, 3), 40000, ">u2").tobytes() for _ in range(4))
            ),
            (4, 5),
        ),
        "jpeg": (encode(rgb, "JPEG"), (40, 50)),
        "jpeg-cmyk": (encode(image.convert("CMYK"), "JPEG"), (40, 50)),
        "jpeg-exif-rotated": (with_exif_orientation(rgb), (50, 40)),
        "tiff": (encode(rgb, "TIFF"), (40, 50)),
        "tiff-16bit-gray": (encode(gray16, "TIFF"), (40, 50)),
        "bmp": (encode(rgb, "BMP"), (40, 50)),
        "webp": (encode(rgb, "WEBP", lossless=True), (40, 50)),
        "gif-multi-frame": (multi_frame("GIF"), (40, 50)),
        "tiff-multi-frame": (multi_frame("TIFF"), (40, 50)),
    }


@pytest.mark.parametrize("name", list(_rgb_variants()))
def test_accepted_variants_decode_to_rgb(name: str) -> None:
    data, shape = _rgb_variants()[name]
    rgb = decode_image(data, LIMIT)
    assert rgb.shape == (*shape, 3) and rgb.dtype == np.uint8


def test_values_survive_decoding() -> None:
    rgb = photo(40, 50)
    assert np.array_equal(decode_image(encode(rgb), LIMIT), rgb)
    assert np.array_equal(decode_image(encode(rgb, "WEBP", lossless=True), LIMIT), rgb)
    sixteen = raw_png(
        5, 4, 16, 2, b"".join(b"\x00" + np.full((5, 3), 40000, ">u2").tobytes() for _ in range(4))
    )
    assert (decode_image(sixteen, LIMIT) == round(40000 / 65535 * 255)).all()
    gray = decode_image(encode(Image.fromarray(rgb).convert("L")), LIMIT)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    # EXIF orientation 6: the stored top row becomes the displayed right column.
    rotated = decode_image(
        with_exif_orientation(np.tile(np.arange(50, dtype=np.uint8) * 5, (40, 1))[..., None].repeat(3, 2)),
        LIMIT,
    )
    assert rotated.shape == (50, 40, 3) and abs(int(rotated[0, 0, 0]) - int(rotated[-1, 0, 0])) > 100


def test_multi_frame_gives_the_first_frame() -> None:
    first = decode_image(multi_frame("TIFF"), LIMIT)
    assert np.array_equal(first, photo(40, 50, seed=1))


def _bad_inputs() -> dict[str, tuple[bytes, int, str]]:
    png = encode(photo(40, 50))
    jpeg = encode(photo(40, 50), "JPEG")
    return {
        "empty": (b"", 400, "empty"),
        "text": (b"hello, this is not an image\n", 415, "text"),
        "pdf": (b"%PDF-1.7\n1 0 obj <<>> endobj\n", 415, "PDF"),
        "zip": (b"PK\x03\x04" + bytes(40), 415, "zip"),
        "truncated-png": (png[: len(png) // 2], 400, "truncated"),
        "truncated-jpeg": (jpeg[: len(jpeg) // 2], 400, "truncated"),
        "zero-width": (raw_png(0, 10), 400, "PNG"),
        "zero-height": (raw_png(10, 0), 400, "PNG"),
        "bomb-over-pil-limit": (raw_png(100_000, 100_000), 413, "too large"),
        "bomb-over-our-limit": (raw_png(4000, 3000), 413, "12000000 pixels"),
        "png-magic-then-garbage": (b"\x89PNG\r\n\x1a\n" + bytes(30), 400, "PNG"),
    }


@pytest.mark.parametrize("name", list(_bad_inputs()))
def test_bad_inputs_raise_with_status(name: str) -> None:
    data, status, words = _bad_inputs()[name]
    with pytest.raises(UploadError) as caught:
        decode_image(data, LIMIT)
    assert caught.value.status == status and words in caught.value.message


def test_bomb_is_rejected_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args, **_kwargs):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(Image.Image, "load", forbidden)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", forbidden)
    with pytest.raises(UploadError) as caught:
        decode_image(raw_png(4000, 3000), LIMIT)
    assert caught.value.status == 413


def test_sniff_ignores_names_and_trusts_bytes() -> None:
    assert sniff_format(encode(photo(4, 4), "WEBP")) == "WEBP"
    assert sniff_format(encode(photo(4, 4), "BMP")) == "BMP"
    assert sniff_format(b"GIF89a....") == "GIF"
    assert sniff_format(b"<html>") is None
