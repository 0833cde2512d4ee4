"""Printed letters: envelope profiles, address blocks, the HTML of a letter, and its layout.

A letter is made in two steps. `LetterRenderer.render` (cheap, in the main process) fills the
templates for one contact and checks the postal address; `Typesetter.typeset` (WeasyPrint, in
a worker process for batches) lays the HTML out and then checks, with the real font metrics of
the laid-out page, that the address and return lines lie inside the envelope's windows and
that nothing else on the first page shows through them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import mimetypes
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

import jinja2
from jinja2 import Template
from markupsafe import Markup, escape

from outreach.contacts import Contact
from outreach.i18n import N_, _
from outreach.model.campaigns import Campaign, Occurrence
from outreach.model.config import Letters, Settings
from outreach.model.errors import ConfigError, OutreachError, TemplateError
from outreach.render.templates import (
    MessageContext,
    _describe,
    _locate,
    build_environment,
    message_locale,
    speaks,
    unsubscribe_url,
    variant_names,
)
from outreach.rules.households import Household, name_forms
from outreach.rules.households import template_fields as household_fields
from outreach.rules.locales import normalize_locale
from outreach.rules.postal import (
    AddressParts,
    MissingFieldError,
    address_lines,
    confirmed_by_owner,
    country_name,
    format_address,
    one_line,
    recipient_name,
)
from outreach.rules.sandbox import RenderLimitError, limits_of, render_guard, render_limited

if TYPE_CHECKING:
    from weasyprint import CSS, Document, Page
    from weasyprint.urls import URLFetcher, URLFetcherResponse

PACKAGE_DIR = Path(__file__).resolve().parent
BASE_TEMPLATE = "letter_base.html.j2"
DEFAULT_CSS = PACKAGE_DIR / "letter.css"
_COUNTRY_HINT = N_("use an ISO 3166 alpha-2 code such as ES or DE")
# The address fields a country may require (outreach.rules.postal), as a problem names them.
_ADDRESS_FIELDS = {
    "street": N_("street"),
    "city": N_("city"),
    "postal_code": N_("postal code"),
    "region": N_("region"),
}

MM_PER_INCH = 25.4
MM_PER_PX = MM_PER_INCH / 96  # WeasyPrint lays out in CSS pixels
MM_PER_PT = MM_PER_INCH / 72

# Type metrics the default stylesheet uses; the line capacity of a window follows from them.
ADDRESS_LINE_MM = 12 * MM_PER_PT  # 10 pt type on 12 pt lines
RETURN_BLOCK_LINE_MM = 9.5 * MM_PER_PT  # the #10 return window's 8 pt lines
PAD_TOP_MM = 1.0  # space above the first address line inside its zone
PAD_BOTTOM_MM = 0.5
PAD_RIGHT_MM = 1.0
# A laid-out line must keep this far inside its zone: envelopes let the sheet move a little.
SAFETY_MM = 0.4
# Where the first page's text starts below the lowest window.
BODY_GAP_MM = 6.0
LETTERHEAD_GAP_MM = 20.0
LETTERHEAD_MIN_WIDTH_MM = 45.0
MARK_LEFT_MM = 4.0


class AddressError(OutreachError):
    """A contact's postal address is incomplete or does not fit the envelope window."""


class HouseholdError(AddressError):
    """A household's names fit the envelope window in no form: its members go one by one."""


@dataclass(frozen=True, slots=True)
class _Where:
    path: Path
    line: int


# --- envelope profiles ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle on the sheet in millimetres, from the sheet's top-left corner."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def inset(self, margin: float) -> Box:
        """The box shrunk by `margin` on every side."""
        return Box(
            self.left + margin,
            self.top + margin,
            self.width - 2 * margin,
            self.height - 2 * margin,
        )

    def contains(self, left: float, top: float, right: float, bottom: float) -> bool:
        """Whether the rectangle lies entirely inside this box."""
        return (
            left >= self.left and top >= self.top and right <= self.right and bottom <= self.bottom
        )

    def overlaps(self, left: float, top: float, right: float, bottom: float) -> bool:
        """Whether the rectangle and this box share any area."""
        return left < self.right and right > self.left and top < self.bottom and bottom > self.top


@dataclass(frozen=True, slots=True)
class EnvelopeProfile:
    """A sheet and the envelope windows it is folded into."""

    name: str
    page_width_mm: float
    page_height_mm: float
    windows: tuple[Box, ...]  # what shows through the envelope (DIN: one field; #10: two)
    return_zone: Box  # where the sender's return address goes
    address_zone: Box  # where the recipient's lines go
    text_indent_mm: float  # text starts this far inside the zones
    return_style: Literal["line", "block"]  # one line at the zone's foot, or a top-aligned block
    fold_marks_mm: tuple[float, ...]
    punch_mark_mm: float | None
    margins_mm: tuple[float, float, float, float]  # top, right, bottom, left of the body text
    # The default stylesheet's line pitch in the two zones (letter.css), and the space above
    # the first address line inside its zone.
    address_line_mm: float = ADDRESS_LINE_MM
    return_line_mm: float = RETURN_BLOCK_LINE_MM
    pad_top_mm: float = PAD_TOP_MM

    @property
    def address_capacity(self) -> int:
        """How many address lines of the default type fit the address zone."""
        usable = self.address_zone.height - self.pad_top_mm - PAD_BOTTOM_MM
        return max(0, math.floor(usable / self.address_line_mm + 1e-9))

    @property
    def return_capacity(self) -> int:
        """How many return-address lines fit the return zone."""
        if self.return_style == "line":
            return 1
        usable = self.return_zone.height - PAD_TOP_MM - PAD_BOTTOM_MM
        return max(0, math.floor(usable / self.return_line_mm + 1e-9))


