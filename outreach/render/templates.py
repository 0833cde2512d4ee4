"""The sandboxed Jinja2 environment, locale-aware filters, and per-contact email rendering."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import css_inline
import jinja2
from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency
from jinja2 import FileSystemLoader, StrictUndefined, Template, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from outreach.contacts import Contact
from outreach.i18n import N_, _
from outreach.model.campaigns import Campaign, Occurrence
from outreach.model.config import Settings
from outreach.model.errors import ConfigError, TemplateError
from outreach.outcomes.coupons import coupon_code
from outreach.render.email import (
    Content,
    RenderedEmail,
    Sender,
    build_message,
    check_address,
    check_unsubscribe_targets,
    clean_display_name,
    message_id_for,
)
from outreach.render.styles import StyleInliner
from outreach.rules.locales import normalize_locale, writing_locale
from outreach.rules.sandbox import (
    LimitedSandbox,
    RenderLimitError,
    limits_of,
    render_guard,
    render_limited_parts,
)

_JINJA_SUFFIXES = frozenset({"j2", "jinja", "jinja2"})
# A subject must stay one header line; tabs are only collapsed like spaces.
_SUBJECT_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_STYLESHEET = re.compile(r"<(?:style|link)\b", re.IGNORECASE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_FIELD_HINT = N_("add the field to the contact or use a default() in the template")
_NAME_HINT = N_("check the name in the template")


class _Fields(dict[str, Any]):
    """A context mapping that knows its name, for messages like "'contact.x' is undefined"."""

    __slots__ = ("_label",)

    def __init__(self, label: str, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self._label = label


class _StrictUndefined(StrictUndefined):
    """StrictUndefined that names the missing field with its variable: 'contact.first_name'."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if (
            isinstance(obj, _Fields)
            and isinstance(self._undefined_name, str)
            and not self._undefined_hint
        ):
            name = f"'{obj._label}.{self._undefined_name}'"
            return _("{name} is undefined").format(name=name)
        return str(super()._undefined_message)


class _EmptyValueError(Exception):
    """A template printed None: a blank where the reader expects a value."""


def _finalize(value: Any) -> Any:
    # Printing None would put the word "None" (or a blank) in front of a customer.
    if value is None:
        raise _EmptyValueError(_("prints an empty value (None)"))
    return value


class _Environment(LimitedSandbox):
    """The sandbox, with context mappings read as fields first (a column named `items` wins)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is _Fields:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is _Fields:
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


def _context_locale(context: Context, *, money: bool = False) -> Locale:
    identifier = context.get("_locale")
    if not isinstance(identifier, str):
        problem = "the render context has no _locale"  # not translated: a programming error
        raise ValueError(problem)
    sender = context.get("sender")
    address = sender.get("address") if isinstance(sender, Mapping) else None
    region = address.get("country") if isinstance(address, Mapping) else None
    country = context.get("_country")
    return writing_locale(
        identifier,
        country=country if isinstance(country, str) else None,
        home=region if isinstance(region, str) else None,
        money=money,
    )


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(
        _("date filter: {value} is not a date (use YYYY-MM-DD)").format(value=repr(value))
    )


@pass_context
def _date_filter(context: Context, value: Any, format: str = "long") -> str:
    """A date in the contact's locale: short, medium, long, full, or a Babel pattern."""
    return str(format_date(_as_date(value), format=format, locale=_context_locale(context)))


@pass_context
def _money_filter(context: Context, amount: Any, currency: str = "EUR") -> str:
    """An amount of money in the message's language (12.5 → "12,50 €" for es; see
    `writing_locale` for the region)."""
    try:
        number = amount if isinstance(amount, int | float | Decimal) else Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(
            _("money filter: {value} is not a number").format(value=repr(amount))
        ) from None
    return str(format_currency(number, currency, locale=_context_locale(context, money=True)))


def build_environment(*, templates_dir: Path, html: bool) -> ImmutableSandboxedEnvironment:
    """The sandboxed, strict Jinja2 environment for a templates folder (autoescaped for HTML)."""
    env = _Environment(
        loader=FileSystemLoader(str(templates_dir), encoding="utf-8"),
        undefined=_StrictUndefined,
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
        finalize=_finalize,
    )
    env.filters["date"] = _date_filter
    env.filters["money"] = _money_filter
    return env


