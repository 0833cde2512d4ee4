"""What the ledger adds to a contact's row before the rules read it.

Two facts live in the ledger, not in the owner's spreadsheet: the visits `outreach visits
--import` recorded (a `last_visit` campaign reads the latest one when the cell is empty or
older), and the address as it was when the owner's `address_confirmed` date was first seen (a
confirmation covers that address only: when the address changes, the postal code is checked
again). The run reads both once, in bulk, into `Ledgered`; `as_known` is pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType
from typing import TYPE_CHECKING

from outreach.contacts.fields import parse_date
from outreach.rules.postal import confirmed_by_owner

if TYPE_CHECKING:
    from outreach.contacts import Contact

# The column the visit recipes read (thank-you, win-back): a column name, not a sentence.
LAST_VISIT = "last_visit"


@dataclass(frozen=True, slots=True)
class Ledgered:
    """What a run read from the ledger about its contacts, by contact id."""

    visits: Mapping[str, date] = field(default_factory=dict)
    # contact id → (the address_confirmed date first seen, the address's fingerprint then)
    confirmations: Mapping[str, tuple[date, str]] = field(default_factory=dict)


def address_fingerprint(contact: Contact) -> str:
    """A digest of the postal address (not the name): equal while the address is the same,
    whatever the case or spacing it is written with."""
    parts = (
        contact.street,
        contact.street2,
        contact.postal_code,
        contact.city,
        contact.region,
        contact.country,
    )
    text = "\x1f".join(" ".join((part or "").casefold().split()) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def confirmation_lapsed(contact: Contact, confirmations: Mapping[str, tuple[date, str]]) -> bool:
    """Whether the owner's confirmation was given for another address: the same date in
    address_confirmed as when it was first seen, and the address changed since."""
    if contact.address_confirmed is None:
        return False
    seen = confirmations.get(contact.id)
    if seen is None or seen[0] != contact.address_confirmed:
        return False  # not seen yet, or confirmed again (a new date): this address counts
    return seen[1] != address_fingerprint(contact)


def as_known(contact: Contact, known: Ledgered, *, date_format: str) -> Contact:
    """The contact as the run knows it: the latest visit from the ledger in `last_visit`
    (when the cell is empty or older), and a lapsed confirmation no longer turning the
    postal-code check off (the letter waits, as for any rejected postal code)."""
    if known.visits:
        visit = known.visits.get(contact.id)
        if visit is not None:
            contact = _with_visit(contact, visit, date_format=date_format)
    if (
        known.confirmations
        and confirmation_lapsed(contact, known.confirmations)
        and confirmed_by_owner(contact) is not None
    ):
        contact = replace(
            contact, address_confirmed=None, held_back=contact.held_back | {"postal_code"}
        )
    return contact


def _with_visit(contact: Contact, visit: date, *, date_format: str) -> Contact:
    """The contact with `visit` as its last visit, unless its own cell says later (or cannot
    be read: that cell's problem is the owner's to fix, not to hide)."""
    cell = contact.extra.get(LAST_VISIT, "").strip()
    if cell:
        try:
            if parse_date(cell, date_format=date_format) >= visit:
                return contact
        except ValueError:
            return contact
    extra = dict(contact.extra)
    extra[LAST_VISIT] = visit.isoformat()
    return replace(contact, extra=MappingProxyType(extra))
