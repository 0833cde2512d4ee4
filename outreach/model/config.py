"""config.yaml → typed, validated, immutable settings."""

from __future__ import annotations

import difflib
import os
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from outreach import i18n
from outreach.i18n import N_, _
from outreach.model.errors import ConfigError, OutreachError, format_location
from outreach.yamlfile import dotted, line_for, load_yaml

CONFIG_NAME = "config.yaml"
# Ten years: a larger count of days is a typo, and date arithmetic must not overflow.
MAX_DAYS = 3660
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Seconds are optional: the daemon's tests schedule a job a few seconds ahead.
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def _weekday(value: str) -> str:
    day = value.strip().lower()[:3]
    if day not in WEEKDAYS:
        raise ValueError(
            _("{value} is not a weekday (use {days})").format(
                value=repr(value), days=", ".join(WEEKDAYS)
            )
        )
    return day


Weekday = Annotated[str, AfterValidator(_weekday)]


def parse_hhmm(value: str) -> time:
    """'09:30' → time(9, 30), '09:30:15' → time(9, 30, 15); ValueError otherwise."""
    match = _HHMM.match(value.strip())
    if not match:
        raise ValueError(
            _("{value} is not a time of day as HH:MM (e.g. 09:00)").format(value=repr(value))
        )
    return time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type admits true/false (else a boolean given for a number is refused)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(arg) for arg in get_args(annotation))


def _takes_number(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    return any(_takes_number(arg) for arg in get_args(annotation))


class NumbersNotBooleans(BaseModel):
    """A model whose number fields refuse true/false (config.yaml's and the campaigns')."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML's `true` would pass as the number 1 (`min_gap_days: true` as a day).
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if _takes_number(annotation) and not _takes_bool(annotation):
                raise ValueError(_("true/false is not a number: write a number"))
        return value


class _Model(NumbersNotBooleans):
    # defer_build: a model's validator is built when it first validates, not when this module
    # loads; `outreach redeem` (a till, every few minutes) validates a few sections only.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, defer_build=True)


def _known_locale(value: str) -> str:
    """The locale as written, if Babel knows it; ValueError if not."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(value.strip().replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        raise ValueError(
            _("{value} is not a known locale (e.g. es, es_MX, en_GB)").format(value=repr(value))
        ) from None
    return value


class Address(_Model):
    """A postal address (the sender's)."""

    street: str | None = None
    street2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None


class Sender(_Model):
    """Who the messages come from."""

    name: str
    email: str
    reply_to: str | None = None
    address: Address = Address.model_construct()
    phone: str | None = None
    website: str | None = None
    signature: str | None = None
    signature_image: str | None = None  # a file in the templates folder


class Paths(_Model):
    """Where the workspace's files live, relative to config.yaml."""

    contacts: Path = Path("contacts.csv")
    campaigns: Path = Path("campaigns")
    templates: Path = Path("templates")
    out: Path = Path("out")
    state: Path = Path("state")


