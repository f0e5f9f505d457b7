"""The registry's command-line tools.

* ``vessel-promote --experiment <name> --best-by val/f1`` registers the best run's model and moves ``champion``;
  ``--where "cost/cpu_ms<150"`` keeps only runs meeting a constraint; ``--sweep <id>`` only one sweep's runs;
  ``vessel-promote --version 3`` moves ``champion`` to an existing version.
* ``vessel-runs --experiment <name>`` prints the runs sorted by a metric; ``--sweep <id>`` a sweep's comparison
  table (swept parameters, accuracy, serving cost), the one logged on its parent run.
* ``vessel-relog <model uri>`` re-logs a model registered before the bundle format as a bundle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vessel_lightning.config import DEFAULT_ALIAS, DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME
from vessel_lightning.tracking.model_logging import relog
from vessel_lightning.tracking.registry import RegistryError, connect, register, set_alias
from vessel_lightning.tracking.run_listing import Constraint, best_run, list_runs, sweep_parent


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


def relog_main(argv: Sequence[str] | None = None) -> int:
    """``vessel-relog``: re-log a model registered before the bundle format as a bundle (weights, config, contract),
    register the new model as a version and move an alias to it."""
    from mlflow.exceptions import MlflowException

    from vessel_lightning.tracking.bundle import parse_registry_uri

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
