"""``python -m app.openapi_schema [PATH | --ui | --check]``: the API's OpenAPI schema as JSON, written to ``PATH``
(default: stdout) or to the UI's copy; ``--check`` exits 1 when the UI's committed API files are stale.

The UI's API types are generated from the committed copy (``ui/src/api/openapi.json``, ``npm run api:types``);
a test fails when that copy is stale, and so does the pre-commit hook (``--check``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
UI_SCHEMA = UI_DIR / "src" / "api" / "openapi.json"
UI_TYPES = UI_SCHEMA.with_name("schema.d.ts")  # openapi-typescript's output for UI_SCHEMA
OPENAPI_TS = UI_DIR / "node_modules" / ".bin" / "openapi-typescript"


def openapi_schema() -> dict[str, Any]:
    """The schema ``/openapi.json`` serves (it depends on no setting; the app is built, never started)."""
    from app.server import create_app
    from app.settings import Settings

    return create_app(Settings(reload_interval_s=0)).openapi()


def schema_text() -> str:
    """:func:`openapi_schema` as the committed file holds it: indented UTF-8 JSON and a final newline."""
    return json.dumps(openapi_schema(), indent=2, ensure_ascii=False) + "\n"


def stale_files() -> list[Path]:
    """The UI's committed API files that differ from what the server makes of them now: ``openapi.json`` against
    the app's schema, then (where ``ui/node_modules`` holds openapi-typescript) ``schema.d.ts`` against the
    committed ``openapi.json``. Without node_modules the second comparison is left to the UI tests."""
    committed = UI_SCHEMA.read_text(encoding="utf-8") if UI_SCHEMA.is_file() else None
    if committed != schema_text():
        return [UI_SCHEMA, UI_TYPES]  # the types follow the schema: both are regenerated
    if not OPENAPI_TS.is_file():
        print(
            "ui/node_modules has no openapi-typescript: schema.d.ts is left to the UI tests", file=sys.stderr
        )
        return []
    generated = subprocess.run(
        [str(OPENAPI_TS), str(UI_SCHEMA.relative_to(UI_DIR))],
        cwd=UI_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    types = UI_TYPES.read_text(encoding="utf-8") if UI_TYPES.is_file() else None
    return [] if types == generated else [UI_TYPES]


def check() -> int:
    """0 when the UI's API files are current; else 1, naming them and the command that regenerates them."""
    stale = stale_files()
    root = UI_DIR.parent
    if stale:
        names = " and ".join(str(path.relative_to(root)) for path in stale)
        print(f"{names}: stale; run `make api-types` and commit the result", file=sys.stderr)
        return 1
    checked = [UI_SCHEMA, UI_TYPES] if OPENAPI_TS.is_file() else [UI_SCHEMA]
    print(" and ".join(str(path.relative_to(root)) for path in checked) + ": current")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Write the schema to ``argv[0]`` (the UI's copy when ``--ui``), check the UI's copy (``--check``), else
    print it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--check"]:
        return check()
    text = schema_text()
    if not args:
        sys.stdout.write(text)
        return 0
    path = UI_SCHEMA if args[0] == "--ui" else Path(args[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
