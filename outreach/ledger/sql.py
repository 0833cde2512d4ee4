"""The one SQL ledger: its statements and the class that runs them, over a small dialect.

Every statement is written once, in SQL both stores take (`?` placeholders; PostgreSQL's
connection writes them as `%s`). What truly differs between SQLite and PostgreSQL is a
`Dialect` (outreach.ledger.sqlite, outreach.ledger.postgres): how a writing transaction
begins, which exceptions a statement raises and what to do about them, how a forked worker
opens a connection of its own, and how a copy writes many rows. Which one a workspace uses is
chosen in outreach.ledger.backend, and nowhere else.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from outreach.i18n import N_, _
from outreach.ledger.schema import (
    BLOCK_REASONS,
    COUNTED_STATUSES,
    DONE_STATUSES,
    STATUSES,
    SUPPRESSION_CHANNELS,
    TABLES,
)
from outreach.ledger.store import (
    REPLY_STATUSES,
    Block,
    BounceEvent,
    MessageRecord,
    ReplyRecord,
    email_block_key,
    letter_block_key,
)
from outreach.ledger.stored import stored_day, stored_time
from outreach.model.errors import LedgerError
from outreach.rules.cadence import PastMessage

if TYPE_CHECKING:
    from outreach.shards import Shard

_EMAIL_ONLY = frozenset({"email"})
_LETTER_ONLY = frozenset({"letter"})

# ---------------------------------------------------------------------------------------------
# Conversions: dates as ISO days, timestamps as ISO 8601 in UTC.


def _iso_utc(moment: datetime) -> str:
    # A naive datetime is taken to be UTC already.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "+00:00"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@functools.lru_cache(maxsize=65536)
def _past(day: str, campaign: str, essential: int) -> PastMessage:
    """One message weighing on cadence; records are immutable, so equal ones are shared."""
    return PastMessage(date.fromisoformat(day), campaign, bool(essential))


def _day(text: str | None, *, table: str, row: str) -> date | None:
    return stored_day(text, table=table, row=row) if text is not None else None


_MESSAGE_COLUMNS = (
    "contact_id, campaign, occurrence_key, channel, status, run_date, event_date, earliest, "
    "latest, artifact, message_id, reason, error, essential, effective_date, updated_at, "
    "reason_code, basis"
)

# The f-strings below only join this module's constants; values always go in as parameters.
_INSERT_MESSAGES = f"INSERT INTO messages ({_MESSAGE_COLUMNS}, run_id, created_at)"
# The parameters of one row (_record_rows), and their placeholders: created_at reuses ?16.
_ROW_PARAMETERS = 19
_ROW_MARKS = (*range(1, _ROW_PARAMETERS + 1), 16)
_ON_CONFLICT = """
ON CONFLICT (campaign, contact_id, occurrence_key) DO UPDATE SET
    channel = excluded.channel, status = excluded.status, run_date = excluded.run_date,
    event_date = excluded.event_date, earliest = excluded.earliest, latest = excluded.latest,
    artifact = excluded.artifact, message_id = excluded.message_id, reason = excluded.reason,
    error = excluded.error, essential = excluded.essential,
    effective_date = excluded.effective_date, updated_at = excluded.updated_at,
    reason_code = excluded.reason_code, basis = excluded.basis,
    run_id = coalesce(excluded.run_id, messages.run_id)
"""


def _row_values(rows: int) -> str:
    """VALUES for `rows` rows of _record_rows' parameters, numbered one row after another."""
    return "VALUES " + ", ".join(
        "(" + ", ".join(f"?{row * _ROW_PARAMETERS + n}" for n in _ROW_MARKS) + ")"
        for row in range(rows)
    )


_UPSERT = f"{_INSERT_MESSAGES}\n{_row_values(1)}{_ON_CONFLICT}"

# A row no run must redo (Ledger.done_for's rule), as the WHERE of an upsert sees it.
_HELD = (
    "(messages.status IN ("
    + ", ".join(repr(s) for s in sorted(DONE_STATUSES))
    + ") OR (messages.status = 'failed' AND messages.artifact IS NOT NULL))"
)
# What a run records besides its claims (skipped, deferred, missed, failed before it was made)
# never replaces a done row of another run: where two runs the locks did not keep apart meet
# on one message, the one that made it keeps it.
_RECORD = f"{_UPSERT}WHERE NOT {_HELD} OR messages.run_id = excluded.run_id"
# A claim is the message's final row, written before its file: inserted, or taken over from a
# row no run must keep (deferred, skipped, failed before it was made), never from a done one.
# The rows a claim did not take come back from no RETURNING: another run (or machine) made them.
_CLAIM_TAIL = f"{_ON_CONFLICT}WHERE NOT {_HELD} RETURNING contact_id, campaign, occurrence_key"
# Rows claimed by one statement at most (a power of two): one statement per row cost a
# rehearsal as much as deciding; this many rows stay well under either store's limit on
# parameters. Claims of other sizes go in statements of the powers of two below it, so the
# statements (and their caches) are few.
_CLAIM_ROWS = 256


@functools.lru_cache(maxsize=16)
def _claim_statement(rows: int) -> str:
    """The claim of `rows` rows in one statement: each row inserted, or taken over where
    the row it meets is not held, as if claimed alone."""
    return f"{_INSERT_MESSAGES}\n{_row_values(rows)}{_CLAIM_TAIL}"


def _claim_batches(rows: Sequence[tuple[object, ...]]) -> Iterator[Sequence[tuple[object, ...]]]:
    """`rows` (in key order) in runs of a power of two up to _CLAIM_ROWS, a key never twice in
    one (PostgreSQL will not upsert one row twice in a statement; SQLite would, in order)."""
    start = 0
    while start < len(rows):
        size = 1
        while size * 2 <= min(_CLAIM_ROWS, len(rows) - start):
            size *= 2
        for end in range(start + 1, start + size):
            if rows[end][:3] == rows[end - 1][:3]:
                size = 1 << ((end - start).bit_length() - 1)
                break
        yield rows[start : start + size]
        start += size


# What this run claimed, changed to what became of it (its file's write failed, a letter's
# batch was printed): only rows this run still holds.
_SETTLE_CLAIM = (
    "UPDATE messages SET status = ?1, artifact = ?2, message_id = ?3, reason = ?4, "
    "error = ?5, reason_code = ?6, updated_at = ?7 "
    "WHERE campaign = ?8 AND contact_id = ?9 AND occurrence_key = ?10 AND run_id = ?11"
)

_SELECT_MESSAGES = f"SELECT {_MESSAGE_COLUMNS} FROM messages"  # noqa: S608
# Served by the effective_date index; rows come out in date order without a sort.
_PRESSURE = (
    "SELECT contact_id, effective_date, campaign, essential FROM messages "  # noqa: S608
    f"WHERE effective_date >= ? AND status IN ({', '.join(repr(s) for s in COUNTED_STATUSES)}) "
    "ORDER BY effective_date"
)


# Emails the send step may send (see Ledger.waiting_emails). A literal status in each query is
# what lets SQLite read the partial index messages_waiting (IN (...) or a bound parameter
# would not match its WHERE clause); `id` comes last, for the order.
_WAITING_COLUMNS = f"SELECT {_MESSAGE_COLUMNS}, id FROM messages"  # noqa: S608
_WAITING_RENDERED = (
    f"{_WAITING_COLUMNS} WHERE status = 'rendered' AND latest >= ?1 AND channel = 'email'"
)
# A failed email without a file failed before it was made: the next run makes it again.
_WAITING_FAILED = (
    f"{_WAITING_COLUMNS} WHERE status = 'failed' AND latest >= ?1 AND channel = 'email' "
    "AND coalesce(reason, '') <> 'permanent' AND artifact IS NOT NULL"
)
# Not in the partial index: uncertain rows are rare, and a scan finds them.
_OPEN_UNCERTAIN = (
    f"{_WAITING_COLUMNS} WHERE status = 'uncertain' AND latest >= ?1 AND channel = 'email'"
)


