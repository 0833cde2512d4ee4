"""Letters the post returned: block letters to that contact's postal address until the
address in contacts.csv changes (with `fallback`, email takes over)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from outreach.contacts import Contact, load_contacts
from outreach.i18n import _
from outreach.ledger import Block, open_ledger
from outreach.model.config import Settings
from outreach.model.errors import FeedbackError, Problem
from outreach.rules.blocks import postal_key
from outreach.rules.postal import missing_address_fields

_ID_COLUMNS = (
    *("id", "contact", "contact_id", "contact id", "customer", "reference", "ref"),
    *("referencia", "cliente", "contacto", "id_cliente"),  # what a Spanish post office sends
)
_DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True, slots=True)
class ReturnedEntry:
    """One contact id to block, and where it came from."""

    contact_id: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ReturnedReport:
    """What `returned` did."""

    blocked: tuple[Block, ...]
    already: tuple[str, ...]  # contact ids whose current address was blocked already
    problems: tuple[Problem, ...]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "blocked": [b.contact_id for b in self.blocked],
            "already": list(self.already),
            "problems": [p.as_dict() for p in self.problems],
        }


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # what spreadsheets on Windows save


def read_returned_file(path: Path) -> tuple[list[ReturnedEntry], list[Problem]]:
    """Contact ids from the post's list: a CSV whose header has an id column (`id`,
    `contact`, `contact_id`, `reference`...), or one id per line (`#` comments ignored)."""
    try:
        text = _decode(path.read_bytes())
    except OSError as exc:
        raise FeedbackError(
            _("cannot read: {error}").format(error=exc.strerror),
            path=path,
            hint=_("check the file name"),
        ) from None
    lines = text.splitlines()
    first = next(
        (i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")),
        None,
    )
    entries: list[ReturnedEntry] = []
    problems: list[Problem] = []
    if first is None:
        return entries, problems
    header = lines[first]
    for delimiter in _DELIMITERS:
        names = [c.strip().lower() for c in next(csv.reader([header], delimiter=delimiter), [])]
        column = next((names.index(n) for n in _ID_COLUMNS if n in names), None)
        if column is None or (len(names) == 1 and delimiter != ","):
            continue
        reader = csv.reader(io.StringIO("\n".join(lines[first + 1 :])), delimiter=delimiter)
        for row in reader:
            line = first + 1 + reader.line_num
            if not row or row[0].lstrip().startswith("#"):
                continue
            cell = row[column].strip() if column < len(row) else ""
            if not cell:
                problems.append(
                    Problem(
                        _("no contact id on this line"),
                        path=str(path),
                        line=line,
                        field=names[column],
                        hint=_("give the contact id of each returned letter"),
                    )
                )
                continue
            entries.append(ReturnedEntry(cell, line))
        return entries, problems
    for number, raw in enumerate(lines, start=1):
        value = raw.strip()
        if value and not value.startswith("#"):
            entries.append(ReturnedEntry(value, number))
    return entries, problems


def mark_returned(
    settings: Settings,
    *,
    entries: Sequence[ReturnedEntry],
    source: Path | None,
    today: date,
    now: datetime,
    problems: Sequence[Problem] = (),
) -> ReturnedReport:
    """Block letters to each contact's current postal address; unknown ids are reported."""
    found = load_contacts(
        settings.contacts_path, settings=settings.contacts, default_locale=settings.default_locale
    )
    contacts: dict[str, Contact] = {c.id: c for c in found.contacts}
    where = str(source) if source is not None else None
    issues = list(problems)
    wanted: list[tuple[ReturnedEntry, Contact]] = []
    for entry in entries:
        contact = contacts.get(entry.contact_id)
        if contact is None:
            issues.append(
                Problem(
                    _("there is no contact {id} in {file}").format(
                        id=repr(entry.contact_id), file=settings.paths.contacts
                    ),
                    path=where,
                    line=entry.line,
                    contact_id=entry.contact_id,
                    hint=_("give the id from the contacts file (the letter's manifest.csv has it)"),
                )
            )
            continue
        if missing_address_fields(contact):
            issues.append(
                Problem(
                    _("contact {id} has no complete postal address to block").format(id=contact.id),
                    path=where,
                    line=entry.line,
                    contact_id=contact.id,
                    hint=_("no letter goes to it anyway until the address is completed"),
                )
            )
            continue
        wanted.append((entry, contact))
    blocked: list[Block] = []
    already: list[str] = []
    with open_ledger(settings) as ledger:
        existing = {
            (b.contact_id, b.postal_key)
            for contact_id in {c.id for _, c in wanted}
            for b in ledger.blocks(contact_id=contact_id)
            if b.channel == "letter"
        }
        for _key, contact in wanted:
            key = postal_key(contact)
            if (contact.id, key) in existing:
                already.append(contact.id)
                continue
            existing.add((contact.id, key))
            blocked.append(
                Block(
                    channel="letter",
                    value=contact.id,
                    contact_id=contact.id,
                    reason="returned-letter",
                    day=today,
                    postal_key=key,
                    diagnostic=_("imported from {file}").format(file=source.name)
                    if source is not None
                    else None,
                )
            )
        if blocked:
            ledger.record_feedback(blocks=blocked, now=now)
    return ReturnedReport(blocked=tuple(blocked), already=tuple(already), problems=tuple(issues))
