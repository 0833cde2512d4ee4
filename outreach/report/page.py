"""The report page: one self-contained HTML file (inline CSS, SVG and images, no script).

The page is a Jinja2 template with autoescape on: every value from the contacts file, the
ledger or an email lands escaped, in text and in attributes (the email previews go in an
`iframe srcdoc`, sandboxed, so even a hostile HTML part runs nothing and reaches nothing).
A Content-Security-Policy in the page forbids any fetch: opened from disk it needs no network.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, get_territory_currencies
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from outreach.i18n import N_, _, language, ngettext
from outreach.model.errors import OutreachError
from outreach.outcomes.results import CampaignResult
from outreach.report import charts
from outreach.report.data import REASON_CODES, ReportData
from outreach.report.owner import (
    needs,
    note_words,
    reason_words,
    status_word,
    todo_words,
    went_out,
)
from outreach.rules.locales import babel_locale

_HERE = Path(__file__).resolve().parent
_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)
# No fetch of any kind; inline styles and data: images only. Frames are srcdoc (inherit it).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-src 'self'"


@functools.cache
def _environment() -> Environment:
    """The page's Jinja environment: autoescaped, with `_` and `ngettext` of outreach.i18n
    (newstyle: `_("… %(name)s", name=value)` formats and escapes the value)."""
    environment = Environment(
        loader=FileSystemLoader(_HERE),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    # The callables, not a translations object: they follow the language in use at render.
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_, ngettext=ngettext, newstyle=True
    )
    return environment


@dataclass(frozen=True, slots=True)
class _Formats:
    """Dates, numbers and money in the page's language (Babel)."""

    locale: Locale
    currency: str

    def day(self, value: date) -> str:
        return str(format_date(value, format="medium", locale=self.locale))

    def number(self, value: object) -> str:
        return str(format_decimal(value, locale=self.locale)) if isinstance(value, int) else ""

    def tenths(self, value: float) -> str:
        return str(format_decimal(value, format="0.0", locale=self.locale))

    def money(self, value: float) -> str:
        return str(format_currency(value, self.currency, locale=self.locale))


def _formats(data: ReportData) -> _Formats:
    """The tool's language with the business's region (es_ES, en_ES...), and its currency."""
    locale = babel_locale(language(), region=data.country or None)
    currencies = get_territory_currencies(data.country) if data.country else []
    return _Formats(locale, currencies[0] if currencies else "EUR")


def render_report(data: ReportData, *, root: Path, page: Path) -> str:
    """The report page's HTML, for a page written at `page` (its links are relative to it)."""
    f = _formats(data)
    statuses = ["sent", "rendered", "sending", "uncertain", "deferred", "skipped", "failed"]
    statuses.append("missed")
    template = _environment().get_template("report.html.j2")
    return template.render(
        data=data,
        needs=needs(data),
        today=went_out(data, money=f.money),
        day=f.day,
        number=f.number,
        when=str(format_datetime(data.generated_at, format="medium", locale=f.locale)),
        # matplotlib's output: its text is XML-escaped by matplotlib, and holds campaign names
        # and our own words only, never contact data.
        svg={name: Markup(text) for name, text in _charts(data, f).items()},  # noqa: S704
        csp=CSP,
        statuses=statuses,
        status_word=status_word,
        reason_words=reason_words,
        verdict=_verdict,
        verdict_words=lambda code: _(VERDICT_WORDS[code]),
        note_words=note_words,
        todo_words=todo_words,
        tenths=f.tenths,
        points=lambda value: f"{100 * value:+.1f}",
        euros=lambda cents: str(format_decimal(cents / 100, format="#,##0.00", locale=f.locale)),
        over_cap=sum(n for k, n in data.per_contact.items() if k > data.cap),
        png=lambda raw: "data:image/png;base64," + base64.b64encode(raw).decode("ascii"),
        lang=language(),
        framed=framed,
        link=lambda target: relative_link(target, root=root, page=page),
        skipped_total=lambda c: (
            sum(v for v in c.get("skipped", {}).values() if isinstance(v, int))
            if isinstance(c.get("skipped"), dict)
            else 0
        ),
    )


