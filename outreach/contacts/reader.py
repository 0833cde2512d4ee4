"""contacts.csv → Contact records and a report of the rows' problems: delimiter, header,
rows, the stream a run reads and the whole list commands look contacts up in."""

from __future__ import annotations

import csv
import difflib
import hashlib
import itertools
import re
import stat
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType

from outreach.collector import collector_paused
from outreach.contacts.encoding import _Decoding, _encoding, _mixed_problem, _text_lines
from outreach.contacts.fields import (
    COUNTRY_CODES,
    country_by_name,
    date_hint,
    normalize_email,
    normalize_locale,
    parse_date,
)
from outreach.contacts.model import _NO_EXTRA, CHANNELS, KNOWN_COLUMNS, Contact, ContactList
from outreach.contacts.presets import column_mapping, header_key
from outreach.contacts.sheets import SheetRows, column_letters, is_workbook, read_sheet
from outreach.i18n import _, ngettext
from outreach.model.config import ContactsSettings
from outreach.model.errors import ContactsError, Problem
from outreach.rules.postal import PostalCodeProblem, postal_code_problem

# --- reading the file --------------------------------------------------------------------

# After stripping, a cell may hold no control character; before stripping, no line break of
# any kind (a break at the edge of a cell still means a multi-line cell or an open quote).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Ids name files (outbox, letters), so only characters that are safe in every file system;
# compared ignoring case because some file systems do.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_SEPARATORS = re.compile(r"[\s;,/+]+")
_OPT_OUT_WORDS = {
    "email": frozenset({"email"}),
    "letter": frozenset({"letter"}),
    "all": frozenset({"email", "letter"}),
}
_ALL = _OPT_OUT_WORDS["all"]
_NONE: frozenset[str] = frozenset()
_UNSEEN: frozenset[str] = frozenset({"(not parsed yet)"})  # not translated: a sentinel
_SQUASHED_KNOWN = {name.replace("_", ""): name for name in KNOWN_COLUMNS}
_EXCEL_SEP = re.compile(r"sep=([,;\t|])", re.IGNORECASE)


def _outside_quotes_counts(line: str) -> dict[str, int]:
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return counts


def _detect_delimiter(lines: Iterator[str], path: Path) -> tuple[str, list[str]]:
    """The delimiter counted in the header line (csv.Sniffer guesses wrong on small files),
    and the lines read to find it."""
    read: list[str] = []
    for number, line in enumerate(lines, start=1):
        read.append(line)
        if not line.strip():
            continue
        if number == 1 and (sep := _EXCEL_SEP.fullmatch(line.strip().strip('"'))):
            # Excel's "sep=;" line names the delimiter; it is not the header.
            return sep.group(1), read
        counts = _outside_quotes_counts(line)
        best = max(counts.values())
        if best == 0:
            return ",", read  # a single column: only `id`, or no header at all
        tied = [d for d in _DELIMITERS if counts[d] == best]
        if len(tied) > 1:
            with_id = [
                d for d in tied if "id" in (c.strip().lower() for c in line.strip().split(d))
            ]
            if len(with_id) != 1:
                names = " and ".join(_DELIMITER_NAMES[d] for d in tied)
                raise ContactsError(
                    _(
                        "cannot tell the delimiter: the header has as many {names} characters"
                    ).format(names=names),
                    path=path,
                    line=number,
                    hint=_("use one delimiter (comma, semicolon or tab) in the header"),
                )
            return with_id[0], read
        return tied[0], read
    raise ContactsError(
        _("the file is empty"),
        path=path,
        line=1,
        hint=_("the first row must be the header, e.g. id,first_name,last_name,email"),
    )


