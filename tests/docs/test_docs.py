"""The documentation stays true to the code: every ``--flag`` of a ``vessel-*`` command, ``VESSEL_*`` variable and
HTTP endpoint the pages name exists; the generated reference pages cover the code they are made from; the README is
short and quotes only accuracy figures that are rows of experiments/results.csv; RESULTS.md's headline table is the
one the CSV gives."""

from __future__ import annotations

import csv
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs"))
sys.path.insert(0, str(REPO / "experiments"))
import gen_reference  # noqa: E402  (docs/ and experiments/ hold scripts, not packages)
from collect_results import headline_table, read_csv, with_headline  # noqa: E402

PAGES = [*sorted((REPO / "docs").rglob("*.md")), REPO / "README.md"]
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+)`")
SCRIPTS = sorted(
    tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"], key=len, reverse=True
)
_COMMAND = re.compile(r"(?<![\w/.-])(" + "|".join(map(re.escape, SCRIPTS)) + r")(?![\w-])")
_STARTS = re.compile(r"^\s*(?:\$ |\S+=\S+ )*(vessel-[a-z-]+)", re.M)  # a command at the start of a shell line
_VARIABLE = re.compile(r"\bVESSEL_[A-Z0-9_]*[A-Z0-9]\b")
_ENDPOINT = re.compile(
    r"\b(?:GET|POST|PUT|PATCH|DELETE) (/[\w/{}.-]*)|(?:127\.0\.0\.1|localhost):8000(/[\w/{}.-]*)"
)


def _snippets(text: str) -> list[str]:
    """Code blocks (continued lines joined) and inline code spans of a page."""
    blocks = [block.replace("\\\n", " ") for block in _FENCE.findall(text)]
    prose = _FENCE.sub("", text)
    return [line for block in blocks for line in block.splitlines()] + _INLINE.findall(prose)


@cache
def _flags() -> dict[str, set[str]]:
    return gen_reference.command_flags()


def documented_flags(text: str) -> list[tuple[str, str]]:
    """``(command, flag)`` for each ``--flag`` written after a ``vessel-*`` command in a snippet."""
    found = []
    for snippet in _snippets(text):
        code = snippet.split(" # ")[0]  # a shell comment may name other commands
        commands = list(_COMMAND.finditer(code))
        if not commands:
            continue
        ends = [after.start() for after in commands[1:]] + [len(code)]
        for here, end in zip(commands, ends, strict=True):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", code[here.end() : end]):
                found.append((here.group(1), flag))
    return found


def test_documented_commands_exist() -> None:
    wrong = []
    for page in PAGES:
        for block in _FENCE.findall(page.read_text(encoding="utf-8")):
            wrong += [
                f"{page.relative_to(REPO)}: {name}" for name in _STARTS.findall(block) if name not in SCRIPTS
            ]
    assert not wrong, "commands pyproject.toml does not install:\n" + "\n".join(wrong)


@pytest.mark.slow  # runs every command's --help in this process (~10 s of imports on 2 cores)
def test_documented_flags_of_every_command_exist() -> None:
    flags = _flags()
    wrong = []
    for page in PAGES:
        for command, flag in documented_flags(page.read_text(encoding="utf-8")):
            if command not in flags:
                wrong.append(f"{page.relative_to(REPO)}: {command} is not a command")
            elif flag not in flags[command]:
                wrong.append(f"{page.relative_to(REPO)}: {command} has no {flag}")
    assert not wrong, "\n".join(wrong)


def test_the_flag_reader_finds_flags_after_their_command() -> None:
    page = "```bash\nvessel-predict eyes/ --out r/ \\\n  --fov-degrees 30   # then vessel-eval\n```\nsee `vessel-runs --sweep 5d0c`\n"
    assert documented_flags(page) == [
        ("vessel-predict", "--out"),
        ("vessel-predict", "--fov-degrees"),
        ("vessel-runs", "--sweep"),
    ]


def _variables_in_code() -> set[str]:
    """``VESSEL_*`` names the code, configs, scripts and build files use (outside the docs)."""
    names = gen_reference.documented_variables()
    roots = ["app", "vessel_lightning", "conf", "experiments", "docker", "tests", "ui/e2e", ".ci"]
    files = [REPO / "Makefile", REPO / "ui" / "playwright.config.ts"]
    files += [p for root in roots for p in (REPO / root).rglob("*") if p.is_file() and p.suffix != ".md"]
    for path in files:
        if path.is_file() and "tests/docs" not in path.as_posix():
            names |= set(_VARIABLE.findall(path.read_text(encoding="utf-8", errors="ignore")))
    return names


