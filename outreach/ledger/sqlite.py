"""The ledger in a SQLite file: its dialect, opening the file (or a copy of it), and the flock.

state/ledger.sqlite is the embedded store; the SQL that reads and writes it is
outreach.ledger.sql's. A rehearsal (dry run, validate, plan, explain) runs that same SQL on a
private SQLite database seeded from the real ledger: in memory, or SQLite's private temporary
file for a large one, so nothing it records reaches the workspace.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from outreach.i18n import N_, _
from outreach.ledger.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from outreach.ledger.sql import insert_statement
from outreach.model.errors import LedgerError, LockError

LOCK_NAME = "run.lock"
# hook: what moving a damaged ledger aside does, and the way that does not redo anything
LEDGER_DAMAGED_HINT = N_(
    "if the file is damaged, `outreach ledger rebuild` moves it aside and records again what "
    "out/ holds; moving it aside by hand starts an empty ledger, and the next run would make "
    "(and with SMTP send) every message in its window again"
)
_HINT_NEWER = N_(
    "this ledger was written by a newer version of outreach; upgrade outreach "
    "(pip install -U outreach) before running against this workspace"
)

_DISK_HINT = N_("check that the disk has room and the state folder is writable")
# A ledger up to this size is copied into memory for a rehearsal; a larger one into a private
# temporary file, so a dry run on a ledger of millions of rows does not hold it in RAM.
MEMORY_COPY_LIMIT = 32 * 1024 * 1024
_T = TypeVar("_T")


class SqliteDialect:
    """SQLite's side of the SQL ledger: a file in the state folder, or a private copy."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    # IMMEDIATE takes the write lock at once: two writers never deadlock upgrading a read.
    begin = "BEGIN IMMEDIATE"
    snapshot = "BEGIN"  # deferred: the first read fixes what the others see

    def __init__(self, where: Path | str, *, file: Path | None) -> None:
        self.where = where
        self.file = file  # None: a private copy, which no other connection can reach

    def write_hint(self, exc: Exception) -> str | None:
        """The disk or the folder's rights: what stops SQLite writing a file."""
        return _(_DISK_HINT)

    def read_hint(self, exc: Exception) -> str | None:
        """None: a failed read of a local file says what it is by itself."""
        return None

    def reopen(self) -> sqlite3.Connection | None:
        """The file again, for a forked worker; None for a private copy."""
        if self.file is None:
            return None
        try:
            return open_file(self.file)
        except sqlite3.Error as exc:
            raise LedgerError(
                _("cannot open the ledger: {error}").format(error=exc),
                path=self.where,
                hint=_(LEDGER_DAMAGED_HINT),
            ) from exc

    def close(self, conn: sqlite3.Connection) -> None:
        """Close, first refreshing the query planner's statistics of a file (cheap)."""
        if self.file is not None:
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
        conn.close()

    def insert_rows(
        self,
        conn: sqlite3.Connection,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> None:
        """Insert rows, keeping those the table already has."""
        conn.executemany(insert_statement(table, columns), [tuple(row) for row in rows])

    def after_copy(self, conn: sqlite3.Connection) -> None:
        """Nothing: SQLite continues its ids after the largest there."""


def apply_migrations(
    conn: sqlite3.Connection,
    *,
    path: Path | str,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Bring the schema up to date in one transaction; return its version."""
    try:
        # IMMEDIATE: two processes opening a fresh ledger at once cannot both migrate it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(migrations):
                raise LedgerError(
                    _(
                        "the ledger has schema version {version}, this outreach knows up to {known}"
                    ).format(version=version, known=len(migrations)),
                    path=path,
                    hint=_(_HINT_NEWER),
                )
            if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise LedgerError(
                    _("this SQLite file is not an outreach ledger"),
                    path=path,
                    hint=_("point paths.state in config.yaml at a folder of its own"),
                )
            for migrate in migrations[version:]:
                migrate(conn)
            # user_version lives in the file header and is part of the transaction.
            conn.execute(f"PRAGMA user_version = {len(migrations)}")
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (e.g. on a full disk).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise LedgerError(
            _("cannot prepare the ledger: {error}").format(error=exc),
            path=path,
            hint=_(LEDGER_DAMAGED_HINT),
        ) from exc
    return len(migrations)


def _prepared(conn: sqlite3.Connection, *, where: Path | str) -> sqlite3.Connection:
    """The connection with its schema brought up to date (closed if that fails)."""
    try:
        apply_migrations(conn, path=where)
    except BaseException:
        conn.close()
        raise
    return conn


def open_ledger_file(path: Path) -> sqlite3.Connection:
    """A connection to the ledger file at `path` (folders and schema created as needed)."""
    try:
        conn = open_file(path)
    except sqlite3.Error as exc:
        raise LedgerError(
            _("cannot open the ledger: {error}").format(error=exc),
            path=path,
            hint=_(LEDGER_DAMAGED_HINT),
        ) from exc
    return _prepared(conn, where=path)


def open_private_copy(path: Path, *, memory_limit: int = MEMORY_COPY_LIMIT) -> sqlite3.Connection:
    """A private, writable copy of the ledger at `path` (empty if there is none) that vanishes
    on close: in memory up to `memory_limit` bytes, else in SQLite's private temporary file."""
    try:
        conn = _open_copy(path, memory_limit=memory_limit)
    except sqlite3.Error as exc:
        raise LedgerError(
            _("cannot open the ledger: {error}").format(error=exc),
            path=path,
            hint=_(LEDGER_DAMAGED_HINT),
        ) from exc
    return _prepared(conn, where=path)


def open_memory(*, where: Path | str) -> sqlite3.Connection:
    """An empty ledger in memory (a rehearsal seeds it); `where` names it in errors."""
    return _prepared(sqlite3.connect(":memory:", isolation_level=None), where=where)


def read_in_place(path: Path, reader: Callable[[sqlite3.Connection], _T]) -> list[_T]:
    """[what `reader` reads from the file itself], or [] when that cannot be trusted.

    A quiet ledger file (no run writing it: no -wal) is read in place, immutable, and the read
    is kept only if the file did not change meanwhile; a busy one, or one whose schema is not
    this version's, is left to be read from a copy.
    """
    wal = path.with_name(path.name + "-wal")
    if not path.exists() or wal.exists():
        return []
    before = path.stat()
    found: list[_T] = []
    with suppress(sqlite3.Error):
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None
        )
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                found.append(reader(conn))
        finally:
            conn.close()
    if found and not wal.exists() and _same_file(before, path.stat()):
        return found
    return []


def open_file(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Transactions are explicit (BEGIN IMMEDIATE ... COMMIT); the timeout lets a short writer
    # such as `outreach unsubscribe` wait for a run's transaction instead of failing.
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL syncs at checkpoints only: a power cut may lose the last commits
        # but never corrupts the file, and each commit stops costing an fsync.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -32000")  # 32 MB: index inserts stay in memory
    except BaseException:
        conn.close()
        raise
    return conn


def _open_copy(path: Path, *, memory_limit: int) -> sqlite3.Connection:
    """A private, writable copy of the ledger that vanishes on close."""
    large = path.exists() and path.stat().st_size > memory_limit
    # "" is SQLite's private temporary database: a file it deletes as soon as it opens it, so
    # a large copy costs disk, not memory, and nothing is left behind even by `kill -9`.
    copy = sqlite3.connect("" if large else ":memory:", isolation_level=None)
    if not path.exists():
        return copy
    try:
        _copy_into(path, copy)
    except BaseException:
        copy.close()
        raise
    return copy


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size)


def _copy_into(path: Path, memory: sqlite3.Connection) -> None:
    wal = path.with_name(path.name + "-wal")
    uri = path.resolve().as_uri()  # percent-encodes '?', '#' and '%' in folder names
    before = path.stat()
    if not wal.exists():
        # No WAL: the main file holds every commit. `immutable` reads it without creating the
        # -wal/-shm files that a plain read-only connection to a WAL database leaves behind.
        source = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
        try:
            source.backup(memory)
        finally:
            source.close()
        if _same_file(before, path.stat()) and not wal.exists():
            return
        # A writer started meanwhile: read again, this time through SQLite's locking.
    source = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
    try:
        source.backup(memory)
    finally:
        source.close()


# ---------------------------------------------------------------------------------------------
# The workspace lock


class WorkspaceLock:
    """An exclusive lock on a workspace (state/run.lock), so two runs never act at once.

    flock(2) belongs to the open file, and the kernel drops it when the holder dies, however
    it dies: a lock file left by a killed run is simply taken over. The file itself is kept
    (unlinking it would let a third process lock a new file while a second holds the old one).
    The ledger file is not the lock: readers such as `history` must not be shut out.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, *, now: datetime, wait: bool = False) -> None:
        """Take the lock, or wait for it, or raise LockError naming the holder."""
        if self._fd is not None:
            raise LockError(_("the workspace lock is already held by this run"), path=self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # os.open's descriptors are not inherited by child processes, so a program the run
            # starts cannot keep the lock alive after the run ends.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(
                _("cannot open the lock file: {error}").format(error=exc.strerror),
                path=self.path,
                hint=_("check that the state folder is writable"),
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise LockError(
                        _describe_holder(fd),
                        path=self.path,
                        hint=_(
                            "wait for that run to finish and try again; the lock is released by "
                            "itself when its process ends, even if it is killed"
                        ),
                    ) from None
                fcntl.flock(fd, fcntl.LOCK_EX)
            holder = {"pid": os.getpid(), "since": now.isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (idempotent); the file stays."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale pid for a curious reader
        finally:
            os.close(fd)  # closing the last descriptor releases the flock


def _describe_holder(fd: int) -> str:
    # The holder writes its details right after it takes the lock: a run that lost the race by
    # a hair may look before they are there, so it looks again for a moment.
    for _attempt in range(50):
        try:
            holder = json.loads(os.pread(fd, 4096, 0))
            since = datetime.fromisoformat(holder["since"]).strftime("%Y-%m-%d %H:%M:%S")
            return _("another run is in progress (pid {pid}, since {since})").format(
                pid=int(holder["pid"]), since=since
            )
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.02)
    return _("another run is in progress")


@contextmanager
def acquire_lock(state_dir: Path, *, now: datetime, wait: bool = False) -> Iterator[WorkspaceLock]:
    """Hold the workspace lock for the `with` block; LockError if another run holds it."""
    lock = WorkspaceLock(state_dir)
    lock.acquire(now=now, wait=wait)
    try:
        yield lock
    finally:
        lock.release()
