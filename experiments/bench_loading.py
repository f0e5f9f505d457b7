"""Does the training loader hold a CPU step back? Loader variants side by side under real training steps.

For a training config (default: the demo, ``experiment=demo_cpu``) it builds the real data module and network and
runs real training steps (forward, loss, backward, Adam; bf16 autocast where the config's precision says so),
taking each batch from a DataLoader with 0, 1 or 2 worker processes, photos decoded per tile or cached. Per
variant it prints the median time the step loop waited for its batch, the median step time (the worker competes
with the step for the same cores) and the cost of one tile in the main process (decode, crop, augmentation).

    python experiments/bench_loading.py --data-dir ../shared/data                      # the demo's data and recipe
    python experiments/bench_loading.py --data-dir ../shared/data experiment=hrf_tiles  # 8 MP photos
    python experiments/bench_loading.py --steps 0 ...                                  # the tile costs only

The tile cost with photos cached is the steady state of every epoch after the first (the cache is filled first).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_train_step import machine, train_step


def compose(overrides: list[str]):
    """The resolved ``train`` config with ``overrides`` (as on the vessel-train command line)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vessel_lightning.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def tile_cost_ms(dataset, count: int) -> float:
    """Median milliseconds for one ``dataset[i]`` in this process (decode or cache, crop, augmentation)."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        dataset[i % len(dataset)]
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_variant(datamodule, net, loss_fn, bf16: bool, workers: int, cache: bool, steps: int) -> dict:
    """Train ``steps`` real steps (after two warm-up steps) from a loader with ``workers`` processes."""
    from omegaconf import open_dict

    with open_dict(datamodule.cfg):
        datamodule.cfg.num_workers = workers
        datamodule.cfg.cache_images = cache
    datamodule.datasets = {}
    datamodule.setup("fit")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    waits, step_times = [], []
    batches = iter(datamodule.train_dataloader())
    for step in range(steps + 2):
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(datamodule.train_dataloader())
            batch = next(batches)
        ready = time.perf_counter()
        image = batch["image"].contiguous(memory_format=torch.channels_last)
        fov = batch.get("fov", torch.ones_like(batch["mask"]))
        train_step(net, loss_fn, optimizer, image, batch["mask"], fov, bf16)
        if step >= 2:  # the first batches include the workers' start-up
            waits.append(ready - start)
            step_times.append(time.perf_counter() - ready)
    del batches  # stops the workers before the next variant
    return {"wait_ms": 1000 * statistics.median(waits), "step_s": statistics.median(step_times)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", help="the raw data sets (default: $VESSEL_DATA_DIR, else ./data)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round (0: none)")
    parser.add_argument("--rounds", type=int, default=2, help="the variants alternate, round after round")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "overrides", nargs="*", default=[], help="vessel-train overrides (default experiment=demo_cpu)"
    )
    args = parser.parse_args()
    overrides = args.overrides or ["experiment=demo_cpu"]
    if args.data_dir:
        overrides.append(f"paths.data_dir={Path(args.data_dir).resolve()}")

    import hydra

    from vessel_lightning.data.datamodule import VesselDataModule

    print(machine(), flush=True)
    cfg = compose([*overrides, "model.encoder_weights=null"])
    datamodule = VesselDataModule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = hydra.utils.instantiate(cfg.model)
    net = module.net.to(memory_format=torch.channels_last).train()
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    print(
        f"{' '.join(overrides)}: {cfg.data.name}, {cfg.data.mode} {cfg.data.size}², batch {cfg.data.batch_size}, "
        f"precision {cfg.trainer.precision}, {torch.get_num_threads()} threads",
        flush=True,
    )

    train_set = datamodule.datasets["train"]
    cost = {False: tile_cost_ms(train_set, 32)}
    train_set.cache = {}
    for item in range(0, len(train_set), max(1, len(train_set) // len(train_set.samples))):
        train_set[item]  # one tile of every photo: the cache is full
    cost[True] = tile_cost_ms(train_set, 32)
    train_set.cache = None
    print("\n| photos | one tile in the main process (ms) |\n|---|---|")
    print(f"| decoded per tile | {cost[False]:.1f} |\n| cached | {cost[True]:.1f} |")
    if args.steps <= 0:
        return

    variants = [(w, c) for w in args.workers for c in (False, True)]
    results: dict[tuple[int, bool], list[dict]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for workers, cache in variants:
            results[(workers, cache)].append(
                run_variant(datamodule, net, module.criterion, bf16, workers, cache, args.steps)
            )
    print(f"\n{args.steps} timed steps × {args.rounds} rounds per variant; medians")
    print("| workers | photos | wait for batch (ms) | step (s) | wait + step (s) | wait / step |")
    print("|---|---|---|---|---|---|")
    for (workers, cache), runs in results.items():
        wait = statistics.median(r["wait_ms"] for r in runs)
        step = statistics.median(r["step_s"] for r in runs)
        print(
            f"| {workers} | {'cached' if cache else 'decoded per tile'} | {wait:.1f} | {step:.3f} "
            f"| {wait / 1000 + step:.3f} | {wait / 10 / step:.1f} % |"
        )


if __name__ == "__main__":
    main()
