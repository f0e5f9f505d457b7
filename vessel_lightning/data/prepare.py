"""``vessel-prepare``: a raw data set folder → a prepared, training-ready folder.

The prepared folder holds ``manifest.json`` plus ``images/``, ``masks/`` and ``fov/`` PNGs named by sample
id. Preparation is

* deterministic — the same inputs and settings give byte-identical files;
* incremental — each sample is keyed by the hashes of its input files and the settings that shape its
  outputs; an unchanged sample is hard-linked from the previous prepared folder, and a fully unchanged data
  set is not touched at all;
* atomic — everything is written to a hidden staging folder beside the target and swapped in by renames, so
  a prepare killed at any point leaves the previous complete folder (or none), never a half-written one;
* serialised — a lock file beside the target lets parallel jobs (a multirun) share one prepared folder. The
  lock belongs to the preparing process alone (a POSIX record lock: its pool workers do not inherit it) and the
  kernel drops it when that process dies, however it dies, so a killed prepare never blocks the next; its pool
  workers are killed with it (Linux).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from vessel_lightning.data.geojson import AnnotationError, rasterize_annotation, read_annotation
from vessel_lightning.data.images import (
    ImageReadError,
    binarize,
    read_fov,
    read_gray,
    read_rgb,
    resize_image,
    resize_mask,
)
from vessel_lightning.data.sources import SPLITS, RawSample
from vessel_lightning.digest import file_sha256, value_digest

log = logging.getLogger(__name__)
_THREADS = threading.Lock()

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GEOJSON_SUFFIXES = (".geojson", ".json")
# Settings that change what a sample's files contain; the rest of the data config does not invalidate them.
PREPARE_KEYS = (
    "name",
    "root",
    "source",
    "mode",
    "size",
    "mask_threshold",
    "line_width",
    "strict",
    "on_error",
    "val_fraction",
    "test_fraction",
    "seed",
)
SAMPLE_KEYS = ("mode", "size", "mask_threshold", "line_width", "strict")


class PrepareError(ValueError):
    """Preparation cannot go on (empty data set, mismatched sizes, bad settings); the message says why."""


@dataclass
class PrepareSummary:
    """What a prepare run did, for the log and for callers."""

    prepared_dir: Path
    counts: dict[str, int]
    mean_vessel_fraction: float
    skipped: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)
    outside_features: int = 0
    processed: int = 0
    reused: int = 0
    seconds: float = 0.0
    up_to_date: bool = False

    def render(self) -> str:
        """A few human-readable lines: counts per split, vessel fraction, skipped files and why."""
        total = sum(self.counts.values())
        state = "up to date" if self.up_to_date else f"{self.processed} processed, {self.reused} reused"
        lines = [
            f"prepared {self.prepared_dir} in {self.seconds:.1f} s: {total} samples ({state})",
            "  " + " | ".join(f"{split} {self.counts.get(split, 0)}" for split in SPLITS),
            f"  mean vessel fraction {self.mean_vessel_fraction:.4f}",
            f"  features entirely outside their image: {self.outside_features}",
            f"  skipped {len(self.skipped)} file(s)" + (":" if self.skipped else ""),
        ]
        lines += [f"    {path}: {reason}" for path, reason in self.skipped]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def size_hw(size: Any) -> tuple[int, int]:
    """``size`` as ``(height, width)``: an int means a square."""
    if isinstance(size, int):
        return size, size
    height, width = (int(v) for v in size)
    return height, width


def assign_splits(
    samples: list[RawSample], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Split per sample id: fixed splits kept, the rest shuffled with ``seed`` into test, val and train.

    ``test_fraction`` applies only when the data set has no fixed test split. Returns ``{id: split}``.
    """
    splits = {s.id: s.split for s in samples if s.split}
    pool = sorted(s.id for s in samples if not s.split)
    random.Random(seed).shuffle(pool)
    # A requested split gets at least one sample while enough remain to train on.
    n_test = max(1, round(len(pool) * test_fraction)) if test_fraction > 0 and len(pool) > 2 else 0
    if "test" in splits.values():
        n_test = 0
    n_val = max(1, round(len(pool) * val_fraction)) if val_fraction > 0 and len(pool) - n_test > 1 else 0
    for index, sample_id in enumerate(pool):
        splits[sample_id] = "test" if index < n_test else "val" if index < n_test + n_val else "train"
    return splits


