"""experiments/results.csv holds every accuracy row of experiments/RESULTS.md, and collect_results.py reads
tables, summaries and CSVs the way it says."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
from collect_results import CSV_COLUMNS, from_markdown, summary_csv_row, write_csv  # a script, not a package

REPO = Path(__file__).resolve().parents[2]

SAMPLE = """## HRF, and CHASE_DB1 → HRF

| experiment | trained on | F1 | IoU | clDice | thin recall | AUC | threshold (val) | MLflow run |
|---|---|---|---|---|---|---|---|---|
| `hrf_tiles` | HRF | **0.7359** (0.735912) | 0.5821 | 0.7028 | 0.4283 | 0.9371 | 0.234 | `be7c808467fc450fb83314427c4dd6a6` |
| `cpu_tiles` on HRF (cross-set), `scale=0.42` | CHASE_DB1 | 0.7118 | 0.5525 | 0.7270 | 0.5516 | 0.9448 | 0.465 | `7bdb53ebdcf740ffb8010aa0e9aae562` |
| the same, `window=512 tta=true` on an H200 GPU | CHASE_DB1 (cross-set) | 0.7200 | 0.56 | 0.73 | 0.55 | 0.95 | 0.465 | same |

| model | params | GFLOP |
|---|---|---|
| `unet` | 6.25 M | 23.7 |
"""


def test_markdown_rows_read_test_set_training_set_run_and_settings() -> None:
    rows = from_markdown(SAMPLE)
    assert len(rows) == 3  # the table without an F1 column is not an accuracy table
    first, cross, same = rows
    assert (first["experiment"], first["tested_on"], first["trained_on"]) == ("hrf_tiles", "hrf", "hrf")
    assert first["f1"] == 0.7359 and first["threshold"] == 0.234 and first["thin_recall"] == 0.4283
    assert (cross["trained_on"], cross["scale"], cross["tta"], cross["device"]) == (
        "chase_db1",
        "0.42",
        False,
        "cpu",
    )
    assert same["run_id"] == "7bdb53ebdcf740ffb8010aa0e9aae562" and same["tta"] and same["window"] == "512"
    assert same["device"] == "cuda"


def test_write_csv_replaces_rows_with_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    rows = from_markdown(SAMPLE)
    assert write_csv(path, rows) == 3
    changed = dict(rows[0], f1=0.8)
    assert write_csv(path, [changed]) == 3
    with path.open(newline="") as handle:
        got = list(csv.DictReader(handle))
    assert (
        tuple(got[0]) == CSV_COLUMNS
        and got[0]["f1"] == "0.8"
        and not (tmp_path / "results.csv.partial").exists()
    )


def test_summary_row_carries_device_precision_and_backend(tmp_path: Path) -> None:
    summary = {
        "f1": 0.81, "iou": 0.68, "cldice": 0.83, "thin_recall": 0.63, "auc": 0.98, "threshold": 0.5,
        "protocol": {"dataset": "chase_db1", "split": "test", "tta": False, "window": 512, "scale": 1.0,
                     "device": "cuda:0", "precision": "fp16", "backend": "torch"},
        "model": {"trained_on": "chase_db1", "run_id": "a" * 32},
    }  # fmt: skip
    (tmp_path / "chase_gpu").mkdir()
    (tmp_path / "chase_gpu" / "summary.json").write_text(json.dumps(summary))
    row = summary_csv_row(tmp_path / "chase_gpu" / "summary.json")
    assert (row["experiment"], row["device"], row["precision"], row["f1"]) == (
        "chase_gpu",
        "cuda",
        "fp16",
        0.81,
    )


def test_results_csv_holds_every_accuracy_row_of_results_md() -> None:
    expected = from_markdown((REPO / "experiments" / "RESULTS.md").read_text())
    with (REPO / "experiments" / "results.csv").open(newline="") as handle:
        stored = {
            (r["experiment"], r["tested_on"], r["run_id"], r["tta"], r["source"]): r
            for r in csv.DictReader(handle)
        }
    assert len(expected) >= 30
    missing = [
        r["experiment"]
        for r in expected
        if (r["experiment"], r["tested_on"], r["run_id"], str(r["tta"]), r["source"]) not in stored
    ]
    assert not missing, (
        f"rows of RESULTS.md missing from results.csv (run collect_results.py --from-markdown): {missing}"
    )
    for r in expected:
        assert (
            float(stored[(r["experiment"], r["tested_on"], r["run_id"], str(r["tta"]), r["source"])]["f1"])
            == r["f1"]
        )
