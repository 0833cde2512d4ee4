"""A real PostgreSQL server for the tests: initdb into a temporary folder, 127.0.0.1, a free port.

One server per test session (per xdist worker); each test gets a fresh database, copied from a
template that already has the ledger's schema (CREATE DATABASE ... TEMPLATE takes milliseconds).
initdb and postgres refuse to run as root: as root the server runs as the `postgres` user, in
a folder that user owns. Trust authentication, on 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

TEMPLATE = "outreach_template"


def _tool(name: str) -> str:
    # Debian keeps the server's programs per version (/usr/lib/postgresql/15/bin), off PATH.
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for folder in reversed(versions):
        if (folder / name).exists():
            return str(folder / name)
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (make system-deps)")
    return on_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """A throwaway PostgreSQL cluster; `start`, `stop`, `database()`, `remove()`."""

    def __init__(self, *, durable: bool = False) -> None:
        # durable: the server's own defaults (fsync, synchronous commits), for benchmarks.
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="outreach-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_root = os.getuid() == 0
        self._names = itertools.count(1)
        if self._as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)
        self._run(
            _tool("initdb"),
            *("-D", str(self.data), "-A", "trust", "-U", "postgres"),
            *("-E", "UTF8", "--locale=C", "--no-sync"),
        )

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)
        subprocess.run(command, check=True, capture_output=True, cwd=self.root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                # A test server: nothing here must survive a power cut.
                "" if self.durable else "-c fsync=off -c synchronous_commit=off",
                "" if self.durable else "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            _tool("pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, *, mode: str = "fast") -> None:
        # fast: the server ends every connection and stops (what "the database went away" is).
        self._run(_tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def prepare_template(self) -> None:
        """The template database every test's database is copied from, with the schema."""
        import psycopg

        from outreach.ledger import Ledger

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        Ledger.connect(self.url(TEMPLATE)).close()

    def database(self) -> str:
        """A fresh database with the ledger's schema; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def empty_database(self) -> str:
        """A fresh database without any table; its URL."""
        import psycopg

        name = f"e{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def remove(self) -> None:
        if self.running():
            self.stop(mode="immediate")  # its data goes next: no checkpoint to wait for
        shutil.rmtree(self.root, ignore_errors=True)
