"""Campaign files → Campaign records; which occurrences are due on a date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from outreach.config import CadencePolicy
from outreach.contacts import Contact

Kind = Literal["birthday", "promotion", "reminder", "one_off"]
Channel = Literal["email", "letter", "preferred"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Audience(_Model):
    """Who may receive a campaign; every condition given must hold."""

    tags_any: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    where: str | None = None


class EmailSpec(_Model):
    """A campaign's email: a subject template and body template files."""

    subject: str
    text: str
    html: str | None = None


class LetterSpec(_Model):
    """A campaign's letter: its body template file and an optional subject line."""

    template: str
    subject: str | None = None


class CadenceOverride(_Model):
    """Per-campaign changes to config `cadence`; unset keys keep the config's value."""

    min_gap_days: int | None = Field(default=None, ge=0)
    max_messages: int | None = Field(default=None, ge=1)
    per_days: int | None = Field(default=None, ge=1)
    quiet_weekdays: tuple[str, ...] | None = None
    quiet_hours: str | None = None

    def apply(self, policy: CadencePolicy) -> CadencePolicy:
        """The config policy with this campaign's overrides."""
        changes = self.model_dump(exclude_none=True)
        return CadencePolicy.model_validate({**policy.model_dump(), **changes})


class Campaign(_Model):
    """One validated campaign file."""

    name: str
    kind: Kind
    path: Path
    channel: Channel = "email"
    fallback: bool = False
    audience: Audience = Audience()
    priority: int = 50
    essential: bool = False
    cadence: CadenceOverride | None = None
    # birthday
    days_before: int = Field(default=0, ge=0, le=60)
    days_after: int = Field(default=0, ge=0, le=60)
    # promotion
    start: date | None = None
    end: date | None = None
    # reminder
    date_field: str | None = None
    offsets: tuple[int, ...] = ()
    every_days: int | None = Field(default=None, ge=1)
    # reminder and one_off
    grace_days: int = Field(default=0, ge=0, le=365)
    # one_off
    send_on: date | None = None
    email: EmailSpec | None = None
    letter: LetterSpec | None = None


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One due message of a campaign for a contact: its event date and sending window."""

    campaign: str
    key: str
    date: date
    earliest: date
    latest: date
    age: int | None = None  # birthdays: the age reached on `date`


def load_campaign(path: Path, *, templates_dir: Path) -> Campaign:
    """Read and validate one campaign file; raise CampaignError naming the key and line."""
    raise NotImplementedError


def load_campaigns(paths: list[Path], *, templates_dir: Path) -> list[Campaign]:
    """Load several campaign files; names must be unique."""
    raise NotImplementedError


def occurrences_between(
    campaign: Campaign, contact: Contact, *, start: date, end: date, date_format: str
) -> list[Occurrence]:
    """Occurrences whose window [earliest, latest] meets the days start..end."""
    raise NotImplementedError


def due_occurrences(
    campaign: Campaign, contact: Contact, *, today: date, date_format: str
) -> list[Occurrence]:
    """Occurrences whose window contains today."""
    return occurrences_between(campaign, contact, start=today, end=today, date_format=date_format)
