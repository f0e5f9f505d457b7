"""MkDocs hooks: the generated reference pages (docs/gen_reference.py) and experiments/RESULTS.md join the site at
build time, so they are never stale copies in docs/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("gen_reference", _HERE / "gen_reference.py")
gen = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["gen_reference"] = gen
_spec.loader.exec_module(gen)  # type: ignore[union-attr]

PAGES = gen.generated_pages()
# Files the results page links to, served beside it.
ASSETS = {"results.csv": gen.REPO / "experiments" / "results.csv"}
PLACEHOLDERS = {"<!-- import-contracts -->": gen.import_contracts_markdown}


def on_files(files: Files, config: Any) -> Files:
    """Add each generated page."""
    for uri, make in PAGES.items():
        files.append(File.generated(config, uri, content=make()))
    for uri, path in ASSETS.items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Fill the placeholders a hand-written page holds."""
    for marker, make in PLACEHOLDERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