class ContactsSettings(_Model):
    """How contacts.csv is read."""

    date_format: Literal["DMY", "MDY"] = "DMY"
    default_country: str = "ES"
    default_locale: str | None = None  # defaults to the top-level `locale`
    sheet: str | None = None  # a workbook's sheet to read (default: the first visible one)
    # Header names of the file → outreach's column names (`Correo electrónico: email`).
    columns: dict[str, str] = Field(default_factory=dict)
    preset: Literal["google", "outlook"] | None = None  # the CSV export of these programs

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return None if value is None else _known_locale(value)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        from outreach.contacts.model import KNOWN_COLUMNS  # here: contacts imports config

        for header, name in value.items():
            if name not in KNOWN_COLUMNS:
                raise ValueError(
                    _(
                        "{header} is mapped to {name}, which is not a column outreach "
                        "knows ({known})"
                    ).format(header=repr(header), name=repr(name), known=", ".join(KNOWN_COLUMNS))
                )
        return value

    @field_validator("default_country")
    @classmethod
    def _country(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError(_("must be an ISO 3166 alpha-2 code such as ES or GB"))
        return value.upper()


class Unsubscribe(_Model):
    """One-click unsubscribe (RFC 8058). `{id}` and `{token}` are filled per contact."""

    url: str | None = None
    mailto: str | None = None


class Coupon(_Model):
    """Coupon codes, one per message (outreach.outcomes.coupons), and how long they hold."""

    secret: str = "change-me"  # noqa: S105 - a placeholder that validate warns about
    prefix: str = ""
    length: int = Field(default=8, ge=4, le=32)  # symbols after the prefix, the check included
    valid_days: int = Field(default=60, ge=1, le=MAX_DAYS)  # after sending (a promotion: its end)


class Results(_Model):
    """How `outreach results` attributes a visit to a message or a control decision."""

    attribution_days: int = Field(default=30, ge=1, le=MAX_DAYS)


class Legal(_Model):
    """What makes a marketing message lawful (see README, "Spanish law in practice")."""

    # consent: only a dated email_consent; consent_or_customer: also a recent customer
    # (LSSI art. 21.2) for campaigns with `similar_products: true`.
    email_basis: Literal["consent", "consent_or_customer"] = "consent"
    # Postal marketing on legitimate interest (after the business's balancing test), or consent.
    letter_basis: Literal["consent", "legitimate_interest"] = "legitimate_interest"
    customer_column: str = "last_visit"
    customer_months: int = Field(default=24, ge=1, le=240)
    consent_text_version: str | None = None


class CadencePolicy(_Model):
    """How often one contact may hear from the business, across campaigns and channels."""

    min_gap_days: int = Field(default=7, ge=0, le=MAX_DAYS)
    max_messages: int = Field(default=4, ge=1, le=10_000)
    per_days: int = Field(default=30, ge=1, le=MAX_DAYS)
    quiet_weekdays: tuple[Weekday, ...] = ()
    quiet_hours: str | None = None  # "21:00-09:00", email only, config timezone

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is None:
            return None
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(_("must be a range of times such as 21:00-09:00"))
        parse_hhmm(start)
        parse_hhmm(end)
        return value.strip()

    def quiet_range(self) -> tuple[time, time] | None:
        """The quiet hours as (start, end) times, or None."""
        if not self.quiet_hours:
            return None
        start, _, end = self.quiet_hours.partition("-")
        return parse_hhmm(start), parse_hhmm(end)


class Delivery(_Model):
    """How emails leave: written to the outbox (default) or sent over SMTP."""

    method: Literal["outbox", "smtp"] = "outbox"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    ca_file: Path | None = None
    rate_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    # Parallel SMTP connections sharing one rate limit (`max_connections` is the older name).
    connections: int = Field(
        default=1, ge=1, le=16, validation_alias=AliasChoices("connections", "max_connections")
    )
    pipelining: bool = True  # RFC 2920, when the server offers it: one round trip per email
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_retries: int = Field(default=3, ge=0, le=100)
    max_consecutive_failures: int = Field(default=10, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _smtp_needs_host(self) -> Delivery:
        if self.method == "smtp" and not self.host:
            raise ValueError(_("delivery.method smtp needs delivery.host"))
        return self


class Dkim(_Model):
    """DKIM signing of every email handed to SMTP: the signing domain, the selector, the key.

    The private key (PEM, RSA) is read from `key_file` (outside the workspace folder, readable
    by its owner only) or from the environment variable `key_env`.
    """

    domain: str
    selector: str
    key_file: Path | None = None
    key_env: str | None = None

    @field_validator("domain", "selector")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9])?", value) or ".." in value:
            raise ValueError(
                _("{value} is not a DNS name (letters, digits, '-', '_', '.')").format(
                    value=repr(value)
                )
            )
        return value

    @model_validator(mode="after")
    def _one_key(self) -> Dkim:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError(_("give dkim.key_file or dkim.key_env (one of them)"))
        return self


