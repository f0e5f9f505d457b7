"""The annotation folder: layout, ids, versions, strict GeoJSON and region checks, atomic and serialised saves
(a save killed at any file leaves the previous state or the whole new one), and vessel-prepare reading it (a saved
region of interest becomes the sample's field)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.data import data_config
from vessel_lightning.data.annotations import (
    AnnotationFolderError,
    AnnotationInputError,
    AnnotationStore,
    UnknownAnnotation,
    check_id,
    mask_from_geojson,
    photo_id,
    roi_from_geojson,
)
from vessel_lightning.data.geojson import rasterize_geojson

REPO = Path(__file__).resolve().parents[2]
SHAPE = (40, 56)
ROI = {"type": "Polygon", "coordinates": [[[4, 4], [40, 4], [40, 30], [4, 30], [4, 4]]]}


def _photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)


def _mask(seed: int = 0) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    rng = np.random.default_rng(100 + seed)
    for _ in range(3):
        row, col = int(rng.integers(2, SHAPE[0] - 6)), int(rng.integers(2, SHAPE[1] - 12))
        mask[row : row + 2, col : col + 10] = True
    mask[5:25, 30] = True  # a 1-px vessel: the outline must still rasterise back exactly
    return mask


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the lock folder aside) by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".locks" not in p.parts
    }


def _save(store: AnnotationStore, seed: int = 0, **kw) -> object:
    args = {"annotator": "ann", "status": "final"} | kw
    return store.save(_photo(), _mask(seed), **args)


def test_a_save_writes_the_layout_prepare_reads_and_a_resave_keeps_the_previous_version(
    tmp_path: Path,
) -> None:
    store = AnnotationStore(tmp_path)
    rgb = _photo()
    model_mask = _mask(0).copy()
    model_mask[:, :3] = True  # the annotator removed this column band...
    corrected = _mask(0)
    corrected[30:32, 40:50] = True  # ...and painted this
    first = store.save(
        rgb, corrected, annotator="Dr A", status="draft", roi=ROI, note="left eye", threshold=0.4,
        model_mask=model_mask, model={"name": "vessel-unet", "version": "3"},
    )  # fmt: skip
    assert first.id == photo_id(rgb) and first.version == 1 and first.count == 1
    assert first.added == int((corrected & ~model_mask).sum()) > 0
    assert first.removed == int((model_mask & ~corrected).sum()) > 0
    assert first.vessel_pixels == int(corrected.sum())

    # The photo: pixels exactly, as a PNG without any metadata chunk.
    saved = tmp_path / "images" / f"{first.id}.png"
    assert np.array_equal(np.asarray(Image.open(saved)), rgb)
    assert not [
        chunk for chunk in (b"eXIf", b"tEXt", b"iTXt", b"zTXt", b"tIME") if chunk in saved.read_bytes()
    ]
    # The GeoJSON rasterises back, with the project's reader, to exactly the saved mask.
    geojson = tmp_path / "annotations" / f"{first.id}.geojson"
    assert np.array_equal(rasterize_geojson(geojson, SHAPE).astype(bool), corrected)
    meta = store.sidecar(first.id)
    assert meta["roi"] == ROI and meta["note"] == "left eye" and meta["threshold"] == 0.4
    assert meta["model"] == {"name": "vessel-unet", "version": "3"}
    assert (meta["width"], meta["height"], meta["status"], meta["annotator"]) == (56, 40, "draft", "Dr A")
    assert meta["roi_pixels"] == 36 * 26

    # The same photo again: version 2 is current, version 1 is kept in the history.
    second = store.save(rgb, _mask(1), annotator="Dr B", status="final")
    assert (second.id, second.version, second.count) == (first.id, 2, 1)
    assert np.array_equal(rasterize_geojson(geojson, SHAPE).astype(bool), _mask(1))
    history = tmp_path / "history" / first.id
    assert np.array_equal(rasterize_geojson(history / "1.geojson", SHAPE).astype(bool), corrected)
    assert json.loads((history / "1.json").read_text())["annotator"] == "Dr A"
    assert store.geojson(first.id) == geojson.read_bytes()
    assert [item["version"] for item in store.items()] == [2]


def test_ids_are_the_pixels_digest_and_nothing_else_names_a_file(tmp_path: Path) -> None:
    rgb = _photo()
    assert photo_id(rgb) == photo_id(rgb.copy()) != photo_id(_photo(1))
    assert photo_id(rgb) != photo_id(np.ascontiguousarray(rgb.reshape(56, 40, 3)))  # same bytes, other shape
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/", ""):
        with pytest.raises(AnnotationInputError, match=r"^id: "):
            check_id(bad)
    store = AnnotationStore(tmp_path)
    with pytest.raises(UnknownAnnotation):
        store.geojson("0" * 64)
    with pytest.raises(AnnotationInputError):
        store.geojson("../meta/x")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mask": np.zeros((40, 55), dtype=bool)}, "annotation"),
        ({"status": "done"}, "status"),
        ({"annotator": "  "}, "annotator"),
        ({"threshold": 1.5}, "threshold"),
        ({"roi": {"type": "Polygon", "coordinates": [[[0, 0], [57, 0], [0, 10], [0, 0]]]}}, "roi"),
        ({"roi": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}}, "roi"),
        ({"model_mask": np.zeros((41, 56), dtype=bool)}, "model_mask"),
    ],
)
def test_bad_input_names_its_field_and_writes_nothing(tmp_path: Path, change: dict, field: str) -> None:
    store = AnnotationStore(tmp_path)
    _save(store)
    before = _snapshot(tmp_path)
    args = {"annotator": "ann", "status": "final", "mask": _mask(1)} | change
    mask = args.pop("mask")
    with pytest.raises(AnnotationInputError) as caught:
        store.save(_photo(), mask, **args)
    assert caught.value.field == field
    assert _snapshot(tmp_path) == before


def test_geojson_is_checked_strictly_against_the_photo() -> None:
    inside = {"type": "Polygon", "coordinates": [[[0, 0], [56, 0], [56, 40], [0, 40], [0, 0]]]}
    assert mask_from_geojson(json.dumps(inside).encode(), SHAPE).all()  # edges of the photo are inside
    outside = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[10, 10], [20, 10], [20, 40.5], [10, 10]]]}}  # fmt: skip
    with pytest.raises(
        AnnotationInputError, match=r"annotation: feature 0: coordinate \[20, 40.5\] is outside"
    ):
        mask_from_geojson({"type": "FeatureCollection", "features": [outside]}, SHAPE)
    for broken, message in ((b"", "empty"), (b"{", "invalid JSON"), (b'{"type": "Nope"}', "not GeoJSON")):
        with pytest.raises(AnnotationInputError, match=f"annotation: .*{message}"):
            mask_from_geojson(broken, SHAPE)
    with pytest.raises(AnnotationInputError, match="roi: the region of interest covers no pixel centre"):
        roi_from_geojson({"type": "Polygon", "coordinates": [[[1, 1], [1.4, 1], [1.4, 1.4], [1, 1]]]}, SHAPE)


def test_a_missing_or_read_only_folder_is_named_with_its_setting(tmp_path: Path) -> None:
    with pytest.raises(AnnotationFolderError, match=r"VESSEL_ANNOTATIONS_DIR=.*absent: no such folder"):
        AnnotationStore(tmp_path / "absent", setting="VESSEL_ANNOTATIONS_DIR")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(AnnotationFolderError, match=r"VESSEL_ANNOTATIONS_DIR=.*a-file: no such folder"):
        AnnotationStore(tmp_path / "a-file", setting="VESSEL_ANNOTATIONS_DIR")
    (tmp_path / "gone").mkdir()
    store = AnnotationStore(tmp_path / "gone")
    (tmp_path / "gone").rename(tmp_path / "moved")  # the folder disappears under a running server
    with pytest.raises(AnnotationFolderError, match="no such folder"):
        _save(store)
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(AnnotationFolderError, match="not writable"):
            AnnotationStore(folder, setting="VESSEL_ANNOTATIONS_DIR")
    finally:
        folder.chmod(0o755)


_KILLED_SAVE = """
import sys, time
from pathlib import Path
import numpy as np
from tests.data.test_annotations import _mask, _photo
from vessel_lightning.data.annotations import AnnotationStore