@dataclass(frozen=True)
class _Job:
    raw: RawSample
    split: str
    key: str
    settings: dict[str, Any]
    label_rule: str
    staging: Path


@dataclass
class LoadedSample:
    """One sample at its original resolution: RGB photo, {0, 1} mask, optional {0, 1} FOV, and notes."""

    rgb: np.ndarray
    mask: np.ndarray
    fov: np.ndarray | None
    notes: list[str]
    outside: int  # GeoJSON features entirely outside the image


def load_sample(
    raw: RawSample, *, label_rule: str = "threshold", line_width: float = 3.0, strict: bool = False
) -> LoadedSample:
    """Read a raw sample at native resolution: decode the photo, rasterize or binarize the label, read the FOV.

    Raises :class:`ImageReadError`, :class:`AnnotationError` or :class:`PrepareError` (label or FOV size
    differs from the photo), each naming the file.
    """
    rgb = read_rgb(raw.image)
    shape = rgb.shape[:2]
    label = raw.label
    if label.suffix.lower() in GEOJSON_SUFFIXES:
        result = rasterize_annotation(read_annotation(label), shape, line_width=line_width, strict=strict)
        mask, outside = result.mask, len(result.outside)
        notes = [f"{label}: features {result.outside} lie entirely outside the image"] if outside else []
    else:
        values = _same_size(read_gray(label), shape, label, "label")
        mask, non_binary = binarize(values, label_rule)
        outside = 0
        notes = [f"{label}: non-binary mask (values {np.unique(values)[:6].tolist()}...) thresholded at 128"]
        notes = notes if non_binary else []
        if (
            not mask.any()
        ):  # a misread label (e.g. an unknown encoding) must not train or score as "no vessels"
            raise PrepareError(
                f"{label}: the label has no vessel pixels (values {np.unique(values)[:6].tolist()})"
            )
    fov = None
    if raw.fov is not None:
        fov = _same_size(read_fov(raw.fov), shape, raw.fov, "FOV mask")
    if raw.roi is not None:
        region = _sidecar_region(raw.roi, shape)
        fov = region if fov is None else (fov & region).astype(np.uint8)
    return LoadedSample(rgb, mask, fov, notes, outside)


