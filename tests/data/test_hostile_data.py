"""Hostile and accidental inputs to the data layer (issue 22): each case once broke, each now fails by name.

Holes cut as GeoJSON means them, absurd coordinates refused, deep nesting and huge numbers named, UTF-16 read,
a decompression bomb refused, any other failure while reading a sample skippable, and a `kill -9` of a prepare
with pool workers that neither leaves orphans nor blocks the next prepare.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.app import raw_png
from tests.helpers.data import REPO, data_config, make_masks_folder
from tests.helpers.train import prepare_process
from vessel_lightning.data.geojson import AnnotationError, rasterize_geojson
from vessel_lightning.data.images import ImageReadError
from vessel_lightning.data.prepare import PrepareError, prepare, read_manifest


def _square(x0: float, y0: float, side: float) -> list[list[float]]:
    return [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]


def _polygon(*rings: list) -> dict:
    return {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": list(rings)}}


# ---- holes: a polygon is its shell minus the union of its holes --------------------------------------------


def test_a_hole_larger_than_its_shell_draws_nothing_outside_the_shell() -> None:
    mask = rasterize_geojson(_polygon(_square(20, 20, 10), _square(5, 5, 40)), (64, 64))
    assert mask.sum() == 0  # even-odd filling drew the 40² - 10² ring outside the shell


def test_a_hole_reaching_outside_its_shell_cuts_only_inside_it() -> None:
    mask = rasterize_geojson(_polygon(_square(10, 10, 20), _square(20, 20, 30)), (64, 64))
    assert mask.sum() == 20 * 20 - 10 * 10
    assert mask[35:, :].sum() == 0 and mask[:, 35:].sum() == 0 and mask[15, 15] == 1 and mask[25, 25] == 0


def test_overlapping_holes_stay_empty() -> None:
    mask = rasterize_geojson(_polygon(_square(0, 0, 40), _square(5, 5, 20), _square(15, 15, 20)), (64, 64))
    assert mask[20, 20] == 0  # the overlap of the two holes: even-odd filled it back in
    assert mask.sum() == 40 * 40 - (2 * 20 * 20 - 10 * 10)


def test_holes_of_a_multipolygon_member_beside_plain_features() -> None:
    geometry = {"type": "MultiPolygon", "coordinates": [[_square(0, 0, 30), _square(10, 10, 10)]]}
    features = [{"type": "Feature", "properties": {}, "geometry": geometry}, _polygon(_square(40, 40, 5))]
    mask = rasterize_geojson(features, (48, 48))
    assert mask.sum() == 30 * 30 - 10 * 10 + 5 * 5


# ---- coordinates, nesting, numbers, encodings --------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    return path


def _with_vertex(value: str) -> str:
    ok = json.dumps(_polygon(_square(1, 1, 3)))
    return (
        f'[{ok}, {{"type": "Feature", "properties": {{}}, "geometry": {{"type": "Polygon", '
        f'"coordinates": [[[1, 1], [{value}, 2], [3, 3], [1, 1]]]}}}}]'
    )


@pytest.mark.parametrize("value", ["1e308", "1e10", "-2000000", "1" + "0" * 400])
def test_coordinates_far_outside_any_image_are_refused(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, _with_vertex(value))
    with pytest.raises(AnnotationError, match=r"bad\.geojson: feature 1: coordinate .* beyond ±1,000,000 px"):
        rasterize_geojson(path, (10, 10))


def test_a_coordinate_within_the_bound_is_drawn() -> None:
    assert rasterize_geojson(_polygon([[0, 0], [999_999, 0], [0, 999_999], [0, 0]]), (8, 8)).sum() == 64


def test_an_integer_over_python_s_digit_limit_is_invalid_json(tmp_path: Path) -> None:
    path = _write(tmp_path, _with_vertex("7" * 5000))
    with pytest.raises(AnnotationError, match=r"bad\.geojson: invalid JSON: .*digits"):
        rasterize_geojson(path, (10, 10))


def test_arrays_nested_100000_deep_are_invalid_json(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"type": "Feature", "geometry": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(AnnotationError, match=r"bad\.geojson: invalid JSON: .*nested too deeply"):
        rasterize_geojson(path, (10, 10))


def test_geometry_collections_nested_3000_deep_are_refused(tmp_path: Path) -> None:
    inner = '{"type": "Point", "coordinates": [2, 2]}'
    text = '{"type": "GeometryCollection", "geometries": [' * 3000 + inner + "]}" * 3000
    with pytest.raises(AnnotationError, match=r"bad\.geojson: .*nested too deeply"):
        rasterize_geojson(_write(tmp_path, text), (10, 10))
    # shallow enough for the JSON parser, too deep for the rasterizer: named with the feature
    geometry: dict = {"type": "Point", "coordinates": [2, 2]}
    for _ in range(40):
        geometry = {"type": "GeometryCollection", "geometries": [geometry]}
    feature = {"type": "Feature", "properties": {}, "geometry": geometry}
    with pytest.raises(AnnotationError, match=r"feature 0: GeometryCollections nested over 32 deep"):
        rasterize_geojson([feature], (10, 10))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files_are_read(tmp_path: Path, encoding: str) -> None:
    text = json.dumps([_polygon(_square(2, 2, 10))])
    path = tmp_path / "wide.geojson"
    path.write_bytes(text.encode(encoding))  # "utf-16"/"utf-32" write a BOM, the -le/-be forms none
    assert rasterize_geojson(path, (16, 16)).sum() == 100


# ---- prepare: every failure reading one sample is that sample's error, named and skippable ------------------


def _geojson_root(tmp_path: Path, bad: dict[str, str]) -> Path:
    """A slit-lamp layout: ``ok`` plus one sample per ``bad`` entry (stem → annotation text)."""
    root = tmp_path / "raw"
    root.mkdir(parents=True)
    for stem in ["ok", *bad]:
        Image.new("RGB", (40, 30)).save(root / f"{stem}.png")
    (root / "ok.geojson").write_text(json.dumps([_polygon(_square(2, 2, 10))]))
    for stem, text in bad.items():
        (root / f"{stem}.geojson").write_text(text)
    return root


def _cfg(kind: str, root: Path, out: Path, *extra: str):
    return data_config([f"data={kind}", f"data.root={root}", f"data.prepared_dir={out}", *extra])


HOSTILE_ANNOTATIONS = {
    "deep_arrays": '{"type": "Feature", "geometry": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "deep_collections": '{"type": "GeometryCollection", "geometries": [' * 3000
    + '{"type": "Point", "coordinates": [2, 2]}'
    + "]}" * 3000,
    "digits_400": _with_vertex("1" + "0" * 400),
    "digits_5000": _with_vertex("7" * 5000),
    "far": _with_vertex("1e308"),
}


def test_hostile_annotations_are_named_and_skippable_in_prepare(tmp_path: Path) -> None:
    root = _geojson_root(tmp_path, HOSTILE_ANNOTATIONS)
    for stem in HOSTILE_ANNOTATIONS:
        alone = _geojson_root(tmp_path / stem, {stem: HOSTILE_ANNOTATIONS[stem]})
        (alone / "ok.png").unlink()
        with pytest.raises(AnnotationError, match=rf"{stem}\.geojson: "):
            prepare(_cfg("geojson", alone, tmp_path / stem / "out"), progress=False)
    summary = prepare(_cfg("geojson", root, tmp_path / "out", "data.on_error=skip"), progress=False)
    assert sum(summary.counts.values()) == 1
    skipped = {Path(path).stem: reason for path, reason in summary.skipped}
    assert set(skipped) == set(HOSTILE_ANNOTATIONS), skipped
    assert all(f"{stem}.geojson" in reason for stem, reason in skipped.items()), skipped


def test_a_photo_claiming_20000_squared_is_named_and_skippable(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=3)
    bomb = root / "images" / "eye_01.png"
    bomb.write_bytes(raw_png(20000, 20000))
    with pytest.raises(ImageReadError, match=r"eye_01\.png: image too large .*400,000,000 pixels"):
        prepare(_cfg("masks", root, tmp_path / "out", "data.size=32"), progress=False)
    summary = prepare(
        _cfg("masks", root, tmp_path / "out", "data.size=32", "data.on_error=skip"), progress=False
    )
    assert sum(summary.counts.values()) == 2
    assert next(reason for path, reason in summary.skipped if path == str(bomb)).count("too large") == 1


def test_an_unexpected_error_reading_a_sample_names_it_and_is_skippable(tmp_path: Path, monkeypatch) -> None:
    from vessel_lightning.data import prepare as prepare_module

    root = make_masks_folder(tmp_path / "raw", count=3)
    real = prepare_module.read_gray

    def flaky(path):
        if Path(path).name == "eye_02.png":
            raise MemoryError("simulated")
        return real(path)

    monkeypatch.setattr(prepare_module, "read_gray", flaky)
    with pytest.raises(PrepareError, match=r"eye_02\.png .*MemoryError while reading this sample: simulated"):
        prepare(_cfg("masks", root, tmp_path / "out", "data.size=32"), progress=False)
    summary = prepare(
        _cfg("masks", root, tmp_path / "out", "data.size=32", "data.on_error=skip"), progress=False
    )
    assert sum(summary.counts.values()) == 2 and "MemoryError" in summary.skipped[-1][1]


# ---- kill -9 of a prepare with pool workers ------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has died; only its exit status waits to be collected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the death signal is Linux's")
@pytest.mark.slow  # starts and kills vessel-prepare processes
def test_sigkill_of_a_prepare_leaves_no_workers_and_no_blocking_lock(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=40, size=(600, 600))
    out = tmp_path / "out"
    process = prepare_process(root, out, workers=2)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.staging-*/images/*.png")):
            assert process.poll() is None and time.monotonic() < deadline, "prepare never started writing"
            time.sleep(0.02)
        workers = _children(process.pid)
        assert len(workers) >= 2, workers
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [pid for pid in workers if _alive(pid)]
    finally:
        for pid in workers:  # orphans left by a regression must not block the rest of the suite
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not orphans, f"pool workers outlived their killed parent: {orphans}"
    rerun = prepare_process(root, out, workers=2)
    assert rerun.wait(120) == 0
    assert len(read_manifest(out)["samples"]) == 40


def test_the_prepare_lock_is_neither_inherited_nor_kept_by_a_dead_holder(tmp_path: Path) -> None:
    import threading

    from vessel_lightning.data.prepare import _locked

    target = tmp_path / "out"
    holder = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from vessel_lightning.data.prepare import _locked\n"
        f"with _locked(Path({str(target)!r})):\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    print(child, flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    output = tmp_path / "holder.out"
    with output.open("w") as sink:  # a file, not a pipe: the forked child keeps its copy open
        process = subprocess.run([sys.executable, "-c", holder], cwd=REPO, stdout=sink, timeout=60)
    assert process.returncode == -signal.SIGKILL
    child = int(output.read_text())
    try:
        assert _alive(child)  # the forked child lives on with the lock file open
        acquired = threading.Event()

        def take() -> None:
            with _locked(target):
                acquired.set()

        threading.Thread(target=take, daemon=True).start()
        assert acquired.wait(10), "the lock of a SIGKILLed prepare is still held (by its forked child)"
    finally:
        os.kill(child, signal.SIGKILL)


def test_without_fcntl_the_prepare_lock_is_filelocks_and_holds_across_processes(tmp_path: Path) -> None:
    """Where there is no fcntl (Windows), prepare still imports and its lock still excludes another process.
    With fcntl hidden, filelock itself falls back to its SoftFileLock here (Windows would get msvcrt locks), so the
    other process asks with that kind."""
    from filelock import SoftFileLock, Timeout

    target = tmp_path / "out"
    holder = (
        "import sys, time\n"
        "sys.modules['fcntl'] = None  # as on Windows: importing it fails\n"
        "from pathlib import Path\n"
        "from vessel_lightning.data.prepare import _locked\n"
        f"with _locked(Path({str(target)!r})):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(30)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", holder], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(Timeout):
            SoftFileLock(str(tmp_path / ".out.lock.win")).acquire(timeout=0.5)
    finally:
        process.kill()
        process.wait(10)


def test_two_threads_of_one_process_take_turns_on_the_prepare_lock(tmp_path: Path) -> None:
    import threading

    from vessel_lightning.data.prepare import _locked

    second_in = threading.Event()

    def second() -> None:
        with _locked(tmp_path / "out"):
            second_in.set()

    with _locked(tmp_path / "out"):
        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        assert not second_in.wait(0.5), "a second thread entered while the first held the lock"
    assert second_in.wait(5)
    thread.join(5)
