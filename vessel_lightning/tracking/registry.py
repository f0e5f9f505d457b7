"""MLflow model registry: log a network with its contract, register it, move the champion alias, list runs.

Command-line tools:

* ``vessel-promote --experiment <name> --best-by val/f1`` registers the best run's model and moves ``champion``;
  ``--where "cost/cpu_ms<150"`` keeps only runs meeting a constraint; ``--sweep <id>`` only one sweep's runs;
  ``vessel-promote --version 3`` moves ``champion`` to an existing version.
* ``vessel-runs --experiment <name>`` prints the runs sorted by a metric; ``--sweep <id>`` a sweep's comparison
  table (swept parameters, accuracy, serving cost), the one logged on its parent run.

Registering is opt-in for a training run (``register=true``) or done here, so a 30-job sweep does not make 30
versions. Aliases, not the deprecated stages.
"""

from __future__ import annotations

import argparse
import operator
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vessel_lightning.config import DEFAULT_ALIAS, DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME
from vessel_lightning.contract import CONTRACT_FILE, CONTRACT_KEY, ModelContract
from vessel_lightning.tracking import store
from vessel_lightning.tracking.models import BUNDLE_CONFIG, BUNDLE_FORMAT, BUNDLE_WEIGHTS, FORMAT_KEY

MODEL_ARTIFACT = "model"
MODEL_URI_TAG = "vessel.model_uri"  # set on a training run once its model is logged
PYFUNC_MODULE = "vessel_lightning.inference.pyfunc_model"  # the file MLflow runs to load a registered model
# A training run's exported network (weights + config): what vessel-relog reads.
NETWORK_ARTIFACT = "network/network.pt"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message is one line for the terminal."""


_COMPARISONS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(<=|>=|==|<|>)\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric op value`` (``cost/cpu_ms<150``): a run qualifies when it logged ``metric`` and meets it."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse ``<metric><op><number>`` with op one of ``< <= > >= ==``; RegistryError when malformed."""
        match = _CONSTRAINT.match(text)
        if match is None:
            raise RegistryError(f"--where {text!r}: expected <metric><op><number>, e.g. 'cost/cpu_ms<150'")
        return cls(match.group(1), match.group(2), float(match.group(3)))

    def holds(self, metrics: dict[str, float]) -> bool:
        return self.metric in metrics and _COMPARISONS[self.op](metrics[self.metric], self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in (
        "torch",
        "segmentation-models-pytorch",
        "timm",
        "safetensors",
        "mlflow",
        "vessel-lightning",
    ):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def pyfunc_code_path() -> str:
    """The file MLflow runs to load a registered model (``vessel_lightning/inference/pyfunc_model.py``).

    Named, not imported: the serving code sits in the inference stage above this one.
    """
    import importlib.util

    spec = importlib.util.find_spec(PYFUNC_MODULE)
    if spec is None or spec.origin is None:
        raise RegistryError(f"{PYFUNC_MODULE} is not installed")
    return spec.origin


def log_network_file(
    network_file: str | os.PathLike, contract: ModelContract, run_id: str, name: str = MODEL_ARTIFACT
) -> str:
    """:func:`log_network` of a network file (``save_network``'s ``network.pt``: weights and config)."""
    import torch

    bundle = torch.load(network_file, map_location="cpu", weights_only=True)
    if not isinstance(bundle, dict) or "config" not in bundle or "state_dict" not in bundle:
        raise RegistryError(f"{network_file}: not a network file written by save_network")
    return log_network(bundle["state_dict"], bundle["config"], contract, run_id, name)


def log_network(
    network: Any, config: Mapping[str, Any], contract: ModelContract, run_id: str, name: str = MODEL_ARTIFACT
) -> str:
    """Log a network (an ``nn.Module`` or its state dict) built by ``build_network(**config)`` to run ``run_id``
    as a bundle-format MLflow model.

    The model's files are the weights as a state dict (``weights.safetensors``), the network's plain
    ``build_network`` config (``network.json``) and the contract (``contract.json``, also the model's metadata):
    loading builds the network from the config, so no class import path is stored. It is an MLflow pyfunc model
    ("models from code", :func:`pyfunc_code_path`) predicting vessel probabilities of an RGB array. Tags the run
    with the model URI; returns that URI (``models:/m-…``).
    """
    import json
    import tempfile
    from pathlib import Path

    import mlflow
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec
    from safetensors.torch import save_file

    from vessel_lightning.models.networks import plain_config

    state_dict = network.state_dict() if hasattr(network, "state_dict") else network
    # Outputs only: inputs stay free so a photo may come as uint8 or as floats (the model converts both).
    signature = ModelSignature(
        inputs=None, params=ParamSchema([ParamSpec("output", "string", "probability")])
    )
    active = mlflow.active_run()
    context = mlflow.start_run(run_id=run_id) if active is None or active.info.run_id != run_id else None
    with tempfile.TemporaryDirectory(prefix="vessel-bundle-") as tmp:
        files = {
            "weights": Path(tmp) / BUNDLE_WEIGHTS,
            "network_config": Path(tmp) / BUNDLE_CONFIG,
            "contract": Path(tmp) / CONTRACT_FILE,
        }
        # safetensors refuses tensors sharing memory: each one is saved as its own copy.
        state = {k: v.detach().cpu().clone().contiguous() for k, v in state_dict.items()}
        save_file(state, str(files["weights"]), metadata={"format": BUNDLE_FORMAT})
        files["network_config"].write_text(json.dumps(plain_config(config), indent=2))
        files["contract"].write_text(json.dumps(contract.to_dict(), indent=2))
        try:
            if context is not None:
                context.__enter__()
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=pyfunc_code_path(),
                artifacts={key: str(path) for key, path in files.items()},
                pip_requirements=_requirements(),
                signature=signature,
                metadata={CONTRACT_KEY: contract.to_dict(), FORMAT_KEY: BUNDLE_FORMAT},
            )
            mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
        finally:
            if context is not None:
                context.__exit__(None, None, None)
    return info.model_uri