_column_key = header_key
# Misspelt column names are looked for among the first this many unknown ones, this long at
# most: a header of thousands of other columns is an export, not a typing slip, and difflib
# costs per column.
_SUGGESTED_COLUMNS = 50
_SUGGESTED_LENGTH = 40


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each column sits. A known column the header lacks points at `width`: every row
    is padded with one empty cell there, so reading it needs no test."""

    width: int
    at: Mapping[str, int]
    extra: tuple[tuple[int, str], ...]
    unnamed: tuple[int, ...]
    names: tuple[str, ...]  # per position: the name used in Problems
    header: tuple[str, ...]  # the header's cells, stripped and case-folded
    # No id column in an export read with a preset: the id is made from the email.
    id_from_email: bool = False
    positions: Mapping[str, int] = field(default_factory=dict)  # name → its first position


def _read_layout(
    header: list[str],
    *,
    path: Path | str,
    line: int,
    problems: list[Problem],
    mapping: Mapping[str, str] | None = None,
    preset: str | None = None,
) -> _Layout:
    mapping = mapping or {}
    at: dict[str, int] = {}
    extra: list[tuple[int, str]] = []
    unnamed: list[int] = []
    names: list[str] = []
    positions: dict[str, int] = {}  # names' first positions: a wide header stays linear
    suggested = 0
    for position, raw in enumerate(header):
        key = _column_key(raw)
        if not key:
            unnamed.append(position)
            names.append(f"column {position + 1}")
            positions.setdefault(names[-1], position)
            continue
        squashed = key.replace("_", "").replace("-", "")
        mapped = mapping.get(key)
        name = mapped or _SQUASHED_KNOWN.get(squashed, key)
        if mapped is not None and mapped in positions:
            # A preset names two spellings of one column (old and new exports): keep the first.
            extra.append((position, key))
            positions.setdefault(key, position)
            names.append(key)
            continue
        if name in positions:
            raise ContactsError(
                _(
                    "two columns are both {name} (columns {first} and {second}), so it is "
                    "unclear which one holds the data"
                ).format(name=repr(name), first=positions[name] + 1, second=position + 1),
                path=path,
                line=line,
                field=name,
                hint=_("rename or remove one of them"),
            )
        names.append(name)
        positions[name] = position
        if name in KNOWN_COLUMNS:
            at[name] = position
            continue
        extra.append((position, key))
        if mapping or suggested >= _SUGGESTED_COLUMNS or len(squashed) > _SUGGESTED_LENGTH:
            continue  # an export's other columns are not misspellings of ours
        suggested += 1
        found = _misspelt(raw, key=key, squashed=squashed, at=(str(path), line, position))
        if found is not None:
            problems.append(found)
    if "id" not in at and preset is not None and "email" in at:
        pass  # made from the email, row by row
    elif "id" not in at:
        raise ContactsError(
            _("there is no id column"),
            path=path,
            line=line,
            field="id",
            hint=_(
                "the first row must be the header and include an id column (e.g. "
                "id,first_name,last_name,email); every contact needs a unique id"
            ),
        )
    width = len(header)
    return _Layout(
        width=width,
        # A missing id (made from the email) has a cell of its own after the empty one.
        at={name: at.get(name, width + (name == "id")) for name in KNOWN_COLUMNS},
        extra=tuple(extra),
        unnamed=tuple(unnamed),
        names=(*names, "?"),
        header=tuple(cell.strip().casefold() for cell in header),
        id_from_email="id" not in at,
        positions={**positions, "?": positions.get("?", width)},
    )


def _misspelt(raw: str, *, key: str, squashed: str, at: tuple[str, int, int]) -> Problem | None:
    """The problem of a header cell that looks like a known column misspelt, or None."""
    near = difflib.get_close_matches(squashed, _SQUASHED_KNOWN, n=1, cutoff=0.8)
    # street3 is a column of its own, not a misspelt street2.
    if not near or near[0].rstrip("0123456789") == squashed.rstrip("0123456789"):
        return None
    meant = _SQUASHED_KNOWN[near[0]]
    path, line, position = at
    return Problem(
        _(
            "{column} is not a known column, so it only reaches templates; did you mean {meant}?"
        ).format(column=repr(raw.strip()), meant=repr(meant)),
        path=path,
        line=line,
        field=key,
        column=position + 1,
        hint=_("rename the column to {meant} if that is what it holds").format(meant=meant),
    )


def _opt_out(value: str) -> frozenset[str] | None:
    words = [word for word in _SEPARATORS.split(value.lower()) if word]
    if not words or any(word not in _OPT_OUT_WORDS for word in words):
        return None
    return frozenset(kind for word in words for kind in _OPT_OUT_WORDS[word])


def _consent(text: str, *, date_format: str) -> date | bool | str | None:
    """An email_consent cell: a date, False (refused), None (empty) or why it is unusable."""
    if not text:
        return None
    if text.casefold() == "no":
        return False
    try:
        return parse_date(text, date_format=date_format)
    except ValueError as exc:
        return str(exc)


def _tags(value: str) -> frozenset[str]:
    # Google Contacts writes its labels as "* myContacts ::: Clientes".
    parts = value.replace(":::", ";").split(";")
    return frozenset(tag for part in parts if (tag := part.strip().lstrip("* ").lower()))


def _email_id(email: str) -> str:
    """The id of a contact in an export without ids: made from its email, so it stays the
    same from one export to the next (and changes with the address)."""
    if not email:
        return ""
    return "e-" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:12]


def _known_locale(value: str) -> str | None:
    try:
        return normalize_locale(value)
    except ValueError:
        return None


def _known_country(value: str) -> str | None:
    code = value.upper()
    if code in COUNTRY_CODES:
        return code
    # An export writes the country's name ("Spain", "España").
    return country_by_name(value) if len(value) > 2 else None


def _channel(value: str) -> str | None:
    channel = value.lower()
    return channel if channel in CHANNELS else None


class _RowReader:
    """Turns the cells of one row into a Contact, collecting its problems.

    Per-row work is kept small (about 10 µs; 100k rows load in about a second): a column is
    read by position, and values that repeat from row to row (tags, locale, country…) are parsed
    once per file and shared.
    """

    def __init__(
        self,
        *,
        path: Path,
        layout: _Layout,
        settings: ContactsSettings,
        default_locale: str,
        remember: bool = True,
        where: str | None = None,
        sheet: SheetRows | None = None,
    ) -> None:
        self.where = where or str(path)
        self.sheet = sheet
        self.layout = layout
        self.date_format = settings.date_format
        self.date_hint = date_hint(settings.date_format)
        self.default_country = settings.default_country
        self.default_locale = default_locale
        self.problems: list[Problem] = []
        # Ids seen so far, folded. With `remember`, also where each was first seen; without,
        # only the set (a stream keeps no more per row), and a repeated id's problem is
        # completed at the end, by `settle_repeats`.
        self.remember = remember
        self.first_seen: dict[str, tuple[int, str]] = {}  # id folded → (line, id)
        self.seen: set[str] = set()
        self.repeats: list[tuple[int, str, int]] = []  # (index in problems, id, line)
        self.tags: dict[str, frozenset[str]] = {"": _NONE}
        self.opt_outs: dict[str, frozenset[str] | None] = {"": _NONE}
        self.locales: dict[str, str | None] = {"": default_locale}
        self.countries: dict[str, str | None] = {"": settings.default_country}
        self.channels: dict[str, str | None] = {"": None}
        self.held_back: dict[tuple[str, ...], frozenset[str]] = {(): _NONE}
        self.pick = itemgetter(*(layout.at[name] for name in KNOWN_COLUMNS))
        self.extra_columns = layout.extra
        self.id_position = layout.at["id"]
        self.header_id = "" if layout.id_from_email else layout.header[self.id_position]
        self.email_position = layout.at["email"]
        self.postal_position = layout.at["postal_code"]
        # Parsed birthdays, or why not; a date repeats in a big file (about 36,500 exist).
        self.dates: dict[str, date | str | None] = {"": None}
        # Parsed email_consent cells: a date, False (refused), None (none), or why not.
        self.consents: dict[str, date | bool | str | None] = {"": None}
        # Lines written in another encoding than most of the file (sorted).
        self.foreign: tuple[int, ...] = ()
        self.foreign_name = ""

    def report(
        self, message: str, *, line: int, name: str, contact_id: str | None, hint: str
    ) -> None:
        """Report a problem with the cell of column `name` on `line`."""
        self.problems.append(
            self.problem(message, line=line, name=name, contact_id=contact_id, hint=hint)
        )

    def problem(
        self, message: str, *, line: int, name: str, contact_id: str | None, hint: str
    ) -> Problem:
        """A Problem about the cell of column `name` on `line`."""
        position = self.layout.positions.get(name)
        return Problem(
            message,
            path=self.where,
            line=line,
            field=name,
            column=None if position is None else position + 1,
            contact_id=contact_id,
            hint=hint,
            column_label=None
            if self.sheet is None or position is None
            else column_letters(position),
        )

    def read(self, row: list[str], cells: list[str], *, line: int, last: int) -> Contact | None:
        """Check one non-blank row (as read, and stripped): its contact if usable."""
        width = self.layout.width
        if len(cells) > width:
            if any(cells[width:]):
                self._report_overflow(cells, line=line)
                return None
            del cells[width:]
        cells.extend([""] * (width + 1 - len(cells)))
        if self.layout.id_from_email:
            cells.append(_email_id(cells[self.email_position]))
        id_cell = cells[self.id_position]
        if id_cell.casefold() == self.header_id and self._repeats_header(cells):
            # Two exports pasted into one file: the second header is not a contact "id".
            self.problems.append(
                Problem(
                    _("the header row appears again here; the row is left out"),
                    path=self.where,
                    line=line,
                    hint=_("remove the repeated header row"),
                )
            )
            return None
        contact_id = self._identify(id_cell, line=line)
        if contact_id is None:
            return None
        if self.foreign and self._in_foreign(line=line, last=last, contact_id=contact_id):
            return None
        if _CONTROL.search("".join(row)) and self._unsafe(
            row, cells, line=line, last=last, contact_id=contact_id
        ):
            return None
        for position in self.layout.unnamed:
            if cells[position]:
                self.report(
                    _(
                        "the value {cells} is in a column without a name in the header, so it is "
                        "not used"
                    ).format(cells=repr(cells[position])),
                    line=line,
                    name=self.layout.names[position],
                    contact_id=contact_id,
                    hint=_("give the column a name in the header row"),
                )
        return self._contact(cells, contact_id=contact_id, line=line)

    def _in_foreign(self, *, line: int, last: int, contact_id: str) -> bool:
        """Report a row with a line in the file's other encoding; True if it has one."""
        at = bisect_left(self.foreign, line)
        if at == len(self.foreign) or self.foreign[at] > last:
            return False
        self.problems.append(
            Problem(
                _(
                    "line {foreign} is written in {foreign_name}, unlike most of the file, "
                    "so its names cannot be read as written; the row is left out"
                ).format(foreign=self.foreign[at], foreign_name=self.foreign_name),
                path=self.where,
                line=line,
                contact_id=contact_id,
                hint=_("save the whole file again as CSV UTF-8"),
            )
        )
        return True

    def _repeats_header(self, cells: list[str]) -> bool:
        width = self.layout.width
        return tuple(cell.casefold() for cell in cells[:width]) == self.layout.header

    def _report_overflow(self, cells: list[str], *, line: int) -> None:
        contact_id = cells[self.layout.at["id"]]
        self.problems.append(
            Problem(
                _(
                    "has {n} cells but the header has {width} columns, so the cells may have "
                    "shifted; the row is left out"
                ).format(n=len(cells), width=self.layout.width),
                path=self.where,
                line=line,
                contact_id=contact_id if _ID.fullmatch(contact_id) else None,
                hint=_('put quotes around a value that contains the delimiter, e.g. "Mayor, 5"'),
            )
        )

    def _identify(self, contact_id: str, *, line: int) -> str | None:
        """The row's id, or None (reported) when it is empty, unsafe or already used."""
        if not contact_id:
            self.report(
                _("the id is empty, so the row is left out"),
                line=line,
                name="id",
                contact_id=None,
                hint=_("give every contact a unique id such as c042"),
            )
            return None
        if not _ID.fullmatch(contact_id):
            self.report(
                _(
                    "the id {contact_id} may use only letters A–Z, digits, '.', '_' and '-' "
                    "(starting with a letter or digit, at most 100), so the row is left out"
                ).format(contact_id=repr(contact_id)),
                line=line,
                name="id",
                contact_id=None,
                hint=_("ids name the files made for the contact; use something like c042"),
            )
            return None
        # Ids name files, and some file systems do not tell C001 from c001.
        folded = contact_id.casefold()
        if not self.remember:
            if folded in self.seen:
                self.repeats.append((len(self.problems), contact_id, line))
                self.problems.append(self._repeated(contact_id, line=line, first=None))
                return None
            self.seen.add(folded)
            return contact_id
        first = self.first_seen.get(folded)
        if first is not None:
            self.problems.append(self._repeated(contact_id, line=line, first=first))
            return None
        self.first_seen[folded] = (line, contact_id)
        return contact_id

    def _repeated(self, contact_id: str, *, line: int, first: tuple[int, str] | None) -> Problem:
        """The problem of a row whose id an earlier row has (`first`: its line and id)."""
        first_line, first_id = first if first is not None else (0, contact_id)
        if first is None:
            said = _("id {contact_id} is already used in an earlier row, so this row is left out")
        elif first_id == contact_id:
            said = _("id {contact_id} is already used on line {line}, so this row is left out")
        else:
            said = _(
                "id {contact_id} is already used on line {line} (as {first_id}; case does not "
                "count), so this row is left out"
            )
        return self.problem(
            said.format(contact_id=repr(contact_id), line=first_line, first_id=repr(first_id)),
            line=line,
            name="id",
            contact_id=contact_id,
            hint=_("give every contact its own id; keep the first row or merge the two"),
        )

    def settle_repeats(self, first_rows: Mapping[str, tuple[int, str]]) -> None:
        """Complete the problems of repeated ids with where each id was first seen."""
        for index, contact_id, line in self.repeats:
            first = first_rows.get(contact_id.casefold())
            self.problems[index] = self._repeated(contact_id, line=line, first=first)
        self.repeats = []

    def _unsafe(
        self, row: list[str], cells: list[str], *, line: int, last: int, contact_id: str
    ) -> bool:
        """Report every cell that could break a message; True if there is one."""
        if last > line:
            said = _(
                "contains a line break or a control character, so the contact is left out: it "
                "cannot be put in a message safely; the row runs over lines {line}–{last} "
                "({n} lines: is a quote left open?)"
            ).format(line=line, last=last, n=last - line + 1)
        else:
            said = _(
                "contains a line break or a control character, so the contact is left out: it "
                "cannot be put in a message safely"
            )
        unsafe = False
        for position, (raw, cell) in enumerate(zip(row, cells, strict=False)):
            if _LINE_BREAK.search(raw) or _CONTROL.search(cell):
                unsafe = True
                self.report(
                    said,
                    line=line,
                    name=self.layout.names[position],
                    contact_id=contact_id,
                    hint=_(
                        "keep every cell on one line (is a quote left open?) and remove "
                        "invisible characters"
                    ),
                )
        return unsafe

    def _contact(self, cells: list[str], *, contact_id: str, line: int) -> Contact:
        (
            _,
            first_name,
            last_name,
            title,
            email_text,
            birthday_text,
            street,
            street2,
            postal_code,
            city,
            region,
            country_text,
            channel_text,
            locale_text,
            tags_text,
            opt_out_text,
            confirmed_text,
            consent_text,
            source_text,
        ) = self.pick(cells)
        held: list[str] = []  # what the row's problems hold the contact back from
        email = self._read_email(email_text, line=line, contact_id=contact_id, held=held)
        birthday = self._read_birthday(birthday_text, line=line, contact_id=contact_id, held=held)
        confirmed = self._confirmed(confirmed_text, line=line, contact_id=contact_id)
        country = self._read_country(country_text, line=line, contact_id=contact_id, held=held)
        if country is None:
            # Blank the address too: nothing may print it with a guessed country.
            street = street2 = postal_code = city = region = ""
            country = self.default_country
        elif postal_code:
            self._check_postal_code(
                (country, postal_code, region, confirmed),
                line=line,
                contact_id=contact_id,
                held=held,
            )
        locale = self._read_locale(locale_text, line=line, contact_id=contact_id, held=held)
        channel = self._read_channel(channel_text, line=line, contact_id=contact_id, held=held)
        tags = self._read_tags(tags_text)
        opt_out = self._read_opt_out(opt_out_text, line=line, contact_id=contact_id)
        extra = self._read_extra(cells)
        held_set = self._held_set(held)
        consent = self._read_consent(consent_text, line=line, contact_id=contact_id)
        return Contact(
            id=contact_id,
            line=line,
            first_name=first_name or None,
            last_name=last_name or None,
            title=title or None,
            email=email,
            birthday=birthday,
            street=street or None,
            street2=street2 or None,
            postal_code=postal_code or None,
            city=city or None,
            region=region or None,
            country=country,
            preferred_channel=channel,
            locale=locale,
            tags=tags,
            opt_out=opt_out,
            address_confirmed=confirmed,
            extra=extra,
            held_back=held_set,
            email_consent=consent if isinstance(consent, date) else None,
            consent_refused=consent is False,
            consent_source=source_text or None,
        )

    def _read_email(
        self, email_text: str, *, line: int, contact_id: str, held: list[str]
    ) -> str | None:
        """The cell's address, normalised; None (reported) when it is empty or not valid."""
        email: str | None = email_text or None
        if email is not None:
            try:
                email = normalize_email(email)
            except ValueError as exc:
                reason = str(exc).rstrip(".")
                self.report(
                    _(
                        "{email} is not a valid email address ({reason}); the contact gets no email"
                    ).format(email=repr(email), reason=reason),
                    line=line,
                    name="email",
                    contact_id=contact_id,
                    hint=_("correct the address, or leave the cell empty"),
                )
                email = None
                held.append("email")
        return email

    def _parsed_date(self, text: str) -> date | str | None:
        """A date cell parsed once per distinct text: the date (None when empty), or why it
        is not one."""
        if text not in self.dates:
            try:
                self.dates[text] = parse_date(text, date_format=self.date_format)
            except ValueError as exc:
                self.dates[text] = str(exc)
        return self.dates[text]

    def _read_birthday(
        self, birthday_text: str, *, line: int, contact_id: str, held: list[str]
    ) -> date | None:
        """The cell's date; None when it is empty, or not a date (reported)."""
        birthday = self._parsed_date(birthday_text)
        if isinstance(birthday, str):
            self.report(
                _("{birthday}; no birthday messages for this contact").format(birthday=birthday),
                line=line,
                name="birthday",
                contact_id=contact_id,
                hint=self.date_hint,
            )
            held.append("birthday")
            birthday = None
        return birthday

    def _read_country(
        self, country_text: str, *, line: int, contact_id: str, held: list[str]
    ) -> str | None:
        """The cell's country code; None (reported) when it is not one, so the address is unused."""
        country = self.countries.get(country_text, "")
        if country == "":
            country = self.countries[country_text] = _known_country(country_text)
        if country is None:
            self.report(
                _(
                    "{country_text} is not an ISO 3166 country code, so the postal address "
                    "is not used"
                ).format(country_text=repr(country_text)),
                line=line,
                name="country",
                contact_id=contact_id,
                hint=_("use GB for the United Kingdom")
                if country_text.upper() == "UK"
                else _("use a two-letter code such as ES, FR or GB"),
            )
            held += ["country", "address"]
        return country

    def _check_postal_code(
        self,
        address: tuple[str, str, str, date | None],
        *,
        line: int,
        contact_id: str,
        held: list[str],
    ) -> None:
        """Report a postal code that is wrong for the country (address: country, postal code,
        region, the day the owner confirmed it)."""
        if fault := _postal_fault(*address):
            # A wrong postal code is a row problem for letters only: the email still goes.
            hint = fault.hint
            if self.sheet is not None and line in self.sheet.numbers.get(self.postal_position, ()):
                hint = _(
                    "the cell is a number in the spreadsheet, which drops leading zeros: "
                    "format the column as text and type the code again (e.g. 08001)"
                )
            self.report(
                fault.message, line=line, name=fault.field, contact_id=contact_id, hint=hint
            )
            held.append("postal_code")

    def _read_locale(self, locale_text: str, *, line: int, contact_id: str, held: list[str]) -> str:
        """The cell's locale; the default one (reported) when it is not known."""
        locale = self.locales.get(locale_text, "")
        if locale == "":
            locale = self.locales[locale_text] = _known_locale(locale_text)
        if locale is None:
            self.report(
                _("{locale} is not a known locale; messages use {default}").format(
                    locale=repr(locale_text), default=repr(self.default_locale)
                ),
                line=line,
                name="locale",
                contact_id=contact_id,
                hint=_("write a language code such as es, en, es_MX or en_GB"),
            )
            held.append("locale")
            locale = self.default_locale
        return locale

    def _read_channel(
        self, channel_text: str, *, line: int, contact_id: str, held: list[str]
    ) -> str | None:
        """The cell's preferred channel; None when empty, or not a channel (reported)."""
        channel = self.channels.get(channel_text, "")
        if channel == "":
            channel = self.channels[channel_text] = _channel(channel_text)
        if channel is None and channel_text:
            self.report(
                _("{channel_text} is not a channel; the campaign's channel is used").format(
                    channel_text=repr(channel_text)
                ),
                line=line,
                name="preferred_channel",
                contact_id=contact_id,
                hint=_("write email or letter, or leave the cell empty"),
            )
            held.append("preferred_channel")
        return channel

    def _read_tags(self, tags_text: str) -> frozenset[str]:
        """The cell's tags."""
        tags = self.tags.get(tags_text)
        if tags is None:
            tags = self.tags[tags_text] = _tags(tags_text)
        return tags

    def _read_opt_out(self, opt_out_text: str, *, line: int, contact_id: str) -> frozenset[str]:
        """The channels the cell opts out of; all of them (reported) when it cannot be read."""
        opt_out = self.opt_outs.get(opt_out_text, _UNSEEN)
        if opt_out is _UNSEEN:
            opt_out = self.opt_outs[opt_out_text] = _opt_out(opt_out_text)
        if opt_out is None:
            # An opt-out is never ignored: when unsure, the contact hears nothing.
            self.report(
                _(
                    "{opt_out_text} is not email, letter or all, so it counts as all (no messages)"
                ).format(opt_out_text=repr(opt_out_text)),
                line=line,
                name="opt_out",
                contact_id=contact_id,
                hint=_("write email, letter or all, or leave the cell empty to allow both"),
            )
            opt_out = _ALL
        return opt_out

    def _read_extra(self, cells: list[str]) -> Mapping[str, str]:
        """The row's non-empty cells of the columns outreach does not know."""
        extra = _NO_EXTRA
        if self.extra_columns:
            values = {
                key: cells[position] for position, key in self.extra_columns if cells[position]
            }
            if values:
                extra = MappingProxyType(values)
        return extra

    def _held_set(self, held: list[str]) -> frozenset[str]:
        """`held` as a set, one shared object for each list of fields (there are few)."""
        key = tuple(held)
        held_set = self.held_back.get(key)
        if held_set is None:
            held_set = self.held_back[key] = frozenset(key)
        return held_set

    def _read_consent(self, text: str, *, line: int, contact_id: str) -> date | bool | None:
        """The email_consent cell: a date, False for a refusal, None for none.

        Anything else ("sí", "x", "Sí - 12/03/2024") is reported and counts as no consent:
        a consent must be provable, so it is never guessed from a mark.
        """
        if text not in self.consents:
            self.consents[text] = _consent(text, date_format=self.date_format)
        found = self.consents[text]
        if isinstance(found, str):
            example = "03/12/2025" if self.date_format == "MDY" else "12/03/2025"
            self.report(
                _(
                    "{problem}, so the contact counts as not having consented to marketing email"
                ).format(problem=found),
                line=line,
                name="email_consent",
                contact_id=contact_id,
                hint=_(
                    "write the day they consented ({example} or 2025-03-12), no if they "
                    "refused, or leave it empty; say where they consented in consent_source"
                ).format(example=example),
            )
            return None
        return found

    def _confirmed(self, text: str, *, line: int, contact_id: str) -> date | None:
        """The date in the address_confirmed cell; an unreadable one is reported and ignored."""
        if not text:
            return None
        found = self._parsed_date(text)
        if isinstance(found, str):
            self.report(
                _(
                    "{problem}; the postal code is checked as if the address were not confirmed"
                ).format(problem=found),
                line=line,
                name="address_confirmed",
                contact_id=contact_id,
                hint=self.date_hint,
            )
            return None
        return found


