"""experiments/results.csv, the source of every accuracy figure, and the tables of experiments/RESULTS.md made from
it and from ``vessel-eval`` summaries.

    python experiments/collect_results.py runs/results/*/summary.json --csv experiments/results.csv
    python experiments/collect_results.py --headline experiments/RESULTS.md      # regenerate the headline table
    python experiments/collect_results.py --from-markdown experiments/RESULTS.md --csv experiments/results.csv

The headline table at the top of RESULTS.md is generated from the CSV rows with a ``recipe`` (the best current
figure per data set and recipe, with its protocol, command, steps, machine and date): edit the CSV, then run
``--headline``; a test fails while the table and the CSV disagree.

For each summary: the experiment tag, arch and encoder of the training run, its seed, optimizer steps, median
epoch time (between consecutive ``val/f1`` logs, validation included), wall time (run start to end), then the
evaluation's pooled F1 / IoU / clDice / thin-vessel recall / AUC at the tuned threshold and at 0.5, the
per-image mean IoU, the data sets trained and tested on, TTA, window, input scale, device and the run id. Prints
a Markdown table; ``--out`` writes JSON too; ``--csv`` adds (or replaces, by run, test set and settings) the rows
in a CSV file. ``--from-markdown`` reads every accuracy row (a table with an ``F1`` column) of RESULTS.md instead,
for rows whose stores are not at hand.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import statistics
from pathlib import Path
from typing import Any

COLUMNS = (
    "summary", "experiment", "arch", "encoder", "trained_on", "tested_on", "seed", "steps", "epoch_s", "wall_min",
    "tta", "window", "scale", "f1", "iou", "iou_per_image", "cldice", "thin_recall", "auc", "threshold",
    "f1_at_0.5", "run_id",
)  # fmt: skip


CSV_COLUMNS = (
    "experiment", "trained_on", "tested_on", "split", "f1", "iou", "cldice", "thin_recall", "auc", "threshold",
    "tta", "window", "scale", "device", "precision", "backend", "run_id", "source",
    "recipe", "steps", "command", "machine", "date",
)  # fmt: skip
# Set by hand on the rows that head RESULTS.md; a row re-read from a summary or table keeps them.
CURATED_COLUMNS = ("recipe", "steps", "command", "machine", "date")
HEADLINE_START, HEADLINE_END = "<!-- headline:start -->", "<!-- headline:end -->"
DATA_SET_NAMES = {"chase_db1": "CHASE_DB1", "hrf": "HRF", "drive": "DRIVE"}
KEY_COLUMNS = (
    "experiment",
    "tested_on",
    "split",
    "tta",
    "window",
    "scale",
    "device",
    "precision",
    "backend",
    "run_id",
    "source",
)
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?")
_PER_SET_F1 = re.compile(r"^(chase_db1|hrf) test f1")
_RUN = re.compile(r"\b[0-9a-f]{32}\b")
_BACKENDS = ("onnx-int8", "openvino-int8", "openvino-bf16", "openvino", "onnx")  # longest first
_MARKDOWN_METRICS = {"f1": "f1", "iou": "iou", "cldice": "cldice", "thin recall": "thin_recall", "auc": "auc"}


def _first_float(cell: str) -> float | None:
    found = _FLOAT.search(cell.replace("**", ""))
    return float(found.group()) if found else None


def _tested_on(first_cell: str, heading: str) -> str:
    """HRF or CHASE_DB1: as the row's first cell names it, else as its section's heading names only one."""
    for text in (
        first_cell.lower(),
        "" if "chase" in heading.lower() and "hrf" in heading.lower() else heading.lower(),
    ):
        if "hrf" in text:
            return "hrf"
        if "chase" in text:
            return "chase_db1"
    return "chase_db1"


def from_markdown(text: str) -> list[dict[str, Any]]:
    """Every accuracy row of a RESULTS.md-style document: rows of each table whose header has an ``F1`` column.

    The test set comes from the row's first cell or its section's heading (HRF or CHASE_DB1, whichever it names),
    the training set is CHASE_DB1 for cross-set rows, ``same`` in the run column repeats the row above, TTA and the window are read
    from the row's text; figures measured on a GPU say so in the row.
    """
    rows: list[dict[str, Any]] = []
    start, end = text.find(HEADLINE_START), text.find(HEADLINE_END)
    if 0 <= start < end:  # the headline table is made from the CSV, not a source of it
        text = text[:start] + text[end + len(HEADLINE_END) :]
    lines = text.splitlines()
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        is_table = line.startswith("|") and i + 1 < len(lines) and lines[i + 1].strip().startswith("|---")
        if not is_table:
            i += 1
            continue
        header = [c.strip().replace("**", "").lower() for c in line.strip("|").split("|")]
        i += 2
        previous_run = ""
        while i < len(lines) and lines[i].strip().startswith("|"):
            cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            i += 1
            per_set = [
                h for h in header if _PER_SET_F1.match(h)
            ]  # "CHASE_DB1 test F1 (8 photos)", "HRF test F1 …"
            if ("f1" not in header and not per_set) or len(cells) != len(header):
                continue
            values = dict(zip(header, cells, strict=True))
            row_text = " ".join(cells)
            lowered = (row_text + " " + heading).lower()
            run_cell = next((v for k, v in values.items() if k == "mlflow run"), "")
            run = _RUN.search(run_cell)
            run_id = run.group() if run else (previous_run if run_cell.strip() == "same" else "")
            previous_run = run_id or previous_run
            tested = _tested_on(cells[0], heading)
            cross = "cross-set" in lowered or "CHASE_DB1" in values.get("trained on", "")
            window = re.search(r"window=(\d+)", row_text)
            row = {
                "experiment": cells[0].replace("`", "").replace("**", ""),
                "trained_on": "chase_db1" if cross else tested,
                "tested_on": tested,
                "split": "test",
                "tta": "tta=true" in row_text or "flip tta" in row_text.lower(),
                "window": window.group(1) if window else "",
                "scale": (re.search(r"scale=([\d.]+)", row_text) or [None, 1.0])[1],
                "device": "cuda" if re.search(r"\b(gpu|cuda|h100|h200|a100)\b", lowered) else "cpu",
                "precision": "bf16"
                if "bf16" in cells[0].lower()
                else "int8"
                if "int8" in cells[0].lower()
                else "fp32",
                "backend": next((b for b in _BACKENDS if b in cells[0].lower()), "torch"),
                "run_id": run_id,
                "source": f"RESULTS.md: {heading}",
            }
            if header[0] == "scale":  # a table of scales: its first column is the setting
                row["scale"] = "auto" if "auto" in cells[0] else _first_float(cells[0])
            if "precision" in values:
                row["precision"] = values["precision"].split()[0].replace("f32", "fp32").strip("`")
            for name, column in _MARKDOWN_METRICS.items():
                row[column] = _first_float(values[name]) if name in values else None
            threshold = next((v for k, v in values.items() if k.startswith("threshold")), "")
            row["threshold"] = _first_float(threshold)
            if row["f1"] is not None:
                rows.append(row)
            for column in per_set:  # one row per data set of a table with an F1 column for each
                data_set = "hrf" if column.startswith("hrf") else "chase_db1"
                f1 = _first_float(values[column]) if "not run" not in values[column] else None
                if f1 is not None:
                    scale = re.search(r"scale=([\d.]+)", column)
                    rows.append(
                        row
                        | {
                            "tested_on": data_set,
                            "f1": f1,
                            "scale": scale.group(1) if scale else row["scale"],
                        }
                    )
    return rows


def summary_csv_row(summary_path: Path) -> dict[str, Any]:
    """The results.csv row of one ``vessel-eval`` ``summary.json``."""
    summary = json.loads(summary_path.read_text())
    protocol, model = summary["protocol"], summary["model"]
    return {
        "experiment": summary_path.parent.name,
        "trained_on": model.get("trained_on", ""),
        "tested_on": protocol["dataset"],
        "split": protocol["split"],
        **{k: summary[k] for k in ("f1", "iou", "cldice", "thin_recall", "auc", "threshold")},
        "tta": protocol["tta"],
        "window": protocol.get("window") or "",
        "scale": protocol.get("scale", 1.0),
        "device": str(protocol.get("device", "cpu")).split(":")[0],
        "precision": protocol.get("precision", "fp32"),
        "backend": protocol.get("backend", "torch"),
        "run_id": model.get("run_id") or "",
        "source": str(summary_path),
    }


def write_csv(path: Path, new_rows: list[dict[str, Any]]) -> int:
    """Add ``new_rows`` to the CSV at ``path`` (a row with the same key is replaced); written atomically.

    Returns the number of rows in the file."""

    def key(row: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(row.get(c, "")) for c in KEY_COLUMNS)

    existing: dict[tuple[str, ...], dict[str, Any]] = {}
    if path.is_file():
        with path.open(newline="") as handle:
            existing = {key(r): r for r in csv.DictReader(handle)}
    for row in new_rows:
        kept = existing.get(key(row), {})
        existing[key(row)] = {
            c: kept.get(c, "")
            if c in CURATED_COLUMNS and row.get(c) in (None, "")
            else ("" if row.get(c) is None else row.get(c))
            for c in CSV_COLUMNS
        }
    temporary = path.with_name(path.name + ".partial")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(existing.values())
    temporary.replace(path)
    return len(existing)


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def headline_table(rows: list[dict[str, str]]) -> str:
    """The Markdown table of the rows that carry a ``recipe``, in the CSV's order: one per data set and recipe."""
    lines = [
        "| data set | recipe | F1 | IoU | protocol | command | steps | machine | date | MLflow run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row.get("recipe"):
            continue
        tested = DATA_SET_NAMES.get(row["tested_on"], row["tested_on"])
        trained = DATA_SET_NAMES.get(row["trained_on"], row["trained_on"])
        data_set = tested if trained == tested else f"{trained} → {tested}"
        protocol = [f"{row['split']} split, native resolution, inside the FOV, threshold tuned on validation"]
        if row.get("tta") == "True":
            protocol.append("flip TTA")
        if row.get("window"):
            protocol.append(f"{row['window']}² window")
        if row.get("scale") not in ("", "1.0", "1"):
            protocol.append(f"photos scaled by {row['scale']}")
        if row.get("backend") not in ("", "torch"):
            protocol.append(row["backend"])
        run = f"`{row['run_id']}`" if row.get("run_id") else ""
        lines.append(
            f"| {data_set} | {row['recipe']} | **{float(row['f1']):.4f}** | "
            f"{float(row['iou']):.4f} | {'; '.join(protocol)} | `{row['command']}` | {row['steps']} | "
            f"{row['machine']} | {row['date']} | {run} |"
            if row.get("iou")
            else f"| {data_set} | {row['recipe']} | **{float(row['f1']):.4f}** | | {'; '.join(protocol)} | "
            f"`{row['command']}` | {row['steps']} | {row['machine']} | {row['date']} | {run} |"
        )
    return "\n".join(lines) + "\n"


def with_headline(markdown: str, table: str) -> str:
    """``markdown`` with the text between the headline markers replaced by ``table``."""
    start, end = markdown.find(HEADLINE_START), markdown.find(HEADLINE_END)
    if start < 0 or end < start:
        raise ValueError(f"no {HEADLINE_START} … {HEADLINE_END} markers")
    return markdown[: start + len(HEADLINE_START)] + "\n" + table + markdown[end:]


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
    parser.add_argument("summaries", nargs="*", type=Path)
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--csv", type=Path, help="add the rows to this CSV (experiments/results.csv)")
    parser.add_argument("--from-markdown", type=Path, help="take the rows from RESULTS.md's accuracy tables")
    parser.add_argument(
        "--headline", type=Path, help="rewrite this RESULTS.md's headline table from --csv's rows"
    )
    args = parser.parse_args()
    if args.headline:
        source = args.csv or Path(__file__).resolve().parent / "results.csv"
        text = with_headline(args.headline.read_text(encoding="utf-8"), headline_table(read_csv(source)))
        temporary = args.headline.with_name(args.headline.name + ".partial")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(args.headline)
        print(f"{args.headline}: headline table from {source}")
        return
    if args.from_markdown:
        rows = from_markdown(args.from_markdown.read_text())
        print(f"{len(rows)} accuracy rows in {args.from_markdown}")
        if args.csv:
            print(f"{args.csv}: {write_csv(args.csv, rows)} rows")
        return
    if not args.summaries:
        parser.error("give summary.json files or --from-markdown")
    if args.csv:
        print(f"{args.csv}: {write_csv(args.csv, [summary_csv_row(p) for p in args.summaries])} rows")
    from mlflow.tracking import MlflowClient

    from vessel_lightning.tracking.registry import connect

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
