"""Parameters, GFLOP and CPU forward time at 512×512 of every architecture, side by side in one run.

    python experiments/model_sizes.py                  # the table (docs/training.md, "Architectures")
    python experiments/model_sizes.py --repeats 0      # sizes only, no timing

GFLOP: torch.utils.flop_counter on one 3×512×512 image (multiply and add counted apart, so 2 × MACs);
convolutions, matrix products and attention are counted, element-wise ops are not. Time: eager PyTorch
forward in eval mode, batch 1, channels_last, median of ``--repeats`` calls after one warm-up, random weights,
every model timed in turn in each round so a noisy neighbour hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from vessel_lightning.models.architectures import count_parameters, gflop
from vessel_lightning.models.networks import build_network

VARIANTS: dict[str, dict[str, object]] = {
    "unet B0": {"arch": "unet", "encoder_name": "efficientnet-b0"},
    "unet B0 lean decoder": {
        "arch": "unet",
        "encoder_name": "efficientnet-b0",
        "decoder_channels": [128, 64, 32, 16, 8],
    },
    "unet B3": {"arch": "unet", "encoder_name": "efficientnet-b3"},
    "unet B5": {"arch": "unet", "encoder_name": "efficientnet-b5"},
    "unet B7": {"arch": "unet", "encoder_name": "efficientnet-b7"},
    "transunet B0": {"arch": "transunet", "encoder_name": "efficientnet-b0"},
    "transunet B3": {"arch": "transunet", "encoder_name": "efficientnet-b3"},
    "unet_plain w16": {"arch": "unet_plain", "width": 16},
    "unet_plain w32": {"arch": "unet_plain", "width": 32},
    "unet_plain w64 (paper)": {"arch": "unet_plain", "width": 64},
}


def main() -> None:
    """Build every variant, print parameters, GFLOP and (optionally) forward time; write JSON with --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5, help="timed forward calls per model (0: no timing)")
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(VARIANTS)
    networks = {name: build_network(**VARIANTS[name]).eval() for name in names}
    rows = {
        name: {
            "params_m": round(count_parameters(net) / 1e6, 2),
            "gflop": round(gflop(net, args.size, args.size), 2),
        }
        for name, net in networks.items()
    }
    if args.repeats:
        image = torch.rand(1, 3, args.size, args.size).to(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {name: [] for name in names}
        with torch.inference_mode():
            for net in networks.values():
                net.to(memory_format=torch.channels_last)(image)  # warm-up
            for _ in range(args.repeats):
                for name, net in networks.items():
                    start = time.perf_counter()
                    net(image)
                    times[name].append((time.perf_counter() - start) * 1000)
        for name in names:
            rows[name]["forward_ms_median"] = round(statistics.median(times[name]), 1)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(machine))
    print(f"{'model':24} {'params (M)':>10} {f'GFLOP @{args.size}²':>12} {'forward ms':>11}")
    for name, row in rows.items():
        print(f"{name:24} {row['params_m']:>10} {row['gflop']:>12} {row.get('forward_ms_median', '-'):>11}")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "size": args.size, "models": rows}, indent=2))


if __name__ == "__main__":
    main()
