"""The service's knobs: environment variables (``VESSEL_*``, ``MLFLOW_TRACKING_URI``), overridden by CLI flags.

:class:`Settings` declares every knob once, typed and bounded (a pydantic dataclass: ``Settings(...)`` is exactly
what it is given, and ``dataclasses.replace`` works on it); :meth:`Settings.from_env` reads the environment
through pydantic-settings and refuses bad values with one :class:`SettingsError` that names each bad variable.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vessel_lightning.config import DEFAULT_MODEL_URI
from vessel_lightning.inference.settings import BACKENDS, DEVICE_CHOICES, PRECISIONS, is_device_spec

# The Next.js static export, when built in the repository; VESSEL_UI_DIR points elsewhere.
DEFAULT_UI_DIR = Path(__file__).resolve().parents[1] / "ui" / "out"
ENV_PREFIX = "VESSEL_"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable, not a VESSEL_ one
API_KEY_FILE_ENV = "VESSEL_API_KEY_FILE"  # the key in a file (a Docker or Kubernetes secret)


class SettingsError(ValueError):
    """An environment variable or flag with an unusable value; the message names it."""


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _zero_is_none(value: int | None) -> int | None:
    return value or None


def _window(value: int | None) -> int | None:
    if value and value % 32:
        raise ValueError(f"VESSEL_WINDOW={value} must be a multiple of 32 (0: the model's tile size)")
    return value or None


def _device(value: str) -> str:
    if not is_device_spec(value):
        raise ValueError(f"VESSEL_DEVICE={value!r}: use {DEVICE_CHOICES}")
    return value


def _switch(value: Any) -> Any:
    """``1``/``0`` (or true/false, yes/no) for a boolean variable; pydantic's wider list (on, t, y...) is not
    accepted, as before."""
    if isinstance(value, str):
        if _lower(value) not in ("0", "1", "true", "false", "yes", "no"):
            raise ValueError(f"VESSEL_COMPILE={value!r}: use 1 or 0")
        return _lower(value) in ("1", "true", "yes")
    return value


def _origins(value: Any) -> Any:
    """A comma-separated list (the variable) or a sequence (a caller)."""
    if isinstance(value, str):
        return tuple(origin.strip() for origin in value.split(",") if origin.strip())
    return value


def _expand(path: Path | None) -> Path | None:
    return path.expanduser() if path is not None else None


OptionalCount = Annotated[int | None, Field(ge=0), AfterValidator(_zero_is_none)]
OptionalDir = Annotated[Path | None, AfterValidator(_expand)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Settings:
    """Everything ``create_app`` needs; :meth:`from_env` reads the environment (``VESSEL_<FIELD>``)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    model_uri: str = DEFAULT_MODEL_URI
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI or the embedded store
    api_key: str | None = None  # or read from the file $VESSEL_API_KEY_FILE names (a secret)
    max_upload_mb: Annotated[float, Field(ge=0.001)] = 20.0
    max_pixels: Annotated[int, Field(ge=1)] = 50_000_000  # a 24 MP fundus camera fits twice; HRF is 8 MP
    reload_interval_s: Annotated[float, Field(ge=0)] = (
        30.0  # 0 disables polling (POST /model/reload still works)
    )
    # The fastest backend this CPU runs accurately (inference.auto), or one by name.
    backend: Annotated[Literal[BACKENDS], BeforeValidator(_lower)] = "auto"  # type: ignore[valid-type]  # the names tuple: pydantic reads it, mypy wants literals
    cors_origins: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_origins)] = ()
    ui_dir: Path = DEFAULT_UI_DIR
    workers: OptionalCount = (
        None  # inference threads; None (or 0): 1 on the CPU (each uses every core), 4 on a GPU
    )
    max_queue: Annotated[int, Field(ge=1)] = 64  # requests waiting for a worker before /predict answers 503
    threads: OptionalCount = None  # intra-op threads; None (or 0): all cores
    cache_dir: OptionalDir = None  # ONNX cache; None: $VESSEL_CACHE_DIR or ~/.cache/vessel-lightning/onnx
    calibration_dir: OptionalDir = None  # photos for int8 calibration and auto's mask gate
    annotations_dir: OptionalDir = (
        None  # where POST /annotations saves corrected masks; None: annotations off
    )
    worklist_dir: OptionalDir = None  # photos to annotate, offered by GET /worklist/next; None: no worklist
    # Sliding window of tile-trained models; None (or 0): the contract's tile size.
    window: Annotated[int | None, Field(ge=0), AfterValidator(_window)] = 512
    fallback_to_torch: bool = True  # a backend that cannot be built falls back to PyTorch
    # A prediction's budget, queue wait included: then 503 (still queued) or 504.
    request_timeout_s: Annotated[float, Field(ge=0.001)] = 120.0
    body_timeout_s: Annotated[float, Field(ge=0.001)] = (
        120.0  # the whole body must arrive within this, else 408
    )
    # Uploads that may be stalled (waiting on their client over 0.2 s) at once; the next gets 503.
    max_uploads: Annotated[int, Field(ge=1)] = 16
    # After 10 s a body must have arrived at this average rate, else 408; 0: no minimum.
    min_upload_kbps: Annotated[float, Field(ge=0)] = 16.0
    # Bytes all bodies arriving at once may hold (each its Content-Length); beyond, 503. None: 16 × max_upload_mb.
    upload_buffer_mb: Annotated[float | None, Field(ge=0.001)] = None
    # Photos over this get a one-thread lane of their own; 0: no lane.
    large_image_pixels: Annotated[int, Field(ge=0)] = 12_000_000
    large_queue: Annotated[int, Field(ge=0)] = 2  # large photos waiting for their lane before 503
    # auto (CUDA when PyTorch sees a GPU, else CPU), cpu, cuda, cuda:N
    device: Annotated[str, BeforeValidator(_lower), AfterValidator(_device)] = "auto"
    # GPU: auto (= fp16), fp32, fp16, bf16; the CPU backends run fp32
    precision: Annotated[Literal[PRECISIONS], BeforeValidator(_lower)] = "auto"  # type: ignore[valid-type]  # the names tuple: pydantic reads it, mypy wants literals
    # GPU: torch.compile with CUDA graphs (slower load; docs/serving.md, "On a GPU")
    compile: Annotated[bool, BeforeValidator(_switch)] = False
    # Dynamic batching of concurrent requests: auto (on for a GPU only), on, off.
    batching: Annotated[Literal["auto", "on", "off"], BeforeValidator(_lower)] = "auto"
    batch_max: Annotated[int, Field(ge=1)] = 16  # windows per batched forward
    batch_wait_ms: Annotated[float, Field(ge=0)] = (
        3.0  # how long the first request of a batch waits for company
    )
    # Log lines as text or one JSON object per line; each names its request's id.
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"

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

    @property
    def upload_buffer_bytes(self) -> int:
        """The bytes all request bodies arriving at once may hold together."""
        megabytes = self.upload_buffer_mb if self.upload_buffer_mb is not None else 16 * self.max_upload_mb
        return int(megabytes * 1024 * 1024)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from ``VESSEL_*`` variables and ``MLFLOW_TRACKING_URI`` (an empty variable means the
        default), the API key possibly from the file ``VESSEL_API_KEY_FILE`` names; raises one
        :class:`SettingsError` naming every bad variable."""
        try:
            found = _Environment().model_dump(exclude_unset=True, by_alias=False)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        key_file = os.environ.get(API_KEY_FILE_ENV, "").strip()
        if key_file:
            if "api_key" in found:
                raise SettingsError(f"{ENV_PREFIX}API_KEY and {API_KEY_FILE_ENV} are both set: use one")
            found["api_key"] = _read_api_key(key_file)
        return cls(**found)

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable of settings field ``field`` (``max_queue`` → ``VESSEL_MAX_QUEUE``)."""
        return TRACKING_URI_ENV if field == "tracking_uri" else ENV_PREFIX + field.upper()


