"""The legal basis of a message: why this marketing message may go to this person.

A service message (a reminder, an order's status) needs none beyond the contract. A marketing
email needs the person's dated consent (LSSI art. 21.1), or — with
`legal.email_basis: consent_or_customer` and a campaign with `similar_products: true` — a
customer relationship within `legal.customer_months` (LSSI art. 21.2). A marketing letter goes
on legitimate interest (the default) or on consent. Opt-outs are checked before this rule and
always win. The basis found is a short text the ledger keeps with the message, as proof.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from calendar import monthrange
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from outreach.contacts import Contact
from outreach.contacts.fields import parse_date
from outreach.i18n import _
from outreach.model.campaigns import Campaign
from outreach.model.config import Legal
from outreach.model.reasons import (
    LISTED,
    NO_EMAIL_CONSENT,
    NO_LETTER_CONSENT,
    REFUSED,
    Code,
    Reason,
)
from outreach.rules.blocks import postal_key


@dataclass(frozen=True, slots=True)
class LegalPolicy:
    """config.yaml `legal`, as the rule reads it."""

    email_basis: str = "consent"
    letter_basis: str = "legitimate_interest"
    customer_column: str = "last_visit"
    customer_months: int = 24
    consent_text_version: str | None = None
    date_format: str = "DMY"

    @classmethod
    def of(cls, legal: Legal, *, date_format: str) -> LegalPolicy:
        """The policy of a config's `legal` section."""
        return cls(
            email_basis=legal.email_basis,
            letter_basis=legal.letter_basis,
            customer_column=legal.customer_column,
            customer_months=legal.customer_months,
            consent_text_version=legal.consent_text_version,
            date_format=date_format,
        )


@dataclass(frozen=True, slots=True)
class DoNotContact:
    """The do-not-contact lists (config `suppression_lists`, e.g. the Lista Robinson), loaded
    once per run: plain addresses, SHA-256 digests of addresses, and name + postal address
    keys (`person_key`), each with the file it came from."""

    emails: frozenset[str] = frozenset()
    digests: frozenset[bytes] = frozenset()  # raw SHA-256 (32 bytes: half a hex string's memory)
    people: frozenset[str] = frozenset()
    sources: tuple[str, ...] = ()  # the files, for the reason's detail

    def covers(self, contact: Contact, channel: str) -> bool:
        """Whether a list names this contact for this channel."""
        if channel == "email":
            if not contact.email or not (self.emails or self.digests):
                return False
            address = contact.email.strip().lower()
            if address in self.emails:
                return True
            return bool(self.digests) and _sha256(address) in self.digests
        return bool(self.people) and person_key(contact) in self.people


def _sha256(address: str) -> bytes:
    return hashlib.sha256(address.encode("utf-8")).digest()


def person_key(contact: Contact) -> str:
    """A person's name and postal address, normalised as households are."""
    name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    text = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(_NOT_WORD.sub(" ", text).split()) + "#" + postal_key(contact)


_NOT_WORD = re.compile(r"[\W_]+")


FORGOTTEN = "forgotten:"


def forgotten_key(salt: str, value: str) -> str:
    """The suppression value `outreach forget` keeps for an address or `id:<contact id>`: a
    salted SHA-256, so the person is recognised again without being named."""
    digest = hashlib.sha256(f"{salt}\0{value.strip().lower()}".encode()).hexdigest()
    return FORGOTTEN + digest


def is_forgotten(contact: Contact, *, salt: str, keys: Iterable[str]) -> bool:
    """Whether the contact's id or address matches a forgotten person's hash."""
    if not keys:
        return False
    known = keys if isinstance(keys, (set, frozenset, dict)) else set(keys)
    values = [f"id:{contact.id}"] + ([contact.email] if contact.email else [])
    return any(forgotten_key(salt, value) in known for value in values)


class FutureConsentError(ValueError):
    """An email_consent dated after the day of the run: a typo, never a consent."""


def basis(
    campaign: Campaign,
    contact: Contact,
    channel: str,
    *,
    policy: LegalPolicy,
    today: date,
    lists: DoNotContact | None = None,
) -> str | Reason:
    """The basis this message goes on (its text, kept in the ledger), or why it may not go.

    Raises FutureConsentError for a consent dated after `today`.
    """
    if campaign.purpose == "service":
        return "service"
    if lists is not None and lists.covers(contact, channel):
        where = ", ".join(lists.sources)
        return Reason(Code.NO_LEGAL_BASIS, channel, detail=LISTED.english(lists=where))
    if channel == "letter":
        if policy.letter_basis == "legitimate_interest":
            return "legitimate_interest"
        consent = _consent(contact, today)
        if consent is not None:
            return consent
        return Reason(Code.NO_LEGAL_BASIS, channel, detail=NO_LETTER_CONSENT.english())
    consent = _consent(contact, today)
    if consent is not None:
        version = policy.consent_text_version
        return f"{consent} · consent text {version}" if version else consent
    customer = _customer(campaign, contact, policy=policy, today=today)
    if customer is not None:
        return customer
    why = (REFUSED if contact.consent_refused else NO_EMAIL_CONSENT).english()
    return Reason(Code.NO_LEGAL_BASIS, channel, detail=why)


def _consent(contact: Contact, today: date) -> str | None:
    given = contact.email_consent
    if given is None or contact.consent_refused:
        return None
    if given > today:
        raise FutureConsentError(
            _("email_consent {given} is after today ({today})").format(
                given=given.isoformat(), today=today.isoformat()
            )
        )
    source = f" {contact.consent_source}" if contact.consent_source else ""
    return f"consent {given.isoformat()}{source}"


def _customer(
    campaign: Campaign, contact: Contact, *, policy: LegalPolicy, today: date
) -> str | None:
    """`customer <column> <date>` when LSSI art. 21.2 applies to this campaign and contact."""
    if policy.email_basis != "consent_or_customer" or not campaign.similar_products:
        return None
    if contact.consent_refused:
        return None  # a refusal is an objection: the customer exception does not override it
    text = contact.extra.get(policy.customer_column, "").strip()
    if not text:
        return None
    try:
        last = parse_date(text, date_format=policy.date_format)
    except ValueError:
        return None
    if last > today or _months_before(today, policy.customer_months) > last:
        return None
    return f"customer {policy.customer_column} {last.isoformat()}"


def _months_before(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 - months
    year, month = divmod(total, 12)
    # 31 March − 1 month is the last day of February.
    return date(year, month + 1, min(day.day, monthrange(year, month + 1)[1]))