def _din5008(name: str, *, top: float, folds: tuple[float, float]) -> EnvelopeProfile:
    # DIN 5008: an 85 × 45 mm address field 20 mm from the left edge: a 17.7 mm zone for the
    # return address and notes above a 27.3 mm zone for the recipient. Text is indented 5 mm.
    field = Box(20.0, top, 85.0, 45.0)
    return EnvelopeProfile(
        name=name,
        page_width_mm=210.0,
        page_height_mm=297.0,
        windows=(field,),
        return_zone=Box(20.0, top, 85.0, 17.7),
        address_zone=Box(20.0, top + 17.7, 85.0, 27.3),
        text_indent_mm=5.0,
        return_style="line",
        fold_marks_mm=folds,
        punch_mark_mm=148.5,
        margins_mm=(20.0, 20.0, 20.0, 25.0),
    )


def _inches(*values: float) -> tuple[float, ...]:
    return tuple(round(v * MM_PER_INCH, 4) for v in values)


def _us10() -> EnvelopeProfile:
    # A US Letter sheet tri-folded into a #10 double-window envelope (the published figures):
    # recipient window 4 × 1 in, 0.625 in from the left, top 2.125 in from the sheet's top;
    # return window 3.25 × 0.875 in, 0.625 in from the left, top 0.875 in.
    width, height = _inches(8.5, 11)
    recipient = Box(*_inches(0.625, 2.125, 4, 1))
    sender = Box(*_inches(0.625, 0.875, 3.25, 0.875))
    margin = round(0.75 * MM_PER_INCH, 4)
    return EnvelopeProfile(
        name="us10",
        page_width_mm=width,
        page_height_mm=height,
        windows=(sender, recipient),
        return_zone=sender,
        address_zone=recipient,
        text_indent_mm=round(0.125 * MM_PER_INCH, 4),
        return_style="block",
        fold_marks_mm=(),
        punch_mark_mm=None,
        margins_mm=(margin, margin, margin, margin),
    )


# PostalMethods' published safe zones on a Letter sheet for its #10 double-window envelope
# (inches: left, top, width, height): what shows through its windows however the sheet
# shifts in the envelope.
US10_RETURN_SAFE = Box(*_inches(0.5, 0.5, 3.5, 0.792))
US10_RECIPIENT_SAFE = Box(*_inches(0.5, 2.042, 3.5, 0.875))
US_CLEARANCE_MM = 0.125 * MM_PER_INCH  # USPS: ⅛ in between the address and the window's edges


def _intersect(a: Box, b: Box) -> Box:
    left, top = max(a.left, b.left), max(a.top, b.top)
    return Box(left, top, min(a.right, b.right) - left, min(a.bottom, b.bottom) - top)


def _in_safe_zones(profile: EnvelopeProfile) -> EnvelopeProfile:
    """The #10 profile with its text kept inside the safe zones, and the recipient ⅛ in
    inside its window: smaller type (9 pt on 9.3 pt lines, 7.5 pt on 8.5 pt for the return
    block, as letter.css sets) keeps five address lines and three return lines there."""
    sender, recipient = profile.windows
    # The window check keeps lines SAFETY_MM inside a zone: here the clearance is that margin.
    clear = US_CLEARANCE_MM - SAFETY_MM
    sides = Box(sender.left + clear, sender.top, sender.width - 2 * clear, sender.height)
    return dataclasses.replace(
        profile,
        return_zone=_intersect(sides, US10_RETURN_SAFE),
        address_zone=_intersect(recipient.inset(clear), US10_RECIPIENT_SAFE.inset(-SAFETY_MM)),
        text_indent_mm=SAFETY_MM + 0.2,
        address_line_mm=9.3 * MM_PER_PT,
        return_line_mm=8.5 * MM_PER_PT,
        # Lines of 9 pt type on 9.3 pt: the type reaches 0.6 pt above its line's box.
        pad_top_mm=SAFETY_MM + 0.6 * MM_PER_PT,
    )


ENVELOPES: dict[str, EnvelopeProfile] = {
    # Fold marks: form B at 105 and 210 mm, form A at 87 and 192 mm; hole punch at 148.5 mm.
    "din5008-b": _din5008("din5008-b", top=45.0, folds=(105.0, 210.0)),
    "din5008-a": _din5008("din5008-a", top=27.0, folds=(87.0, 192.0)),
    "us10": _in_safe_zones(_us10()),
}


def envelope_profile(letters: Letters) -> EnvelopeProfile:
    """The profile config `letters.envelope` names (`custom` is built from `letters.custom`)."""
    if letters.envelope != "custom":
        return ENVELOPES[letters.envelope]
    custom = letters.custom
    if custom is None:
        raise ConfigError(
            _("letters.envelope custom needs letters.custom"),
            field="letters.custom",
            hint=_("give the page and window dimensions in millimetres"),
        )
    window = Box(
        custom.window_left_mm,
        custom.window_top_mm,
        custom.window_width_mm,
        custom.window_height_mm,
    )
    if window.right > custom.page_width_mm or window.bottom > custom.page_height_mm:
        raise ConfigError(
            _("the window does not fit on the page"),
            field="letters.custom",
            hint=_("check the window's position and size against the page size"),
        )
    # A one-line return zone on top, as in DIN 5008; the rest of the window is the address.
    return_height = round(min(8.0, window.height * 0.25), 2)
    indent = 3.0
    left_margin = window.left + indent
    if left_margin > custom.page_width_mm / 2 or left_margin < 12.0:
        left_margin = 20.0
    return EnvelopeProfile(
        name="custom",
        page_width_mm=custom.page_width_mm,
        page_height_mm=custom.page_height_mm,
        windows=(window,),
        return_zone=Box(window.left, window.top, window.width, return_height),
        address_zone=Box(
            window.left, window.top + return_height, window.width, window.height - return_height
        ),
        text_indent_mm=indent,
        return_style="line",
        fold_marks_mm=(),
        punch_mark_mm=None,
        margins_mm=(20.0, 20.0, 20.0, left_margin),
    )