def _sidecar_region(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The {0, 1} field an annotation sidecar gives: its ``roi`` Polygon rasterised, or the whole photo when it
    has none (the annotator judged every pixel). Raises :class:`PrepareError` naming the file."""
    from vessel_lightning.data.annotations import AnnotationInputError, roi_from_geojson

    try:
        roi = json.loads(path.read_text(encoding="utf-8")).get("roi")
    except (OSError, ValueError, AttributeError) as exc:
        raise PrepareError(f"{path}: unreadable annotation sidecar ({exc})") from exc
    if roi is None:
        return np.ones(shape[:2], dtype=np.uint8)
    try:
        return roi_from_geojson(roi, (int(shape[0]), int(shape[1]))).astype(np.uint8)
    except AnnotationInputError as exc:
        raise PrepareError(f"{path}: {exc}") from exc


def _same_size(values: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> np.ndarray:
    if values.shape != shape:
        raise PrepareError(
            f"{path}: {what} is {values.shape[1]}x{values.shape[0]}, image is {shape[1]}x{shape[0]}"
        )
    return values


def _write_png(array: np.ndarray, path: Path) -> None:
    # Fixed settings and no metadata: identical arrays give identical bytes.
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _process(job: _Job) -> tuple[dict[str, Any], list[str], int]:
    """Read, rasterize/binarize, resize and write one sample; returns its manifest entry, warnings, outside."""
    raw, settings = job.raw, job.settings
    try:
        loaded = load_sample(
            raw, label_rule=job.label_rule, line_width=settings["line_width"], strict=settings["strict"]
        )
    except (AnnotationError, ImageReadError, PrepareError):
        raise
    except Exception as exc:  # anything else while reading one sample is still that sample's error
        raise PrepareError(
            f"{raw.image} (label {raw.label}): {type(exc).__name__} while reading this sample: {exc}"
        ) from exc
    rgb, mask, fov = loaded.rgb, loaded.mask, loaded.fov
    shape = rgb.shape[:2]
    entry: dict[str, Any] = {
        "id": raw.id,
        "split": job.split,
        "key": job.key,
        "source_image": raw.image.name,
        "orig_height": int(shape[0]),
        "orig_width": int(shape[1]),
        "vessel_fraction": round(float(mask.mean()), 6),
    }
    if fov is not None:
        entry["vessel_fraction_fov"] = round(float(mask[fov > 0].mean()) if fov.any() else 0.0, 6)
    if settings["mode"] == "resize":
        size = size_hw(settings["size"])
        rgb = resize_image(rgb, size)
        mask = resize_mask(mask, size, settings["mask_threshold"])
        fov = resize_mask(fov, size, 0.5) if fov is not None else None
    entry["height"], entry["width"] = int(rgb.shape[0]), int(rgb.shape[1])
    outputs = {"image": ("images", rgb), "mask": ("masks", mask * 255)}
    if fov is not None:
        outputs["fov"] = ("fov", fov * 255)
    for field_name, (folder, array) in outputs.items():
        relative = f"{folder}/{raw.id}.png"
        _write_png(array.astype(np.uint8), job.staging / relative)
        entry[field_name] = relative
    return entry, loaded.notes, loaded.outside


def _reuse(entry: Mapping[str, Any], split: str, previous: Path, staging: Path) -> dict[str, Any] | None:
    """Hard-link an unchanged sample's files from the previous prepared folder; None if any is missing."""
    files = [entry[k] for k in ("image", "mask", "fov") if k in entry]
    if not all((previous / f).is_file() for f in files):
        return None
    for relative in files:
        try:
            os.link(previous / relative, staging / relative)
        except OSError:  # another file system or no hard links: copy instead
            shutil.copyfile(previous / relative, staging / relative)
    return {**entry, "split": split}


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold the prepare lock of ``target``; the lock file records the holder's pid for whoever waits.

    POSIX: ``fcntl.lockf``, not flock (nor ``filelock``, which uses flock): a POSIX lock is not inherited by forked
    pool workers and dies with this process. Elsewhere (Windows, no ``fcntl``): ``filelock``'s lock.
    """
    lock_path = target.parent / f".{target.name}.lock"
    fcntl: ModuleType | None
    try:
        import fcntl
    except ImportError:
        fcntl = None
    # A POSIX lock serialises processes only: threads of one process take turns on this one first.
    with _THREADS:
        if fcntl is None:
            from filelock import FileLock

            with FileLock(str(lock_path) + ".win"):
                yield
            return
        with lock_path.open("a+") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                log.info("waiting for %s: another prepare (pid %s) is writing %s", lock_path, holder, target)
                fcntl.lockf(handle, fcntl.LOCK_EX)
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)


def _die_with_parent(parent: int) -> None:
    """Pool initializer: have the kernel SIGKILL this worker when the prepare process dies (Linux only)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no death signal, but the lock is still not theirs to hold
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _recover(target: Path) -> None:
    """Undo what a killed prepare left: restore a folder caught mid-swap, remove stale staging folders."""
    previous = target.parent / f".{target.name}.previous"
    if previous.exists():
        if target.exists():
            shutil.rmtree(previous)
        else:
            previous.rename(target)
    for stale in target.parent.glob(f".{target.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    previous = target.parent / f".{target.name}.previous"
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    if previous.exists():
        shutil.rmtree(previous)


def read_manifest(prepared_dir: str | Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a prepared folder (raises FileNotFoundError naming the folder)."""
    path = Path(prepared_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{prepared_dir}: no {MANIFEST}; run vessel-prepare for this data set first")
    return json.loads(path.read_text())


def _plain(cfg: Any) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    # to_container is typed for any config; a DictConfig gives a dict.
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)  # type: ignore[return-value]


def prepare(data_cfg: Any, *, progress: bool = True) -> PrepareSummary:
    """Prepare the data set described by a ``conf/data/*.yaml`` config (DictConfig or dict).

    Returns a :class:`PrepareSummary`. Raises :class:`AnnotationError`, :class:`ImageReadError`,
    :class:`PrepareError` or :class:`DataLayoutError` (each naming the file) on bad input, leaving any
    previous prepared folder untouched.
    """
    from hydra.utils import instantiate

    start = time.perf_counter()
    cfg = _plain(data_cfg)
    root = Path(cfg["root"]).expanduser().resolve()
    target = Path(cfg["prepared_dir"]).expanduser().resolve()
    if cfg["mode"] not in ("resize", "tiles"):
        raise PrepareError(f"data.mode must be 'resize' or 'tiles', got {cfg['mode']!r}")
    if cfg.get("on_error", "raise") not in ("raise", "skip"):
        raise PrepareError(f"data.on_error must be 'raise' or 'skip', got {cfg['on_error']!r}")
    settings = {k: cfg.get(k) for k in SAMPLE_KEYS}
    recorded = {k: cfg.get(k) for k in PREPARE_KEYS} | {"root": str(root)}

    source = instantiate(cfg["source"])
    found = source.discover(root)
    if not found.samples:
        raise PrepareError(
            f"{root}: no image with a matching annotation found (skipped {len(found.skipped)} files)"
        )
    splits = assign_splits(
        found.samples, cfg.get("val_fraction", 0.0), cfg.get("test_fraction", 0.0), cfg["seed"]
    )
    keys = {
        s.id: value_digest(
            {
                "format": FORMAT_VERSION,
                "settings": settings,
                "label_rule": source.label_rule,
                "image": file_sha256(s.image),
                "label": file_sha256(s.label) if s.label else None,
                "fov": file_sha256(s.fov) if s.fov else None,
                **({"roi": file_sha256(s.roi)} if s.roi else {}),  # absent otherwise: older keys stay valid
            }
        )
        for s in found.samples
    }
    fingerprint = value_digest({"config": recorded, "samples": sorted((i, keys[i], splits[i]) for i in keys)})

    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        _recover(target)
        old = read_manifest(target) if (target / MANIFEST).is_file() else None
        if old is not None and old.get("fingerprint") == fingerprint:
            summary = _summarise(target, old, found.skipped, start)
            summary.up_to_date = True
            log.info("%s", summary.render())
            return summary
        staging = target.parent / f".{target.name}.staging-{os.getpid()}"
        try:
            manifest, processed, errors = _build(
                found.samples, splits, keys, settings, source.label_rule, cfg, staging, target, old, progress
            )
            manifest.update(format_version=FORMAT_VERSION, fingerprint=fingerprint, config=recorded)
            skipped = found.skipped + errors
            manifest["skipped"] = [{"file": f, "reason": r} for f, r in skipped]
            counts = Counter(s["split"] for s in manifest["samples"])
            manifest["counts"] = {split: counts.get(split, 0) for split in SPLITS}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    summary = _summarise(target, manifest, skipped, start)
    summary.processed, summary.reused = processed, len(manifest["samples"]) - processed
    log.info("%s", summary.render())
    return summary


def _build(
    samples: list[RawSample],
    splits: Mapping[str, str],
    keys: Mapping[str, str],
    settings: dict[str, Any],
    label_rule: str,
    cfg: Mapping[str, Any],
    staging: Path,
    target: Path,
    old: Mapping[str, Any] | None,
    progress: bool,
) -> tuple[dict[str, Any], int, list[tuple[str, str]]]:
    """Write every sample into ``staging``; returns the manifest body, how many were processed, and errors."""
    from tqdm.auto import tqdm

    for folder in ("images", "masks", "fov"):
        (staging / folder).mkdir(parents=True, exist_ok=True)
    reusable = {s["key"]: s for s in old["samples"]} if old else {}
    entries: dict[str, dict[str, Any]] = {}
    jobs = []
    for raw in samples:
        previous = reusable.get(keys[raw.id])
        entry = (
            _reuse(previous, splits[raw.id], target, staging)
            if previous and previous["id"] == raw.id
            else None
        )
        if entry is not None:
            entries[raw.id] = entry
        else:
            jobs.append(_Job(raw, splits[raw.id], keys[raw.id], settings, label_rule, staging))
    warnings: list[str] = []
    errors: list[tuple[str, str]] = []
    outside = 0
    workers = min(int(cfg.get("workers", 0) or 0), len(jobs))
    bar = tqdm(total=len(jobs), desc=f"prepare {cfg['name']}", unit="img", disable=not progress or not jobs)
    pool = (
        ProcessPoolExecutor(workers, initializer=_die_with_parent, initargs=(os.getpid(),))
        if workers > 1
        else None
    )
    try:
        futures = (
            [(job, pool.submit(_process, job)) for job in jobs] if pool else [(job, None) for job in jobs]
        )
        for job, future in futures:
            try:
                entry, notes, n_outside = future.result() if future else _process(job)
            except (AnnotationError, ImageReadError, PrepareError) as exc:
                if cfg.get("on_error", "raise") == "raise":
                    raise
                errors.append((str(job.raw.image), f"error: {exc}"))
                continue
            finally:
                bar.update(1)
            entries[job.raw.id] = entry
            warnings += notes
            outside += n_outside
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    for note in warnings:
        log.warning("%s", note)
    ordered = [entries[raw.id] for raw in samples if raw.id in entries]
    if not ordered:
        raise PrepareError(f"{cfg['root']}: every sample failed to prepare; see the errors above")
    has_fov = any("fov" in e for e in ordered)
    if not has_fov:
        shutil.rmtree(staging / "fov", ignore_errors=True)
    for entry in ordered:
        if (
            has_fov and "fov" not in entry
        ):  # a field for some (a region of interest): the others get the frame
            entry["fov"] = f"fov/{entry['id']}.png"
            frame = np.full((entry["height"], entry["width"]), 255, dtype=np.uint8)
            _write_png(frame, staging / entry["fov"])
    return (
        {
            "name": cfg["name"],
            "mode": settings["mode"],
            "size": list(size_hw(settings["size"])),
            "has_fov": has_fov,
            "samples": ordered,
            "warnings": warnings,
            "outside_features": outside,
        },
        len(jobs),
        errors,
    )


def _summarise(
    target: Path, manifest: dict[str, Any], skipped: list[tuple[str, str]], start: float
) -> PrepareSummary:
    samples = manifest["samples"]
    return PrepareSummary(
        prepared_dir=target,
        counts={split: sum(s["split"] == split for s in samples) for split in SPLITS},
        mean_vessel_fraction=float(np.mean([s["vessel_fraction"] for s in samples])),
        skipped=list(skipped),
        warnings=list(manifest.get("warnings", [])),
        outside_features=int(manifest.get("outside_features", 0)),
        reused=len(samples),
        seconds=time.perf_counter() - start,
    )


def _main(cfg: Any) -> None:
    from vessel_lightning.data.sources import DataLayoutError

    try:
        prepare(cfg.data)
    except (AnnotationError, ImageReadError, PrepareError, DataLayoutError, FileNotFoundError) as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


def main() -> None:
    """Console entry point ``vessel-prepare`` (Hydra: ``vessel-prepare data=chase_db1 data.root=...``)."""
    import hydra

    from vessel_lightning.config import CONFIG_DIR

    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="prepare")(_main)()


if __name__ == "__main__":
    main()
