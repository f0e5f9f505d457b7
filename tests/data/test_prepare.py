"""vessel-prepare: real data sets end to end, layouts, determinism, incremental reruns, atomicity, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.data import REPO, data_config, make_masks_folder, synthetic_eye
from tests.helpers.train import prepare_process
from vessel_lightning.data.geojson import AnnotationError
from vessel_lightning.data.images import ImageReadError
from vessel_lightning.data.prepare import PrepareError, prepare, read_manifest
from vessel_lightning.data.sources import DataLayoutError

CHASE_TEST = {f"Image_{n}{side}" for n in range(11, 15) for side in "LR"}


def _cfg(kind: str, root: Path, prepared: Path, *extra: str):
    return data_config([f"data={kind}", f"data.root={root}", f"data.prepared_dir={prepared}", *extra])


def _assert_binary_png(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "L", path
    values = np.asarray(image)
    assert set(np.unique(values)) <= {0, 255}, path
    if size:
        assert values.shape == size
    return values


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.data
def test_chase_db1_prepares_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    summary = prepare(_cfg("chase_db1", data_dir / "CHASE_DB1", tmp_path / "chase"), progress=False)
    manifest = read_manifest(tmp_path / "chase")
    samples = manifest["samples"]
    assert len(samples) == 28 and summary.counts == {"train": 16, "val": 4, "test": 8}
    assert {s["id"] for s in samples if s["split"] == "test"} == CHASE_TEST
    assert manifest["has_fov"] and not summary.skipped
    for sample in samples:
        assert (sample["orig_width"], sample["orig_height"]) == (999, 960)
        mask = _assert_binary_png(tmp_path / "chase" / sample["mask"], (512, 512))
        fov = _assert_binary_png(tmp_path / "chase" / sample["fov"], (512, 512))
        assert Image.open(tmp_path / "chase" / sample["image"]).size == (512, 512)
        assert 0.02 < mask.mean() / 255 < 0.15 and fov.mean() / 255 > 0.5
    assert 0.06 < summary.mean_vessel_fraction < 0.08  # data README: 6.9 %


@pytest.mark.data
@pytest.mark.slow
def test_hrf_prepares_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    summary = prepare(_cfg("hrf", data_dir / "HRF", tmp_path / "hrf"), progress=False)
    samples = read_manifest(tmp_path / "hrf")["samples"]
    assert len(samples) == 45 and summary.counts["test"] == 21
    assert summary.counts["train"] + summary.counts["val"] == 24 and summary.counts["val"] >= 1
    test_ids = {s["id"] for s in samples if s["split"] == "test"}
    assert test_ids == {f"{n:02d}_{k}" for n in range(9, 16) for k in ("h", "dr", "g")}
    assert {s["source_image"].rsplit(".", 1)[1] for s in samples} == {"jpg", "JPG"}
    for sample in samples:
        assert (sample["orig_width"], sample["orig_height"]) == (3504, 2336)
        _assert_binary_png(tmp_path / "hrf" / sample["mask"], (512, 512))
        _assert_binary_png(tmp_path / "hrf" / sample["fov"], (512, 512))


def test_drive_layout_pairs_by_number(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "DRIVE"
    for split, numbers in (("training", (21, 22, 23)), ("test", (1, 2))):
        for folder in ("images", "1st_manual", "mask"):
            (root / split / folder).mkdir(parents=True)
        for n in numbers:
            photo, mask = synthetic_eye(rng, 40, 36)
            Image.fromarray(photo).save(root / split / "images" / f"{n:02d}_{split}.tif")
            Image.fromarray(mask * 255).save(root / split / "1st_manual" / f"{n:02d}_manual1.gif")
            Image.fromarray(np.full((40, 36), 255, np.uint8)).save(
                root / split / "mask" / f"{n:02d}_{split}_mask.gif"
            )
    summary = prepare(_cfg("drive", root, tmp_path / "out", "data.size=32"), progress=False)
    manifest = read_manifest(tmp_path / "out")
    assert summary.counts == {"train": 2, "val": 1, "test": 2}
    assert {s["id"] for s in manifest["samples"] if s["split"] == "test"} == {"01_test", "02_test"}
    assert manifest["has_fov"] and all("fov" in s for s in manifest["samples"])


def _write_slitlamp(data_dir: Path, root: Path, names: list[str], layout: str) -> None:
    for i, name in enumerate(names):
        annotation = data_dir / "slitlamp" / "annotations" / f"{name}.geojson"
        images = root if layout == "flat" else root / "images"
        labels = root if layout == "flat" else root / "annotations"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        size = (1624, 1232) if i else (1650, 1240)  # not every photo is 1624×1232: size is read from each
        Image.new("RGB", size, (180, 80, 60)).save(images / f"{name}.{'png' if i % 2 else 'jpg'}")
        shutil.copyfile(annotation, labels / f"{name}.geojson")


@pytest.mark.data
@pytest.mark.parametrize("layout", ["flat", "folders"])
def test_geojson_layouts_rasterize_at_each_image_size(data_dir: Path, tmp_path: Path, layout: str) -> None:
    from vessel_lightning.data.geojson import rasterize_geojson

    names = ["1", "108", "178", "191"]
    _write_slitlamp(data_dir, tmp_path / "raw", names, layout)
    summary = prepare(_cfg("geojson", tmp_path / "raw", tmp_path / "out", "data.mode=tiles"), progress=False)
    manifest = read_manifest(tmp_path / "out")
    assert sum(summary.counts.values()) == 4 and not manifest["has_fov"]
    by_id = {s["id"]: s for s in manifest["samples"]}
    assert (by_id["1"]["orig_width"], by_id["1"]["orig_height"]) == (1650, 1240)
    for name in names:
        sample = by_id[name]
        shape = (sample["orig_height"], sample["orig_width"])
        expected = rasterize_geojson(data_dir / "slitlamp" / "annotations" / f"{name}.geojson", shape)
        mask = _assert_binary_png(tmp_path / "out" / sample["mask"], shape)
        assert np.array_equal(mask > 0, expected > 0)


def test_same_inputs_give_byte_identical_outputs(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=5)
    for name in ("a", "b"):
        prepare(_cfg("masks", root, tmp_path / name, "data.size=48", "data.workers=2"), progress=False)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")


def test_rerun_redoes_nothing_and_a_changed_input_is_redone(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=5)
    cfg = _cfg("masks", root, tmp_path / "out", "data.size=48", "data.workers=0")
    first = prepare(cfg, progress=False)
    assert first.processed == 5
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")}
    again = prepare(cfg, progress=False)
    assert again.up_to_date and again.processed == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")}

    photo, _ = synthetic_eye(np.random.default_rng(9), 64, 80)
    Image.fromarray(photo).save(root / "images" / "eye_02.png")
    changed = prepare(cfg, progress=False)
    assert (changed.processed, changed.reused) == (1, 4)
    image = np.asarray(Image.open(tmp_path / "out" / "images" / "eye_02.png"))
    from vessel_lightning.data.images import resize_image

    assert np.array_equal(image, resize_image(photo, (48, 48)))
    # a changed setting redoes every sample
    assert prepare(_cfg("masks", root, tmp_path / "out", "data.size=32"), progress=False).processed == 5


def _kill_when_staging_fills(process: subprocess.Popen, out: Path, files: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        staged = list(out.parent.glob(f".{out.name}.staging-*/images/*.png"))
        if len(staged) >= files:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return
        assert process.poll() is None, "prepare finished before it could be killed; make the data set larger"
        time.sleep(0.02)
    raise AssertionError("prepare never started writing")


@pytest.mark.slow  # starts and kills vessel-prepare processes
def test_prepare_killed_midway_leaves_previous_or_nothing(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=30, size=(600, 600))
    out = tmp_path / "out"
    _kill_when_staging_fills(prepare_process(root, out), out, files=5)
    assert not out.exists()  # nothing readable half-done

    done = subprocess.run(prepare_process(root, out).args, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before = _tree_bytes(out)
    assert len(read_manifest(out)["samples"]) == 30

    for i in range(30):  # change every input, then kill the re-prepare mid-way
        photo, _ = synthetic_eye(np.random.default_rng(100 + i), 600, 600)
        Image.fromarray(photo).save(root / "images" / f"eye_{i:02d}.png")
    _kill_when_staging_fills(prepare_process(root, out), out, files=5)
    assert _tree_bytes(out) == before  # the previous complete folder, untouched

    done = subprocess.run(prepare_process(root, out).args, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _tree_bytes(out) != before and len(read_manifest(out)["samples"]) == 30
    assert not list(tmp_path.glob(".out.staging-*"))


def test_unpaired_files_are_skipped_and_listed(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=4)
    (root / "masks" / "eye_01.png").rename(root / "masks" / "orphan.png")
    summary = prepare(_cfg("masks", root, tmp_path / "out", "data.size=32"), progress=False)
    assert sum(summary.counts.values()) == 3
    reasons = dict(summary.skipped)
    assert reasons["images/eye_01.png"].startswith("no annotation")
    assert reasons["masks/orphan.png"] == "annotation without an image"
    assert {s["file"] for s in read_manifest(tmp_path / "out")["skipped"]} == {
        "images/eye_01.png",
        "masks/orphan.png",
    }
    assert "skipped 2 file(s)" in summary.render()


def test_non_binary_mask_is_thresholded_with_a_warning(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=3)
    gray = np.zeros((64, 80), np.uint8)
    gray[10:20, :] = 200  # vessel
    gray[30:40, :] = 60  # faint: below half scale, background
    Image.fromarray(gray).save(root / "masks" / "eye_00.png")
    summary = prepare(_cfg("masks", root, tmp_path / "out", "data.mode=tiles"), progress=False)
    assert any("eye_00.png: non-binary mask" in w for w in summary.warnings)
    mask = _assert_binary_png(tmp_path / "out" / "masks" / "eye_00.png")
    assert mask[15].all() and not mask[35].any()


def _corrupt_one(root: Path) -> Path:
    target = root / "images" / "eye_01.png"
    target.write_bytes(target.read_bytes()[:200])  # truncated PNG
    return target


def test_truncated_image_fails_naming_the_file_and_keeps_the_previous_folder(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=4)
    cfg = _cfg("masks", root, tmp_path / "out", "data.size=32")
    prepare(cfg, progress=False)
    before = _tree_bytes(tmp_path / "out")
    _corrupt_one(root)
    with pytest.raises(ImageReadError, match=r"eye_01\.png: unreadable or truncated image"):
        prepare(cfg, progress=False)
    assert _tree_bytes(tmp_path / "out") == before
    assert not list(tmp_path.glob(".out.staging-*"))


def test_on_error_skip_lists_the_bad_file_and_goes_on(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=4)
    bad = _corrupt_one(root)
    summary = prepare(
        _cfg("masks", root, tmp_path / "out", "data.size=32", "data.on_error=skip"), progress=False
    )
    assert sum(summary.counts.values()) == 3
    assert any(path == str(bad) and "truncated" in reason for path, reason in summary.skipped)


def test_text_file_named_as_image_fails_clearly(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=2)
    (root / "images" / "eye_00.png").write_text("not an image at all")
    with pytest.raises(ImageReadError, match=r"eye_00\.png: not a readable image"):
        prepare(_cfg("masks", root, tmp_path / "out", "data.size=32"), progress=False)


def test_invalid_annotation_fails_naming_file_and_feature(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    Image.new("RGB", (40, 30)).save(root / "7.png")
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Hexagon", "coordinates": []}}
    (root / "7.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    with pytest.raises(AnnotationError, match=r"7\.geojson: feature 0: unknown geometry type 'Hexagon'"):
        prepare(_cfg("geojson", root, tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_strict_fails_on_a_feature_outside_the_image(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    Image.new("RGB", (40, 30)).save(root / "7.png")
    square = [[100, 100], [110, 100], [110, 110], [100, 110], [100, 100]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [square]}}
    (root / "7.geojson").write_text(json.dumps([feature]))
    summary = prepare(_cfg("geojson", root, tmp_path / "out"), progress=False)
    assert summary.outside_features == 1
    with pytest.raises(AnnotationError, match=r"7\.geojson: feature 0: feature lies entirely outside"):
        prepare(_cfg("geojson", root, tmp_path / "out2", "data.strict=true"), progress=False)


def test_missing_root_and_empty_data_set_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataLayoutError, match="does not exist"):
        prepare(_cfg("masks", tmp_path / "nowhere", tmp_path / "out"), progress=False)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(PrepareError, match="no image with a matching annotation"):
        prepare(_cfg("masks", tmp_path / "empty", tmp_path / "out"), progress=False)


def test_cli_prepares_and_fails_with_one_line(tmp_path: Path) -> None:
    root = make_masks_folder(tmp_path / "raw", count=3)
    cli = [
        sys.executable,
        "-m",
        "vessel_lightning.data.prepare",
        "data=masks",
        f"hydra.run.dir={tmp_path / 'h'}",
    ]
    ok = subprocess.run(
        [*cli, f"data.root={root}", f"data.prepared_dir={tmp_path / 'out'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "train 1 | val 1 | test 1" in ok.stderr + ok.stdout
    bad = subprocess.run(
        [*cli, f"data.root={tmp_path / 'missing'}", f"data.prepared_dir={tmp_path / 'o2'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "missing does not exist" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
