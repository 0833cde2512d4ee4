"""`outreach ledger copy`: a ledger copied into another store (SQLite ↔ PostgreSQL).

Every table, row for row, ids kept: a copy is the same ledger in another place. Rows the target
already has (same key) are left as they are, so copying again changes nothing; the counts of
both sides are compared at the end, table by table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from outreach.i18n import N_, _
from outreach.ledger.schema import TABLES
from outreach.ledger.sql import SqlLedger
from outreach.model.errors import LedgerError

PAGE = 20_000  # rows read (and written in one transaction) at a time


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table's rows: in the source, newly written to the target, and in the target after."""

    table: str
    source: int
    copied: int
    target: int


def _count(ledger: SqlLedger, table: str) -> int:
    # `table` is one of TABLES' names.
    return int(ledger._query(f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608


def copy_ledger(source: SqlLedger, target: SqlLedger) -> list[TableCopy]:
    """Copy every row of `source` into `target` (keeping what is there); the counts.

    LedgerError when the target ends with other rows than the source's (it held another
    ledger): the copy is then not the same ledger, and nothing should run on it unchecked.
    """
    results: list[TableCopy] = []
    for table, (columns, key) in TABLES.items():
        names = ", ".join(columns)
        before = _count(target, table)
        pages: Iterable[list[Any]]
        if key is None:
            pages = [source._query(f"SELECT {names} FROM {table}")]  # noqa: S608
        else:
            pages = _pages(source, table=table, names=names, key=key)
        for rows in pages:
            if rows:
                with target._transaction(f"copy the {table} table") as conn:
                    target.dialect.insert_rows(conn, table, columns, rows)
        copied = _count(target, table) - before
        results.append(
            TableCopy(
                table=table,
                source=_count(source, table),
                copied=copied,
                target=_count(target, table),
            )
        )
    with target._transaction(N_("continue the ids after the copy")) as conn:
        target.dialect.after_copy(conn)
    different = [r for r in results if r.source != r.target]
    if different:
        listing = ", ".join(f"{r.table} {r.source} → {r.target}" for r in different)
        raise LedgerError(
            _("the copy does not match the source ({tables})").format(tables=listing),
            path=target.path,
            hint=_("the target held rows of another ledger; copy into an empty database"),
        )
    return results


def _pages(source: SqlLedger, *, table: str, names: str, key: str) -> Iterator[list[Any]]:
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