def _mm(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "mm"


def _place(box: Box, margins: tuple[float, float, float, float]) -> str:
    # Absolutely positioned boxes on the first page are placed relative to its page area.
    top, _right, _bottom, left = margins
    return (
        f"position: absolute; left: {_mm(box.left - left)}; top: {_mm(box.top - top)}; "
        f"width: {_mm(box.width)}; height: {_mm(box.height)};"
    )


def geometry_css(profile: EnvelopeProfile) -> str:
    """The stylesheet that puts the page, the windows' text and the marks where they belong."""
    top, right, bottom, left = profile.margins_mm
    width, height = profile.page_width_mm, profile.page_height_mm
    indent = profile.text_indent_mm
    rules = [
        f"@page {{ size: {_mm(width)} {_mm(height)}; "
        f"margin: {_mm(top)} {_mm(right)} {_mm(bottom)} {_mm(left)}; }}",
        f".return-address {{ {_place(profile.return_zone, profile.margins_mm)} "
        "margin: 0; padding: 0; }",
        f".recipient-address {{ {_place(profile.address_zone, profile.margins_mm)} "
        f"margin: 0; padding: {_mm(profile.pad_top_mm)} {_mm(PAD_RIGHT_MM)} {_mm(PAD_BOTTOM_MM)} "
        f"{_mm(indent)}; box-sizing: border-box; }}",
    ]
    if profile.return_style == "line":
        rules.append(
            f".return-text {{ position: absolute; left: {_mm(indent)}; "
            f"bottom: {_mm(PAD_BOTTOM_MM + 0.3)}; }}"
        )
    else:
        rules.append(
            f".return-text {{ position: absolute; left: {_mm(indent)}; top: {_mm(PAD_TOP_MM)}; }}"
        )
    for number, mark_top in enumerate(profile.fold_marks_mm, start=1):
        rules.append(
            f".mark-fold-{number} {{ position: absolute; left: {_mm(MARK_LEFT_MM - left)}; "
            f"top: {_mm(mark_top - top)}; width: 5mm; height: 0; }}"
        )
    if profile.punch_mark_mm is not None:
        rules.append(
            f".mark-punch {{ position: absolute; left: {_mm(MARK_LEFT_MM - left)}; "
            f"top: {_mm(profile.punch_mark_mm - top)}; width: 8mm; height: 0; }}"
        )
    windows_right = max(w.right for w in profile.windows)
    windows_left = min(w.left for w in profile.windows)
    windows_top = min(w.top for w in profile.windows)
    windows_bottom = max(w.bottom for w in profile.windows)
    beside_right = width - right - (windows_right + LETTERHEAD_GAP_MM)
    beside_left = windows_left - LETTERHEAD_GAP_MM - left
    letterhead_top = min(12.0, top)
    if max(beside_right, beside_left) >= LETTERHEAD_MIN_WIDTH_MM:
        if beside_right >= beside_left:
            box = Box(windows_right + LETTERHEAD_GAP_MM, letterhead_top, beside_right, 0)
        else:
            box = Box(left, letterhead_top, beside_left, 0)
        rules.append(
            f".letterhead {{ position: absolute; left: {_mm(box.left - left)}; "
            f"top: {_mm(box.top - top)}; width: {_mm(box.width)}; }}"
        )
    elif windows_top - letterhead_top >= 18.0:
        rules.append(
            f".letterhead {{ position: absolute; left: 0; top: {_mm(letterhead_top - top)}; "
            f"width: {_mm(width - left - right)}; height: {_mm(windows_top - letterhead_top - 3)}; "
            "overflow: hidden; }"
        )
    else:
        rules.append(".letterhead { display: none; }")
    rules.append(
        f".first-page-top {{ height: {_mm(max(0.0, windows_bottom + BODY_GAP_MM - top))}; "
        "margin: 0; }"
    )
    return "\n".join(rules) + "\n"


# --- the page layout handed to the typesetter ------------------------------------------------


@dataclass(frozen=True, slots=True)
class LetterLayout:
    """What laying a letter out needs beside its HTML: one per renderer, shared by its letters."""

    key: str  # identifies the stylesheets and folders, for caches in worker processes
    envelope: str
    stylesheets: tuple[str, ...]  # geometry, the default look, the user's (letters.css)
    base_dir: Path  # relative URLs in the letter resolve here (the templates folder)
    allowed_dirs: tuple[Path, ...]  # the only folders WeasyPrint may read files from
    windows: tuple[Box, ...]
    address_check: Box  # every recipient line must lie inside this box
    return_check: Box  # every return-address line must lie inside this box
    page_width_mm: float
    page_height_mm: float
    pdf_variant: str | None = None  # config letters.pdf_variant ("pdf/a-2b")


@dataclass(frozen=True, slots=True)
class RenderedLetter:
    """One letter for one contact and occurrence: its HTML and the address on its envelope."""

    contact_id: str
    campaign: str
    occurrence_key: str
    html: str
    name: str
    address_lines: tuple[str, ...]
    postal_code: str  # "" where the country has none
    country: str
    foreign: bool  # the country differs from the sender's (printers sort these apart)
    layout: LetterLayout
    covers: tuple[str, ...] = ()  # a household's letter: every contact it goes to
    # The address data rejects its postal code, but the owner confirmed the address.
    address_confirmed: bool = False


# --- rendering the HTML ----------------------------------------------------------------------


class LetterRenderer:
    """Renders one campaign's letter for many contacts; templates compile once per locale."""

    def __init__(
        self, *, settings: Settings, campaign: Campaign, today: date, now: datetime
    ) -> None:
        if campaign.letter is None:
            raise TemplateError(
                _("the campaign has no letter section"),
                path=campaign.path,
                field="letter",
                hint=_("add letter: template, or send it by email"),
            )
        self._settings = settings
        self._limits = limits_of(settings)
        self._campaign = campaign
        self._spec = campaign.letter
        self._today = today
        self._now = now
        self._templates_dir = settings.templates_dir.resolve()
        self._env = build_environment(templates_dir=self._templates_dir, html=True)
        self.profile = envelope_profile(settings.letters)
        sender = settings.sender
        self._home_country = (sender.address.country or settings.contacts.default_country).upper()
        self._home_locale = settings.locale
        self._subject: Template | None = None
        if self._spec.subject:
            try:
                # Plain text: the layout escapes it once when it places it on the page.
                text_env = build_environment(templates_dir=self._templates_dir, html=False)
                self._subject = text_env.from_string(self._spec.subject)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    _("subject template syntax error: {error}").format(error=exc.message),
                    path=campaign.path,
                    field="letter.subject",
                    hint=_("fix the subject in the campaign file"),
                ) from None
        self._base = self._load_base()
        self._sender_lines = self._format_sender()
        self._return_line = one_line(settings.letters.return_address) or " · ".join(
            self._sender_lines
        )
        self._letterhead_lines = self._letterhead()
        # A return block (US envelopes) is the chosen line, or the sender's lines.
        custom = settings.letters.return_address
        self._return_block = [one_line(custom)] if custom else self._sender_lines
        self._signature_lines = address_lines(sender.signature) or [one_line(sender.name)]
        self._signature_image, self._signature_error = self._find_signature()
        self.layout = self._make_layout()
        self._fields = MessageContext(settings=settings, campaign=campaign, today=today)
        self._bodies: dict[str, Template | TemplateError] = {}
        self._localized: dict[str, bool] = {}  # locale → its body is a variant, not the default
        body = self._body(settings.default_locale)
        if isinstance(body, TemplateError):
            raise body

    # --- set-up --------------------------------------------------------------------------

    def _load_base(self) -> Template:
        own = self._templates_dir / BASE_TEMPLATE
        try:
            if own.is_file():
                return self._env.get_template(BASE_TEMPLATE)
            source = (PACKAGE_DIR / BASE_TEMPLATE).read_text(encoding="utf-8")
            return self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                _("template syntax error: {error}").format(error=exc.message),
                path=own,
                line=exc.lineno,
                hint=_("fix the letter layout"),
            ) from None

    def _format_sender(self) -> list[str]:
        sender = self._settings.sender
        address = sender.address
        try:
            lines = format_address(
                name_lines=[one_line(sender.name)],
                address=AddressParts(
                    street=address.street,
                    street2=address.street2,
                    postal_code=address.postal_code,
                    city=address.city,
                    region=address.region,
                    country=self._home_country,
                ),
                home_country=self._home_country,
                locale=self._home_locale,
            )
        except MissingFieldError as exc:
            raise ConfigError(
                _("the sender's address has no {field}").format(field=_address_field(exc.field)),
                path=self._settings.root / "config.yaml",
                field=f"sender.address.{exc.field}",
                hint=_("letters need a complete return address"),
            ) from None
        except ValueError as exc:
            raise ConfigError(
                str(exc),
                path=self._settings.root / "config.yaml",
                field="sender.address.country",
                hint=_(_COUNTRY_HINT),
            ) from None
        if self.profile.return_style == "block" and len(lines) > self.profile.return_capacity:
            raise ConfigError(
                _(
                    "the sender's address has {n} lines; the {envelope} return window holds "
                    "{capacity}"
                ).format(
                    n=len(lines),
                    envelope=self.profile.name,
                    capacity=self.profile.return_capacity,
                ),
                path=self._settings.root / "config.yaml",
                field="sender.address",
                hint=_("shorten the return address"),
            )
        return list(lines)

    def _letterhead(self) -> list[str]:
        sender = self._settings.sender
        lines = list(self._sender_lines[1:])
        lines.extend(one_line(v) for v in (sender.phone, sender.email, sender.website) if v)
        return lines

    def _find_signature(self) -> tuple[str | None, TemplateError | None]:
        name = self._settings.sender.signature_image
        if not name:
            return None, None
        path = (self._templates_dir / name).resolve()
        if not path.is_relative_to(self._templates_dir):
            return None, TemplateError(
                _("the signature image {name} is outside the templates folder").format(
                    name=repr(name)
                ),
                field="sender.signature_image",
                hint=_("put the image in the templates folder and give its name"),
            )
        if not path.is_file():
            return None, TemplateError(
                _("the signature image {name} is missing").format(name=repr(name)),
                path=path,
                field="sender.signature_image",
                hint=_("put the image in the templates folder or remove sender.signature_image"),
            )
        return path.relative_to(self._templates_dir).as_posix(), None

    def _own_css(self) -> list[str]:
        """The stylesheet config letters.css names, if any: its own sheet (not appended to
        ours), so its @import rules count."""
        own_css = self._settings.letters.css
        if not own_css:
            return []
        path = (self._templates_dir / own_css).resolve()
        if not path.is_relative_to(self._templates_dir) or not path.is_file():
            raise ConfigError(
                _("the letter stylesheet {name} is not in the templates folder").format(
                    name=repr(own_css)
                ),
                path=self._settings.root / "config.yaml",
                field="letters.css",
                hint=_("put the stylesheet in the templates folder and give its name"),
            )
        return [path.read_text(encoding="utf-8")]

    def _make_layout(self) -> LetterLayout:
        css_parts = [geometry_css(self.profile), DEFAULT_CSS.read_text(encoding="utf-8")]
        css_parts += self._own_css()
        allowed = (self._templates_dir, PACKAGE_DIR)
        key = hashlib.sha256("\x00".join([*css_parts, *map(str, allowed)]).encode()).hexdigest()
        profile = self.profile
        layout = LetterLayout(
            key=key,
            envelope=profile.name,
            stylesheets=tuple(css_parts),
            base_dir=self._templates_dir,
            allowed_dirs=allowed,
            windows=profile.windows,
            address_check=profile.address_zone.inset(SAFETY_MM),
            return_check=profile.return_zone.inset(SAFETY_MM),
            page_width_mm=profile.page_width_mm,
            page_height_mm=profile.page_height_mm,
            pdf_variant=self._settings.letters.pdf_variant,
        )
        # Parse the stylesheet once now, so a stylesheet that fetches what it may not is a
        # problem of the campaign, reported before any letter.
        typesetter().stylesheets(layout)
        return layout

    # --- templates -----------------------------------------------------------------------

    def _body(self, locale: str) -> Template | TemplateError:
        key = normalize_locale(locale)
        cached = self._bodies.get(key)
        if cached is None:
            cached = self._load_body(key)
            self._bodies[key] = cached
        return cached

    def _load_body(self, locale: str) -> Template | TemplateError:
        name = self._spec.template
        names = variant_names(name, locale)
        for candidate in names:
            try:
                template = self._env.get_template(candidate)
                self._localized[locale] = candidate != names[-1]
                return template
            except jinja2.TemplateNotFound as exc:
                if exc.name != candidate:  # a missing {% include %} is an error, not a variant
                    return self._template_error(exc, None)
            except jinja2.TemplateSyntaxError as exc:
                return self._template_error(exc, None)
        return TemplateError(
            _("template not found"),
            path=self._templates_dir / name,
            hint=_("create it or fix the file name in {file}").format(
                file=self._campaign.path.name
            ),
        )

    def _template_error(self, exc: BaseException, contact: Contact | None) -> TemplateError:
        where, line = _locate(exc, self._templates_dir)
        message, hint = _describe(exc)
        who = contact.id if contact is not None else ""
        if where == "<template>":
            return TemplateError(
                _said_of(who, _("{problem} (in the subject)").format(problem=message)),
                path=self._campaign.path,
                field="letter.subject",
                hint=hint,
            )
        return TemplateError(_said_of(who, message), path=where, line=line, hint=hint)

    # --- per contact ---------------------------------------------------------------------

    def address(self, contact: Contact, *, name: str | None = None) -> tuple[str, ...]:
        """The contact's address lines for the envelope window (`name`: a household's, on the
        name line); AddressError if it cannot be."""
        where = _Where(path=self._settings.contacts_path, line=contact.line)
        name = name or recipient_name(contact)
        if not name:
            raise AddressError(
                _("contact {id}: no name to address the letter to").format(id=contact.id),
                field="last_name",
                hint=_("add the contact's name in contacts.csv"),
                path=where.path,
                line=where.line,
            )
        try:
            lines = format_address(
                name_lines=address_lines(name),
                address=AddressParts(
                    street=contact.street,
                    street2=contact.street2,
                    postal_code=contact.postal_code,
                    city=contact.city,
                    region=contact.region,
                    country=contact.country,
                ),
                home_country=self._home_country,
                locale=self._home_locale,
            )
        except MissingFieldError as exc:
            raise AddressError(
                _("contact {id}: the postal address for {country} has no {field}").format(
                    id=contact.id, country=contact.country, field=_address_field(exc.field)
                ),
                field=exc.field,
                hint=_("complete the address in contacts.csv or send an email"),
                path=where.path,
                line=where.line,
            ) from None
        except ValueError as exc:
            raise AddressError(
                _said_of(contact.id, str(exc)),
                field="country",
                hint=_(_COUNTRY_HINT),
                path=where.path,
                line=where.line,
            ) from None
        capacity = self.profile.address_capacity
        if len(lines) > capacity:
            raise AddressError(
                _(
                    "contact {id}: the address has {n} lines; the {envelope} envelope window "
                    "holds {capacity}"
                ).format(
                    id=contact.id, n=len(lines), envelope=self.profile.name, capacity=capacity
                ),
                field="street",
                hint=_("shorten the address in contacts.csv"),
                path=where.path,
                line=where.line,
            )
        return lines

    def in_own_language(self, contact: Contact) -> bool:
        """Whether the contact's letter is in their language (False: the default language)."""
        locale = normalize_locale(contact.locale)
        if isinstance(self._body(locale), TemplateError):
            return True  # it cannot be made at all; that is reported as a failure
        return speaks(
            locale,
            localized=self._localized.get(locale, False),
            default_locale=self._settings.default_locale,
        )

    def render(
        self, contact: Contact, occurrence: Occurrence, *, household: Household | None = None
    ) -> RenderedLetter:
        """The contact's letter as HTML, with its address checked; raises for this contact.
        With a `household` (whose first contact is `contact`), one letter to all of them."""
        try:
            with render_guard(self._limits):  # one deadline for the whole letter
                return self._render_letter(contact, occurrence, household)
        except RenderLimitError as exc:  # past the deadline between two templates
            raise TemplateError(
                f"contact {contact.id}: {exc}",
                path=self._campaign.path,
                field="letter",
                hint=_describe(exc)[1],
            ) from None

    def _render_letter(
        self, contact: Contact, occurrence: Occurrence, household: Household | None
    ) -> RenderedLetter:
        household = household or Household((contact,))
        self._check_signature(contact)
        body, locale = self._body_for(contact)
        family = household_fields(household, locale=locale)
        lines, family["name"] = self._addressee(contact, household, locale=locale)
        # The same context as an email's, so one template language serves both channels.
        context = self._fields.build(
            contact, occurrence, locale=locale, unsubscribe=unsubscribe_url(self._settings, contact)
        )
        context["household"] = family
        try:
            body_html = render_limited(body, context, self._limits)
            subject = (
                " ".join(render_limited(self._subject, context, self._limits).split())
                if self._subject
                else ""
            )
        except Exception as exc:
            raise self._template_error(exc, contact) from None
        if not body_html.strip():
            raise TemplateError(
                _("contact {id}: the letter renders empty").format(id=contact.id),
                path=body.name,
                hint=_("check the template's {% if %} conditions"),
            )
        foreign = contact.country.upper() != self._home_country
        context["letter"] = {
            "envelope": self.profile.name,
            "lang": locale.replace("_", "-"),
            "title": f"{self._campaign.name} — {contact.id}",
            "marks": self._marks(),
            "name": family["name"],  # continuation pages name the recipient
            "return_lines": self._return_lines(foreign=foreign),
            "address_lines": list(lines),
            "letterhead_lines": self._letterhead_lines,
            "place": one_line(self._settings.sender.address.city),
            "subject": subject,
            "body": Markup(body_html),  # noqa: S704 - rendered by the autoescaping sandbox
            "signature_image": self._signature_image or "",
            "signature_lines": self._signature_lines,
        }
        try:
            html = render_limited(self._base, context, self._limits)
        except Exception as exc:
            raise self._template_error(exc, contact) from None
        return RenderedLetter(
            contact_id=contact.id,
            campaign=self._campaign.name,
            occurrence_key=occurrence.key,
            html=html,
            name=lines[0],
            address_lines=lines,
            postal_code=one_line(contact.postal_code),
            country=contact.country.upper(),
            foreign=foreign,
            layout=self.layout,
            covers=household.ids,
            address_confirmed=confirmed_by_owner(contact) is not None,
        )

    def _check_signature(self, contact: Contact) -> None:
        error = self._signature_error
        if error is not None:
            raise TemplateError(
                f"contact {contact.id}: {error.message}",
                path=error.path,
                field=error.field,
                hint=error.hint,
            )

    def _body_for(self, contact: Contact) -> tuple[Template, str]:
        """The contact's letter template and the locale the letter is written in."""
        locale = normalize_locale(contact.locale)
        body = self._body(locale)
        if isinstance(body, TemplateError):
            raise TemplateError(
                f"contact {contact.id}: {body.message}",
                path=body.path,
                line=body.line,
                hint=body.hint,
            )
        locale = message_locale(
            locale,
            localized=self._localized.get(locale, False),
            default_locale=self._settings.default_locale,
        )
        return body, locale

    def _return_lines(self, *, foreign: bool) -> list[str]:
        if not foreign:
            if self.profile.return_style == "line":
                return [self._return_line]
            return list(self._return_block)
        # A letter abroad must be able to come back: the return address names the country,
        # on its last line (a line more would leave the #10 return window's safe zone).
        home = country_name(self._home_country, locale=self._home_locale)
        if self.profile.return_style == "line":
            return [f"{self._return_line} · {home}"]
        return [*self._return_block[:-1], f"{self._return_block[-1]} · {home}"]

    def _lines_after_name(self, contact: Contact) -> int:
        """How many address lines follow the name (street, town, country)."""
        return len(self.address(contact, name=".")) - 1

    def _addressee(
        self, contact: Contact, household: Household, *, locale: str
    ) -> tuple[tuple[str, ...], str]:
        """The address lines and the name they start with; a household's names in the first
        form that fits the window ("Carmen Ruiz y Luis Gil", "Familia Ruiz", two lines), else
        HouseholdError."""
        if len(household.contacts) == 1:
            return self.address(contact), recipient_name(contact)
        room = self.profile.address_capacity - self._lines_after_name(contact)
        forms = [f for f in name_forms(household.contacts, locale=locale) if len(f) <= room]
        candidates = [line for form in forms for line in form]
        fits = typesetter().lines_fit(self.layout, candidates) if candidates else []
        start = 0
        for form in forms:
            if all(fits[start : start + len(form)]):
                return self.address(contact, name="\n".join(form)), " ".join(form)
            start += len(form)
        raise HouseholdError(
            _(
                "contact {id}: the names of the {n} people at this address fit the {envelope} "
                "envelope window in no form"
            ).format(id=contact.id, n=len(household.contacts), envelope=self.profile.name),
            hint=_("each of them gets a letter of their own"),
        )

    def _marks(self) -> list[str]:
        marks = [f"mark-fold-{n}" for n in range(1, len(self.profile.fold_marks_mm) + 1)]
        if self.profile.punch_mark_mm is not None:
            marks.append("mark-punch")
        return marks


