"""``vessel-predict --engine ray``: the same files as the in-process engine, failures as rows, resumable reruns,
and the pieces that decide how the actor pool is laid out."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.app import fundus_photo
from tests.helpers.registry import logged_run, tiny_contract
from vessel_lightning.inference.outputs import CSV_NAME, JOURNAL_NAME, MeasurementsTable, OutputSpec
from vessel_lightning.inference.predict_cli import main as predict_main
from vessel_lightning.tracking.registry import register


def test_actors_split_the_cores_and_leave_one_for_reading_or_take_one_gpu_each() -> None:
    from vessel_lightning.inference.ray_engine import pool_layout

    assert pool_layout({"CPU": 2.0}, 2) == (2, {"num_cpus": 0.5}, 1)
    assert pool_layout({"CPU": 2.0}, 1) == (1, {"num_cpus": 1.0}, 2)
    assert pool_layout({"CPU": 16.0}, None) == (2, {"num_cpus": 7.5}, 8)
    assert pool_layout({"CPU": 32.0, "GPU": 4.0}, None) == (4, {"num_cpus": 1, "num_gpus": 1}, None)
    assert pool_layout({"CPU": 32.0, "GPU": 4.0}, 8)[0] == 4


def test_a_photo_is_done_only_with_its_error_free_row_at_this_threshold_and_all_its_files(
    tmp_path: Path,
) -> None:
    spec = OutputSpec(tmp_path, ("png",), "none")
    photos = [tmp_path / "in" / f"{name}.png" for name in ("a", "b", "c")]
    for kind in ("mask", "prob", "overlay"):
        (tmp_path / f"a.{kind}.png").write_bytes(b"x")
        (tmp_path / f"b.{kind}.png").write_bytes(b"x")
    (tmp_path / "b.prob.png").unlink()  # b lost a file
    table = MeasurementsTable(spec, photos, 0.5)
    table.add({"photo": str(photos[0]), "threshold": 0.5, "error": ""})
    table.add({"photo": str(photos[1]), "threshold": 0.5, "error": ""})
    table.add({"photo": str(photos[2]), "error": "c.png: not a readable image"})
    table.close()
    assert not (tmp_path / JOURNAL_NAME).exists()
    again = MeasurementsTable(spec, photos, 0.5)
    assert [again.complete(p) for p in photos] == [True, False, False]
    again.close()
    assert not MeasurementsTable(spec, photos, 0.4).complete(photos[0])  # another threshold: redo


@pytest.fixture
def ray_local(monkeypatch: pytest.MonkeyPatch):
    """A local Ray for this test (no RAY_ADDRESS), shut down afterwards."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield ray
    ray.shutdown()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(900)  # Ray on a busy 2-core machine: a stall fails the test instead of hanging CI
def test_ray_engine_writes_what_the_local_engine_writes_and_resumes(
    store: str, network, ray_local, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(logged_run(network, tiny_contract()), alias="champion")
    # The store is named on the command line only: Ray's workers must not find it through their environment.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    eyes = tmp_path / "eyes"
    eyes.mkdir()
    for i in range(3):
        rgb, _ = fundus_photo(96, 128, 44 + 4 * i, seed=i)
        Image.fromarray(rgb).save(eyes / f"eye_{i}.png")
    (eyes / "broken.png").write_bytes(b"not a png")
    manifest = tmp_path / "study.csv"
    names = sorted(p.name for p in eyes.iterdir())
    manifest.write_text("photo\n" + "".join(f"eyes/{name}\n" for name in names))
    common = ["--format", "png,geojson", "--fov-degrees", "30", "--backend", "torch", "--tracking-uri", store]

    assert predict_main([str(manifest), "--out", str(tmp_path / "local"), *common]) == 1
    assert predict_main([str(manifest), "--out", str(tmp_path / "ray"), *common, "--engine", "ray"]) == 1
    assert "broken.png: not a readable image" in capsys.readouterr().err

    local, ray = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(local) == sorted(ray) and len(local) == 3 * 5 + 1  # 4 PNGs + GeoJSON per photo, the table
    for name in local:
        assert ray[name] == local[name], name  # byte-identical masks, GeoJSON and measurements.csv
    rows = list(csv.DictReader((tmp_path / "ray" / CSV_NAME).open()))
    assert [Path(r["photo"]).name for r in rows] == names  # sorted by photo, the failure included
    assert [bool(r["error"]) for r in rows] == [True, False, False, False]
    assert rows[0]["error"].endswith("broken.png: not a readable image")

    # A rerun skips the finished photos (their files stay untouched) and tries the failed one again.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").iterdir() if p.suffix != ".csv"}
    capsys.readouterr()
    assert predict_main([str(manifest), "--out", str(tmp_path / "ray"), *common, "--engine", "ray"]) == 1
    assert "(1 predicted, 3 already done;" in capsys.readouterr().out
    assert before == {
        p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").iterdir() if p.suffix != ".csv"
    }
    assert (tmp_path / "ray" / CSV_NAME).read_bytes() == local[CSV_NAME]
    assert not any(
        name.startswith(".") for name in os.listdir(tmp_path / "ray")
    )  # no journal or temporary left


def test_ray_address_joins_that_cluster_and_without_it_a_local_ray_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ray = pytest.importorskip("ray")
    from vessel_lightning.inference.ray_engine import connect

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:10001")
    assert connect(num_cpus=2) == {"CPU": 8.0}
    monkeypatch.delenv("RAY_ADDRESS")
    connect(num_cpus=2)
    assert [(c["address"], c["num_cpus"]) for c in calls] == [("ray://127.0.0.1:10001", None), (None, 2)]
