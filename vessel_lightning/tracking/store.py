"""Where MLflow keeps runs and models: the embedded SQLite store, or a server named by MLFLOW_TRACKING_URI.

The embedded default is ``<runs_dir>/mlflow/mlflow.db`` with artifacts in ``<runs_dir>/mlflow/artifacts``,
resolved to absolute paths, so every Hydra job (whatever its working directory), the evaluation, promotion and
serving commands all use the same store. mlflow itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import os
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
# The installed UI (3.17) opens an experiment on its GenAI overview unless the URL or this tag says otherwise.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"


def default_store_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """The absolute folder of the embedded store: ``<runs_dir>/mlflow`` (``$VESSEL_RUNS_DIR`` or ``runs``)."""
    runs = runs_dir if runs_dir is not None else os.environ.get("VESSEL_RUNS_DIR", "runs")
    return Path(runs).expanduser().resolve() / "mlflow"


def tracking_uri(runs_dir: str | os.PathLike | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the absolute SQLite URI of the embedded store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"{SQLITE_PREFIX}{default_store_dir(runs_dir) / 'mlflow.db'}"


def optuna_storage_uri(runs_dir: str | os.PathLike | None = None) -> str:
    """The SQLite URL of Optuna studies: ``optuna.db`` beside the embedded MLflow store (in ``<runs_dir>/mlflow``).

    Beside a SQLite MLflow store named by ``$MLFLOW_TRACKING_URI`` when there is one; under ``<runs_dir>/mlflow``
    when the MLflow store is a server.
    """
    database = sqlite_path(tracking_uri(runs_dir))
    folder = database.parent if database else default_store_dir(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{folder / 'optuna.db'}"


def runs_page_url(experiment_id: str, ui_url: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI page listing an experiment's training runs (not its GenAI overview).

    MLflow 3.17's UI picks "GenAI | Model training" from the ``workflowType`` URL parameter first, then the
    browser's last choice (local storage ``mlflow.workflowType``, default GenAI); the experiment tag is read only
    when that switch is absent, so the parameter is what reliably lands a user on the runs.
    """
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for any other store."""
    return Path(uri[len(SQLITE_PREFIX) :]) if uri.startswith(SQLITE_PREFIX) else None


def artifact_location(uri: str) -> str | None:
    """The artifact root for new experiments: ``artifacts/`` beside a SQLite file, None for a server.

    A SQLite store's own default (``./mlruns`` in the working directory) would scatter artifacts over job folders.
    """
    path = sqlite_path(uri)
    return (path.parent / "artifacts").as_uri() if path else None


def ensure_store(uri: str) -> None:
    """Create the tracking store (for SQLite its folder and tables) if it does not exist yet.

    Call it once before parallel jobs start: two processes creating a new SQLite store at once fail with
    'table already exists'. A new SQLite store keeps its artifacts in ``artifacts/`` beside the database.
    """
    path = sqlite_path(uri)
    if path:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        path.parent.mkdir(parents=True, exist_ok=True)
        # Creating it ourselves sets the artifact root of the "Default" experiment too (else ./mlruns in the cwd).
        SqlAlchemyStore(uri, artifact_location(uri))
    else:
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments(max_results=1)


def ensure_experiment(uri: str, name: str) -> str:
    """Return the id of experiment ``name``, creating it if needed; safe when parallel jobs race to create it.

    In a SQLite store the experiment's artifacts go to ``artifacts/<experiment id>/`` beside the database
    (a client's own default would be ``./mlruns`` in whatever the working directory is).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    last_error: Exception | None = None
    for _ in range(3):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            if sqlite_path(uri):
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                created = SqlAlchemyStore(uri, artifact_location(uri)).create_experiment(name)
            else:
                created = client.create_experiment(name)
            # A UI without the GenAI/training switch reads the kind from this tag.
            client.set_experiment_tag(created, EXPERIMENT_KIND_TAG, TRAINING_KIND)
            return created
        except Exception as err:  # another job created it between our lookup and create
            last_error = err
    raise RuntimeError(f"could not create or find MLflow experiment {name!r} in {uri}: {last_error}")
