"""The ledger (what was sent to whom, when), the suppression list, and the workspace lock.

SQLite is the embedded store. Everything outside this module codes against `LedgerStore`, so a
server database can take its place for workspaces run from several machines.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from outreach.ledger.stored import stored_day, stored_time
from outreach.model.errors import LedgerError, LockError
from outreach.rules.cadence import PastMessage

if TYPE_CHECKING:
    from outreach.ledger.postgres import PgConnection
    from outreach.shards import Shard

STATUSES = ("rendered", "sending", "sent", "failed", "uncertain", "deferred", "missed", "skipped")
# A message in one of these states is never redone automatically: it went out (or may have),
# or its window closed. `failed`, `deferred` and `skipped` are looked at again on the next run.
DONE_STATUSES = frozenset({"rendered", "sending", "sent", "uncertain", "missed"})
# What counts toward a contact's pressure in the cadence policy: whatever reached them, or may
# have. `sending`/`uncertain` count because the contact may well have it in their inbox.
COUNTED_STATUSES = ("rendered", "sending", "sent", "uncertain")
CHANNELS = ("email", "letter")
SUPPRESSION_CHANNELS = ("email", "letter", "all")
LOCK_NAME = "run.lock"
_EMAIL_ONLY = frozenset({"email"})
_LETTER_ONLY = frozenset({"letter"})

# 'outr': marks the file as ours, so a stray SQLite file is not taken for a ledger.
_APPLICATION_ID = 0x6F757472
# hook: what moving a damaged ledger aside does, and the way that does not redo anything
LEDGER_DAMAGED_HINT = (
    "if the file is damaged, `outreach ledger rebuild` moves it aside and records again what "
    "out/ holds; moving it aside by hand starts an empty ledger, and the next run would make "
    "(and with SMTP send) every message in its window again"
)
_HINT_NEWER = (
    "this ledger was written by a newer version of outreach; upgrade outreach "
    "(pip install -U outreach) before running against this workspace"
)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message to one contact: its occurrence, channel, status and where it is."""

    contact_id: str
    campaign: str
    occurrence_key: str
    channel: str  # email | letter
    status: str
    run_date: date
    event_date: date | None = None
    earliest: date | None = None
    latest: date | None = None
    artifact: str | None = None  # path relative to the workspace root
    message_id: str | None = None
    reason: str | None = None
    error: str | None = None
    essential: bool = False
    # When it reaches the contact (letters: run_date + delivery_days); cadence counts this day.
    # Stored as run_date when not given, so a message can never escape the cadence policy.
    effective_date: date | None = None
    updated_at: datetime | None = None
    # Why it was held back, as data (an outreach.model.reasons.Code value); `reason` is its sentence.
    # A missed message keeps the code of what deferred it; `window_closed` when nothing did.
    reason_code: str | None = None
    # The legal basis it went on (outreach.rules.legal), kept as proof: "consent 2025-03-01
    # formulario web", "service", … with config legal.consent_text_version after " · text ".
    basis: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """(contact_id, campaign, occurrence_key): what makes a message unique."""
        return (self.contact_id, self.campaign, self.occurrence_key)


# Why an address or a postal address is blocked (see outreach.feedback): data, not sentences.
BLOCK_REASONS = ("hard-bounce", "soft-bounces", "complaint", "returned-letter")
BOUNCE_KINDS = ("hard", "soft")


@dataclass(frozen=True, slots=True)
class BounceEvent:
    """One bounce counted against an address: a hard one (5.x.x) or a soft one (4.x.x)."""

    address: str  # lower-cased
    contact_id: str
    day: date
    kind: str  # hard | soft
    campaign: str | None = None
    occurrence_key: str | None = None
    status: str | None = None  # e.g. 5.1.1, or the SMTP reply code
    diagnostic: str | None = None
    kept: str | None = None  # the bounce as received, relative to the workspace root
    source: str = ""  # the bounce's fingerprint, or `smtp` for a refusal at sending time


@dataclass(frozen=True, slots=True)
class Block:
    """An address blocked for a channel, and why.

    Email: `value` is the address (a new address in contacts.csv starts clean). Letter: the
    contact id with `postal_key`, the address the post returned (a changed address starts
    clean). All: a complaint about the contact (also on the suppression list).
    """

    channel: str  # email | letter | all
    value: str
    contact_id: str
    reason: str  # one of BLOCK_REASONS
    day: date
    postal_key: str = ""
    status: str | None = None
    diagnostic: str | None = None
    kept: str | None = None
    score: float | None = None
    reported: date | None = None  # the bounce's own Date (`day` is when outreach read it)


