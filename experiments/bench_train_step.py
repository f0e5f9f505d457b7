"""Benchmark one training step (forward + loss + backward + Adam) of the VesselSegmenter network.

For each encoder and memory format it prints the median step time and the peak memory: the process's peak RSS
on CPU (each configuration runs in its own subprocess, so peaks do not carry over), max allocated on a GPU.

    python experiments/bench_train_step.py                       # B0 and B4, batch 8, 512², 3 timed steps
    python experiments/bench_train_step.py --steps 5 --encoders b0 --device cuda
    python experiments/bench_train_step.py --encoders b0 b0:128,64,32,16,8 --size 256   # decoder widths
    python experiments/bench_train_step.py --device cuda --encoders b0 b1 b2 b3 b4 b5 b6 b7 \
        --formats channels_last --precisions bf16        # the GPU sweep's memory claim (trainer=gpu: bf16-mixed)

``--precisions bf16`` runs forward and loss under ``torch.autocast(dtype=bfloat16)``, as Lightning's
``bf16-mixed`` does, with the depthwise convolutions in bf16; ``bf16-dwfp32`` the same with the depthwise
convolutions computing in float32 on the CPU, as the training module does (``fp32_depthwise_on_cpu``,
``model.cpu_fp32_depthwise``). The machine (CPU model and flags, GPU) is printed first.

    python experiments/bench_train_step.py --encoders b0 --batch 8 --size 256 --steps 6 --rounds 2 \
        --formats channels_last --precisions fp32 bf16 bf16-dwfp32           # the demo's step, side by side
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time

FORMATS = ("eager", "channels_last", "compiled")


def train_step(model, loss_fn, optimizer, image, mask, fov, bf16: bool) -> None:
    """One optimizer step: forward and loss (under bf16 autocast on the image's device when ``bf16``, as Lightning's
    ``bf16-mixed``), backward, Adam."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    autocast = torch.autocast(image.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        loss, _ = loss_fn(model(image), mask, fov)
    loss.backward()
    optimizer.step()


