"""Where the Hydra configs live, in a source checkout and in an installed wheel, and the resolvers they use that
read the machine (``${cpu_precision:}``: the training precision this CPU runs best)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from vessel_lightning.hardware import cpu_training_precision

_PACKAGE_DIR = Path(__file__).resolve().parent


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