# --- layout with WeasyPrint ------------------------------------------------------------------


class FetchRefusedError(Exception):
    """The letter asked WeasyPrint for something outside the allowed folders."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class FetchFailedError(Exception):
    """An allowed file could not be read."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


def _weasyprint() -> Any:
    # Imported on first use: it takes most of a second, and only letters need it. It warns at
    # import when libharfbuzz-subset is missing; `outreach validate` reports that instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import weasyprint
        import weasyprint.text.fonts
        import weasyprint.urls
    return weasyprint


def _fetcher(allowed_dirs: tuple[Path, ...]) -> URLFetcher:
    """A WeasyPrint URL fetcher that serves files under `allowed_dirs` and data: URIs only."""
    urls = _weasyprint().urls
    base: Any = urls.URLFetcher

    class SafeFetcher(base):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            scheme = url.partition(":")[0].lower()
            if scheme == "data":  # inline bytes: nothing is fetched
                return super().fetch(url, headers)
            if scheme != "file":
                raise FetchRefusedError(url)
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise FetchRefusedError(url)
            path = Path(unquote(parts.path)).resolve()
            if not any(path.is_relative_to(folder) for folder in allowed_dirs):
                raise FetchRefusedError(url)
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                raise FetchFailedError(url, _("file not found")) from None
            except OSError as exc:
                raise FetchFailedError(url, exc.strerror or type(exc).__name__) from None
            return urls.URLFetcherResponse(url, body=body, headers={"Content-Type": mime})

    # fail_on_errors: a refused or failed fetch stops the letter instead of leaving a hole.
    fetcher: URLFetcher = SafeFetcher(fail_on_errors=True)
    return fetcher