root, stop_after = Path(sys.argv[1]), sys.argv[2]
store = AnnotationStore(root)
def pause(path):
    if path.name == stop_after or path.parent.name == stop_after:
        (root / "stopped").write_text(path.name)
        time.sleep(60)
store.after_write = pause
store.save(_photo(), _mask(1), annotator="killed", status="final")
"""


def _kill_during_save(root: Path, stop_after: str) -> None:
    """Run a save in a child process, SIGKILL it right after the file ``stop_after`` is renamed into place."""
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(root), stop_after],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    deadline = time.monotonic() + 60
    while not (root / "stopped").exists():
        assert child.poll() is None, "the save finished or failed before its pause"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    (root / "stopped").unlink()


@pytest.mark.slow  # a child process per case
def test_a_save_killed_before_its_commit_leaves_the_previous_state(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path)
    first = _save(store, 0)
    before = _snapshot(tmp_path)
    version_files = {"1.geojson", "1.json"}
    # Killed after the new version's GeoJSON reached the history, before the sidecar (the commit).
    _kill_during_save(tmp_path, "2.geojson")
    assert store.sidecar(first.id)["version"] == 1  # readers of the layout still see version 1
    assert (tmp_path / "annotations" / f"{first.id}.geojson").read_bytes() == before[
        f"annotations/{first.id}.geojson"
    ]
    AnnotationStore(tmp_path)  # opening the folder removes what the killed save left
    assert _snapshot(tmp_path) == before
    assert {p.name for p in (tmp_path / "history" / first.id).iterdir()} == version_files


@pytest.mark.slow  # a child process
def test_a_save_killed_after_its_commit_is_completed_from_the_history(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path)
    first = _save(store, 0)
    _kill_during_save(tmp_path, f"{first.id}.json")  # the sidecar (commit) is in place, the GeoJSON not yet
    assert store.sidecar(first.id)["version"] == 2
    assert np.array_equal(  # the API serves the committed version even before recovery
        mask_from_geojson(store.geojson(first.id), SHAPE), _mask(1)
    )
    AnnotationStore(tmp_path)
    current = tmp_path / "annotations" / f"{first.id}.geojson"
    assert np.array_equal(rasterize_geojson(current, SHAPE).astype(bool), _mask(1))
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow  # a child process
def test_a_first_save_killed_before_its_commit_leaves_nothing(tmp_path: Path) -> None:
    AnnotationStore(tmp_path)
    _kill_during_save(tmp_path, "images")  # the photo is written, nothing else
    assert len(list((tmp_path / "images").iterdir())) == 1
    store = AnnotationStore(tmp_path)
    assert store.count() == 0 and _snapshot(tmp_path) == {}


def test_concurrent_saves_of_one_photo_take_turns(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path)
    inside = threading.Event()

    def slow(
        path: Path,
    ) -> None:  # each save dawdles between its files, so unserialised saves would interleave
        inside.set()
        time.sleep(0.01)

    store.after_write = slow
    results = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(_save(store, s, annotator=f"t{s}")))
        for s in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.version for r in results) == [1, 2, 3, 4]
    (annotation_id,) = {r.id for r in results}
    meta = store.sidecar(annotation_id)
    last = next(r for r in results if r.version == 4)
    assert meta["version"] == 4 and meta["annotator"] == last.annotator
    seed = int(last.annotator[1:])
    current = tmp_path / "annotations" / f"{annotation_id}.geojson"
    assert np.array_equal(rasterize_geojson(current, SHAPE).astype(bool), _mask(seed))
    for result in results:  # every version in the history is the save that got that number
        saved = json.loads((tmp_path / "history" / annotation_id / f"{result.version}.json").read_text())
        assert saved["annotator"] == result.annotator


@pytest.mark.slow  # child processes
def test_concurrent_saves_from_two_processes_leave_one_consistent_result(tmp_path: Path) -> None:
    AnnotationStore(tmp_path)
    script = (
        "import sys; from pathlib import Path; from tests.data.test_annotations import _save; "
        "from vessel_lightning.data.annotations import AnnotationStore; "
        "s = AnnotationStore(Path(sys.argv[1])); [_save(s, int(sys.argv[2]), annotator=sys.argv[2]) for _ in range(5)]"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(seed)], cwd=REPO, env=env)
        for seed in (1, 2)
    ]
    assert [child.wait(120) for child in children] == [0, 0]
    store = AnnotationStore(tmp_path)
    (annotation_id,) = store.ids()
    meta = store.sidecar(annotation_id)
    assert meta["version"] == 10
    assert sorted(p.name for p in (tmp_path / "history" / annotation_id).glob("*.json")) == sorted(
        f"{v}.json" for v in range(1, 11)
    )
    current = tmp_path / "annotations" / f"{annotation_id}.geojson"
    assert np.array_equal(rasterize_geojson(current, SHAPE).astype(bool), _mask(int(meta["annotator"])))


def test_prepare_turns_a_saved_region_into_the_samples_field(tmp_path: Path) -> None:
    from vessel_lightning.data.prepare import prepare, read_manifest

    root = tmp_path / "annotations"
    root.mkdir()
    store = AnnotationStore(root)
    with_roi = store.save(_photo(0), _mask(0), annotator="a", status="final", roi=ROI)
    without = store.save(_photo(1), _mask(1), annotator="a", status="final")
    cfg = data_config(
        [
            "data=annotations",
            f"data.root={root}",
            f"data.prepared_dir={tmp_path / 'prepared'}",
            "data.mode=tiles",  # full resolution: the field can be compared pixel for pixel
            "data.size=32",
            "data.val_fraction=0",
            "data.workers=0",
        ]
    )
    prepare(cfg, progress=False)
    manifest = read_manifest(cfg.prepared_dir)
    assert manifest["has_fov"] and len(manifest["samples"]) == 2
    fields = {
        s["id"]: np.asarray(Image.open(Path(cfg.prepared_dir) / s["fov"])) > 127 for s in manifest["samples"]
    }
    assert np.array_equal(fields[with_roi.id], roi_from_geojson(ROI, SHAPE))
    assert fields[with_roi.id].sum() == 36 * 26  # pixel centres inside the 36×26 box
    assert fields[without.id].all()  # no region: the annotator judged the whole photo
    masks = {
        s["id"]: np.asarray(Image.open(Path(cfg.prepared_dir) / s["mask"])) > 127 for s in manifest["samples"]
    }
    assert np.array_equal(
        masks[with_roi.id], _mask(0)
    )  # the label is the whole saved mask; the field bounds it
