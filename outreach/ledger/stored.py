"""Values read back from the ledger: a date or a time that does not parse (a row changed by
hand, a damaged file) is a LedgerError naming the table and the row, never a traceback."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from outreach.i18n import _
from outreach.model.errors import LedgerError


def _bad(text: object, *, table: str, row: object, path: Path | str | None) -> LedgerError:
    return LedgerError(
        _(
            "the {table} row {row} holds {value} where a date or time belongs, so the "
            "ledger cannot be read"
        ).format(table=table, row=row, value=repr(str(text)[:60])),
        path=path,
        hint=_(
            "the ledger was changed by hand or damaged: correct or delete that row, or "
            "restore the ledger from a backup"
        ),
    )


def stored_day(text: str, *, table: str, row: object, path: Path | str | None = None) -> date:
    """A stored YYYY-MM-DD as a date; LedgerError naming the row if it is not one."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise _bad(text, table=table, row=row, path=path) from None


def stored_time(text: str, *, table: str, row: object, path: Path | str | None = None) -> datetime:
    """A stored ISO 8601 time as a datetime; LedgerError naming the row if it is not one."""
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise _bad(text, table=table, row=row, path=path) from None
