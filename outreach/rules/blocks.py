"""The check the runner makes for what came back: is this channel blocked for this contact?

A block is a gap, not an answer: a bounced address lets a letter take over (with `fallback`),
a returned letter lets email take over. Opt-outs and complaints are answers, and stay on the
suppression list. Blocks reach the runner inside the suppressions mapping, under keys of
their own (`outreach.ledger.email_block_key`, `letter_block_key`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from outreach.contacts import Contact
from outreach.i18n import N_, _
from outreach.ledger import Block, email_block_key, letter_block_key

# Skip reasons (data): the runner records them; explain turns them into sentences.
EMAIL_BLOCKED = "email blocked (bounces)"  # not translated: a value
LETTER_BLOCKED = "letter blocked (returned)"  # not translated: a value

_NOT_WORD = re.compile(r"[^\w]+")


def postal_key(contact: Contact) -> str:
    """The contact's postal address, normalised: the same address written alike gives the same
    key (case, accents as composed, spaces and punctuation do not matter)."""
    parts = []
    for value in (
        contact.street,
        contact.street2,
        contact.postal_code,
        contact.city,
        contact.region,
        contact.country,
    ):
        text = unicodedata.normalize("NFKC", value or "").casefold()
        parts.append(" ".join(_NOT_WORD.sub(" ", text).split()))
    return "|".join(parts)


def block_reason(
    contact: Contact, channel: str, suppressions: Mapping[str, frozenset[str]]
) -> str | None:
    """Why bounces or the post block this channel for this contact now, or None."""
    if channel == "email":
        if contact.email and email_block_key(contact.email) in suppressions:
            return EMAIL_BLOCKED
    elif channel == "letter" and letter_block_key(contact.id, postal_key(contact)) in suppressions:
        return LETTER_BLOCKED
    return None


def email_blocked(address: str, suppressions: Mapping[str, frozenset[str]]) -> bool:
    """Whether bounces block this address for email."""
    return email_block_key(address) in suppressions


_REASONS = {
    "hard-bounce": N_("a hard bounce"),
    "soft-bounces": N_("repeated soft bounces"),
    "complaint": N_("a complaint (marked as spam)"),
    "returned-letter": N_("a letter the post returned"),
}


def describe_block(block: Block) -> str:
    """One sentence, in the owner's language: what is blocked, since when, and why."""
    if block.channel == "email":
        what = _("{address} is blocked for email since {day}: {why}")
    elif block.channel == "letter":
        what = _("letters to {contact_id}'s postal address are blocked since {day}: {why}")
    else:
        what = _("{contact_id} gets nothing (email or letter) since {day}: {why}")
    why = _(_REASONS[block.reason]) if block.reason in _REASONS else block.reason
    text = what.format(
        address=block.value, contact_id=block.contact_id, day=block.day.isoformat(), why=why
    )
    details = [d for d in (block.status, block.diagnostic) if d]
    if block.score is not None:
        details.append(_("score {score:g}").format(score=block.score))
    if block.reported is not None and block.reported != block.day:
        details.append(_("the bounce itself is dated {day}").format(day=block.reported.isoformat()))
    if details:
        text += f" ({'; '.join(details)})"
    if block.kept:
        text = _("{block}, kept in {kept}").format(block=text, kept=block.kept)
    if block.channel == "email":
        text = _("{block}; a new address in the contacts file starts clean").format(block=text)
    elif block.channel == "letter":
        text = _("{block}; a corrected address in the contacts file starts clean").format(
            block=text
        )
    return text


def current_blocks(contact: Contact | None, blocks: list[Block]) -> list[Block]:
    """The blocks that still apply to the contact as the contacts file has it now."""
    if contact is None:
        return blocks
    key = postal_key(contact)
    email = (contact.email or "").lower()
    return [
        b
        for b in blocks
        if b.channel == "all"
        or (b.channel == "email" and b.value == email)
        or (b.channel == "letter" and b.postal_key == key)
    ]


def block_dict(block: Block) -> dict[str, object]:
    """A block as JSON-ready values."""
    return {
        "channel": block.channel,
        "address": block.value if block.channel == "email" else None,
        "contact_id": block.contact_id,
        "reason": block.reason,
        "date": block.day.isoformat(),
        "status": block.status,
        "diagnostic": block.diagnostic,
        "score": block.score,
        "kept": block.kept,
        "reported": block.reported.isoformat() if block.reported else None,
    }
