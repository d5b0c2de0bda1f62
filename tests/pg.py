"""A throwaway PostgreSQL server for the test session: `initdb` + `pg_ctl` in a temporary directory.

Started once per session on a free local port, stopped and deleted at its end; each test gets a
database of its own (`pg_url`). initdb refuses to run as root, so under root the server runs as
the `postgres` user (Debian's package creates it) or `nobody`. When no server can be started at
all, the PostgreSQL tests are skipped with the reason, loudly; `make test` installs the server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class PostgresServer:
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _binaries() -> str | None:
    """The directory holding initdb and pg_ctl: $PG_BIN, the PATH, or Debian's versioned directory."""
    candidates = [os.environ.get("PG_BIN", "")]
    found = shutil.which("initdb")
    if found:
        candidates.append(os.path.dirname(found))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for directory in candidates:
        if (
            directory
            and os.path.exists(os.path.join(directory, "initdb"))
            and os.path.exists(os.path.join(directory, "pg_ctl"))
        ):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@dataclass
class _Running:
    server: PostgresServer
    bin_dir: str
    data: str
    as_user: list[str]

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(os.path.dirname(self.data), ignore_errors=True)


def start_server() -> tuple[_Running | None, str]:
    """Start a server, or (None, why not)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[dev]')"
    bin_dir = _binaries()
    if bin_dir is None:
        return None, "initdb/pg_ctl not found (Debian: apt-get install postgresql; or set PG_BIN)"
    root = tempfile.mkdtemp(prefix="incident-bot-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = _unprivileged_user()
        if user is None or shutil.which("runuser") is None:
            return None, "running as root with no unprivileged user (postgres/nobody) or runuser to run initdb as"
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", user.pw_name, "--"]
    data = os.path.join(root, "data")
    init = subprocess.run(
        [
            *as_user,
            os.path.join(bin_dir, "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode != 0:
        return None, f"initdb failed: {init.stderr.strip()[-500:]}"
    port = _free_port()
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        " -c full_page_writes=off -c max_connections=300"
    )
    start = subprocess.run(
        [
            *as_user,
            os.path.join(bin_dir, "pg_ctl"),
            "-D",
            data,
            "-o",
            options,
            "-l",
            os.path.join(root, "log"),
            "-w",
            "start",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if start.returncode != 0:
        log = ""
        if os.path.exists(os.path.join(root, "log")):
            with open(os.path.join(root, "log")) as f:
                log = f.read()[-500:]
        return None, f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log}"
    return _Running(PostgresServer(port), bin_dir, data, as_user), ""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    running, why = start_server()
    if running is None:
        # Loud on purpose: -ra prints the reason in the summary of every run.
        pytest.skip(f"NO POSTGRESQL SERVER, PostgreSQL tests skipped: {why}")
    try:
        yield running.server
    finally:
        running.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: str) -> str:
    """Where a store lives, once per backend: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return os.path.join(str(tmp_path), "incidents.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session's server, dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)
