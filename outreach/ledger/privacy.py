"""What the ledger holds about one person, and erasing it (GDPR art. 15, 17, 20).

Self-contained: the statements are plain SQL that both the SQLite and the PostgreSQL ledger
take (`?` parameters; PgConnection translates them), run through the ledger's own connection.
`forget` first puts the person's salted hashes on the suppression list (so no run in between
can mail them), then the caller erases their files, then `erase_rows` deletes their rows:
each step can be repeated, so a forget killed at any point is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from outreach.i18n import N_
from outreach.ledger.sql import _SELECT_MESSAGES, _iso_utc, _message_from_row
from outreach.ledger.sql import SqlLedger as Ledger

FORGOTTEN_SOURCE = "forget"


@dataclass(frozen=True, slots=True)
class PersonRows:
    """Everything the ledger holds about one person, as JSON-ready rows per table."""

    messages: list[dict[str, Any]]
    suppressions: list[dict[str, Any]]
    blocks: list[dict[str, Any]]
    bounces: list[dict[str, Any]]
    replies: list[dict[str, Any]]

    @property
    def empty(self) -> bool:
        """Whether the ledger holds nothing about them."""
        return not (
            self.messages or self.suppressions or self.blocks or self.bounces or self.replies
        )

    def files(self) -> list[str]:
        """The files (relative to the workspace) the rows point at: messages, kept mails."""
        found = [m["artifact"] for m in self.messages if m.get("artifact")]
        for rows in (self.blocks, self.bounces, self.replies):
            found += [row["kept"] for row in rows if row.get("kept")]
        return list(dict.fromkeys(found))

    def counts(self) -> dict[str, int]:
        """How many rows of each kind."""
        return {
            "messages": len(self.messages),
            "suppressions": len(self.suppressions),
            "blocks": len(self.blocks),
            "bounces": len(self.bounces),
            "replies": len(self.replies),
        }


def _params(ids: Sequence[str], addresses: Sequence[str]) -> tuple[list[str], list[str]]:
    # The ids as written and lower-cased: `contact_id IN (…)` uses the contact index (an
    # export reads a person's thousand messages at once), and suppressions keep lower case.
    ids_folded = sorted({i for i in ids if i} | {i.lower() for i in ids if i})
    emails = sorted({a.strip().lower() for a in addresses if a and a.strip()})
    return ids_folded, emails


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")" if values else "(NULL)"


def _rows(
    ledger: Ledger, sql: str, params: Sequence[object], names: Sequence[str]
) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in ledger._query(sql, params)]


def person_rows(ledger: Ledger, *, ids: Sequence[str], addresses: Sequence[str]) -> PersonRows:
    """Every row about the contact ids (any case) and email addresses given."""
    from outreach.history import message_dict

    folded, emails = _params(ids, addresses)
    by_id = f"contact_id IN {_in(folded)}"
    messages = [
        message_dict(_message_from_row(row))
        for row in ledger._query(
            f"{_SELECT_MESSAGES} WHERE {by_id} ORDER BY run_date, campaign, occurrence_key", folded
        )
    ]
    values = [*folded, *emails]
    suppressions = _rows(
        ledger,
        f"SELECT value, channel, source, created_at FROM suppressions WHERE value IN {_in(values)}",  # noqa: S608
        values,
        ("value", "channel", "source", "created_at"),
    )
    blocks = _rows(
        ledger,
        "SELECT channel, value, contact_id, reason, day, status, kept FROM blocks "  # noqa: S608
        f"WHERE {by_id} OR value IN {_in(values)}",
        [*folded, *values],
        ("channel", "value", "contact_id", "reason", "day", "status", "kept"),
    )
    bounces = _rows(
        ledger,
        "SELECT address, contact_id, campaign, day, kind, status, diagnostic, kept "  # noqa: S608
        f"FROM bounce_events WHERE {by_id} OR address IN {_in(emails)} ORDER BY day",
        [*folded, *emails],
        ("address", "contact_id", "campaign", "day", "kind", "status", "diagnostic", "kept"),
    )
    replies = _rows(
        ledger,
        "SELECT sender, contact_id, campaign, received, subject, excerpt, kind, status, kept "  # noqa: S608
        f"FROM replies WHERE {by_id} OR lower(sender) IN {_in(emails)} ORDER BY received",
        [*folded, *emails],
        (
            "sender",
            "contact_id",
            "campaign",
            "received",
            "subject",
            "excerpt",
            "kind",
            "status",
            "kept",
        ),
    )
    return PersonRows(messages, suppressions, blocks, bounces, replies)


def forgotten_keys(ledger: Ledger) -> set[str]:
    """The suppression values `forget` left (salted hashes)."""
    rows = ledger._query("SELECT value FROM suppressions WHERE source = ?", (FORGOTTEN_SOURCE,))
    return {row[0] for row in rows}


def suppress_forgotten(ledger: Ledger, keys: Iterable[str], *, now: datetime) -> None:
    """Put the person's salted hashes on the suppression list (all channels), once."""
    stamp = _iso_utc(now)
    with ledger._transaction(N_("record the forgotten person")) as conn:
        for key in keys:
            found = conn.execute(
                "SELECT 1 FROM suppressions WHERE value = ? AND channel = 'all'", (key,)
            ).fetchone()
            if found is None:
                conn.execute(
                    "INSERT INTO suppressions (value, channel, source, created_at) "
                    "VALUES (?, 'all', ?, ?)",
                    (key, FORGOTTEN_SOURCE, stamp),
                )


def erase_rows(ledger: Ledger, *, ids: Sequence[str], addresses: Sequence[str]) -> int:
    """Delete every row about the person in one transaction; return how many."""
    folded, emails = _params(ids, addresses)
    values = [*folded, *emails]
    by_id = f"contact_id IN {_in(folded)}"
    statements: list[tuple[str, list[str]]] = [
        (f"DELETE FROM messages WHERE {by_id}", folded),  # noqa: S608
        # The address they confirmed (its fingerprint), their visits and coupons.
        (f"DELETE FROM address_confirmations WHERE {by_id}", folded),  # noqa: S608
        (f"DELETE FROM visits WHERE {by_id}", folded),  # noqa: S608
        (f"DELETE FROM redemptions WHERE {by_id}", folded),  # noqa: S608
        (f"DELETE FROM coupons WHERE {by_id}", folded),  # noqa: S608
        (f"DELETE FROM suppressions WHERE value IN {_in(values)}", values),  # noqa: S608
        (f"DELETE FROM undone WHERE value IN {_in(values)}", values),  # noqa: S608
        (f"DELETE FROM blocks WHERE {by_id} OR value IN {_in(values)}", [*folded, *values]),  # noqa: S608
        (
            f"DELETE FROM bounce_events WHERE {by_id} OR address IN {_in(emails)}",  # noqa: S608
            [*folded, *emails],
        ),
        (
            f"DELETE FROM replies WHERE {by_id} OR lower(sender) IN {_in(emails)}",  # noqa: S608
            [*folded, *emails],
        ),
    ]
    erased = 0
    with ledger._transaction(N_("erase the person's rows")) as conn:
        for sql, params in statements:
            erased += max(conn.execute(sql, params).rowcount, 0)
    return erased


def compact(ledger: Ledger) -> None:
    """Rewrite the ledger so deleted rows leave no bytes behind (SQLite: VACUUM, WAL emptied)."""
    if not isinstance(ledger.path, Path):
        return  # PostgreSQL: its autovacuum reclaims the dead rows; nothing is in out/ or state/
    conn = ledger._connection()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