REPLY_STATUSES = ("open", "done", "stopped", "recorded")


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """One reply a person wrote, what outreach made of it, and where the owner left it."""

    fingerprint: str
    contact_id: str
    sender: str  # lower-cased
    received: date  # the day outreach read it
    subject: str
    excerpt: str
    kind: str  # outreach.feedback.replies.KINDS
    status: str  # one of REPLY_STATUSES
    mailbox: str
    campaign: str | None = None  # of the message it answers
    occurrence_key: str | None = None
    message_id: str | None = None  # the reply's own
    written: date | None = None  # its Date header's day
    evidence: str | None = None  # the sentence that decided its kind
    kept: str | None = None
    note: str | None = None
    id: int | None = None


def email_block_key(address: str) -> str:
    """The key under which `suppressions()` lists an address blocked for email.

    NUL cannot occur in an address or a contact id, so a block never reads as an opt-out
    (an opt-out has no fallback; a bounced address lets a letter take over).
    """
    return "\x00blocked-email\x00" + address.strip().lower()


def letter_block_key(contact_id: str, postal_key: str) -> str:
    """The key under which `suppressions()` lists a contact's postal address the post returned."""
    return "\x00blocked-letter\x00" + contact_id.lower() + "\x00" + postal_key


class LedgerStore(Protocol):
    """What the rest of outreach needs from a ledger; SQLite today, maybe a server DB later."""

    def close(self) -> None: ...
    def begin_run(self, *, run_date: date, started_at: datetime, args: Sequence[str]) -> int: ...
    def end_run(self, run_id: int, *, ended_at: datetime, counts: Mapping[str, object]) -> None: ...
    def statuses_for(
        self, campaign: str, *, occurrence_keys: Iterable[str] | None = None
    ) -> dict[tuple[str, str], str]: ...
    def record(self, records: Iterable[MessageRecord], *, run_id: int | None = None) -> None: ...
    def set_status(
        self,
        *,
        contact_id: str,
        campaign: str,
        occurrence_key: str,
        status: str,
        error: str | None = None,
        reason: str | None = None,
        now: datetime,
    ) -> None: ...
    def settle_interrupted(self, *, now: datetime) -> int: ...
    def mark_missed(self, *, today: date, now: datetime) -> int: ...
    def mark_unsent_missed(self, *, today: date, now: datetime) -> int: ...
    def waiting_emails(self, *, today: date, uncertain: bool = False) -> list[MessageRecord]: ...
    def open_uncertain_emails(self, *, today: date) -> list[MessageRecord]: ...
    def interrupted_runs(self) -> list[tuple[int, date]]: ...
    def artifacts_of_run_date(self, run_date: date) -> set[str]: ...
    def messages(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        since: date | None = None,
        statuses: Iterable[str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[MessageRecord]: ...
    def count_messages(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        since: date | None = None,
        statuses: Iterable[str] | None = None,
    ) -> dict[str, int]: ...
    def contact_pressure(self, *, since: date) -> dict[str, list[tuple[date, str, bool]]]: ...
    def suppress(self, value: str, *, channel: str, source: str, now: datetime) -> bool: ...
    def suppressions(self) -> dict[str, frozenset[str]]: ...
    def runs(self, limit: int = 20) -> list[dict[str, object]]: ...
    def find_email(
        self, *, message_id: str | None = None, id_prefix: str | None = None
    ) -> MessageRecord | None: ...
    def bounce_events(self, addresses: Iterable[str]) -> dict[str, list[BounceEvent]]: ...
    def blocks(
        self, *, contact_id: str | None = None, values: Iterable[str] | None = None
    ) -> list[Block]: ...
    def feedback_seen(self, fingerprints: Iterable[str]) -> dict[str, str]: ...
    def record_feedback(
        self,
        *,
        events: Sequence[BounceEvent] = (),
        blocks: Sequence[Block] = (),
        suppressions: Sequence[tuple[str, str, str]] = (),
        seen: Sequence[tuple[str, str, date]] = (),
        now: datetime,
    ) -> None: ...
    # replies and undo (outreach.feedback.replies)
    def record_replies(
        self,
        replies: Sequence[ReplyRecord],
        *,
        suppressions: Sequence[tuple[str, str, str]] = (),
        now: datetime,
    ) -> None: ...
    def replies(
        self, *, contact_id: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[ReplyRecord]: ...
    def close_reply(
        self, reply_id: int, *, status: str, note: str | None, now: datetime
    ) -> ReplyRecord | None: ...
    def suppression_rows(self) -> list[tuple[str, str, str, str]]: ...
    def remove_suppressions(
        self, values: Iterable[str], *, reason: str, today: date, now: datetime
    ) -> list[tuple[str, str, str]]: ...
    def remove_blocks(
        self,
        values: Iterable[str],
        *,
        channel: str | None,
        reason: str,
        today: date,
        now: datetime,
    ) -> list[Block]: ...
    def undone(self) -> list[tuple[str, str, str, str, str, date]]: ...
    def feedback_kinds(self, *, since: date) -> dict[str, int]: ...
    def emails_sent(self, *, since: date) -> int: ...


# ---------------------------------------------------------------------------------------------
# Schema and migrations

# A migration takes a connection with `execute(sql)`: sqlite3's, or (outreach.ledger.postgres)
# one that writes each statement in PostgreSQL's words.
Migration = Callable[[Any], None]


def _v1_initial(conn: sqlite3.Connection) -> None:
    # OR chains, not IN (...): SQLite builds an IN list's lookup table again for every row
    # checked, which tripled the cost of recording a big batch.
    def one_of(column: str, values: Sequence[str]) -> str:
        return " OR ".join(f"{column} = '{value}'" for value in values)

    statements = [
        f"PRAGMA application_id = {_APPLICATION_ID}",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_date TEXT NOT NULL,       -- the run's "today" (--date stands in for it)
            started_at TEXT NOT NULL,     -- ISO 8601, UTC
            ended_at TEXT,                -- NULL while running, or if the run died
            args TEXT NOT NULL,           -- JSON array: the command line
            counts TEXT,                  -- JSON object: the run's summary
            pid INTEGER NOT NULL
        )""",
        f"""CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            contact_id TEXT NOT NULL,
            campaign TEXT NOT NULL,
            occurrence_key TEXT NOT NULL,
            channel TEXT NOT NULL CHECK ({one_of("channel", CHANNELS)}),
            status TEXT NOT NULL CHECK ({one_of("status", STATUSES)}),
            run_date TEXT NOT NULL,       -- the run that last wrote the row
            event_date TEXT,
            earliest TEXT,
            latest TEXT,
            effective_date TEXT NOT NULL, -- when it reaches the contact; cadence counts this
            essential INTEGER NOT NULL DEFAULT 0,
            artifact TEXT,                -- relative to the workspace root
            message_id TEXT,
            reason TEXT,
            error TEXT,
            run_id INTEGER REFERENCES runs (id),
            created_at TEXT NOT NULL,     -- ISO 8601, UTC; kept from the first insert
            updated_at TEXT NOT NULL,
            -- Campaign first: a campaign's rows land side by side in this index, so a big
            -- batch appends to it instead of touching every page; statuses_for reads a range.
            UNIQUE (campaign, contact_id, occurrence_key)
        )""",
        "CREATE INDEX messages_by_contact ON messages (contact_id)",
        # Cadence reads the last weeks of messages: a short range at the end of this index,
        # which also holds every column the query needs (3x faster than looking up each row).
        "CREATE INDEX messages_by_effective_date "
        "ON messages (effective_date, status, contact_id, campaign, essential)",
        f"""CREATE TABLE suppressions (
            value TEXT NOT NULL,          -- lower-cased email address or contact id
            channel TEXT NOT NULL CHECK ({one_of("channel", SUPPRESSION_CHANNELS)}),
            source TEXT NOT NULL,         -- who asked: cli, unsubscribe link, bounce...
            created_at TEXT NOT NULL,
            PRIMARY KEY (value, channel)
        ) WITHOUT ROWID""",
    ]
    for statement in statements:
        conn.execute(statement)


def _v2_waiting_index(conn: sqlite3.Connection) -> None:
    # Every run looks for messages still waiting (deferred, failed, rendered but unsent,
    # sending) to retry, send or mark missed. A partial index keeps that a short range read
    # on a ledger of millions of finished rows, and costs nothing for the finished ones.
    conn.execute(
        "CREATE INDEX messages_waiting ON messages (status, latest) "
        "WHERE status = 'deferred' OR status = 'failed' OR status = 'rendered' "
        "OR status = 'sending'"
    )


def _v3_uncertain_waits_too(conn: sqlite3.Connection) -> None:
    # `uncertain` emails are reported by every run and send while their window is open:
    # the same short range read as the other waiting statuses.
    conn.execute("DROP INDEX messages_waiting")
    conn.execute(
        "CREATE INDEX messages_waiting ON messages (status, latest) "
        "WHERE status = 'deferred' OR status = 'failed' OR status = 'rendered' "
        "OR status = 'sending' OR status = 'uncertain'"
    )


def _v4_feedback(conn: sqlite3.Connection) -> None:
    # What comes back (outreach.feedback): bounces counted per address, blocks with their
    # reason, and the fingerprints of mail already read so reading it again changes nothing.
    statements = [
        """CREATE TABLE bounce_events (
            id INTEGER PRIMARY KEY,
            address TEXT NOT NULL,        -- lower-cased
            contact_id TEXT NOT NULL,
            campaign TEXT,
            occurrence_key TEXT,
            day TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind = 'hard' OR kind = 'soft'),
            status TEXT,
            diagnostic TEXT,
            kept TEXT,                    -- the bounce as received, relative to the root
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX bounce_events_by_address ON bounce_events (address, day)",
        """CREATE TABLE blocks (
            channel TEXT NOT NULL CHECK (channel = 'email' OR channel = 'letter'
                OR channel = 'all'),
            value TEXT NOT NULL,          -- address (email) or contact id (letter, all)
            postal_key TEXT NOT NULL DEFAULT '',
            contact_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            day TEXT NOT NULL,
            status TEXT,
            diagnostic TEXT,
            kept TEXT,
            score REAL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (channel, value, postal_key)
        ) WITHOUT ROWID""",
        "CREATE INDEX blocks_by_contact ON blocks (contact_id)",
        """CREATE TABLE feedback_seen (
            fingerprint TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            day TEXT NOT NULL,
            created_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        # Bounces quote the Message-ID (or carry its first digits in a VERP token).
        "CREATE INDEX messages_by_message_id ON messages (message_id) WHERE message_id IS NOT NULL",
    ]
    for statement in statements:
        conn.execute(statement)


def _v5_run_scope(conn: sqlite3.Connection) -> None:
    # Sharded runs (outreach.shards) share a ledger: each run says which part of the workspace
    # it covered and on which machine, so recovery undoes only its own scope's dead runs.
    conn.execute("ALTER TABLE runs ADD COLUMN scope TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE runs ADD COLUMN host TEXT")


def _v6_reason_code(conn: sqlite3.Connection) -> None:
    # Why a message was held back, as a code (outreach.model.reasons.Code) beside its sentence, so
    # what reads the ledger (the report) never parses sentences. Rows written before it get
    # their code from the sentences this version's runs wrote, once, here.
    conn.execute("ALTER TABLE messages ADD COLUMN reason_code TEXT")
    conn.execute(
        "UPDATE messages SET reason_code = CASE "
        "WHEN reason LIKE '%min\\_gap\\_days%' ESCAPE '\\' THEN 'min_gap' "
        "WHEN reason LIKE '%max\\_messages%' ESCAPE '\\' THEN 'max_messages' "
        "WHEN reason LIKE '%quiet day%' THEN 'quiet_day' "
        "WHEN reason LIKE 'window closed%' THEN 'window_closed' "
        "WHEN reason LIKE 'opted out%' THEN 'opted_out' END "
        "WHERE reason IS NOT NULL AND status IN ('deferred', 'missed', 'skipped')"
    )


def _v7_replies(conn: sqlite3.Connection) -> None:
    # Replies people write (outreach.feedback.replies): the owner's queue and the evidence of
    # every stop request; what was undone (a suppression lifted, a block removed) with the
    # owner's reason; and a block's own bounce date beside the day outreach read it.
    statements = [
        """CREATE TABLE replies (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            message_id TEXT,              -- the reply's own Message-ID
            contact_id TEXT NOT NULL,
            campaign TEXT,                -- of the message it answers
            occurrence_key TEXT,
            sender TEXT NOT NULL,
            received TEXT NOT NULL,       -- the day outreach read it
            written TEXT,                 -- its own Date header's day
            subject TEXT NOT NULL,
            excerpt TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,         -- open | done | stopped | recorded
            evidence TEXT,                -- the sentence that decided its kind
            mailbox TEXT NOT NULL,
            kept TEXT,
            note TEXT,
            closed_at TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX replies_by_message_id ON replies (message_id) "
        "WHERE message_id IS NOT NULL",
        "CREATE INDEX replies_by_contact ON replies (contact_id)",
        "CREATE INDEX replies_by_status ON replies (status, received)",
        """CREATE TABLE undone (
            id INTEGER PRIMARY KEY,
            what TEXT NOT NULL,           -- suppression | block
            value TEXT NOT NULL,
            channel TEXT NOT NULL,
            was TEXT NOT NULL,            -- the suppression's source, the block's reason
            reason TEXT NOT NULL,         -- the owner's
            day TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "ALTER TABLE blocks ADD COLUMN reported TEXT",
    ]
    for statement in statements:
        conn.execute(statement)


def _v8_basis(conn: sqlite3.Connection) -> None:
    # The legal basis each message went on (outreach.rules.legal), kept with it as proof.
    conn.execute("ALTER TABLE messages ADD COLUMN basis TEXT")


# MIGRATIONS[i] takes a ledger from schema version i to i + 1. Append, never edit.
MIGRATIONS: tuple[Migration, ...] = (
    _v1_initial,
    _v2_waiting_index,
    _v3_uncertain_waits_too,
    _v4_feedback,
    _v5_run_scope,
    _v6_reason_code,
    _v7_replies,
    _v8_basis,
)
SCHEMA_VERSION = len(MIGRATIONS)


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
                    f"the ledger has schema version {version}, this outreach knows "
                    f"up to {len(migrations)}",
                    path=path,
                    hint=_HINT_NEWER,
                )
            if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise LedgerError(
                    "this SQLite file is not an outreach ledger",
                    path=path,
                    hint="point paths.state in config.yaml at a folder of its own",
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
            f"cannot prepare the ledger: {exc}",
            path=path,
            hint=LEDGER_DAMAGED_HINT,
        ) from exc
    return len(migrations)


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


def _day(text: str | None, *, table: str, row: str) -> date | None:
    return stored_day(text, table=table, row=row) if text is not None else None


_MESSAGE_COLUMNS = (
    "contact_id, campaign, occurrence_key, channel, status, run_date, event_date, earliest, "
    "latest, artifact, message_id, reason, error, essential, effective_date, updated_at, "
    "reason_code, basis"
)

# The f-strings below only join this module's constants; values always go in as parameters.
_UPSERT = f"""
INSERT INTO messages ({_MESSAGE_COLUMNS}, run_id, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?16)
ON CONFLICT (campaign, contact_id, occurrence_key) DO UPDATE SET
    channel = excluded.channel, status = excluded.status, run_date = excluded.run_date,
    event_date = excluded.event_date, earliest = excluded.earliest, latest = excluded.latest,
    artifact = excluded.artifact, message_id = excluded.message_id, reason = excluded.reason,
    error = excluded.error, essential = excluded.essential,
    effective_date = excluded.effective_date, updated_at = excluded.updated_at,
    reason_code = excluded.reason_code, basis = excluded.basis,
    run_id = coalesce(excluded.run_id, messages.run_id)
"""  # noqa: S608

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
_CLAIM = f"{_UPSERT}WHERE NOT {_HELD} RETURNING contact_id, campaign, occurrence_key"
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
_CLOSE_WINDOWS = (
    "UPDATE messages SET status = 'missed', updated_at = ?, run_date = ?, "  # noqa: S608
    "run_id = ?, reason = 'window closed while deferred: ' || coalesce(reason, '') "
    f"WHERE status = 'deferred' AND latest < ? RETURNING {_MESSAGE_COLUMNS}"
)
_SELECT_BOUNCES = (
    "SELECT address, contact_id, day, kind, campaign, occurrence_key, status, diagnostic, "
    "kept, source FROM bounce_events"
)

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


# Occurrence keys per query in `statuses_for`: well under SQLite's limit on parameters.
_KEYS_PER_QUERY = 500


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
                raise ValueError(f"{r.key}: a record needs updated_at or a run_id")
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


# ---------------------------------------------------------------------------------------------
# The SQLite ledger


# A ledger up to this size is copied into memory for a read-only open; a larger one into a
# private temporary file, so `plan` on a ledger of millions of rows does not hold it in RAM.
_MEMORY_COPY_LIMIT = 32 * 1024 * 1024
_T = TypeVar("_T")


class Ledger:
    """The SQLite ledger: messages, runs and suppressions in one file (state/ledger.sqlite)."""

    def __init__(
        self,
        conn: sqlite3.Connection | PgConnection,
        *,
        path: Path | str,
        readonly: bool,
        errors: tuple[type[Exception], ...] = (sqlite3.Error,),
    ) -> None:
        self._conn: Any = conn
        self.path = path  # the file, or (PostgreSQL) the URL without its password
        self.readonly = readonly
        self._errors = errors
        self._run_started: dict[int, str] = {}
        self._closed = False
        # The part of the workspace this process's runs cover (outreach.shards); None: all of it.
        self.shard: Shard | None = None
        # How a forked worker opens a connection of its own (None: a private copy, which no
        # other process can reach), and that connection once it has one.
        self.reopen: Callable[[], Any] | None = None
        self._pid = os.getpid()
        self._worker_conn: tuple[int, Any] | None = None

    @classmethod
    def connect(cls, url: str, *, readonly: bool = False) -> Ledger:
        """Open (creating the schema) the ledger in the PostgreSQL database at `url`.

        `readonly` works inside one transaction that is never committed: its writes vanish.
        """
        from outreach.ledger import postgres

        where = postgres.redact(url)
        conn = postgres.PgConnection(postgres.connect(url), readonly=readonly)
        try:
            postgres.apply_pg_migrations(conn, where=where, migrations=MIGRATIONS)
        except BaseException:
            conn.close()
            raise
        ledger = cls(conn, path=where, readonly=readonly, errors=postgres.errors())
        if not readonly:
            ledger.reopen = lambda: postgres.PgConnection(postgres.connect(url), readonly=False)
        return ledger

    @property
    def scope(self) -> str:
        """'' for a run of the whole workspace, else its shard's label (shard-2-of-4)."""
        return self.shard.label if self.shard is not None else ""

    def _mine(self, contact_id: str) -> bool:
        return self.shard is None or self.shard.contains(contact_id)

    @classmethod
    def open(
        cls, path: Path, *, readonly: bool = False, memory_copy_limit: int = _MEMORY_COPY_LIMIT
    ) -> Ledger:
        """Open (creating folders and schema) the ledger at `path`.

        `readonly` never writes to the workspace: the ledger is a private copy of the file
        (empty if there is none) — in memory up to `memory_copy_limit` bytes, else in SQLite's
        private temporary file — so a dry run or a plan goes through the same
        steps as a real run and its writes vanish on close.
        """
        try:
            conn = (
                _open_copy(path, memory_limit=memory_copy_limit) if readonly else _open_file(path)
            )
        except sqlite3.Error as exc:
            raise LedgerError(
                f"cannot open the ledger: {exc}",
                path=path,
                hint=LEDGER_DAMAGED_HINT,
            ) from exc
        try:
            apply_migrations(conn, path=path)
        except BaseException:
            conn.close()
            raise
        ledger = cls(conn, path=path, readonly=readonly)
        if not readonly:
            ledger.reopen = lambda: _open_file(path)
        return ledger

    @classmethod
    def read(cls, path: Path, reader: Callable[[Ledger], _T]) -> _T:
        """What `reader` reads from the ledger at `path`, without copying it when it can.

        A plan or a report only reads, and copying a large ledger (`open(readonly=True)`) costs
        more than the reading: a quiet ledger file (no run writing it: no -wal) is read in
        place, immutable, and the read is kept only if the file did not change meanwhile;
        otherwise, and for a ledger whose schema is not this version's, it is read from a copy.
        """
        wal = path.with_name(path.name + "-wal")
        if path.exists() and not wal.exists():
            before = path.stat()
            found: list[_T] = []
            with suppress(sqlite3.Error):
                conn = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None
                )
                try:
                    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                        found.append(reader(cls(conn, path=path, readonly=True)))
                finally:
                    conn.close()
            after = path.stat()
            if found and not wal.exists() and _same_file(before, after):
                return found[0]
        with cls.open(path, readonly=True) as ledger:
            return reader(ledger)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if not self.readonly:
            # Cheap, and keeps the query planner's statistics fresh for the indexes.
            with suppress(sqlite3.Error):
                self._conn.execute("PRAGMA optimize")
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> Any:
        """This process's connection. A forked worker never touches its parent's (a SQLite
        connection or a server session must not be shared across processes): it opens its
        own on first use."""
        pid = os.getpid()
        if pid == self._pid or self.reopen is None:
            return self._conn
        if self._worker_conn is None or self._worker_conn[0] != pid:
            try:
                self._worker_conn = (pid, self.reopen())
            except sqlite3.Error as exc:
                raise LedgerError(
                    f"cannot open the ledger: {exc}", path=self.path, hint=LEDGER_DAMAGED_HINT
                ) from exc
        return self._worker_conn[1]

    @contextmanager
    def _transaction(self, what: str, *, conn: Any = None) -> Iterator[sqlite3.Connection]:
        conn = self._conn if conn is None else conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except self._errors as exc:
            raise LedgerError(
                f"cannot {what}: {_first_line(exc)}",
                path=self.path,
                hint=self._hint(exc),
            ) from exc

    def _hint(self, exc: Exception) -> str | None:
        if isinstance(self.path, Path):
            return "check that the disk has room and the state folder is writable"
        from outreach.ledger.postgres import hint_for

        return hint_for(exc)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return list(self._conn.execute(sql, params).fetchall())
        except self._errors as exc:
            raise LedgerError(
                f"cannot read the ledger: {_first_line(exc)}",
                path=self.path,
                hint=None if isinstance(self.path, Path) else self._hint(exc),
            ) from exc

    # -- runs ------------------------------------------------------------------------------

    def begin_run(self, *, run_date: date, started_at: datetime, args: Sequence[str]) -> int:
        """Record the start of a run; return its id."""
        started = _iso_utc(started_at)
        with self._transaction("record the run") as conn:
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
        with self._transaction("record the end of the run") as conn:
            cursor = conn.execute(
                "UPDATE runs SET ended_at = ?, counts = ? WHERE id = ?",
                (_iso_utc(ended_at), json.dumps(counts, sort_keys=True, default=str), run_id),
            )
            if cursor.rowcount != 1:
                raise LedgerError(f"there is no run {run_id} in the ledger", path=self.path)

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
    ) -> dict[tuple[str, str], str]:
        """(contact_id, occurrence_key) → status of a campaign's messages a run must not redo.

        Those in DONE_STATUSES, and failed emails whose file exists (the send step retries
        them from it). A message that failed before it was made (a template or layout error,
        a full disk) is made again by the next run, as are deferred and skipped ones.
        """
        return self._status_map(_DONE_FOR, campaign, occurrence_keys)

    def history(self, *, since: date) -> dict[str, list[PastMessage]]:
        """contact_id → the messages that weigh on their cadence from `since` on."""
        return {
            contact_id: [
                PastMessage(effective_date=day, campaign=name, essential=essential)
                for day, name, essential in rows
            ]
            for contact_id, rows in self.contact_pressure(since=since).items()
        }

    def close_windows(self, *, today: date, now: datetime, run_id: int) -> list[MessageRecord]:
        """Turn deferred messages whose window closed before today into `missed`, dated and
        owned by this run; return them. A message is never sent late."""
        stamp = _iso_utc(now)
        params = (stamp, today.isoformat(), run_id, today.isoformat())
        rows: list[Any] = []
        with self._transaction("mark missed messages") as conn:
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
        return [_message_from_row(row) for row in rows]

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
        default_stamp = self._run_stamp(run_id) if run_id is not None else None
        rows = _record_rows(records, default_stamp=default_stamp, run_id=run_id)
        with self._transaction("record messages") as conn:
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
        rows = _record_rows(ordered, default_stamp=self._run_stamp(run_id), run_id=run_id)
        granted: set[tuple[str, str, str]] = set()
        with self._transaction("claim messages", conn=self._connection()) as conn:
            for row in rows:
                found = conn.execute(_CLAIM, row).fetchone()
                if found is not None:
                    granted.add((found[0], found[1], found[2]))
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
        with self._transaction("record messages", conn=self._connection()) as conn:
            for row in params:
                conn.execute(_SETTLE_CLAIM, row)

    def claim_sending(self, record: MessageRecord, *, uncertain: bool, now: datetime) -> bool:
        """Mark an email `sending` if it is still one the send step may send (`uncertain`:
        those too); False when another send step has it (or it changed meanwhile)."""
        sendable = "'rendered', 'failed', 'uncertain'" if uncertain else "'rendered', 'failed'"
        with self._transaction("update a message") as conn:
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
            raise LedgerError(f"there is no run {run_id} in the ledger", path=self.path)
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
        changed = 0
        with self._transaction("recover interrupted messages") as conn:
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
                raise LedgerError(f"there is no run {run_id} in the ledger", path=self.path)
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
            raise ValueError(f"unknown status {status!r}")
        with self._transaction("update a message") as conn:
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
                    f"there is no message {campaign}/{occurrence_key} for contact "
                    f"{contact_id} in the ledger",
                    path=self.path,
                )

    def settle_interrupted(self, *, now: datetime) -> int:
        """Mark messages a dead run left in `sending` as `uncertain`; return how many.

        Call it only while holding the workspace lock: then no live process is sending them.
        """
        sql = (
            "UPDATE messages SET status = 'uncertain', updated_at = ?, "
            "error = 'the run died while handing the message to the mail server' "
            "WHERE status = 'sending'"
        )
        with self._transaction("settle interrupted messages") as conn:
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

    def mark_missed(self, *, today: date, now: datetime) -> int:
        """Turn deferred messages whose window closed before today into `missed`; return how many.

        A message is never sent late: once its last day has passed it stays missed.
        """
        with self._transaction("mark missed messages") as conn:
            cursor = conn.execute(
                "UPDATE messages SET status = 'missed', updated_at = ?, "
                "reason = 'window closed while deferred: ' || coalesce(reason, '') "
                "WHERE status = 'deferred' AND latest < ?",
                (_iso_utc(now), today.isoformat()),
            )
        return cursor.rowcount

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
            "reason = 'window closed before it was sent', reason_code = 'window_closed' " + where
        )
        params = (_iso_utc(now), today.isoformat())
        with self._transaction("mark unsent emails missed") as conn:
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
                "nothing to unsubscribe", hint="give an email address or a contact id"
            )
        if channel not in SUPPRESSION_CHANNELS:
            raise LedgerError(
                f"unknown channel {channel!r}", hint=f"use one of {', '.join(SUPPRESSION_CHANNELS)}"
            )
        with self._transaction("update the suppression list") as conn:
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
                raise ValueError(f"unknown block {block.channel}/{block.reason}")
        with self._transaction("record bounces and blocks") as conn:
            conn.executemany(
                "INSERT INTO bounce_events (address, contact_id, campaign, occurrence_key, day, "
                "kind, status, diagnostic, kept, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.address.lower(),
                        e.contact_id,
                        e.campaign,
                        e.occurrence_key,
                        e.day.isoformat(),
                        e.kind,
                        e.status,
                        e.diagnostic,
                        e.kept,
                        e.source,
                        stamp,
                    )
                    for e in events
                ],
            )
            conn.executemany(
                "INSERT INTO blocks (channel, value, postal_key, contact_id, reason, "
                "day, status, diagnostic, kept, score, created_at, reported) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (
                        b.channel,
                        b.value.lower(),
                        b.postal_key,
                        b.contact_id,
                        b.reason,
                        b.day.isoformat(),
                        b.status,
                        b.diagnostic,
                        b.kept,
                        b.score,
                        stamp,
                        b.reported.isoformat() if b.reported else None,
                    )
                    for b in blocks
                ],
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
        with self._transaction("record replies") as conn:
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
            raise ValueError(f"unknown reply status {status!r}")
        with self._transaction("update the reply") as conn:
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
        with self._transaction("update the suppression list") as conn:
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
        with self._transaction("remove blocks") as conn:
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


