"""`outreach history` and `outreach report`: what the ledger remembers."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path

import click

from outreach.cli.errors import handle_errors
from outreach.cli.options import DATE, clock, config_option, examples
from outreach.cli.views import print_table
from outreach.i18n import N_, _, ngettext

# The ledger's statuses (outreach.ledger.STATUSES, which --help would have to import the whole
# ledger to read; tests/test_cli_language.py checks they agree).
STATUSES = ("rendered", "sending", "sent", "failed", "uncertain", "deferred", "missed", "skipped")
HISTORY_COLUMNS = (
    N_("date"),
    N_("contact"),
    N_("campaign"),
    N_("occurrence"),
    N_("channel"),
    N_("status"),
    N_("reason / error"),
    N_("artifact"),
)
RUN_COLUMNS = (N_("run"), N_("date"), N_("started"), N_("ended"), N_("command"), N_("result"))


@click.command(
    epilog=examples(
        "outreach report                           # the last 30 days and the next 30",
        "outreach report --from 2026-11-01 --to 2026-11-30 -o noviembre.html",
    )
)
@click.option(
    "--from",
    "start",
    type=DATE,
    default=None,
    help="First day the page looks back on (default: 29 days before --to).",
)
@click.option(
    "--to",
    "end",
    type=DATE,
    default=None,
    help="Last day it looks back on (default: today); the plan covers the 30 days after it.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the page here (default: out/reports/<--to>.html).",
)
@config_option
@handle_errors
def report(
    start: date | None, end: date | None, output: Path | None, config_path: Path | None
) -> None:
    """One self-contained HTML page: what went, what will go, what was held back and why."""
    from outreach.report import build_report, default_period, report_path
    from outreach.workspace import display_path, load_workspace

    workspace = load_workspace(config_path)
    today, current = clock(workspace.settings, day=None, now=None)
    first, last = default_period(today=today, start=start, end=end)
    if first > last:
        raise click.UsageError(
            _("--from {first} is after --to {last}: give --from on or before it").format(
                first=first, last=last
            )
        )
    path = build_report(
        workspace,
        start=first,
        end=last,
        now=current,
        output=output if output is not None else report_path(workspace.settings, last),
    )
    click.echo(_("wrote {path}").format(path=display_path(path)))


@click.command(
    epilog=examples(
        "outreach history --contact c003",
        "outreach history --status deferred --since 2026-11-01",
        "outreach history --runs --limit 0",
    )
)
@click.option("--contact", "contact_id", default=None, help="Only this contact's messages.")
@click.option("--campaign", default=None, help="Only this campaign's messages.")
@click.option(
    "--since", type=DATE, default=None, help="Only messages of runs on or after this day."
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only messages with this status (repeat for several).",
)
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    help="Show at most this many messages (0: all).",
)
@click.option("--runs", "show_runs", is_flag=True, help="Also list the last 10 runs.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable rows.")
@config_option
@handle_errors
def history(
    contact_id: str | None,
    campaign: str | None,
    since: date | None,
    statuses: tuple[str, ...],
    limit: int,
    show_runs: bool,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """The ledger's messages, newest first: what went to whom, when, and what waits."""
    from outreach.history import UNCERTAIN_ADVICE, read_history
    from outreach.model.config import find_config, load_settings
    from outreach.model.reasons import status_word, words
    from outreach.workspace import display_path

    settings = load_settings(find_config(config_path))
    found = read_history(
        settings,
        contact_id=contact_id,
        campaign=campaign,
        since=since,
        statuses=statuses,
        limit=limit,
        runs=10 if show_runs else 0,
    )
    if as_json:
        click.echo(json.dumps(found.as_dict(), ensure_ascii=False, indent=2))
        return
    if not found.exists:
        where = display_path(settings.ledger_path)
        click.echo(_("no ledger yet ({path} does not exist): nothing has run").format(path=where))
        return
    if not found.messages:
        click.echo(_("no messages match"))
    else:
        header = tuple(_(column) for column in HISTORY_COLUMNS)
        print_table(
            header,
            [
                (
                    m.run_date.isoformat(),
                    m.contact_id,
                    m.campaign,
                    m.occurrence_key,
                    m.channel,
                    status_word(m.status),
                    m.error or words(m.reason),
                    m.artifact or "",
                )
                for m in found.messages
            ],
            left=len(header),
        )
        if found.matched > len(found.messages):
            click.echo(
                _("showing the newest {n} of {matched} messages (--limit 0 shows all)").format(
                    n=len(found.messages), matched=found.matched
                )
            )
    if found.runs:
        _print_runs(found.runs, settings.tz)
    if found.uncertain:
        click.echo(
            ngettext(
                "{n} message uncertain: {advice}",
                "{n} messages uncertain: {advice}",
                found.uncertain,
            ).format(n=found.uncertain, advice=_(UNCERTAIN_ADVICE))
        )
    # hook: what bounces, complaints and the post blocked for this contact, and why
    from outreach.rules.blocks import describe_block

    for block in found.blocks:
        click.echo(_("blocked: {block}").format(block=describe_block(block)))
    from outreach.feedback.replies import describe_reply

    for reply in found.replies:
        click.echo(_("wrote back: {reply}").format(reply=describe_reply(reply)))


def _print_runs(runs: Sequence[Mapping[str, object]], tz: tzinfo) -> None:
    """`history --runs`: the last runs, one line each."""
    from outreach.history import describe_counts

    click.echo(_("last runs:"))
    rows: list[tuple[object, ...]] = []
    for run_row in runs:
        started, ended = run_row["started_at"], run_row["ended_at"]
        args = run_row["args"]
        rows.append(
            (
                run_row["id"],
                str(run_row["run_date"]),
                started.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                if isinstance(started, datetime)
                else "",
                ended.astimezone(tz).strftime("%H:%M") if isinstance(ended, datetime) else "—",
                shlex.join(str(a) for a in args) if isinstance(args, list) else "",
                describe_counts(run_row["counts"]),
            )
        )
    print_table(tuple(_(column) for column in RUN_COLUMNS), rows, left=6)