class Imap(_Model):
    """An IMAP mailbox where bounces arrive (TLS verified; the password from the environment)."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)  # 993 (ssl) or 143 (starttls)
    security: Literal["ssl", "starttls"] = "ssl"
    username: str
    password_env: str
    folder: str = "INBOX"
    processed_folder: str = "outreach-processed"
    ca_file: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class Bounces(_Model):
    """What comes back: where bounces are read, and when an address is blocked.

    `return_path` is the envelope sender (VERP) with `{token}`, e.g.
    "rebotes+{token}@casalucia.example"; a hard bounce counts 1, a soft one 0.5, at most once
    a day per address; `threshold` blocks the address, and so does one hard bounce unless
    `hard_bounce_blocks` is false; the score starts again after `quiet_days` without bounces.
    """

    return_path: str | None = None
    maildir: Path | None = None
    imap: Imap | None = None
    threshold: float = Field(default=3.0, gt=0)
    hard_bounce_blocks: bool = True
    quiet_days: int = Field(default=30, ge=1)
    # Bounces put their report first: the first MiB holds it even when they quote a big message.
    max_message_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    every_minutes: int | None = Field(default=None, ge=1)  # for `outreach daemon`

    @field_validator("return_path")
    @classmethod
    def _return_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        local, at, domain = value.rpartition("@")
        if not at or not domain or "{token}" not in local or value.count("{token}") != 1:
            raise ValueError(
                _(
                    "must be an address with {token} once in its local part, e.g. "
                    '"rebotes+{token}@casalucia.example"'
                )
            )
        return value.strip()

    @model_validator(mode="after")
    def _one_mailbox(self) -> Bounces:
        if self.maildir is not None and self.imap is not None:
            raise ValueError(_("give bounces.maildir or bounces.imap, not both"))
        return self


class Replies(_Model):
    """Where people's replies arrive (the mailbox of `sender.reply_to`): a Maildir or IMAP.

    It may be the owner's own inbox: outreach reads it without moving or deleting anything
    (on IMAP it only adds a keyword flag mail clients do not show) and remembers what it read.
    """

    maildir: Path | None = None
    imap: Imap | None = None

    @model_validator(mode="after")
    def _one_mailbox(self) -> Replies:
        if self.maildir is not None and self.imap is not None:
            raise ValueError(_("give replies.maildir or replies.imap, not both"))
        return self


class CustomEnvelope(_Model):
    """A page and address window in millimetres, for `letters.envelope: custom`."""

    page_width_mm: float = Field(gt=0)
    page_height_mm: float = Field(gt=0)
    window_left_mm: float = Field(ge=0)
    window_top_mm: float = Field(ge=0)
    window_width_mm: float = Field(gt=0)
    window_height_mm: float = Field(gt=0)


class Postage(_Model):
    """What a letter weighs and costs to post: `<campaign>.postage.csv` beside each batch."""

    sheet_grams: float = Field(default=5.0, gt=0, le=1000)  # A4 at 80 g/m²
    envelope_grams: float = Field(default=5.0, ge=0, le=1000)
    steps: tuple[int, ...] = (20, 50, 100, 250, 500, 1000, 2000)  # the post's weight steps
    # Zones by country beyond domestic (the sender's) and international (the rest).
    zones: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # zone → weight step → price of one letter (domestic, international or a zone's name)
    prices: dict[str, dict[int, float]] = Field(default_factory=dict)

    @field_validator("zones")
    @classmethod
    def _countries(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return {zone: tuple(c.upper() for c in countries) for zone, countries in value.items()}


class Letters(_Model):
    """Printed letters."""

    envelope: Literal["din5008-a", "din5008-b", "us10", "custom"] = "din5008-b"
    custom: CustomEnvelope | None = None
    duplex: bool = False
    sort_by_postal_code: bool = True
    delivery_days: int = Field(default=2, ge=0, le=60)
    # One letter per household (contacts at one postal address) and occurrence; essential
    # campaigns always write one per contact.
    households: Literal["merge", "separate"] = "merge"
    # The return line on the envelope (one short line; default: the sender's name and address,
    # joined). The sender's country is added to it on letters abroad.
    return_address: str | None = Field(default=None, max_length=200)
    postage: Postage = Postage.model_construct()
    css: str | None = None  # an extra stylesheet in the templates folder
    # PDF/A for archives and mailing houses (WeasyPrint, with an sRGB output intent).
    pdf_variant: Literal["pdf/a-2b", "pdf/a-3b"] | None = None

    @model_validator(mode="after")
    def _custom_needs_dimensions(self) -> Letters:
        if self.envelope == "custom" and self.custom is None:
            raise ValueError(_("letters.envelope custom needs letters.custom with the dimensions"))
        return self


class RenderLimits(_Model):
    """What one message's templates (and a campaign's `where`) may cost."""

    render_seconds: float = Field(default=10.0, gt=0, le=3600)
    render_size: int = Field(default=5_000_000, ge=10_000, le=1_000_000_000)


class State(_Model):
    """Where the ledger lives: state/ledger.sqlite, or a PostgreSQL database shared by machines."""

    url: str | None = None  # postgresql://user@host/db; OUTREACH_LEDGER_URL wins

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from outreach.ledger.redact import has_password, url_problem

        # The password first, in any of its shapes: then no other message quotes it.
        if has_password(value):
            raise ValueError(
                _(
                    "a password does not belong in config.yaml: remove it from the URL and put "
                    "it in PGPASSWORD or ~/.pgpass, which PostgreSQL reads"
                )
            )
        problem = url_problem(value.strip())
        if problem is not None:
            raise ValueError(
                _(
                    "{problem}: write postgresql://user@host/database (or leave state.url out)"
                ).format(problem=problem)
            )
        return value.strip()


class ScheduleJob(_Model):
    """One job of the built-in scheduler."""

    campaigns: Literal["all"] | tuple[str, ...] = "all"
    at: str
    days: tuple[Weekday, ...] = ()
    send: bool = False
    shard: str | None = None  # K/N: this machine's part of a sharded workspace

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            from outreach.shards import parse_shard

            try:
                parse_shard(value, source="")
            except OutreachError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("at", mode="before")
    @classmethod
    def _at_quoted(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 10:30 as the base-60 number 630.
        if isinstance(value, int):
            raise ValueError(_('write the time in quotes, e.g. at: "10:30"'))
        return value

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        parse_hhmm(value)
        return value.strip()


class Basics(_Model):
    """What every command reads of config.yaml: where the files are, whose they are, the time
    zone and languages, how contacts are read, the coupon codes and where the ledger is.

    `outreach redeem` validates these alone (`load_basics`: a till waits for it); `Settings`
    is the whole file. `root` is the folder holding it.
    """

    root: Path
    sender: Sender
    # The language the tool speaks to the owner (its output, the report); None: the
    # environment's (LANGUAGE, LC_ALL, LC_MESSAGES, LANG). Customers' messages follow `locale`.
    language: Literal["es", "en"] | None = None
    locale: str = "es"
    timezone: str = "Europe/Madrid"
    paths: Paths = Paths.model_construct()
    contacts: ContactsSettings = ContactsSettings.model_construct()
    unsubscribe: Unsubscribe = Unsubscribe.model_construct()
    coupon: Coupon = Coupon.model_construct()
    state: State = State.model_construct()

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        return _known_locale(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                _("{value} is not a known time zone (e.g. Europe/Madrid)").format(value=repr(value))
            ) from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The config time zone."""
        return ZoneInfo(self.timezone)

    @property
    def default_locale(self) -> str:
        """The locale of contacts whose row names none."""
        return self.contacts.default_locale or self.locale

    def resolve(self, path: Path) -> Path:
        """A config-relative path made absolute."""
        return path if path.is_absolute() else self.root / path

    @property
    def contacts_path(self) -> Path:
        return self.resolve(self.paths.contacts)

    @property
    def campaigns_dir(self) -> Path:
        return self.resolve(self.paths.campaigns)

    @property
    def templates_dir(self) -> Path:
        return self.resolve(self.paths.templates)

    @property
    def out_dir(self) -> Path:
        return self.resolve(self.paths.out)

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.paths.state)

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.sqlite"

    @property
    def ledger_url(self) -> str | None:
        """The PostgreSQL ledger's URL (OUTREACH_LEDGER_URL wins over state.url), or None."""
        return os.environ.get("OUTREACH_LEDGER_URL", "").strip() or self.state.url