class _ErrorLog(logging.Handler):
    """Collects WeasyPrint's error records (an unreadable image, a broken stylesheet)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _weasyprint_errors() -> Iterator[_ErrorLog]:
    log = _ErrorLog()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(log)
    try:
        yield log
    finally:
        logger.removeHandler(log)


def _describe_url(url: str, base_dir: Path) -> str:
    if url.startswith("file:"):
        path = Path(unquote(urlsplit(url).path))
        if path.is_relative_to(base_dir):
            return path.relative_to(base_dir).as_posix()
    return url if len(url) <= 120 else url[:117] + "..."


def _address_field(field: str) -> str:
    """A missing address field in words ("postal code")."""
    word = _ADDRESS_FIELDS.get(field)
    return _(word) if word is not None else field.replace("_", " ")


def _said_of(who: str, problem: str) -> str:
    """`problem` about contact `who` ("contact c001: ..."), or as it is when `who` is ""."""
    return _("contact {id}: {problem}").format(id=who, problem=problem) if who else problem


def _fetch_error(exc: BaseException, *, who: str, layout: LetterLayout) -> TemplateError:
    """`who`: the contact's id, "" for the stylesheets every letter shares."""
    cause = exc.__cause__
    if isinstance(cause, FetchRefusedError):
        refused = _(
            "the letter tries to load {file}, which is outside the templates folder (refused)"
        ).format(file=_describe_url(cause.url, layout.base_dir))
        return TemplateError(
            _said_of(who, refused),
            path=layout.base_dir,
            hint=_("letters may only use files in the templates folder: copy it there"),
        )
    if isinstance(cause, FetchFailedError):
        what = f"{_describe_url(cause.url, layout.base_dir)}: {cause.reason}"
    else:  # a malformed data: URI, say
        what = f"{exc}: {cause}" if cause is not None else str(exc)
    return TemplateError(
        _said_of(who, _("the letter cannot load {file}").format(file=what)),
        path=layout.base_dir,
        hint=_("check the file name in the template or the config"),
    )


