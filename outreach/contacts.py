"""contacts.csv → Contact records and a report of the rows' problems."""

from __future__ import annotations

import codecs
import csv
import difflib
import gc
import io
import re
import unicodedata
from calendar import month_name
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType

from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email

from outreach.config import ContactsSettings
from outreach.errors import ContactsError, Problem

# fmt: off
KNOWN_COLUMNS = (
    "id", "first_name", "last_name", "title", "email", "birthday",
    "street", "street2", "postal_code", "city", "region", "country",
    "preferred_channel", "locale", "tags", "opt_out",
)
CHANNELS = ("email", "letter")


@dataclass(frozen=True, slots=True)
class Contact:
    """One usable contact row. Empty cells are None; `extra` holds other non-empty columns.

    A field whose cell was present but invalid is None here and listed in `held_back`
    (e.g. an invalid email: the contact can still get letters, never an email).
    """

    id: str
    line: int
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    email: str | None = None
    birthday: date | None = None
    street: str | None = None
    street2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country: str = "ES"
    preferred_channel: str | None = None
    locale: str = "es"
    tags: frozenset[str] = frozenset()
    opt_out: frozenset[str] = frozenset()
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    held_back: frozenset[str] = frozenset()

    def template_fields(self) -> dict[str, object]:
        """What templates and `where` see as `contact`: non-empty fields and extra columns."""
        fields: dict[str, object] = dict(self.extra)
        for name in (
            "id", "first_name", "last_name", "title", "email", "birthday", "street",
            "street2", "postal_code", "city", "region", "country", "preferred_channel",
            "locale",
        ):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        fields["tags"] = sorted(self.tags)
        fields["opt_out"] = sorted(self.opt_out)
        return fields


@dataclass(frozen=True, slots=True)
class ContactList:
    """The readable contacts of a file, and every problem found in it."""

    path: Path
    contacts: tuple[Contact, ...]
    problems: tuple[Problem, ...]
    rows: int  # data rows read (blank lines not counted)
# fmt: on


# --- dates -------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUMERIC_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d+)")


def date_hint(date_format: str) -> str:
    """How to write a date under a `contacts.date_format`, for a Problem's hint."""
    example = "11/24/1990" if date_format == "MDY" else "24/11/1990"
    return f"write the date as {example} or 1990-11-24"


def _calendar_date(value: str, *, year: int, month: int, day: int, order: str) -> date:
    if not 1 <= month <= 12:
        reading = {"DMY": "day first (DD/MM/YYYY)", "MDY": "month first (MM/DD/YYYY)"}
        why = f" (contacts.date_format reads it {reading[order]})" if order in reading else ""
        raise ValueError(f"{value!r} has no month {month}{why}")
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(
            f"{value!r} is not in the calendar: {month_name[month]} {year} has no day {day}"
        ) from None


def parse_date(value: str, *, date_format: str) -> date:
    """ISO YYYY-MM-DD, or DD/MM/YYYY (DMY) / MM/DD/YYYY (MDY); ValueError otherwise."""
    if date_format not in ("DMY", "MDY"):
        raise ValueError(f"unknown date format {date_format!r} (use DMY or MDY)")
    text = value.strip()
    iso = _ISO_DATE.fullmatch(text)
    if iso:
        year, month, day = (int(part) for part in iso.groups())
        return _calendar_date(text, year=year, month=month, day=day, order="ISO")
    numeric = _NUMERIC_DATE.fullmatch(text)
    if numeric:
        first, _, second, year_text = numeric.groups()
        if len(year_text) != 4:
            # 24/11/90 could be 1990 or 2090; guessing would put a wrong age in a letter.
            raise ValueError(f"{text!r} needs a four-digit year")
        day_text, month_text = (first, second) if date_format == "DMY" else (second, first)
        return _calendar_date(
            text, year=int(year_text), month=int(month_text), day=int(day_text), order=date_format
        )
    shape = "DD/MM/YYYY" if date_format == "DMY" else "MM/DD/YYYY"
    raise ValueError(f"{text!r} is not a date as {shape} or YYYY-MM-DD")


