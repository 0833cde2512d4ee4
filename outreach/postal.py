"""Postal rules: which fields an address needs in each country, and its lines in order.

The letter renderer, eligibility (can this contact get a letter at all?) and validate all ask
here, so an address is judged the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from outreach.render.templates import babel_locale

if TYPE_CHECKING:
    from outreach.contacts import Contact

# Countries whose addresses have no postal code (a code there is printed but not required).
NO_POSTAL_CODE = frozenset({"AE", "HK", "IE", "QA"})
# Countries whose city line needs the region (state, province) as well.
NEEDS_REGION = frozenset({"US", "CA", "AU"})

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
        raise ValueError(f"{code!r} is not a known country code")
    return str(name).upper()


class MissingFieldError(ValueError):
    """An address lacks a field its country needs."""

    def __init__(self, field: str) -> None:
        super().__init__(f"no {field.replace('_', ' ')}")
        self.field = field


def required_address_fields(country: str) -> tuple[str, ...]:
    """The contact fields a postal address in this country cannot do without."""
    country = country.upper()
    required = ["street", "city"]
    if country not in NO_POSTAL_CODE:
        required.append("postal_code")
    if country in NEEDS_REGION:
        required.append("region")
    return tuple(required)


def missing_address_fields(contact: Contact) -> list[str]:
    """The fields a letter to this contact still needs (empty: the address is complete)."""
    return [
        name
        for name in required_address_fields(contact.country)
        if not one_line(getattr(contact, name))
    ]


def format_address(
    *,
    name_lines: Sequence[str],
    street: str | None,
    street2: str | None,
    postal_code: str | None,
    city: str | None,
    region: str | None,
    country: str,
    home_country: str,
    locale: str,
) -> tuple[str, ...]:
    """Address lines in the country's order; MissingFieldError for a missing field, ValueError
    for an unknown country code."""
    country = country.upper()
    values = {
        "street": one_line(street),
        "postal_code": one_line(postal_code),
        "city": one_line(city),
        "region": one_line(region),
    }
    for field in required_address_fields(country):
        if not values[field]:
            raise MissingFieldError(field)
    code, town, area = values["postal_code"], values["city"], values["region"]
    if country == "GB":
        place = [town, code]
    elif country == "IE":
        place = [f"{town} {area}".strip() if area else town, *([code] if code else [])]
    elif country == "US":
        place = [f"{town}, {area} {code}"]
    elif country == "CA":
        place = [f"{town} {area}  {code}"]  # Canada Post: two spaces before the postal code
    elif country == "AU":
        place = [f"{town} {area} {code}"]
    elif country == "IT" and area:
        place = [f"{code} {town} {area}"]  # the province's two letters follow the town
    else:
        place = [f"{code} {town}".strip()]
    lines = [*name_lines, *address_lines(street), *address_lines(street2), *place]
    if country != home_country.upper():
        lines.append(country_name(country, locale=locale))
    return tuple(lines)


def recipient_name(contact: Contact) -> str:
    """The name line: title, first name, last name, as the contact wants them written."""
    return " ".join(
        one_line(p) for p in (contact.title, contact.first_name, contact.last_name) if p
    )


def address_gaps(contact: Contact) -> list[str]:
    """The postal address fields a letter to this contact still needs (per its country)."""
    if "address" in contact.held_back:
        return ["country"]
    return missing_address_fields(contact)
