"""The reference pages of the documentation, generated from the code at build time so they cannot drift.

``docs/hooks.py`` adds them to the site on every ``mkdocs build``; ``tests/docs/`` reads the same functions to check
that the hand-written pages name only flags, settings and endpoints that exist.

- :func:`config_markdown`: the Hydra config tree under ``conf/`` (root configs, groups, options, what each sets).
- :func:`settings_markdown`: every ``VESSEL_*`` variable: the service's settings model (``app.settings.Settings``)
  and the variables the commands and configs read.
- :func:`http_api_markdown`: the HTTP API from the OpenAPI schema the service publishes (``app.openapi_schema``).
- :func:`cli_markdown`: each ``vessel-*`` command's ``--help``.
- :func:`import_contracts_markdown`: the import contracts of ``pyproject.toml`` (``[tool.importlinter]``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
import tokenize
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the checkout's code, whichever copy of the package is installed
    sys.path.insert(0, str(REPO))

# Console scripts that parse their flags with argparse: (module, function). Hydra commands take key=value overrides.
ARGPARSE_COMMANDS = {
    "vessel-predict": ("vessel_lightning.inference.predict_cli", "main"),
    "vessel-promote": ("vessel_lightning.tracking.commands", "promote_main"),
    "vessel-runs": ("vessel_lightning.tracking.commands", "runs_main"),
    "vessel-relog": ("vessel_lightning.tracking.commands", "relog_main"),
    "vessel-import-run": ("vessel_lightning.tracking.offline", "main"),
    "vessel-download": ("vessel_lightning.data.download", "main"),
    "vessel-serve": ("app.server", "main"),
}
HYDRA_COMMANDS = {"vessel-train": "train.yaml", "vessel-eval": "eval.yaml", "vessel-prepare": "prepare.yaml"}
# Hydra's own command-line flags (hydra/_internal/utils.py: get_args_parser), shared by the Hydra commands.
HYDRA_FLAGS = frozenset(
    {"--help", "--hydra-help", "--version", "--cfg", "--resolve", "--package", "--run", "--multirun",
     "--shell-completion", "--config-path", "--config-name", "--config-dir", "--experimental-rerun", "--info"}
)  # fmt: skip
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


# --- configuration -------------------------------------------------------------------------------------------


def _leading_comment(text: str) -> tuple[str, list[str]]:
    """The comment a YAML file opens with (after a ``# @package`` line): its prose joined, and its example
    command lines."""
    prose, commands = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# @package"):
            continue
        if not stripped.startswith("#"):
            break
        part = stripped.lstrip("#").strip()
        (commands if re.match(r"vessel-[a-z-]+ ", part) else prose).append(part)
    return " ".join(p for p in prose if p), commands


def _top_keys(text: str) -> list[tuple[str, str, str]]:
    """``(key, value, trailing comment)`` for each top-level key of a YAML file, as written."""
    keys = []
    for line in text.splitlines():
        found = re.match(r"^([A-Za-z_][\w.]*):\s*(.*)$", line)
        if not found or found.group(1) == "defaults":
            continue
        value, comment = found.group(2), ""
        split = re.search(r"(?:^|\s)#\s?", value)
        if split:
            value, comment = value[: split.start()], value[split.end() :]
        keys.append((found.group(1), value.strip(), comment.strip()))
    return keys


def config_groups(conf: Path = REPO / "conf") -> dict[str, list[str]]:
    """Each config group (``data``, ``model/encoder``, ``hydra/launcher`` …) and its options, as Hydra sees them."""
    groups: dict[str, list[str]] = {}
    for folder in sorted(p for p in conf.rglob("*") if p.is_dir()):
        options = sorted(f.stem for f in folder.glob("*.yaml") if not f.stem.startswith("_"))
        if options:
            groups[folder.relative_to(conf).as_posix()] = options
    return groups


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_markdown(conf: Path = REPO / "conf") -> str:
    """The configuration reference page."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `conf/` when the site is built. Configs compose with Hydra: pick an option of a group with",
        "`group=option` (`model/encoder=b3`), set any key with `key=value` (`data.batch_size=4`), add one with",
        "`+key=value`. `vessel-train --cfg job` prints the composed config.",
        "",
        "## Root configs",
        "",
    ]
    for command, name in HYDRA_COMMANDS.items():
        text = (conf / name).read_text(encoding="utf-8")
        prose, examples = _leading_comment(text)
        lines += [f"### `{name}` ({command})", "", prose, ""]
        if examples:
            lines += ["```bash", *examples, "```", ""]
        lines += ["| key | default | |", "|---|---|---|"]
        lines += [f"| `{k}` | `{_cell(v)}` | {_cell(c)} |" if v else f"| `{k}` | | {_cell(c)} |"
                  for k, v, c in _top_keys(text)]  # fmt: skip
        lines.append("")
    lines += ["## Groups", ""]
    for group, options in config_groups(conf).items():
        lines += [f"### `{group}`", "", "| option | what it is | keys it sets |", "|---|---|---|"]
        for option in options:
            text = (conf / group / f"{option}.yaml").read_text(encoding="utf-8")
            keys = ", ".join(f"`{k}`" for k, _, _ in _top_keys(text))
            prose, examples = _leading_comment(text)
            example = f" (`{examples[0]}`)" if examples else ""
            lines.append(f"| `{group}={option}` | {_cell(prose)}{_cell(example)} | {keys} |")
        lines.append("")
    return "\n".join(lines) + "\n"


