"""``mlflow server`` in a child process on a loopback port, for tests of a shared tracking server.

with mlflow_server("postgresql+psycopg2://...", artifacts_dir, log_path) as uri:   # http://127.0.0.1:<port>
    ...
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.server import HOST, answers_ok, child_server, free_port


@contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifacts_dir: Path,
    log_path: Path,
    ready_timeout_s: float = 180,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run ``mlflow server`` on 127.0.0.1 with this backend store and artifact folder (served through it); yield
    its URL once ``/health`` answers (:func:`~tests.helpers.server.child_server`: its own session, the whole
    group stopped afterwards). ``cwd``: where it runs (a store with relative artifact paths)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with child_server(
        command,
        log_path,
        lambda: answers_ok(port, "/health"),
        ready_timeout_s,
        name="mlflow server",
        env=env,
        cwd=cwd,
        poll_s=0.5,
    ):
        yield f"http://{HOST}:{port}"