# --- email -------------------------------------------------------------------------------

# A strict subset of what email_validator accepts, normalised the same way (the domain
# lower-cased, the local part kept): plain ASCII addresses take this shortcut because
# validate_email costs ~25 µs, too much for 100k rows. Everything else goes to it. The
# lookaheads: a local part of at most 64, an address of at most 254, no "--" (IDNA's rules
# for xn-- labels stay with the library), and no special-use top-level domain (RFC 6761).
_PLAIN_EMAIL = re.compile(
    r"""
    (?=[^@]{1,64}@) (?=.{1,254}\Z) (?!.*--)
    [a-z0-9_+-]+ (?:\.[a-z0-9_+-]+)*
    @ (?:[a-z0-9] (?:[a-z0-9-]{0,61}[a-z0-9])? \.)+
    (?!(?:arpa|invalid|local|localhost|onion|test)\Z) [a-z]{2,63}
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)


@lru_cache(maxsize=4096)
def _validated_email(address: str) -> str:
    return validate_email(address, check_deliverability=False).normalized


def normalize_email(address: str) -> str:
    """An email address in email_validator's normalised form; ValueError if invalid."""
    text = address.strip()
    if _PLAIN_EMAIL.fullmatch(text):
        local, _, domain = text.rpartition("@")
        return f"{local}@{domain.lower()}"
    try:
        return _validated_email(text)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


# --- locales and countries ---------------------------------------------------------------

# ISO 3166-1 alpha-2 (and XK, Kosovo, which postal services accept).
_COUNTRY_TEXT = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA
    ZM ZW
"""
COUNTRY_CODES = frozenset(_COUNTRY_TEXT.split())


@lru_cache(maxsize=256)
def normalize_locale(value: str) -> str:
    """`es`, `es-MX`, `en_gb` → babel's canonical `es`, `es_MX`, `en_GB`; ValueError if unknown."""
    try:
        return str(Locale.parse(value.strip().replace("-", "_")))
    except (ValueError, UnknownLocaleError):
        raise ValueError(f"{value!r} is not a known locale") from None


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
_UNSEEN: frozenset[str] = frozenset({"(not parsed yet)"})
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})
_SQUASHED_KNOWN = {name.replace("_", ""): name for name in KNOWN_COLUMNS}


def _line_of(data: bytes, position: int) -> int:
    return data.count(b"\n", 0, position) + 1


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252."""
    if data.startswith(b"PK\x03\x04"):
        raise ContactsError(
            "this is a spreadsheet workbook, not a CSV file",
            path=path,
            hint="in the spreadsheet use File → Save as / Download → CSV",
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ContactsError(
                "starts as UTF-16 but is not valid UTF-16",
                path=path,
                hint="save the file again as CSV UTF-8",
            ) from None
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8")
        except UnicodeDecodeError as exc:
            # A UTF-8 mark followed by other bytes is a file pasted together from two
            # encodings: any single guess would garble some names.
            raise ContactsError(
                "starts with a UTF-8 mark but is not UTF-8 here",
                path=path,
                line=_line_of(data, exc.start + len(codecs.BOM_UTF8)),
                hint="save the file again as CSV UTF-8",
            ) from None
    if b"\x00" in data:
        raise ContactsError(
            "contains NUL bytes, so it is not a text file (or is UTF-16 without its mark)",
            path=path,
            line=_line_of(data, data.index(b"\x00")),
            hint="save the file again as CSV UTF-8",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise ContactsError(
            f"is neither UTF-8 nor Windows-1252 (byte 0x{data[exc.start]:02X})",
            path=path,
            line=_line_of(data, exc.start),
            hint="save the file again as CSV UTF-8",
        ) from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ContactsError(
            "contacts file not found",
            path=path,
            hint="check paths.contacts in config.yaml, or create the file with a header row",
        ) from None
    except IsADirectoryError:
        raise ContactsError(
            "is a folder, not a CSV file", path=path, hint="point paths.contacts at the CSV file"
        ) from None
    except OSError as exc:
        raise ContactsError(
            f"cannot be read ({exc.strerror or exc})",
            path=path,
            hint="check the file's permissions",
        ) from None
    # Canonical composition, so a name typed on a Mac ("José" as e + ◌́) compares, filters and
    # prints like the same name typed elsewhere. Nothing visible changes.
    return unicodedata.normalize("NFC", _decode(data, path))


def _outside_quotes_counts(line: str) -> dict[str, int]:
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return counts


def _detect_delimiter(text: str, path: Path) -> str:
    """The delimiter counted in the header line (csv.Sniffer guesses wrong on small files)."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if not line.strip():
            continue
        counts = _outside_quotes_counts(line)
        best = max(counts.values())
        if best == 0:
            return ","  # a single column: only `id`, or no header at all
        tied = [d for d in _DELIMITERS if counts[d] == best]
        if len(tied) > 1:
            with_id = [
                d for d in tied if "id" in (c.strip().lower() for c in line.strip().split(d))
            ]
            if len(with_id) != 1:
                names = " and ".join(_DELIMITER_NAMES[d] for d in tied)
                raise ContactsError(
                    f"cannot tell the delimiter: the header has as many {names} characters",
                    path=path,
                    line=number,
                    hint="use one delimiter (comma, semicolon or tab) in the header",
                )
            return with_id[0]
        return tied[0]
    raise ContactsError(
        "the file is empty",
        path=path,
        line=1,
        hint="the first row must be the header, e.g. id,first_name,last_name,email",
    )