def run_one(
    encoder: str, fmt: str, batch: int, size: int, steps: int, device: str, precision: str = "fp32"
) -> dict:
    """Time ``steps`` training steps after one warm-up step; return timings and peak memory.

    ``fmt``: ``eager`` (contiguous), ``channels_last``, or ``compiled`` (channels_last and ``torch.compile`` of the
    network, inductor's defaults; the warm-up step then pays for compilation: reported as ``first_step_s``)."""

    import torch

    from vessel_lightning.models.networks import build_network, fp32_depthwise_on_cpu
    from vessel_lightning.training.losses import build_loss

    torch.manual_seed(0)
    dev = torch.device(device)
    name, _, decoder = encoder.partition(":")
    extra = {"decoder_channels": [int(c) for c in decoder.split(",")]} if decoder else {}
    net = build_network(encoder_name=f"efficientnet-{name}", encoder_weights=None, **extra).to(dev).train()
    loss_fn = build_loss({"dice": 1.0, "bce": 1.0})
    memory_format = torch.contiguous_format if fmt == "eager" else torch.channels_last
    net = net.to(memory_format=memory_format)
    if precision == "bf16-dwfp32":
        fp32_depthwise_on_cpu(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    model = torch.compile(net) if fmt == "compiled" else net
    image = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=memory_format)
    mask = (torch.rand(batch, 1, size, size, device=dev) > 0.9).float()
    fov = torch.ones_like(mask)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for step in range(steps + 1):
        sync()
        start = time.perf_counter()
        train_step(model, loss_fn, optimizer, image, mask, fov, precision.startswith("bf16"))
        sync()
        if step > 0:  # the first step pays for allocations and kernel selection (and compilation)
            times.append(time.perf_counter() - start)
        else:
            first = time.perf_counter() - start
    result = {
        "encoder": encoder,
        "format": fmt,
        "precision": precision,
        "batch": batch,
        "size": size,
        "median_s": statistics.median(times),
        "first_step_s": first,
        "times_s": times,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        result["max_allocated_gb"] = torch.cuda.max_memory_allocated() / 1024**3
        result["gpu"] = torch.cuda.get_device_name(dev)
    return result


def machine() -> str:
    """One line on the CPU (model name, vector/matrix features) and the GPU if PyTorch sees one."""
    import torch

    from vessel_lightning.hardware import cpu_features

    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no GPU"
    return f"CPU {cpu_features().describe()}{gpu}; torch {torch.__version__}"


def main() -> None:
    """Parse arguments, run every configuration in a subprocess, print a table (and JSON lines with --json)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=["b0", "b4"],
        help="bN, or bN:<decoder channels> e.g. b0:128,64,32,16,8",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--formats", nargs="+", default=["eager", "channels_last"], choices=FORMATS)
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "bf16-dwfp32"])
    parser.add_argument("--rounds", type=int, default=1, help="repeat every configuration, alternating")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per configuration")
    parser.add_argument("--one", nargs=3, metavar=("ENCODER", "FORMAT", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        encoder, fmt, precision = args.one
        result = run_one(encoder, fmt, args.batch, args.size, args.steps, args.device, precision)
        print(json.dumps(result))
        return

    print(machine(), flush=True)
    configs = [(e, p, f) for e in args.encoders for p in args.precisions for f in args.formats]
    runs: dict[tuple[str, str, str], list[dict]] = {c: [] for c in configs}
    for _ in range(args.rounds):  # rounds alternate the configurations, so a busy spell hits them all alike
        for encoder, precision, fmt in configs:
            cmd = [sys.executable, __file__, "--one", encoder, fmt, precision, "--batch", str(args.batch)]
            cmd += ["--size", str(args.size), "--steps", str(args.steps), "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:  # e.g. out of memory: one failed configuration is a row, not the end
                error = (done.stderr.strip().splitlines() or ["failed"])[-1]
                runs[(encoder, precision, fmt)].append({"error": error})
            else:
                runs[(encoder, precision, fmt)].append(json.loads(done.stdout.strip().splitlines()[-1]))
            if args.json:
                print(json.dumps(runs[(encoder, precision, fmt)][-1]), flush=True)
    rows = [combine(config, results) for config, results in runs.items()]
    print_table(rows, args)


def combine(config: tuple[str, str, str], results: list[dict]) -> dict:
    """One row per configuration: medians over every timed step of every round, the highest memory peak."""
    encoder, precision, fmt = config
    ok = [r for r in results if "error" not in r]
    if not ok:
        return {"encoder": encoder, "format": fmt, "precision": precision, "error": results[-1]["error"]}
    row = dict(ok[0])
    row["median_s"] = statistics.median(t for r in ok for t in r["times_s"])
    row["first_step_s"] = statistics.median(r["first_step_s"] for r in ok)
    for key in ("peak_rss_gb", "max_allocated_gb"):
        if key in row:
            row[key] = max(r[key] for r in ok)
    return row


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    """Markdown table; speed-up against the encoder's first configuration, and for a slower first step (e.g.
    compilation) the steps after which the faster step has paid it back against the same precision's first
    format ("never" when its step is not faster)."""
    mem_key = "max_allocated_gb" if args.device.startswith("cuda") else "peak_rss_gb"
    ok = [r for r in rows if "error" not in r]
    threads = ok[0]["threads"] if ok else "?"
    print(
        f"\nbatch {args.batch}, {args.size}², {args.steps} timed steps × {args.rounds} round(s), device "
        f"{args.device}, {threads} threads; medians"
    )
    print(
        f"| encoder | precision | format | step (s) | first step (s) | {mem_key} | speed-up | pays back after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        head = f"| {row['encoder']} | {row['precision']} | {row['format']} |"
        if "error" in row:
            print(f"{head} failed: {row['error']} | | | | |")
            continue
        family = row["encoder"].partition(":")[0]
        base = next(r for r in ok if r["encoder"].partition(":")[0] == family)
        # Payback against the same precision's first format (compiled vs eager bf16, not vs fp32).
        same = next(r for r in ok if r["encoder"] == row["encoder"] and r["precision"] == row["precision"])
        extra = (row["first_step_s"] - row["median_s"]) - (same["first_step_s"] - same["median_s"])
        saving = same["median_s"] - row["median_s"]
        payback = "—" if extra <= 0 else f"{extra / saving:.0f} steps" if saving > 0 else "never"
        print(
            f"{head} {row['median_s']:.3f} | {row['first_step_s']:.1f} | {row[mem_key]:.2f} "
            f"| {base['median_s'] / row['median_s']:.2f}× | {payback} |"
        )


if __name__ == "__main__":
    main()
