"""Benchmark one training step (forward + loss + backward + Adam) of the VesselSegmenter network.

For each encoder and memory format it prints the median step time and the peak memory: the process's peak RSS
on CPU (each configuration runs in its own subprocess, so peaks do not carry over), max allocated on a GPU.

    python experiments/bench_train_step.py                       # B0 and B4, batch 8, 512², 3 timed steps
    python experiments/bench_train_step.py --steps 5 --encoders b0 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def run_one(encoder: str, channels_last: bool, batch: int, size: int, steps: int, device: str) -> dict:
    """Time ``steps`` training steps after one warm-up step; return timings and peak memory."""
    import torch

    from vessel_lightning.models import build_network
    from vessel_lightning.training.losses import build_loss

    torch.manual_seed(0)
    dev = torch.device(device)
    net = build_network(encoder_name=f"efficientnet-{encoder}", encoder_weights=None).to(dev).train()
    loss_fn = build_loss({"dice": 1.0, "bce": 1.0})
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    image = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
    mask = (torch.rand(batch, 1, size, size, device=dev) > 0.9).float()
    fov = torch.ones_like(mask)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for step in range(steps + 1):
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_fn(net(image), mask, fov)
        loss.backward()
        optimizer.step()
        sync()
        if step > 0:  # the first step pays for allocations and kernel selection
            times.append(time.perf_counter() - start)
    result = {
        "encoder": encoder,
        "format": "channels_last" if channels_last else "eager",
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        result["max_allocated_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    return result


def main() -> None:
    """Parse arguments, run every configuration in a subprocess, print a table (and JSON lines with --json)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoders", nargs="+", default=["b0", "b4"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per configuration")
    parser.add_argument("--one", nargs=2, metavar=("ENCODER", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        encoder, fmt = args.one
        print(
            json.dumps(
                run_one(encoder, fmt == "channels_last", args.batch, args.size, args.steps, args.device)
            )
        )
        return

    rows = []
    for encoder in args.encoders:
        for fmt in ("eager", "channels_last"):
            cmd = [sys.executable, __file__, "--one", encoder, fmt, "--batch", str(args.batch)]
            cmd += ["--size", str(args.size), "--steps", str(args.steps), "--device", args.device]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            if args.json:
                print(json.dumps(rows[-1]), flush=True)

    mem_key = "max_allocated_gb" if args.device.startswith("cuda") else "peak_rss_gb"
    print(
        f"\nbatch {args.batch}, {args.size}², {args.steps} timed steps, device {args.device}, "
        f"{rows[0]['threads']} threads; medians"
    )
    print(f"| encoder | format        | step (s) | {mem_key} | speed-up vs eager |")
    print("|---------|---------------|----------|" + "-" * (len(mem_key) + 2) + "|-------------------|")
    for row in rows:
        eager = next(r for r in rows if r["encoder"] == row["encoder"] and r["format"] == "eager")
        print(
            f"| {row['encoder']:<7} | {row['format']:<13} | {row['median_s']:8.2f} | {row[mem_key]:{len(mem_key)}.2f} "
            f"| {eager['median_s'] / row['median_s']:17.2f} |"
        )


if __name__ == "__main__":
    main()
