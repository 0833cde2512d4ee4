"""Campaign files → Campaign records; which occurrences are due on a date."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from outreach.contacts import KNOWN_COLUMNS
from outreach.i18n import N_, _
from outreach.model.config import (
    MAX_DAYS,
    CadencePolicy,
    NumbersNotBooleans,
    Weekday,
    parse_hhmm,
    validation_error,
)
from outreach.model.errors import CampaignError, OutreachError
from outreach.yamlfile import KeyPath, dotted, load_yaml

# Jinja and the audience rules (which compile with it) are imported where a campaign's
# templates and audience are checked: `outreach redeem` reads a campaign's terms only.
if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_Date = date  # `Occurrence.date` shadows the type inside that class

Kind = Literal["birthday", "promotion", "reminder", "one_off"]
Channel = Literal["email", "letter", "preferred"]


class _Model(NumbersNotBooleans):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _tag_list(value: object) -> object:
    # `tags_any: customer` (one tag without brackets) is what people write; accept it.
    return (value,) if isinstance(value, str) else value


def _clean_tags(values: tuple[str, ...]) -> tuple[str, ...]:
    tags = tuple(value.strip().lower() for value in values)
    if "" in tags:
        raise ValueError(_("a tag is empty"))
    return tags


class Audience(_Model):
    """Who may receive a campaign; every condition given must hold."""

    tags_any: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    where: str | None = None

    _one_tag = field_validator("tags_any", "tags_none", mode="before")(_tag_list)
    _tags = field_validator("tags_any", "tags_none")(_clean_tags)


class EmailSpec(_Model):
    """A campaign's email: a subject template and body template files.

    `subject` is one template, or one per language: `{default: "¡Hola!", en: "Hello!"}`.
    """

    subject: str | dict[str, str]

    @field_validator("subject")
    @classmethod
    def _subject_has_default(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(value, dict) and "default" not in value:
            raise ValueError(_("a subject per language needs a `default` entry for everyone else"))
        return value

    def subject_for(self, locale: str) -> str:
        """The subject template for a locale: `en_GB`, then `en`, then the default."""
        if isinstance(self.subject, str):
            return self.subject
        language = locale.partition("_")[0]
        for key in (locale, language):
            if key in self.subject:
                return self.subject[key]
        return self.subject["default"]

    text: str
    html: str | None = None


class LetterSpec(_Model):
    """A campaign's letter: its body template file and an optional subject line."""

    template: str
    subject: str | None = None


