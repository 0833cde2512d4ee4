"""Workbooks (.xlsx, .xlsm, .ods) as rows of text cells, as the CSV reader would see them.

A cell's value becomes the text a person typed: a whole number without ".0", a date as
YYYY-MM-DD (which the date reader takes whatever `date_format` says).

A workbook is read with the CSV reader's limits. Only the cells that exist are kept (a sheet
that claims XFD1048576, or holds one value there, costs what its cells cost); a cell over
CELL_LIMIT characters, a formula error and a formula without a stored value are problems of
their row, named by the cell; past MAX_ROWS rows the file is refused. An .xlsx is read here,
as a stream of its XML; an .ods by python-calamine.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO
from xml.etree.ElementTree import Element, ParseError, iterparse

from outreach.i18n import _
from outreach.model.errors import ContactsError

SHEET_SUFFIXES = frozenset({".xlsx", ".xlsm", ".ods"})
# As csv.field_size_limit() caps a CSV cell.
CELL_LIMIT = 128 * 1024
# A spreadsheet program's own limit: a sheet with more rows was not saved by one.
MAX_ROWS = 1_048_576


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


@dataclass(frozen=True, slots=True)
class BrokenCell:
    """A cell whose value cannot be used, and why (said after "cell B7 holds …")."""

    why: str


Row = Sequence[object] | dict[int, object]  # every cell of a row, or those holding a value


@dataclass
class SheetRows:
    """The rows of one sheet as (row number, cells): every cell from calamine, or only the
    ones holding a value ({column position: value}) from the sparse reader. `numbers` holds,
    per column position, the rows whose cell was a number (a postal code typed as a number
    has lost its leading zeros); `notice` says which other sheets were not read."""

    name: str
    rows: Sequence[tuple[int, Row]]
    numbers: dict[int, set[int]] = field(default_factory=dict)
    notice: str | None = None

    def text_rows(
        self, *, watch: frozenset[int] = frozenset()
    ) -> Iterator[tuple[int, list[str], list[tuple[str, str]]]]:
        """Each row's number, cells as text, and (cell name, why) of each unusable cell,
        noting the number cells of the `watch` columns."""
        for number, row in self.rows:
            if isinstance(row, dict):
                yield number, *self._sparse_row(number, row, watch)
                continue
            # calamine's rows (never a BrokenCell): the common case, kept to C-speed loops.
            cells = [cell_text(value) for value in row]
            for position in watch:
                if position < len(row) and isinstance(row[position], int | float):
                    self.numbers.setdefault(position, set()).add(number)
            broken: list[tuple[str, str]] = []
            if cells and max(map(len, cells)) > CELL_LIMIT:
                for position, text in enumerate(cells):
                    if len(text) > CELL_LIMIT:
                        broken.append((f"{column_letters(position)}{number}", _too_long(text)))
                        cells[position] = ""
            yield number, cells, broken

    def _sparse_row(
        self, number: int, row: dict[int, object], watch: frozenset[int]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        cells = [""] * (max(row) + 1) if row else []
        broken: list[tuple[str, str]] = []
        for position, value in row.items():
            if isinstance(value, BrokenCell):
                broken.append((f"{column_letters(position)}{number}", value.why))
                continue
            if position in watch and isinstance(value, int | float):
                self.numbers.setdefault(position, set()).add(number)
            cells[position] = cell_text(value)
        return cells, broken


def _too_long(text: str) -> str:
    return _("{n:,} characters, more than a cell may hold (128 KB)").format(n=len(text))


def _capped(text: str) -> str | BrokenCell:
    return BrokenCell(_too_long(text)) if len(text) > CELL_LIMIT else text


def read_sheet(path: Path, *, sheet: str | None, max_rows: int = MAX_ROWS) -> SheetRows:
    """The rows of `sheet`, else of the workbook's first visible sheet; ContactsError if
    unreadable or longer than `max_rows`."""
    if not path.exists():
        raise ContactsError(
            _("contacts file not found"), path=path, hint=_("check paths.contacts in config.yaml")
        )
    if path.suffix.lower() == ".ods":
        return _read_ods(path, sheet=sheet, max_rows=max_rows)
    try:
        with zipfile.ZipFile(path) as archive:
            return _Xlsx(archive, path=path, max_rows=max_rows).read(sheet)
    except _Unsafe:
        raise ContactsError(
            _(
                "holds an XML document type declaration, which no spreadsheet program "
                "writes, so it is not read"
            ),
            path=path,
            hint=_("open it in the spreadsheet program and save it again, or export it as CSV"),
        ) from None
    except (
        zipfile.BadZipFile,
        KeyError,
        IndexError,
        ParseError,
        ValueError,
        OSError,
        EOFError,
    ) as exc:
        raise ContactsError(
            _("cannot be read as a {kind} workbook ({error}: {exc})").format(
                kind=path.suffix.lower(), error=type(exc).__name__, exc=exc
            ),
            path=path,
            hint=_("open it in the spreadsheet program and save it again, or export it as CSV"),
        ) from None


def _chosen(
    path: Path, *, sheet: str | None, sheets: list[tuple[str, bool]]
) -> tuple[str, str | None]:
    """The sheet to read (named, else the first visible one) and the notice of the others."""
    names = [name for name, _ in sheets]
    if not names:
        raise ContactsError(_("the workbook has no sheet"), path=path)
    if sheet is not None:
        if sheet not in names:
            raise ContactsError(
                _("has no sheet {sheet} (its sheets: {names})").format(
                    sheet=repr(sheet), names=", ".join(names)
                ),
                path=path,
                field="contacts.sheet",
                hint=_("set contacts.sheet in config.yaml to one of them"),
            )
        return sheet, None
    visible = [name for name, shown in sheets if shown]
    if not visible:
        raise ContactsError(
            _("every sheet is hidden (its sheets: {names})").format(names=", ".join(names)),
            path=path,
            field="contacts.sheet",
            hint=_("set contacts.sheet in config.yaml to the sheet that holds the contacts"),
        )
    others = visible[1:]
    notice = (
        _("sheet {visible} is read, the first visible one; the workbook also shows {names}").format(
            visible=repr(visible[0]), names=", ".join(repr(name) for name in others)
        )
        if others
        else None
    )
    return visible[0], notice


def _numbered(
    rows: Sequence[Sequence[object]], *, path: Path, max_rows: int
) -> list[tuple[int, Row]]:
    """calamine's rows, numbered (capped in SheetRows.text_rows, as they are read)."""
    if len(rows) > max_rows:
        raise _too_many_rows(path, max_rows)
    return list(enumerate(rows, start=1))


