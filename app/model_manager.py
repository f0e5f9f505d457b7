"""Loads the served model, follows its registry alias and swaps versions without failing a request.

A request takes the current :class:`LoadedModel` once and uses it to the end; a reload builds the next model
completely (load, ONNX export and check) beside the old one and then replaces one reference, so in-flight and
concurrent requests never see a half-loaded model. The old model is freed when its last request finishes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from app.settings import Settings
from vessel_lightning.inference.backends import (
    BackendError,
    CudaNetwork,
    build_backend,
    torch_threads,
    window_batch,
)
from vessel_lightning.inference.batching import DynamicBatcher
from vessel_lightning.inference.device import describe_device, resolve_device
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.tracking.models import alias_version, is_exported_model, parse_registry_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One ready-to-serve model version: its predictor, backend and what ``GET /model`` reports."""

    predictor: Predictor
    backend: str
    metrics: dict[str, float] = field(default_factory=dict)
    backend_details: dict[str, Any] = field(default_factory=dict)
    batcher: DynamicBatcher | None = None

    @property
    def precision(self) -> str:
        """The precision the network runs in: the GPU backend's, else the CPU backend's by its name."""
        if "precision" in self.backend_details:
            return str(self.backend_details["precision"])
        return next((p for p in ("bf16", "int8") if p in self.backend), "fp32")

    @property
    def version(self) -> str:
        """The registry version, or ``""`` for a model loaded from a run or a folder."""
        return self.predictor.info.version or ""

    def describe(self) -> dict[str, Any]:
        """The ``GET /model`` JSON."""
        info = self.predictor.info
        return {
            "name": info.name,
            "version": info.version,
            "alias": info.alias,
            "uri": info.uri,
            "run_id": info.run_id,
            "backend": self.backend,
            "precision": self.precision,
            "device": describe_device(self.predictor.device),
            "batching": self.batcher.stats() if self.batcher else None,
            "backend_details": self.backend_details,
            "load_seconds": info.load_seconds,
            "metrics": self.metrics,
            "contract": self.predictor.contract.to_dict(),
            "inference": self._inference(),
        }

    def _inference(self) -> dict[str, Any]:
        predictor = self.predictor
        if predictor.contract.mode == "resize":
            return {"mode": "resize", "size": list(predictor.contract.size)}
        window = predictor.window or max(predictor.contract.size)
        return {
            "mode": "sliding window",
            "window": window,
            "overlap": predictor.overlap,
            "blend": predictor.blend,
        }

    def summary(self) -> dict[str, Any]:
        """Name, version, alias, backend and precision (for ``/health``)."""
        info = self.predictor.info
        return {
            "name": info.name,
            "version": info.version,
            "alias": info.alias,
            "backend": self.backend,
            "precision": self.precision,
        }


