"""A sweep's comparison: one row per job (swept parameters, accuracy, serving cost), as CSV, Markdown, a chart.

The rows come from the child runs of a sweep's parent run (tag ``mlflow.parentRunId``); the parameters are the
job overrides that differ between jobs (tag ``sweep_params``); the cost columns are what ``ServingCost`` logs
(GFLOP and CPU forward time at ``cost/size``², 512 by default). ``summarize_sweep`` logs all three to the parent run; ``vessel-runs
--sweep`` prints the same table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCURACY_METRICS = ("val/f1_best", "test/f1")
COST_METRICS = ("cost/size", "cost/gflop", "cost/cpu_ms", "cost/gpu_ms")
ARTIFACT_DIR = "sweep"
CHART_FILE = "accuracy_vs_cost.png"
TABLE_FILES = ("summary.csv", "summary.md")


@dataclass
class SweepTable:
    """Rows (dicts keyed by column) best first by ``metric``; ``params`` are the swept parameter columns."""

    metric: str
    params: list[str]
    metrics: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return ["run", "run_id", "status", "trial", *self.params, *self.metrics]


def child_runs(client: Any, parent_run_id: str) -> list[Any]:
    """The runs nested under ``parent_run_id`` (every lifecycle stage except deleted)."""
    parent = client.get_run(parent_run_id)
    return list(
        client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            max_results=5000,
        )
    )


def _job_params(run: Any) -> dict[str, str]:
    try:
        params = json.loads(run.data.tags.get("sweep_params", "{}"))
    except json.JSONDecodeError:
        return {}
    return {k: str(v) for k, v in params.items() if not k.startswith(("tags.", "hydra."))}


def sweep_table(runs: list[Any], metric: str = "val/f1_best") -> SweepTable:
    """Build the table of ``runs`` (MLflow ``Run`` objects of one sweep), best ``metric`` first.

    Parameter columns: the overrides whose value differs between runs (all of them for a single run).
    """
    job_params = {r.info.run_id: _job_params(r) for r in runs}
    keys = sorted({k for p in job_params.values() for k in p})
    if len(runs) > 1:
        keys = [k for k in keys if len({p.get(k) for p in job_params.values()}) > 1]
    metrics = [metric, *(m for m in (*ACCURACY_METRICS, *COST_METRICS) if m != metric)]
    metrics = [m for m in metrics if m == metric or any(m in r.data.metrics for r in runs)]
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run": run.info.run_name or "",
            "run_id": run.info.run_id,
            "status": run.info.status,
            "trial": run.data.tags.get("optuna_trial", run.data.tags.get("sweep_job", "")),
        }
        row.update({k: job_params[run.info.run_id].get(k, "") for k in keys})
        row.update({m: run.data.metrics.get(m) for m in metrics})
        rows.append(row)
    rows.sort(key=lambda r: (r[metric] is None, -(r[metric] or 0.0)))
    return SweepTable(metric, keys, metrics, rows)


def format_cell(value: Any) -> str:
    """A table cell as text: 4 decimals below 10, 1 above (milliseconds), empty for a missing value."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def to_csv(table: SweepTable) -> str:
    """The table as CSV text (empty cells where a run lacks a metric)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if row[c] is None else row[c] for c in table.columns])
    return out.getvalue()


def to_markdown(table: SweepTable) -> str:
    """The table as a Markdown table (run ids shortened to 12 characters)."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.rows:
        cells = [format_cell(row[c])[:12] if c == "run_id" else format_cell(row[c]) for c in table.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher), sorted by cost."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def plot(table: SweepTable, path: Path) -> Path:
    """Draw accuracy against serving cost (CPU ms and GFLOP, one panel each) to a PNG at ``path``.

    Each run is a labelled point (its swept values); filled = ``table.metric``, open = test F1 where evaluated;
    the line is the accuracy–speed front of the first panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[str] = [m for m in ("cost/cpu_ms", "cost/gflop") if m in table.metrics] or ["trial"]
    sizes = {int(r["cost/size"]) for r in table.rows if r.get("cost/size")}
    at = f" at {sizes.pop()}²" if len(sizes) == 1 else ""
    labels = {"cost/cpu_ms": f"CPU forward{at} (ms, median)", "cost/gflop": f"GFLOP{at}"}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for index, (ax, x_key) in enumerate(zip(axes[0], panels, strict=True)):
        points = []
        for row in table.rows:
            x, y = row.get(x_key), row.get(table.metric)
            if x in (None, "") or y is None or math.isnan(float(y)):
                continue
            x = float(x)
            points.append((x, float(y)))
            ax.scatter([x], [y], color="tab:blue")
            label = ", ".join(f"{row[k]}" for k in table.params) or str(row["run"])
            ax.annotate(label[:40], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            if row.get("test/f1") is not None:
                ax.scatter([x], [row["test/f1"]], facecolors="none", edgecolors="tab:orange")
        if index == 0 and len(points) > 1:
            front = pareto_front(points)
            ax.plot([p[0] for p in front], [p[1] for p in front], color="tab:blue", alpha=0.4)
        ax.set_xlabel(labels.get(x_key, x_key))
        ax.set_ylabel(f"{table.metric} (filled) / test/f1 (open)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{len(table.rows)} runs: accuracy against serving cost")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarize_sweep(
    client: Any, parent_run_id: str, metric: str, sweep_dir: Path | None = None
) -> SweepTable:
    """Log the sweep's table (``sweep/summary.csv``, ``sweep/summary.md``) and chart
    (``sweep/accuracy_vs_cost.png``) to its parent run, plus ``best/<metric>``, ``runs`` and the tag
    ``best_run_id``; an Optuna sweep's ``optimization_results.yaml`` from ``sweep_dir`` too. Returns the table."""
    table = sweep_table(child_runs(client, parent_run_id), metric)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / TABLE_FILES[0]).write_text(to_csv(table))
        (folder / TABLE_FILES[1]).write_text(to_markdown(table))
        plot(table, folder / CHART_FILE)
        results = sweep_dir / "optimization_results.yaml" if sweep_dir else None
        if results is not None and results.is_file():
            (folder / results.name).write_text(results.read_text())
        client.log_artifacts(parent_run_id, str(folder), ARTIFACT_DIR)
    client.log_metric(parent_run_id, "runs", len(table.rows))
    best = next((r for r in table.rows if r[metric] is not None), None)
    if best is not None:
        client.log_metric(parent_run_id, f"best/{metric}", best[metric])
        client.set_tag(parent_run_id, "best_run_id", best["run_id"])
        client.set_tag(parent_run_id, "best_run", best["run"])
    return table
