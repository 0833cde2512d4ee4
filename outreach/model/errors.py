"""The error family, and the per-row problem record that a run reports and goes on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from outreach.i18n import _


def format_location(
    path: str | Path | None, line: int | None = None, field: str | None = None
) -> str:
    """`file:line: field` (the parts that are known), for the start of a message."""
    parts = []
    if path is not None:
        parts.append(str(path) + (f":{line}" if line is not None else ""))
    if field:
        parts.append(field)
    return ": ".join(parts)


class OutreachError(Exception):
    """Bad input or a failed operation, with where it happened and what to do about it."""

    # Set by errors that belong to one contact (a bad date in its row, a failing `where`).
    contact_id: str | None = None

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.hint = hint

    def __str__(self) -> str:
        where = format_location(self.path, self.line, self.field)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} — {self.hint}" if self.hint else text

    def as_problem(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        blocking: bool = False,
    ) -> Problem:
        """This error as a Problem to report, for a contact (default: the error's own)."""
        return Problem(
            message=self.message,
            path=self.path,
            line=self.line,
            field=self.field,
            contact_id=contact_id if contact_id is not None else self.contact_id,
            campaign=campaign,
            hint=self.hint,
            blocking=blocking,
        )


class ConfigError(OutreachError):
    """config.yaml is missing, unreadable or invalid."""


class ContactsError(OutreachError):
    """contacts.csv cannot be read at all (a bad row is a Problem, not this)."""


class CampaignError(OutreachError):
    """A campaign file is invalid."""


class TemplateError(OutreachError):
    """A template is missing, does not compile, or fails to render for a contact."""


class DeliveryError(OutreachError):
    """A message could not be delivered; `transient` says whether trying again may help."""

    def __init__(self, message: str, *, transient: bool = False, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.transient = transient


class LedgerError(OutreachError):
    """The ledger cannot be opened, migrated or written."""


class LockError(LedgerError):
    """Another run holds the workspace lock."""


class FeedbackError(OutreachError):
    """A mailbox of bounces cannot be read, or a list of returned letters is invalid."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one row or one contact's message; the run reports it and goes on."""

    message: str
    path: str | None = None
    line: int | None = None
    field: str | None = None
    column: int | None = None
    contact_id: str | None = None
    campaign: str | None = None
    hint: str | None = None
    blocking: bool = False
    column_label: str | None = None  # a spreadsheet's name for the column ("E")

    def __str__(self) -> str:
        where = format_location(self.path, self.line, self.field)
        if self.column is not None and self.field:
            where = _("{where} (column {column})").format(
                where=where, column=self.column_label or self.column
            )
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} — {self.hint}" if self.hint else text

    def in_file(self, path: str | Path) -> Problem:
        """This problem placed in `path` when it has a line but no file (a contact's row)."""
        if self.path is not None or self.line is None:
            return self
        return replace(self, path=str(path))

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "field": self.field,
            "column": self.column,
            "contact_id": self.contact_id,
            "campaign": self.campaign,
            "hint": self.hint,
            "blocking": self.blocking,
        }
