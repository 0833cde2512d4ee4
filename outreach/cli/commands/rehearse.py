"""`validate`, `preview`, `plan`, `explain`: the run rehearsed, nothing kept."""

from __future__ import annotations

import functools
import json
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from outreach.cli.errors import EXIT_FAILED, EXIT_NOTHING_DONE, EXIT_OK, fail, handle_errors
from outreach.cli.options import (
    DATE,
    clock,
    clock_options,
    config_option,
    examples,
    workers_from_env,
)
from outreach.cli.views import VALIDATE_JSON, print_problems, print_table, progress
from outreach.i18n import N_, _, ngettext

if TYPE_CHECKING:
    from outreach.rehearse.plan import Plan


@click.command(
    epilog=examples(
        "outreach validate",
        "outreach validate --date 2026-11-24 --json",
    )
)
@clock_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def validate(
    day: date | None, now: datetime | None, as_json: bool, config_path: Path | None
) -> None:
    """Check config, contacts, campaigns, and render every template for every contact."""
    from outreach.model.config import find_config, load_settings
    from outreach.pipeline.summary import distinct_lines
    from outreach.rehearse.validate import validate_workspace

    config = find_config(config_path)
    settings = load_settings(config)
    today, current = clock(settings, day=day, now=now)
    # hook: a bar per campaign while its templates render for every contact (issue 13)
    report = validate_workspace(
        settings,
        today=today,
        now=current,
        progress=progress(not as_json, label=N_("checking")),
        config=config,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for line in report.lines:
            click.echo(line)
        if report.blocking:
            count = len(distinct_lines(report.blocking))  # what is listed, each once
            click.echo(
                ngettext("{n} blocking problem:", "{n} blocking problems:", count).format(n=count)
            )
            print_problems(report.blocking, limit=100, more=VALIDATE_JSON)
        if report.warnings:
            count = len(distinct_lines(report.warnings))
            click.echo(
                ngettext(
                    "{n} problem that holds back single contacts:",
                    "{n} problems that hold back single contacts:",
                    count,
                ).format(n=count)
            )
            print_problems(report.warnings, limit=100, more=VALIDATE_JSON)
        if not report.blocking and not report.warnings:
            click.echo(_("everything is in order"))
    sys.exit(EXIT_NOTHING_DONE if report.blocking else EXIT_OK)


@click.command(
    epilog=examples(
        "outreach preview birthday --contact c001",
        "outreach preview birthday --contact c001 --format pdf -o carta.pdf",
    )
)
@click.argument("campaign")
@click.option("--contact", "contact_id", required=True, help="The contact's id.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "html", "eml", "pdf"]),
    default="text",
    show_default=True,
    help="What to show.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file (pdf: default out/preview/CAMPAIGN-ID.pdf).",
)
@clock_options
@config_option
@handle_errors
def preview(
    campaign: str,
    contact_id: str,
    fmt: str,
    output: Path | None,
    day: date | None,
    now: datetime | None,
    config_path: Path | None,
) -> None:
    """Render one campaign's message for one contact, without recording anything."""
    from outreach.rehearse.preview import PreviewRefusedError, render_preview
    from outreach.workspace import load_workspace

    workspace = load_workspace(config_path, campaigns=[campaign])
    today, current = clock(workspace.settings, day=day, now=now)
    try:
        shown = render_preview(
            workspace, contact_id=contact_id, fmt=fmt, today=today, now=current, output=output
        )
    except PreviewRefusedError as exc:
        fail(str(exc))
        sys.exit(EXIT_FAILED)
    if not shown.due:
        # On stderr: what stdout shows stays the message alone (it may be piped to a file).
        occurrence = shown.occurrence
        click.echo(
            _(
                "nothing of {campaign} is due for {contact} on {today}; this is the next one, "
                "for {date} (made from {earliest})"
            ).format(
                campaign=campaign,
                contact=contact_id,
                today=today.isoformat(),
                date=occurrence.date.isoformat(),
                earliest=occurrence.earliest.isoformat(),
            ),
            err=True,
        )
    result = shown.content
    if isinstance(result, Path):
        click.echo(_("wrote {path}").format(path=result))
    elif output is not None:
        output.write_text(result, encoding="utf-8")
        click.echo(_("wrote {path}").format(path=output))
    else:
        click.echo(result, nl=not result.endswith("\n"))


# The plan's table: its columns' titles.
PLAN_COLUMNS = (
    N_("date"),
    N_("campaign"),
    N_("emails"),
    N_("letters"),
    N_("deferred"),
    N_("missed"),
    N_("skipped"),
)


@click.command(
    epilog=examples(
        "outreach plan",
        "outreach plan --from 2026-11-24 --days 7",
        "outreach plan --contact c003 --days 60",
    )
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=30,
    show_default=True,
    help="How many days to simulate.",
)
@click.option("--from", "start", type=DATE, default=None, help="First day (default: today).")
@click.option(
    "--campaign",
    "campaign_names",
    multiple=True,
    help="Only this campaign (a name or file; repeat for several). Default: all.",
)
@click.option("--contact", "contact_id", default=None, help="Tell this contact's story day by day.")
@click.option(
    "--top",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="How many of the busiest contacts to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable plan.")
@config_option
@handle_errors
def plan(
    days: int,
    start: date | None,
    campaign_names: tuple[str, ...],
    contact_id: str | None,
    top: int,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Simulate the coming days: who gets what, what cadence defers. Writes nothing."""
    from outreach.rehearse.plan import plan_days
    from outreach.workspace import load_workspace

    workers = workers_from_env(os.environ)  # as for a run: OUTREACH_WORKERS, else one per core
    workspace = load_workspace(config_path, campaigns=list(campaign_names) or None)
    first, _now = clock(workspace.settings, day=start, now=None)
    simulate = functools.partial(
        plan_days,
        workspace,
        start=first,
        days=days,
        contact_id=contact_id,
        top=top,
        workers=workers,
    )
    if as_json or not sys.stderr.isatty():
        result = simulate()
    else:
        with click.progressbar(length=days, label=_("days"), file=sys.stderr) as bar:
            result = simulate(on_day=lambda _day: bar.update(1))
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    _print_plan(result, days=days)


def _print_plan(result: Plan, *, days: int) -> None:
    """The plan in words: one contact's story, or the table of the days and the busiest contacts."""
    period = ngettext("{start} to {end} ({n} day)", "{start} to {end} ({n} days)", days).format(
        start=result.start.isoformat(), end=result.end.isoformat(), n=days
    )
    if result.contact_id is not None:
        click.echo(
            _("plan for {contact}, {period} — simulated: nothing written").format(
                contact=result.contact_id, period=period
            )
        )
        for line in result.story:
            click.echo(f"  {line}")
        if not result.story:
            click.echo("  " + _("nothing happens to this contact in these days"))
        return
    click.echo(
        _("plan for {period} — simulated on a copy of the ledger: nothing written").format(
            period=period
        )
    )
    header = tuple(_(column) for column in PLAN_COLUMNS)
    rows: list[tuple[object, ...]] = []
    shown = None
    for c in result.counts:
        if c.empty:
            continue
        day = c.day.isoformat() if c.day != shown else ""
        shown = c.day
        rows.append((day, c.campaign, c.emails, c.letters, c.deferred, c.missed, c.skipped))
    for t in result.totals():
        rows.append((_("total"), t.campaign, t.emails, t.letters, t.deferred, t.missed, t.skipped))
    print_table(header, rows, left=2)
    quiet = result.days - len({c.day for c in result.counts if not c.empty})
    if quiet:
        click.echo(
            ngettext(
                "({n} day with nothing to do is left out)",
                "({n} days with nothing to do are left out)",
                quiet,
            ).format(n=quiet)
        )
    if not result.pressure:
        click.echo(_("no contact would get more than one message in these days"))
    else:
        click.echo(_("contacts with the most messages in these days:"))
        for busy in result.pressure:
            listed = ", ".join(
                f"{m.campaign} {m.day.isoformat()} ({m.channel})" for m in busy.messages
            )
            click.echo(f"  {busy.contact_id}: {len(busy.messages)} — {listed}")


@click.command(
    epilog=examples(
        "outreach explain c003",
        "outreach explain c003 --date 2026-11-24 --json",
    )
)
@click.argument("contact_id")
@clock_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable answer.")
@config_option
@handle_errors
def explain(
    contact_id: str,
    day: date | None,
    now: datetime | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Why a contact does or does not get each campaign's message today (or --date)."""
    from outreach.rehearse.explain import explain_contact
    from outreach.workspace import load_workspace

    workspace = load_workspace(config_path)
    today, current = clock(workspace.settings, day=day, now=now)
    answer = explain_contact(workspace, contact_id=contact_id, today=today, now=current)
    if as_json:
        click.echo(json.dumps(answer.as_dict(), ensure_ascii=False, indent=2))
        return
    for line in answer.lines():
        click.echo(line)