# --- settings --------------------------------------------------------------------------------------------------


def _field_comments(source: Path, class_name: str) -> dict[str, str]:
    """For each field of the class ``class_name`` in ``source``: its trailing comment, or the comment lines just
    above it."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    in_class, field = False, ""
    with source.open("rb") as handle:
        tokens = list(tokenize.tokenize(handle.readline))
    line_comment: dict[int, str] = {}
    for token in tokens:
        if token.type == tokenize.COMMENT:
            line_comment[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if re.match(rf"class {class_name}\b[:(]", line):
            in_class = True
            continue
        if not in_class:
            continue
        if line and not line.startswith(" "):
            break
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        found = re.match(r"^    (\w+): ", line)
        if found:
            field = found.group(1)
            span = (
                3 if line.rstrip().endswith("= (") else 1
            )  # a default formatted over lines carries its comment inside
            own = [line_comment[n] for n in range(number, number + span) if n in line_comment][:1]
            comments[field] = " ".join(pending + own) if (pending or own) else ""
            pending = []
        elif not stripped:
            pending = []
    return {k: re.sub(r"\s*(type: ignore\S*|noqa\S*|fmt: skip)", "", v).strip() for k, v in comments.items()}


def _bounds(info: Any) -> str:
    parts = []
    for item in info.metadata:
        for name, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, name, None)
            if value is not None:
                parts.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(parts)


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")
    text = re.sub(r"<class '(\w+)'>", r"\1", text)
    if text.startswith("Annotated["):
        text = text[len("Annotated[") :].split(",")[0]
    return text


def service_settings() -> list[dict[str, str]]:
    """Every variable of the service's settings model: variable, field, type, default, bounds, description."""
    from app.settings import Settings

    comments = _field_comments(REPO / "app" / "settings.py", "Settings")
    rows = []
    for name, info in Settings.__pydantic_fields__.items():
        if name == "fallback_to_torch":  # a library and test knob: no variable reads it
            continue
        default = info.default
        if isinstance(default, Path):
            default = default.relative_to(REPO) if default.is_relative_to(REPO) else default
        rows.append({
            "variable": Settings.env_name(name),
            "field": name,
            "type": _type_name(info.annotation),
            "default": "unset" if default is None else ("empty" if default == () else str(default)),
            "bounds": _bounds(info),
            "what": comments.get(name, ""),
        })  # fmt: skip
    return rows


def other_variables() -> dict[str, list[str]]:
    """``VESSEL_*`` variables read outside the settings model (commands and configs), with where they are read."""
    found: dict[str, list[str]] = {}
    pattern = re.compile(r"""(?:environ\.get\(|getenv\(|environ\[|oc\.env:)["']?(VESSEL_[A-Z0-9_]+)""")
    files = [*REPO.joinpath("vessel_lightning").rglob("*.py"), *REPO.joinpath("conf").rglob("*.yaml")]
    for path in sorted(files):
        for name in pattern.findall(path.read_text(encoding="utf-8")):
            where = path.relative_to(REPO).as_posix()
            if where not in found.setdefault(name, []):
                found[name].append(where)
    internal = {"VESSEL_SWEEP_PARENT_RUN_ID"}  # set by the sweep callback for its own jobs
    return {k: v for k, v in sorted(found.items()) if k not in internal}


