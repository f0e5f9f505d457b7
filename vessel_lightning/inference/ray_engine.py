"""Batch prediction on Ray: Ray Data hands the photos to a pool of actors, each holding one ``Predictor``, and every
actor writes its photos' outputs as ``vessel-predict`` does in process (:mod:`vessel_lightning.inference.outputs`).

Connects to the cluster named by ``RAY_ADDRESS`` when it is set (the output folder must then be shared by the
nodes), else starts a local Ray on this machine. One actor per GPU when the cluster has GPUs; on CPUs the actors
split the cores between them, and keep room for Ray Data's own tasks (on 2 cores two actors of one CPU each
leave none, and the pipeline stalls). An actor that dies is restarted and its photos retried by Ray; writes are
atomic, so a retried photo leaves the same files. ``ray`` is imported only here, and only when this engine runs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

from vessel_lightning.inference.outputs import OutputSpec, error_row, predict_to_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """How each actor loads its Predictor: the model, the runtime (already resolved: ``auto`` is decided once, by
    the caller), its settings, device and the prediction options of ``load_predictor``."""

    uri: str
    backend: str
    settings: Any  # BackendSettings
    device: str = "cpu"
    tta: bool = False
    scale: float | str = 1.0
    reference_diameter: float | None = None


class PhotoActor:
    """A Ray actor: loads the Predictor once, then predicts and writes batches of photos, one row per photo."""

    def __init__(self, model: ModelSpec, spec: OutputSpec, threshold: float, inputs: list[str]) -> None:
        from vessel_lightning.inference.backends import load_predictor
        from vessel_lightning.tracking.registry import connect

        # A worker process has its own MLflow state: the caller's store (--tracking-uri), not its environment's.
        connect(model.settings.tracking_uri)
        self.predictor, _ = load_predictor(
            model.uri,
            model.backend,
            model.settings,
            model.device,
            tta=model.tta,
            scale=model.scale,
            reference_diameter=model.reference_diameter,
        )
        self.spec, self.threshold = spec, threshold
        self.inputs = {Path(p) for p in inputs}
        self.model = {"uri": self.predictor.info.uri, "version": self.predictor.info.version}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str] | list[float]]:
        rows = []
        for name in batch["photo"]:
            photo = Path(str(name))
            try:
                row = predict_to_files(
                    self.predictor, photo, self.spec, self.threshold, self.inputs, self.model
                )
            except Exception as exc:  # the photo's row says what went wrong; the batch goes on
                row = error_row(photo, exc)
            rows.append(json.dumps(row, default=_plain))
        return {
            "row": rows,
            "actor": [f"{os.uname().nodename}:{os.getpid()}"] * len(rows),
            "peak_rss_mb": [_peak_rss_mb()] * len(rows),
        }


def _peak_rss_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _plain(value: Any) -> Any:
    # numpy scalars in measurement rows
    return value.item() if hasattr(value, "item") else str(value)


def connect(num_cpus: int | None = None) -> dict[str, float]:
    """Join the cluster at ``$RAY_ADDRESS``, or start a local one (with ``num_cpus``); return its resources."""
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return dict(ray.cluster_resources())


class ActorResources(TypedDict, total=False):
    """The Ray resources of one actor, as ``map_batches`` takes them."""

    num_cpus: float
    num_gpus: float


def pool_layout(resources: dict[str, float], actors: int | None) -> tuple[int, ActorResources, int | None]:
    """How many actors, the Ray resources of each, and the CPU threads of each (None on GPUs).

    GPUs: one actor per GPU (or ``actors``, at most the GPUs). CPUs: ``actors`` (default 2) sharing the cores,
    each asking for ``(cpus - 1) / actors`` CPUs so one is always free for reading the photo list and rows.
    """
    gpus = int(resources.get("GPU", 0))
    if gpus:
        count = min(actors or gpus, gpus)
        return count, {"num_cpus": 1, "num_gpus": 1}, None
    cpus = max(1, int(resources.get("CPU", 1)))
    count = max(1, actors or 2)
    share = max(0.1, (cpus - 1) / count) if cpus > 1 else 0.5 / count
    return count, {"num_cpus": round(share, 3)}, max(1, cpus // count)


def predict_with_ray(
    photos: Sequence[Path],
    spec: OutputSpec,
    model: ModelSpec,
    threshold: float,
    actors: int | None = None,
    retries: int = 3,
    peaks: dict[str, float] | None = None,
) -> Iterator[dict[str, Any]]:
    """Predict ``photos`` on a pool of Ray actors, writing their outputs; yield one row per photo as it finishes
    (unordered; an ``error`` row for a photo that failed). Actors are restarted and their work retried up to
    ``retries`` times when a worker dies. ``peaks``, when given, collects each actor's peak memory (MB)."""
    import ray.data
    from ray.data import ActorPoolStrategy

    if not photos:
        return
    resources = connect()
    count, per_actor, threads = pool_layout(resources, actors)
    if per_actor.get("num_gpus"):
        model = replace(model, device="cuda")
    elif threads is not None:
        model = replace(model, settings=replace(model.settings, threads=threads))
    log.info("Ray: %d actor(s) of %s, %d photo(s)", count, per_actor, len(photos))
    inputs = [str(p.resolve()) for p in photos]
    dataset = ray.data.from_items(
        [{"photo": str(p)} for p in photos], override_num_blocks=min(len(photos), 4 * count)
    )
    rows = dataset.map_batches(
        PhotoActor,
        fn_constructor_args=(model, spec, threshold, inputs),
        batch_size=1,
        compute=ActorPoolStrategy(size=count),
        max_restarts=retries,
        max_task_retries=retries,
        **per_actor,
    )
    for item in rows.iter_rows():
        if peaks is not None:
            peaks[item["actor"]] = max(peaks.get(item["actor"], 0.0), float(item["peak_rss_mb"]))
        yield json.loads(item["row"])
