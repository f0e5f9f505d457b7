"""A throw-away PostgreSQL server for tests: Debian's ``postgresql`` binaries, a fresh data folder in a temporary
directory, listening on 127.0.0.1 only, stopped (and its folder removed) afterwards.

    from tests.helpers.postgres import postgres_server  # in a test module, as a fixture:

    @pytest.fixture(scope="module")
    def postgres():
        with postgres_server() as server:
            yield server

    server.create_database("optuna")
    server.url("optuna")          # postgresql+psycopg2://vessel@127.0.0.1:<port>/optuna  (SQLAlchemy, MLflow, Optuna)

Tests skip (with the command that installs it) where PostgreSQL or the psycopg2 driver is missing. As root the
server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.server import HOST, free_port

USER = "vessel"  # the database role the server is initialised with (trust authentication on loopback)
DRIVER = "psycopg2"  # the one driver the project pins (psycopg2-binary); a bare postgresql:// means psycopg 3


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them under its versioned lib folder)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


@dataclass(frozen=True)
class PostgresServer:
    """A running server: its port and the role tests connect as."""

    port: int
    user: str = USER

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` spelled for the pinned driver (what Optuna and MLflow take)."""
        return f"postgresql+{DRIVER}://{self.user}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create the database ``name``; return its URL."""
        import psycopg2

        connection = psycopg2.connect(host=HOST, port=self.port, user=self.user, dbname="postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


def _as_postgres(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    if os.geteuid() != 0:
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)
    account = pwd.getpwnam("postgres")

    def drop_root() -> None:
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)

    return subprocess.run(command, check=True, capture_output=True, text=True, preexec_fn=drop_root, **kwargs)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server with its data, socket and log in a new temporary folder; yield it; stop it and
    remove the folder afterwards. Skips the test when the binaries or the psycopg2 driver are not installed.

    The folder is made here, not under pytest's ``tmp_path`` (private to root, so the ``postgres`` user could not
    enter it).
    """
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip(
        "psycopg2", reason="the PostgreSQL driver is not installed (pip install psycopg2-binary)"
    )
    folder = Path(tempfile.mkdtemp(prefix="vessel-postgres-"))
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        for path in (folder, data):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = free_port()
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        _as_postgres([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", USER])
        options = f"-p {port} -k {folder} -c listen_addresses={HOST} -c fsync=off"
        try:
            _as_postgres([*pg_ctl, "-o", options, "-l", str(folder / "server.log"), "-w", "start"])
        except subprocess.CalledProcessError as err:
            log = folder / "server.log"
            raise RuntimeError(
                f"PostgreSQL did not start: {err.stderr}\n{log.read_text()[-2000:] if log.exists() else ''}"
            ) from err
        started = True
        yield PostgresServer(port)
    finally:
        if started:
            _as_postgres([*pg_ctl, "-m", "fast", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)