def _too_many_rows(path: Path, max_rows: int) -> ContactsError:
    return ContactsError(
        _(
            "the sheet has more than {max_rows:,} rows, more than outreach reads from a sheet"
        ).format(max_rows=max_rows),
        path=path,
        hint=_("split the contacts into files of fewer rows, or export them as CSV"),
    )


def _calamine_rows(path: Path, name: str) -> Sequence[Sequence[object]]:
    """A sheet's rows as python-calamine reads them (the rectangle of its cells)."""
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
        try:
            rows: Sequence[Sequence[object]] = workbook.get_sheet_by_name(name).to_python(
                skip_empty_area=False
            )
        finally:
            workbook.close()
    except (python_calamine.CalamineError, ValueError) as exc:
        raise ContactsError(
            _("sheet {name} cannot be read ({exc})").format(name=repr(name), exc=exc),
            path=path,
            hint=_("open it in the spreadsheet program and save it again"),
        ) from None
    return rows


def _read_ods(path: Path, *, sheet: str | None, max_rows: int) -> SheetRows:
    # Imported here: a run on contacts.csv never loads the spreadsheet reader.
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except (python_calamine.CalamineError, OSError, ValueError) as exc:
        raise ContactsError(
            _("cannot be read as a {kind} workbook ({exc})").format(
                kind=path.suffix.lower(), exc=exc
            ),
            path=path,
            hint=_("open it in the spreadsheet program and save it again, or export it as CSV"),
        ) from None
    try:
        sheets = [
            (meta.name, meta.visible == python_calamine.SheetVisibleEnum.Visible)
            for meta in workbook.sheets_metadata
        ]
        name, notice = _chosen(path, sheet=sheet, sheets=sheets)
        try:
            rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
        except (python_calamine.CalamineError, ValueError) as exc:
            raise ContactsError(
                _("sheet {name} cannot be read ({exc})").format(name=repr(name), exc=exc),
                path=path,
                hint=_("open it in the spreadsheet program and save it again"),
            ) from None
    finally:
        workbook.close()
    return SheetRows(name=name, rows=_numbered(rows, path=path, max_rows=max_rows), notice=notice)