@lru_cache(maxsize=8)
def _hmac_base(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def _keyed(secret: str, message: str) -> bytes:
    # Copying a keyed HMAC is twice as fast as keying a new one for every contact.
    mac = _hmac_base(secret).copy()
    mac.update(message.encode())
    return mac.digest()


def unsubscribe_token(*, secret: str, contact_id: str) -> str:
    """The token that proves an unsubscribe link was made for this contact (16 hex digits)."""
    return _keyed(secret, contact_id).hex()[:16]


def _fill_unsubscribe(template: str, settings: Settings, contact_id: str) -> str:
    # Most mailto: targets hold no placeholder: skip the HMAC for them.
    if "{id}" in template:
        template = template.replace("{id}", quote(contact_id, safe=""))
    if "{token}" in template:
        token = unsubscribe_token(secret=settings.coupon.secret, contact_id=contact_id)
        template = template.replace("{token}", token)
    return template


def unsubscribe_url(settings: Settings, contact: Contact) -> str | None:
    """The contact's one-click unsubscribe URL from config `unsubscribe.url`, or None."""
    if not settings.unsubscribe.url:
        return None
    return _fill_unsubscribe(settings.unsubscribe.url, settings, contact.id)


def _unsubscribe_mailto(settings: Settings, contact: Contact) -> str | None:
    mailto = settings.unsubscribe.mailto
    if not mailto:
        return None
    if not mailto.lower().startswith("mailto:"):
        mailto = "mailto:" + mailto
    return _fill_unsubscribe(mailto, settings, contact.id)


def variant_names(name: str, locale: str) -> list[str]:
    """Template files to try for a locale: `x.en_GB.txt.j2`, `x.en.txt.j2`, then `x.txt.j2`."""
    folder, slash, base = name.rpartition("/")
    pieces = base.split(".")
    if len(pieces) >= 3 and pieces[-1] in _JINJA_SUFFIXES:
        suffix = "." + ".".join(pieces[-2:])
    elif len(pieces) >= 2:
        suffix = "." + pieces[-1]
    else:
        suffix = ""
    stem = folder + slash + base[: len(base) - len(suffix)]
    normalized = normalize_locale(locale)
    tags = [normalized]
    language = normalized.partition("_")[0]
    if language != normalized:
        tags.append(language)
    return [f"{stem}.{tag}{suffix}" for tag in tags] + [name]


@dataclass(frozen=True, slots=True)
class _Variant:
    text: Template
    html: Template | None
    localized: bool  # a file for the contact's locale or language (not the default one)


def message_locale(locale: str, *, localized: bool, default_locale: str) -> str:
    """The locale a message's dates and amounts are written in: one message, one language.

    The contact's, when the template variant chosen is in the contact's language (or the
    default file is, by chance); otherwise the default locale, whose language the default
    template is written in — never an English date in a Spanish sentence.
    """
    if localized:
        return locale
    default = normalize_locale(default_locale)
    if locale.partition("_")[0] == default.partition("_")[0]:
        return locale  # the contact's region still decides (es_MX in a Spanish template)
    return default


def speaks(locale: str, *, localized: bool, default_locale: str) -> bool:
    """Whether a message chosen this way is in the contact's own language."""
    return message_locale(locale, localized=localized, default_locale=default_locale) == locale


def _relative_name(filename: str, templates_dir: Path) -> str | None:
    if filename == "<template>":
        return filename
    if filename.endswith(".py"):
        return None
    try:
        return Path(filename).relative_to(templates_dir).as_posix()
    except ValueError:
        return None


def _locate(exc: BaseException, templates_dir: Path) -> tuple[str | None, int | None]:
    """The template name and line an exception came from (Jinja rewrites its traceback frames)."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.name or exc.filename, exc.lineno
    name: str | None = None
    line: int | None = None
    for frame in traceback.extract_tb(exc.__traceback__):
        found = _relative_name(frame.filename, templates_dir)
        if found is not None:
            name, line = found, frame.lineno
    return name, line


def _describe(exc: BaseException) -> tuple[str, str]:
    """What went wrong, and what to do about it."""
    if isinstance(exc, jinja2.UndefinedError):
        message = str(exc.message or exc)
        hint = _FIELD_HINT if message.startswith("'contact.") else _NAME_HINT
        return message, _(hint)
    if isinstance(exc, SecurityError):
        return (
            _("not allowed in a template: {error}").format(error=exc),
            _("templates may only read their context"),
        )
    if isinstance(exc, RenderLimitError):
        return str(exc), _(
            "simplify the template, or raise the limit under `limits:` in config.yaml"
        )
    if isinstance(exc, _EmptyValueError):
        return str(exc), _("guard the value with {% if … %} or leave it out")
    if isinstance(exc, jinja2.TemplateNotFound):
        return (
            _("template {name} not found").format(name=repr(exc.name)),
            _("check the file name in the templates folder"),
        )
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return (
            _("template syntax error: {error}").format(error=exc.message),
            _("fix the template"),
        )
    return f"{type(exc).__name__}: {exc}", _("fix the template or the contact's data")


def _contact_problem(contact: Contact, problem: str) -> str:
    """ "contact c001: <problem>", in the owner's language."""
    return _("contact {id}: {problem}").format(id=contact.id, problem=problem)


class MessageContext:
    """What every template of one campaign sees (emails and letters alike), built per contact.

    The campaign's and sender's parts are built once; per contact only what differs.
    """

    def __init__(self, *, settings: Settings, campaign: Campaign, today: date) -> None:
        self._settings = settings
        self._campaign = campaign
        self._today = today
        sender = settings.sender
        self._sender = _Fields(
            "sender",
            {
                **sender.model_dump(),
                "address": _Fields("sender.address", sender.address.model_dump()),
            },
        )
        self._campaign_fields = _Fields(
            "campaign",
            {
                "name": campaign.name,
                "kind": campaign.kind,
                "priority": campaign.priority,
                "essential": campaign.essential,
                "start": campaign.start,
                "end": campaign.end,
                "days_before": campaign.days_before,
                "days_after": campaign.days_after,
                "send_on": campaign.send_on,
            },
        )

    def build(
        self, contact: Contact, occurrence: Occurrence, *, locale: str, unsubscribe: str | None
    ) -> dict[str, Any]:
        """The context for one contact's message: contact, campaign, occurrence, sender, …"""
        coupon = self._settings.coupon
        return {
            "contact": _Fields("contact", contact.template_fields()),
            "campaign": self._campaign_fields,
            "occurrence": _Fields(
                "occurrence",
                {
                    "date": occurrence.date,
                    "age": occurrence.age,
                    "key": occurrence.key,
                    "earliest": occurrence.earliest,
                    "latest": occurrence.latest,
                },
            ),
            "sender": self._sender,
            "today": self._today,
            "unsubscribe_url": unsubscribe,
            "coupon": coupon_code(
                secret=coupon.secret,
                contact_id=contact.id,
                campaign=self._campaign.name,
                occurrence_key=occurrence.key,
                prefix=coupon.prefix,
                length=coupon.length,
            ),
            "_locale": locale,
            "_country": contact.country,
        }


class EmailRenderer:
    """Renders one campaign's email for many contacts; templates compile once per locale."""

    def __init__(
        self, *, settings: Settings, campaign: Campaign, today: date, now: datetime
    ) -> None:
        if campaign.email is None:
            raise TemplateError(
                _("the campaign has no email section"),
                path=campaign.path,
                field="email",
                hint=_("add email: subject and text, or send it as a letter"),
            )
        self._settings = settings
        self._limits = limits_of(settings)
        self._campaign = campaign
        self._spec = campaign.email
        # Jinja reports a template's file name normalised; compare like with like.
        self._templates_dir = Path(os.path.normpath(settings.templates_dir))
        self._text_env = build_environment(templates_dir=self._templates_dir, html=False)
        self._html_env = build_environment(templates_dir=self._templates_dir, html=True)
        self._inliner = StyleInliner(
            css_inline.CSSInliner(
                load_remote_stylesheets=False, keep_style_tags=False, keep_at_rules=True
            )
        )
        self._subjects: dict[str, Template] = {}
        self._subject_for(settings.default_locale)  # a syntax error fails the campaign early
        sender = settings.sender
        try:
            self._from_addr = check_address(sender.email)
            self._reply_to = check_address(sender.reply_to) if sender.reply_to else None
        except ValueError as exc:
            raise ConfigError(
                str(exc), field="sender", hint=_("use a plain address such as hola@example.com")
            ) from None
        self._domain = self._from_addr.rpartition("@")[2]
        self._from_name = clean_display_name(sender.name)
        try:
            check_unsubscribe_targets(self._unsubscribe_targets(Contact(id="x", line=0)))
        except ValueError as exc:
            raise ConfigError(
                str(exc), field="unsubscribe", hint=_("give a full https:// URL or a mail address")
            ) from None
        if now.tzinfo is None:
            now = now.replace(tzinfo=settings.tz)
        self._now = now
        self._today = today
        self._fields = MessageContext(settings=settings, campaign=campaign, today=today)
        self._variants: dict[str, _Variant | TemplateError] = {}
        # Load the default locale's templates now: a missing or broken file shows up at once.
        variant = self._variant(settings.default_locale)
        if isinstance(variant, TemplateError):
            raise variant

    # --- templates -------------------------------------------------------------------------

    def _subject_for(self, locale: str) -> Template:
        """The compiled subject for a locale, compiled once per distinct source."""
        source = self._spec.subject_for(locale)
        compiled = self._subjects.get(source)
        if compiled is None:
            try:
                compiled = self._text_env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    _("subject template syntax error: {error}").format(error=exc.message),
                    path=self._campaign.path,
                    field="email.subject",
                    hint=_("fix the subject in the campaign file"),
                ) from None
            self._subjects[source] = compiled
        return compiled

    def _variant(self, locale: str) -> _Variant | TemplateError:
        key = normalize_locale(locale)
        cached = self._variants.get(key)
        if cached is None:
            try:
                cached = self._load_variant(key)
            except TemplateError as exc:
                cached = exc
            self._variants[key] = cached
        return cached

    def _load(self, env: jinja2.Environment, name: str, locale: str) -> tuple[Template, str]:
        candidates = variant_names(name, locale)
        for candidate in candidates:
            try:
                return env.get_template(candidate), candidate
            except jinja2.TemplateNotFound as exc:
                # Only a missing variant falls through; a missing {% include %} is an error.
                if exc.name != candidate:
                    raise self._load_error(exc, candidate) from None
            except jinja2.TemplateSyntaxError as exc:
                raise self._load_error(exc, candidate) from None
        raise TemplateError(
            _("template not found"),
            path=self._templates_dir / name,
            hint=_("create it or fix the file name in {file}").format(
                file=self._campaign.path.name
            ),
        )

    def _load_error(self, exc: Exception, name: str) -> TemplateError:
        where, line = _locate(exc, self._templates_dir)
        message, hint = _describe(exc)
        return TemplateError(message, path=where or name, line=line, hint=hint)

    def _load_variant(self, locale: str) -> _Variant:
        text, text_name = self._load(self._text_env, self._spec.text, locale)
        names = variant_names(self._spec.text, locale)
        localized = names.index(text_name) < len(names) - 1
        if self._spec.html is None:
            return _Variant(text=text, html=None, localized=localized)
        html, html_name = self._load(self._html_env, self._spec.html, locale)
        text_level = variant_names(self._spec.text, locale).index(text_name)
        html_level = variant_names(self._spec.html, locale).index(html_name)
        if text_level != html_level:
            # English text beside a Spanish HTML part would reach the reader in two languages.
            wanted = variant_names(
                self._spec.html if text_level < html_level else self._spec.text, locale
            )[min(text_level, html_level)]
            raise TemplateError(
                _("locale {locale}: {text} and {html} are in different languages").format(
                    locale=locale, text=text_name, html=html_name
                ),
                path=self._templates_dir / wanted,
                hint=_("add the missing translation so text and HTML match"),
            )
        return _Variant(text=text, html=html, localized=localized)

    # --- rendering -------------------------------------------------------------------------

    def _render(self, template: Template, context: dict[str, Any], contact: Contact) -> str:
        return "".join(self._render_parts_of(template, context, contact))

    def _render_parts_of(
        self, template: Template, context: dict[str, Any], contact: Contact
    ) -> list[str]:
        try:
            return render_limited_parts(template, context, self._limits)
        except Exception as exc:
            raise self._render_error(exc, contact, template.name) from None

    def _render_error(
        self, exc: BaseException, contact: Contact, template: str | None
    ) -> TemplateError:
        name, line = _locate(exc, self._templates_dir)
        if name is None:
            name = template or "<template>"  # no frame in a template: blame the one rendered
        message, hint = _describe(exc)
        if name == "<template>":
            return TemplateError(
                _("contact {id}: {problem} (in the subject)").format(
                    id=contact.id, problem=message
                ),
                path=self._campaign.path,
                field="email.subject",
                hint=hint,
            )
        return TemplateError(_contact_problem(contact, message), path=name, line=line, hint=hint)

    def _unsubscribe_targets(self, contact: Contact, url: str | None = None) -> tuple[str, ...]:
        if url is None:
            url = unsubscribe_url(self._settings, contact)
        mailto = _unsubscribe_mailto(self._settings, contact)
        return tuple(target for target in (url, mailto) if target)

    def _empty(self, contact: Contact, message: str, name: str) -> TemplateError:
        """`message` names the contact as {id}: "contact {id}: the text body renders empty"."""
        return TemplateError(
            message.format(id=contact.id),
            path=name,
            hint=_("check the template's {% if %} conditions"),
        )

    def render_parts(self, contact: Contact, occurrence: Occurrence) -> tuple[str, str, str | None]:
        """The contact's subject, plain text, and HTML with its CSS inlined (or None)."""
        return self._render_parts(
            contact, occurrence, unsubscribe=unsubscribe_url(self._settings, contact)
        )

    def _render_parts(
        self, contact: Contact, occurrence: Occurrence, *, unsubscribe: str | None
    ) -> tuple[str, str, str | None]:
        locale = normalize_locale(contact.locale)
        variant = self._variant(locale)
        if isinstance(variant, TemplateError):
            raise TemplateError(
                _contact_problem(contact, variant.message),
                path=variant.path,
                line=variant.line,
                hint=variant.hint,
            )
        locale = message_locale(
            locale, localized=variant.localized, default_locale=self._settings.default_locale
        )
        context = self._fields.build(contact, occurrence, locale=locale, unsubscribe=unsubscribe)

        subject = self._render(self._subject_for(locale), context, contact).strip()
        if _SUBJECT_BREAKS.search(subject):
            raise TemplateError(
                _("contact {id}: the subject contains a line break or control character").format(
                    id=contact.id
                ),
                path=self._campaign.path,
                field="email.subject",
                hint=_("a subject is one line: check the contact's data and the subject template"),
            )
        subject = " ".join(subject.split())
        if not subject:
            raise TemplateError(
                _("contact {id}: the subject renders empty").format(id=contact.id),
                path=self._campaign.path,
                field="email.subject",
                hint=_("check the subject template"),
            )

        text = self._render(variant.text, context, contact)
        text = _LEADING_BLANK_LINES.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        text = text.rstrip() + "\n"
        if not text.strip():
            raise self._empty(
                contact, _("contact {id}: the text body renders empty"), str(variant.text.name)
            )

        html: str | None = None
        if variant.html is not None:
            html_parts = self._render_parts_of(variant.html, context, contact)
            html = "".join(html_parts)
            if not html.strip():
                raise self._empty(
                    contact, _("contact {id}: the HTML body renders empty"), str(variant.html.name)
                )
            try:
                # Most of the inliner's time is parsing: skip it when there is nothing to inline.
                if _STYLESHEET.search(html):
                    html = self._inliner.inline(html_parts, html)
            except (css_inline.InlineError, ValueError) as exc:
                raise TemplateError(
                    _("contact {id}: the HTML's CSS cannot be inlined: {error}").format(
                        id=contact.id, error=exc
                    ),
                    path=variant.html.name,
                    hint=_("fix the stylesheet"),
                ) from None
        return subject, text, html

    def in_own_language(self, contact: Contact) -> bool:
        """Whether the contact's email is in their language (False: the default language)."""
        locale = normalize_locale(contact.locale)
        variant = self._variant(locale)
        if isinstance(variant, TemplateError):
            return True  # it cannot be made at all; that is reported as a failure
        return speaks(
            locale, localized=variant.localized, default_locale=self._settings.default_locale
        )

    def render(self, contact: Contact, occurrence: Occurrence) -> RenderedEmail:
        """The contact's complete email for this occurrence."""
        if not contact.email:
            raise TemplateError(
                _("contact {id}: no usable email address").format(id=contact.id),
                field="email",
                hint=_("add an email address or send a letter"),
            )
        unsubscribe = unsubscribe_url(self._settings, contact)
        try:
            with render_guard(self._limits):  # one deadline for the whole message
                subject, text, html = self._render_parts(
                    contact, occurrence, unsubscribe=unsubscribe
                )
        except RenderLimitError as exc:  # past the deadline between two templates
            raise TemplateError(
                _contact_problem(contact, str(exc)),
                path=self._campaign.path,
                field="email",
                hint=_describe(exc)[1],
            ) from None
        message_id = message_id_for(
            contact_id=contact.id,
            campaign=self._campaign.name,
            occurrence_key=occurrence.key,
            domain=self._domain,
        )
        targets = self._unsubscribe_targets(contact, unsubscribe)
        to_name = " ".join(n for n in (contact.first_name, contact.last_name) if n)
        try:
            to_addr = check_address(contact.email)
            data = build_message(
                sender=Sender(self._from_addr, name=self._from_name, reply_to=self._reply_to),
                to_name=to_name or None,
                to_addr=to_addr,
                content=Content(subject, text, html),
                date=self._now,
                message_id=message_id,
                list_unsubscribe=targets,
            )
        except ValueError as exc:
            raise TemplateError(
                _contact_problem(contact, str(exc)),
                field="email",
                hint=_("fix the address in contacts.csv or the unsubscribe settings"),
            ) from None
        return RenderedEmail(
            contact_id=contact.id,
            campaign=self._campaign.name,
            occurrence_key=occurrence.key,
            message_id=message_id,
            from_addr=self._from_addr,
            to_addrs=(to_addr,),
            subject=subject,
            data=data,
        )