def _column_key(name: str) -> str:
    return "_".join(name.strip().lower().split())


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


def _read_layout(header: list[str], *, path: Path, line: int, problems: list[Problem]) -> _Layout:
    at: dict[str, int] = {}
    extra: list[tuple[int, str]] = []
    unnamed: list[int] = []
    names: list[str] = []
    for position, raw in enumerate(header):
        key = _column_key(raw)
        if not key:
            unnamed.append(position)
            names.append(f"column {position + 1}")
            continue
        squashed = key.replace("_", "").replace("-", "")
        name = _SQUASHED_KNOWN.get(squashed, key)
        if name in names:
            raise ContactsError(
                f"two columns are both {name!r} (columns {names.index(name) + 1} and "
                f"{position + 1}), so it is unclear which one holds the data",
                path=path,
                line=line,
                field=name,
                hint="rename or remove one of them",
            )
        names.append(name)
        if name in KNOWN_COLUMNS:
            at[name] = position
            continue
        extra.append((position, key))
        near = difflib.get_close_matches(squashed, _SQUASHED_KNOWN, n=1, cutoff=0.8)
        # street3 is a column of its own, not a misspelt street2.
        if near and near[0].rstrip("0123456789") != squashed.rstrip("0123456789"):
            meant = _SQUASHED_KNOWN[near[0]]
            problems.append(
                Problem(
                    f"{raw.strip()!r} is not a known column, so it only reaches templates; "
                    f"did you mean {meant!r}?",
                    path=str(path),
                    line=line,
                    field=key,
                    column=position + 1,
                    hint=f"rename the column to {meant} if that is what it holds",
                )
            )
    if "id" not in at:
        raise ContactsError(
            "there is no id column",
            path=path,
            line=line,
            field="id",
            hint="the first row must be the header and include an id column "
            "(e.g. id,first_name,last_name,email); every contact needs a unique id",
        )
    width = len(header)
    return _Layout(
        width=width,
        at={name: at.get(name, width) for name in KNOWN_COLUMNS},
        extra=tuple(extra),
        unnamed=tuple(unnamed),
        names=(*names, "?"),
        header=tuple(cell.strip().casefold() for cell in header),
    )


def _opt_out(value: str) -> frozenset[str] | None:
    words = [word for word in _SEPARATORS.split(value.lower()) if word]
    if not words or any(word not in _OPT_OUT_WORDS for word in words):
        return None
    return frozenset(kind for word in words for kind in _OPT_OUT_WORDS[word])


def _tags(value: str) -> frozenset[str]:
    return frozenset(tag for part in value.split(";") if (tag := part.strip().lower()))


def _known_locale(value: str) -> str | None:
    try:
        return normalize_locale(value)
    except ValueError:
        return None