class CadenceOverride(_Model):
    """Per-campaign changes to config `cadence`; unset keys keep the config's value."""

    min_gap_days: int | None = Field(default=None, ge=0, le=MAX_DAYS)
    max_messages: int | None = Field(default=None, ge=1, le=10_000)
    per_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    quiet_weekdays: tuple[Weekday, ...] | None = None
    quiet_hours: str | None = None

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        # The same rule as config `cadence.quiet_hours`, checked here so the error names
        # the campaign file rather than surfacing later when the policy is applied.
        if value is None:
            return None
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(_("must be a range of times such as 21:00-09:00"))
        parse_hhmm(start)
        parse_hhmm(end)
        return value.strip()

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
    priority: int = Field(default=50, ge=-1_000_000, le=1_000_000)
    essential: bool = False
    # marketing needs a legal basis per contact; service (a reminder, an order's status) may
    # carry no offer. Unset: the default of the kind (`default_purpose`).
    purpose: Literal["marketing", "service"] | None = None
    similar_products: bool = False  # offers like what the customer bought (LSSI art. 21.2)
    cadence: CadenceOverride | None = None
    # The share (percent) of contacts held back to measure against (outreach.rules.control).
    control_group: float = Field(default=0.0, ge=0, le=90)
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
    # The line of `audience.where` in the file, for the errors it raises per contact.
    _where_line: int | None = PrivateAttr(default=None)

    @property
    def where_line(self) -> int | None:
        """The line of `audience.where` in the campaign file (None: not known or not set)."""
        return self._where_line

    @field_validator("control_group", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        # `control_group: 20%` is how people write it; a bare number means percent too.
        if isinstance(value, str) and value.strip().endswith("%"):
            number = value.strip()[:-1].strip()
            try:
                return float(number)
            except ValueError:
                raise ValueError(
                    _("{value} is not a percentage (write it like 20%)").format(value=repr(value))
                ) from None
        return value

    @field_validator("start", "end", "send_on")
    @classmethod
    def _plausible_date(cls, value: date | None) -> date | None:
        # A window is computed around these dates: far-off years would overflow it.
        if value is not None and not _FIRST_YEAR <= value.year <= _LAST_YEAR:
            raise ValueError(
                _("must be a date between {first_year} and {last_year}").format(
                    first_year=_FIRST_YEAR, last_year=_LAST_YEAR
                )
            )
        return value


_FIRST_YEAR, _LAST_YEAR = 1900, 2999


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One due message of a campaign for a contact: its event date and sending window."""

    campaign: str
    key: str
    date: _Date
    earliest: _Date
    latest: _Date
    age: int | None = None  # birthdays: the age reached on `date`


class FieldError(OutreachError):
    """A contact's value that a campaign needs (e.g. `next_appointment`) cannot be read.

    The runner reports it as that contact's problem and goes on with the others.
    """

    def __init__(self, message: str, *, contact_id: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.contact_id = contact_id


# ---------------------------------------------------------------------------------------------
# Loading

# Keys that only mean something for some kinds; anywhere else they are a mistake.
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "days_before": ("birthday",),
    "days_after": ("birthday",),
    "start": ("promotion",),
    "end": ("promotion",),
    "date_field": ("reminder",),
    "offsets": ("reminder",),
    "every_days": ("reminder",),
    "grace_days": ("reminder", "one_off"),
    "send_on": ("one_off",),
}
_SECTIONS: dict[str, type[BaseModel]] = {
    "audience": Audience,
    "email": EmailSpec,
    "letter": LetterSpec,
    "cadence": CadenceOverride,
}
_NAME = re.compile(r"^\w[\w .-]*$")
_MAX_DAYS = MAX_DAYS
_FIX_HINT = N_("fix the key (the sample campaigns/*.yaml files explain every key)")


# Subjects are only parsed here (syntax); filters such as `date` belong to the renderer's
# environment, which checks them when it compiles the template.
@functools.cache
def _syntax_env() -> ImmutableSandboxedEnvironment:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment()


def _known_keys(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name != "path"]


def _check_unknown_keys(data: Mapping[Any, Any], *, path: Path, lines: dict[KeyPath, int]) -> None:
    """Unknown keys, first in file order, with the closest known key as the hint."""
    unknown: list[tuple[KeyPath, list[str]]] = []
    for key in data:
        if key not in _known_keys(Campaign):
            unknown.append(((str(key),), _known_keys(Campaign)))
        elif key in _SECTIONS and isinstance(data[key], Mapping):
            known = _known_keys(_SECTIONS[key])
            unknown += [((key, str(sub)), known) for sub in data[key] if sub not in known]
    if not unknown:
        return
    unknown.sort(key=lambda item: lines.get(item[0], 0))
    key_path, known = unknown[0]
    close = difflib.get_close_matches(str(key_path[-1]), known, n=1)
    hint = (
        _("did you mean `{key}`?").format(key=close[0])
        if close
        else _("known keys here: {names}").format(names=", ".join(known))
    )
    more = len(unknown) - 1
    message = _("unknown key (and {n} more)").format(n=more) if more else _("unknown key")
    raise CampaignError(
        message, path=path, line=lines.get(key_path), field=dotted(key_path), hint=hint
    )


def _check_kind_keys(data: Mapping[str, Any], *, path: Path, lines: dict[KeyPath, int]) -> None:
    kind = data.get("kind")
    if kind not in ("birthday", "promotion", "reminder", "one_off"):
        return  # a missing or unknown kind is the model's error to report
    for key, kinds in _KIND_KEYS.items():
        if key in data and kind not in kinds:
            raise CampaignError(
                _("`{key}` does not apply to {kind} campaigns").format(key=key, kind=kind),
                path=path,
                line=lines.get((key,)),
                field=key,
                hint=_("remove it (it is for kind {names})").format(names=" / ".join(kinds)),
            )


def _need(campaign: Campaign, key: str, lines: dict[KeyPath, int], why: str) -> CampaignError:
    return CampaignError(
        why,
        path=campaign.path,
        line=lines.get(("kind",)),
        field=key,
        hint=_("add `{key}:` to the file").format(key=key),
    )


def _check_kind_rules(campaign: Campaign, lines: dict[KeyPath, int]) -> None:
    kind = campaign.kind
    if kind == "promotion":
        for key in ("start", "end"):
            if getattr(campaign, key) is None:
                raise _need(
                    campaign, key, lines, _("a promotion needs `{key}` (a date)").format(key=key)
                )
        assert campaign.start is not None and campaign.end is not None
        if campaign.end < campaign.start:
            raise CampaignError(
                _("`end` ({end}) is before `start` ({start})").format(
                    end=campaign.end, start=campaign.start
                ),
                path=campaign.path,
                line=lines.get(("end",)),
                field="end",
                hint=_("swap the dates or fix the one that is wrong"),
            )
    elif kind == "reminder":
        _check_reminder(campaign, lines)
    elif kind == "one_off" and campaign.send_on is None:
        raise _need(campaign, "send_on", lines, _("a one_off needs `send_on` (a date)"))


def _check_control_group(campaign: Campaign, lines: dict[KeyPath, int]) -> None:
    # Holding back an appointment reminder or an essential notice would fail the customer
    # to measure a number: those messages are service, not marketing.
    if not campaign.control_group:
        return
    service = None
    if campaign.essential:
        service = _("an essential campaign")
    elif campaign.kind == "reminder" and campaign.offsets:
        service = _("a reminder before or after a date (a service message)")
    if service is not None:
        raise CampaignError(
            _("{service} cannot hold back a control group").format(service=service),
            path=campaign.path,
            line=lines.get(("control_group",)),
            field="control_group",
            hint=_("remove `control_group:`; measure a marketing campaign instead"),
        )


def _check_reminder(campaign: Campaign, lines: dict[KeyPath, int]) -> None:
    field = campaign.date_field
    if not field or not field.strip():
        raise _need(
            campaign, "date_field", lines, _("a reminder needs `date_field` (a CSV column)")
        )
    if field in KNOWN_COLUMNS and field != "birthday":
        raise CampaignError(
            _("`{field}` is not a date column").format(field=field),
            path=campaign.path,
            line=lines.get(("date_field",)),
            field="date_field",
            hint=_("name the CSV column that holds the date, e.g. next_appointment"),
        )
    if campaign.offsets and campaign.every_days is not None:
        raise CampaignError(
            _("give either `offsets` or `every_days`, not both"),
            path=campaign.path,
            line=lines.get(("every_days",)),
            field="every_days",
            hint=_("offsets: days around a date; every_days: repeat after a date"),
        )
    if not campaign.offsets and campaign.every_days is None:
        raise _need(
            campaign, "offsets", lines, _("a reminder needs `offsets` (e.g. [-1]) or `every_days`")
        )
    for index, offset in enumerate(campaign.offsets):
        where = lines.get(("offsets", index)) or lines.get(("offsets",))
        if abs(offset) > _MAX_DAYS:
            raise CampaignError(
                _("offset {offset} is more than {max_days} days").format(
                    offset=offset, max_days=_MAX_DAYS
                ),
                path=campaign.path,
                line=where,
                field=f"offsets[{index}]",
                hint=_("offsets are days, e.g. -1"),
            )
        if offset in campaign.offsets[:index]:
            raise CampaignError(
                _("offset {offset} is listed twice").format(offset=offset),
                path=campaign.path,
                line=where,
                field=f"offsets[{index}]",
                hint=_("remove the repeated offset"),
            )
    if campaign.every_days is not None and campaign.every_days > _MAX_DAYS:
        raise CampaignError(
            _("more than {max_days} days").format(max_days=_MAX_DAYS),
            path=campaign.path,
            line=lines.get(("every_days",)),
            field="every_days",
            hint=_("every_days is in days"),
        )


def _check_channels(campaign: Campaign, lines: dict[KeyPath, int]) -> None:
    needs = {campaign.channel} if campaign.channel != "preferred" else {"email", "letter"}
    if campaign.fallback:
        needs = {"email", "letter"}
    why = "fallback: true" if campaign.fallback else f"channel: {campaign.channel}"
    line = lines.get(("fallback",) if campaign.fallback else ("channel",)) or lines.get(("kind",))
    if "email" in needs and campaign.email is None:
        raise CampaignError(
            _("{why} needs an `email:` section").format(why=why),
            path=campaign.path,
            line=line,
            field="email",
            hint=_("add email: with subject and text (a template file)"),
        )
    if "letter" in needs and campaign.letter is None:
        raise CampaignError(
            f"{why} needs a `letter:` section",
            path=campaign.path,
            line=line,
            field="letter",
            hint=_("add letter: with template (a template file)"),
        )


def _check_template_file(
    name: str, *, key: KeyPath, campaign: Campaign, templates_dir: Path, lines: dict[KeyPath, int]
) -> None:
    parts = PurePosixPath(name).parts
    if not name.strip() or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
        raise CampaignError(
            _("{name} is not a file name inside the templates folder").format(name=repr(name)),
            path=campaign.path,
            line=lines.get(key),
            field=dotted(key),
            hint=_("name a file relative to the templates folder, e.g. birthday.txt.j2"),
        )
    if not (templates_dir / name).is_file():
        raise CampaignError(
            _("template file not found: {path}").format(path=templates_dir / name),
            path=campaign.path,
            line=lines.get(key),
            field=dotted(key),
            hint=_("create it in {folder} or fix the file name").format(folder=templates_dir),
        )


def _check_subject(
    source: str, *, key: KeyPath, campaign: Campaign, lines: dict[KeyPath, int]
) -> None:
    if not source.strip():
        raise CampaignError(
            _("the subject is empty"),
            path=campaign.path,
            line=lines.get(key),
            field=dotted(key),
            hint=_("write the subject line people will see"),
        )
    from jinja2.exceptions import TemplateError as JinjaTemplateError

    try:
        _syntax_env().parse(source)
    except JinjaTemplateError as exc:
        detail = getattr(exc, "message", None) or str(exc)
        raise CampaignError(
            _("the subject is not a valid template: {detail}").format(detail=detail),
            path=campaign.path,
            line=lines.get(key),
            field=dotted(key),
            hint=_("check the {{ }} and {% %} pairs (write {{ contact.first_name }})"),
        ) from None


def _check_templates(campaign: Campaign, *, templates_dir: Path, lines: dict[KeyPath, int]) -> None:
    files: list[tuple[str, KeyPath]] = []
    if campaign.email is not None:
        subjects = campaign.email.subject
        for language, source in (
            subjects.items() if isinstance(subjects, dict) else [(None, subjects)]
        ):
            key: KeyPath = (
                ("email", "subject") if language is None else ("email", "subject", language)
            )
            _check_subject(source, key=key, campaign=campaign, lines=lines)
        files.append((campaign.email.text, ("email", "text")))
        if campaign.email.html is not None:
            files.append((campaign.email.html, ("email", "html")))
    if campaign.letter is not None:
        if campaign.letter.subject is not None:
            _check_subject(
                campaign.letter.subject, key=("letter", "subject"), campaign=campaign, lines=lines
            )
        files.append((campaign.letter.template, ("letter", "template")))
    for name, key in files:
        _check_template_file(
            name, key=key, campaign=campaign, templates_dir=templates_dir, lines=lines
        )


def _read_terms(path: Path) -> tuple[Campaign, dict[KeyPath, int]]:
    """A campaign file's keys, types, name and kind rules (its kind and dates hold)."""
    data, lines = load_yaml(path, error=CampaignError)
    if data is None:
        raise CampaignError(
            _("the file is empty"),
            path=path,
            hint=_("start from one of the sample campaigns/*.yaml files"),
        )
    if not isinstance(data, dict):
        raise CampaignError(
            _("the top level must be a mapping of keys"),
            path=path,
            line=1,
            hint=_("start from one of the sample campaigns/*.yaml files"),
        )
    _check_unknown_keys(data, path=path, lines=lines)
    _check_kind_keys(data, path=path, lines=lines)
    try:
        campaign = Campaign.model_validate({"name": path.stem, **data, "path": path})
    except ValidationError as exc:
        error: CampaignError = validation_error(
            exc, path=path, lines=lines, error_type=CampaignError, hint=_(_FIX_HINT)
        )
        raise error from None
    if not _NAME.match(campaign.name):
        raise CampaignError(
            _("{name} is not a usable campaign name").format(name=repr(campaign.name)),
            path=path,
            line=lines.get(("name",)),
            field="name",
            hint=_("use letters, digits, spaces, '.', '-' and '_' (it names output files)"),
        )
    _check_kind_rules(campaign, lines)
    return campaign, lines


def _load(path: Path, *, templates_dir: Path) -> tuple[Campaign, dict[KeyPath, int]]:
    from outreach.rules.audience import compile_audience

    campaign, lines = _read_terms(path)
    _check_control_group(campaign, lines)
    _check_channels(campaign, lines)
    _check_templates(campaign, templates_dir=templates_dir, lines=lines)
    if campaign.purpose is None:
        purpose = default_purpose(campaign, templates_dir=templates_dir)
        campaign = campaign.model_copy(update={"purpose": purpose})
    campaign._where_line = lines.get(("audience", "where"))
    compile_audience(campaign.audience, path=path, line=campaign.where_line)
    return campaign, lines


def default_purpose(campaign: Campaign, *, templates_dir: Path) -> str:
    """A campaign's purpose when its file names none: promotions and one-offs are marketing,
    so is a birthday whose templates give a coupon; reminders are service."""
    if campaign.kind in ("promotion", "one_off"):
        return "marketing"
    if campaign.kind == "reminder":
        return "service"
    names = [campaign.letter.template] if campaign.letter is not None else []
    if campaign.email is not None:
        names += [name for name in (campaign.email.text, campaign.email.html) if name]
    for name in names:
        try:
            if "coupon" in (templates_dir / name).read_text(encoding="utf-8"):
                return "marketing"
        except (OSError, UnicodeDecodeError):
            return "marketing"  # unreadable: the template check reports it; assume the stricter
    return "service"


def load_campaign(path: Path, *, templates_dir: Path) -> Campaign:
    """Read and validate one campaign file; raise CampaignError naming the key and line."""
    return _load(path, templates_dir=templates_dir)[0]


def load_campaigns(
    paths: list[Path], *, templates_dir: Path, terms_only: bool = False
) -> list[Campaign]:
    """Load several campaign files; names must be unique.

    `terms_only`: each file's keys, kind and dates are checked, not its channels, templates or
    audience (nor its purpose set from them) — what `outreach redeem` needs of a campaign.
    """
    campaigns: list[Campaign] = []
    seen: dict[str, Path] = {}
    for path in paths:
        campaign, lines = (
            _read_terms(path) if terms_only else _load(path, templates_dir=templates_dir)
        )
        first = seen.get(campaign.name)
        if first is not None:
            raise CampaignError(
                _("campaign name {name} is already used by {first}").format(
                    name=repr(campaign.name), first=first
                ),
                path=path,
                line=lines.get(("name",)),
                field="name",
                hint=_("give each campaign its own `name:` (it defaults to the file name)"),
            )
        seen[campaign.name] = path
        campaigns.append(campaign)
    return campaigns
