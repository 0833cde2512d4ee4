"""Households: contacts at the same postal address get one letter per occurrence.

With `letters.households: merge` (the default), the letters a run decided for one campaign and
one occurrence (same key, same day) whose contacts share a normalised postal address
(`feedback.blocks.postal_key`: case, accents and punctuation do not count) become one letter,
addressed to all of them. Essential letters (an appointment, a notice) always go one per
contact, and email is never merged. Only contacts whose letter was decided are grouped, so an
opted-out member is in no household, and a household whose members all opted out gets nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from babel.lists import format_list

from outreach.contacts import Contact
from outreach.rules.blocks import postal_key
from outreach.rules.postal import one_line, recipient_name

T = TypeVar("T")

# "Familia Ruiz": the word for a family before (or after) its surname, per language.
_FAMILY = {
    "es": "Familia {}",
    "ca": "Família {}",
    "gl": "Familia {}",
    "eu": "{} familia",
    "pt": "Família {}",
    "fr": "Famille {}",
    "it": "Famiglia {}",
    "de": "Familie {}",
    "nl": "Familie {}",
    "en": "The {} family",
}


@dataclass(frozen=True, slots=True)
class Household:
    """The contacts one letter goes to (in file order; the first is the letter's own)."""

    contacts: tuple[Contact, ...]

    @property
    def lead(self) -> Contact:
        """The contact whose row the letter is made from (address, language)."""
        return self.contacts[0]

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of every contact the letter covers."""
        return tuple(contact.id for contact in self.contacts)


def household_key(contact: Contact) -> str:
    """Contacts with the same key live at the same postal address."""
    return postal_key(contact)


def group_by(items: Sequence[T], *, key: Callable[[T], Hashable | None]) -> list[list[int]]:
    """Positions of `items` grouped by `key` (None: alone), each group and the groups in the
    order of their first item."""
    groups: dict[Hashable, list[int]] = {}
    alone: list[list[int]] = []
    order: list[list[int]] = []
    for position, item in enumerate(items):
        found = key(item)
        if found is None:
            group = [position]
            alone.append(group)
            order.append(group)
            continue
        if found not in groups:
            groups[found] = []
            order.append(groups[found])
        groups[found].append(position)
    return order


def _language(locale: str) -> str:
    return locale.replace("-", "_").split("_")[0].lower()


def family_name(contacts: Sequence[Contact], *, locale: str) -> str | None:
    """ "Familia Ruiz" when every member has the same last name (and there are two or more)."""
    surnames = {one_line(c.last_name).casefold() for c in contacts}
    if len(contacts) < 2 or len(surnames) != 1 or "" in surnames:
        return None
    surname = one_line(contacts[0].last_name)
    return _FAMILY.get(_language(locale), _FAMILY["en"]).format(surname)


def greeting(contacts: Sequence[Contact], *, locale: str) -> str:
    """The members' first names as the language lists them: "Carmen y Luis"."""
    names = [one_line(c.first_name) or recipient_name(c) for c in contacts]
    names = [name for name in names if name]
    if not names:
        return ""
    try:
        return str(format_list(names, locale=locale.replace("-", "_")))
    except (ValueError, LookupError):
        return str(format_list(names, locale="en"))


def envelope_name(contacts: Sequence[Contact], *, locale: str) -> str:
    """The name line on the envelope: the family, or every member's name listed."""
    if len(contacts) == 1:
        return recipient_name(contacts[0])
    family = family_name(contacts, locale=locale)
    if family is not None:
        return family
    names = [recipient_name(c) for c in contacts]
    return str(format_list([n for n in names if n], locale=locale.replace("-", "_")))


def template_fields(household: Household, *, locale: str) -> dict[str, object]:
    """What templates see as `household`: its contacts, greeting, family and envelope name."""
    members = household.contacts
    return {
        "contacts": [c.template_fields() for c in members],
        "size": len(members),
        "greeting": greeting(members, locale=locale),
        "family": family_name(members, locale=locale),
        "name": envelope_name(members, locale=locale),
    }