def _postal_fault(
    country: str, postal_code: str, region: str, confirmed: date | None
) -> PostalCodeProblem | None:
    """What the address data finds wrong with a postal code, unless the owner confirmed the
    address (address_confirmed): a new street or a gap in the data must not cost a letter."""
    return None if confirmed is not None else postal_code_problem(country, postal_code, region)


class _FirstRows(_RowReader):
    """Reads rows again only to find where each of some ids was first used."""

    def __init__(
        self, *, wanted: set[str], path: Path, layout: _Layout, settings: ContactsSettings
    ) -> None:
        super().__init__(path=path, layout=layout, settings=settings, default_locale="")
        self.wanted = wanted
        self.found: dict[str, tuple[int, str]] = {}  # id folded → (line, id)

    def _identify(self, contact_id: str, *, line: int) -> str | None:
        if contact_id and _ID.fullmatch(contact_id):
            folded = contact_id.casefold()
            if folded in self.wanted and folded not in self.found:
                self.found[folded] = (line, contact_id)
        return None  # no contact is made


@dataclass
class _Tally:
    """What a stream has found so far: the file's problems and its data rows."""

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    done: bool = False


class ContactStream(Iterator[Contact]):
    """The usable contacts of a file, read as they are iterated: only the rows in hand are in
    memory. `problems` and `rows` are complete once the stream is exhausted."""

    def __init__(
        self, *, path: Path, contacts: Iterator[Contact], tally: _Tally, size_hint: int
    ) -> None:
        self.path = path
        self.size_hint = size_hint  # at least the number of contacts (the file's lines)
        self._contacts = contacts
        self._tally = tally

    @classmethod
    def of(cls, contact_list: ContactList) -> ContactStream:
        """The contacts of a list already read, as a stream."""
        tally = _Tally(list(contact_list.problems), contact_list.rows)

        def contacts() -> Iterator[Contact]:
            yield from contact_list.contacts
            tally.done = True

        return cls(
            path=contact_list.path,
            contacts=contacts(),
            tally=tally,
            size_hint=len(contact_list.contacts),
        )

    def __iter__(self) -> ContactStream:
        return self

    def __next__(self) -> Contact:
        return next(self._contacts)

    def __enter__(self) -> ContactStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (when the stream is left before its end)."""
        close = getattr(self._contacts, "close", None)
        if close is not None:
            close()

    @property
    def done(self) -> bool:
        """Whether every row has been read."""
        return self._tally.done

    @property
    def problems(self) -> tuple[Problem, ...]:
        """Every problem in the file, in line order."""
        self._require_done()
        return tuple(self._tally.problems)

    @property
    def rows(self) -> int:
        """The data rows read (blank lines not counted)."""
        self._require_done()
        return self._tally.rows

    def _require_done(self) -> None:
        if not self._tally.done:
            raise RuntimeError("contacts not all read yet")  # not translated: a bug


@dataclass
class _Start:
    """A file read up to its header: the reader is at the first data row."""

    reader: Iterator[list[str]]
    layout: _Layout
    header_line: int
    done: int  # the last line read so far; a row starts on the next one
    line_num: Callable[[], int]
    # Lines with a quote inside a quoted value that is not doubled ("Lo"pez"): the CSV reader
    # would keep it and go on, so the row is a problem instead.
    stray_quotes: set[int] = field(default_factory=set)


class _QuoteCheck:
    """The lines given to the CSV reader, passed on as they are; notes (in `stray`) each line
    where a quoted value holds a lone quote that does not close it."""

    def __init__(self, lines: Iterator[str], *, delimiter: str, first: int) -> None:
        self.lines = lines
        self.delimiter = delimiter
        # A whole line of well-formed cells, checked at C speed; only the others are walked.
        d = re.escape(delimiter)
        field = f'(?: *"(?:[^"]|"")*" *|(?! *")[^{d}\\r\\n]*)'
        self.clean = re.compile(f"{field}(?:{d}{field})*[\\r\\n]*")
        self.number = first - 1
        self.quoted = False  # inside a quoted value (which may run over lines)
        self.stray: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.number += 1
        if '"' in line and (self.quoted or not self.clean.fullmatch(line)):
            self._scan(line)
        return line

    def _scan(self, line: str) -> None:
        delimiter, quoted, start = self.delimiter, self.quoted, not self.quoted
        at, end = 0, len(line)
        while at < end:
            char = line[at]
            if quoted:
                if char == '"':
                    after = line[at + 1 : at + 2]
                    if after == '"':
                        at += 1  # a doubled quote: one quote in the value
                    else:
                        quoted = False
                        rest = line[at + 1 :].lstrip(" ")
                        if rest and rest[0] not in (delimiter, "\r", "\n"):
                            self.stray.add(self.number)
            elif char == delimiter:
                start = True
            elif char == '"' and start:
                quoted, start = True, False
            elif char != " ":
                start = False
            at += 1
        self.quoted = quoted


def _start(
    lines: Iterator[str],
    *,
    path: Path,
    problems: list[Problem],
    settings: ContactsSettings | None = None,
    stray_quotes: bool = True,
) -> _Start:
    """The header read and the rows' reader ready; with `stray_quotes`, noting the lines
    with a lone quote inside a quoted value (a pass that only counts lines need not)."""
    delimiter, read = _detect_delimiter(lines, path)
    offset = 0  # Excel's "sep=" line, not seen by the CSV reader
    if len(read) == 1 and _EXCEL_SEP.fullmatch(read[0].strip().strip('"')):
        read, offset = [], 1
    # skipinitialspace lets `a, "Núñez, Ana"` quote as meant; not strict, so a space after a
    # closing quote is a stray space rather than a broken file.
    source = itertools.chain(read, lines)
    checked = _QuoteCheck(source, delimiter=delimiter, first=offset + 1) if stray_quotes else None
    reader = csv.reader(
        checked if checked is not None else source,
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=True,
        strict=False,
    )
    header_line = offset
    layout: _Layout | None = None
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                mapping, preset = _mapping(settings)
                layout = _read_layout(
                    row,
                    path=path,
                    line=header_line + 1,
                    problems=problems,
                    mapping=mapping,
                    preset=preset,
                )
                header_line += 1
                break
            header_line = reader.line_num + offset
    except csv.Error as exc:
        raise ContactsError(
            _("the header cannot be read ({exc})").format(exc=exc), path=path, line=header_line + 1
        ) from None
    if layout is None:
        raise ContactsError(
            _("the file has no header row, only empty cells"),
            path=path,
            line=1,
            hint=_("the first row must be the header, e.g. id,first_name,last_name,email"),
        )
    return _Start(
        reader,
        layout,
        header_line,
        reader.line_num + offset,
        lambda: reader.line_num + offset,
        checked.stray if checked is not None else set(),
    )


def _mapping(settings: ContactsSettings | None) -> tuple[dict[str, str], str | None]:
    """How the settings name the header's columns: (header key → column, preset)."""
    if settings is None or (settings.preset is None and not settings.columns):
        return {}, None
    return column_mapping(preset=settings.preset, columns=settings.columns), settings.preset