def register(run_id: str, name: str = DEFAULT_MODEL_NAME, alias: str | None = None) -> str:
    """Register the model logged by run ``run_id`` under ``name`` (reusing a version made from the same run).

    Moves ``alias`` to it when given. Returns the version number as a string.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    model_uri = run.data.tags.get(MODEL_URI_TAG)
    if not model_uri:
        raise RegistryError(f"run {run_id} has no logged model (tag {MODEL_URI_TAG} missing)")
    # A version of this run's current model is reused; a re-logged model (vessel-relog) gets a new version.
    existing = [v for v in _versions(client, name) if v.run_id == run_id and v.source == model_uri]
    if existing:
        version = str(max(int(v.version) for v in existing))
    else:
        import mlflow

        version = str(mlflow.register_model(model_uri, name, tags={"source_run": run_id}).version)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version


def _versions(client: Any, name: str) -> list[Any]:
    from mlflow.exceptions import MlflowException

    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        return []


def set_alias(version: str | int, name: str = DEFAULT_MODEL_NAME, alias: str = DEFAULT_ALIAS) -> None:
    """Point ``alias`` at an existing ``version``; raises :class:`RegistryError` if it does not exist."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model {name!r} has no version {version}") from exc
    client.set_registered_model_alias(name, alias, str(version))


@dataclass(frozen=True)
class RunRow:
    """One training run as listed by ``vessel-runs`` and ranked by ``vessel-promote``."""

    run_id: str
    name: str
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def has_model(self) -> bool:
        return MODEL_URI_TAG in self.tags