def _run_metrics(run_id: str | None, tracking_uri: str) -> dict[str, float]:
    if not run_id:
        return {}
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return dict(MlflowClient(tracking_uri or None).get_run(run_id).data.metrics)
    except MlflowException:
        return {}


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class ModelManager:
    """Owns the current model: loads it in the background, polls the alias, reloads on demand.

    ``current`` is None until the first load succeeds; ``error`` holds the last load failure (one line).
    The device is resolved at construction: ``VESSEL_DEVICE=cuda`` without a GPU raises ``DeviceError`` there,
    at start-up, not at the first request.
    """

    def __init__(self, settings: Settings, loader: Callable[[str], Predictor] | None = None) -> None:
        self.settings = settings
        self.device: torch.device = resolve_device(settings.device, "VESSEL_DEVICE")
        self.current: LoadedModel | None = None
        self.error: str | None = None
        # The last look up of the alias: None before the first (or without an alias), then True or False.
        self.registry_reachable: bool | None = None
        self.registry_error: str | None = None
        self._loader = loader or Predictor.from_uri
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.tracking_uri = ""
        self.torch_threads = torch.get_num_threads()  # before any predictor sets its own

    def start(self) -> None:
        """Connect to the tracking store and load in a background thread that then polls the alias."""
        self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (a load in progress finishes in its daemon thread) and the batching thread of the
        current model (a thread still inside the network at interpreter exit aborts the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        current = self.current
        if current is not None and current.batcher is not None:
            current.batcher.close(timeout)
        torch.set_num_threads(self.torch_threads)  # predictors set it for their threads, and globally

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a model is loaded; returns whether one is."""
        return self._ready.wait(timeout)

    def _run(self) -> None:
        interval = self.settings.reload_interval_s
        self._try_reload()
        # Until a model is loaded, retry even when polling is off, so a store that appears later is picked up.
        while not self._stop.wait(interval if interval > 0 else 5.0):
            if interval > 0 or self.current is None:
                self._try_reload()

    def _try_reload(self) -> None:
        try:
            self.reload()
        except Exception as exc:  # a poller must survive store hiccups; the error is shown by /ready
            log.warning("model load failed: %s", self.error or exc)

    def _connect(self) -> None:
        if is_exported_model(self.settings.model_uri):  # an exported folder needs no store
            return
        if not self.tracking_uri:
            from vessel_lightning.tracking.registry import connect

            self.tracking_uri = connect(self.settings.tracking_uri)

    def _resolve_recorded(self) -> str | None:
        """Connect and :meth:`resolve`, recording whether the registry answered when there was an alias to ask
        about (``registry_status``)."""
        asks = bool((parse_registry_uri(self.settings.model_uri) or (None, None, None))[2])
        try:
            self._connect()
            version = self.resolve()
        except Exception as exc:
            if asks:
                self.registry_reachable, self.registry_error = False, _one_line(exc)
            raise
        if asks:
            self.registry_reachable, self.registry_error = True, None
        return version

    def registry_status(self) -> dict[str, Any]:
        """``reachable`` (null before the first look-up, or for a URI without an alias) and the last ``error``:
        while the tracking server is down the loaded model keeps serving and this says why no new version can
        arrive."""
        return {"reachable": self.registry_reachable, "error": self.registry_error}

    def resolve(self) -> str | None:
        """The version the configured alias points at now (None when the URI is not an alias)."""
        name, _, alias = parse_registry_uri(self.settings.model_uri) or (None, None, None)
        return alias_version(name, alias, self.tracking_uri or None) if alias else None

    def reload(self, force: bool = False) -> LoadedModel:
        """Load the alias's version if it moved (or ``force``); swap it in; return the current model.

        Raises the load error (also kept in ``error``); the previous model, if any, keeps serving.
        """
        with self._reload_lock:
            try:
                version = self._resolve_recorded()
                current = self.current
                if current is not None and not force and version is not None and version == current.version:
                    return current
                loaded = self._load(version)
            except Exception as exc:
                self.error = _one_line(exc)
                raise
            previous, self.current, self.error = self.current, loaded, None
            self._ready.set()
            log.info(
                "serving %s version %s (%s backend, was %s)",
                loaded.predictor.info.name,
                loaded.version,
                loaded.backend,
                previous.version if previous else "none",
            )
            return loaded

    def _load(self, version: str | None) -> LoadedModel:
        uri = self.settings.model_uri
        name, _, alias = parse_registry_uri(uri) or (None, None, None)
        # Load the resolved version, not the alias, so a move during the load cannot mix two versions.
        source = f"models:/{name}/{version}" if alias and version else uri
        start = time.perf_counter()
        predictor = self._loader(source)
        info = predictor.info
        if alias:
            info = dataclasses.replace(info, uri=uri, name=name, alias=alias)
        settings, device = self.settings, self.device
        # On a GPU the backend is PyTorch (VESSEL_BACKEND picks among the CPU backends).
        backend = "torch" if device.type == "cuda" else settings.backend
        try:
            result = build_backend(
                backend,
                predictor.network,
                predictor.contract,
                info,
                tracking_uri=self.tracking_uri,
                cache_dir=settings.cache_dir,
                calibration_dir=settings.calibration_dir,
                threads=settings.threads,
                device=device,
                precision=settings.precision,
                compile=settings.compile,
                window=settings.window,
            )
            network, backend, details = result.network, result.backend, result.details
        except BackendError as exc:
            if not settings.fallback_to_torch or device.type == "cuda":
                raise
            log.warning("backend %s unavailable, serving with torch: %s", settings.backend, exc)
            network, backend, details = predictor.network, "torch", {"fallback_reason": str(exc)}
        core, batcher = network, None
        if settings.batching_on(device.type):
            network = batcher = DynamicBatcher(core, settings.batch_max, settings.batch_wait_ms)
        cpu = device.type == "cpu"
        threads = torch_threads(backend, settings.threads or self.torch_threads)
        served = Predictor(
            network, predictor.contract, info=info, window=settings.window, device=device,
            threads=threads if cpu else None, batch_windows=window_batch(backend) if cpu else None,
        )  # fmt: skip
        if isinstance(core, CudaNetwork):  # the largest window shape, every batch size up to the batch limit
            size = served.window_size(1 << 16, 1 << 16) if predictor.contract.mode == "tiles" else None
            details["warm_up"] = core.warm_up(size or predictor.contract.size, settings.batch_max)
        served.info = dataclasses.replace(info, load_seconds=round(time.perf_counter() - start, 3))
        metrics = predictor.contract.metrics | _run_metrics(info.run_id, self.tracking_uri)
        loaded = LoadedModel(served, backend, metrics, details, batcher)
        if batcher is not None:  # the batching thread ends once no request holds this version any more
            weakref.finalize(loaded, batcher.close, 0).atexit = False  # stop() closes the one current at exit
        return loaded
