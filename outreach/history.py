"""What the ledger remembers, for people: the message history, and the suppression list.

`history` reads the ledger; `unsubscribe` adds to its suppression list, which every run checks
for every message (essential ones too).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from outreach.contacts import Contact, normalize_email, read_text
from outreach.i18n import N_, _
from outreach.ledger import (
    Block,
    LedgerReader,
    MessageRecord,
    ReplyRecord,
    ledger_exists,
    open_ledger,
    read_ledger,
    workspace_lock,
)
from outreach.model.config import Settings
from outreach.model.errors import ContactsError, Problem
from outreach.rules.blocks import block_dict  # hook: feedback

UNCERTAIN_ADVICE = N_(
    "the run died while handing them to the mail server; check the mailbox, then "
    "`outreach send --retry-uncertain` or leave them"
)
# A run's totals in a few words, by the summary's key.
_COUNT_WORDS = {
    "emails": N_("emails {n}"),
    "letters": N_("letters {n}"),
    "sent": N_("sent {n}"),
    "deferred": N_("deferred {n}"),
    "missed": N_("missed {n}"),
    "failed": N_("failed {n}"),
    "skipped": N_("skipped {n}"),
}


# ---------------------------------------------------------------------------------------------
# history


@dataclass(frozen=True, slots=True)
class History:
    """The ledger's messages matching a query, newest first, and its last runs."""

    messages: tuple[MessageRecord, ...]  # at most `limit`
    matched: int  # how many matched before the limit
    uncertain: int  # of the matched, how many are uncertain
    runs: tuple[dict[str, object], ...] = ()
    exists: bool = True  # False: there is no ledger yet
    blocks: tuple[Block, ...] = ()  # hook: the contact's blocks (outreach.feedback)
    replies: tuple[ReplyRecord, ...] = ()  # hook: what the contact wrote back

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "messages": [message_dict(m) for m in self.messages],
            "matched": self.matched,
            "shown": len(self.messages),
            "uncertain": self.uncertain,
            "runs": [run_dict(r) for r in self.runs],
            "blocked": [block_dict(b) for b in self.blocks],  # hook: feedback blocks
            "replies": [
                {"id": r.id, "received": r.received.isoformat(), "kind": r.kind}
                | {"status": r.status, "subject": r.subject, "excerpt": r.excerpt}
                for r in self.replies
            ],
        }


def message_dict(record: MessageRecord) -> dict[str, object]:
    """A ledger row as JSON-ready values."""

    def day(value: date | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "date": record.run_date.isoformat(),
        "contact": record.contact_id,
        "campaign": record.campaign,
        "occurrence": record.occurrence_key,
        "channel": record.channel,
        "status": record.status,
        "reason": record.reason,
        "error": record.error,
        "basis": record.basis,
        "artifact": record.artifact,
        "message_id": record.message_id,
        "event_date": day(record.event_date),
        "earliest": day(record.earliest),
        "latest": day(record.latest),
        "effective_date": day(record.effective_date),
        "essential": record.essential,
        "updated_at": record.updated_at.isoformat() if record.updated_at else None,
    }


def run_dict(run: dict[str, object]) -> dict[str, object]:
    """A run row (as `Ledger.runs` gives it) as JSON-ready values."""
    return {
        key: value.isoformat() if isinstance(value, date | datetime) else value
        for key, value in run.items()
    }