def _sheet_start(
    sheet: SheetRows, *, path: Path, where: str, problems: list[Problem], settings: ContactsSettings
) -> _Start:
    """A sheet read up to its header row (the first with a value)."""
    if sheet.notice is not None:
        problems.append(
            Problem(
                sheet.notice,
                path=str(path),
                field="contacts.sheet",
                hint=_("set contacts.sheet in config.yaml to name the sheet to read"),
            )
        )
    first = next(
        (row for row in sheet.text_rows() if row[2] or any(cell.strip() for cell in row[1])),
        None,
    )
    if first is None:
        raise ContactsError(
            _("the sheet is empty")
            if not sheet.rows
            else _("the sheet has no header row, only empty cells"),
            path=where,
            line=1,
            hint=_("the first row must be the header, e.g. id, first_name, last_name, email"),
        )
    number, cells, broken = first
    if broken:
        raise ContactsError(
            _("the header's cell {cell} holds {what}").format(cell=broken[0][0], what=broken[0][1]),
            path=where,
            line=number,
            hint=_("type the column's name in that cell"),
        )
    mapping, preset = _mapping(settings)
    layout = _read_layout(
        cells, path=where, line=number, problems=problems, mapping=mapping, preset=preset
    )
    # The data rows, noting which postal codes were number cells (their zeros are lost).
    header_at = next(i for i, (n, _) in enumerate(sheet.rows) if n == number)
    data = SheetRows(sheet.name, sheet.rows[header_at + 1 :], sheet.numbers)
    at = [number]

    def reader() -> Iterator[list[str]]:
        for row_number, cells, broken in data.text_rows(
            watch=frozenset({layout.at["postal_code"]})
        ):
            if row_number > at[0] + 1:  # rows without a value: one blank row stands for them
                at[0] = row_number - 1
                yield []
            at[0] = row_number
            if broken:
                problems.extend(
                    _broken_cell(cell, why, where=where, line=row_number) for cell, why in broken
                )
                yield []
                continue
            yield cells

    return _Start(reader(), layout, number, number, lambda: at[0])