def _experiment_id(client: Any, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise RegistryError(f"no experiment named {experiment!r} (experiments: {names})")
    return found.experiment_id


def sweep_parent(experiment: str, sweep: str) -> str:
    """The parent run id of a sweep named by its ``sweep_id`` tag or its parent run id (a unique prefix of either
    will do); RegistryError when none or several match."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    parents = client.search_runs(
        [_experiment_id(client, experiment)], filter_string="tags.sweep_role = 'parent'", max_results=5000
    )
    found = [
        r
        for r in parents
        if r.info.run_id.startswith(sweep) or r.data.tags.get("sweep_id", "").startswith(sweep)
    ]
    if len(found) != 1:
        known = ", ".join(r.data.tags.get("sweep_id", "?") for r in parents[:10]) or "none"
        what = "no sweep" if not found else f"{len(found)} sweeps"
        raise RegistryError(f"{what} matching {sweep!r} in {experiment!r} (sweeps: {known})")
    return found[0].info.run_id


def list_runs(
    experiment: str, metric: str, descending: bool = True, limit: int = 1000, sweep: str | None = None
) -> list[RunRow]:
    """Runs of ``experiment`` (of one sweep with ``sweep``: its id or parent run id) ordered by ``metric`` (runs
    without it last); raises RegistryError if the experiment or sweep is unknown."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment_id = _experiment_id(client, experiment)
    where = f"tags.`mlflow.parentRunId` = '{sweep_parent(experiment, sweep)}'" if sweep else ""
    runs = client.search_runs(
        [experiment_id],
        filter_string=where,
        order_by=[f"metrics.`{metric}` {'DESC' if descending else 'ASC'}"],
        max_results=limit,
    )
    return [
        RunRow(r.info.run_id, r.info.run_name or "", r.info.status, dict(r.data.metrics), dict(r.data.tags))
        for r in runs
    ]


def best_run(
    experiment: str,
    metric: str,
    descending: bool = True,
    where: Sequence[Constraint] = (),
    sweep: str | None = None,
) -> RunRow:
    """The finished run with a logged model and the best ``metric`` among those meeting every ``where``
    constraint (of one sweep with ``sweep``); RegistryError when there is none."""
    candidates = [
        r
        for r in list_runs(experiment, metric, descending, sweep=sweep)
        if r.has_model and metric in r.metrics and r.status == "FINISHED"
    ]
    if not candidates:
        raise RegistryError(f"no finished run with a logged model and metric {metric!r} in {experiment!r}")
    meeting = [r for r in candidates if all(c.holds(r.metrics) for c in where)]
    if not meeting:
        said = " and ".join(str(c) for c in where)
        raise RegistryError(
            f"none of the {len(candidates)} runs with a model meets {said} (a run lacking the metric does not)"
        )
    return meeting[0]


def connect(tracking_uri: str | None = None) -> str:
    """Point MLflow at ``tracking_uri`` and fail fast if it is absent.

    Default: ``$MLFLOW_TRACKING_URI`` or the embedded store. A missing SQLite file is an error (MLflow would silently create an empty store); a server gets one retry
    and a 10 s timeout instead of MLflow's minutes of back-off. Returns the URI.
    """
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    uri = tracking_uri or store.tracking_uri()
    database = store.sqlite_path(uri)
    if database and not database.is_file():
        raise RegistryError(f"no tracking store at {uri} (train a model first, or set MLFLOW_TRACKING_URI)")
    mlflow.set_tracking_uri(uri)
    return uri


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def promote_main(argv: Sequence[str] | None = None) -> int:
    """``vessel-promote``: register the best run's model (or a chosen run's) and move the alias, or move the alias
    to a version."""
    parser = argparse.ArgumentParser(prog="vessel-promote", description=promote_main.__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="MLflow experiment whose best run is promoted")
    which.add_argument("--version", help="move the alias to this existing version")
    which.add_argument("--run-id", help="register this run's model (once) and move the alias to it")
    parser.add_argument(
        "--best-by", default="val/f1_best", help="metric to rank runs by (default val/f1_best)"
    )
    parser.add_argument("--lowest", action="store_true", help="lower is better (e.g. a loss)")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="METRIC<OP>NUMBER",
        help="only runs meeting it, e.g. 'cost/cpu_ms<150' (ops < <= > >= ==; repeatable, all must hold)",
    )
    parser.add_argument("--sweep", help="only the runs of this sweep (its sweep_id or parent run id)")
    parser.add_argument(
        "--name", default=DEFAULT_MODEL_NAME, help=f"registered model name ({DEFAULT_MODEL_NAME})"
    )
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help=f"alias to move ({DEFAULT_ALIAS})")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException

    try:
        connect(args.tracking_uri)
        if args.version:
            set_alias(args.version, args.name, args.alias)
            print(f"{args.name}@{args.alias} → version {args.version}")
            return 0
        if args.run_id:
            version = register(args.run_id, args.name, args.alias)
            print(f"{args.name} version {version} from run {args.run_id}; {args.alias} → version {version}")
            return 0
        where = [Constraint.parse(text) for text in args.where]
        row = best_run(args.experiment, args.best_by, not args.lowest, where, args.sweep)
        version = register(row.run_id, args.name, args.alias)
        met = "".join(f", {c.metric}={row.metrics[c.metric]:g}" for c in where)
        print(
            f"{args.name} version {version} from run {row.run_id} ({row.name}, {args.best_by}="
            f"{row.metrics[args.best_by]:.4f}{met}); {args.alias} → version {version}"
        )
        return 0
    except (RegistryError, MlflowException) as exc:
        return _fail(str(exc).splitlines()[0])


