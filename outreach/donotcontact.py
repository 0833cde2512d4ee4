"""Do-not-contact list files (config `suppression_lists`, e.g. the Lista Robinson) → one
`DoNotContact` record, loaded once per run.

A list is a CSV file with a header. Its `email` column holds an address or the SHA-256 hex
digest of the lower-cased, trimmed address (lists are exchanged hashed so they do not reveal
who is on them); both kinds may share one file. Rows without an email may name a person for
letters: `first_name`, `last_name` (or `name`) and the postal address columns of contacts.csv.
A malformed line is named and skipped; a file that cannot be read is an error (a marketing run
must not go without it).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from outreach.contacts.model import Contact
from outreach.i18n import _
from outreach.model.errors import ContactsError, Problem
from outreach.rules.legal import DoNotContact, person_key

_DIGEST = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_POSTAL = ("street", "street2", "postal_code", "city", "region", "country")


@dataclass(frozen=True, slots=True)
class LoadedLists:
    """The lists as one record, when each file was last changed, and the lines skipped."""

    lists: DoNotContact
    changed: dict[str, str]  # file (as configured) → its modification time, ISO 8601 UTC
    problems: tuple[Problem, ...]


def load_lists(paths: Sequence[Path], *, root: Path) -> LoadedLists:
    """Read every list; raise ContactsError when one cannot be read."""
    emails: set[str] = set()
    digests: set[bytes] = set()
    people: set[str] = set()
    changed: dict[str, str] = {}
    problems: list[Problem] = []
    for configured in paths:
        path = configured if configured.is_absolute() else root / configured
        try:
            stamp = path.stat().st_mtime
            with path.open(encoding="utf-8-sig", newline="") as handle:
                for line, row in _rows(handle, str(configured), problems):
                    _take(
                        row,
                        line=line,
                        where=str(configured),
                        into=(emails, digests, people),
                        problems=problems,
                    )
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ContactsError(
                _("the do-not-contact list cannot be read ({error}: {exc})").format(
                    error=exc.__class__.__name__, exc=exc
                ),
                path=configured,
                field="suppression_lists",
                hint=_(
                    "fix or restore the file, or remove it from suppression_lists in "
                    "config.yaml; no marketing message goes out until it can be consulted"
                ),
            ) from None
        changed[str(configured)] = datetime.fromtimestamp(stamp, tz=UTC).isoformat(
            timespec="seconds"
        )
    lists = DoNotContact(
        emails=frozenset(emails),
        digests=frozenset(digests),
        people=frozenset(people),
        sources=tuple(str(p) for p in paths),
    )
    return LoadedLists(lists, changed, tuple(problems))


def _rows(
    handle: Iterable[str], where: str, problems: list[Problem]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return
    names = [cell.strip().lower() for cell in header]
    if "email" not in names and "last_name" not in names and "name" not in names:
        raise csv.Error(_("the first line must be a header with an email column"))
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        yield (
            reader.line_num,
            {name: cell.strip() for name, cell in zip(names, cells, strict=False) if name},
        )


def _take(
    row: dict[str, str],
    *,
    line: int,
    where: str,
    into: tuple[set[str], set[bytes], set[str]],
    problems: list[Problem],
) -> None:
    emails, digests, people = into
    value = row.get("email", "").strip().lower()
    if value:
        if _DIGEST.fullmatch(value):
            digests.add(bytes.fromhex(value))
        elif _ADDRESS.fullmatch(value):
            emails.add(value)
        else:
            problems.append(
                Problem(
                    _(
                        "{value} is neither an email address nor a SHA-256 hex digest (64 "
                        "characters 0-9a-f); the line is skipped"
                    ).format(value=repr(value[:80])),
                    path=where,
                    line=line,
                    field="email",
                    hint=_("write the address, or the SHA-256 of the lower-cased, trimmed address"),
                )
            )
        return
    name = row.get("name", "")
    first, last = row.get("first_name", ""), row.get("last_name", "") or name
    if last and row.get("street") and row.get("postal_code"):
        values = {key: row.get(key) or None for key in _POSTAL}
        contact = Contact(
            id="-",
            line=line,
            first_name=first or None,
            last_name=last,
            street=values["street"],
            street2=values["street2"],
            postal_code=values["postal_code"],
            city=values["city"],
            region=values["region"],
            country=(values["country"] or "ES").upper(),
        )
        people.add(person_key(contact))