_TEXT_SNIPPET = 40


class Typesetter:
    """Lays letters out with WeasyPrint and checks their windows; one per process, reused."""

    def __init__(self) -> None:
        weasyprint = _weasyprint()
        self._wp = weasyprint
        self._font_config = weasyprint.text.fonts.FontConfiguration()
        self._styles: dict[str, tuple[list[CSS], URLFetcher]] = {}
        self._blank: dict[str, Document] = {}
        # WeasyPrint's image cache: a signature image is decoded once, not once per letter.
        self._images: dict[str, Any] = {}

    def stylesheets(self, layout: LetterLayout) -> tuple[list[CSS], URLFetcher]:
        """The parsed stylesheets and URL fetcher of a layout (parsed once per process)."""
        cached = self._styles.get(layout.key)
        if cached is None:
            fetcher = _fetcher(layout.allowed_dirs)
            fatal = self._wp.urls.FatalURLFetchingError
            with _weasyprint_errors() as log:
                try:
                    sheets = [
                        self._wp.CSS(
                            string=text,
                            base_url=_base_url(layout.base_dir),
                            url_fetcher=fetcher,
                            font_config=self._font_config,
                        )
                        for text in layout.stylesheets
                    ]
                except fatal as exc:
                    raise _fetch_error(exc, who="", layout=layout) from None
            if log.messages:
                raise TemplateError(
                    _("the letter stylesheet: {problem}").format(problem=log.messages[0]),
                    path=layout.base_dir,
                    hint=_("fix the stylesheet named in config letters.css"),
                )
            cached = (sheets, fetcher)
            self._styles[layout.key] = cached
        return cached

    def typeset(self, letter: RenderedLetter) -> Document:
        """The laid-out letter; TemplateError or AddressError if it cannot be printed right."""
        layout = letter.layout
        sheets, fetcher = self.stylesheets(layout)
        who = letter.contact_id
        with _weasyprint_errors() as log:
            try:
                document: Document = self._wp.HTML(
                    string=letter.html, base_url=_base_url(layout.base_dir), url_fetcher=fetcher
                ).render(**self._options(layout, sheets), cache=self._images)
            except self._wp.urls.FatalURLFetchingError as exc:
                raise _fetch_error(exc, who=who, layout=layout) from None
        if log.messages:
            raise TemplateError(
                _said_of(who, log.messages[0]),
                path=layout.base_dir,
                hint=_("check the images and stylesheets the letter uses"),
            )
        for page in document.pages:
            for kind, target, _rect, _anchor in page.links:
                if kind == "attachment":  # fetched only when the PDF is written
                    raise TemplateError(
                        _said_of(
                            who,
                            _(
                                "the letter attaches {file}; letters cannot carry attachments"
                            ).format(file=target),
                        ),
                        path=layout.base_dir,
                        hint=_("remove the rel=attachment link"),
                    )
        check_windows(letter, document)
        return document

    def lines_fit(self, layout: LetterLayout, lines: Sequence[str]) -> list[bool]:
        """Whether each line, set as an address line, fits the width of the address window
        (laid out with the letter's own stylesheets, so its fonts and sizes count)."""
        sheets, fetcher = self.stylesheets(layout)
        rows = "".join(f'<div class="line">{escape(line)}</div>' for line in lines)
        html = (
            f'<!DOCTYPE html><html><body class="envelope-{escape(layout.envelope)}">'
            f'<div class="recipient-address" id="recipient-address">{rows}</div></body></html>'
        )
        document = self._wp.HTML(
            string=html, base_url=_base_url(layout.base_dir), url_fetcher=fetcher
        ).render(stylesheets=sheets, font_config=self._font_config)
        # A line is one row of text boxes (fonts may split it): rows in order, by their top.
        rows_at: dict[float, list[_Rect]] = {}
        for _text, rect, _box in page_text_boxes(document.pages[0]):
            rows_at.setdefault(round(rect[1], 2), []).append(rect)
        box = layout.address_check
        found = [rows_at[top] for top in sorted(rows_at)]
        if len(found) != len(lines):  # a line did not lay out as one row: never trust it
            return [False] * len(lines)
        return [all(r[0] >= box.left and r[2] <= box.right for r in row) for row in found]

    def blank_page(self, layout: LetterLayout) -> Page:
        """An empty page of the layout's size (the back of a sheet in duplex printing)."""
        document = self._blank.get(layout.key)
        if document is None:
            sheets, fetcher = self.stylesheets(layout)
            document = self._wp.HTML(
                string="<!DOCTYPE html><html><body></body></html>",
                base_url=_base_url(layout.base_dir),
                url_fetcher=fetcher,
            ).render(**self._options(layout, sheets))
            self._blank[layout.key] = document
        page: Page = document.pages[0]
        return page

    def _options(self, layout: LetterLayout, sheets: list[CSS]) -> dict[str, Any]:
        # A PDF/A variant also sets the document's output intent when it is laid out.
        variant = {"pdf_variant": layout.pdf_variant} if layout.pdf_variant else {}
        return {"stylesheets": sheets, "font_config": self._font_config, **variant}

    def write_pdf(self, documents: _Docs, pages: _Pages, variant: str | None = None) -> bytes:
        """One PDF of the pages (fonts subset once for all), PDF/A with a `variant`."""
        data: bytes = documents[0].copy(list(pages)).write_pdf(pdf_variant=variant)
        return data