class Settings(Basics):
    """The whole validated config.yaml: the basics and every other section."""

    results: Results = Results.model_construct()
    cadence: CadencePolicy = CadencePolicy.model_construct()
    legal: Legal = Legal.model_construct()
    # Do-not-contact lists (CSV, e.g. the Lista Robinson), consulted for every marketing message.
    suppression_lists: tuple[Path, ...] = ()
    delivery: Delivery = Delivery.model_construct()
    dkim: Dkim | None = None
    letters: Letters = Letters.model_construct()
    limits: RenderLimits = RenderLimits.model_construct()
    schedule: tuple[ScheduleJob, ...] = ()
    bounces: Bounces = Bounces.model_construct()
    replies: Replies = Replies.model_construct()


_Loaded = TypeVar("_Loaded", bound=Basics)

# Our sentence for each kind of pydantic error an owner meets in a YAML file (its context's
# value as {limit} or {choices}); the rare rest keep pydantic's own (English) words.
_PYDANTIC_SAYS = {
    "extra_forbidden": N_("unknown key"),
    "missing": N_("required key is missing"),
    "int_type": N_("should be a valid integer (a whole number)"),
    "int_parsing": N_("should be a valid integer (a whole number)"),
    "int_from_float": N_("should be a valid integer (a whole number)"),
    "float_type": N_("should be a number"),
    "float_parsing": N_("should be a number"),
    "bool_type": N_("should be true or false"),
    "bool_parsing": N_("should be true or false"),
    "string_type": N_("should be text"),
    "date_type": N_("should be a date as YYYY-MM-DD"),
    "date_parsing": N_("should be a date as YYYY-MM-DD"),
    "date_from_datetime_parsing": N_("should be a date as YYYY-MM-DD"),
    "date_from_datetime_inexact": N_("should be a date as YYYY-MM-DD, without a time"),
    "time_type": N_("should be a time of day as HH:MM"),
    "time_parsing": N_("should be a time of day as HH:MM"),
    "greater_than": N_("should be greater than {limit}"),
    "greater_than_equal": N_("should be greater than or equal to {limit}"),
    "less_than": N_("should be less than {limit}"),
    "less_than_equal": N_("should be less than or equal to {limit}"),
    "literal_error": N_("should be one of {choices}"),
    "enum": N_("should be one of {choices}"),
    "list_type": N_("should be a list"),
    "tuple_type": N_("should be a list"),
    "dict_type": N_("should be a mapping of keys"),
    "model_type": N_("should be a mapping of keys"),
    "model_attributes_type": N_("should be a mapping of keys"),
    "string_too_short": N_("should not be empty"),
}
_LIMITS = ("gt", "ge", "lt", "le")


