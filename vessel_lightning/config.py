"""Where the Hydra configs live, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _find_config_dir() -> Path:
    # A checkout (or editable install) keeps conf/ beside the package; a wheel ships it inside.
    for candidate in (_PACKAGE_DIR.parent / "conf", _PACKAGE_DIR / "conf"):
        if (candidate / "prepare.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Hydra config folder found beside or inside {_PACKAGE_DIR}")


CONFIG_DIR: Path = _find_config_dir()
