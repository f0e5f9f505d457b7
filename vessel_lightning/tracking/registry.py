"""The MLflow model registry: connect to a store, register a run's model, move an alias.

Registering is opt-in for a training run (``register=true``) or done by ``vessel-promote``, so a 30-job sweep does
not make 30 versions. Aliases, not the deprecated stages.
"""

from __future__ import annotations

import os
from typing import Any

from vessel_lightning.config import DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from vessel_lightning.tracking import store

MODEL_URI_TAG = "vessel.model_uri"  # set on a training run once its model is logged


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message is one line for the terminal."""


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
