"""Training-tile loading with and without ``data.cache_images``, on a real full-resolution data set.

    python experiments/bench_loading.py --data-dir ../shared/data [--data hrf] [--tiles 24] [--repeats 3]

Builds the real VesselDataModule (tiles mode, 256² crops, the default augmentation) twice, cache off and on, and
times fetching ``--tiles`` training items in one process (what one loader worker does). The cached module is
timed after one pass over the photos, i.e. in the steady state of every epoch after the first; its first pass
is printed too. Prints the median seconds per tile of ``--repeats`` passes and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def _seconds_per_tile(dataset, tiles: int) -> float:
    start = time.perf_counter()
    for index in range(tiles):
        dataset[index % len(dataset)]
    return (time.perf_counter() - start) / tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--data", default="hrf", help="data config (conf/data/<name>.yaml)")
    parser.add_argument("--tiles", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR
    from vessel_lightning.data.datamodule import VesselDataModule

    torch.manual_seed(0)
    results = {}
    for cache in (False, True):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            cfg = compose(
                config_name="train",
                overrides=[
                    f"data={args.data}",
                    f"paths.data_dir={args.data_dir.resolve()}",
                    "data.mode=tiles",
                    "data.size=256",
                    f"data.cache_images={cache}",
                ],
            )
        datamodule = VesselDataModule(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        dataset = datamodule.datasets["train"]
        if cache:  # one pass fills the cache: the first epoch of each worker
            first = _seconds_per_tile(dataset, len(dataset.samples) * dataset.crops_per_image)
            print(f"cache on, first pass (decodes every photo once): {first * 1000:.1f} ms/tile")
        runs = [_seconds_per_tile(dataset, args.tiles) for _ in range(args.repeats)]
        results[cache] = statistics.median(runs)
        print(
            f"cache {'on ' if cache else 'off'}: {results[cache] * 1000:.1f} ms/tile (median of {args.repeats})"
        )
    print(f"{args.data}: cached tiles load {results[False] / results[True]:.1f}× faster per tile")


if __name__ == "__main__":
    main()