_Docs = Sequence["Document"]
_Pages = Sequence["Page"]
_TYPESETTER: Typesetter | None = None


def typesetter() -> Typesetter:
    """This process's typesetter (its fonts and parsed stylesheets are worth keeping)."""
    global _TYPESETTER
    if _TYPESETTER is None:
        _TYPESETTER = Typesetter()
    return _TYPESETTER


def _base_url(folder: Path) -> str:
    # A trailing slash, or "signature.png" would resolve next to the folder, not inside it.
    return folder.as_uri() + "/"


def standalone_html(letter: RenderedLetter) -> str:
    """The letter's HTML with its stylesheets inlined (for `preview --format html`)."""
    css = "\n".join(letter.layout.stylesheets).replace("</", "<\\/")
    style = f"<style>\n{css}\n</style>\n"
    head = letter.html.find("</head>")
    if head < 0:
        return style + letter.html
    return letter.html[:head] + style + letter.html[head:]


def letter_pdf(letter: RenderedLetter) -> bytes:
    """One letter as a PDF (for `outreach preview`); raises as the batch would."""
    setter = typesetter()
    document = setter.typeset(letter)
    return setter.write_pdf([document], document.pages, letter.layout.pdf_variant)


# --- the window check ------------------------------------------------------------------------

_Rect = tuple[float, float, float, float]  # left, top, right, bottom in mm
_OWNERS = {"recipient-address": "recipient", "return-address": "return"}


