"""The ledger's schema: its tables, the values their columns take, and the migrations.

The migrations are written in SQLite's SQL; PostgreSQL's dialect (outreach.ledger.postgres)
writes each statement in its own words as it goes by. Append a migration, never edit one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

STATUSES = ("rendered", "sending", "sent", "failed", "uncertain", "deferred", "missed", "skipped")
# A message in one of these states is never redone automatically: it went out (or may have),
# or its window closed. `failed`, `deferred` and `skipped` are looked at again on the next run.
DONE_STATUSES = frozenset({"rendered", "sending", "sent", "uncertain", "missed"})
# What counts toward a contact's pressure in the cadence policy: whatever reached them, or may
# have. `sending`/`uncertain` count because the contact may well have it in their inbox.
COUNTED_STATUSES = ("rendered", "sending", "sent", "uncertain")
CHANNELS = ("email", "letter")
SUPPRESSION_CHANNELS = ("email", "letter", "all")
# Why an address or a postal address is blocked (see outreach.feedback): data, not sentences.
BLOCK_REASONS = ("hard-bounce", "soft-bounces", "complaint", "returned-letter")

# 'outr': marks the file as ours, so a stray SQLite file is not taken for a ledger.
APPLICATION_ID = 0x6F757472

# A migration takes a connection with `execute(sql)`: sqlite3's, or (outreach.ledger.postgres)
# one that writes each statement in PostgreSQL's words.
Migration = Callable[[Any], None]


def _v1_initial(conn: Any) -> None:
    # OR chains, not IN (...): SQLite builds an IN list's lookup table again for every row
    # checked, which tripled the cost of recording a big batch.
    def one_of(column: str, values: Sequence[str]) -> str:
        return " OR ".join(f"{column} = '{value}'" for value in values)

    statements = [
        f"PRAGMA application_id = {APPLICATION_ID}",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_date TEXT NOT NULL,       -- the run's "today" (--date stands in for it)
            started_at TEXT NOT NULL,     -- ISO 8601, UTC
            ended_at TEXT,                -- NULL while running, or if the run died
            args TEXT NOT NULL,           -- JSON array: the command line
            counts TEXT,                  -- JSON object: the run's summary
            pid INTEGER NOT NULL
        )""",  # not translated: SQL
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
        )""",  # not translated: SQL
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
        ) WITHOUT ROWID""",  # not translated: SQL
    ]
    for statement in statements:
        conn.execute(statement)


def _v2_waiting_index(conn: Any) -> None:
    # Every run looks for messages still waiting (deferred, failed, rendered but unsent,
    # sending) to retry, send or mark missed. A partial index keeps that a short range read
    # on a ledger of millions of finished rows, and costs nothing for the finished ones.
    conn.execute(
        "CREATE INDEX messages_waiting ON messages (status, latest) "
        "WHERE status = 'deferred' OR status = 'failed' OR status = 'rendered' "
        "OR status = 'sending'"
    )


def _v3_uncertain_waits_too(conn: Any) -> None:
    # `uncertain` emails are reported by every run and send while their window is open:
    # the same short range read as the other waiting statuses.
    conn.execute("DROP INDEX messages_waiting")
    conn.execute(
        "CREATE INDEX messages_waiting ON messages (status, latest) "
        "WHERE status = 'deferred' OR status = 'failed' OR status = 'rendered' "
        "OR status = 'sending' OR status = 'uncertain'"
    )


def _v4_feedback(conn: Any) -> None:
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
        )""",  # not translated: SQL
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
        ) WITHOUT ROWID""",  # not translated: SQL
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


def _v5_run_scope(conn: Any) -> None:
    # Sharded runs (outreach.shards) share a ledger: each run says which part of the workspace
    # it covered and on which machine, so recovery undoes only its own scope's dead runs.
    conn.execute("ALTER TABLE runs ADD COLUMN scope TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE runs ADD COLUMN host TEXT")


def _v6_reason_code(conn: Any) -> None:
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


