"""``mlflow server`` in a child process on a loopback port, for tests of a shared tracking server.

with mlflow_server("postgresql+psycopg2://...", artifacts_dir, log_path) as uri:   # http://127.0.0.1:<port>
    ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.server import HOST, answers_ok, free_port


@contextmanager
def mlflow_server(
    backend_store_uri: str, artifacts_dir: Path, log_path: Path, ready_timeout_s: float = 180
) -> Iterator[str]:
    """Run ``mlflow server`` on 127.0.0.1 with this backend store and artifact folder (served through it); yield
    its URL once ``/health`` answers. The server runs in its own session (its workers survive a SIGTERM to the main
    process otherwise) and the whole group is stopped afterwards."""
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
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not answers_ok(port, "/health"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield f"http://{HOST}:{port}"
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
