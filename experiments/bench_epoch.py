"""Epoch time on CHASE_DB1: everything resized to 512² vs full-resolution 256² tiles covering each image.

    python experiments/bench_epoch.py --data-dir ../shared/data [--steps 3]

Both modes train the real VesselSegmenter (B0, batch 8, channels_last, from scratch) on the real VesselDataModule.
Tiles mode draws `ceil(999/256) × ceil(960/256) = 16` crops per image, so an epoch sees every pixel once on average,
as a resize epoch sees every (resized) image once. Per mode: median time of `--steps` optimizer steps after one
warm-up step, × steps per epoch = epoch time. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import tempfile
import time
from pathlib import Path


def _median_step_seconds(datamodule, steps: int) -> float:
    import torch

    from vessel_lightning.training.module import VesselSegmenter

    model = VesselSegmenter(
        net={"encoder_name": "efficientnet-b0"},
        loss={"dice": 1.0, "bce": 1.0},
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),  # unused: the loop below steps its own Adam
        channels_last=True,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    loader = datamodule.train_dataloader()
    batches = (batch for _ in range(steps + 1) for batch in loader)  # as many passes as the steps need
    for index in range(steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        loss, _, _ = model._step(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if index:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR
    from vessel_lightning.data.datamodule import VesselDataModule

    torch.manual_seed(0)
    tiles = math.ceil(999 / 256) * math.ceil(960 / 256)
    modes = {"resize 512²": ["data.mode=resize", "data.size=512"],
             f"tiles 256² ×{tiles}/image": ["data.mode=tiles", "data.size=256", f"data.tiles_per_image={tiles}"]}  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as prepared:
        for name, overrides in modes.items():
            with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
                cfg = compose("prepare", [f"data.root={args.data_dir / 'CHASE_DB1'}", "data.batch_size=8",
                                          f"data.prepared_dir={prepared}/{len(results)}", *overrides])  # fmt: skip
            datamodule = VesselDataModule(cfg.data)
            datamodule.prepare_data()
            datamodule.setup("fit")
            steps_per_epoch = len(datamodule.train_dataloader())
            step = _median_step_seconds(datamodule, args.steps)
            results[name] = (step, steps_per_epoch, step * steps_per_epoch)
    print(f"CHASE_DB1 train split, B0, batch 8, channels_last, {torch.get_num_threads()} threads")
    print(f"{'mode':24} {'s/step':>8} {'steps/epoch':>12} {'s/epoch':>9}")
    for name, (step, count, epoch) in results.items():
        print(f"{name:24} {step:8.2f} {count:12d} {epoch:9.1f}")
    epochs = [epoch for _, _, epoch in results.values()]
    print(f"tiles / resize epoch time: {epochs[1] / epochs[0]:.2f}×")


if __name__ == "__main__":
    main()
