"""Contact files: the Contact record, the cells as values, decoding, and the CSV reader.

`model` is the record, `fields` the values of cells (dates, email, locales), `encoding` how a
file is decoded, `reader` the rows and their problems, streamed or as a whole list.
"""

from outreach.contacts.encoding import read_text
from outreach.contacts.fields import (
    COUNTRY_CODES,
    date_hint,
    normalize_email,
    normalize_locale,
    parse_date,
)
from outreach.contacts.model import CHANNELS, KNOWN_COLUMNS, Contact, ContactList
from outreach.contacts.reader import ContactStream, iter_contacts, load_contacts

__all__ = [
    "CHANNELS",
    "COUNTRY_CODES",
    "KNOWN_COLUMNS",
    "Contact",
    "ContactList",
    "ContactStream",
    "date_hint",
    "iter_contacts",
    "load_contacts",
    "normalize_email",
    "normalize_locale",
    "parse_date",
    "read_text",
]
