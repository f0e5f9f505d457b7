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

from app.batching import DynamicBatcher
from app.settings import Settings
from vessel_lightning.inference.backends import (
    build_backend,
    describe_device,
    needs_module,
    resolve_device,
    window_batch,
)
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.inference.settings import BackendError, BackendResult, BackendSettings
from vessel_lightning.tracking.bundle import (
    ModelInfo,
    alias_version,
    describe_logged_model,
    is_exported_model,
    load_logged_model,
    parse_registry_uri,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One ready-to-serve model version: its predictor, backend and what ``GET /model`` reports."""

    predictor: Predictor
    result: BackendResult
    metrics: dict[str, float] = field(default_factory=dict)
    batcher: DynamicBatcher | None = None
    threads: int | None = None

    @property
    def backend(self) -> str:
        return self.result.backend

    @property
    def precision(self) -> str:
        """The precision the network runs in (fp32, fp16, bf16 or int8)."""
        return self.result.precision

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
            "device": describe_device(self.predictor.device, self.threads),
            "batching": self.batcher.stats() if self.batcher else None,
            "backend_details": self.result.describe(),
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
        self.device = resolve_device(settings.device, "VESSEL_DEVICE")
        self.device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        self.current: LoadedModel | None = None
        self.error: str | None = None
        self.loads = 0  # versions loaded and swapped in (GET /metrics)
        self.load_failures = 0
        # The last look up of the alias: None before the first (or without an alias), then True or False.
        self.registry_reachable: bool | None = None
        self.registry_error: str | None = None
        self._loader = loader
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.tracking_uri = ""

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
        return alias_version(name, alias, self.tracking_uri or None) if name and alias else None

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
                self.load_failures += 1
                self.error = _one_line(exc)
                raise
            previous, self.current, self.error = self.current, loaded, None
            self.loads += 1
            self._ready.set()
            log.info(
                "serving %s version %s (%s backend, was %s)",
                loaded.predictor.info.name,
                loaded.version,
                loaded.backend,
                previous.version if previous else "none",
            )
            return loaded

    def _source(self, uri: str) -> tuple[Any, Any, ModelInfo]:
        """The network as a PyTorch module (None where the backend runs the bundle's ONNX export), the contract and
        where it came from."""
        if self._loader is not None:
            predictor = self._loader(uri)
            return predictor.module or predictor.network, predictor.contract, predictor.info
        backend = self.settings.backend
        if needs_module(backend, self.device) or (self.settings.fallback_to_torch and backend != "torch"):
            try:
                return load_logged_model(uri)
            except ImportError:  # no PyTorch here (the CPU image): the bundle's ONNX export serves
                pass
        contract, info = describe_logged_model(uri)
        return None, contract, info

    def _load(self, version: str | None) -> LoadedModel:
        uri = self.settings.model_uri
        name, _, alias = parse_registry_uri(uri) or (None, None, None)
        # Load the resolved version, not the alias, so a move during the load cannot mix two versions.
        source = f"models:/{name}/{version}" if alias and version else uri
        start = time.perf_counter()
        module, contract, info = self._source(source)
        if alias:
            info = dataclasses.replace(info, uri=uri, name=name, alias=alias)
        settings, device = self.settings, self.device
        gpu = self.device_type == "cuda"
        # On a GPU the backend is PyTorch (VESSEL_BACKEND picks among the CPU backends).
        backend = "torch" if gpu else settings.backend
        built = BackendSettings(
            tracking_uri=self.tracking_uri, cache_dir=settings.cache_dir, calibration_dir=settings.calibration_dir,
            threads=settings.threads, precision=settings.precision, compile=settings.compile, window=settings.window,
        )  # fmt: skip
        try:
            result = build_backend(backend, module, contract, info, built, device)
        except BackendError as exc:
            if not settings.fallback_to_torch or gpu or module is None:
                raise
            log.warning("backend %s unavailable, serving with torch: %s", settings.backend, exc)
            result = build_backend("torch", module, contract, info, built)
            result.fallback_reason = str(exc)
        network, batcher = result.network, None
        if settings.batching_on(self.device_type):
            network = batcher = DynamicBatcher(result.network, settings.batch_max, settings.batch_wait_ms)
        served = Predictor(
            network, contract, info=info, window=settings.window, device=device,
            batch_windows=None if gpu else window_batch(result.backend),
        )  # fmt: skip
        served.module = module
        warm_up = getattr(result.network, "warm_up", None)
        if gpu and warm_up is not None:  # the largest window shape, every batch size up to the batch limit
            size = served.window_size(1 << 16, 1 << 16) if contract.mode == "tiles" else None
            result.warm_up = warm_up(size or contract.size, settings.batch_max)
        served.info = dataclasses.replace(info, load_seconds=round(time.perf_counter() - start, 3))
        metrics = contract.metrics | _run_metrics(info.run_id, self.tracking_uri)
        loaded = LoadedModel(served, result, metrics, batcher, settings.threads)
        if batcher is not None:  # the batching thread ends once no request holds this version any more
            weakref.finalize(loaded, batcher.close, 0).atexit = False  # stop() closes the one current at exit
        return loaded
