"""``python -m app.openapi_schema [PATH]``: the API's OpenAPI schema as JSON, written to ``PATH`` (default: stdout).

The UI's API types are generated from the committed copy (``ui/src/api/openapi.json``, ``npm run api:types``);
a test fails when that copy is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

UI_SCHEMA = Path(__file__).resolve().parents[1] / "ui" / "src" / "api" / "openapi.json"


def openapi_schema() -> dict[str, Any]:
    """The schema ``/openapi.json`` serves (it depends on no setting; the app is built, never started)."""
    from app.server import create_app
    from app.settings import Settings

    return create_app(Settings(reload_interval_s=0)).openapi()


def schema_text() -> str:
    """:func:`openapi_schema` as the committed file holds it: indented UTF-8 JSON and a final newline."""
    return json.dumps(openapi_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the schema to ``argv[0]`` (the UI's copy when ``--ui``), else print it."""
    args = list(sys.argv[1:] if argv is None else argv)
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
