"""The default delivery: each email as an .eml file in out/outbox/<day>/<campaign>/.

Files are written unnamed and linked into place when complete (outreach.files.AtomicFolder;
elsewhere a temporary name and a rename), so an .eml file is always complete. There is no
fsync per file: it would cost more than the rendering, and buys little. A killed process loses
nothing (what it wrote is in the page cache). The runner claims a message's ledger row (with
the path `artifact_of` gives) before the file is written, so no other run writes it too; a run
killed between the claim and the write leaves a row without its file, which recovery
(outreach.ledger.recovery) turns into `failed` so the next run makes it again. A power cut can lose a
recent file and, the ledger not fsyncing each commit either (WAL, synchronous=NORMAL), often
its row; a row that survives without its file is recovered the same way, and the next run
renders the message again and writes the same bytes.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from outreach.deliver.base import DeliveryResult
from outreach.files import AtomicFolder, clean_temporaries, temporary_path, write_atomic
from outreach.i18n import _
from outreach.model.errors import DeliveryError

if TYPE_CHECKING:
    from outreach.render.email import RenderedEmail

OUTBOX_NAME = "outbox"
# Contact ids as the contacts reader accepts them.
_CONTACT_ID = re.compile(r"[A-Za-z0-9._-]+")
# Room under the usual 255-byte limit for the temporary name's extra characters.
_MAX_NAME_BYTES = 230


def path_component(value: str) -> str:
    """`value` as one safe file or folder name: no separators, no leading dot, reversible.

    Letters (any script), digits, `-`, `_` and `.` stay; every other character, and a leading
    dot, becomes %XX per UTF-8 byte (and `%` itself does, so distinct values stay distinct).
    """
    if not value:
        raise DeliveryError(_("an empty name cannot be a file name"))
    escaped = "".join(
        char if char.isalnum() or char in "-_." else "".join(f"%{b:02X}" for b in char.encode())
        for char in value
    )
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    return escaped


def outbox_file_name(*, contact_id: str, occurrence_key: str) -> str:
    """`<contact-id>.eml`; reminders add their date and offset: `<contact-id>.2026-11-25_-1.eml`.

    Only a reminder can have two occurrences of one campaign due for one contact on one day
    (two offsets caught up after a gap); the other kinds have one at most, so their file is
    named by the contact alone.
    """
    if not _CONTACT_ID.fullmatch(contact_id):
        raise DeliveryError(
            _("contact id {id} is not usable as a file name").format(id=repr(contact_id)),
            hint=_("contact ids may only hold letters A-Z, digits, '.', '_' and '-'"),
        )
    if occurrence_key.startswith("reminder:"):
        detail = occurrence_key.removeprefix("reminder:").replace(":", "_")
        name = f"{path_component(contact_id)}.{path_component(detail)}.eml"
    else:
        name = f"{path_component(contact_id)}.eml"
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise DeliveryError(
            _(
                "contact id {id} with occurrence {occurrence} makes a file name that is too long"
            ).format(id=repr(contact_id), occurrence=repr(occurrence_key)),
            hint=_("use shorter contact ids"),
        )
    return name


class OutboxWriter:
    """A deliverer that writes each email to out/outbox/<run day>/<campaign>/ as an .eml file."""

    def __init__(self, *, root: Path, out_dir: Path, run_date: date, subfolder: str = "") -> None:
        self.root = root
        # A shard's emails go in a folder of their own (out/outbox/<day>/shard-2-of-4/...).
        self.directory = out_dir / OUTBOX_NAME / run_date.isoformat()
        if subfolder:
            self.directory /= subfolder
        try:
            self._relative = self.directory.relative_to(root).as_posix()
        except ValueError:  # an out folder outside the workspace: keep the absolute path
            self._relative = self.directory.as_posix()
        # campaign → its folder, created on first use, and its path relative to the root
        self._folders: dict[str, tuple[AtomicFolder, str]] = {}

    def push(self, message: RenderedEmail) -> DeliveryResult:
        """Write one message; a bad name or a failed write comes back as a `failed` result."""
        key = (message.contact_id, message.campaign, message.occurrence_key)
        try:
            name = outbox_file_name(
                contact_id=message.contact_id, occurrence_key=message.occurrence_key
            )
            folder, relative = self._folder(message.campaign)
            folder.write(name, message.data)
        except DeliveryError as exc:
            return DeliveryResult(key, "failed", error=str(exc))
        except OSError as exc:
            # A full disk or a permission problem: worth trying again on the next run.
            return DeliveryResult(
                key,
                "failed",
                error=_("cannot write to {path}: {error}").format(
                    path=exc.filename or self.directory, error=exc.strerror
                ),
                transient=True,
            )
        return DeliveryResult(key, "rendered", artifact=f"{relative}/{name}")

    def artifact_of(self, message: RenderedEmail) -> str:
        """Where `push` writes the message, relative to the workspace root (known before the
        file exists, so the message can be claimed in the ledger first); DeliveryError for a
        contact id that cannot be a file name."""
        name = outbox_file_name(
            contact_id=message.contact_id, occurrence_key=message.occurrence_key
        )
        return f"{self._folder(message.campaign)[1]}/{name}"

    def _folder(self, campaign: str) -> tuple[AtomicFolder, str]:
        found = self._folders.get(campaign)
        if found is None:
            component = path_component(campaign)
            folder = self.directory / component
            folder.mkdir(parents=True, exist_ok=True)
            relative = f"{self._relative}/{component}"
            found = self._folders[campaign] = (AtomicFolder(str(folder)), relative)
        return found

    def close(self) -> None:
        """Release the folders (every file is complete once push returns)."""
        for folder, _relative in self._folders.values():
            folder.close()
        self._folders.clear()


__all__ = [
    "OutboxWriter",
    "clean_temporaries",
    "outbox_file_name",
    "temporary_path",
    "write_atomic",
]