# -- .xlsx ---------------------------------------------------------------------------------

# Built-in number formats that show a date or a time (ECMA-376 18.8.30).
_DATE_FORMATS = frozenset({*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)})
_RELATIONSHIP = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _local(tag: str) -> str:
    """An element's name without its namespace (transitional and strict files differ)."""
    return tag.rpartition("}")[2]


def _is_date_code(code: str) -> bool:
    """Whether a custom number format shows a date or time (outside quotes and [colour])."""
    plain, quoted, bracket, escaped = [], False, False, False
    for char in code:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "[":
            bracket = True
        elif bracket and char == "]":
            bracket = False
        elif not quoted and not bracket:
            plain.append(char.lower())
    text = "".join(plain).split(";")[0]
    return any(letter in text for letter in "dmyhs") and "general" not in text


def _texts(element: Element) -> str:
    """The text of a string item: its <t> runs, without phonetic guides (<rPh>)."""
    parts: list[str] = []

    def walk(node: Element) -> None:
        for child in node:
            name = _local(child.tag)
            if name == "t":
                parts.append(child.text or "")
            elif name != "rPh":
                walk(child)

    walk(element)
    return "".join(parts)


class _Unsafe(Exception):
    """A part of the workbook declares a DTD (entities could expand without end)."""


# An .xlsx part read in blocks: what the quick look at a sheet searches for.
_BLOCK = 1 << 20
_OVERLAP = 512  # a tag cut by a block's end is found whole in the next block's start
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)")
# Only a row's reference is all digits; a cell's starts with its column's letters. Each
# pattern starts with a literal, which the regular-expression engine finds at C speed (an
# attribute name ending in r only makes the sheet look bigger: then the sparse reader reads it).
_ROW_NUMBER = re.compile(rb'r="(\d+)"')
_CELL_COLUMN = re.compile(rb'r="([A-Za-z]{2,})\d')
_WIDE_COLUMN = re.compile(rb'r="[A-Za-z]{2}')
# A formula or an error cell: calamine reads them as empty, this module as problems.
_FORMULA = re.compile(rb"f[\s>/]")  # after '<' or a prefix's ':' (checked in _has_formula)
# calamine holds a sheet as the rectangle of its cells (32 bytes each): up to this many
# cells it is the fast reader; past it (a value far out) or with formulas, this module is.
DENSE_CELLS = 4_000_000


def _has_formula(data: bytes) -> bool:
    """Whether the XML holds an <f> element (with or without a namespace prefix)."""
    return any(
        data[match.start() - 1 : match.start()] in (b"<", b":")
        for match in _FORMULA.finditer(data, 1)
    )