def _describe(error: Any) -> str:
    """What is wrong with a value, in the owner's language."""
    kind = error["type"]
    said = _PYDANTIC_SAYS.get(kind)
    context = error.get("ctx") or {}
    if said is None:
        # Our own validators' messages are translated where they are raised.
        return str(error["msg"]).removeprefix("Value error, ")
    limit = next((context[key] for key in _LIMITS if key in context), "")
    choices = str(context.get("expected", "")).replace("' or '", "', '")
    return _(said).format(limit=limit, choices=choices)


def _real_keys(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Drop the names pydantic adds for union members and validators from an error location."""
    return tuple(
        part
        for part in loc
        if isinstance(part, int)
        or not (
            str(part)[:1].isupper()
            or "[" in str(part)
            or str(part) in {"str", "int", "tuple", "literal"}
            or str(part).startswith(("function-", "literal"))
        )
    )


def _shown(value: object) -> str:
    """A bad value as an error quotes it, with the password of a connection string masked."""
    from outreach.ledger.redact import redact_url

    return redact_url(repr(value)) if isinstance(value, str) else repr(value)


def _known_keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys the section at `loc` (a path of keys below `model`) knows; [] if not a section."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [name for name, field in model.model_fields.items() if name not in ("root", "path")]


def _suggestion(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> str | None:
    """ "did you mean `min_gap_days`?" for an unknown key close to a known one."""
    if model is None or not loc:
        return None
    close = difflib.get_close_matches(str(loc[-1]), _known_keys_at(model, loc[:-1]), n=1)
    return _("did you mean `{key}`?").format(key=close[0]) if close else None


def validation_error(
    exc: ValidationError,
    *,
    path: Path,
    lines: dict[tuple[str | int, ...], int],
    error_type: type[ConfigError] | Any,
    hint: str,
    model: type[BaseModel] | None = None,
) -> Any:
    """Every pydantic error as one of ours: the first leads, with its key path and line; an
    unknown key of `model` gets the closest known one as its hint."""
    found = []
    for error in exc.errors():
        loc = _real_keys(tuple(error["loc"]))
        message = _describe(error)
        if error["type"] not in {"extra_forbidden", "missing"} and "input" in error:
            message = _("{problem} (got {value})").format(
                problem=message, value=_shown(error["input"])
            )
        meant = _suggestion(model, loc) if error["type"] == "extra_forbidden" else None
        found.append((loc, message, meant))
    loc, message, meant = found[0]
    if meant and len(found) > 1:  # the hint comes after every line: each says its own
        message, meant = _("{problem} — {hint}").format(problem=message, hint=meant), None
    for other_loc, other_message, other_meant in found[1:]:
        where = format_location(path, line_for(lines, other_loc), dotted(other_loc) or None)
        if other_meant:
            other_message = _("{problem} — {hint}").format(problem=other_message, hint=other_meant)
        message += "\n  " + _("also {where}: {problem}").format(where=where, problem=other_message)
    return error_type(
        message,
        path=path,
        line=line_for(lines, loc),
        field=dotted(loc) or None,
        hint=meant or hint,
    )


def _validated(path: Path, model: type[_Loaded]) -> _Loaded:
    """Read config.yaml and validate it as `model`; raise ConfigError naming the key and line."""
    data, lines = load_yaml(path, error=ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            _("the top level must be a mapping of keys"),
            path=path,
            line=1,
            hint=_("see the README's config.yaml tour"),
        )
    # Speak the file's language before judging it: its own problems are said in it.
    if data.get("language") in i18n.LANGUAGES:
        i18n.use(data["language"])
    if "root" in data:
        raise ConfigError(
            _("unknown key"),
            path=path,
            line=lines.get(("root",)),
            field="root",
            hint=_("remove it"),
        )
    if model is not Settings:  # the other sections are judged by load_settings, typos here
        data = {k: v for k, v in data.items() if k in model.model_fields or not _of_settings(k)}
    try:
        settings = model.model_validate({**data, "root": path.resolve().parent})
    except ValidationError as exc:
        raise validation_error(
            exc,
            path=path,
            lines=lines,
            error_type=ConfigError,
            hint=_("fix the key (see the README's config.yaml tour)"),
            model=Settings,
        ) from None
    i18n.use(settings.language)
    return settings


def _of_settings(key: object) -> bool:
    return isinstance(key, str) and key in Settings.model_fields


def load_settings(path: Path) -> Settings:
    """Read and validate config.yaml; raise ConfigError naming the key and line."""
    return _validated(path, Settings)


def load_basics(path: Path) -> Basics:
    """Read config.yaml and validate its basics only (the other sections are not judged; an
    unknown key is): for `outreach redeem`, which a till waits for; ConfigError naming the
    key and line."""
    return _validated(path, Basics)


def find_config(explicit: Path | None, *, cwd: Path | None = None) -> Path:
    """The config file named on the command line, or config.yaml in the current folder."""
    path = explicit if explicit is not None else (cwd or Path.cwd()) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            _("no config file here"),
            path=path,
            hint=_(
                "run in a workspace folder, pass --config PATH, "
                "or create one with `outreach init DIR`"
            ),
        )
    return path
