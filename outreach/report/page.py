"""The report page: one self-contained HTML file (inline CSS, SVG and images, no script).

The page is a Jinja2 template with autoescape on: every value from the contacts file, the
ledger or an email lands escaped, in text and in attributes (the email previews go in an
`iframe srcdoc`, sandboxed, so even a hostile HTML part runs nothing and reaches nothing).
A Content-Security-Policy in the page forbids any fetch: opened from disk it needs no network.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from contextlib import suppress
from datetime import date
from pathlib import Path

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from outreach.model.errors import OutreachError
from outreach.outcomes.results import CampaignResult
from outreach.report import charts
from outreach.report.data import REASON_CODES, ReportData
from outreach.report.strings import strings_for
from outreach.rules.locales import babel_locale

_HERE = Path(__file__).resolve().parent
_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)
# No fetch of any kind; inline styles and data: images only. Frames are srcdoc (inherit it).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-src 'self'"


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(_HERE),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(data: ReportData, *, root: Path, page: Path) -> str:
    """The report page's HTML, for a page written at `page` (its links are relative to it)."""
    words = strings_for(data.locale)
    try:
        locale = babel_locale(data.locale)
    except ValueError:
        locale = babel_locale("en")

    def day(value: date) -> str:
        return str(format_date(value, format="medium", locale=locale))

    def number(value: object) -> str:
        return str(format_decimal(value, locale=locale)) if isinstance(value, int) else ""

    def t(key: str, **values: object) -> str:
        return words[key].format(**values)

    split = data.plan_start
    chart_words: dict[str, Mapping[str, str]] = {
        "daily": {
            "title": words["chart_daily"],
            "ledger": words["ledger"],
            "plan": words["plan"],
            "email": words["email"],
            "letter": words["letter"],
        },
        "pressure": {
            "title": t(
                "chart_pressure",
                start=day(data.window_start),
                end=day(data.past_end),
                days=data.window_days,
            ),
            "cap": t("cap", cap=data.cap),
            "x": words["x_messages"],
            "y": words["y_contacts"],
        },
        "held": {
            "title": words["chart_held"],
            "deferred": words["deferred"],
            "missed": words["missed"],
            **{f"reason_{code}": words[f"reason_{code}"] for code in (*REASON_CODES, "planned")},
        },
    }
    svg = {
        "daily": charts.daily_chart(
            data.daily,
            campaigns=data.campaigns,
            start=data.past_start,
            end=data.plan_end,
            split=split,
            labels=chart_words["daily"],
        ),
        "pressure": charts.pressure_chart(
            data.per_contact, cap=data.cap, labels=chart_words["pressure"]
        ),
        "held": charts.held_chart(
            data.held,
            start=data.past_start,
            end=data.plan_end,
            split=split,
            labels=chart_words["held"],
        ),
    }
    svg.update(_comeback_charts(data, words))
    statuses = ["sent", "rendered", "sending", "uncertain", "deferred", "skipped", "failed"]
    statuses.append("missed")
    template = _environment().get_template("report.html.j2")
    return template.render(
        data=data,
        t=t,
        w=words,
        day=day,
        number=number,
        when=str(format_datetime(data.generated_at, format="medium", locale=locale)),
        # matplotlib's output: its text is XML-escaped by matplotlib, and holds campaign names
        # and our own words only, never contact data.
        svg={name: Markup(text) for name, text in svg.items()},  # noqa: S704
        csp=CSP,
        statuses=statuses,
        verdict=_verdict,
        points=lambda value: f"{100 * value:+.1f}",
        euros=lambda cents: str(format_decimal(cents / 100, format="#,##0.00", locale=locale)),
        over_cap=sum(n for k, n in data.per_contact.items() if k > data.cap),
        png=lambda raw: "data:image/png;base64," + base64.b64encode(raw).decode("ascii"),
        lang=data.locale.replace("_", "-").split("-")[0],
        framed=framed,
        link=lambda target: relative_link(target, root=root, page=page),
        skipped_total=lambda c: (
            sum(v for v in c.get("skipped", {}).values() if isinstance(v, int))
            if isinstance(c.get("skipped"), dict)
            else 0
        ),
    )


def _comeback_charts(data: ReportData, words: Mapping[str, str]) -> dict[str, str]:
    """The "do they come back" charts, when the period has a message or control decision."""
    if not data.comebacks:
        return {}
    return {
        "comeback": charts.comeback_chart(
            data.comebacks,
            labels={
                "title": words["chart_comeback"],
                "treated": words["chart_treated"],
                "control": words["chart_control"],
                "uplift": words["chart_uplift"],
                "x": words["x_rate"],
            },
        ),
        "redeemed": charts.redeemed_chart(
            data.redeemed_daily,
            start=data.past_start,
            end=data.past_end,
            labels={"title": words["chart_redeemed"], "y": words["y_redeemed"]},
        ),
    }


def _verdict(result: CampaignResult) -> str:
    """Which of the report's verdict words a campaign's result earns."""
    up = result.uplift
    if up is None:
        return "verdict_none"
    if up.covers_zero:
        return "verdict_wait"
    return "verdict_yes" if up.estimate > 0 else "verdict_less"


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
            f"the report page cannot be written: {exc.strerror or exc}",
            path=path,
            hint="check that paths.out in config.yaml is a folder outreach may write to, "
            "on a disk with free space",
        ) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def relative_link(target: str, *, root: Path, page: Path) -> str:
    """A workspace-relative path as a link relative to the page's folder."""
    return Path(os.path.relpath(root / target, page.parent)).as_posix()