def _known_country(value: str) -> str | None:
    code = value.upper()
    return code if code in COUNTRY_CODES else None


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
        self, *, path: Path, layout: _Layout, settings: ContactsSettings, default_locale: str
    ) -> None:
        self.where = str(path)
        self.layout = layout
        self.date_format = settings.date_format
        self.date_hint = date_hint(settings.date_format)
        self.default_country = settings.default_country
        self.default_locale = default_locale
        self.problems: list[Problem] = []
        self.contacts: list[Contact] = []
        self.first_seen: dict[str, tuple[int, str]] = {}  # id folded → (line, id)
        self.tags: dict[str, frozenset[str]] = {"": _NONE}
        self.opt_outs: dict[str, frozenset[str] | None] = {"": _NONE}
        self.locales: dict[str, str | None] = {"": default_locale}
        self.countries: dict[str, str | None] = {"": settings.default_country}
        self.channels: dict[str, str | None] = {"": None}
        self.held_back: dict[tuple[str, ...], frozenset[str]] = {(): _NONE}
        self.pick = itemgetter(*(layout.at[name] for name in KNOWN_COLUMNS))
        self.extra_columns = layout.extra
        self.id_position = layout.at["id"]
        self.header_id = layout.header[self.id_position]
        # Parsed birthdays, or why not; a date repeats in a big file (about 36,500 exist).
        self.dates: dict[str, date | str | None] = {"": None}

    def report(
        self, message: str, *, line: int, name: str, contact_id: str | None, hint: str
    ) -> None:
        """A Problem about the cell of column `name` on `line`."""
        names = self.layout.names
        position = names.index(name) if name in names else None
        self.problems.append(
            Problem(
                message,
                path=self.where,
                line=line,
                field=name,
                column=None if position is None else position + 1,
                contact_id=contact_id,
                hint=hint,
            )
        )

    def read(self, row: list[str], cells: list[str], *, line: int, last: int) -> None:
        """Check one non-blank row (as read, and stripped) and keep its contact if usable."""
        width = self.layout.width
        if len(cells) > width:
            if any(cells[width:]):
                self._report_overflow(cells, line=line)
                return
            del cells[width:]
        cells.extend([""] * (width + 1 - len(cells)))
        id_cell = cells[self.id_position]
        if id_cell.casefold() == self.header_id and self._repeats_header(cells):
            # Two exports pasted into one file: the second header is not a contact "id".
            self.problems.append(
                Problem(
                    "the header row appears again here; the row is left out",
                    path=self.where,
                    line=line,
                    hint="remove the repeated header row",
                )
            )
            return
        contact_id = self._identify(id_cell, line=line)
        if contact_id is None:
            return
        if _CONTROL.search("".join(row)) and self._unsafe(
            row, cells, line=line, last=last, contact_id=contact_id
        ):
            return
        for position in self.layout.unnamed:
            if cells[position]:
                self.report(
                    f"the value {cells[position]!r} is in a column without a name in the "
                    "header, so it is not used",
                    line=line,
                    name=self.layout.names[position],
                    contact_id=contact_id,
                    hint="give the column a name in the header row",
                )
        self.contacts.append(self._contact(cells, contact_id=contact_id, line=line))

    def _repeats_header(self, cells: list[str]) -> bool:
        width = self.layout.width
        return tuple(cell.casefold() for cell in cells[:width]) == self.layout.header

    def _report_overflow(self, cells: list[str], *, line: int) -> None:
        contact_id = cells[self.layout.at["id"]]
        self.problems.append(
            Problem(
                f"has {len(cells)} cells but the header has {self.layout.width} columns, so "
                "the cells may have shifted; the row is left out",
                path=self.where,
                line=line,
                contact_id=contact_id if _ID.fullmatch(contact_id) else None,
                hint='put quotes around a value that contains the delimiter, e.g. "Mayor, 5"',
            )
        )

    def _identify(self, contact_id: str, *, line: int) -> str | None:
        """The row's id, or None (reported) when it is empty, unsafe or already used."""
        if not contact_id:
            self.report(
                "the id is empty, so the row is left out",
                line=line,
                name="id",
                contact_id=None,
                hint="give every contact a unique id such as c042",
            )
            return None
        if not _ID.fullmatch(contact_id):
            self.report(
                f"the id {contact_id!r} may use only letters A–Z, digits, '.', '_' and '-' "
                "(starting with a letter or digit, at most 100), so the row is left out",
                line=line,
                name="id",
                contact_id=None,
                hint="ids name the files made for the contact; use something like c042",
            )
            return None
        folded = contact_id.casefold()
        first = self.first_seen.get(folded)
        if first is not None:
            first_line, first_id = first
            # Ids name files, and some file systems do not tell C001 from c001.
            case = "" if first_id == contact_id else f" (as {first_id!r}; case does not count)"
            self.report(
                f"id {contact_id!r} is already used on line {first_line}{case}, "
                "so this row is left out",
                line=line,
                name="id",
                contact_id=contact_id,
                hint="give every contact its own id; keep the first row or merge the two",
            )
            return None
        self.first_seen[folded] = (line, contact_id)
        return contact_id

    def _unsafe(
        self, row: list[str], cells: list[str], *, line: int, last: int, contact_id: str
    ) -> bool:
        """Report every cell that could break a message; True if there is one."""
        span = f"; the row runs over lines {line}–{last}" if last > line else ""
        unsafe = False
        for position, (raw, cell) in enumerate(zip(row, cells, strict=False)):
            if _LINE_BREAK.search(raw) or _CONTROL.search(cell):
                unsafe = True
                self.report(
                    "contains a line break or a control character, so the contact is left "
                    f"out: it cannot be put in a message safely{span}",
                    line=line,
                    name=self.layout.names[position],
                    contact_id=contact_id,
                    hint="keep every cell on one line (is a quote left open?) "
                    "and remove invisible characters",
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
        ) = self.pick(cells)
        held_back: list[str] = []

        email: str | None = email_text or None
        if email is not None:
            try:
                email = normalize_email(email)
            except ValueError as exc:
                reason = str(exc).rstrip(".")
                self.report(
                    f"{email!r} is not a valid email address ({reason}); the contact gets no email",
                    line=line,
                    name="email",
                    contact_id=contact_id,
                    hint="correct the address, or leave the cell empty",
                )
                email = None
                held_back.append("email")

        if birthday_text not in self.dates:
            try:
                self.dates[birthday_text] = parse_date(birthday_text, date_format=self.date_format)
            except ValueError as exc:
                self.dates[birthday_text] = str(exc)
        birthday = self.dates[birthday_text]
        if isinstance(birthday, str):
            self.report(
                f"{birthday}; no birthday messages for this contact",
                line=line,
                name="birthday",
                contact_id=contact_id,
                hint=self.date_hint,
            )
            held_back.append("birthday")
            birthday = None

        country = self.countries.get(country_text, "")
        if country == "":
            country = self.countries[country_text] = _known_country(country_text)
        if country is None:
            self.report(
                f"{country_text!r} is not an ISO 3166 country code, so the postal address is "
                "not used",
                line=line,
                name="country",
                contact_id=contact_id,
                hint="use GB for the United Kingdom"
                if country_text.upper() == "UK"
                else "use a two-letter code such as ES, FR or GB",
            )
            held_back += ["country", "address"]
            # Blank the address too: nothing may print it with a guessed country.
            street = street2 = postal_code = city = region = ""
            country = self.default_country

        locale = self.locales.get(locale_text, "")
        if locale == "":
            locale = self.locales[locale_text] = _known_locale(locale_text)
        if locale is None:
            self.report(
                f"{locale_text!r} is not a known locale; messages use {self.default_locale!r}",
                line=line,
                name="locale",
                contact_id=contact_id,
                hint="write a language code such as es, en, es_MX or en_GB",
            )
            held_back.append("locale")
            locale = self.default_locale

        channel = self.channels.get(channel_text, "")
        if channel == "":
            channel = self.channels[channel_text] = _channel(channel_text)
        if channel is None and channel_text:
            self.report(
                f"{channel_text!r} is not a channel; the campaign's channel is used",
                line=line,
                name="preferred_channel",
                contact_id=contact_id,
                hint="write email or letter, or leave the cell empty",
            )
            held_back.append("preferred_channel")

        tags = self.tags.get(tags_text)
        if tags is None:
            tags = self.tags[tags_text] = _tags(tags_text)

        opt_out = self.opt_outs.get(opt_out_text, _UNSEEN)
        if opt_out is _UNSEEN:
            opt_out = self.opt_outs[opt_out_text] = _opt_out(opt_out_text)
        if opt_out is None:
            # An opt-out is never ignored: when unsure, the contact hears nothing.
            self.report(
                f"{opt_out_text!r} is not email, letter or all, so it counts as all (no messages)",
                line=line,
                name="opt_out",
                contact_id=contact_id,
                hint="write email, letter or all, or leave the cell empty to allow both",
            )
            opt_out = _ALL

        extra = _NO_EXTRA
        if self.extra_columns:
            values = {
                key: cells[position] for position, key in self.extra_columns if cells[position]
            }
            if values:
                extra = MappingProxyType(values)

        held = tuple(held_back)
        held_set = self.held_back.get(held)
        if held_set is None:
            held_set = self.held_back[held] = frozenset(held)

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
            extra=extra,
            held_back=held_set,
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: loading makes no cycles, but its 100k new records
    would trigger full collections that cost a fifth of the load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_contacts(path: Path, *, settings: ContactsSettings, default_locale: str) -> ContactList:
    """Read contacts.csv; problem rows are reported and held back from what they cannot serve."""
    with _collector_paused():
        return _load_contacts(path, settings=settings, default_locale=default_locale)


