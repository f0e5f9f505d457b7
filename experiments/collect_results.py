"""Rows of experiments/RESULTS.md from ``vessel-eval`` summaries and their training runs in MLflow.

    python experiments/collect_results.py runs/results/*/summary.json

For each summary: the experiment tag, arch and encoder of the training run, its seed, optimizer steps, median
epoch time (between consecutive ``val/f1`` logs, validation included), wall time (run start to end), then the
evaluation's pooled F1 / IoU / clDice / thin-vessel recall / AUC at the tuned threshold and at 0.5, the
per-image mean IoU, the data sets trained and tested on, TTA, window, input scale and the run id. Prints a
Markdown table; ``--out`` writes JSON too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

COLUMNS = (
    "summary", "experiment", "arch", "encoder", "trained_on", "tested_on", "seed", "steps", "epoch_s", "wall_min",
    "tta", "window", "scale", "f1", "iou", "iou_per_image", "cldice", "thin_recall", "auc", "threshold",
    "f1_at_0.5", "run_id",
)  # fmt: skip


def training_facts(client: Any, run_id: str) -> dict[str, Any]:
    """Experiment, arch, encoder, seed, steps, median epoch seconds and wall minutes of a training run."""
    run = client.get_run(run_id)
    tags, params = run.data.tags, run.data.params
    val = sorted(client.get_metric_history(run_id, "val/f1"), key=lambda m: m.timestamp)
    gaps = [(b.timestamp - a.timestamp) / 1000 for a, b in itertools.pairwise(val)]
    end = run.info.end_time or (val[-1].timestamp if val else run.info.start_time)
    return {
        "experiment": tags.get("experiment", run.info.run_name),
        "arch": tags.get("arch", "unet"),
        "encoder": tags.get("encoder", ""),
        "seed": params.get("seed", ""),
        "steps": max((m.step for m in val), default=0) + 1,
        "epoch_s": round(statistics.median(gaps), 1) if gaps else None,
        "wall_min": round((end - run.info.start_time) / 60000, 1),
    }


def row(summary_path: Path, client: Any) -> dict[str, Any]:
    """One results row from a ``summary.json`` and its model's training run."""
    summary = json.loads(summary_path.read_text())
    facts = training_facts(client, summary["model"]["run_id"]) if summary["model"].get("run_id") else {}
    return {
        "summary": summary_path.parent.name,
        **facts,
        "tta": summary["protocol"]["tta"],
        "window": summary["protocol"].get("window") or "tile",
        "scale": summary["protocol"].get("scale", 1.0),
        "trained_on": summary["model"].get("trained_on", ""),
        "tested_on": f"{summary['protocol']['dataset']}/{summary['protocol']['split']}",
        **{k: summary[k] for k in ("f1", "iou", "cldice", "thin_recall", "auc", "threshold")},
        "iou_per_image": summary["iou_per_image_mean"],
        "f1_at_0.5": summary["at_threshold_0.5"]["f1"],
        "run_id": summary["model"].get("run_id"),
    }


def main() -> None:
    """Print the Markdown table of the given summaries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    from vessel_lightning.registry import connect

    client = MlflowClient(connect(args.tracking_uri))
    rows = [row(path, client) for path in args.summaries]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for values in rows:
        cells = [values.get(c, "") for c in COLUMNS]
        print(
            "| " + " | ".join(f"{c:.4f}" if isinstance(c, float) and c < 1 else str(c) for c in cells) + " |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