def documented_variables() -> set[str]:
    """Every variable the settings reference names (what the docs may cite)."""
    return {row["variable"] for row in service_settings()} | set(other_variables())


def settings_markdown() -> str:
    """The settings reference page."""
    from app.server import parse_args  # noqa: F401  (the flags below are vessel-serve's)

    flags = _help_flags("vessel-serve")
    lines = [
        "# Settings reference",
        "",
        "Generated from `app.settings.Settings` when the site is built. `vessel-serve` reads these variables at",
        "start-up (an empty variable means the default); a bad value stops it with one error naming every bad",
        "variable. Flags of `vessel-serve` override them: "
        + ", ".join(f"`{f}`" for f in sorted(flags))
        + ".",
        "",
        "| variable | type | default | bounds | what it sets |",
        "|---|---|---|---|---|",
    ]
    for row in service_settings():
        lines.append(
            f"| `{row['variable']}` | `{_cell(row['type'])}` | `{_cell(row['default'])}` | {row['bounds']} | "
            f"{_cell(row['what'])} |"
        )
    lines += ["", "## Read by the commands and configs", "", "| variable | read in |", "|---|---|"]
    for name, where in other_variables().items():
        lines.append(f"| `{name}` | {', '.join(f'`{w}`' for w in where)} |")
    return "\n".join(lines) + "\n"


# --- HTTP API --------------------------------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    """The schema ``/openapi.json`` serves."""
    from app.openapi_schema import openapi_schema

    return openapi_schema()


def route_paths() -> set[str]:
    """Every path the service answers, in or out of the schema (``/docs``, ``/metrics`` …), static UI excluded."""
    from app.server import create_app
    from app.settings import Settings

    app = create_app(Settings(reload_interval_s=0, ui_dir=Path("/nonexistent")))
    return {getattr(route, "path", "") for route in app.routes if getattr(route, "path", "")} - {""}


def _schema_type(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_schema_type(s, spec) for s in schema["anyOf"])
    if "enum" in schema:
        return ", ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"array of {_schema_type(schema.get('items', {}), spec)}"
    kind = schema.get("type", "any")
    return "file" if schema.get("format") == "binary" or schema.get("contentMediaType") else kind


def _limits(schema: dict[str, Any]) -> str:
    out = []
    for options in [schema, *schema.get("anyOf", [])]:
        for key, sign in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        ):
            if key in options:
                out.append(f"{sign} {options[key]}")
    return ", ".join(out)


def http_api_markdown() -> str:
    """The HTTP API reference page."""
    spec = openapi()
    lines = [
        "# HTTP API reference",
        "",
        f"Generated from the OpenAPI schema the service publishes (`GET /openapi.json`, {spec['info']['title']}"
        f" {spec['info'].get('version', '')}) when the site is built. A running server shows the same as Swagger UI"
        ' at `/docs`. Every error body is `{"detail": "one readable line"}`.',
        "",
    ]
    security = spec.get("components", {}).get("securitySchemes", {})
    for name, scheme in security.items():
        lines += [f"**Authentication** (`{name}`): header `{scheme.get('name', '')}`. "
                  f"{_cell(scheme.get('description', ''))}", ""]  # fmt: skip
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines += [f"## `{method.upper()} {path}`", ""]
            if op.get("summary"):
                lines += [f"**{op['summary']}**", ""]
            if op.get("description"):
                lines += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | type | default | limits | |", "|---|---|---|---|---|---|"]
                for p in params:
                    schema = p.get("schema", {})
                    default = f"`{schema['default']}`" if "default" in schema else ""
                    lines.append(
                        f"| `{p['name']}` | {p['in']} | {_cell(_schema_type(schema, spec))} | {default} | "
                        f"{_limits(schema)} | {_cell(p.get('description', ''))} |"
                    )
                lines.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                schema = content.get("schema", {})
                if "$ref" in schema:
                    schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
                props = schema.get("properties", {})
                required = set(schema.get("required", []))
                lines += [f"Body (`{media}`):", ""]
                if props:
                    lines += ["| field | type | required | |", "|---|---|---|---|"]
                    for name, prop in props.items():
                        lines.append(
                            f"| `{name}` | {_cell(_schema_type(prop, spec))} | {'yes' if name in required else ''} | "
                            f"{_cell(prop.get('description', ''))} |"
                        )
                lines.append("")
            responses = op.get("responses", {})
            if responses:
                lines += ["| status | media types | |", "|---|---|---|"]
                for status, answer in responses.items():
                    media = ", ".join(f"`{m}`" for m in answer.get("content", {}))
                    lines.append(f"| {status} | {media} | {_cell(answer.get('description', ''))} |")
                lines.append("")
    return "\n".join(lines) + "\n"