def test_documented_variables_exist() -> None:
    known = _variables_in_code()
    wrong = [
        f"{page.relative_to(REPO)}: {name}"
        for page in PAGES
        for name in sorted(set(_VARIABLE.findall(page.read_text(encoding="utf-8"))))
        if name not in known
    ]
    assert not wrong, "variables no code reads:\n" + "\n".join(wrong)


def test_every_setting_is_in_the_settings_reference() -> None:
    from app.settings import Settings

    page = gen_reference.settings_markdown()
    for name in Settings.__pydantic_fields__:
        if name != "fallback_to_torch":
            assert f"`{Settings.env_name(name)}`" in page, name
    assert "`VESSEL_DATA_DIR`" in page and "`VESSEL_RUNS_DIR`" in page  # read by the configs, not the model


@pytest.mark.slow  # builds the app (~5 s of imports on 2 cores)
def test_documented_endpoints_exist() -> None:
    routes = gen_reference.route_paths()
    patterns = [re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", path) + "/?$") for path in routes]
    wrong = []
    for page in PAGES:
        for match in _ENDPOINT.finditer(page.read_text(encoding="utf-8")):
            path = (match.group(1) or match.group(2)).rstrip(".")
            if path != "/" and not any(p.match(path) for p in patterns):
                wrong.append(f"{page.relative_to(REPO)}: {path}")
    assert not wrong, "endpoints the service does not answer:\n" + "\n".join(wrong)


@pytest.mark.slow  # builds the app
def test_http_reference_covers_the_published_schema() -> None:
    page = gen_reference.http_api_markdown()
    for path, methods in gen_reference.openapi()["paths"].items():
        for method in methods:
            assert f"## `{method.upper()} {path}`" in page


def test_configuration_reference_covers_every_group_and_option() -> None:
    page = gen_reference.config_markdown()
    groups = gen_reference.config_groups()
    assert {"data", "model", "model/encoder", "experiment", "hydra/launcher"} <= set(groups)
    for group, options in groups.items():
        assert f"### `{group}`" in page
        for option in options:
            assert f"`{group}={option}`" in page


def test_architecture_page_lists_every_import_contract() -> None:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    listed = gen_reference.import_contracts_markdown()
    assert all(contract["name"] in listed for contract in contracts)
    assert "<!-- import-contracts -->" in (REPO / "docs" / "architecture.md").read_text()


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.load(
        (REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader
    )  # tags such as !!python/name

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return [p for item in node for p in pages(item)] if isinstance(node, list) else []

    in_nav = set(pages(config["nav"]))
    on_disk = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    generated = set(gen_reference.generated_pages())
    assert not on_disk & generated  # generated pages are never stale copies in docs/
    assert in_nav == on_disk | generated, in_nav ^ (on_disk | generated)


def _csv_figures() -> set[str]:
    with (REPO / "experiments" / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        row[column] for row in rows for column in ("f1", "iou", "cldice", "thin_recall", "auc") if row[column]
    }


def quoted_figures(text: str) -> list[str]:
    """Accuracy figures a text quotes: decimals below 1 with three or more digits."""
    return re.findall(r"(?<![\d.])0\.\d{3,6}(?![\d])", text)


def test_readme_is_short_and_quotes_only_results_rows() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    figures = quoted_figures(readme)
    assert "0.8017" in figures  # the demo's figure is quoted, and is a row
    stored = _csv_figures()
    for figure in figures:
        digits = len(figure) - 2
        assert any(f"{float(value):.{digits}f}" == figure for value in stored), (
            f"README quotes {figure}: no CSV row"
        )


def test_results_headline_is_the_table_the_csv_gives() -> None:
    path = REPO / "experiments" / "RESULTS.md"
    text = path.read_text(encoding="utf-8")
    expected = with_headline(text, headline_table(read_csv(REPO / "experiments" / "results.csv")))
    assert text == expected, "run: python experiments/collect_results.py --headline experiments/RESULTS.md"
    assert "| CHASE_DB1 | demo:" in text and "**0.8017**" in text


def test_headings_speak_of_the_project_not_of_work_rounds() -> None:
    for path in [*PAGES, REPO / "experiments" / "RESULTS.md"]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                assert not re.search(r"\b(issue \d+|session|round of work)\b", line, re.I), (
                    f"{path.name}: {line}"
                )


def test_images_are_small_pngs() -> None:
    images = sorted((REPO / "docs" / "images").glob("*"))
    assert images, "docs/images/ holds the UI screenshots (make screenshots)"
    for image in images:
        assert image.suffix == ".png" and image.stat().st_size <= 300 * 1024, image.name
