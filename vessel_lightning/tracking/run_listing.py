"""Listing an experiment's runs and picking the best by a metric under constraints (``vessel-runs``,
``vessel-promote``)."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vessel_lightning.tracking.registry import MODEL_URI_TAG, RegistryError

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