def read_history(
    settings: Settings,
    *,
    contact_id: str | None = None,
    campaign: str | None = None,
    since: date | None = None,
    statuses: Sequence[str] = (),
    limit: int | None = 50,
    runs: int = 0,
) -> History:
    """The ledger's messages matching every filter given, newest first, and the last `runs` runs."""
    if not ledger_exists(settings):
        return History(messages=(), matched=0, uncertain=0, exists=False)
    wanted = list(statuses) or None

    # Read in place when no run is writing, else from a private copy: reading never touches
    # the file a run may be writing.
    def read(ledger: LedgerReader) -> History:
        counts = ledger.count_messages(
            contact_id=contact_id, campaign=campaign, since=since, statuses=wanted
        )
        # Newest first: by run date, then as written. Only the rows shown are read, so a
        # ledger of millions answers as fast as a small one.
        shown = ledger.messages(
            contact_id=contact_id,
            campaign=campaign,
            since=since,
            statuses=wanted,
            newest_first=True,
            limit=limit or None,
        )
        last_runs = tuple(ledger.runs(runs)) if runs else ()
        # hook: a contact's blocks (bounces, complaint, returned letters)
        blocks = tuple(ledger.blocks(contact_id=contact_id)) if contact_id is not None else ()
        replies = tuple(ledger.replies(contact_id=contact_id)) if contact_id is not None else ()
        return History(
            replies=replies,
            messages=tuple(shown),
            matched=sum(counts.values()),
            uncertain=counts.get("uncertain", 0),
            runs=last_runs,
            blocks=blocks,
        )

    return read_ledger(settings, read)


def describe_counts(counts: object) -> str:
    """A run's summary counts in a few words: `emails 4, letters 1, deferred 2`."""
    if not isinstance(counts, dict):
        return _("no end recorded (still running, or the run died)")
    if counts.get("interrupted"):
        return _("interrupted (finished by the next run)")
    campaigns = counts.get("campaigns")
    if not isinstance(campaigns, list):
        return ""
    totals: dict[str, int] = {}
    for campaign in campaigns:
        if not isinstance(campaign, dict):
            continue
        for key in ("emails", "letters", "sent", "deferred", "missed", "failed"):
            value = campaign.get(key)
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
        skipped = campaign.get("skipped")
        if isinstance(skipped, dict):
            totals["skipped"] = totals.get("skipped", 0) + sum(
                v for v in skipped.values() if isinstance(v, int)
            )
    shown = [_(_COUNT_WORDS[key]).format(n=value) for key, value in totals.items() if value]
    return ", ".join(shown) or _("nothing to do")


# ---------------------------------------------------------------------------------------------
# unsubscribe

# A contact id as the contacts reader accepts it (letters, digits, '.', '_', '-').
_ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True, slots=True)
class Entry:
    """One value to put on the suppression list, and where it came from."""

    value: str  # a normalised email address or a contact id
    line: int | None = None


@dataclass(frozen=True, slots=True)
class UnsubscribeReport:
    """What `unsubscribe` did."""

    channel: str
    added: tuple[Entry, ...]
    already: tuple[Entry, ...]
    invalid: tuple[Problem, ...]
    contacts: tuple[Contact, ...] = ()  # contacts in the file that the values cover

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "channel": self.channel,
            "added": [e.value for e in self.added],
            "already": [e.value for e in self.already],
            "invalid": [p.as_dict() for p in self.invalid],
            "contacts": [c.id for c in self.contacts],
        }


def parse_target(text: str) -> str:
    """An email address (normalised) or a contact id; ValueError saying why it is neither."""
    value = text.strip()
    if "@" in value:
        try:
            return normalize_email(value)
        except ValueError as exc:
            raise ValueError(
                _("{value} is not a valid email address ({error})").format(
                    value=repr(value), error=exc
                )
            ) from None
    if not _ID_SHAPE.fullmatch(value):
        raise ValueError(
            _(
                "{value} is neither an email address nor a contact id "
                "(ids use letters, digits, '.', '_' and '-')"
            ).format(value=repr(value))
        )
    return value


def _email_column(line: str) -> tuple[str, int] | None:
    """(delimiter, index) when the line is a CSV header with an `email` column."""
    for delimiter in _DELIMITERS:
        cells = next(csv.reader([line], delimiter=delimiter), [])
        names = [cell.strip().strip("\ufeff").lower() for cell in cells]
        if len(names) > 1 or delimiter == ",":
            for index, name in enumerate(names):
                if name in ("email", "e-mail", "email_address", "email address"):
                    return delimiter, index
    return None


