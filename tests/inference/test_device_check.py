"""The prepared GPU-machine script runs end to end on the CPU in smoke mode, without the packages the bare GPU
machine lacks (MLflow, rasterio), so that on a lent machine it works the first time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BLOCKER = '''
import sys
class _Missing:
    """Packages the lent GPU machine does not have: importing them fails as if absent."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "rasterio"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _Missing())
'''


@pytest.mark.slow
@pytest.mark.data
def test_device_check_smoke_runs_every_step(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = os.environ | {
        "PYTHON": sys.executable,
        "PYTHONPATH": str(tmp_path / "site"),
        "VESSEL_DATA_DIR": str(data_dir),
        "VESSEL_RUNS_DIR": str(tmp_path / "runs"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        ["bash", "experiments/device_check.sh", str(out), "--smoke", "--model", str(tmp_path / "none")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] and summary["environment"]["torch"]
    variants = summary["serving"]["variants"]
    assert [v["VESSEL_BATCHING"] for v in variants] == ["off", "on"]
    for variant in variants:
        assert "error" not in variant, variant
        assert len(variant["loads"]) == 5 and all(load["errors"] == 0 for load in variant["loads"])
        assert all(load["p95_ms"] >= load["p50_ms"] > 0 for load in variant["loads"])
    assert variants[1]["batching"]["calls"] > 0 and variants[0]["batching"] is None
    assert summary["serving"]["bare_forward_ms"]["fp32"]["1x64"] > 0
    assert 0 <= summary["accuracy"]["fp32"]["f1"] <= 1
    (row,) = summary["train_steps"]["rows"]
    assert row["encoder"] == "b0" and row["median_s"] > 0
    assert summary["training"]["exit"] == 0 and summary["training"]["packs"] == ["chase_gpu.tgz"]
    with tarfile.open(out / "packs" / "chase_gpu.tgz") as pack:
        names = pack.getnames()
    assert "./artifacts/network.pt" in names and "./artifacts/contract.json" in names
    assert "| fp32 |" in (out / "summary.md").read_text()
    too_big = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size >= 16 * 1024 * 1024]
    assert not too_big  # everything under OUT comes back from the device machine