# MIGRATIONS[i] takes a ledger from schema version i to i + 1. Append, never edit.
def _v7_replies(conn: Any) -> None:
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
        )""",  # not translated: SQL
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
        )""",  # not translated: SQL
        "ALTER TABLE blocks ADD COLUMN reported TEXT",
    ]
    for statement in statements:
        conn.execute(statement)


def _v8_outcomes(conn: Any) -> None:
    # What came of the messages: the coupon index, redemptions and visits (their SQL lives in
    # outreach.ledger.outcomes).
    from outreach.ledger.outcomes import create_tables

    create_tables(conn)


def _v9_basis(conn: Any) -> None:
    # The legal basis each message went on (outreach.rules.legal), kept with it as proof.
    conn.execute("ALTER TABLE messages ADD COLUMN basis TEXT")


def _v10_address_confirmations(conn: Any) -> None:
    # What the owner confirmed with `address_confirmed` (a postal code the address data
    # rejects): a fingerprint of the address as it was when a run first saw the date, so the
    # confirmation lapses when the address changes (outreach.rules.postal.address_fingerprint).
    conn.execute(
        """CREATE TABLE address_confirmations (
            contact_id TEXT NOT NULL PRIMARY KEY,
            confirmed TEXT NOT NULL,      -- the address_confirmed date it was seen with
            fingerprint TEXT NOT NULL,    -- SHA-256 of the address then
            created_at TEXT NOT NULL
        ) WITHOUT ROWID"""  # not translated: SQL
    )


MIGRATIONS: tuple[Migration, ...] = (
    _v1_initial,
    _v2_waiting_index,
    _v3_uncertain_waits_too,
    _v4_feedback,
    _v5_run_scope,
    _v6_reason_code,
    _v7_replies,
    _v8_outcomes,
    _v9_basis,
    _v10_address_confirmations,
)
SCHEMA_VERSION = len(MIGRATIONS)

# Every table a ledger holds, for copies (`outreach ledger copy`, a rehearsal's seed):
# table → (its columns, the column to page by, or None for a small table read at once).
# Not `coupons`: it is an index of the messages' codes, filled again from `messages` by the
# first code looked up in the copy.
TABLES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "runs": (
        ("id", "run_date", "started_at", "ended_at", "args", "counts", "pid", "scope", "host"),
        "id",
    ),
    "messages": (
        (
            *("id", "contact_id", "campaign", "occurrence_key", "channel", "status"),
            *("run_date", "event_date", "earliest", "latest", "effective_date", "essential"),
            *("artifact", "message_id", "reason", "error", "run_id", "created_at", "updated_at"),
            "reason_code",
            "basis",
        ),
        "id",
    ),
    "suppressions": (("value", "channel", "source", "created_at"), None),
    "bounce_events": (
        (
            *("id", "address", "contact_id", "campaign", "occurrence_key", "day", "kind"),
            *("status", "diagnostic", "kept", "source", "created_at"),
        ),
        "id",
    ),
    "blocks": (
        (
            *("channel", "value", "postal_key", "contact_id", "reason", "day", "status"),
            *("diagnostic", "kept", "score", "created_at", "reported"),
        ),
        None,
    ),
    "feedback_seen": (("fingerprint", "kind", "day", "created_at"), None),
    "replies": (
        (
            *("id", "fingerprint", "message_id", "contact_id", "campaign", "occurrence_key"),
            *("sender", "received", "written", "subject", "excerpt", "kind", "status"),
            *("evidence", "mailbox", "kept", "note", "closed_at", "created_at"),
        ),
        "id",
    ),
    "undone": (
        ("id", "what", "value", "channel", "was", "reason", "day", "created_at"),
        "id",
    ),
    "visits": (
        ("fingerprint", "contact_id", "day", "amount_cents", "code", "source", "created_at"),
        None,
    ),
    "address_confirmations": (("contact_id", "confirmed", "fingerprint", "created_at"), None),
    "redemptions": (
        (
            *("code", "campaign", "contact_id", "occurrence_key", "day", "amount_cents", "till"),
            "created_at",
        ),
        None,
    ),
}
