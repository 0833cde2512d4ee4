"""A contact's name for the till, without reading a hundred thousand rows to find one.

The contacts file's lines that hold the id at all (a byte search) are copied with its header
into a small temporary file, which the contacts reader reads as it reads the whole file (same
encoding, delimiter, column mapping). A row that spans lines or a workbook falls back to
reading the whole file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from outreach.contacts import Contact, iter_contacts
from outreach.contacts.sheets import is_workbook
from outreach.model.config import Basics
from outreach.model.errors import OutreachError


def _named(contact: Contact) -> str:
    return " ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.id


def _search(path: Path, settings: Basics, contact_id: str) -> str | None:
    for contact in iter_contacts(
        path, settings=settings.contacts, default_locale=settings.default_locale
    ):
        if contact.id == contact_id:
            return _named(contact)
    return None


def contact_name(settings: Basics, contact_id: str) -> str:
    """The contact's first and last name (the id when the file has no row for it)."""
    path = settings.contacts_path
    if not is_workbook(path) and path.is_file():
        data = path.read_bytes()
        needle = contact_id.encode()
        if needle not in data:
            needle = contact_id.encode("utf-16-le")
        lines = data.splitlines(keepends=True)
        head = 2 if lines and lines[0].lstrip(b'\xef\xbb\xbf"').lower().startswith(b"sep=") else 1
        picked = lines[:head] + [line for line in lines[head:] if needle in line]
        if len(picked) < len(lines):
            with tempfile.TemporaryDirectory(prefix="outreach-name-") as folder:
                small = Path(folder) / path.name
                small.write_bytes(b"".join(picked))
                try:
                    found = _search(small, settings, contact_id)
                except OutreachError:
                    found = None
            if found is not None:
                return found
    try:
        return _search(path, settings, contact_id) or contact_id
    except OutreachError:
        return contact_id