def _broken_cell(cell: str, why: str, *, where: str, line: int) -> Problem:
    """The problem of a row with a cell whose value cannot be used."""
    return Problem(
        _("cell {cell} holds {why}, so the row is left out").format(cell=cell, why=why),
        path=where,
        line=line,
        hint=_("correct the cell in the spreadsheet program (or type its value) and save again"),
    )


def _rows(start: _Start, rows: _RowReader, tally: _Tally) -> Iterator[Contact]:
    """The contacts of the data rows; their problems and count go in `rows` and `tally`."""
    reader, done = start.reader, start.done
    while True:
        try:
            for row in reader:
                cells = [cell.strip() for cell in row]
                if any(cells):
                    tally.rows += 1
                    if start.stray_quotes and _stray_quote(start, rows, first=done + 1):
                        done = start.line_num()
                        continue
                    contact = rows.read(row, cells, line=done + 1, last=start.line_num())
                    if contact is not None:
                        yield contact
                done = start.line_num()
            return
        except csv.Error as exc:
            # The reader goes on with the next line, so one bad row costs only itself.
            tally.rows += 1
            rows.problems.append(
                Problem(
                    _("the row cannot be read ({exc}), so it is left out").format(exc=exc),
                    path=rows.where,
                    line=done + 1,
                    hint=_("check the quotes in this row"),
                )
            )
            done = start.line_num()


