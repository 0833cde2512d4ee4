"""Workbooks (.xlsx, .xlsm, .ods) as rows of text cells, as the CSV reader would see them.

A cell's value becomes the text a person typed: a whole number without ".0", a date as
YYYY-MM-DD (which the date reader takes whatever `date_format` says).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from outreach.model.errors import ContactsError

SHEET_SUFFIXES = frozenset({".xlsx", ".xlsm", ".ods"})


def is_workbook(path: Path) -> bool:
    """Whether the contacts file is read as a workbook (by its name)."""
    return path.suffix.lower() in SHEET_SUFFIXES


def column_letters(position: int) -> str:
    """A 0-based column position as a spreadsheet names it: 0 → A, 26 → AA."""
    letters = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_text(value: object) -> str:
    """The text of one cell's value."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


@dataclass
class SheetRows:
    """The rows of one sheet as text; `numbers` holds, per column position, the rows (1-based)
    whose cell was a number (a postal code typed as a number has lost its leading zeros)."""

    name: str
    rows: Sequence[Sequence[object]]
    numbers: dict[int, set[int]] = field(default_factory=dict)

    def text_rows(self, *, watch: frozenset[int] = frozenset()) -> Iterator[list[str]]:
        """Each row's cells as text, noting the number cells of the `watch` columns."""
        for number, row in enumerate(self.rows, start=1):
            cells: list[str] = []
            for position, value in enumerate(row):
                if position in watch and isinstance(value, int | float):
                    self.numbers.setdefault(position, set()).add(number)
                cells.append(cell_text(value))
            yield cells


def read_sheet(path: Path, *, sheet: str | None) -> SheetRows:
    """The rows of the workbook's first sheet, or of `sheet`; ContactsError if unreadable."""
    # Imported here: a run on contacts.csv never loads the spreadsheet reader.
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except FileNotFoundError:
        raise ContactsError(
            "contacts file not found",
            path=path,
            hint="check paths.contacts in config.yaml",
        ) from None
    except (python_calamine.CalamineError, OSError, ValueError) as exc:
        raise ContactsError(
            f"cannot be read as a {path.suffix.lower()} workbook ({exc})",
            path=path,
            hint="open it in the spreadsheet program and save it again, or export it as CSV",
        ) from None
    try:
        names = workbook.sheet_names
        if not names:
            raise ContactsError("the workbook has no sheet", path=path)
        name = sheet if sheet is not None else names[0]
        if name not in names:
            raise ContactsError(
                f"has no sheet {name!r} (its sheets: {', '.join(names)})",
                path=path,
                field="contacts.sheet",
                hint="set contacts.sheet in config.yaml to one of them",
            )
        try:
            rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
        except (python_calamine.CalamineError, ValueError) as exc:
            raise ContactsError(
                f"sheet {name!r} cannot be read ({exc})",
                path=path,
                hint="open it in the spreadsheet program and save it again",
            ) from None
    finally:
        workbook.close()
    return SheetRows(name=name, rows=rows)
