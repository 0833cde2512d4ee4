"""The owner's side of what came back: replies that wait, suppressions and blocks to see and
undo (`outreach replies`, `outreach unsubscribe --list/--remove`, `outreach unblock`).

Every change is a short ledger transaction (safe while a run holds the workspace), and
every undo keeps the owner's reason and the day: the proof that a person asked to come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from outreach.contacts import Contact
from outreach.feedback.process import load_contact_index
from outreach.i18n import _
from outreach.ledger import Block, Ledger, ReplyRecord, open_ledger, read_ledger
from outreach.model.config import Settings
from outreach.model.errors import FeedbackError
from outreach.rules.blocks import block_dict

OWNER = "owner"  # the suppression source of a stop the owner confirmed from a reply


@dataclass(frozen=True, slots=True)
class ReplyView:
    """A reply as the owner's queue shows it: with the contact's name and how long it waits."""

    reply: ReplyRecord
    name: str
    waiting_days: int

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        r = self.reply
        return {
            "id": r.id,
            "contact_id": r.contact_id,
            "name": self.name,
            "campaign": r.campaign,
            "received": r.received.isoformat(),
            "subject": r.subject,
            "excerpt": r.excerpt,
            "kind": r.kind,
            "status": r.status,
            "evidence": r.evidence,
            "sender": r.sender,
            "note": r.note,
            "waiting_days": self.waiting_days,
        }


def _name(contact: Contact | None) -> str:
    if contact is None:
        return ""
    return " ".join(p for p in (contact.first_name, contact.last_name) if p)


def list_replies(settings: Settings, *, today: date, everything: bool = False) -> list[ReplyView]:
    """The replies that wait for the owner (every reply with `everything`), oldest first."""
    statuses = None if everything else ["open"]
    rows = read_ledger(settings, lambda ledger: ledger.replies(statuses=statuses))
    contacts, _lines = load_contact_index(settings) if rows else ({}, {})
    return [
        ReplyView(r, _name(contacts.get(r.contact_id)), max(0, (today - r.received).days))
        for r in rows
    ]


def close_reply(
    settings: Settings, reply_id: int, *, note: str | None, stop: bool, now: datetime
) -> ReplyRecord:
    """Close a reply (done, with the owner's note), or act on it as a stop request: the
    contact is suppressed for email, the reply kept as the evidence."""
    with open_ledger(settings) as ledger:
        found = [r for r in ledger.replies() if r.id == reply_id]
        if not found:
            raise FeedbackError(
                _("there is no reply {id}").format(id=reply_id),
                hint=_("`outreach replies --all` lists every reply with its id"),
            )
        if stop:
            ledger.record_replies([], suppressions=[(found[0].contact_id, "email", OWNER)], now=now)
        closed = ledger.close_reply(
            reply_id, status="stopped" if stop else "done", note=note, now=now
        )
    assert closed is not None
    return closed


@dataclass(frozen=True, slots=True)
class Suppressions:
    """The suppression list and the blocks, as `unsubscribe --list` shows them."""

    rows: tuple[tuple[str, str, str, str], ...]  # value, channel, source, since
    blocks: tuple[Block, ...]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "suppressions": [
                {"value": v, "channel": c, "source": s, "since": t[:10]} for v, c, s, t in self.rows
            ],
            "blocks": [block_dict(b) for b in self.blocks],
        }


def list_suppressions(settings: Settings) -> Suppressions:
    """Every suppression and every block, oldest first."""

    def read(ledger: Ledger) -> Suppressions:
        return Suppressions(tuple(ledger.suppression_rows()), tuple(ledger.blocks()))

    return read_ledger(settings, read)


def _values(settings: Settings, target: str) -> set[str]:
    """What a contact id or an address stands for: the id and the contact's address."""
    value = target.strip().lower()
    contacts, by_email = load_contact_index(settings)
    found = {value}
    contact = by_email.get(value) or next(
        (c for cid, c in contacts.items() if cid.lower() == value), None
    )
    if contact is not None:
        found.add(contact.id.lower())
        if contact.email:
            found.add(contact.email.lower())
    return found


def remove_suppression(
    settings: Settings, target: str, *, reason: str, today: date, now: datetime
) -> list[tuple[str, str, str]]:
    """Lift the suppressions of a contact id or address (and of the contact it names),
    keeping the reason; what was lifted (value, channel, source)."""
    if not reason.strip():
        raise FeedbackError(
            _("give a reason"), hint=_('--reason "asked by phone to hear from us again"')
        )
    values = _values(settings, target)
    with open_ledger(settings) as ledger:
        return ledger.remove_suppressions(values, reason=reason.strip(), today=today, now=now)


def unblock(
    settings: Settings,
    target: str,
    *,
    channel: str | None,
    reason: str,
    today: date,
    now: datetime,
) -> list[Block]:
    """Remove the blocks of a contact id or address (one channel, or all), keeping the reason."""
    values = _values(settings, target)
    with open_ledger(settings) as ledger:
        return ledger.remove_blocks(values, channel=channel, reason=reason, today=today, now=now)
