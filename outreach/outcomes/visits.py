"""`outreach visits --import FILE`: a till's or booking system's export, as visits in the ledger.

The file is read as the contacts file is (CSV in any of its encodings and delimiters, or a
workbook), with the contacts' column mapping and a few names tills use. Each line needs a
date and one way to tell the contact: `contact_id` (or `id`), `email`, `phone` or a coupon
`code`; `amount` is optional (`12,50` or `12.50`). A line that cannot be read is named by
file and line and left out; the rest go into the ledger in one transaction, each visit once.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

from outreach.contacts import Contact
from outreach.contacts.encoding import read_text
from outreach.contacts.fields import normalize_email, parse_date
from outreach.contacts.presets import header_key
from outreach.contacts.sheets import is_workbook, read_sheet
from outreach.i18n import _
from outreach.ledger.outcomes import Visit
from outreach.model.errors import ContactsError, Problem
from outreach.outcomes.money import parse_cents

# What tills and booking systems call the columns (header keys), besides outreach's names.
ALIASES = {
    "date": "date",
    "fecha": "date",
    "day": "date",
    "dia": "date",
    "día": "date",
    "contact_id": "contact_id",
    "id": "contact_id",
    "cliente": "contact_id",
    "email": "email",
    "correo": "email",
    "e-mail": "email",
    "phone": "phone",
    "telefono": "phone",
    "teléfono": "phone",
    "movil": "phone",
    "móvil": "phone",
    "code": "code",
    "codigo": "code",
    "código": "code",
    "coupon": "code",
    "cupon": "code",
    "cupón": "code",
    "amount": "amount",
    "importe": "amount",
    "total": "amount",
}
WHO = ("contact_id", "email", "phone", "code")


def _phone_key(text: str) -> str:
    digits = re.sub(r"\D", "", text)
    return digits[-9:]  # the subscriber number: +34 / 0034 / none all compare equal


@dataclass
class Directory:
    """How a visit's line finds its contact: by id, email, phone, or a coupon's code."""

    ids: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)
    code_owner: Callable[[str], str | None] = lambda code: None

    @classmethod
    def of(
        cls, contacts: Iterable[Contact], *, code_owner: Callable[[str], str | None]
    ) -> Directory:
        """The directory of a contacts file's usable contacts."""
        found = cls(code_owner=code_owner)
        for contact in contacts:
            found.ids[contact.id.casefold()] = contact.id
            if contact.email:
                found.emails[contact.email.casefold()] = contact.id
            phone = contact.extra.get("phone") or contact.extra.get("telefono")
            if phone and _phone_key(phone):
                found.phones[_phone_key(phone)] = contact.id
        return found

    @classmethod
    def scan(
        cls, path: Path, *, mapping: Mapping[str, str], code_owner: Callable[[str], str | None]
    ) -> Directory:
        """The directory of a contacts CSV from its id, email and phone columns alone: a tenth
        of the time of reading every contact, for an import of a hundred thousand visits."""
        found = cls(code_owner=code_owner)
        rows = (cells for _, cells in _rows(path, sheet=None))
        header = next((row for row in rows if any(cell.strip() for cell in row)), [])
        if header and header[0].strip().strip('"').lower().startswith("sep="):
            header = next(rows, [])
        at: dict[str, int] = {}
        for position, cell in enumerate(header):
            key = header_key(cell.lstrip("\ufeff"))
            name = mapping.get(key) or key
            name = "phone" if name == "telefono" else name
            if name in ("id", "email", "phone"):
                at.setdefault(name, position)
        if "id" not in at:
            return found
        ids, emails, phones = found.ids, found.emails, found.phones
        where_id, where_email, where_phone = at["id"], at.get("email"), at.get("phone")
        for row in rows:
            if len(row) <= where_id or not (contact_id := row[where_id].strip()):
                continue
            ids[contact_id.casefold()] = contact_id
            if where_email is not None and where_email < len(row) and row[where_email].strip():
                emails[row[where_email].strip().casefold()] = contact_id
            if where_phone is not None and where_phone < len(row) and row[where_phone].strip():
                phones[_phone_key(row[where_phone])] = contact_id
        return found

    def find(self, column: str, value: str) -> str | None:
        """The contact id a line's value names, or None."""
        if column == "contact_id":
            return self.ids.get(value.strip().casefold())
        if column == "email":
            try:
                return self.emails.get(normalize_email(value).casefold())
            except ValueError:
                return None
        if column == "phone":
            key = _phone_key(value)
            return self.phones.get(key) if key else None
        return self.code_owner(value)