# --- commands --------------------------------------------------------------------------------------------------


def command_help(command: str) -> str:
    """``command --help`` as the command prints it, run in this process (argparse exits before any work)."""
    module, function = ARGPARSE_COMMANDS[command]
    entry = getattr(importlib.import_module(module), function)
    out = io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(io.StringIO()),
        contextlib.suppress(SystemExit),
    ):
        entry(["--help"])
    return re.sub(r"^usage: \S+", f"usage: {command}", out.getvalue().rstrip())


def _help_flags(command: str) -> set[str]:
    return set(_FLAG.findall(command_help(command)))


def command_flags() -> dict[str, set[str]]:
    """The flags each ``vessel-*`` command accepts: argparse commands by their help, Hydra commands Hydra's."""
    flags = {command: _help_flags(command) for command in ARGPARSE_COMMANDS}
    flags |= {command: set(HYDRA_FLAGS) for command in HYDRA_COMMANDS}
    return flags


def cli_markdown() -> str:
    """The command reference page."""
    lines = [
        "# Command reference",
        "",
        "Generated from the commands themselves (`--help`) when the site is built.",
        "",
        "## Hydra commands",
        "",
        "`vessel-train`, `vessel-eval` and `vessel-prepare` take Hydra overrides (`key=value`, `group=option`,",
        "`-m` for a sweep) on their root configs `conf/train.yaml`, `conf/eval.yaml` and `conf/prepare.yaml`: see",
        "the [configuration reference](configuration.md).",
        "",
    ]
    for command in ARGPARSE_COMMANDS:
        lines += [f"## `{command}`", "", "```text", command_help(command), "```", ""]
    return "\n".join(lines) + "\n"


# --- architecture ----------------------------------------------------------------------------------------------


def import_contracts_markdown(pyproject: Path = REPO / "pyproject.toml") -> str:
    """The import contracts ``lint-imports`` enforces, one list item each."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["importlinter"]
    lines = []
    for contract in config["contracts"]:
        kind = contract["type"]
        if kind == "layers":
            inside = f" inside `{', '.join(contract['containers'])}`" if "containers" in contract else ""
            detail = f"layers{inside}, top to bottom: " + " → ".join(f"`{x}`" for x in contract["layers"])
        elif kind == "forbidden":
            detail = (", ".join(f"`{x}`" for x in contract["source_modules"]) + " must not import "
                      + ", ".join(f"`{x}`" for x in contract["forbidden_modules"]))  # fmt: skip
        else:
            detail = f"{kind}: " + ", ".join(f"`{x}`" for x in contract.get("ancestors", []))
        lines.append(f"- **{contract['name']}** — {detail}")
    return "\n".join(lines) + "\n"


def generated_pages() -> dict[str, Any]:
    """The site's generated pages: path under docs/ → the function that writes it (``docs/hooks.py`` adds them)."""
    return {
        "reference/configuration.md": config_markdown,
        "reference/settings.md": settings_markdown,
        "reference/http-api.md": http_api_markdown,
        "reference/cli.md": cli_markdown,
        "results.md": lambda: (REPO / "experiments" / "RESULTS.md").read_text(encoding="utf-8"),
    }