def runs_main(argv: Sequence[str] | None = None) -> int:
    """``vessel-runs``: a terminal table of an experiment's runs, best first."""
    parser = argparse.ArgumentParser(prog="vessel-runs", description=runs_main.__doc__)
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}")
    parser.add_argument("--sort", default="val/f1_best", help="metric to sort by (default val/f1_best)")
    parser.add_argument(
        "--metrics", default="val/f1_best,val/iou,test/f1,test/iou", help="comma-separated columns"
    )
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument(
        "--sweep",
        help="a sweep's comparison table (its sweep_id or parent run id): parameters, accuracy, cost",
    )
    parser.add_argument("--tracking-uri")
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException
    from rich.console import Console
    from rich.table import Table

    try:
        uri = connect(args.tracking_uri)
        if args.sweep:
            return _print_sweep(args.experiment, args.sweep, args.sort)
        rows = list_runs(args.experiment, args.sort, limit=args.limit)
    except (RegistryError, MlflowException) as exc:
        return _fail(str(exc).splitlines()[0])
    columns = [m for m in args.metrics.split(",") if m]
    table = Table(title=f"{args.experiment} — sorted by {args.sort} ({uri})")
    for header in ("run id", "name", "status", "encoder", *columns, "model"):
        table.add_column(header, justify="right" if header in columns else "left")
    for row in rows:
        values = [f"{row.metrics[m]:.4f}" if m in row.metrics else "—" for m in columns]
        encoder = row.tags.get("encoder", "")
        table.add_row(row.run_id[:12], row.name, row.status, encoder, *values, "yes" if row.has_model else "")
    Console().print(table)
    return 0


def _print_sweep(experiment: str, sweep: str, metric: str) -> int:
    """Print a sweep's comparison table (the one ``summary.md`` on its parent run holds) with rich."""
    from mlflow.tracking import MlflowClient
    from rich.console import Console
    from rich.table import Table

    from vessel_lightning.tracking.sweep_summary import child_runs, format_cell, sweep_table

    client = MlflowClient()
    parent = client.get_run(sweep_parent(experiment, sweep))
    table = sweep_table(child_runs(client, parent.info.run_id), metric)
    title = f"sweep {parent.data.tags.get('sweep_id', '')} ({parent.data.tags.get('sweep_kind', '')}), parent run {parent.info.run_id}"
    out = Table(title=title)
    for column in table.columns:
        out.add_column(column, justify="right" if column in table.metrics else "left")
    for row in table.rows:
        out.add_row(*(format_cell(row[c]) for c in table.columns))
    Console(width=200).print(out)
    return 0


def relog(model_uri: str) -> tuple[str, str]:
    """Re-log a model logged before the bundle format (a pickled module) as a bundle, in the run that logged it.

    Takes ``models:/name@alias``, ``models:/name/version`` or ``runs:/<id>/model``. The weights and config come
    from the run's ``network/network.pt`` (every vessel-train and vessel-import-run run has it), the contract from
    the model. Moves the run's model tag to the new model; returns ``(run id, new model URI)``. RegistryError when
    the model is a bundle already or its run has no network file.
    """
    import tempfile

    import mlflow
    import mlflow.artifacts
    import mlflow.models
    from mlflow.exceptions import MlflowException

    from vessel_lightning.tracking.models import is_bundle, require_contract

    info = mlflow.models.get_model_info(model_uri)
    if is_bundle(info.flavors):
        raise RegistryError(f"{model_uri} is a bundle-format model already: nothing to re-log")
    contract = require_contract(info.metadata, model_uri)
    if not info.run_id:
        raise RegistryError(f"{model_uri} names no run to re-log it in")
    with tempfile.TemporaryDirectory(prefix="vessel-relog-") as tmp:
        try:
            network_file = mlflow.artifacts.download_artifacts(
                run_id=info.run_id, artifact_path=NETWORK_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise RegistryError(
                f"run {info.run_id} of {model_uri} has no {NETWORK_ARTIFACT} to re-log ({str(exc).splitlines()[0]})"
            ) from exc
        return info.run_id, log_network_file(network_file, contract, info.run_id)


def relog_main(argv: Sequence[str] | None = None) -> int:
    """``vessel-relog``: re-log a model registered before the bundle format as a bundle (weights, config, contract),
    register the new model as a version and move an alias to it."""
    from mlflow.exceptions import MlflowException

    from vessel_lightning.tracking.models import parse_registry_uri

    parser = argparse.ArgumentParser(prog="vessel-relog", description=relog_main.__doc__)
    parser.add_argument("model_uri", help="models:/name@alias, models:/name/version or runs:/<id>/model")
    parser.add_argument("--name", help="register the new model under this name (default: the URI's name)")
    parser.add_argument("--alias", help="move this alias to the new version (e.g. champion)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    args = parser.parse_args(argv)
    name = args.name or (parse_registry_uri(args.model_uri) or (None,))[0]
    if args.alias and not name:
        return _fail("--alias needs a registered model name: give --name")
    try:
        connect(args.tracking_uri)
        run_id, new_uri = relog(args.model_uri)
        print(f"{args.model_uri}: re-logged in run {run_id} as {new_uri}")
        if name:
            version = register(run_id, name, args.alias)
            moved = f"; {args.alias} → version {version}" if args.alias else ""
            print(f"{name} version {version} from run {run_id}{moved}")
        return 0
    except (RegistryError, MlflowException) as exc:
        return _fail(str(exc).splitlines()[0])