@dataclass(frozen=True, slots=True)
class ReadVisits:
    """What a visits file holds: the visits it could read, and its lines' problems."""

    visits: list[Visit]
    problems: list[Problem]
    lines: int


def _rows(path: Path, *, sheet: str | None) -> Iterator[tuple[int, list[str]]]:
    """(line or row number, cells) of each row of the CSV or workbook."""
    if is_workbook(path):
        for number, cells, _ in read_sheet(path, sheet=sheet).text_rows():
            yield number, cells  # a cell too long to keep is blank here, as for contacts
        return
    text = read_text(path)
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for cells in reader:
        yield reader.line_num, cells


def _columns(header: Sequence[str], mapping: Mapping[str, str], path: Path) -> dict[str, int]:
    columns: dict[str, int] = {}
    for position, cell in enumerate(header):
        key = header_key(cell.lstrip("\ufeff"))
        name = ALIASES.get(key) or ALIASES.get(mapping.get(key, ""))
        if name is not None and name not in columns:
            columns[name] = position
    if "date" not in columns or not any(who in columns for who in WHO):
        raise ContactsError(
            _("the header needs a `date` column and one of contact_id (or id), email, phone, code"),
            path=path,
            line=1,
            hint=_("the header reads: {header}").format(header=", ".join(header) or _("(empty)")),
        )
    return columns


def _cell(row: Sequence[str], columns: Mapping[str, int], name: str) -> str:
    position = columns.get(name)
    return row[position].strip() if position is not None and position < len(row) else ""


def read_visits(
    path: Path,
    *,
    directory: Directory,
    mapping: Mapping[str, str],
    date_format: str,
    sheet: str | None = None,
) -> ReadVisits:
    """The visits of an export; each line it cannot use is a problem naming file and line."""
    rows = _rows(path, sheet=sheet)
    header = next((row for _, row in rows if any(cell.strip() for cell in row)), None)
    if header is None:
        raise ContactsError(_("the file is empty"), path=path, hint=_("export the visits again"))
    columns = _columns(header, mapping, path)
    visits: list[Visit] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    number = 1
    for number, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        try:
            visit = _visit(row, columns, directory=directory, date_format=date_format)
        except _LineError as exc:
            problems.append(Problem(exc.message, path=str(path), line=number, field=exc.column))
            continue
        first = seen.setdefault(visit.fingerprint, number)
        if first != number:
            message = _("the same visit as line {line}").format(line=first)
            problems.append(Problem(message, path=str(path), line=number, hint=_("left out once")))
            continue
        visits.append(visit)
    return ReadVisits(visits, problems, number)


@lru_cache(maxsize=65536)
def _cents(text: str) -> int:
    return parse_cents(text)


@lru_cache(maxsize=4096)
def _parse_day(text: str, date_format: str) -> date:
    # A till's export repeats a few hundred days a hundred thousand times.
    return parse_date(text, date_format=date_format)


class _LineError(Exception):
    def __init__(self, message: str, column: str) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def _visit(
    row: Sequence[str], columns: Mapping[str, int], *, directory: Directory, date_format: str
) -> Visit:
    text = _cell(row, columns, "date")
    try:
        day = _parse_day(text, date_format)
    except ValueError:
        raise _LineError(_("{text} is not a date").format(text=repr(text)), "date") from None
    contact_id = None
    named = ""
    for column in WHO:
        value = _cell(row, columns, column)
        if value:
            named = named or column
            contact_id = directory.find(column, value)
            if contact_id is not None:
                break
    if contact_id is None:
        if not named:
            raise _LineError(_("no contact_id, email, phone or code on this line"), "contact_id")
        raise _LineError(
            _("{value} is no contact of the contacts file").format(
                value=repr(_cell(row, columns, named))
            ),
            named,
        )
    amount_text = _cell(row, columns, "amount")
    cents = None
    if amount_text:
        try:
            cents = _cents(amount_text)
        except ValueError as exc:
            raise _LineError(str(exc), "amount") from None
    code = _cell(row, columns, "code") or None
    return Visit(contact_id=contact_id, day=day, amount_cents=cents, code=code)