def _stray_quote(start: _Start, rows: _RowReader, *, first: int) -> bool:
    """Report the row if one of its lines has a lone quote inside a quoted value."""
    last = start.line_num()
    line = next((n for n in range(first, last + 1) if n in start.stray_quotes), None)
    if line is None:
        return False
    rows.problems.append(
        Problem(
            _(
                "a quote inside a quoted value is not doubled, so where the value ends "
                "is unclear; the row is left out"
            ),
            path=rows.where,
            line=line,
            hint=_('write a quote inside a quoted value twice, e.g. "Lo""pez", or remove it'),
        )
    )
    return True


# A quote left open swallows the rows after it into one cell. Past this many rows lost that
# way the file is refused: a run must not go ahead with thousands of contacts silently missing.
RUNAWAY_ROWS = 5
# A row over more lines than this is a quote left open, not a cell with an address in it.
_RUNAWAY_LINES = 3


def _runaway_quotes(path: Path, decoding: _Decoding) -> list[tuple[int, int]]:
    """(first, last line) of every row that runs over more than _RUNAWAY_LINES lines."""
    spans: list[tuple[int, int]] = []
    lines = _text_lines(path, decoding.encoding, decoding.errors, normalize=False)
    try:
        start = _start(lines, path=path, problems=[], stray_quotes=False)
        reader, done = start.reader, start.done
        while True:
            try:
                for _ in reader:
                    last = start.line_num()
                    if last - done > _RUNAWAY_LINES:
                        spans.append((done + 1, last))
                    done = last
                return spans
            except csv.Error:  # a cell past the size limit: the quote ran away
                last = start.line_num()
                if last > done + 1:
                    spans.append((done + 1, last))
                done = last
    finally:
        lines.close()


