"""The contact record and the list of them a contacts file gives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType

from outreach.model.errors import Problem

# fmt: off
KNOWN_COLUMNS = (
    "id", "first_name", "last_name", "title", "email", "birthday",
    "street", "street2", "postal_code", "city", "region", "country",
    "preferred_channel", "locale", "tags", "opt_out", "address_confirmed",
    "email_consent", "consent_source",
)
CHANNELS = ("email", "letter")


_NO_EXTRA: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Contact:
    """One usable contact row. Empty cells are None; `extra` holds other non-empty columns.

    A field whose cell was present but invalid is None here and listed in `held_back`
    (e.g. an invalid email: the contact can still get letters, never an email).
    """

    id: str
    line: int
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    email: str | None = None
    birthday: date | None = None
    street: str | None = None
    street2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country: str = "ES"
    preferred_channel: str | None = None
    locale: str = "es"
    tags: frozenset[str] = frozenset()
    opt_out: frozenset[str] = frozenset()
    # The day the owner confirmed this postal address although the address data rejects its
    # postal code (a new street, a gap in the data): that check is off for the row.
    address_confirmed: date | None = None
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    held_back: frozenset[str] = frozenset()
    # The day the person consented to marketing email (None: no consent on record, or
    # `email_consent: no`, then `consent_refused`); where the consent was given, as written.
    email_consent: date | None = None
    consent_refused: bool = False
    consent_source: str | None = None

    def template_fields(self) -> dict[str, object]:
        """What templates and `where` see as `contact`: non-empty fields and extra columns."""
        fields: dict[str, object] = dict(self.extra)
        for name in (
            "id", "first_name", "last_name", "title", "email", "birthday", "street",
            "street2", "postal_code", "city", "region", "country", "preferred_channel",
            "locale",
        ):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        fields["tags"] = sorted(self.tags)
        fields["opt_out"] = sorted(self.opt_out)
        return fields

    def __reduce__(self) -> tuple[Callable[..., Contact], tuple[object, ...]]:
        # For worker processes: a read-only view cannot be pickled, so `extra` goes as a dict.
        values = [getattr(self, name) for name in _FIELDS]
        values[_EXTRA_AT] = dict(self.extra)
        return _unpickle_contact, tuple(values)


_FIELDS = tuple(Contact.__dataclass_fields__)
_EXTRA_AT = _FIELDS.index("extra")


def _unpickle_contact(*values: object) -> Contact:
    fields = list(values)
    extra = fields[_EXTRA_AT]
    fields[_EXTRA_AT] = MappingProxyType(extra) if extra else _NO_EXTRA  # type: ignore[arg-type]
    return Contact(*fields)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ContactList:
    """The readable contacts of a file, and every problem found in it."""

    path: Path
    contacts: tuple[Contact, ...]
    problems: tuple[Problem, ...]
    rows: int  # data rows read (blank lines not counted)
# fmt: on
