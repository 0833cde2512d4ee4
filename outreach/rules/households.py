"""Households: contacts at the same postal address get one letter per occurrence.

With `letters.households: merge` (the default), the letters a run decided for one campaign and
one occurrence (same key, same day) whose contacts share a normalised postal address
(`feedback.blocks.postal_key`: case, accents and punctuation do not count) become one letter,
addressed to all of them. Essential letters (an appointment, a notice) always go one per
contact, and email is never merged. Only contacts whose letter was decided are grouped, so an
opted-out member is in no household, and a household whose members all opted out gets nothing.
"""

from __future__ import annotations

from collections import Counter
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


def _main_surname(contacts: Sequence[Contact]) -> str | None:
    """The last name more than half the members share (as the first of them writes it)."""
    counts = Counter(one_line(c.last_name).casefold() for c in contacts if one_line(c.last_name))
    if not counts:
        return None
    folded, count = counts.most_common(1)[0]
    if count * 2 <= len(contacts):
        return None
    return next(
        one_line(c.last_name) for c in contacts if one_line(c.last_name).casefold() == folded
    )


def _two_lines(names: Sequence[str], *, locale: str) -> tuple[str, str] | None:
    """The listed names broken in two lines of about the same length ("Ana, Luis" / "y Eva")."""
    if len(names) < 2:
        return None
    listed = _listed(names, locale=locale)
    ends, cursor = [], 0
    for name in names:  # where each name ends in the listed text
        cursor = listed.index(name, cursor) + len(name)
        ends.append(cursor)
    splits = [(listed[:end].strip(), listed[end:].strip(" ,")) for end in ends[:-1]]
    return min(splits, key=lambda pair: max(len(pair[0]), len(pair[1])))


def _listed(names: Sequence[str], *, locale: str) -> str:
    try:
        return str(format_list(list(names), locale=locale.replace("-", "_")))
    except (ValueError, LookupError):
        return str(format_list(list(names), locale="en"))


def name_forms(contacts: Sequence[Contact], *, locale: str) -> list[tuple[str, ...]]:
    """The ways to write a household on the envelope, best first: its one name line, the
    family of the surname most members share ("Familia Ruiz"), the names on two lines."""
    forms: list[tuple[str, ...]] = [(envelope_name(contacts, locale=locale),)]
    surname = _main_surname(contacts) if len(contacts) > 1 else None
    if surname is not None:
        family = _FAMILY.get(_language(locale), _FAMILY["en"]).format(surname)
        if (family,) not in forms:
            forms.append((family,))
    names = [name for name in (recipient_name(c) for c in contacts) if name]
    split = _two_lines(names, locale=locale)
    if split is not None and all(split):
        forms.append(split)
    return forms


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
    return _listed([n for n in names if n], locale=locale)


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