def _open_file(path: Path) -> sqlite3.Connection:
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
            raise LockError("the workspace lock is already held by this run", path=self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # os.open's descriptors are not inherited by child processes, so a program the run
            # starts cannot keep the lock alive after the run ends.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(
                f"cannot open the lock file: {exc.strerror}",
                path=self.path,
                hint="check that the state folder is writable",
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise LockError(
                        _describe_holder(fd),
                        path=self.path,
                        hint="wait for that run to finish and try again; the lock is released "
                        "by itself when its process ends, even if it is killed",
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
    message = "another run is in progress"
    # The holder writes its details right after it takes the lock: a run that lost the race by
    # a hair may look before they are there, so it looks again for a moment.
    for _ in range(50):
        try:
            holder = json.loads(os.pread(fd, 4096, 0))
            since = datetime.fromisoformat(holder["since"]).strftime("%Y-%m-%d %H:%M:%S")
            return f"{message} (pid {int(holder['pid'])}, since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.02)
    return message


@contextmanager
def acquire_lock(state_dir: Path, *, now: datetime, wait: bool = False) -> Iterator[WorkspaceLock]:
    """Hold the workspace lock for the `with` block; LockError if another run holds it."""
    lock = WorkspaceLock(state_dir)
    lock.acquire(now=now, wait=wait)
    try:
        yield lock
    finally:
        lock.release()


if TYPE_CHECKING:

    def _implements_ledger_store(ledger: Ledger) -> LedgerStore:
        return ledger  # mypy checks that Ledger has everything LedgerStore promises
