"""`outreach ledger copy`: a ledger copied into another store (SQLite ↔ PostgreSQL).

Every table, row for row, ids kept: a copy is the same ledger in another place. Rows the target
already has (same key) are left as they are, so copying again changes nothing; the counts of
both sides are compared at the end, table by table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outreach.ledger.postgres import PgConnection
from outreach.ledger.sqlite import Ledger
from outreach.model.errors import LedgerError

# table → (its columns, the column to page by, or None for a small table read at once)
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
}
PAGE = 20_000  # rows read (and written in one transaction) at a time


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table's rows: in the source, newly written to the target, and in the target after."""

    table: str
    source: int
    copied: int
    target: int


def _count(ledger: Ledger, table: str) -> int:
    # `table` is one of TABLES' names.
    return int(ledger._query(f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608


def copy_ledger(source: Ledger, target: Ledger) -> list[TableCopy]:
    """Copy every row of `source` into `target` (keeping what is there); the counts.

    LedgerError when the target ends with other rows than the source's (it held another
    ledger): the copy is then not the same ledger, and nothing should run on it unchecked.
    """
    results: list[TableCopy] = []
    for table, (columns, key) in TABLES.items():
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        # Only this module's table and column names go into the SQL.
        insert = f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608
        before = _count(target, table)
        pages: Iterable[list[Any]]
        if key is None:
            pages = [source._query(f"SELECT {names} FROM {table}")]  # noqa: S608
        else:
            pages = _pages(source, table=table, names=names, key=key)
        for rows in pages:
            if rows:
                with target._transaction(f"copy the {table} table") as conn:
                    if isinstance(conn, PgConnection):
                        conn.copy_rows(table, columns, rows)
                    else:
                        conn.executemany(insert, [tuple(row) for row in rows])
        copied = _count(target, table) - before
        results.append(
            TableCopy(
                table=table,
                source=_count(source, table),
                copied=copied,
                target=_count(target, table),
            )
        )
    if not isinstance(target.path, Path):
        # PostgreSQL: the identity columns go on after the ids copied (SQLite does by itself).
        with target._transaction("continue the ids after the copy") as conn:
            for table, (_, key) in TABLES.items():
                if key is not None:
                    conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"coalesce(max(id), 0) + 1, false) FROM {table}"
                    )
    different = [r for r in results if r.source != r.target]
    if different:
        listing = ", ".join(f"{r.table} {r.source} → {r.target}" for r in different)
        raise LedgerError(
            f"the copy does not match the source ({listing})",
            path=target.path,
            hint="the target held rows of another ledger; copy into an empty database",
        )
    return results


def _pages(source: Ledger, *, table: str, names: str, key: str) -> Iterator[list[Any]]:
    last = -1
    while True:
        rows = source._query(
            f"SELECT {names} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",  # noqa: S608
            (last, PAGE),
        )
        if not rows:
            return
        yield rows
        last = int(rows[-1][0])