def _read_api_key(path: str) -> str:
    """The API key in file ``path`` (surrounding whitespace, such as the final newline, removed)."""
    try:
        key = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"{API_KEY_FILE_ENV}={path!r}: cannot read the API key: {reason}") from None
    if not key:
        raise SettingsError(
            f"{API_KEY_FILE_ENV}={path!r}: the file is empty (an empty key would accept anyone)"
        )
    return key


class _EnvironmentBase(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )


def _environment_fields() -> dict[str, Any]:
    """:class:`Settings`' fields (types, bounds, validators and defaults: one definition) for pydantic-settings,
    each read from :meth:`Settings.env_name`."""
    fields: dict[str, Any] = {}
    # A pydantic dataclass carries __pydantic_fields__; mypy sees a plain dataclass.
    for name, info in Settings.__pydantic_fields__.items():  # type: ignore[attr-defined]
        if name == "fallback_to_torch":  # a library and test knob, not a variable
            continue
        copied = copy.copy(info)
        copied.validation_alias = Settings.env_name(name)  # exact and upper-case, as the shell spells it
        fields[name] = (info.annotation, copied)
    return fields


# VESSEL_<FIELD> for every field of Settings, and MLFLOW_TRACKING_URI.
_Environment = create_model("_Environment", __base__=_EnvironmentBase, **_environment_fields())


def _describe(exc: ValidationError) -> str:
    """One message for all bad variables: ``NAME='value': what is wrong`` per line."""
    lines = []
    for error in exc.errors(include_url=False):
        env = str(error["loc"][0]) if error["loc"] else "?"  # the field's alias: its variable
        raw = os.environ.get(env, error.get("input"))
        kind, context = error["type"], error.get("ctx") or {}
        if kind == "value_error":  # our own validators say it whole, naming the variable
            lines.append(str(context.get("error", error["msg"])))
        elif kind in ("greater_than_equal", "less_than_equal"):
            bound = "≥" if kind == "greater_than_equal" else "≤"
            lines.append(f"{env}={raw!r} must be {bound} {context.get('ge', context.get('le'))}")
        elif kind == "int_parsing":
            lines.append(f"{env}={raw!r} is not an integer")
        elif kind == "float_parsing":
            lines.append(f"{env}={raw!r} is not a number")
        elif kind == "literal_error":
            lines.append(f"{env}={raw!r}: use one of {context.get('expected', '')}")
        else:
            lines.append(f"{env}={raw!r}: {error['msg']}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} bad settings:\n" + "\n".join(f"  {line}" for line in lines)
