"""`outreach export` and `outreach forget`: one person's data, shown or erased.

`export` gathers their contacts row(s) and the ledger's rows about them (messages with their
legal basis and files, suppressions, blocks, bounces, replies). `forget` erases them in steps
that can each be repeated — their salted hashes onto the suppression list first (no run in
between mails them), then their files (outbox emails, letters: a batch is rewritten without
every page of their letters, found by its manifest, kept bounce and reply mails, report pages
that name them, rebuilt), then their
ledger rows, then the ledger is compacted and one audit line written. Killed at any point,
running it again finishes the job.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from outreach.contacts import Contact, load_contacts
from outreach.deliver.printing import PrintedLetter
from outreach.files import write_atomic
from outreach.i18n import _
from outreach.ledger import open_ledger, workspace_lock
from outreach.ledger.backend import ledger_exists
from outreach.ledger.privacy import (
    PersonRows,
    compact,
    erase_rows,
    forgotten_keys,
    person_rows,
    suppress_forgotten,
)
from outreach.model.config import Settings
from outreach.model.errors import OutreachError
from outreach.postage import postage_csv, postage_lines
from outreach.rules.legal import forgotten_key
from outreach.workspace import display_path

AUDIT_NAME = "forgotten.log"
_TEXT_SUFFIXES = (".eml", ".html", ".htm", ".txt", ".json", ".csv")


class UnknownPersonError(OutreachError):
    """`forget` or `export` of an id nobody has."""


@dataclass(frozen=True, slots=True)
class Person:
    """Who is asked about: their rows in the contacts file and what identifies them."""

    contact_id: str
    rows: tuple[Contact, ...]
    addresses: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        """What `forgotten_key` hashes: `id:<id>` and each address."""
        return [f"id:{self.contact_id}", *self.addresses]

    @property
    def names(self) -> list[str]:
        """Their full names and surnames as written (to find them in files)."""
        found = []
        for row in self.rows:
            if row.last_name:
                found.append(row.last_name)
        return list(dict.fromkeys(found))


def find_person(settings: Settings, contact_id: str) -> Person:
    """The person with this id (any case) in the contacts file; the ledger fills in addresses."""
    contacts = load_contacts(
        display_path(settings.contacts_path),
        settings=settings.contacts,
        default_locale=settings.default_locale,
    )
    wanted = contact_id.strip().lower()
    rows = tuple(c for c in contacts.contacts if c.id.lower() == wanted)
    addresses = [c.email.strip().lower() for c in rows if c.email]
    return Person(rows[0].id if rows else contact_id.strip(), rows, tuple(dict.fromkeys(addresses)))


def export_person(settings: Settings, contact_id: str) -> dict[str, Any]:
    """Everything the workspace holds about one person, JSON-ready; UnknownPersonError if
    nothing."""
    person = find_person(settings, contact_id)
    held = _ledger_rows(settings, person)
    if not person.rows and (held is None or held.empty):
        raise _unknown(settings, contact_id)
    return {
        "contact": person.contact_id,
        "rows": [_row_dict(settings, c) for c in person.rows],
        **(
            {"messages": [], "suppressions": [], "blocks": [], "bounces": [], "replies": []}
            if held is None
            else {
                "messages": held.messages,
                "suppressions": held.suppressions,
                "blocks": held.blocks,
                "bounces": held.bounces,
                "replies": held.replies,
            }
        ),
    }


def _ledger_rows(settings: Settings, person: Person) -> PersonRows | None:
    if not ledger_exists(settings):
        return None
    with open_ledger(settings, readonly=True) as ledger:
        rows = person_rows(ledger, ids=[person.contact_id], addresses=person.addresses)
        bounced = [b["address"] for b in rows.bounces]
        if set(bounced) - set(person.addresses):
            more = tuple(dict.fromkeys([*person.addresses, *bounced]))
            rows = person_rows(ledger, ids=[person.contact_id], addresses=more)
    return rows


def _row_dict(settings: Settings, contact: Contact) -> dict[str, Any]:
    fields = contact.template_fields()
    fields.pop("id", None)
    if contact.email_consent is not None:
        fields["email_consent"] = contact.email_consent.isoformat()
    elif contact.consent_refused:
        fields["email_consent"] = "no"
    if contact.consent_source:
        fields["consent_source"] = contact.consent_source
    return {
        "file": str(settings.paths.contacts),
        "line": contact.line,
        "fields": {k: v.isoformat() if isinstance(v, date) else v for k, v in fields.items()},
    }


def _unknown(settings: Settings, contact_id: str) -> UnknownPersonError:
    return UnknownPersonError(
        _("no contact with id {contact} in {file} or the ledger").format(
            contact=repr(contact_id), file=settings.paths.contacts
        ),
        hint=_("check the id with `outreach history` or the contacts file; nothing was changed"),
    )


@dataclass
class Forgotten:
    """What `forget` erased (counts and files, no personal data)."""

    digest: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    batches_rewritten: list[str] = field(default_factory=list)
    batches_removed: list[str] = field(default_factory=list)
    reports_rebuilt: list[str] = field(default_factory=list)
    already: bool = False

    def audit_line(self, day: date) -> str:
        """The audit line: date, hash, what was erased."""
        return (
            f"{day.isoformat()}\t{self.digest}\trows {self.rows}, files {len(self.files)}, "
            f"batches rewritten {len(self.batches_rewritten)}, batches removed "
            f"{len(self.batches_removed)}, reports rebuilt {len(self.reports_rebuilt)}\n"
        )


def forget_person(settings: Settings, contact_id: str, *, now: datetime) -> Forgotten:
    """Erase the person (see the module doc); UnknownPersonError if nobody has the id."""
    person = find_person(settings, contact_id)
    salt = settings.coupon.secret
    id_key = forgotten_key(salt, f"id:{person.contact_id}")
    result = Forgotten(digest=id_key.removeprefix("forgotten:")[:16])
    with workspace_lock(settings, now=now), open_ledger(settings) as ledger:
        rows = person_rows(ledger, ids=[person.contact_id], addresses=person.addresses)
        addresses = tuple(dict.fromkeys([*person.addresses, *(b["address"] for b in rows.bounces)]))
        if not person.rows and rows.empty:
            if id_key not in forgotten_keys(ledger):
                raise _unknown(settings, contact_id)
            result.already = True
        keys = [f"id:{person.contact_id}", *addresses]
        suppress_forgotten(ledger, [forgotten_key(salt, k) for k in keys], now=now)
        _erase_files(settings, rows, person, result)
        result.rows = erase_rows(ledger, ids=[person.contact_id], addresses=addresses)
        compact(ledger)
    _audit(settings, result, now.date())
    _rebuild_reports(settings, result.reports_rebuilt, now=now)
    return result


def _rebuild_reports(settings: Settings, pages: Sequence[str], *, now: datetime) -> None:
    """Make the report pages `forget` removed again, from the ledger without the person."""
    if not pages:
        return
    from outreach.report import build_report, default_period
    from outreach.workspace import load_workspace

    workspace = load_workspace(settings.root / "config.yaml")
    for relative in pages:
        try:
            day = date.fromisoformat(Path(relative).stem)
        except ValueError:
            continue  # not a page `outreach report` names by day: removed, not remade
        start, end = default_period(today=day, start=None, end=None)
        build_report(workspace, start=start, end=end, now=now, output=settings.root / relative)


def _erase_files(settings: Settings, rows: PersonRows, person: Person, result: Forgotten) -> None:
    root = settings.root
    # Another person's email may share a surname: only a report page goes for a name.
    addresses = _needles([*person.addresses, *(b["address"] for b in rows.bounces)])
    names = _needles(person.names)
    for relative in rows.files():
        path = root / relative
        if not path.resolve().is_relative_to(root.resolve()):
            continue  # a stored path never takes `forget` outside the workspace
        if path.suffix.lower() == ".pdf":
            if not _batch_without(settings, path, person, result):
                _pdf_without(path, person, result, relative)
        elif path.exists():
            path.unlink()
            result.files.append(relative)
    # What the rows do not point at: one-letter PDFs, report pages, copies elsewhere in out/.
    for path in _files_under(settings.out_dir):
        relative = path.relative_to(root).as_posix()
        if path.suffix.lower() == ".pdf":
            if not _batch_without(settings, path, person, result):
                _pdf_without(path, person, result, relative)
        elif path.suffix.lower() in _TEXT_SUFFIXES:
            report = path.parent.name == "reports" and path.suffix.lower() == ".html"
            if not _mentions(path, [*addresses, *names] if report else addresses):
                continue
            path.unlink()
            (result.reports_rebuilt if report else result.files).append(relative)


def _needles(words: Sequence[str]) -> list[bytes]:
    found: list[bytes] = []
    for word in words:
        for form in {word, unicodedata.normalize("NFC", word), _html_escaped(word)}:
            found.append(form.encode("utf-8"))
    return [n for n in dict.fromkeys(found) if len(n) >= 3]


def _html_escaped(text: str) -> str:
    return html.escape(text, quote=True)  # how a report page writes the name


def _mentions(path: Path, needles: Sequence[bytes]) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(needle in data for needle in needles)


def _files_under(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path


def _pdf_without(path: Path, person: Person, result: Forgotten, relative: str) -> None:
    """Rewrite a letter PDF without the pages that name the person (removed when all do)."""
    if not path.exists() or not person.names:
        return
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(path)
    names = [_folded(n) for n in person.names]
    theirs = [i for i, page in enumerate(reader.pages) if _page_names(page, names)]
    if not theirs:
        return
    if len(theirs) == len(reader.pages):
        path.unlink()
        result.batches_removed.append(relative)
        return
    writer = PdfWriter()
    for i, page in enumerate(reader.pages):
        if i not in theirs:
            writer.add_page(page)
    partial = path.with_name(path.name + ".forget-tmp")
    with partial.open("wb") as handle:
        writer.write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)  # all at once: a kill leaves the old batch or the new one
    result.batches_rewritten.append(relative)


def _batch_without(settings: Settings, path: Path, person: Person, result: Forgotten) -> bool:
    """Rewrite a letter batch without the person's letters, found by its manifest (the pages
    each letter takes, so a continuation page that does not name them goes too), the
    manifest without their rows, the postage list recounted and their split PDFs removed.
    False when the batch has no manifest, or the manifest names no letter of theirs.

    Each step can be repeated: the new batch and manifest are written aside, then moved into
    place batch first; a manifest whose pages no longer add up to the batch's is the old one
    of a batch already rewritten, and only the manifest is then finished.
    """
    manifest = path.with_name(path.name.removesuffix(".pdf") + ".manifest.csv")
    if not path.exists() or not manifest.exists():
        return False
    header, rows = _manifest_rows(manifest)
    ids = {person.contact_id.casefold()}
    theirs = [row for row in rows if ids & _letter_ids(row)]
    if not theirs:
        return False
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(path)
    listed = sum(int(row["pages"]) for row in rows)
    kept = [row for row in rows if row not in theirs]
    relative = path.relative_to(settings.root).as_posix()
    for row in theirs:
        if row.get("file"):
            (path.parent / row["file"]).unlink(missing_ok=True)  # their own one-letter PDF
    if not kept:
        for gone in (path, manifest, _postage_path(path)):
            gone.unlink(missing_ok=True)
        result.batches_removed.append(relative)
        return True
    if listed == len(reader.pages):  # the batch is still the one the manifest describes
        drop = {
            page
            for row in theirs
            for page in range(
                int(row["first_page"]) - 1, int(row["first_page"]) - 1 + int(row["pages"])
            )
        }
        writer = PdfWriter()
        for index, page in enumerate(reader.pages):
            if index not in drop:
                writer.add_page(page)
        buffer = io.BytesIO()
        writer.write(buffer)
        write_atomic(path, buffer.getvalue())
    write_atomic(manifest, _manifest_bytes(header, _renumbered(kept)))
    _recount_postage(settings, path, kept)
    result.batches_rewritten.append(relative)
    return True


def _manifest_rows(manifest: Path) -> tuple[list[str], list[dict[str, str]]]:
    with manifest.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _letter_ids(row: dict[str, str]) -> set[str]:
    """The ids a manifest row's letter goes to: its contact and a household's members."""
    members = [m for m in (row.get("covers") or "").split(";") if m]
    return {cid.casefold() for cid in [row.get("contact_id") or "", *members] if cid}


def _renumbered(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The letters left, numbered again from 1, each starting where the one before ended."""
    page = 1
    out = []
    for number, row in enumerate(rows, start=1):
        out.append({**row, "letter": str(number), "first_page": str(page)})
        page += int(row["pages"])
    return out