def read_unsubscribe_file(path: Path) -> tuple[list[Entry], list[Problem]]:
    """Addresses from a file: one per line (blank lines and `#` comments ignored), or a CSV
    whose header has an `email` column. Returns the entries and the lines that are not one."""
    # Decoded as contacts.csv is: an Excel "Unicode Text" export is UTF-16, others carry a BOM.
    try:
        text = read_text(path)
    except OSError as exc:
        raise ContactsError(
            _("cannot read: {error}").format(error=exc.strerror),
            path=path,
            hint=_("check the file name"),
        ) from None
    lines = text.splitlines()
    first = next(
        (i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")),
        None,
    )
    entries: list[Entry] = []
    problems: list[Problem] = []
    if first is None:
        return entries, problems
    header = _email_column(lines[first])
    if header is not None:
        delimiter, column = header
        reader = csv.reader(io.StringIO("\n".join(lines[first + 1 :])), delimiter=delimiter)
        while True:
            try:
                for row in reader:
                    line = first + 1 + reader.line_num
                    if row and row[0].lstrip().startswith("#"):
                        continue
                    cell = row[column].strip() if column < len(row) else ""
                    if not cell:
                        continue  # a row without an address: nothing to unsubscribe
                    _take(
                        cell,
                        line=line,
                        path=path,
                        entries=entries,
                        problems=problems,
                        column="email",
                    )
                return entries, problems
            except csv.Error as exc:  # a cell past the size limit (a quote left open?)
                problems.append(
                    Problem(
                        _("the row cannot be read ({error})").format(error=exc),
                        path=str(path),
                        line=first + 1 + reader.line_num,
                        hint=_("check the quotes in this row"),
                    )
                )
    for number, raw in enumerate(lines, start=1):
        value = raw.strip()
        if not value or value.startswith("#"):
            continue
        _take(value, line=number, path=path, entries=entries, problems=problems, column=None)
    return entries, problems


def _take(
    value: str,
    *,
    line: int,
    path: Path,
    entries: list[Entry],
    problems: list[Problem],
    column: str | None,
) -> None:
    if "@" not in value:
        problems.append(
            Problem(
                _("{value} is not an email address").format(value=repr(value)),
                path=str(path),
                line=line,
                field=column,
                hint=_("one address per line, or a CSV with an email column"),
            )
        )
        return
    try:
        entries.append(Entry(normalize_email(value), line))
    except ValueError as exc:
        problems.append(
            Problem(
                _("{value} is not a valid email address ({error})").format(
                    value=repr(value), error=exc
                ),
                path=str(path),
                line=line,
                field=column,
                hint=_("correct the address, or remove the line"),
            )
        )


def contacts_covered(contacts: Iterable[Contact], values: Iterable[str]) -> tuple[Contact, ...]:
    """The contacts whose id or email is one of the values (compared without case)."""
    wanted = {value.lower() for value in values}
    return tuple(c for c in contacts if c.id.lower() in wanted or (c.email or "").lower() in wanted)


def unsubscribe(
    settings: Settings,
    *,
    entries: Sequence[Entry],
    channel: str,
    source: str,
    now: datetime,
    invalid: Sequence[Problem] = (),
    wait: bool = False,
) -> UnsubscribeReport:
    """Put each entry on the ledger's suppression list, under the workspace lock.

    LockError while a run holds the lock, unless `wait`.
    """
    added: list[Entry] = []
    already: list[Entry] = []
    with (
        workspace_lock(settings, now=now, wait=wait),
        open_ledger(settings) as ledger,
    ):
        for entry in entries:
            if ledger.suppress(entry.value, channel=channel, source=source, now=now):
                added.append(entry)
            else:
                already.append(entry)
    return UnsubscribeReport(
        channel=channel, added=tuple(added), already=tuple(already), invalid=tuple(invalid)
    )
