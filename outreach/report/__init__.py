"""The HTML report: what went, what will go, what was held back and why, on one page.

`data.py` gathers (ledger, plan, out/ folder), `charts.py` draws (matplotlib, SVG), `page.py`
renders (a Jinja2 template, autoescaped) and writes the file atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path

from outreach.model.config import Settings
from outreach.workspace import Workspace

__all__ = ["build_report", "default_period", "report_path"]


def report_path(settings: Settings, day: date) -> Path:
    """Where a run's report goes: out/reports/<date>.html."""
    return settings.out_dir / "reports" / f"{day.isoformat()}.html"


def default_period(
    *, today: date, start: date | None, end: date | None, days: int = 30
) -> tuple[date, date]:
    """The period a report looks back on: `days` days up to `end` (default today)."""
    last = end or today
    first = start or last - timedelta(days=days - 1)
    return first, last


def build_report(
    workspace: Workspace,
    *,
    start: date,
    end: date,
    now: datetime,
    output: Path,
    summary: Mapping[str, object] | None = None,
) -> Path:
    """Gather, draw, render and write the report for start..end (and the plan after it)."""
    from outreach.report.data import gather_report
    from outreach.report.page import render_report, write_report

    data = gather_report(workspace, start=start, end=end, now=now, summary=summary)
    html = render_report(data, root=workspace.settings.root, page=output.resolve())
    return write_report(output, html)


# Set to 0 (or off/no/false) to skip the report page after each run, e.g. in a benchmark of runs.
REPORT_ENV = "OUTREACH_REPORT"


def reports_enabled(environ: Mapping[str, str]) -> bool:
    """Whether runs write their report page (OUTREACH_REPORT, default on)."""
    return environ.get(REPORT_ENV, "").strip().lower() not in ("0", "off", "no", "false")


def write_run_report(
    workspace: Workspace, *, summary: Mapping[str, object], now: datetime
) -> tuple[Path | None, str | None]:
    """A finished run's page, out/reports/<date>.html: (its path, None) or (None, why not).

    Never raises: the run is done whatever happens to its report.
    """
    day_text = summary.get("date")
    try:
        day = date.fromisoformat(str(day_text))
        first, last = default_period(today=day, start=None, end=None)
        path = build_report(
            workspace,
            start=first,
            end=last,
            now=now,
            output=report_path(workspace.settings, day),
            summary=summary,
        )
    except Exception as exc:  # a report is never worth a failed run
        return None, str(exc) or type(exc).__name__
    return path, None
