"""``vessel-import-run``: log a training job that ran where no MLflow store was reachable into the store.

A job trained with ``logger=csv`` (a lent or air-gapped GPU machine, see ``experiments/gpu_sweep.sh``) leaves
in its output folder everything a tracked run holds: the resolved ``config.yaml``, the CSV logger's
``metrics.csv``, figures, and ``artifacts/network.pt`` with ``artifacts/contract.json``. This tool makes one
MLflow run of it: params and tags as ``vessel-train`` would set them, every metric with its step, the figures
and network file as artifacts, and the network as an MLflow model with its contract, so ``vessel-eval``,
``vessel-promote`` and the API take it like any other run.

    vessel-import-run runs/train/2026-11-28_00-10-00 --tag device="NVIDIA H100"
    vessel-import-run jobs/chase_gpu --register --alias champion
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vessel_lightning.config import DEFAULT_EXPERIMENT
from vessel_lightning.contract import CONTRACT_FILE, NETWORK_FILE
from vessel_lightning.tracking.registry import RegistryError
from vessel_lightning.tracking.train import RESOLVED_CONFIG


class ImportRunError(ValueError):
    """A job folder that cannot be imported; the message names the folder or file."""


@dataclass(frozen=True)
class JobFolder:
    """The files of one training job's output folder that an import reads."""

    root: Path
    config: Path
    metrics: list[Path]
    network: Path
    contract: Path
    figures: list[Path]

    @classmethod
    def find(cls, root: str | Path) -> JobFolder:
        """Locate the files under ``root``; raises :class:`ImportRunError` naming whatever is missing."""
        root = Path(root)
        if not root.is_dir():
            raise ImportRunError(f"{root}: no such job folder")
        required = {
            "config": root / RESOLVED_CONFIG,
            "network": root / "artifacts" / NETWORK_FILE,
            "contract": root / "artifacts" / CONTRACT_FILE,
        }
        missing = [str(path) for path in required.values() if not path.is_file()]
        if missing:
            raise ImportRunError(
                f"{root}: not a finished training job folder (missing {', '.join(missing)}); "
                "a job writes these when its training ends"
            )
        figures = sorted((root / "artifacts").rglob("*.png"))
        return cls(
            root=root,
            metrics=sorted(root.glob("csv/version_*/metrics.csv")),
            figures=figures,
            **required,
        )


def read_metrics(paths: Sequence[Path]) -> list[tuple[str, float, int]]:
    """Read Lightning ``CSVLogger`` files into ``(key, value, step)`` triples; empty cells are skipped."""
    out: list[tuple[str, float, int]] = []
    for path in paths:
        with path.open(newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    step = int(float(row.get("step") or 0))
                    for key, text in row.items():
                        if key in ("step", None) or text in ("", None):
                            continue
                        value = float(text)
                        if math.isfinite(value):
                            out.append((key, value, step))
                except ValueError as exc:
                    raise ImportRunError(f"{path}, line {line}: not a number ({exc})") from exc
    return out


def import_job(
    job_dir: str | Path,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Create one MLflow run from a job folder and return its run id (see the module docstring)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from omegaconf import DictConfig, OmegaConf

    from vessel_lightning.contract import ModelContract
    from vessel_lightning.models.networks import load_network
    from vessel_lightning.tracking import runs, store
    from vessel_lightning.tracking.model_logging import log_network_file
    from vessel_lightning.tracking.registry import connect
    from vessel_lightning.tracking.train import default_run_name, run_tags

    job = JobFolder.find(job_dir)
    cfg = OmegaConf.load(job.config)
    if not isinstance(cfg, DictConfig):
        raise ImportRunError(f"{job.config}: not a run config (a YAML mapping)")
    contract = ModelContract.read(job.contract)
    load_network(job.network)  # fails here, before a run exists, if the file is unreadable
    metrics = read_metrics(job.metrics)

    uri = tracking_uri or store.tracking_uri()
    store.ensure_store(uri)
    connect(uri)
    name = experiment or OmegaConf.select(cfg, "logger.mlflow.experiment_name", default=None)
    experiment_id = store.ensure_experiment(uri, str(name or DEFAULT_EXPERIMENT))
    run_tags_ = {**run_tags(cfg), "imported_from": job.root.name, **(tags or {})}
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=default_run_name(cfg), tags=run_tags_)
    run_id = run.info.run_id
    status = "FAILED"
    try:
        runs.log_params(client, run_id, runs.flatten_config(cfg))
        client.log_artifact(run_id, str(job.config), "config")
        timestamp = run.info.start_time
        batch = [Metric(key, value, timestamp, step) for key, value, step in metrics]
        for start in range(0, len(batch), 1000):
            client.log_batch(run_id, metrics=batch[start : start + 1000])
        for figure in job.figures:
            client.log_artifact(run_id, str(figure), "figures")
        client.log_artifact(run_id, str(job.network), "network")
        client.log_artifact(run_id, str(job.contract), "network")
        log_network_file(job.network, contract, run_id)
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    return run_id


def _parse_tags(values: Sequence[str]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise ImportRunError(f"--tag {value!r}: expected KEY=VALUE")
        tags[key] = text
    return tags


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vessel-import-run", description=__doc__.split("\n\n")[0])
    parser.add_argument("job_dirs", nargs="+", type=Path, help="training job output folders")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or runs/mlflow)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the job's logger.mlflow setting)")
    parser.add_argument("--tag", action="append", default=[], help="extra run tag KEY=VALUE (repeatable)")
    parser.add_argument("--register", action="store_true", help="register each imported model")
    parser.add_argument("--alias", help="with --register: move this alias to the new version")
    args = parser.parse_args(argv)
    try:
        tags = _parse_tags(args.tag)
        for job_dir in args.job_dirs:
            run_id = import_job(job_dir, args.tracking_uri, args.experiment, tags)
            print(f"{job_dir}: run {run_id} (model runs:/{run_id}/model)")
            if args.register:
                from vessel_lightning.tracking.registry import register

                version = register(run_id, alias=args.alias)
                print(f"  registered version {version}{f' ({args.alias})' if args.alias else ''}")
    except (ImportRunError, RegistryError, FileNotFoundError, ValueError) as exc:
        print(f"vessel-import-run: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
