"""What came of the messages: the coupon index, redemptions and visits, in the ledger.

Self-contained SQL over a connection with `execute(sql, params)` and `executemany`: sqlite3's,
or outreach.ledger.postgres's (which translates `?` and the DDL). `create_tables` is the
schema migration; the rest are the statements the outcomes package needs, each in one
transaction so a killed import or redemption leaves nothing half-written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from outreach.i18n import _
from outreach.model.errors import LedgerError

if TYPE_CHECKING:
    pass

# A message's code was given out: its file exists, or it went.
ISSUED_STATUSES = ("rendered", "sending", "sent", "uncertain")
_ISSUED = "('rendered', 'sending', 'sent', 'uncertain')"
CONTROL_CODE = "control"  # model.reasons.Code.CONTROL: a held-out row (status skipped)


def create_tables(conn: Any) -> None:
    """The outcome tables (a ledger migration)."""
    statements = [
        # Which message a code belongs to, filled from `messages` when a code is looked up
        # (codes depend on the secret, which the ledger does not keep).
        """CREATE TABLE coupons (
            message_row INTEGER PRIMARY KEY, -- messages.id: appended in order, read up to here
            campaign TEXT NOT NULL,       -- the message's key, checked on every join (a
            contact_id TEXT NOT NULL,     -- rebuilt ledger numbers its rows anew)
            occurrence_key TEXT NOT NULL,
            code TEXT NOT NULL            -- the code's symbols, no prefix, no dashes
        )""",  # not translated: SQL
        "CREATE INDEX coupons_by_code ON coupons (code)",
        # One row per code: the primary key is what lets only one till win.
        """CREATE TABLE redemptions (
            code TEXT NOT NULL PRIMARY KEY,
            campaign TEXT NOT NULL,
            contact_id TEXT NOT NULL,
            occurrence_key TEXT NOT NULL,
            day TEXT NOT NULL,
            amount_cents INTEGER,
            till TEXT,
            created_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX redemptions_by_campaign ON redemptions (campaign, day)",
        # A visit is known by what it says (contact, day, amount, code): importing the same
        # export, or one that overlaps it, adds each visit once.
        """CREATE TABLE visits (
            fingerprint TEXT NOT NULL PRIMARY KEY,
            contact_id TEXT NOT NULL,
            day TEXT NOT NULL,
            amount_cents INTEGER,
            code TEXT,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX visits_by_contact ON visits (contact_id, day)",
    ]
    for statement in statements:
        conn.execute(statement)


class Connected(Protocol):
    """A ledger whose connection the outcomes' own SQL uses."""

    path: Path | str

    def connection(self) -> Any: ...
    @property
    def database_errors(self) -> tuple[type[Exception], ...]: ...


@contextmanager
def opened(ledger: Connected, what: str) -> Iterator[Any]:
    """The ledger's connection, its database errors turned into a LedgerError saying `what`."""
    caught: tuple[type[Exception], ...] = (sqlite3.Error, *ledger.database_errors)
    try:
        conn = ledger.connection()
        if isinstance(conn, sqlite3.Connection):
            # The ledger runs PRAGMA optimize on close; on tables of a million rows (the coupon
            # index, the messages) its ANALYZE would cost a redemption a second. A sample of
            # rows is enough for the query planner (SQLite's advice for optimize).
            conn.execute("PRAGMA analysis_limit = 1000")
        yield conn
    except caught as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LedgerError(
            _("cannot {what}: {error}").format(what=_(what), error=first),
            path=ledger.path,
            hint=_("check that the disk has room and the ledger is reachable, then try again"),
        ) from exc


@contextmanager
def transaction(conn: Any) -> Iterator[Any]:
    """One write transaction (SQLite: taken at once, so concurrent writers queue; PostgreSQL
    locks rows as they are written)."""
    conn.execute("BEGIN IMMEDIATE" if isinstance(conn, sqlite3.Connection) else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# -- coupons -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    """A message whose code was given out: who, which campaign, when it reached them."""

    campaign: str
    contact_id: str
    occurrence_key: str
    channel: str
    effective_date: date


def index_coupons(conn: Any, code_of: Callable[[str, str, str], str]) -> int:
    """Add the codes of messages the index has not read yet, a chunk a transaction (a killed
    fill keeps what it did: the index is read up to its last row); how many it added."""
    added = 0
    while True:
        last = conn.execute("SELECT max(message_row) FROM coupons").fetchone()[0] or 0
        rows = conn.execute(
            "SELECT id, campaign, contact_id, occurrence_key FROM messages WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (last, _CHUNK),
        ).fetchall()
        added += _add_codes(conn, rows, code_of)
        if len(rows) < _CHUNK:
            return added


def index_missing_coupons(conn: Any, code_of: Callable[[str, str, str], str]) -> int:
    """Add the codes of every message the index lacks (after a ledger rebuild renumbered them)."""
    indexed = conn.execute("SELECT count(*) FROM coupons").fetchone()[0]
    if indexed >= conn.execute("SELECT count(*) FROM messages").fetchone()[0]:
        return 0  # the common case, answered from two counts instead of a scan
    # In the messages' order: two tills filling the index at once write the same rows in the
    # same order, so on PostgreSQL one waits for the other and neither deadlocks.
    rows = conn.execute(
        "SELECT m.id, m.campaign, m.contact_id, m.occurrence_key FROM messages m "
        "WHERE NOT EXISTS (SELECT 1 FROM coupons c WHERE c.message_row = m.id "
        "AND c.campaign = m.campaign AND c.contact_id = m.contact_id "
        "AND c.occurrence_key = m.occurrence_key) ORDER BY m.id"
    ).fetchall()
    return sum(
        _add_codes(conn, rows[start : start + _CHUNK], code_of)
        for start in range(0, len(rows), _CHUNK)
    )


_CHUNK = 20_000


def _add_codes(conn: Any, rows: Sequence[Any], code_of: Callable[[str, str, str], str]) -> int:
    if not rows:
        return 0
    values = [(row, name, who, key, code_of(name, who, key)) for row, name, who, key in rows]
    with transaction(conn):
        conn.executemany(
            "INSERT INTO coupons (message_row, campaign, contact_id, occurrence_key, code) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_row) DO UPDATE SET "
            "campaign = excluded.campaign, contact_id = excluded.contact_id, "
            "occurrence_key = excluded.occurrence_key, code = excluded.code",
            values,
        )
    return len(values)


def issued_with_code(conn: Any, code: str) -> list[Issued]:
    """The given-out messages whose code is `code` (one, but for a rare collision)."""
    rows = conn.execute(_ISSUED_WITH_CODE, (code,)).fetchall()
    return [Issued(r[0], r[1], r[2], r[3], date.fromisoformat(r[4])) for r in rows]


def known_codes(conn: Any, codes: Iterable[str]) -> set[str]:
    """Which of `codes` belong to a message in the index."""
    wanted = sorted(set(codes))
    found: set[str] = set()
    for start in range(0, len(wanted), 400):
        chunk = wanted[start : start + 400]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT DISTINCT code FROM coupons WHERE code IN ({marks})",  # noqa: S608
            chunk,
        ).fetchall()
        found.update(row[0] for row in rows)
    return found


_ISSUED_WITH_CODE = (
    "SELECT m.campaign, m.contact_id, m.occurrence_key, m.channel, m.effective_date "  # noqa: S608
    "FROM coupons c JOIN messages m ON m.id = c.message_row AND m.campaign = c.campaign "
    "AND m.contact_id = c.contact_id AND m.occurrence_key = c.occurrence_key "
    f"WHERE c.code = ? AND m.status IN {_ISSUED} ORDER BY m.effective_date DESC"
)


# -- redemptions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redemption:
    """A code redeemed: when, where, for how much."""

    code: str
    campaign: str
    contact_id: str
    occurrence_key: str
    day: date
    amount_cents: int | None
    till: str | None


def record_redemption(conn: Any, redemption: Redemption, *, now: datetime) -> Redemption | None:
    """Record a redemption unless the code has one: None when recorded, else the earlier one.

    The insert and the read of the winner are one transaction: of two tills redeeming at
    once, the primary key lets exactly one insert, and the other reads what it wrote.
    """
    r = redemption
    with transaction(conn):
        done = conn.execute(
            "INSERT INTO redemptions (code, campaign, contact_id, occurrence_key, day, "
            "amount_cents, till, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (
                r.code,
                r.campaign,
                r.contact_id,
                r.occurrence_key,
                r.day.isoformat(),
                r.amount_cents,
                r.till,
                _stamp(now),
            ),
        ).rowcount
        if done == 1:
            return None
        row = conn.execute(
            "SELECT code, campaign, contact_id, occurrence_key, day, amount_cents, till "
            "FROM redemptions WHERE code = ?",
            (r.code,),
        ).fetchone()
    return Redemption(row[0], row[1], row[2], row[3], date.fromisoformat(row[4]), row[5], row[6])