_DONE_FOR = (
    "SELECT contact_id, occurrence_key, status FROM messages WHERE campaign = ? AND "  # noqa: S608
    f"(status IN ({', '.join(repr(s) for s in sorted(DONE_STATUSES))}) "
    "OR (status = 'failed' AND artifact IS NOT NULL))"
)
# _PRESSURE for some contacts (see Ledger.remember): {marks} are their placeholders.
_PRESSURE_AMONG = (
    "SELECT contact_id, effective_date, campaign, essential FROM messages "  # noqa: S608
    "WHERE effective_date >= ? AND contact_id IN ({marks}) "
    f"AND status IN ({', '.join(repr(s) for s in COUNTED_STATUSES)}) "
    "ORDER BY contact_id, effective_date, status, campaign, essential"
)
_CLOSE_WINDOWS = (
    "UPDATE messages SET status = 'missed', updated_at = ?, run_date = ?, "  # noqa: S608
    "run_id = ?, reason = 'window closed while deferred: ' || coalesce(reason, '') "
    f"WHERE status = 'deferred' AND latest < ? RETURNING {_MESSAGE_COLUMNS}"  # not translated: SQL
)
_SELECT_BOUNCES = (
    "SELECT address, contact_id, day, kind, campaign, occurrence_key, status, diagnostic, "
    "kept, source FROM bounce_events"
)

# Occurrence keys per query in `statuses_for`: well under SQLite's limit on parameters.
_KEYS_PER_QUERY = 500


def _event_values(e: BounceEvent) -> tuple[object, ...]:
    """A bounce's columns of bounce_events, in INSERT order (created_at aside)."""
    return (
        *(e.address.lower(), e.contact_id, e.campaign, e.occurrence_key, e.day.isoformat()),
        *(e.kind, e.status, e.diagnostic, e.kept, e.source),
    )


def _block_values(b: Block) -> tuple[object, ...]:
    """A block's columns of blocks, in INSERT order (created_at aside)."""
    return (
        *(b.channel, b.value.lower(), b.postal_key, b.contact_id, b.reason, b.day.isoformat()),
        *(b.status, b.diagnostic, b.kept, b.score),
    )


def _block_reported(b: Block) -> str | None:
    return b.reported.isoformat() if b.reported else None


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    """`values` a few hundred at a time (SQLite's limit on parameters)."""
    for start in range(0, len(values), _KEYS_PER_QUERY):
        yield values[start : start + _KEYS_PER_QUERY]


def _message_filter(
    *,
    contact_id: str | None,
    campaign: str | None,
    since: date | None,
    statuses: Iterable[str] | None,
) -> tuple[str, list[object]]:
    """The WHERE clause (with a leading space, or empty) and parameters of a message query."""
    where: list[str] = []
    params: list[object] = []
    if contact_id is not None:
        where.append("contact_id = ?")
        params.append(contact_id)
    if campaign is not None:
        where.append("campaign = ?")
        params.append(campaign)
    if since is not None:
        where.append("run_date >= ?")
        params.append(since.isoformat())
    if statuses is not None:
        wanted = list(statuses)
        where.append(f"status IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 0")
        params.extend(wanted)
    return (" WHERE " + " AND ".join(where) if where else ""), params


_REPLY_COLUMNS = (
    "fingerprint, message_id, contact_id, campaign, occurrence_key, sender, received, written, "
    "subject, excerpt, kind, status, evidence, mailbox, kept, note, closed_at"
)


def _reply_row(r: ReplyRecord) -> tuple[object, ...]:
    return (
        *(r.fingerprint, r.message_id, r.contact_id, r.campaign, r.occurrence_key, r.sender),
        *(r.received.isoformat(), r.written.isoformat() if r.written else None, r.subject),
        *(r.excerpt, r.kind, r.status, r.evidence, r.mailbox, r.kept, r.note, None),
    )


def _reply_from_row(row: Sequence[Any]) -> ReplyRecord:
    fp, mid, cid, campaign, key, sender, received, written, subject, excerpt = row[:10]
    kind, status, evidence, mailbox, kept, note, _closed, rid = row[10:]
    return ReplyRecord(
        fingerprint=fp,
        contact_id=cid,
        sender=sender,
        received=stored_day(received, table="replies", row=str(rid)),
        subject=subject,
        excerpt=excerpt,
        kind=kind,
        status=status,
        mailbox=mailbox,
        campaign=campaign,
        occurrence_key=key,
        message_id=mid,
        written=_day(written, table="replies", row=str(rid)),
        evidence=evidence,
        kept=kept,
        note=note,
        id=int(rid),
    )


def _message_from_row(row: Sequence[Any]) -> MessageRecord:
    (
        contact_id,
        campaign,
        key,
        channel,
        status,
        run_date,
        event_date,
        earliest,
        latest,
        artifact,
        message_id,
        reason,
        error,
        essential,
        effective_date,
        updated_at,
        reason_code,
        basis,
    ) = row
    where = {"table": "messages", "row": f"of {contact_id!r}, {campaign!r}, {key!r}"}
    return MessageRecord(
        contact_id=contact_id,
        campaign=campaign,
        occurrence_key=key,
        channel=channel,
        status=status,
        run_date=stored_day(run_date, **where),
        event_date=_day(event_date, **where),
        earliest=_day(earliest, **where),
        latest=_day(latest, **where),
        artifact=artifact,
        message_id=message_id,
        reason=reason,
        error=error,
        essential=bool(essential),
        effective_date=stored_day(effective_date, **where),
        updated_at=stored_time(updated_at, **where),
        reason_code=reason_code,
        basis=basis,
    )


def _record_rows(
    records: Iterable[MessageRecord], *, default_stamp: str | None, run_id: int | None
) -> Iterator[tuple[object, ...]]:
    """The parameters of _UPSERT for each record."""
    # The hot loop of a big batch: no helper calls, one timestamp conversion per
    # distinct updated_at (a run stamps its records alike).
    moment: datetime | None = None
    stamp = default_stamp
    for r in records:
        updated = r.updated_at
        if updated is None:
            if default_stamp is None:
                bug = f"{r.key}: a record needs updated_at or a run_id"  # not translated: a bug
                raise ValueError(bug)
            moment, stamp = None, default_stamp
        elif updated is not moment:
            moment, stamp = updated, _iso_utc(updated)
        run_day = r.run_date.isoformat()
        event, earliest, latest = r.event_date, r.earliest, r.latest
        yield (
            r.contact_id,
            r.campaign,
            r.occurrence_key,
            r.channel,
            r.status,
            run_day,
            event.isoformat() if event is not None else None,
            earliest.isoformat() if earliest is not None else None,
            latest.isoformat() if latest is not None else None,
            r.artifact,
            r.message_id,
            r.reason,
            r.error,
            1 if r.essential else 0,
            r.effective_date.isoformat() if r.effective_date is not None else run_day,
            stamp,
            r.reason_code,
            r.basis,
            run_id,  # ?19; created_at reuses ?16
        )


