"""Label and FOV masks are read by what their pixels mean: palette colours, {0, 1} indices, 16-bit; an empty field
or an empty label is an error that names the file (it used to score F1 0.0000 without a word)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vessel_lightning.data.images import ImageReadError, read_fov, read_gray
from vessel_lightning.data.prepare import PrepareError, load_sample
from vessel_lightning.data.sources import RawSample

DISC = np.zeros((20, 24), dtype=np.uint8)
DISC[4:16, 5:19] = 1


def _palette_png(path: Path, indices: np.ndarray, palette: list[int]) -> Path:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(palette)
    image.save(path)
    return path


@pytest.mark.parametrize(
    "palette",
    [
        [0, 0, 0, 255, 255, 255],  # black / white
        [i for v in range(256) for i in (v, v, v)],  # a grey ramp: index 1 is (1, 1, 1)
        [0, 0, 0, 0, 0, 0],  # no distinguishing colours at all
    ],
    ids=["black-white", "grey-ramp", "all-black"],
)
def test_palette_masks_with_indices_0_1_read_as_0_255(tmp_path: Path, palette: list[int]) -> None:
    path = _palette_png(tmp_path / "fov.png", DISC, palette)
    assert np.array_equal(read_gray(path), DISC * 255)
    assert np.array_equal(read_fov(path), DISC)


def test_gif_fov_with_indices_0_1(tmp_path: Path) -> None:
    image = Image.fromarray(DISC, mode="P")
    image.putpalette([i for v in range(256) for i in (v, v, v)])
    image.save(tmp_path / "mask.gif")
    assert Image.open(tmp_path / "mask.gif").mode == "P"
    assert np.array_equal(read_fov(tmp_path / "mask.gif"), DISC)


def test_class_index_maps_keep_their_indices(tmp_path: Path) -> None:
    classes = DISC.copy()
    classes[4:8, 5:10] = 2  # artery red (index 1), vein blue (index 2): the colours say class, not vessel
    path = _palette_png(tmp_path / "av.png", classes, [0, 0, 0, 255, 0, 0, 0, 0, 255])
    assert np.array_equal(read_gray(path), classes)


def test_inverted_palette_reads_by_colour(tmp_path: Path) -> None:
    path = _palette_png(tmp_path / "inv.png", 1 - DISC, [255, 255, 255, 0, 0, 0])  # index 0 is white
    assert np.array_equal(read_fov(path), DISC)


@pytest.mark.parametrize("on", [1, 255, 65535])
def test_16_bit_fov_masks(tmp_path: Path, on: int) -> None:
    Image.fromarray(DISC.astype(np.uint16) * on).save(tmp_path / "fov16.png")
    assert Image.open(tmp_path / "fov16.png").mode.startswith("I")
    assert np.array_equal(read_fov(tmp_path / "fov16.png"), DISC)


def _sample(tmp_path: Path, label: np.ndarray, fov: np.ndarray) -> RawSample:
    Image.fromarray(np.full((*DISC.shape, 3), 120, np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray(label.astype(np.uint8) * 255).save(tmp_path / "label.png")
    _palette_png(tmp_path / "fov.png", fov, [0, 0, 0, 255, 255, 255])
    return RawSample("photo", tmp_path / "photo.png", tmp_path / "label.png", tmp_path / "fov.png")


def test_load_sample_reads_palette_fov_and_names_empty_files(tmp_path: Path) -> None:
    loaded = load_sample(_sample(tmp_path, DISC, DISC))
    assert np.array_equal(loaded.fov, DISC) and np.array_equal(loaded.mask, DISC)
    with pytest.raises(ImageReadError, match=r"fov\.png: the field-of-view mask is empty"):
        load_sample(_sample(tmp_path, DISC, np.zeros_like(DISC)))
    with pytest.raises(PrepareError, match=r"label\.png: the label has no vessel pixels"):
        load_sample(_sample(tmp_path, np.zeros_like(DISC), DISC))
