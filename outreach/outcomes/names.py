"""A contact's name for the till, without reading a hundred thousand rows to find one.

The contacts file's lines that hold the id at all (a byte search, the file never cut into
all its lines) are copied with its header
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


def _line_end(data: bytes, at: int, breaks: tuple[bytes, ...]) -> int:
    """Where the line holding offset `at` ends, its line break included."""
    end = len(data)
    for mark in breaks:  # each looked for before the nearest break found so far only
        found = data.find(mark, at, end)
        if found != -1:
            end = found
    if end == len(data):
        return end
    return end + 2 if data[end : end + 2] == b"\r\n" else end + 1


def picked_lines(data: bytes, needle: bytes) -> list[bytes]:
    """The header line (two with Excel's `sep=` line) and every later line holding `needle`,
    cut as `data.splitlines(keepends=True)` cuts them, without cutting the whole file."""
    breaks = tuple(mark for mark in (b"\n", b"\r") if mark in data)
    start = _line_end(data, 0, breaks)
    first = data[:start]
    if first.lstrip(b'\xef\xbb\xbf"').lower().startswith(b"sep="):
        start = _line_end(data, start, breaks)
    picked = [line for line in (first, data[len(first) : start]) if line]
    at = data.find(needle, start)
    while at != -1:
        begin = start
        for mark in breaks:
            found = data.rfind(mark, begin, at)
            if found != -1:
                begin = found + 1
        end = _line_end(data, at, breaks)
        picked.append(data[begin:end])
        at = data.find(needle, end)
    return picked


def contact_name(settings: Basics, contact_id: str) -> str:
    """The contact's first and last name (the id when the file has no row for it)."""
    path = settings.contacts_path
    if not is_workbook(path) and path.is_file():
        data = path.read_bytes()  # read, not mapped: a file cut short meanwhile is no SIGBUS
        needle = contact_id.encode()
        picked = picked_lines(data, needle)  # one pass of the search over the file
        if not any(needle in line for line in picked):
            picked = picked_lines(data, contact_id.encode("utf-16-le"))
        if sum(map(len, picked)) < len(data):
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
