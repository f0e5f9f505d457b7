"""The service's knobs: environment variables (``VESSEL_*``, ``MLFLOW_TRACKING_URI``), overridden by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vessel_lightning.inference.backends import PRECISIONS
from vessel_lightning.inference.device import DEVICE_CHOICES, is_device_spec
from vessel_lightning.tracking.registry import DEFAULT_ALIAS, DEFAULT_MODEL_NAME

DEFAULT_MODEL_URI = f"models:/{DEFAULT_MODEL_NAME}@{DEFAULT_ALIAS}"
# The Next.js static export, when built in the repository; VESSEL_UI_DIR points elsewhere.
DEFAULT_UI_DIR = Path(__file__).resolve().parents[1] / "ui" / "out"


class SettingsError(ValueError):
    """An environment variable or flag with an unusable value; the message names it."""


def _env_number(name: str, default: float, kind: type = float, minimum: float = 0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from exc
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be ≥ {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs; :meth:`from_env` reads the environment."""

    host: str = "127.0.0.1"
    port: int = 8000
    model_uri: str = DEFAULT_MODEL_URI
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI or the embedded store
    api_key: str | None = None
    max_upload_mb: float = 20.0
    max_pixels: int = 50_000_000  # a 24 MP fundus camera fits twice; HRF is 8 MP
    reload_interval_s: float = 30.0  # 0 disables polling (POST /model/reload still works)
    backend: str = "auto"  # the fastest backend this CPU runs accurately (inference.backend_choice)
    cors_origins: tuple[str, ...] = ()
    ui_dir: Path = DEFAULT_UI_DIR
    workers: int | None = (
        None  # inference threads; None: 1 on the CPU (each already uses every core), 4 on a GPU
    )
    max_queue: int = 64  # requests waiting for a worker before /predict answers 503
    threads: int | None = None  # intra-op threads; None: all cores
    cache_dir: Path | None = None  # ONNX cache; None: $VESSEL_CACHE_DIR or ~/.cache/vessel-lightning/onnx
    calibration_dir: Path | None = None  # photos for int8 calibration and auto's mask gate
    window: int | None = 512  # sliding window of tile-trained models; None: the contract's tile size
    fallback_to_torch: bool = True  # a backend that cannot be built falls back to PyTorch
    request_timeout_s: float = 120.0  # a prediction's budget, queue wait included: then 503 (queued) or 504
    body_timeout_s: float = 120.0  # the whole request body must arrive within this, else 408
    max_uploads: int = 16  # request bodies arriving at once; more get 503 (stalled clients cannot pile up)
    large_image_pixels: int = 12_000_000  # photos over this get a one-thread lane of their own; 0: no lane
    large_queue: int = 2  # large photos waiting for their lane before 503
    device: str = "auto"  # auto (CUDA when PyTorch sees a GPU, else CPU), cpu, cuda, cuda:N
    precision: str = "auto"  # GPU: auto (= fp16), fp32, fp16, bf16; the CPU backends run fp32
    compile: bool = False  # GPU: torch.compile with CUDA graphs (slower load; see the README's GPU figures)
    batching: str = "auto"  # dynamic batching of concurrent requests: auto (on for a GPU only), on, off
    batch_max: int = 16  # windows per batched forward
    batch_wait_ms: float = 3.0  # how long the first request of a batch waits for company

    def resolved_workers(self, device_type: str) -> int:
        """Inference threads for ``device_type``: the configured count, else 1 on the CPU and 4 on a GPU (so
        requests decode and upload while another one's windows run, and dynamic batching has company)."""
        return self.workers or (4 if device_type == "cuda" else 1)

    def batching_on(self, device_type: str) -> bool:
        """Whether concurrent requests are batched on ``device_type`` (``auto``: on a GPU only)."""
        return self.batching == "on" or (self.batching == "auto" and device_type == "cuda")

    @property
    def max_upload_bytes(self) -> int:
        """The request body limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from ``VESSEL_*`` variables and ``MLFLOW_TRACKING_URI``; raises :class:`SettingsError`."""
        env = os.environ.get
        cors = tuple(o.strip() for o in env("VESSEL_CORS_ORIGINS", "").split(",") if o.strip())
        threads = int(_env_number("VESSEL_THREADS", 0, int))
        cache = env("VESSEL_CACHE_DIR")
        calibration = env("VESSEL_CALIBRATION_DIR")
        window = int(_env_number("VESSEL_WINDOW", cls.window or 0, int))
        device = (env("VESSEL_DEVICE", "") or cls.device).strip().lower()
        if not is_device_spec(device):
            raise SettingsError(f"VESSEL_DEVICE={device!r}: use {DEVICE_CHOICES}")
        precision = (env("VESSEL_PRECISION", "") or cls.precision).strip().lower()
        if precision not in PRECISIONS:
            raise SettingsError(f"VESSEL_PRECISION={precision!r}: use one of {', '.join(PRECISIONS)}")
        batching = (env("VESSEL_BATCHING", "") or cls.batching).strip().lower()
        if batching not in ("auto", "on", "off"):
            raise SettingsError(f"VESSEL_BATCHING={batching!r}: use auto, on or off")
        compile_raw = (env("VESSEL_COMPILE", "") or "0").strip().lower()
        if compile_raw not in ("0", "1", "true", "false", "yes", "no"):
            raise SettingsError(f"VESSEL_COMPILE={compile_raw!r}: use 1 or 0")
        if window % 32:
            raise SettingsError(f"VESSEL_WINDOW={window} must be a multiple of 32 (0: the model's tile size)")
        return cls(
            host=env("VESSEL_HOST", cls.host),
            port=int(_env_number("VESSEL_PORT", cls.port, int, 0)),
            model_uri=env("VESSEL_MODEL_URI", "") or DEFAULT_MODEL_URI,
            tracking_uri=env("MLFLOW_TRACKING_URI") or None,
            api_key=env("VESSEL_API_KEY") or None,
            max_upload_mb=_env_number("VESSEL_MAX_UPLOAD_MB", cls.max_upload_mb, float, 0.001),
            max_pixels=int(_env_number("VESSEL_MAX_PIXELS", cls.max_pixels, int, 1)),
            reload_interval_s=_env_number("VESSEL_RELOAD_INTERVAL_S", cls.reload_interval_s),
            backend=env("VESSEL_BACKEND", "") or cls.backend,
            cors_origins=cors,
            ui_dir=Path(env("VESSEL_UI_DIR", "") or DEFAULT_UI_DIR),
            workers=int(_env_number("VESSEL_WORKERS", 0, int, 0)) or None,
            max_queue=int(_env_number("VESSEL_MAX_QUEUE", cls.max_queue, int, 1)),
            threads=threads or None,
            cache_dir=Path(cache).expanduser() if cache else None,
            calibration_dir=Path(calibration).expanduser() if calibration else None,
            window=window or None,
            device=device,
            precision=precision,
            compile=compile_raw in ("1", "true", "yes"),
            batching=batching,
            batch_max=int(_env_number("VESSEL_BATCH_MAX", cls.batch_max, int, 1)),
            batch_wait_ms=_env_number("VESSEL_BATCH_WAIT_MS", cls.batch_wait_ms, float, 0),
            request_timeout_s=_env_number("VESSEL_REQUEST_TIMEOUT_S", cls.request_timeout_s, float, 0.001),
            body_timeout_s=_env_number("VESSEL_BODY_TIMEOUT_S", cls.body_timeout_s, float, 0.001),
            max_uploads=int(_env_number("VESSEL_MAX_UPLOADS", cls.max_uploads, int, 1)),
            large_image_pixels=int(_env_number("VESSEL_LARGE_IMAGE_PIXELS", cls.large_image_pixels, int, 0)),
            large_queue=int(_env_number("VESSEL_LARGE_QUEUE", cls.large_queue, int, 0)),
        )