def earlier_redemption(conn: Any, code: str) -> Redemption | None:
    """The code's redemption, if it has one."""
    row = conn.execute(
        "SELECT code, campaign, contact_id, occurrence_key, day, amount_cents, till "
        "FROM redemptions WHERE code = ?",
        (code,),
    ).fetchone()
    if row is None:
        return None
    return Redemption(row[0], row[1], row[2], row[3], date.fromisoformat(row[4]), row[5], row[6])


def redemptions(conn: Any) -> list[Redemption]:
    """Every redemption, oldest first."""
    rows = conn.execute(
        "SELECT code, campaign, contact_id, occurrence_key, day, amount_cents, till "
        "FROM redemptions ORDER BY day, code"
    ).fetchall()
    return [Redemption(r[0], r[1], r[2], r[3], date.fromisoformat(r[4]), r[5], r[6]) for r in rows]


# -- visits ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visit:
    """One visit from a till's or booking system's export."""

    contact_id: str
    day: date
    amount_cents: int | None = None
    code: str | None = None

    @property
    def fingerprint(self) -> str:
        """What makes two lines the same visit."""
        amount = "" if self.amount_cents is None else str(self.amount_cents)
        return f"{self.contact_id}\x1f{self.day.isoformat()}\x1f{amount}\x1f{self.code or ''}"


