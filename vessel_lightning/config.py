"""Where the Hydra configs live, in a source checkout and in an installed wheel, the project's default names, and
the resolvers the configs use: ``${cpu_precision:}`` (the training precision this CPU runs best) and
``${vessel_default:<key>}`` (a default name below, so YAML and Python never spell it twice)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from vessel_lightning.hardware import cpu_training_precision

_PACKAGE_DIR = Path(__file__).resolve().parent

DEFAULT_MODEL_NAME = "vessel-unet"  # the registered model
DEFAULT_ALIAS = "champion"  # the alias vessel-serve, vessel-eval and vessel-predict load
DEFAULT_EXPERIMENT = "vessel-lightning"  # the MLflow experiment of training runs
DEFAULT_MODEL_URI = f"models:/{DEFAULT_MODEL_NAME}@{DEFAULT_ALIAS}"
DEFAULTS = {
    "model_name": DEFAULT_MODEL_NAME,
    "alias": DEFAULT_ALIAS,
    "experiment": DEFAULT_EXPERIMENT,
    "model_uri": DEFAULT_MODEL_URI,
}


def _default(key: str) -> str:
    if key not in DEFAULTS:
        raise KeyError(f"${{vessel_default:{key}}}: no such default (one of {', '.join(DEFAULTS)})")
    return DEFAULTS[key]


def _find_config_dir() -> Path:
    # A checkout (or editable install) keeps conf/ beside the package; a wheel ships it inside.
    for candidate in (_PACKAGE_DIR.parent / "conf", _PACKAGE_DIR / "conf"):
        if (candidate / "prepare.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Hydra config folder found beside or inside {_PACKAGE_DIR}")


CONFIG_DIR: Path = _find_config_dir()

# Registered on import, so every path that composes these configs (CLIs, tests, sweeps) can resolve it.
if not OmegaConf.has_resolver("cpu_precision"):
    OmegaConf.register_new_resolver("cpu_precision", cpu_training_precision)
if not OmegaConf.has_resolver("vessel_default"):
    OmegaConf.register_new_resolver("vessel_default", _default)