def _check_runaway_quotes(path: Path, decoding: _Decoding) -> None:
    """Refuse a file in which open quotes swallow more than RUNAWAY_ROWS rows."""
    if not decoding.quotes:
        return
    spans = _runaway_quotes(path, decoding)
    lost = sum(last - first + 1 for first, last in spans)
    if lost <= RUNAWAY_ROWS:
        return  # each such row is reported on its own, and the others go on
    first, last = spans[0]
    if len(spans) > 1:
        said = ngettext(
            "a quote opened on line {first} is not closed until line {last}: the {rows} rows "
            "on lines {first}–{last} would be read as one cell and left out; {more} more such "
            "span follows, {lost} rows in all, so the file is not used",
            "a quote opened on line {first} is not closed until line {last}: the {rows} rows "
            "on lines {first}–{last} would be read as one cell and left out; {more} more such "
            "spans follow, {lost} rows in all, so the file is not used",
            len(spans) - 1,
        )
    else:
        said = _(
            "a quote opened on line {first} is not closed until line {last}: the {rows} rows "
            "on lines {first}–{last} would be read as one cell and left out, so the file is "
            "not used"
        )
    raise ContactsError(
        said.format(first=first, last=last, rows=last - first + 1, more=len(spans) - 1, lost=lost),
        path=path,
        line=first,
        hint=_(
            'close or remove the quote on line {first} (a quote inside a value is written "")'
        ).format(first=first),
    )


