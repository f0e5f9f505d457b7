"""``VESSEL_BACKEND=auto``: serve the fastest backend this CPU runs whose masks agree with the fp32 network's.

At load: read the CPU's features (``/proc/cpuinfo`` flags, else ``lscpu``), list the candidates it supports (fp32
always; bf16 only with ``avx512_bf16``/AMX; int8 only with VNNI/AMX; reduced precision only when calibration
photos can prove its masks: the crops the registered bundle carries, or ``VESSEL_CALIBRATION_DIR``; PyTorch only
where it is installed), build each, time each on the served window interleaved (medians), then walk them fastest
first through the accuracy gate: on the calibration photos' inputs, the candidate's mask at the contract threshold
must agree with the fp32 ONNX Runtime mask (the export checked against PyTorch to 1e-4) to pixel F1 ≥
:data:`MASK_F1_MIN`. The fp32 backends always pass. The decision is cached per model version (in the backend cache
folder) and CPU (model name, relevant flags, threads, library versions, calibration photos), so a restart builds
one backend.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from vessel_lightning.contract import ModelContract
from vessel_lightning.digest import value_digest
from vessel_lightning.hardware import BF16_FLAGS, INT8_FLAGS, CpuFeatures, read_cpu_features
from vessel_lightning.inference.cache import (
    calibration_id,
    calibration_inputs,
    calibration_photos,
    read_meta,
    write_meta,
)
from vessel_lightning.inference.openvino_runtime import openvino_available
from vessel_lightning.inference.predictor import served_mask
from vessel_lightning.inference.settings import BackendError, BackendResult
from vessel_lightning.models.onnx import ArrayNetwork, sigmoid

# The demo champion's bf16 masks scored 0.9976 (test F1 within 0.0003), int8's 0.947 (HRF test F1 -0.009):
# experiments/RESULTS.md, "CPU backends chosen at load".
MASK_F1_MIN = 0.995
TIMING_ITERATIONS = 5
GATE_PHOTOS = 8
PRUNE_RATIO = 2.0  # a candidate this many times slower than the fastest is not timed further
# Bump when the way candidates are listed, timed or gated changes, so older cached decisions are not reused.
DECISION_RECIPE = "3"  # 3: the gate compares with fp32 ONNX Runtime; PyTorch only where installed
# Flags that change which candidate wins; part of the decision's cache key.
SPEED_FLAGS = BF16_FLAGS | INT8_FLAGS | frozenset({"avx2", "fma", "avx512f", "amx_tile", "avx512_fp16"})
REFERENCE = "onnx"  # the fp32 export the gate compares every other candidate with

log = logging.getLogger(__name__)


def candidate_backends(
    features: CpuFeatures, *, openvino: bool, calibration: bool, torch: bool = True
) -> tuple[list[str], dict[str, str]]:
    """The backends worth timing on a CPU with ``features`` and why each other one is not.

    ``openvino``: whether the package is installed; ``calibration``: whether calibration photos exist (int8
    needs them to calibrate, and reduced precision needs them for the mask gate); ``torch``: whether PyTorch and
    the network's module are here. Returns (candidates, skipped).
    """
    considered, skipped = ["onnx"], {}
    no_openvino = "the openvino package is not installed"
    no_photos = "no calibration photos (VESSEL_CALIBRATION_DIR) to prove its masks"
    if openvino:
        considered.append("openvino")
    else:
        skipped["openvino"] = no_openvino
    reduced = {
        "openvino-bf16": (features.bf16, "bf16", True),
        "onnx-int8": (features.int8, "int8", False),
        "openvino-int8": (features.int8, "int8", True),
    }
    for name, (supported, kind, needs_openvino) in reduced.items():
        if not supported:
            flags = BF16_FLAGS if kind == "bf16" else INT8_FLAGS
            skipped[name] = f"the CPU has no {kind} units ({' / '.join(sorted(flags))})"
        elif needs_openvino and not openvino:
            skipped[name] = no_openvino
        elif not calibration:
            skipped[name] = no_photos
        else:
            considered.append(name)
    if torch:
        considered.append("torch")
    else:
        skipped["torch"] = "PyTorch is not installed here"
    return considered, skipped


def time_networks(
    networks: dict[str, ArrayNetwork],
    shape: Sequence[int],
    iterations: int = TIMING_ITERATIONS,
    warmup: int = 1,
    prune_ratio: float = PRUNE_RATIO,
) -> dict[str, float]:
    """Median ms of one forward of each network on a random batch of ``shape``, called in turn (a busy neighbour
    slows all of them alike); a network slower than ``prune_ratio`` × the fastest in the first timed round is
    not timed again (its one time is its median)."""
    batch = np.random.default_rng(0).random(tuple(shape), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in networks}
    active = dict(networks)
    for round_ in range(warmup + iterations):
        for name, network in active.items():
            start = time.perf_counter()
            network(batch)
            if round_ >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
        if round_ == warmup:
            fastest = min(values[0] for values in times.values())
            active = {n: net for n, net in active.items() if times[n][0] <= prune_ratio * fastest}
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


def gate_masks(network: ArrayNetwork, batches: Sequence[np.ndarray], threshold: float) -> list[np.ndarray]:
    """The served masks (:func:`served_mask`) of ``network`` on each float batch [N, 3, H, W]."""
    return [served_mask(sigmoid(np.asarray(network(b), dtype=np.float32)), threshold) for b in batches]


def mask_f1(masks: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Pixel F1 (Dice) of ``masks`` against ``reference``, pooled; 1.0 when both are empty."""
    tp = sum(int(np.count_nonzero(m & r)) for m, r in zip(masks, reference, strict=True))
    disagree = sum(int(np.count_nonzero(m ^ r)) for m, r in zip(masks, reference, strict=True))
    return 1.0 if tp + disagree == 0 else 2 * tp / (2 * tp + disagree)