def _manifest_bytes(header: Sequence[str], rows: Sequence[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8-sig")  # as the printer writes it (BOM, CRLF)


def _postage_path(batch: Path) -> Path:
    return batch.with_name(batch.name.removesuffix(".pdf") + ".postage.csv")


def _recount_postage(settings: Settings, batch: Path, rows: Sequence[dict[str, str]]) -> None:
    """The batch's postage list counted again over the letters left (when it has one)."""
    target = _postage_path(batch)
    if not target.exists():
        return
    letters = [
        PrintedLetter(
            number=int(row["letter"]),
            first_page=int(row["first_page"]),
            pages=int(row["pages"]),
            blank_pages=int(row["blank_pages"] or 0),
            contact_id=row["contact_id"],
            occurrence_key=row["occurrence_key"],
            name="",
            address_lines=(),
            postal_code="",
            country=row["country"],
            path=None,
        )
        for row in rows
    ]
    lines = postage_lines(
        letters,
        home_country=settings.sender.address.country or settings.contacts.default_country,
        duplex=settings.letters.duplex,
        postage=settings.letters.postage,
    )
    write_atomic(target, postage_csv(lines))


def _folded(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _page_names(page: Any, names: Sequence[str]) -> bool:
    text = _folded(re.sub(r"\s+", " ", page.extract_text() or ""))
    return any(name in text for name in names)


def _audit(settings: Settings, result: Forgotten, day: date) -> None:
    """One line per forgotten person in state/forgotten.log (no personal data); once."""
    path = settings.state_dir / AUDIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and f"\t{result.digest}\t" in path.read_text(encoding="utf-8"):
        return
    with path.open("a", encoding="utf-8") as handle:
        handle.write(result.audit_line(day))
