"""Who may get a message, and by which channel: opt-outs, channel choice and fallback.

Opt-outs always win: the contacts file's `opt_out` and the suppression list are checked for
every message, essential or not, and an opt-out is an answer, never a gap to route around.
"""

from __future__ import annotations

from collections.abc import Mapping

from outreach.contacts import Contact
from outreach.model.campaigns import Campaign
from outreach.model.reasons import INVALID_FIELDS, MISSING_FIELDS, Code, Reason
from outreach.rules.blocks import block_reason
from outreach.rules.postal import address_gaps

Suppressions = Mapping[str, frozenset[str]]


def suppressed_channels(
    contact_id: str, email: str | None, suppressions: Suppressions
) -> list[tuple[str, frozenset[str]]]:
    """The suppression-list entries that cover a contact (its id, its address: lower case),
    each with the channels it suppresses."""
    if not suppressions:
        return []
    keys = dict.fromkeys(key for key in (contact_id.lower(), (email or "").lower()) if key)
    return [(key, suppressions[key]) for key in keys if suppressions.get(key)]


def opted_out(contact: Contact, channel: str, suppressions: Suppressions) -> bool:
    """Whether the CSV or the suppression list forbids this channel for this contact."""
    if channel in contact.opt_out:
        return True
    return any(
        channel in channels or "all" in channels
        for _, channels in suppressed_channels(contact.id, contact.email, suppressions)
    )


def channel_order(campaign: Campaign, contact: Contact) -> list[str]:
    """The channels to try, first choice first."""
    if campaign.channel != "preferred":
        return [campaign.channel]
    first = contact.preferred_channel or "email"
    order = [first, "letter" if first == "email" else "email"]
    return order if campaign.fallback else order[:1]


def first_choice(campaign: Campaign, contact: Contact) -> str:
    """The channel the message would take if nothing stood in the way (for a skipped row)."""
    return channel_order(campaign, contact)[0]


def unusable(
    campaign: Campaign, contact: Contact, channel: str, suppressions: Suppressions
) -> Reason | None:
    """Why this channel cannot carry the campaign to the contact (not counting opt-outs).

    A bounced address or a returned letter is such a gap, which fallback routes around.
    """
    blocked = block_reason(contact, channel, suppressions)
    if blocked is not None:
        code = Code.EMAIL_BLOCKED if channel == "email" else Code.LETTER_BLOCKED
        return Reason(code, channel)
    if channel == "email":
        if not contact.email:
            return Reason(Code.NO_EMAIL, channel)
        if campaign.email is None:
            return Reason(Code.NO_EMAIL_TEMPLATE, channel)
        return None
    gaps = address_gaps(contact)
    if gaps:
        said = INVALID_FIELDS if "postal_code" in contact.held_back else MISSING_FIELDS
        return Reason(Code.INCOMPLETE_ADDRESS, channel, detail=said.english(fields=", ".join(gaps)))
    if campaign.letter is None:
        return Reason(Code.NO_LETTER_TEMPLATE, channel)
    return None


def choose_channel(
    campaign: Campaign, contact: Contact, suppressions: Suppressions
) -> tuple[str | None, Reason | None]:
    """(channel, why not the first choice) for the channel the message takes, or
    (None, why none can)."""
    first: Reason | None = None
    for channel in channel_order(campaign, contact):
        if opted_out(contact, channel, suppressions):
            return None, Reason(Code.OPTED_OUT, channel)
        problem = unusable(campaign, contact, channel, suppressions)
        if problem is None:
            return channel, first
        first = first or problem
    assert first is not None  # channel_order is never empty
    return None, first