def _versions() -> str:
    found = []
    for package in ("onnxruntime", "openvino", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{package}={metadata.version(package)}")
    return ",".join(found)


def decision_key(
    features: CpuFeatures,
    threads: int,
    shape: Sequence[int],
    photos: Sequence[Path],
    candidates: Sequence[str],
) -> str:
    """What a cached decision depends on: CPU model and relevant flags, threads, timed shape, library versions,
    calibration photos and candidates (a readable prefix and a hash)."""
    identity = value_digest(
        [
            DECISION_RECIPE,
            features.model,
            sorted(features.flags & SPEED_FLAGS),
            threads,
            list(shape),
            _versions(),
            calibration_id(photos) if photos else None,
            list(candidates),
        ],
        12,
    )
    return f"{features.model} x{threads}-{identity}"


def choose_backend(
    reference: ArrayNetwork,
    contract: ModelContract,
    folder: Path,
    build: Callable[[str], BackendResult],
    *,
    calibration: Path | None = None,
    threads: int | None = None,
    window: int | None = None,
    torch: bool = False,
    features: CpuFeatures | None = None,
    candidates: Sequence[str] | None = None,
    iterations: int = TIMING_ITERATIONS,
) -> BackendResult:
    """The fastest candidate that passes the mask gate, with ``auto`` saying what was timed, refused and chosen,
    and why.

    ``reference``: the fp32 ONNX Runtime network the gate compares masks with; ``folder``: the model version's
    cache folder (the decision is kept in its ``meta.json``); ``build``: backend name → :class:`BackendResult`;
    ``calibration``: the folder of calibration photos (None: no reduced precision); ``window``: the side of the
    served sliding window (tile models; None: the contract's size) at which candidates are timed; ``torch``:
    whether PyTorch fp32 may be a candidate; ``features``: the CPU's (default: read from this machine);
    ``candidates``: the backends to try (default: :func:`candidate_backends`). Raises :class:`BackendError` only if
    no candidate can be built.
    """
    features = features or read_cpu_features()
    threads = threads or os.cpu_count() or 1
    photos = calibration_photos(calibration, GATE_PHOTOS) if calibration and calibration.is_dir() else []
    skipped: dict[str, str] = {}
    if candidates is None:
        candidates, skipped = candidate_backends(
            features, openvino=openvino_available(), calibration=bool(photos), torch=torch
        )
    side = window if contract.mode == "tiles" and window else None
    shape = (1, contract.in_channels, side or contract.size[0], side or contract.size[1])
    key = decision_key(features, threads, shape, photos, candidates)
    cached = read_meta(folder).get("auto", {}).get(key)
    if cached:
        try:
            result = build(cached["backend"])
            result.auto = cached | {"cached": True}
            return result
        except BackendError as exc:
            log.warning(
                "cached auto decision %s cannot be rebuilt (%s); deciding again", cached["backend"], exc
            )
    start = time.perf_counter()
    built: dict[str, BackendResult] = {}
    refused: dict[str, str] = {}
    for name in candidates:
        try:
            built[name] = build(name)
        except BackendError as exc:
            refused[name] = f"not built: {str(exc).splitlines()[0]}"
    if not built:
        raise BackendError(f"auto: no backend could be built: {refused}")
    gate: dict[str, float] = {}
    reference_masks: list[np.ndarray] | None = None
    batches = list(calibration_inputs(photos, contract)) if photos else []
    chosen = None
    timings: dict[str, float] = {}
    contenders = {name: result.network for name, result in built.items()}
    while contenders and chosen is None:
        # Timed against the fastest still in the running: candidates pruned after one round beside a candidate
        # the gate then refuses are timed again, so the choice never rests on a single measurement.
        timings |= time_networks(contenders, shape, iterations)
        name = min(contenders, key=timings.__getitem__)
        if name != REFERENCE and batches:
            if reference_masks is None:
                reference_masks = gate_masks(reference, batches, contract.threshold)
            gate[name] = round(
                mask_f1(gate_masks(contenders[name], batches, contract.threshold), reference_masks), 5
            )
            if gate[name] < MASK_F1_MIN:
                refused[name] = f"mask F1 {gate[name]:.4f} against fp32 < {MASK_F1_MIN}"
                del contenders[name]
                continue
        chosen = name
    if chosen is None:  # every candidate was refused
        raise BackendError(f"auto: every candidate was refused: {refused}")
    fastest = min(timings, key=timings.__getitem__)
    why = (
        f"fastest of {len(timings)} timed"
        if chosen == fastest
        else f"fastest that passed the gate ({fastest} was refused)"
    )
    why += (
        f"; its masks agree with fp32's to pixel F1 {gate[chosen]:.4f} ≥ {MASK_F1_MIN} on {len(photos)} "
        "calibration photos"
        if chosen in gate
        else "; fp32 ONNX Runtime, the gate's reference (the export checked against PyTorch)"
        if chosen == REFERENCE
        else "; fp32, checked against the fp32 export at load"
    )
    decision = {
        "backend": chosen,
        "why": why,
        "cpu": features.model,
        "cpu_bf16": features.bf16,
        "cpu_int8": features.int8,
        "threads": threads,
        "timed_shape": list(shape),
        "timings_ms": dict(sorted(timings.items(), key=lambda item: item[1])),
        "mask_f1_vs_fp32": gate,
        "mask_f1_min": MASK_F1_MIN,
        "gate_photos": len(photos),
        "refused": refused,
        "skipped": skipped,
        "decide_seconds": round(time.perf_counter() - start, 1),
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    log.info("auto backend: %s (%s); timings %s", chosen, why, decision["timings_ms"])
    result = built.pop(chosen)
    built.clear()
    gc.collect()  # the losing candidates' runtimes hold hundreds of MB
    try:
        folder.mkdir(parents=True, exist_ok=True)
        meta = read_meta(folder)
        write_meta(folder, meta | {"auto": meta.get("auto", {}) | {key: decision}})
    except OSError as exc:  # a read-only cache costs the next start a new decision, not this one its model
        log.warning("auto decision not cached: %s", exc)
    result.auto = decision | {"cached": False}
    return result
