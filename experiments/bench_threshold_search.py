"""The validation threshold search: torchmetrics' precision-recall curve against the module's histograms.

Times one validation batch's update (``--batch`` tiles of ``--size``² probabilities) for torchmetrics'
``BinaryPrecisionRecallCurve`` binned at the histogram's edges and unbinned (it keeps every pixel), and for the
bincount histograms ``VesselSegmenter`` accumulates, checks that the binned curve's best-F1 threshold equals the
histogram's, and prints the CPU it ran on. Medians over ``--repeats``.

    python experiments/bench_threshold_search.py --batch 8 --size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchmetrics.classification import BinaryPrecisionRecallCurve

from vessel_lightning.hardware import cpu_features
from vessel_lightning.threshold import BINS, best_f1_threshold, probability_histograms


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(cpu_features().describe(), f"torch threads {torch.get_num_threads()}")
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(args.batch, 1, args.size, args.size, generator=generator) < 0.12
    # Plausible probabilities: high on vessels, low elsewhere, overlapping.
    noise = torch.rand(target.shape, generator=generator)
    probs = torch.where(target, 0.35 + 0.65 * noise, 0.6 * noise**3)
    edges = torch.arange(BINS + 1, dtype=torch.float32) / BINS

    binned = BinaryPrecisionRecallCurve(thresholds=edges)
    exact = BinaryPrecisionRecallCurve(thresholds=None)
    rows = {
        "histograms (bincount, the module's)": lambda: probability_histograms(probs, target),
        f"torchmetrics binned ({BINS + 1} thresholds)": lambda: binned.update(probs, target.long()),
        "torchmetrics unbinned (keeps every pixel)": lambda: exact.update(probs, target.long()),
    }
    print(f"one validation batch: {args.batch} × {args.size}² probabilities, median of {args.repeats}")
    baseline = None
    for name, fn in rows.items():
        seconds = _median_seconds(fn, args.repeats)
        baseline = baseline or seconds
        print(f"  {name:45s} {seconds * 1e3:10.1f} ms  {seconds / baseline:8.1f}×")
    hist = probability_histograms(probs, target)
    ours, _ = best_f1_threshold(hist[0].numpy(), hist[1].numpy())
    binned = BinaryPrecisionRecallCurve(thresholds=edges)
    binned.update(probs, target.long())
    precision, recall, thresholds = binned.compute()
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    allowed = (thresholds >= 0.05 - 1e-6) & (thresholds <= 0.95 + 1e-6)
    theirs = float(thresholds[torch.argmax(torch.where(allowed, f1[:-1], -1.0))])
    print(f"best-F1 threshold: histograms {ours:.3f}, torchmetrics binned {theirs:.3f}")


if __name__ == "__main__":
    main()
