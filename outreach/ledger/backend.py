"""Which ledger a workspace uses: the SQLite file in its state folder, or PostgreSQL.

Every command opens its ledger and takes its lock here, so the choice is made once:
`state.url` in config.yaml (or OUTREACH_LEDGER_URL, which wins) names a PostgreSQL database;
without one the ledger is state/ledger.sqlite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from outreach.ledger.sqlite import Ledger, WorkspaceLock

if TYPE_CHECKING:
    from outreach.ledger.postgres import AdvisoryLock
    from outreach.model.config import Settings
    from outreach.shards import Shard


def _url(settings: Settings) -> str | None:
    """The PostgreSQL URL the workspace names, checked (state.url is checked as it loads)."""
    url = settings.ledger_url
    if url is not None and url != settings.state.url:
        from outreach.ledger.postgres import check_url

        check_url(url, source="OUTREACH_LEDGER_URL")
    return url


def open_ledger(
    settings: Settings, *, readonly: bool = False, shard: Shard | None = None
) -> Ledger:
    """The workspace's ledger; `shard` limits what its recovery and send step touch."""
    url = _url(settings)
    ledger = (
        Ledger.connect(url, readonly=readonly)
        if url is not None
        else Ledger.open(settings.ledger_path, readonly=readonly)
    )
    ledger.shard = shard
    return ledger


_T = TypeVar("_T")


def read_ledger(settings: Settings, reader: Callable[[Ledger], _T]) -> _T:
    """What `reader` reads from the workspace's ledger, which it never changes.

    The SQLite file is read in place when no run is writing it (`Ledger.read`), else from a
    copy; PostgreSQL reads inside a transaction that is rolled back.
    """
    if _url(settings) is None:
        return Ledger.read(settings.ledger_path, reader)
    with open_ledger(settings, readonly=True) as ledger:
        return reader(ledger)


def ledger_exists(settings: Settings) -> bool:
    """Whether there is a ledger to read (a server database always counts as one)."""
    return settings.ledger_url is not None or settings.ledger_path.exists()


def ledger_location(settings: Settings) -> str:
    """Where the ledger is, for messages: its file, or its URL without a password."""
    url = settings.ledger_url
    if url is None:
        return str(settings.ledger_path)
    from outreach.ledger.postgres import redact

    return redact(url)


@contextmanager
def workspace_lock(
    settings: Settings, *, now: datetime, wait: bool = False, shard: Shard | None = None
) -> Iterator[WorkspaceLock | AdvisoryLock]:
    """Hold the workspace's lock (or its shard's) for the `with` block; LockError if taken."""
    url = _url(settings)
    lock: WorkspaceLock | AdvisoryLock
    if url is not None:
        from outreach.ledger.postgres import AdvisoryLock

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