# A line with its ending, split as io.StringIO(text, newline="") splits (\r\n, \r or \n).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _lines(text: str) -> Iterator[str]:
    # StringIO would hold a second copy of the file at 4 bytes per character (60 MB for
    # 100,000 contacts); this holds one line at a time.
    return (match.group() for match in _LINE.finditer(text))


def _load_contacts(path: Path, *, settings: ContactsSettings, default_locale: str) -> ContactList:
    text = _read_text(path)
    delimiter = _detect_delimiter(text, path)
    # skipinitialspace lets `a, "Núñez, Ana"` quote as meant; not strict, so a space after a
    # closing quote is a stray space rather than a broken file.
    reader = csv.reader(
        _lines(text),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=True,
        strict=False,
    )
    header_problems: list[Problem] = []
    header_line = 0
    layout: _Layout | None = None
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                layout = _read_layout(
                    row, path=path, line=header_line + 1, problems=header_problems
                )
                header_line += 1
                break
            header_line = reader.line_num
    except csv.Error as exc:
        raise ContactsError(
            f"the header cannot be read ({exc})", path=path, line=header_line + 1
        ) from None
    if layout is None:
        raise ContactsError(
            "the file has no header row, only empty cells",
            path=path,
            line=1,
            hint="the first row must be the header, e.g. id,first_name,last_name,email",
        )
    rows = _RowReader(path=path, layout=layout, settings=settings, default_locale=default_locale)
    data_rows = 0
    done = reader.line_num  # the last line read so far; a row starts on the next one
    while True:
        try:
            for row in reader:
                cells = [cell.strip() for cell in row]
                if any(cells):
                    data_rows += 1
                    rows.read(row, cells, line=done + 1, last=reader.line_num)
                done = reader.line_num
            break
        except csv.Error as exc:
            # The reader goes on with the next line, so one bad row costs only itself.
            data_rows += 1
            rows.problems.append(
                Problem(
                    f"the row cannot be read ({exc}), so it is left out",
                    path=str(path),
                    line=done + 1,
                    hint="check the quotes in this row",
                )
            )
            done = reader.line_num
    problems = header_problems + rows.problems
    if data_rows == 0:
        problems.append(
            Problem(
                "the file has no contacts, only a header",
                path=str(path),
                line=header_line,
                hint="add one row per contact below the header",
            )
        )
    return ContactList(
        path=path, contacts=tuple(rows.contacts), problems=tuple(problems), rows=data_rows
    )
