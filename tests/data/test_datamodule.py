"""VesselDataModule: batches, augmentation alignment, tiles that cover every pixel."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.data import data_config, make_masks_folder, manifest_of
from vessel_lightning.data.datamodule import VesselDataModule
from vessel_lightning.tiling import window_origins


def test_batches_are_float_images_with_binary_masks(tiny_prepared) -> None:
    dm = VesselDataModule(tiny_prepared)
    dm.prepare_data()
    dm.setup("fit")
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
    assert batch["mask"].shape == batch["fov"].shape == (2, 1, 64, 64)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert len(batch["id"]) == 2
    val = next(iter(dm.val_dataloader()))
    assert val["fov"].eq(1).all() and not dm.has_fov  # no FOV in this data set: every pixel counts


def test_augmentation_moves_image_and_mask_together(tiny_prepared) -> None:
    torch.manual_seed(0)
    dm = VesselDataModule(tiny_prepared)
    dm.setup("fit")
    assert dm.datasets["train"].transform is not None
    for _ in range(20):
        item = dm.datasets["train"][0]
        vessel = item["mask"][0] > 0
        inside = item["fov"][0] > 0  # pixels rotated in from outside are neither photo nor FOV
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert not (vessel & ~inside).any()
        # synthetic vessels are darker than the background: only true if the mask moved with the image
        red = item["image"][0]
        assert red[vessel].mean() < red[~vessel & inside].mean() - 0.1


def test_no_augmentation_at_evaluation(tiny_prepared) -> None:
    dm = VesselDataModule(tiny_prepared)
    dm.setup("test")
    item = dm.datasets["test"][0]
    sample = next(s for s in manifest_of(tiny_prepared)["samples"] if s["split"] == "test")
    stored = np.asarray(Image.open(Path(tiny_prepared.prepared_dir) / sample["image"]))
    assert torch.equal(item["image"], torch.from_numpy(stored.transpose(2, 0, 1).copy()).float() / 255)


@pytest.mark.parametrize(
    ("length", "tile", "expected"), [(64, 64, [0]), (50, 64, [0]), (100, 64, [0, 36]), (130, 64, [0, 33, 66])]
)
def test_window_origins_cover_the_length(length: int, tile: int, expected: list[int]) -> None:
    origins = window_origins(length, tile)
    assert origins == expected
    covered = np.zeros(length, bool)
    for start in origins:
        covered[start : start + tile] = True
    assert covered.all()


def test_window_origins_overlap_by_at_least_the_requested_fraction() -> None:
    origins = window_origins(1000, 256, overlap=0.25)
    assert origins[0] == 0 and origins[-1] == 1000 - 256
    assert all(256 - (b - a) >= 64 for a, b in itertools.pairwise(origins))


def test_tiles_mode_keeps_full_resolution_and_covers_every_pixel(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=5, size=(100, 130))
    cfg = data_config(
        [
            "data=masks",
            f"data.root={root}",
            f"data.prepared_dir={tmp_path / 'out'}",
            "data.mode=tiles",
            "data.size=64",
            "data.tiles_per_image=3",
            "data.workers=0",
        ]
    )
    dm = VesselDataModule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) == 3 * len(train.samples)
    assert train[0]["image"].shape == (3, 64, 64)
    val = dm.datasets["val"]
    sample = val.samples[0]
    assert (sample["height"], sample["width"]) == (100, 130)
    rebuilt = np.zeros((100, 130), np.float32)
    for index, (i, top, left) in enumerate(val.index):
        if i == 0:
            rebuilt[top : top + 64, left : left + 64] = val[index]["mask"][0].numpy()
    original = np.asarray(Image.open(Path(cfg.prepared_dir) / sample["mask"])) > 127
    assert np.array_equal(rebuilt > 0, original)


def test_cached_images_are_read_once_and_give_the_same_items(tmp_path: Path, monkeypatch) -> None:
    import vessel_lightning.data.datamodule as datamodule

    root = make_masks_folder(tmp_path / "raw", count=5, size=(100, 130))
    overrides = [
        "data=masks",
        f"data.root={root}",
        f"data.prepared_dir={tmp_path / 'out'}",
        "data.mode=tiles",
        "data.size=64",
        "data.workers=0",
        "data/augment=none",
    ]
    plain, cached = (
        VesselDataModule(data_config([*overrides, f"data.cache_images={c}"])) for c in (False, True)
    )
    for dm in (plain, cached):
        dm.prepare_data()
        dm.setup("fit")
    reads = []
    real_load = datamodule._load
    monkeypatch.setattr(datamodule, "_load", lambda d, s: reads.append(s["id"]) or real_load(d, s))

    val = cached.datasets["val"]
    items = [val[i] for i in range(len(val))] + [val[i] for i in range(len(val))]
    assert len(reads) == len(val.samples)  # one decode per photo, however many tiles and passes
    for index, item in enumerate(items[: len(val)]):
        expected = plain.datasets["val"][index]
        for key in ("image", "mask", "fov"):
            assert torch.equal(item[key], expected[key])

    def darken_in_place(**arrays):  # a transform that writes into the arrays it is given
        arrays["image"][:] //= 2
        return arrays

    val.transform = darken_in_place
    first, second = val[0], val[0]
    assert torch.equal(first["image"], second["image"])  # the cached photo itself was not darkened
    halved = torch.div(torch.round(plain.datasets["val"][0]["image"] * 255), 2, rounding_mode="floor") / 255
    assert torch.allclose(first["image"], halved)


def test_empty_split_is_a_clear_error(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=2)
    cfg = data_config(
        [
            "data=masks",
            f"data.root={root}",
            f"data.prepared_dir={tmp_path / 'out'}",
            "data.test_fraction=0",
            "data.size=32",
            "data.workers=0",
        ]
    )
    dm = VesselDataModule(cfg)
    dm.prepare_data()
    dm.setup("test")
    with pytest.raises(ValueError, match="the 'test' split is empty"):
        dm.test_dataloader()


def test_mix_with_joins_another_prepared_train_split(tmp_path: Path) -> None:
    """data.mix_with: the original training set's train split joins this one's; val and test stay this set's."""

    def prepared(name: str, count: int, size: int, seed: int) -> object:
        root = make_masks_folder(tmp_path / f"raw-{name}", count=count, seed=seed)
        overrides = [f"data.root={root}", f"data.prepared_dir={tmp_path / name}", f"data.size={size}"]
        cfg = data_config(["data=masks", *overrides, "data.test_fraction=0", "data.workers=0"])
        VesselDataModule(cfg).prepare_data()
        return cfg

    original = prepared("original", count=5, size=32, seed=1)
    mine = prepared("mine", count=3, size=32, seed=2)
    alone = VesselDataModule(mine)
    alone.setup("fit")
    mine.mix_with = str(tmp_path / "original")
    mine.augment = None  # the joined photo's pixels, compared as stored
    mixed = VesselDataModule(mine)
    mixed.setup("fit")
    joined = [s for s in manifest_of(original)["samples"] if s["split"] == "train"]
    assert len(mixed.datasets["train"]) == len(alone.datasets["train"]) + len(joined)
    assert len(mixed.datasets["val"]) == len(alone.datasets["val"])
    item = mixed.datasets["train"][len(alone.datasets["train"])]  # the first joined sample, read by its path
    expected = np.asarray(Image.open(tmp_path / "original" / joined[0]["image"]).convert("RGB"))
    assert item["id"] == f"masks/{joined[0]['id']}"
    assert torch.equal(item["image"], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)

    prepared("other-size", count=3, size=64, seed=3)
    mine.mix_with = str(tmp_path / "other-size")
    with pytest.raises(ValueError, match=r"data.mix_with=.*other-size: prepared as resize \[64, 64\]"):
        VesselDataModule(mine).setup("fit")
