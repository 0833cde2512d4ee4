"""Which ledger a workspace uses: the SQLite file in its state folder, or PostgreSQL.

Every command opens its ledger and takes its lock here, so the choice is made once:
`state.url` in config.yaml (or OUTREACH_LEDGER_URL, which wins) names a PostgreSQL database;
without one the ledger is state/ledger.sqlite. Rehearsals (dry run, validate, plan, explain)
get the same SQL ledger on a private SQLite database seeded from the real one (`rehearsal`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from outreach.ledger import postgres, sqlite
from outreach.ledger.copy import copy_ledger
from outreach.ledger.postgres import AdvisoryLock
from outreach.ledger.sql import Seed, SqlLedger
from outreach.ledger.sqlite import WorkspaceLock

if TYPE_CHECKING:
    from outreach.model.config import Basics, Settings
    from outreach.shards import Shard

_T = TypeVar("_T")


class Ledger(SqlLedger):
    """The SQL ledger, with the ways to open it on each store."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        readonly: bool = False,
        memory_copy_limit: int = sqlite.MEMORY_COPY_LIMIT,
    ) -> Ledger:
        """Open (creating folders and schema) the ledger at `path`.

        `readonly`: a rehearsal's ledger instead, a private copy of the file (empty if there
        is none) in memory up to `memory_copy_limit` bytes, else in SQLite's private temporary
        file; what it records vanishes on close, and the workspace is never written.
        """
        if readonly:
            conn = sqlite.open_private_copy(path, memory_limit=memory_copy_limit)
            return cls(conn, dialect=sqlite.SqliteDialect(path, file=None))
        return cls(sqlite.open_ledger_file(path), dialect=sqlite.SqliteDialect(path, file=path))

    @classmethod
    def connect(cls, url: str, *, readonly: bool = False) -> Ledger:
        """Open (creating the schema) the ledger in the PostgreSQL database at `url`.

        `readonly`: a rehearsal's ledger instead, an in-memory SQLite holding a copy of every
        row; what it records vanishes on close, and the server is never written.
        """
        server = cls(postgres.open_server_ledger(url), dialect=postgres.PgDialect(url))
        if not readonly:
            return server
        with server, server.snapshot():
            return cls.seeded(server, Seed())

    @classmethod
    def seeded(cls, source: SqlLedger, seed: Seed) -> Ledger:
        """An in-memory ledger holding the rows of `source` that `seed` names."""
        rehearsal = cls.in_memory(where=source.path)
        if seed.remember:
            rehearsal.remember_answers()
        try:
            if seed == Seed():
                copy_ledger(source, rehearsal)  # all of it, ids and runs kept
            else:
                rehearsal.seed_from(source, seed)
        except BaseException:
            rehearsal.close()
            raise
        return rehearsal

    @classmethod
    def in_memory(cls, *, where: Path | str = ":memory:") -> Ledger:
        """An empty ledger in memory; `where` names it in errors."""
        conn = sqlite.open_memory(where=where)
        return cls(conn, dialect=sqlite.SqliteDialect(where, file=None))

    @classmethod
    def read(cls, path: Path, reader: Callable[[Ledger], _T]) -> _T:
        """What `reader` reads from the ledger at `path`, without copying it when it can.

        A plan or a report only reads, and copying a large ledger costs more than the reading:
        a quiet file is read in place (`sqlite.read_in_place`); a busy one, or one of another
        schema version, from a private copy.
        """
        dialect = sqlite.SqliteDialect(path, file=None)
        found = sqlite.read_in_place(path, lambda conn: reader(cls(conn, dialect=dialect)))
        if found:
            return found[0]
        with cls.open(path, readonly=True) as ledger:
            return reader(ledger)


def _url(settings: Basics) -> str | None:
    """The PostgreSQL URL the workspace names, checked (state.url is checked as it loads)."""
    url = settings.ledger_url
    if url is not None and url != settings.state.url:
        postgres.check_url(url, source="OUTREACH_LEDGER_URL")
    return url


def open_ledger(settings: Basics, *, readonly: bool = False, shard: Shard | None = None) -> Ledger:
    """The workspace's ledger; `shard` limits what its recovery and send step touch.

    `readonly`: a rehearsal's ledger, a private copy of all of it (a dry run).
    """
    url = _url(settings)
    ledger = (
        Ledger.connect(url, readonly=readonly)
        if url is not None
        else Ledger.open(settings.ledger_path, readonly=readonly)
    )
    ledger.shard = shard
    return ledger


def read_ledger(settings: Settings, reader: Callable[[Ledger], _T]) -> _T:
    """What `reader` reads from the workspace's ledger, which it never changes.

    The SQLite file is read in place when no run is writing it (`Ledger.read`), else from a
    copy; PostgreSQL is read on the server (a reader only runs SELECTs).
    """
    url = _url(settings)
    if url is None:
        return Ledger.read(settings.ledger_path, reader)
    with Ledger.connect(url) as ledger, ledger.snapshot():
        return reader(ledger)


def rehearsal(settings: Settings, seed: Seed) -> Ledger:
    """The ledger a rehearsal runs on: in memory, seeded with the rows `seed` names from the
    workspace's ledger (none when there is no ledger yet); nothing it records is kept."""
    if not ledger_exists(settings):
        return Ledger.in_memory(where=ledger_location(settings))
    return read_ledger(settings, lambda ledger: Ledger.seeded(ledger, seed))


def ledger_exists(settings: Settings) -> bool:
    """Whether there is a ledger to read (a server database always counts as one)."""
    return settings.ledger_url is not None or settings.ledger_path.exists()


def ledger_location(settings: Settings) -> str:
    """Where the ledger is, for messages: its file, or its URL without a password."""
    url = settings.ledger_url
    if url is None:
        return str(settings.ledger_path)
    return postgres.redact(url)


@contextmanager
def workspace_lock(
    settings: Settings, *, now: datetime, wait: bool = False, shard: Shard | None = None
) -> Iterator[WorkspaceLock | AdvisoryLock]:
    """Hold the workspace's lock (or its shard's) for the `with` block; LockError if taken."""
    url = _url(settings)
    lock: WorkspaceLock | AdvisoryLock
    if url is not None:
        lock = AdvisoryLock(url, scope=shard.label if shard is not None else "")
    else:
        # One machine, one file: the flock of the state folder, whatever the shard (shards of
        # a SQLite workspace take turns).
        lock = WorkspaceLock(settings.state_dir)
    lock.acquire(now=now, wait=wait)
    try:
        yield lock
    finally:
        lock.release()
