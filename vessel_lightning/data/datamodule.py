"""``VesselDataModule``: a prepared folder → PyTorch data loaders.

Items are dicts: ``image`` float32 ``[3, H, W]`` in [0, 1] (the model normalises internally), ``mask`` and
``fov`` float32 ``[1, H, W]`` in {0, 1} (``fov`` is all ones when the data set has none), and ``id``.
In ``resize`` mode every item is a whole prepared image. In ``tiles`` mode training draws random
``size``×``size`` crops (``tiles_per_image`` per image and epoch) and validation/test walk a fixed grid of
tiles that covers each image, so metrics are computed on every pixel at full resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vessel_lightning.data.prepare import prepare, read_manifest, size_hw
from vessel_lightning.tiling import window_origins


def _load(prepared_dir: Path, sample: dict[str, Any]) -> dict[str, np.ndarray]:
    image = np.asarray(Image.open(prepared_dir / sample["image"]).convert("RGB"))
    mask = np.asarray(Image.open(prepared_dir / sample["mask"])) > 127
    if "fov" in sample:
        fov = np.asarray(Image.open(prepared_dir / sample["fov"])) > 127
    else:
        fov = np.ones(mask.shape, dtype=bool)
    return {"image": image, "mask": mask.astype(np.uint8), "fov": fov.astype(np.uint8)}


def _pad_to(arrays: dict[str, np.ndarray], height: int, width: int) -> dict[str, np.ndarray]:
    """Zero-pad (bottom/right) so a crop of height×width fits; padding is outside the FOV."""
    h, w = arrays["mask"].shape
    if h >= height and w >= width:
        return arrays
    pad = ((0, max(0, height - h)), (0, max(0, width - w)))
    return {k: np.pad(v, pad + ((0, 0),) * (v.ndim - 2)) for k, v in arrays.items()}


def _to_tensors(arrays: dict[str, np.ndarray], sample_id: str) -> dict[str, Any]:
    return {
        "image": torch.from_numpy(np.ascontiguousarray(arrays["image"].transpose(2, 0, 1))).float() / 255.0,
        "mask": torch.from_numpy(np.ascontiguousarray(arrays["mask"]))[None].float(),
        "fov": torch.from_numpy(np.ascontiguousarray(arrays["fov"]))[None].float(),
        "id": sample_id,
    }


class VesselDataset(Dataset):
    """Samples of one split of a prepared folder, whole images or tiles, optionally augmented.

    ``transform``: an albumentations ``Compose`` taking ``image``, ``mask`` and ``fov``; ``crop``:
    ``(height, width)`` for random training crops (tiles mode), ``tiles``: ``(height, width)`` for the
    fixed evaluation grid (tiles mode); at most one of the two. ``cache``: keep each decoded image in memory
    after its first read (each loader worker holds its own copy: for full-resolution photos, where decoding
    the whole image for one tile costs more than the training step).
    """

    def __init__(
        self,
        prepared_dir: str | Path,
        samples: list[dict[str, Any]],
        transform: Any = None,
        crop: tuple[int, int] | None = None,
        crops_per_image: int = 1,
        tiles: tuple[int, int] | None = None,
        cache: bool = False,
    ) -> None:
        self.prepared_dir = Path(prepared_dir)
        self.cache: dict[int, dict[str, np.ndarray]] | None = {} if cache else None
        self.samples = samples
        self.transform = transform
        self.crop = crop
        self.crops_per_image = crops_per_image if crop else 1
        self.index: list[tuple[int, int, int]] = []  # (sample, top, left)
        for i, sample in enumerate(samples):
            if tiles:
                self.index += [
                    (i, top, left)
                    for top in window_origins(sample["height"], tiles[0])
                    for left in window_origins(sample["width"], tiles[1])
                ]
            else:
                self.index += [(i, 0, 0)] * self.crops_per_image
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.index)

    def _arrays(self, i: int) -> dict[str, np.ndarray]:
        if self.cache is None:
            return _load(self.prepared_dir, self.samples[i])
        if i not in self.cache:
            self.cache[i] = _load(self.prepared_dir, self.samples[i])
        return self.cache[i]

    def __getitem__(self, item: int) -> dict[str, Any]:
        i, top, left = self.index[item]
        sample = self.samples[i]
        arrays = self._arrays(i)
        window = self.tiles or self.crop
        if window:
            arrays = _pad_to(arrays, *window)
            if self.crop:  # random crop, drawn from torch's RNG so Lightning's seeding makes it reproducible
                h, w = arrays["mask"].shape
                top = int(torch.randint(0, h - window[0] + 1, ()).item())
                left = int(torch.randint(0, w - window[1] + 1, ()).item())
            arrays = {k: v[top : top + window[0], left : left + window[1]] for k, v in arrays.items()}
        if self.cache is not None:  # never hand the cached arrays themselves to a transform
            arrays = {k: v.copy() for k, v in arrays.items()}
        if self.transform is not None:
            arrays = self.transform(**arrays)
        return _to_tensors(arrays, sample["id"])


class VesselDataModule(L.LightningDataModule):
    """Prepared vessel data for Lightning, configured by a ``conf/data/*.yaml`` node.

    ``prepare_data()`` runs :func:`~vessel_lightning.data.prepare.prepare` (a no-op when up to date);
    ``setup()`` reads the manifest and builds one :class:`VesselDataset` per split.
    """

    def __init__(self, data_cfg: Any) -> None:
        super().__init__()
        self.cfg = data_cfg
        self.prepared_dir = Path(str(data_cfg.prepared_dir)).expanduser().resolve()
        self.datasets: dict[str, VesselDataset] = {}
        self.manifest: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        prepare(self.cfg, progress=True)

    def _transform(self, which: str) -> Any:
        from hydra.utils import instantiate

        augment = self.cfg.get("augment") or {}
        node = augment.get(which)
        return instantiate(node) if node is not None else None

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.manifest = read_manifest(self.prepared_dir)
        window = size_hw(self.cfg.size)
        tiled = self.manifest["mode"] == "tiles"
        cache = bool(self.cfg.get("cache_images", False))
        mixed = self._mixed_samples()
        for split in ("train", "val", "test"):
            samples = [s for s in self.manifest["samples"] if s["split"] == split]
            if split == "train":
                samples += mixed
                self.datasets[split] = VesselDataset(
                    self.prepared_dir,
                    samples,
                    self._transform("train"),
                    crop=window if tiled else None,
                    crops_per_image=int(self.cfg.get("tiles_per_image", 1)),
                    cache=cache,
                )
            else:
                self.datasets[split] = VesselDataset(
                    self.prepared_dir,
                    samples,
                    self._transform("eval"),
                    tiles=window if tiled else None,
                    cache=cache,
                )

    def _mixed_samples(self) -> list[dict[str, Any]]:
        """The train samples of ``mix_with`` (another prepared folder, same mode and size), their files by
        absolute path; none when it is unset."""
        other = self.cfg.get("mix_with")
        if not other:
            return []
        folder = Path(str(other)).expanduser().resolve()
        manifest = read_manifest(folder)
        assert self.manifest is not None
        mine = (self.manifest["mode"], list(self.manifest["size"]))
        if (manifest["mode"], list(manifest["size"])) != mine:
            raise ValueError(
                f"data.mix_with={folder}: prepared as {manifest['mode']} {manifest['size']}, but this data set is "
                f"{mine[0]} {mine[1]}: prepare both with the same data.mode and data.size"
            )
        keys = ("image", "mask", "fov")
        return [
            {**s, **{k: str(folder / s[k]) for k in keys if k in s}, "id": f"{manifest['name']}/{s['id']}"}
            for s in manifest["samples"]
            if s["split"] == "train"
        ]

    @property
    def has_fov(self) -> bool:
        """Whether the prepared data set carries FOV masks (read after ``setup``)."""
        return bool(self.manifest and self.manifest.get("has_fov"))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        if len(dataset) == 0:
            raise ValueError(f"{self.prepared_dir}: the {split!r} split is empty")
        workers = int(self.cfg.num_workers)
        return DataLoader(
            dataset,
            batch_size=int(self.cfg.batch_size),
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=bool(self.cfg.pin_memory),
            persistent_workers=workers > 0,
            drop_last=shuffle and len(dataset) > int(self.cfg.batch_size),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