def _first_rows(
    path: Path, *, decoding: _Decoding, wanted: set[str], settings: ContactsSettings
) -> dict[str, tuple[int, str]]:
    """Where each of the `wanted` ids (folded) is first used: a second reading of the file."""
    lines = _text_lines(path, decoding.encoding, decoding.errors)
    try:
        start = _start(lines, path=path, problems=[], settings=settings)
        finder = _FirstRows(wanted=wanted, path=path, layout=start.layout, settings=settings)
        for _ in _rows(start, finder, _Tally()):
            pass
    except ContactsError:
        return {}  # the file changed meanwhile: the problems say "an earlier row"
    finally:
        lines.close()
    return finder.found


def _check_regular(path: Path) -> None:
    """ContactsError if the contacts path is a FIFO, a device or a folder: reading one could
    wait for ever, or never end."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # not there, or unreadable: the reader says so in its own words
    if not stat.S_ISREG(mode):
        raise ContactsError(
            _("is not a regular file (a folder, a named pipe or a device), so it is not read"),
            path=path,
            hint=_("point paths.contacts in config.yaml at the contacts file itself"),
        )


def iter_contacts(path: Path, *, settings: ContactsSettings, default_locale: str) -> ContactStream:
    """Read contacts.csv as a stream; the header's errors are raised at once."""
    _check_regular(path)
    if is_workbook(path):
        # A workbook is read whole by its reader anyway: the stream is over the list.
        return ContactStream.of(
            load_contacts(path, settings=settings, default_locale=default_locale)
        )
    decoding = _encoding(path)
    _check_runaway_quotes(path, decoding)
    lines = _text_lines(path, decoding.encoding, decoding.errors)
    tally = _Tally()
    try:
        start = _start(lines, path=path, problems=tally.problems, settings=settings)
    except BaseException:
        lines.close()
        raise
    rows = _RowReader(
        path=path,
        layout=start.layout,
        settings=settings,
        default_locale=default_locale,
        remember=False,
    )
    _note_foreign(decoding, rows=rows, tally=tally, path=path)

    def contacts() -> Iterator[Contact]:
        try:
            yield from _rows(start, rows, tally)
        finally:
            lines.close()
        if rows.repeats:
            wanted = {contact_id.casefold() for _, contact_id, _ in rows.repeats}
            rows.settle_repeats(
                _first_rows(path, decoding=decoding, wanted=wanted, settings=settings)
            )
        _finish(tally, rows=rows, path=path, header_line=start.header_line)

    return ContactStream(
        path=path,
        contacts=contacts(),
        tally=tally,
        size_hint=max(decoding.lines - start.header_line, 0),
    )


def _note_foreign(decoding: _Decoding, *, rows: _RowReader, tally: _Tally, path: Path) -> None:
    """Tell the row reader which lines are in the file's other encoding, and report them."""
    if not decoding.foreign:
        return
    rows.foreign = decoding.foreign
    rows.foreign_name = "Windows-1252" if decoding.encoding == "utf-8" else "UTF-8"
    tally.problems.append(_mixed_problem(decoding, path))


def _finish(tally: _Tally, *, rows: _RowReader, path: Path | str, header_line: int) -> None:
    tally.problems += rows.problems
    if tally.rows == 0:
        tally.problems.append(
            Problem(
                _("the file has no contacts, only a header"),
                path=str(path),
                line=header_line,
                hint=_("add one row per contact below the header"),
            )
        )
    tally.done = True


def load_contacts(path: Path, *, settings: ContactsSettings, default_locale: str) -> ContactList:
    """Read contacts.csv; problem rows are reported and held back from what they cannot serve."""
    _check_regular(path)
    if is_workbook(path):
        return _load_workbook(path, settings=settings, default_locale=default_locale)
    # Loading makes no cycles, but its 100k new records would trigger full collections.
    with collector_paused():
        decoding = _encoding(path)
        _check_runaway_quotes(path, decoding)
        lines = _text_lines(path, decoding.encoding, decoding.errors)
        tally = _Tally()
        try:
            start = _start(lines, path=path, problems=tally.problems, settings=settings)
            rows = _RowReader(
                path=path, layout=start.layout, settings=settings, default_locale=default_locale
            )
            _note_foreign(decoding, rows=rows, tally=tally, path=path)
            contacts = tuple(_rows(start, rows, tally))
        finally:
            lines.close()
        _finish(tally, rows=rows, path=path, header_line=start.header_line)
        return ContactList(
            path=path, contacts=contacts, problems=tuple(tally.problems), rows=tally.rows
        )


def _load_workbook(path: Path, *, settings: ContactsSettings, default_locale: str) -> ContactList:
    """Read a sheet of an .xlsx, .xlsm or .ods workbook; problems name `file:sheet:row`."""
    # Loading makes no cycles, but its 100k new records would trigger full collections.
    with collector_paused():
        sheet = read_sheet(path, sheet=settings.sheet)
        where = f"{path}:{sheet.name}"
        tally = _Tally()
        start = _sheet_start(
            sheet, path=path, where=where, problems=tally.problems, settings=settings
        )
        rows = _RowReader(
            path=path,
            layout=start.layout,
            settings=settings,
            default_locale=default_locale,
            where=where,
            sheet=sheet,
        )
        contacts = tuple(_rows(start, rows, tally))
        _finish(tally, rows=rows, path=where, header_line=start.header_line)
        return ContactList(
            path=path, contacts=contacts, problems=tuple(tally.problems), rows=tally.rows
        )