def _charts(data: ReportData, f: _Formats) -> dict[str, str]:
    """Every chart of the page as SVG text, its words in the owner's language."""
    split = data.plan_start
    held_labels = {"title": _("Held back per day, by reason")}
    held_labels |= {"deferred": status_word("deferred"), "missed": status_word("missed")}
    held_labels |= {f"reason_{code}": reason_words(code) for code in (*REASON_CODES, "planned")}
    svg = {
        "daily": charts.daily_chart(
            data.daily,
            campaigns=data.campaigns,
            start=data.past_start,
            end=data.plan_end,
            split=split,
            labels={
                "title": _("Messages per day: the past 30 days, then the plan for the next 30"),
                # {campaign} is filled in by the chart, one legend entry per campaign
                "sent": _("{campaign} (sent)"),
                "prepared": _("{campaign} (prepared, not sent)"),
                "plan": _("{campaign} (plan)"),
                "email": _("emails"),
                "letter": _("letters"),
            },
        ),
        "pressure": charts.pressure_chart(
            data.per_contact,
            cap=data.cap,
            labels={
                "title": _(
                    "Messages per contact in the cadence window ({start} to {end}, {days} days)"
                ).format(
                    start=f.day(data.window_start), end=f.day(data.past_end), days=data.window_days
                ),
                "cap": _("cap: max_messages {cap}").format(cap=data.cap),
                "x": _("messages in the window"),
                "y": _("contacts"),
            },
        ),
        "held": charts.held_chart(
            data.held, start=data.past_start, end=data.plan_end, split=split, labels=held_labels
        ),
    }
    if data.comebacks:
        svg["comeback"] = charts.comeback_chart(
            data.comebacks,
            labels={
                "title": _("Visit rate: those who got it, and those held out"),
                "treated": _("got it"),
                "control": _("held out (control)"),
                # {uplift}, {low} and {high} are filled in by the chart
                "uplift": _("{uplift} points ({low} to {high})"),
                "x": _("% who came back"),
            },
        )
        svg["redeemed"] = charts.redeemed_chart(
            data.redeemed_daily,
            start=data.past_start,
            end=data.past_end,
            labels={"title": _("Coupons redeemed per day"), "y": _("coupons")},
        )
    return svg


def _verdict(result: CampaignResult) -> str:
    """Which verdict a campaign's result earns (a code, kept in the page's data-verdict)."""
    up = result.uplift
    if up is None:
        return "verdict_none"
    if up.covers_zero:
        return "verdict_wait"
    return "verdict_yes" if up.estimate > 0 else "verdict_less"


VERDICT_WORDS = {
    "verdict_yes": N_("it brings people back"),
    "verdict_less": N_("they came back less than the control group"),
    "verdict_wait": N_("not enough data yet"),
    "verdict_none": N_("no control group: add `control_group: 20%` to measure it"),
}


def framed(document: str) -> str:
    """An email's HTML with the page's CSP in its head (a frame inherits it; this says it too)."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    head = _HEAD.search(document)
    if head is None:
        return meta + document
    return document[: head.end()] + meta + document[head.end() :]


def write_report(path: Path, html: str) -> Path:
    """Write the page atomically (a temporary file renamed over the target); OutreachError
    naming the file when it cannot be written."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(html)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except OSError as exc:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise OutreachError(
            _("the report page cannot be written: {error}").format(error=exc.strerror or exc),
            path=path,
            hint=_(
                "check that paths.out in config.yaml is a folder outreach may write to, "
                "on a disk with free space"
            ),
        ) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def relative_link(target: str, *, root: Path, page: Path) -> str:
    """A workspace-relative path as a link relative to the page's folder."""
    return Path(os.path.relpath(root / target, page.parent)).as_posix()