class _Checked:
    """A part's stream that refuses a DTD as it is read (ElementTree would expand its
    entities), for iterparse."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if _DTD.search(self.tail + data):
            raise _Unsafe
        self.tail = data[-_OVERLAP:]
        return data


@dataclass(frozen=True, slots=True)
class _Extent:
    """What a quick look at a sheet's XML found: the rectangle its cells span, and whether
    it has a formula or an error cell."""

    rows: int
    columns: int
    formulas: bool


class _Xlsx:
    """One .xlsx workbook: its sheets read from the XML, or through calamine when the sheet is
    plain and small enough for calamine's rectangle."""

    def __init__(self, archive: zipfile.ZipFile, *, path: Path, max_rows: int) -> None:
        self.archive = archive
        self.path = path
        self.max_rows = max_rows
        self.names = set(archive.namelist())

    def _events(self, name: str) -> Iterator[tuple[str, Element]]:
        with self.archive.open(name) as stream:
            yield from iterparse(_Checked(stream), events=("start", "end"))  # noqa: S314 (no DTD: _Checked)

    def read(self, sheet: str | None) -> SheetRows:
        """The chosen sheet's rows."""
        sheets, targets, date1904 = self._workbook()
        name, notice = _chosen(self.path, sheet=sheet, sheets=sheets)
        extent = self._extent(targets[name])
        if extent.rows > self.max_rows:  # refused before a row is kept
            raise _too_many_rows(self.path, self.max_rows)
        if not extent.formulas and extent.rows * extent.columns <= DENSE_CELLS:
            rows = _calamine_rows(self.path, name)
            return SheetRows(
                name=name,
                rows=_numbered(rows, path=self.path, max_rows=self.max_rows),
                notice=notice,
            )
        self.date1904 = date1904
        self.dates = self._date_styles()
        self.shared = self._shared_strings()
        return SheetRows(name=name, rows=self._rows(targets[name]), notice=notice)

    def _extent(self, part: str) -> _Extent:
        """The sheet's rectangle and formulas, from a regular-expression pass over its XML."""
        rows = tags = 0
        letters: set[bytes] = set()
        formulas = False
        tail = b""
        with self.archive.open(part) as stream:
            while block := stream.read(_BLOCK):
                data = tail + block
                if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
                    raise _Unsafe
                rows = max([rows, *map(int, _ROW_NUMBER.findall(data))])
                # Rows without a number count too: calamine gives each a row of its own.
                tags += data.count(b"<row") - tail.count(b"<row")
                # Columns past Z are rare in a contacts sheet: only their references are kept.
                if _WIDE_COLUMN.search(data):
                    letters.update(_CELL_COLUMN.findall(data))
                formulas = formulas or b't="e"' in data or _has_formula(data)
                tail = data[-_OVERLAP:]
        columns = max((_column(found.decode()) + 1 for found in letters), default=26)
        return _Extent(rows=max(rows, tags, 1), columns=columns, formulas=formulas)

    def _workbook(self) -> tuple[list[tuple[str, bool]], dict[str, str], bool]:
        """(name, visible) of each sheet in order, each sheet's part, and the 1904 date system."""
        rels: dict[str, str] = {}
        for _event, element in self._events("xl/_rels/workbook.xml.rels"):
            if _local(element.tag) == "Relationship":
                target = element.get("Target", "")
                rels[element.get("Id", "")] = (
                    target.lstrip("/")
                    if target.startswith("/")
                    else str(PurePosixPath("xl") / target)
                )
        sheets: list[tuple[str, bool]] = []
        targets: dict[str, str] = {}
        date1904 = False
        for event, element in self._events("xl/workbook.xml"):
            if event != "start":
                continue
            name = _local(element.tag)
            if name == "workbookPr":
                date1904 = element.get("date1904", "0").lower() in {"1", "true"}
            elif name == "sheet":
                title = element.get("name", "")
                sheets.append((title, element.get("state", "visible") == "visible"))
                targets[title] = rels.get(element.get(_RELATIONSHIP, ""), "")
        return sheets, targets, date1904

    def _date_styles(self) -> frozenset[int]:
        """The cell styles (positions in cellXfs) whose number format shows a date."""
        if "xl/styles.xml" not in self.names:
            return frozenset()
        custom: dict[int, bool] = {}
        styles: list[int] = []
        inside = False
        for event, element in self._events("xl/styles.xml"):
            name = _local(element.tag)
            if name == "cellXfs":
                inside = event == "start"
            elif event == "end" and name == "numFmt":
                custom[int(element.get("numFmtId", "0"))] = _is_date_code(
                    element.get("formatCode", "")
                )
            elif event == "end" and name == "xf" and inside:
                styles.append(int(element.get("numFmtId", "0")))
        return frozenset(
            index
            for index, number in enumerate(styles)
            if custom.get(number, number in _DATE_FORMATS)
        )

    def _shared_strings(self) -> list[str | BrokenCell]:
        if "xl/sharedStrings.xml" not in self.names:
            return []
        shared: list[str | BrokenCell] = []
        parent: Element | None = None
        for event, element in self._events("xl/sharedStrings.xml"):
            if event == "start" and parent is None:
                parent = element
            elif event == "end" and _local(element.tag) == "si":
                shared.append(_capped(_texts(element)))
                if parent is not None:
                    parent.clear()  # what is read is kept as text only
        return shared

    def _rows(self, part: str) -> list[tuple[int, Row]]:
        rows: list[tuple[int, Row]] = []
        holder: Element | None = None
        last = 0
        for event, element in self._events(part):
            name = _local(element.tag)
            if event == "start":
                if name == "sheetData":
                    holder = element
                continue
            if name != "row":
                continue
            number = int(element.get("r") or last + 1)
            last = number
            cells = self._cells(element)
            if holder is not None:
                holder.clear()  # rows read are kept as values only
            if cells:
                rows.append((number, cells))
                if len(rows) > self.max_rows:
                    raise _too_many_rows(self.path, self.max_rows)
        return rows

    def _cells(self, row: Element) -> dict[int, object]:
        cells: dict[int, object] = {}
        position = -1
        for cell in row:
            if _local(cell.tag) != "c":
                continue
            ref = cell.get("r")
            position = _column(ref) if ref else position + 1
            value = self._value(cell)
            if value is not None and value != "":
                cells[position] = value
        return cells

    def _value(self, cell: Element) -> object:
        kind = cell.get("t", "n")
        raw: str | None = None
        formula = inline = False
        for child in cell:
            name = _local(child.tag)
            if name == "v":
                raw = child.text or ""
            elif name == "f":
                formula = True
            elif name == "is":
                inline = True
                raw = _texts(child)
        if kind == "e":
            return BrokenCell(_("the formula error {error}").format(error=raw or "#VALUE!"))
        # openpyxl and other writers leave <v> empty (or out) when they never calculated.
        if formula and (raw is None or (raw == "" and kind != "str")):
            return BrokenCell(_("a formula whose value was never calculated (no value is stored)"))
        if raw is None:
            return None
        if kind == "s":
            return self.shared[int(raw)]
        if kind in {"str", "inlineStr"} or inline:
            return _capped(raw)
        if kind == "b":
            return raw.strip() == "1"
        if kind == "d":
            return datetime.fromisoformat(raw.strip())
        number = float(raw)
        if int(cell.get("s", "0")) in self.dates:
            return self._date(number)
        return number

    def _date(self, serial: float) -> datetime | float:
        """A date cell's value (a serial day number) as the date and time it shows."""
        if self.date1904:
            start = datetime(1904, 1, 1)
        else:  # 1900 counts a 29 February that never was: serials from 61 are a day ahead
            start = datetime(1899, 12, 30) if serial >= 61 else datetime(1899, 12, 31)
        try:
            moment = start + timedelta(days=serial)
        except OverflowError:
            return serial
        # A time typed to the second, stored as a fraction of a day: rounded back.
        return moment.replace(microsecond=0) + timedelta(seconds=round(moment.microsecond / 1e6))


def _column(ref: str) -> int:
    """The 0-based column of a cell reference such as "AB12"."""
    position = 0
    for char in ref:
        if not char.isalpha():
            break
        position = position * 26 + ord(char.upper()) - ord("A") + 1
    if not 0 < position <= 16384:
        raise ValueError(
            _("the cell reference {ref} is not a column of a sheet").format(ref=repr(ref[:20]))
        )
    return position - 1