class Dialect(Protocol):
    """What differs between the stores the SQL ledger runs on (SQLite, PostgreSQL).

    The connection a ledger is given takes the ledger's SQL as written: sqlite3's does, and
    PostgreSQL's (outreach.ledger.postgres.PgConnection) writes the placeholders its way.
    """

    @property
    def where(self) -> Path | str:
        """The file, or the URL without its password: where errors say the ledger is."""
        ...

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """What a statement can raise (wrapped into LedgerError with the store's hint)."""
        ...

    @property
    def begin(self) -> str:
        """The statement that starts a writing transaction."""
        ...

    @property
    def snapshot(self) -> str:
        """The statement that starts a transaction of reads that all see one state."""
        ...

    def write_hint(self, exc: Exception) -> str | None:
        """What to do about a write that failed."""
        ...

    def read_hint(self, exc: Exception) -> str | None:
        """What to do about a read that failed."""
        ...

    def reopen(self) -> Any:
        """A new connection to the same ledger, for a forked worker; None when there is no
        other way to reach it (a rehearsal's in-memory copy): the worker keeps the parent's."""
        ...

    def close(self, conn: Any) -> None:
        """Close the connection, with any upkeep the store wants first."""
        ...

    def insert_rows(
        self, conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        """Insert rows the table may already have (those are kept as they are)."""
        ...

    def after_copy(self, conn: Any) -> None:
        """What the store needs once rows came in with their ids (e.g. continue its sequences)."""
        ...


def insert_statement(table: str, columns: Sequence[str]) -> str:
    """INSERT of `columns` into `table`, keeping a row the table already has."""
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    # Only schema.TABLES' names go in.
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608


@dataclass(frozen=True, slots=True)
class Seed:
    """Which rows of a ledger a rehearsal starts from (suppressions and blocks always).

    With `messages` false, none of its messages (validate: a year of occurrences as if none
    was made yet). With `contact_id`, that contact's. With neither `since` nor
    `occurrence_keys`, all of them. Otherwise what the days rehearsed can meet: messages that
    take effect from `since` (they may weigh on cadence), those of each campaign with one of
    its `occurrence_keys` (they may be done), and the deferred ones (their windows may close).
    With `shard`, only the messages of its contacts (a plan's part plans only them).
    Rows are chosen by these facts only; which of them are done or counted is the SQL's rule.
    """

    messages: bool = True
    contact_id: str | None = None
    since: date | None = None
    occurrence_keys: Mapping[str, Iterable[str]] | None = None
    # Keep `history` and `done_for` answers between calls (Ledger.remember): for many
    # simulated days that each write a few rows.
    remember: bool = False
    shard: Shard | None = None


class _Since(Mapping[str, list[PastMessage]]):
    """A remembered pressure map read from a later day on: what `history(since=…)` gives."""

    def __init__(self, pressure: Mapping[str, list[PastMessage]], since: date) -> None:
        self._pressure = pressure
        self._since = since

    def get(self, key: str, default: Any = None) -> Any:
        """The contact's messages from the day on (in date order), or `default`."""
        found = self._pressure.get(key)
        if found is None or found[0].effective_date >= self._since:
            return default if found is None else found
        later = [m for m in found if m.effective_date >= self._since]
        return later if later else default

    def __getitem__(self, key: str) -> list[PastMessage]:
        found: list[PastMessage] | None = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return (
            key for key, found in self._pressure.items() if found[-1].effective_date >= self._since
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Layered(Mapping[_K, _V]):
    """A remembered answer and what changed since, without copying the answer: `top` holds
    the new values, `gone` the keys that no longer have one. Neither layer changes once made
    (an answer already given never changes under its holder)."""

    __slots__ = ("base", "gone", "top")

    def __init__(self, base: Mapping[_K, _V], top: dict[_K, _V], gone: frozenset[_K]) -> None:
        self.base, self.top, self.gone = base, top, gone

    def get(self, key: _K, default: Any = None) -> Any:
        """The value of `key` in the newest layer that has it, or `default`."""
        found = self.top.get(key)
        if found is not None:
            return found
        if key in self.gone:
            return default
        return self.base.get(key, default)

    def __getitem__(self, key: _K) -> _V:
        found: _V | None = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self.top or (key not in self.gone and key in self.base)

    def __iter__(self) -> Iterator[_K]:
        hidden = self.gone | self.top.keys()
        yield from (key for key in self.base if key not in hidden)
        yield from self.top

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _changed(previous: Mapping[_K, _V], changed: Mapping[_K, _V | None]) -> Mapping[_K, _V]:
    """`previous` with the keys of `changed` set anew (None: gone), copied only once the
    changes are a good part of it: a rehearsal's day changes a few contacts of many."""
    base, top, gone = previous, dict[_K, _V](), set[_K]()
    if isinstance(previous, _Layered):
        base, top, gone = previous.base, dict(previous.top), set(previous.gone)
    for key, value in changed.items():
        if value is None:
            top.pop(key, None)
            gone.add(key)
        else:
            top[key] = value
            gone.discard(key)
    if 4 * (len(top) + len(gone)) < len(base):
        return _Layered(base, top, frozenset(gone))
    merged = dict(base)
    for key in gone:
        merged.pop(key, None)
    merged.update(top)
    return merged


@dataclass
class _Remembered:
    """What a rehearsal ledger keeps between calls (see SqlLedger.remember), and the rows it
    wrote since: those are read again, by the same statements, before an answer is reused."""

    done: dict[str, Mapping[tuple[str, str], str]] = field(default_factory=dict)
    pressure: Mapping[str, list[PastMessage]] | None = None
    since: date = date.max
    stale_done: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    stale_contacts: set[str] = field(default_factory=set)

    def wrote(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Rows written, by (contact_id, campaign, occurrence_key)."""
        for contact_id, campaign, occurrence_key in keys:
            self.stale_done.setdefault(campaign, set()).add((contact_id, occurrence_key))
            self.stale_contacts.add(contact_id)


class SqlLedger:
    """The ledger: messages, runs, suppressions and feedback, in SQL over a `Dialect`."""

    def __init__(self, conn: Any, *, dialect: Dialect) -> None:
        self._conn: Any = conn
        self.dialect = dialect
        self.path = dialect.where  # the file, or (PostgreSQL) the URL without its password
        self._errors = dialect.errors
        self._run_started: dict[int, str] = {}
        self._closed = False
        # The part of the workspace this process's runs cover (outreach.shards); None: all of it.
        self.shard: Shard | None = None
        # A rehearsal's answers of `history` and `done_for`, kept between calls and refreshed
        # for the rows written since (None: read afresh each time). A plan's simulated days
        # each write a few rows; reading whole maps again for each day would cost most of it.
        self.remember: _Remembered | None = None
        # A forked worker's own connection once it has one (see _connection).
        self._pid = os.getpid()
        self._worker_conn: tuple[int, Any] | None = None

    @property
    def scope(self) -> str:
        """'' for a run of the whole workspace, else its shard's label (shard-2-of-4)."""
        return self.shard.label if self.shard is not None else ""

    def _mine(self, contact_id: str) -> bool:
        return self.shard is None or self.shard.contains(contact_id)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.dialect.close(self._conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connection(self) -> Any:
        """The connection, for the self-contained SQL of outreach.ledger.outcomes."""
        return self._connection()

    @property
    def database_errors(self) -> tuple[type[Exception], ...]:
        """The errors this ledger's database raises (its dialect's)."""
        return self._errors

    def _connection(self) -> Any:
        """This process's connection. A forked worker never touches its parent's (a SQLite
        connection or a server session must not be shared across processes): it opens its
        own on first use."""
        pid = os.getpid()
        if pid == self._pid:
            return self._conn
        if self._worker_conn is None or self._worker_conn[0] != pid:
            self._worker_conn = (pid, self.dialect.reopen())
        return self._worker_conn[1] if self._worker_conn[1] is not None else self._conn

    @contextmanager
    def _transaction(self, what: str, *, conn: Any = None) -> Iterator[Any]:
        conn = self._conn if conn is None else conn
        try:
            conn.execute(self.dialect.begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except self._errors as exc:
            raise LedgerError(
                _("cannot {what}: {error}").format(what=_(what), error=_first_line(exc)),
                path=self.path,
                hint=self.dialect.write_hint(exc),
            ) from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return list(self._conn.execute(sql, params).fetchall())
        except self._errors as exc:
            raise LedgerError(
                _("cannot read the ledger: {error}").format(error=_first_line(exc)),
                path=self.path,
                hint=self.dialect.read_hint(exc),
            ) from exc

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside the block see the ledger as it was when it began (a server's writers
        go on meanwhile); nothing is written in it."""
        try:
            self._conn.execute(self.dialect.snapshot)
        except self._errors as exc:
            raise LedgerError(
                _("cannot read the ledger: {error}").format(error=_first_line(exc)),
                path=self.path,
                hint=self.dialect.read_hint(exc),
            ) from exc
        try:
            yield
        finally:
            with suppress(*self._errors):
                self._conn.execute("ROLLBACK")

    def _remembered_done(self, memory: _Remembered, campaign: str) -> Mapping[tuple[str, str], str]:
        """done_for(campaign), refreshed for the rows written since it was last read."""
        done = memory.done.get(campaign)
        stale = memory.stale_done.pop(campaign, set())
        if done is None:
            done = self._status_map(_DONE_FOR, campaign, None)
        elif stale:
            # A new layer, not a change: an answer already given never changes under its holder.
            changed: dict[tuple[str, str], str | None] = dict.fromkeys(stale)
            for chunk in _chunks(sorted({contact for contact, _ in stale})):
                marks = ", ".join("?" * len(chunk))
                rows = self._query(f"{_DONE_FOR} AND contact_id IN ({marks})", (campaign, *chunk))
                changed.update(((c, k), status) for c, k, status in rows if (c, k) in stale)
            done = _changed(done, changed)
        memory.done[campaign] = done
        return done

    def _remembered_history(
        self, memory: _Remembered, since: date
    ) -> Mapping[str, list[PastMessage]]:
        """history(since=…), from the pressure remembered and its contacts written since."""
        if memory.pressure is None or since < memory.since:
            memory.pressure, memory.since = self._history(since), since
            memory.stale_contacts.clear()
        elif memory.stale_contacts:
            # A new layer, as in _remembered_done: None where a contact has no pressure left.
            pressure: dict[str, list[PastMessage] | None] = dict.fromkeys(memory.stale_contacts)
            first = memory.since.isoformat()
            for chunk in _chunks(sorted(memory.stale_contacts)):
                marks = ", ".join("?" * len(chunk))
                rows = self._query(_PRESSURE_AMONG.format(marks=marks), (first, *chunk))
                for contact_id, day, name, essential in rows:
                    past = _past(day, name, essential)
                    found = pressure[contact_id]
                    if found is None:
                        pressure[contact_id] = [past]
                    else:
                        found.append(past)
            memory.pressure = _changed(memory.pressure, pressure)
            memory.stale_contacts.clear()
        return memory.pressure if since == memory.since else _Since(memory.pressure, since)

    def _wrote(self, keys: Iterable[tuple[str, str, str]] | None) -> None:
        """Note rows written, by key (None: any row may have changed), for what is remembered."""
        if self.remember is None:
            return
        if keys is None:
            self.remember = _Remembered()
        else:
            self.remember.wrote(keys)

    def remember_answers(self) -> None:
        """Keep `history` and `done_for` answers between calls (see `remember`)."""
        self.remember = _Remembered()

    # -- rehearsals ------------------------------------------------------------------------

    def seed_from(self, source: SqlLedger, seed: Seed) -> None:
        """Copy into this (empty) ledger the rows of `source` that `seed` names."""
        for table in ("suppressions", "blocks", "address_confirmations"):
            columns = TABLES[table][0]
            # `table` and `columns` are schema.TABLES' names.
            rows = source._query(f"SELECT {', '.join(columns)} FROM {table}")  # noqa: S608
            self._insert(table, columns, rows)
        # Of the visits, what a run reads: each contact's latest.
        columns = TABLES["visits"][0]
        rows = source._query(
            f"SELECT {', '.join(columns)} FROM visits v WHERE day = "  # noqa: S608
            "(SELECT max(day) FROM visits w WHERE w.contact_id = v.contact_id)"
        )
        self._insert("visits", columns, rows)
        if not seed.messages:
            return
        columns = TABLES["messages"][0]
        select = f"SELECT {', '.join(columns)} FROM messages"  # noqa: S608
        queries: list[tuple[str, Sequence[object]]] = []
        if seed.contact_id is not None:
            queries.append((f"{select} WHERE contact_id = ?", (seed.contact_id,)))
        elif seed.since is None and seed.occurrence_keys is None:
            queries.append((select, ()))
        else:
            queries.append((f"{select} WHERE status = 'deferred'", ()))
            if seed.since is not None:
                queries.append((f"{select} WHERE effective_date >= ?", (seed.since.isoformat(),)))
            for campaign, keys in (seed.occurrence_keys or {}).items():
                wanted = sorted(set(keys))
                for start in range(0, len(wanted), _KEYS_PER_QUERY):
                    chunk = wanted[start : start + _KEYS_PER_QUERY]
                    marks = ", ".join("?" * len(chunk))
                    where = f" WHERE campaign = ? AND occurrence_key IN ({marks})"
                    queries.append((select + where, (campaign, *chunk)))
        at = columns.index("contact_id")
        for sql, params in queries:
            rows = source._query(sql, params)
            if seed.shard is not None:
                rows = [row for row in rows if seed.shard.contains(row[at])]
            self._insert("messages", columns, rows)

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        if rows:
            with self._transaction(f"copy the {table} table") as conn:
                self.dialect.insert_rows(conn, table, columns, rows)

    # -- runs ------------------------------------------------------------------------------

    def begin_run(self, *, run_date: date, started_at: datetime, args: Sequence[str]) -> int:
        """Record the start of a run; return its id."""
        started = _iso_utc(started_at)
        with self._transaction(N_("record the run")) as conn:
            row = conn.execute(
                "INSERT INTO runs (run_date, started_at, args, pid, scope, host) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    run_date.isoformat(),
                    started,
                    json.dumps(list(args)),
                    os.getpid(),
                    self.scope,
                    socket.gethostname(),
                ),
            ).fetchone()
        run_id = int(row[0])
        self._run_started[run_id] = started
        return run_id

    def end_run(self, run_id: int, *, ended_at: datetime, counts: Mapping[str, object]) -> None:
        """Record the end of a run and its summary counts."""
        with self._transaction(N_("record the end of the run")) as conn:
            cursor = conn.execute(
                "UPDATE runs SET ended_at = ?, counts = ? WHERE id = ?",
                (_iso_utc(ended_at), json.dumps(counts, sort_keys=True, default=str), run_id),
            )
            if cursor.rowcount != 1:
                raise LedgerError(
                    _("there is no run {run} in the ledger").format(run=run_id), path=self.path
                )

    def runs(self, limit: int = 20) -> list[dict[str, object]]:
        """The latest runs, newest first, as dicts (dates and times parsed, JSON decoded)."""
        rows = self._query(
            "SELECT id, run_date, started_at, ended_at, args, counts, pid FROM runs "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            {
                "id": run_id,
                "run_date": stored_day(run_date, table="runs", row=run_id, path=self.path),
                "started_at": stored_time(started, table="runs", row=run_id, path=self.path),
                "ended_at": stored_time(ended, table="runs", row=run_id, path=self.path)
                if ended is not None
                else None,
                "args": json.loads(args),
                "counts": json.loads(counts) if counts is not None else None,
                "pid": pid,
            }
            for run_id, run_date, started, ended, args, counts, pid in rows
        ]

    # -- messages --------------------------------------------------------------------------

    def statuses_for(
        self, campaign: str, *, occurrence_keys: Iterable[str] | None = None
    ) -> dict[tuple[str, str], str]:
        """(contact_id, occurrence_key) → status for every message of a campaign (or only
        those with one of `occurrence_keys`: `plan` needs this year's, not a decade's)."""
        sql = "SELECT contact_id, occurrence_key, status FROM messages WHERE campaign = ?"
        return self._status_map(sql, campaign, occurrence_keys)

    def _status_map(
        self, sql: str, campaign: str, occurrence_keys: Iterable[str] | None
    ) -> dict[tuple[str, str], str]:
        """(contact_id, occurrence_key) → status of the rows `sql` selects for a campaign;
        `occurrence_keys` go a few hundred a query (SQLite's limit on parameters)."""
        if occurrence_keys is None:
            rows = self._query(sql, (campaign,))
            return {(contact_id, key): status for contact_id, key, status in rows}
        found: dict[tuple[str, str], str] = {}
        keys = sorted(set(occurrence_keys))
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(f"{sql} AND occurrence_key IN ({marks})", (campaign, *chunk))
            found.update(((contact_id, key), status) for contact_id, key, status in rows)
        return found

    def done_for(
        self, campaign: str, *, occurrence_keys: Iterable[str] | None = None
    ) -> Mapping[tuple[str, str], str]:
        """(contact_id, occurrence_key) → status of a campaign's messages a run must not redo.

        Those in DONE_STATUSES, and failed emails whose file exists (the send step retries
        them from it). A message that failed before it was made (a template or layout error,
        a full disk) is made again by the next run, as are deferred and skipped ones.
        """
        if self.remember is not None and occurrence_keys is None:
            return self._remembered_done(self.remember, campaign)
        return self._status_map(_DONE_FOR, campaign, occurrence_keys)

    def history(self, *, since: date) -> Mapping[str, list[PastMessage]]:
        """contact_id → the messages that weigh on their cadence from `since` on."""
        if self.remember is not None:
            return self._remembered_history(self.remember, since)
        return self._history(since)

    def _history(self, since: date) -> dict[str, list[PastMessage]]:
        # contact_pressure's rows, read straight into messages: equal ones are one record.
        known: dict[tuple[str, str, object], PastMessage] = {}
        history: dict[str, list[PastMessage]] = {}
        for contact_id, day_text, name, essential in self._query(_PRESSURE, (since.isoformat(),)):
            past = known.get((day_text, name, essential))
            if past is None:
                day = stored_day(day_text, table="messages", row=f"of {contact_id!r}, {name!r}")
                past = PastMessage(effective_date=day, campaign=name, essential=bool(essential))
                known[(day_text, name, essential)] = past
            found = history.get(contact_id)
            if found is None:
                history[contact_id] = [past]
            else:
                found.append(past)
        return history

    def close_windows(self, *, today: date, now: datetime, run_id: int) -> list[MessageRecord]:
        """Turn deferred messages whose window closed before today into `missed`, dated and
        owned by this run; return them. A message is never sent late."""
        stamp = _iso_utc(now)
        params = (stamp, today.isoformat(), run_id, today.isoformat())
        rows: list[Any] = []
        with self._transaction(N_("mark missed messages")) as conn:
            ids = self._ids_of_mine(
                conn,
                "SELECT id, contact_id FROM messages WHERE status = 'deferred' AND latest < ?",
                (today.isoformat(),),
            )
            if ids is None:
                rows = conn.execute(_CLOSE_WINDOWS, params).fetchall()
            for chunk in ids or ():
                marks = ", ".join("?" * len(chunk))
                sql = _CLOSE_WINDOWS.replace(" RETURNING", f" AND id IN ({marks}) RETURNING")
                rows.extend(conn.execute(sql, (*params, *chunk)).fetchall())
        closed = [_message_from_row(row) for row in rows]
        self._wrote(r.key for r in closed)
        return closed

    def _ids_of_mine(self, conn: Any, sql: str, params: Sequence[object]) -> list[list[int]] | None:
        """For a sharded run, the ids (in chunks) among (id, contact_id) rows of `sql` whose
        contact is in the shard; None when the run covers the whole workspace."""
        if self.shard is None:
            return None
        shard = self.shard
        ids = [
            row_id
            for row_id, contact in conn.execute(sql, params).fetchall()
            if shard.contains(contact)
        ]
        return [ids[i : i + _KEYS_PER_QUERY] for i in range(0, len(ids), _KEYS_PER_QUERY)]

    def record(self, records: Iterable[MessageRecord], *, run_id: int | None = None) -> None:
        """Insert or update messages in one transaction; a row keeps its first created_at.

        An existing row takes every field of the new record (an error it no longer has is
        cleared); its run_id is kept when none is given. A run's records (`run_id` given)
        keep a done row (see `done_for`) that another run wrote as it is. A record without
        `updated_at` is stamped with its run's start time.
        """
        if self.remember is not None:
            records = list(records)
            self.remember.wrote(r.key for r in records)
        default_stamp = self._run_stamp(run_id) if run_id is not None else None
        rows = _record_rows(records, default_stamp=default_stamp, run_id=run_id)
        with self._transaction(N_("record messages")) as conn:
            conn.executemany(_UPSERT if run_id is None else _RECORD, rows)

    def claim(self, records: Sequence[MessageRecord], *, run_id: int) -> set[tuple[str, str, str]]:
        """Write each record where no done row exists, in one transaction, before its file is
        written; return the keys this run now holds. A key not returned was made by another
        run or machine: its file is not to be written.

        Safe to call from a forked worker (it uses a connection of its own). Rows are taken
        in key order, so two runs claiming overlapping chunks on a server never deadlock.
        """
        if not records:
            return set()
        ordered = sorted(records, key=lambda r: (r.campaign, r.contact_id, r.occurrence_key))
        self._wrote(r.key for r in ordered)
        rows = _record_rows(ordered, default_stamp=self._run_stamp(run_id), run_id=run_id)
        granted: set[tuple[str, str, str]] = set()
        with self._transaction(N_("claim messages"), conn=self._connection()) as conn:
            # Many rows a statement, in key order (see _CLAIM_ROWS).
            for batch in _claim_batches(list(rows)):
                params = [value for row in batch for value in row]
                found = conn.execute(_claim_statement(len(batch)), params).fetchall()
                granted.update((c, name, key) for c, name, key in found)
        return granted

    def settle_claims(self, records: Iterable[MessageRecord], *, run_id: int) -> None:
        """Set what became of messages this run claimed (a write that failed, a letter's
        batch), in one transaction; rows no longer held by the run are left alone."""
        params = [
            (
                r.status,
                r.artifact,
                r.message_id,
                r.reason,
                r.error,
                r.reason_code,
                _iso_utc(r.updated_at) if r.updated_at is not None else self._run_stamp(run_id),
                r.campaign,
                r.contact_id,
                r.occurrence_key,
                run_id,
            )
            for r in records
        ]
        if not params:
            return
        self._wrote((contact, campaign, key) for *_, campaign, contact, key, _ in params)
        with self._transaction(N_("record messages"), conn=self._connection()) as conn:
            for row in params:
                conn.execute(_SETTLE_CLAIM, row)

    def claim_sending(self, record: MessageRecord, *, uncertain: bool, now: datetime) -> bool:
        """Mark an email `sending` if it is still one the send step may send (`uncertain`:
        those too); False when another send step has it (or it changed meanwhile)."""
        sendable = "'rendered', 'failed', 'uncertain'" if uncertain else "'rendered', 'failed'"
        self._wrote(None)
        with self._transaction(N_("update a message")) as conn:
            cursor = conn.execute(
                "UPDATE messages SET status = 'sending', error = NULL, reason = NULL, "  # noqa: S608
                "reason_code = NULL, updated_at = ? "
                "WHERE contact_id = ? AND campaign = ? AND occurrence_key = ? "
                f"AND status IN ({sendable}) AND channel = 'email' AND artifact IS NOT NULL "
                "AND NOT (status = 'failed' AND coalesce(reason, '') = 'permanent')",
                (_iso_utc(now), record.contact_id, record.campaign, record.occurrence_key),
            )
            return bool(cursor.rowcount == 1)

    def run_process(self, run_id: int) -> tuple[str | None, int, datetime]:
        """(host, pid, start time) of the process that began a run."""
        rows = self._query("SELECT host, pid, started_at FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise LedgerError(
                _("there is no run {run} in the ledger").format(run=run_id), path=self.path
            )
        host, pid, started = rows[0]
        return host, int(pid), datetime.fromisoformat(started)  # TEXT on both stores

    def claimed_by_run(self, run_id: int) -> list[MessageRecord]:
        """The `rendered` rows a run holds (for recovery: were their files ever made?)."""
        rows = self._query(
            f"{_SELECT_MESSAGES} WHERE run_id = ? AND status = 'rendered'",
            (run_id,),
        )
        return [_message_from_row(row) for row in rows]

    def forget_unmade(
        self, keys: Iterable[tuple[str, str, str]], *, run_id: int, reason: str, now: datetime
    ) -> int:
        """Turn a dead run's `rendered` rows whose file was never made into `failed` without
        artifact (the next run makes them again); return how many."""
        self._wrote(None)
        changed = 0
        with self._transaction(N_("recover interrupted messages")) as conn:
            for contact_id, campaign, occurrence_key in keys:
                cursor = conn.execute(
                    "UPDATE messages SET status = 'failed', artifact = NULL, message_id = NULL, "
                    "reason = ?, reason_code = 'interrupted', error = NULL, updated_at = ? "
                    "WHERE contact_id = ? AND campaign = ? AND occurrence_key = ? "
                    "AND run_id = ? AND status = 'rendered'",
                    (reason, _iso_utc(now), contact_id, campaign, occurrence_key, run_id),
                )
                changed += cursor.rowcount
        return changed

    def _run_stamp(self, run_id: int) -> str:
        stamp = self._run_started.get(run_id)
        if stamp is None:
            found = self._query("SELECT started_at FROM runs WHERE id = ?", (run_id,))
            if not found:
                raise LedgerError(
                    _("there is no run {run} in the ledger").format(run=run_id), path=self.path
                )
            stamp = self._run_started[run_id] = found[0][0]
        return stamp

    def set_status(
        self,
        *,
        contact_id: str,
        campaign: str,
        occurrence_key: str,
        status: str,
        error: str | None = None,
        reason: str | None = None,
        reason_code: str | None = None,
        now: datetime,
    ) -> None:
        """Change one message's status (and its error and reason, cleared when not given)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")  # not translated: a bug
        self._wrote(None)
        with self._transaction(N_("update a message")) as conn:
            cursor = conn.execute(
                "UPDATE messages SET status = ?, error = ?, reason = ?, reason_code = ?, "
                "updated_at = ? WHERE contact_id = ? AND campaign = ? AND occurrence_key = ?",
                (
                    status,
                    error,
                    reason,
                    reason_code,
                    _iso_utc(now),
                    contact_id,
                    campaign,
                    occurrence_key,
                ),
            )
            if cursor.rowcount != 1:
                raise LedgerError(
                    _(
                        "there is no message {campaign}/{occurrence} for contact "
                        "{contact} in the ledger"
                    ).format(campaign=campaign, occurrence=occurrence_key, contact=contact_id),
                    path=self.path,
                )

    def settle_interrupted(self, *, now: datetime) -> int:
        """Mark messages a dead run left in `sending` as `uncertain`; return how many.

        Call it only while holding the workspace lock: then no live process is sending them.
        """
        sql = (
            "UPDATE messages SET status = 'uncertain', updated_at = ?, "
            "error = 'the run died while handing the message to the mail server' "
            "WHERE status = 'sending'"  # not translated: SQL
        )
        self._wrote(None)
        with self._transaction(N_("settle interrupted messages")) as conn:
            ids = self._ids_of_mine(
                conn, "SELECT id, contact_id FROM messages WHERE status = 'sending'", ()
            )
            if ids is None:
                return int(conn.execute(sql, (_iso_utc(now),)).rowcount)
            settled = 0
            for chunk in ids:  # a shard settles its own contacts' messages only
                marks = ", ".join("?" * len(chunk))
                cursor = conn.execute(f"{sql} AND id IN ({marks})", (_iso_utc(now), *chunk))
                settled += cursor.rowcount
        return settled

    def mark_unsent_missed(self, *, today: date, now: datetime) -> int:
        """Turn emails never sent whose window closed before today into `missed`; return how many.

        Rendered emails and those whose last attempt failed for a passing reason: an email is
        never sent late. Permanent failures stay `failed`, with the server's reply. Only the
        send step calls this: with `delivery: outbox` a rendered email is already delivered.
        """
        where = (
            "WHERE channel = 'email' AND latest < ? AND (status = 'rendered' "
            "OR (status = 'failed' AND coalesce(reason, '') <> 'permanent'))"
        )
        sql = (
            "UPDATE messages SET status = 'missed', updated_at = ?, "  # noqa: S608
            "reason = 'window closed before it was sent', "  # not translated: SQL
            "reason_code = 'window_closed' " + where
        )
        self._wrote(None)
        params = (_iso_utc(now), today.isoformat())
        with self._transaction(N_("mark unsent emails missed")) as conn:
            ids = self._ids_of_mine(
                conn,
                "SELECT id, contact_id FROM messages " + where,  # noqa: S608
                (today.isoformat(),),
            )
            if ids is None:
                return int(conn.execute(sql, params).rowcount)
            missed = 0
            for chunk in ids:
                marks = ", ".join("?" * len(chunk))
                missed += conn.execute(f"{sql} AND id IN ({marks})", (*params, *chunk)).rowcount
        return missed

    def waiting_emails(self, *, today: date, uncertain: bool = False) -> list[MessageRecord]:
        """Emails waiting to be sent whose window is still open, most urgent first.

        Rendered ones, and failed ones unless the failure was permanent (`reason` is
        'permanent'); `uncertain` ones too when asked (`outreach send --retry-uncertain`).
        """
        branches = [_WAITING_RENDERED, _WAITING_FAILED]
        if uncertain:
            branches.append(_OPEN_UNCERTAIN)
        sql = " UNION ALL ".join(branches) + " ORDER BY latest, id"
        rows = self._query(sql, (today.isoformat(),))
        return [_message_from_row(row[:-1]) for row in rows if self._mine(row[0])]

    def open_uncertain_emails(self, *, today: date) -> list[MessageRecord]:
        """Uncertain emails whose window is still open: a person should check them."""
        rows = self._query(_OPEN_UNCERTAIN + " ORDER BY latest, id", (today.isoformat(),))
        return [_message_from_row(row[:-1]) for row in rows if self._mine(row[0])]

    def interrupted_runs(self) -> list[tuple[int, date]]:
        """(id, run date) of runs that started and never ended: their process died.

        Call it only while holding the workspace lock: then no live run is among them. A
        sharded run holds its shard's lock only: it sees its own shard's dead runs, never
        those of a shard another process or machine is running now.
        """
        sql = "SELECT id, run_date FROM runs WHERE ended_at IS NULL"
        if self.shard is not None:
            rows = self._query(sql + " AND scope = ? ORDER BY id", (self.scope,))
            return [(run_id, stored_day(day, table="runs", row=run_id)) for run_id, day in rows]
        rows = self._query(sql + " ORDER BY id")
        return [(run_id, stored_day(day, table="runs", row=run_id)) for run_id, day in rows]

    def artifacts_of_run_date(self, run_date: date) -> set[str]:
        """The artifact paths the ledger knows for messages last written on a run date."""
        rows = self._query(
            "SELECT artifact FROM messages WHERE run_date = ? AND artifact IS NOT NULL",
            (run_date.isoformat(),),
        )
        return {artifact for (artifact,) in rows}

    def messages(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        since: date | None = None,
        statuses: Iterable[str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[MessageRecord]:
        """Messages matching every filter given (`since` is on run_date), oldest run first
        (or newest first), at most `limit` of them."""
        where, params = _message_filter(
            contact_id=contact_id, campaign=campaign, since=since, statuses=statuses
        )
        order = " ORDER BY run_date DESC, id DESC" if newest_first else " ORDER BY run_date, id"
        if limit is not None:
            order += " LIMIT ?"
            params.append(limit)
        rows = self._query(_SELECT_MESSAGES + where + order, params)
        return [_message_from_row(row) for row in rows]

    def count_messages(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        since: date | None = None,
        statuses: Iterable[str] | None = None,
    ) -> dict[str, int]:
        """status → how many messages match every filter given (as `messages` takes them)."""
        where, params = _message_filter(
            contact_id=contact_id, campaign=campaign, since=since, statuses=statuses
        )
        # `where` holds only placeholders and this module's column names.
        sql = "SELECT status, count(*) FROM messages" + where + " GROUP BY status"  # noqa: S608
        return {str(status): int(count) for status, count in self._query(sql, params)}

    def contact_pressure(self, *, since: date) -> dict[str, list[tuple[date, str, bool]]]:
        """contact_id → [(effective_date, campaign, essential)] of counted messages since a day.

        Each list is in date order. Future days (letters still in the post) are included.
        """
        rows = self._query(_PRESSURE, (since.isoformat(),))
        # Few distinct days: parse each once.
        days: dict[str, date] = {}
        pressure: dict[str, list[tuple[date, str, bool]]] = {}
        for contact_id, day_text, campaign, essential in rows:
            day = days.get(day_text)
            if day is None:
                day = days[day_text] = stored_day(
                    day_text, table="messages", row=f"of {contact_id!r}, {campaign!r}"
                )
            entry = (day, campaign, bool(essential))
            found = pressure.get(contact_id)
            if found is None:
                pressure[contact_id] = [entry]
            else:
                found.append(entry)
        return pressure

    # -- suppression list ------------------------------------------------------------------

    def suppress(self, value: str, *, channel: str, source: str, now: datetime) -> bool:
        """Add an address or contact id to the suppression list; False if already covered."""
        value = value.strip().lower()
        if not value:
            raise LedgerError(
                _("nothing to unsubscribe"), hint=_("give an email address or a contact id")
            )
        if channel not in SUPPRESSION_CHANNELS:
            raise LedgerError(
                _("unknown channel {channel}").format(channel=repr(channel)),
                hint=_("use one of {channels}").format(channels=", ".join(SUPPRESSION_CHANNELS)),
            )
        with self._transaction(N_("update the suppression list")) as conn:
            covered = conn.execute(
                "SELECT 1 FROM suppressions WHERE value = ? AND channel IN (?, 'all')",
                (value, channel),
            ).fetchone()
            if covered:
                return False
            conn.execute(
                "INSERT INTO suppressions (value, channel, source, created_at) VALUES (?, ?, ?, ?)",
                (value, channel, source, _iso_utc(now)),
            )
        return True

    def suppressions(self) -> dict[str, frozenset[str]]:
        """Lower-cased address or contact id → the channels it is suppressed on.

        Look a contact up by `contact.id.lower()` and `contact.email.lower()`.
        """
        found: dict[str, set[str]] = {}
        for value, channel in self._query("SELECT value, channel FROM suppressions"):
            found.setdefault(value, set()).add(channel)
        suppressed = {value: frozenset(channels) for value, channels in found.items()}
        # Blocks ride along under keys of their own (see email_block_key): one structure for
        # every check a run makes; `outreach.rules.blocks.block_reason` reads them.
        for channel, value, postal_key in self._query(
            "SELECT channel, value, postal_key FROM blocks WHERE channel <> 'all'"
        ):
            if channel == "email":
                suppressed[email_block_key(value)] = _EMAIL_ONLY
            else:
                suppressed[letter_block_key(value, postal_key)] = _LETTER_ONLY
        return suppressed

    # -- what the ledger adds to the contacts' rows (outreach.rules.known) -----------------

    def latest_visits(self) -> dict[str, date]:
        """Contact id → the day of their latest visit (`outreach visits --import`)."""
        rows = self._query("SELECT contact_id, max(day) FROM visits GROUP BY contact_id")
        return {row[0]: date.fromisoformat(row[1]) for row in rows}

    def address_confirmations(self) -> dict[str, tuple[date, str]]:
        """Contact id → (the address_confirmed date first seen, the address's fingerprint)."""
        rows = self._query("SELECT contact_id, confirmed, fingerprint FROM address_confirmations")
        return {row[0]: (date.fromisoformat(row[1]), row[2]) for row in rows}

    def confirm_addresses(
        self, confirmed: Sequence[tuple[str, date, str]], *, now: datetime
    ) -> None:
        """Keep (contact id, address_confirmed date, fingerprint) for confirmations first seen
        or given again with a new date (a row already holding that date is kept as it is)."""
        if not confirmed:
            return
        stamp = _iso_utc(now)
        with self._transaction(N_("record the confirmed addresses")) as conn:
            conn.executemany(
                "INSERT INTO address_confirmations (contact_id, confirmed, fingerprint, "
                "created_at) VALUES (?, ?, ?, ?) ON CONFLICT (contact_id) DO UPDATE SET "
                "confirmed = excluded.confirmed, fingerprint = excluded.fingerprint, "
                "created_at = excluded.created_at "
                "WHERE address_confirmations.confirmed <> excluded.confirmed",
                [(cid, day.isoformat(), print_, stamp) for cid, day, print_ in confirmed],
            )

    # -- what comes back (outreach.feedback) -----------------------------------------------

    def find_email(
        self, *, message_id: str | None = None, id_prefix: str | None = None
    ) -> MessageRecord | None:
        """The email with this Message-ID (no angle brackets), or whose Message-ID starts with
        `id_prefix` (a VERP token's digits); None when the ledger has none."""
        if message_id is not None:
            rows = self._query(
                _SELECT_MESSAGES + " WHERE message_id = ? AND channel = 'email' LIMIT 1",
                (message_id,),
            )
        elif id_prefix:
            # A range on the index: '~' sorts after every character of a Message-ID digest.
            rows = self._query(
                _SELECT_MESSAGES + " WHERE message_id >= ? AND message_id < ? "
                "AND channel = 'email' LIMIT 1",
                (id_prefix, id_prefix + "~"),
            )
        else:
            return None
        return _message_from_row(rows[0]) if rows else None

    def bounce_events(self, addresses: Iterable[str]) -> dict[str, list[BounceEvent]]:
        """Address → its bounces counted so far, oldest first."""
        wanted = sorted({a.lower() for a in addresses})
        found: dict[str, list[BounceEvent]] = {}
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start : start + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            # `marks` holds only placeholders.
            sql = f"{_SELECT_BOUNCES} WHERE address IN ({marks}) ORDER BY address, day, id"
            rows = self._query(sql, chunk)
            for row in rows:
                address, contact_id, day, kind, campaign, key, status, diag, kept, source = row
                found.setdefault(address, []).append(
                    BounceEvent(
                        address=address,
                        contact_id=contact_id,
                        day=stored_day(day, table="bounce_events", row=f"of {address!r}"),
                        kind=kind,
                        campaign=campaign,
                        occurrence_key=key,
                        status=status,
                        diagnostic=diag,
                        kept=kept,
                        source=source,
                    )
                )
        return found

    def blocks(
        self, *, contact_id: str | None = None, values: Iterable[str] | None = None
    ) -> list[Block]:
        """Blocks for a contact id and/or on these values (addresses, ids), oldest first."""
        where: list[str] = []
        params: list[object] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if values is not None:
            wanted = sorted({v.lower() for v in values})
            where.append(f"value IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 0")
            params.extend(wanted)
        sql = (
            "SELECT channel, value, contact_id, reason, day, postal_key, status, diagnostic, "
            "kept, score, reported FROM blocks"
        )
        if where:
            sql += " WHERE " + " OR ".join(where)
        rows = self._query(sql + " ORDER BY day, created_at", params)
        return [
            Block(
                channel=channel,
                value=value,
                contact_id=cid,
                reason=reason,
                day=stored_day(day, table="blocks", row=f"of {value!r}"),
                postal_key=postal_key,
                status=status,
                diagnostic=diagnostic,
                kept=kept,
                score=score,
                reported=_day(reported, table="blocks", row=f"of {value!r}"),
            )
            for (
                channel,
                value,
                cid,
                reason,
                day,
                postal_key,
                status,
                diagnostic,
                kept,
                score,
                reported,
            ) in rows
        ]

    def feedback_seen(self, fingerprints: Iterable[str]) -> dict[str, str]:
        """Fingerprint → kind of the mail among these already read (and acted on)."""
        wanted = sorted(set(fingerprints))
        seen: dict[str, str] = {}
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start : start + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(
                f"SELECT fingerprint, kind FROM feedback_seen WHERE fingerprint IN ({marks})",  # noqa: S608
                chunk,
            )
            seen.update((fingerprint, kind) for fingerprint, kind in rows)
        return seen

    def record_feedback(
        self,
        *,
        events: Sequence[BounceEvent] = (),
        blocks: Sequence[Block] = (),
        suppressions: Sequence[tuple[str, str, str]] = (),
        seen: Sequence[tuple[str, str, date]] = (),
        now: datetime,
    ) -> None:
        """Write what some mail taught, in one transaction: bounces, blocks (a block already
        there is kept as it was), suppressions (value, channel, source), and the mail's
        fingerprints (fingerprint, kind, day)."""
        stamp = _iso_utc(now)
        for block in blocks:
            if block.channel not in SUPPRESSION_CHANNELS or block.reason not in BLOCK_REASONS:
                wrong = f"{block.channel}/{block.reason}"
                raise ValueError(f"unknown block {wrong}")  # not translated: a bug
        with self._transaction(N_("record bounces and blocks")) as conn:
            conn.executemany(
                "INSERT INTO bounce_events (address, contact_id, campaign, occurrence_key, day, "
                "kind, status, diagnostic, kept, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*_event_values(e), stamp) for e in events],
            )
            conn.executemany(
                "INSERT INTO blocks (channel, value, postal_key, contact_id, reason, "
                "day, status, diagnostic, kept, score, created_at, reported) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(*_block_values(b), stamp, _block_reported(b)) for b in blocks],
            )
            for value, channel, source in suppressions:
                conn.execute(
                    "INSERT INTO suppressions (value, channel, source, created_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (value.strip().lower(), channel, source, stamp),
                )
            conn.executemany(
                "INSERT INTO feedback_seen (fingerprint, kind, day, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(fp, kind, day.isoformat(), stamp) for fp, kind, day in seen],
            )

    # -- replies and undo (outreach.feedback.replies) --------------------------------------

    def record_replies(
        self,
        replies: Sequence[ReplyRecord],
        *,
        suppressions: Sequence[tuple[str, str, str]] = (),
        now: datetime,
    ) -> None:
        """Keep replies (one already kept, by fingerprint or Message-ID, stays as it was) and
        the suppressions (value, channel, source) they asked for, in one transaction."""
        stamp = _iso_utc(now)
        with self._transaction(N_("record replies")) as conn:
            for r in replies:
                conn.execute(
                    f"INSERT INTO replies ({_REPLY_COLUMNS}, created_at) "  # noqa: S608
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (*_reply_row(r), stamp),
                )
            for value, channel, source in suppressions:
                conn.execute(
                    "INSERT INTO suppressions (value, channel, source, created_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (value.strip().lower(), channel, source, stamp),
                )

    def replies(
        self, *, contact_id: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[ReplyRecord]:
        """Replies (a contact's, or in these statuses), oldest first."""
        where, params = [], []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if statuses is not None:
            wanted = list(statuses)
            where.append(f"status IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 0")
            params.extend(wanted)
        sql = f"SELECT {_REPLY_COLUMNS}, id FROM replies"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_reply_from_row(row) for row in self._query(sql + " ORDER BY received, id", params)]

    def close_reply(
        self, reply_id: int, *, status: str, note: str | None, now: datetime
    ) -> ReplyRecord | None:
        """Set a reply's status (done, stopped) and the owner's note; None if there is none."""
        if status not in REPLY_STATUSES:
            raise ValueError(f"unknown reply status {status!r}")  # not translated: a bug
        with self._transaction(N_("update the reply")) as conn:
            rows = conn.execute(
                "UPDATE replies SET status = ?, note = coalesce(?, note), closed_at = ? "  # noqa: S608
                f"WHERE id = ? RETURNING {_REPLY_COLUMNS}, id",
                (status, note, _iso_utc(now), reply_id),
            ).fetchall()
        return _reply_from_row(rows[0]) if rows else None

    def suppression_rows(self) -> list[tuple[str, str, str, str]]:
        """Every suppression: (value, channel, source, created_at), oldest first."""
        rows = self._query(
            "SELECT value, channel, source, created_at FROM suppressions ORDER BY created_at, value"
        )
        return [(v, c, s, t) for v, c, s, t in rows]

    def remove_suppressions(
        self, values: Iterable[str], *, reason: str, today: date, now: datetime
    ) -> list[tuple[str, str, str]]:
        """Lift the suppressions of these values, keeping the reason; what was lifted."""
        wanted = sorted({v.strip().lower() for v in values if v.strip()})
        removed: list[tuple[str, str, str]] = []
        with self._transaction(N_("update the suppression list")) as conn:
            for value in wanted:
                rows = conn.execute(
                    "DELETE FROM suppressions WHERE value = ? RETURNING value, channel, source",
                    (value,),
                ).fetchall()
                removed.extend((v, c, s) for v, c, s in rows)
            conn.executemany(
                "INSERT INTO undone (what, value, channel, was, reason, day, created_at) "
                "VALUES ('suppression', ?, ?, ?, ?, ?, ?)",
                [(v, c, s, reason, today.isoformat(), _iso_utc(now)) for v, c, s in removed],
            )
        return removed

    def remove_blocks(
        self,
        values: Iterable[str],
        *,
        channel: str | None,
        reason: str,
        today: date,
        now: datetime,
    ) -> list[Block]:
        """Remove the blocks on these values (addresses, contact ids), of one channel or all,
        keeping the reason; the blocks removed."""
        wanted = {v.strip().lower() for v in values if v.strip()}
        found = [
            b
            for b in self.blocks(values=wanted)
            + [b for v in wanted for b in self.blocks(contact_id=v) if b.channel == "letter"]
            if channel is None or b.channel == channel
        ]
        removed = list({(b.channel, b.value, b.postal_key): b for b in found}.values())
        with self._transaction(N_("remove blocks")) as conn:
            for b in removed:
                conn.execute(
                    "DELETE FROM blocks WHERE channel = ? AND value = ? AND postal_key = ?",
                    (b.channel, b.value, b.postal_key),
                )
                conn.execute(
                    "INSERT INTO undone (what, value, channel, was, reason, day, created_at) "
                    "VALUES ('block', ?, ?, ?, ?, ?, ?)",
                    (b.value, b.channel, b.reason, reason, today.isoformat(), _iso_utc(now)),
                )
        return removed

    def undone(self) -> list[tuple[str, str, str, str, str, date]]:
        """What the owner undid: (what, value, channel, was, reason, day), oldest first."""
        rows = self._query("SELECT what, value, channel, was, reason, day FROM undone ORDER BY id")
        return [(w, v, c, was, r, date.fromisoformat(d)) for w, v, c, was, r, d in rows]

    def feedback_kinds(self, *, since: date) -> dict[str, int]:
        """Kind → how many mails of it were read from `since` on (complaints, bounces...)."""
        rows = self._query(
            "SELECT kind, count(*) FROM feedback_seen WHERE day >= ? GROUP BY kind",
            (since.isoformat(),),
        )
        return {kind: int(n) for kind, n in rows}

    def emails_sent(self, *, since: date) -> int:
        """How many emails went out (or may have) from `since` on."""
        rows = self._query(
            "SELECT count(*) FROM messages WHERE channel = 'email' AND effective_date >= ? "  # noqa: S608
            f"AND status IN ({', '.join(repr(s) for s in COUNTED_STATUSES)})",
            (since.isoformat(),),
        )
        return int(rows[0][0])