def add_visits(conn: Any, visits: Sequence[Visit], *, source: str, now: datetime) -> int:
    """Add the visits the ledger lacks, all in one transaction; how many were new."""
    stamp = _stamp(now)
    with transaction(conn):
        before = conn.execute("SELECT count(*) FROM visits").fetchone()[0]
        conn.executemany(
            "INSERT INTO visits (fingerprint, contact_id, day, amount_cents, code, source, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                (
                    v.fingerprint,
                    v.contact_id,
                    v.day.isoformat(),
                    v.amount_cents,
                    v.code,
                    source,
                    stamp,
                )
                for v in visits
            ],
        )
        after = conn.execute("SELECT count(*) FROM visits").fetchone()[0]
    return int(after) - int(before)


def visits_between(conn: Any, *, start: date, end: date) -> list[tuple[str, date, int | None]]:
    """(contact id, day, amount in cents) of every visit from `start` to `end`, by contact."""
    rows = conn.execute(
        "SELECT contact_id, day, amount_cents FROM visits WHERE day >= ? AND day <= ? "
        "ORDER BY contact_id, day",
        (start.isoformat(), end.isoformat()),
    ).fetchall()
    return [(r[0], date.fromisoformat(r[1]), r[2]) for r in rows]


def latest_visits(conn: Any) -> dict[str, date]:
    """contact id → the day of their latest visit."""
    rows = conn.execute("SELECT contact_id, max(day) FROM visits GROUP BY contact_id").fetchall()
    return {r[0]: date.fromisoformat(r[1]) for r in rows}


# -- who got what, for results ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exposure:
    """A contact's first message of a campaign (treated) or first control decision (control)."""

    campaign: str
    contact_id: str
    day: date
    control: bool


def exposures(conn: Any, *, start: date, end: date) -> list[Exposure]:
    """Per campaign and contact, the first given-out message or held-out row whose window
    opened from `start` to `end`, as records (`exposure_rows` for the raw rows)."""
    return [
        Exposure(name, who, date.fromisoformat(day), bool(control))
        for name, who, day, control in exposure_rows(conn, start=start, end=end)
    ]


def exposure_rows(conn: Any, *, start: date, end: date) -> Iterable[tuple[str, str, str, int]]:
    """(campaign, contact id, ISO day, 1 if control) for each campaign and contact: the first
    given-out message or held-out row whose window opened from `start` to `end`.

    Both groups count from the window's first day (a control row is written again by every
    run inside its window; its first day does not move), so neither group's visits are counted
    from a later day than the other's. Streamed from SQLite: a million rows never sit in a list.
    """
    params = (start.isoformat(), end.isoformat(), CONTROL_CODE)
    if isinstance(conn, sqlite3.Connection):
        # Read in the table's order and grouped in a temporary tree: walking the unique
        # index instead looks each row up at random, four times slower on a million rows.
        return conn.execute(
            _EXPOSURES.replace("FROM messages", "FROM messages NOT INDEXED"), params
        )
    return list(conn.execute(_EXPOSURES, params).fetchall())


_EXPOSURES = (
    "SELECT campaign, contact_id, min(coalesce(earliest, effective_date)), "  # noqa: S608
    f"max(CASE WHEN status IN {_ISSUED} THEN 0 ELSE 1 END) FROM messages "
    "WHERE coalesce(earliest, effective_date) >= ? AND coalesce(earliest, effective_date) <= ? "
    f"AND (status IN {_ISSUED} OR (status = 'skipped' AND reason_code = ?)) "
    "GROUP BY campaign, contact_id"
)