def _text_boxes(box: Any, owner: str | None, found: list[tuple[str | None, _Rect, str]]) -> None:
    element = getattr(box, "element", None)
    if element is not None and owner is None:
        get = getattr(element, "get", None)
        if get is not None:
            owner = _OWNERS.get(get("id") or "")
    text = getattr(box, "text", None)
    if isinstance(text, str) and text.strip():
        left = box.position_x * MM_PER_PX
        top = box.position_y * MM_PER_PX
        right = left + box.margin_width() * MM_PER_PX
        bottom = top + box.margin_height() * MM_PER_PX
        found.append((owner, (left, top, right, bottom), text))
    for child in getattr(box, "children", ()):
        _text_boxes(child, owner, found)


# WeasyPrint's public Page (size, links, anchors) tells no text positions; its box tree is
# private (Page._page_box), so pyproject.toml bounds weasyprint above to the versions checked.
def page_text_boxes(page: Page) -> list[tuple[str | None, _Rect, str]]:
    """Every piece of text on a laid-out page: (block it belongs to, rectangle in mm, text)."""
    found: list[tuple[str | None, _Rect, str]] = []
    _text_boxes(page._page_box, None, found)
    return found


def check_windows(letter: RenderedLetter, document: Document) -> None:
    """Raise AddressError unless the addresses lie in their windows and nothing else does."""
    layout = letter.layout
    who = letter.contact_id
    if not document.pages:
        raise TemplateError(
            _("contact {id}: the letter has no pages").format(id=who), path=layout.base_dir
        )
    recipient_lines = 0
    for number, page in enumerate(document.pages, start=1):
        for owner, rect, text in page_text_boxes(page):
            if owner is not None and number > 1:
                raise AddressError(
                    _("contact {id}: the address block appears on page {page}").format(
                        id=who, page=number
                    ),
                    hint=_("the address belongs on the first page only: check the layout"),
                )
            if owner == "recipient":
                recipient_lines += 1
                _check_inside(
                    layout.address_check,
                    rect,
                    text,
                    who=who,
                    what=_ADDRESS,
                    envelope=layout.envelope,
                )
            elif owner == "return":
                _check_inside(
                    layout.return_check,
                    rect,
                    text,
                    who=who,
                    what=_RETURN_ADDRESS,
                    envelope=layout.envelope,
                )
            elif number == 1 and any(w.overlaps(*rect) for w in layout.windows):
                snippet = " ".join(text.split())[:_TEXT_SNIPPET]
                raise AddressError(
                    _(
                        "contact {id}: the text {text} would show through the envelope window"
                    ).format(id=who, text=repr(snippet)),
                    hint=_(
                        "keep the letter's text out of the address field (check the layout "
                        "and the stylesheet)"
                    ),
                )
    if letter.address_lines and recipient_lines == 0:
        raise AddressError(
            _("contact {id}: the address block is missing from the first page").format(id=who),
            hint=_("keep the element with id recipient-address in letter_base.html.j2"),
        )


# The letter-fit problems of the recipient's address and of the return address: each a whole
# sentence (Spanish words them differently), in the order wide, its hint, tall, its hint.
_ADDRESS = (
    N_(
        "contact {id}: the address line {line} is {width} mm wide; the {envelope} window "
        "leaves {room} mm"
    ),
    N_("shorten the address (abbreviate the street or name)"),
    N_(
        "contact {id}: the address is too tall for the {envelope} envelope window "
        "(the line {line} falls outside it)"
    ),
    N_("use fewer lines for the address"),
)
_RETURN_ADDRESS = (
    N_(
        "contact {id}: the return address line {line} is {width} mm wide; the {envelope} "
        "window leaves {room} mm"
    ),
    N_("shorten the return address (abbreviate the street or name)"),
    N_(
        "contact {id}: the return address is too tall for the {envelope} envelope window "
        "(the line {line} falls outside it)"
    ),
    N_("use fewer lines for the return address"),
)


def _check_inside(
    box: Box, rect: _Rect, text: str, *, who: str, what: tuple[str, ...], envelope: str
) -> None:
    """`what`: _ADDRESS or _RETURN_ADDRESS, the sentences for the block being checked."""
    left, top, right, bottom = rect
    if box.contains(left, top, right, bottom):
        return
    line = repr(" ".join(text.split()))
    wide, shorten, tall, fewer = what
    if right > box.right or left < box.left:
        raise AddressError(
            _(wide).format(
                id=who,
                line=line,
                width=f"{right - left:.1f}",
                envelope=envelope,
                room=f"{box.right - max(left, box.left):.1f}",
            ),
            hint=_(shorten),
        )
    raise AddressError(_(tall).format(id=who, line=line, envelope=envelope), hint=_(fewer))


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(value: str) -> str:
    """A name usable as a file name anywhere: other characters become '_'."""
    name = _SAFE_NAME.sub("_", value).strip("._") or "_"
    return name[:100]
