"""Which header names mean which of outreach's columns: the user's `contacts.columns`, and
the presets for the CSV exports of Google Contacts and Outlook."""

from __future__ import annotations

from collections.abc import Mapping

# Google Contacts → Export → Google CSV. Its header changed in 2023 ("First Name" instead of
# "Given Name", "Labels" instead of "Group Membership"); both spellings are listed.
GOOGLE = {
    "First Name": "first_name",
    "Given Name": "first_name",
    "Last Name": "last_name",
    "Family Name": "last_name",
    "Name Prefix": "title",
    "E-mail 1 - Value": "email",
    "Birthday": "birthday",
    "Address 1 - Street": "street",
    "Address 1 - Extended Address": "street2",
    "Address 1 - Postal Code": "postal_code",
    "Address 1 - City": "city",
    "Address 1 - Region": "region",
    "Address 1 - Country": "country",
    "Labels": "tags",
    "Group Membership": "tags",
}

# Outlook → Export → Comma Separated Values: its "Home" address (the export's header is in
# the language of Outlook; these are the English names).
OUTLOOK = {
    "Title": "title",
    "First Name": "first_name",
    "Last Name": "last_name",
    "E-mail Address": "email",
    "Birthday": "birthday",
    "Home Street": "street",
    "Home Street 2": "street2",
    "Home Postal Code": "postal_code",
    "Home City": "city",
    "Home State": "region",
    "Home Country/Region": "country",
    "Home Country": "country",
    "Categories": "tags",
}

PRESETS: Mapping[str, Mapping[str, str]] = {"google": GOOGLE, "outlook": OUTLOOK}


def header_key(name: str) -> str:
    """A header cell as compared: lower case, spaces as underscores."""
    return "_".join(name.strip().lower().split())


def column_mapping(*, preset: str | None, columns: Mapping[str, str]) -> dict[str, str]:
    """Header key → outreach column: the preset's names, then the user's (which win)."""
    mapping = {header_key(header): name for header, name in PRESETS.get(preset or "", {}).items()}
    mapping.update({header_key(header): name for header, name in columns.items()})
    return mapping
