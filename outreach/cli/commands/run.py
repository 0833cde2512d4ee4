"""`outreach run` and `outreach send`: make what is due, deliver what waits."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from outreach.i18n import _, ngettext

if TYPE_CHECKING:
    from outreach.deliver.send import SendObserver
    from outreach.model.config import Settings
    from outreach.pipeline.summary import RunSummary
    from outreach.workspace import Workspace
from outreach.cli.errors import handle_errors
from outreach.cli.options import (
    DATE,
    clock,
    clock_options,
    config_option,
    examples,
    quiet_options,
    run_log,
    wall_clock,
    workers_from_env,
)
from outreach.cli.views import (
    letter_progress,
    print_send_summary,
    print_summary,
    progress,
    send_bar,
)


@click.command(
    epilog=examples(
        "outreach run --all --dry-run --date 2026-11-24   # rehearse a day: nothing is kept",
        "outreach run campaigns/birthday.yaml --send --quiet --log-file run.log",
        "outreach run --all --shard 2/4                   # this machine's quarter of the contacts",
    )
)
@click.argument("campaigns", nargs=-1)
@click.option(
    "--all", "all_campaigns", is_flag=True, help="Run every campaign in the campaigns folder."
)
@clock_options
@click.option(
    "--dry-run", is_flag=True, help="Render everything, write nothing (not even the ledger)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--split", is_flag=True, help="Also write one PDF per letter beside the batch.")
@click.option(
    "--send",
    is_flag=True,
    help="Then send every email waiting in the outbox over SMTP (needs delivery.method: smtp).",
)
# hook: --new-ledger (issue 10)
@click.option(
    "--new-ledger",
    is_flag=True,
    help="Allow a new, empty ledger even though out/ holds messages of earlier runs "
    "(they are made again; `outreach ledger rebuild` records them instead).",
)
@click.option(
    "--shard",
    metavar="K/N",
    help="Take only shard K of N: the contacts whose id hashes into it (one per machine, "
    "all on one PostgreSQL ledger).",
)
@quiet_options
@config_option
@handle_errors
def run(
    campaigns: tuple[str, ...],
    all_campaigns: bool,
    day: date | None,
    now: datetime | None,
    dry_run: bool,
    as_json: bool,
    split: bool,
    send: bool,
    new_ledger: bool,
    shard: str | None,
    quiet: bool,
    log_file: Path | None,
    config_path: Path | None,
) -> None:
    """Run campaigns for today (or --date): render what is due, record it in the ledger."""
    from outreach.logs import log_summary, needs_attention
    from outreach.pipeline.run import RunOptions, RunRequest, perform_run, rehearse_run
    from outreach.shards import parse_shard
    from outreach.workspace import load_workspace

    if not campaigns and not all_campaigns:
        raise click.UsageError(
            _("name one or more campaigns (e.g. campaigns/birthday.yaml) or use --all")
        )
    part = parse_shard(shard) if shard is not None else None
    with run_log(log_file) as log:
        workspace = load_workspace(config_path, campaigns=list(campaigns) or None)
        today, current = clock(workspace.settings, day=day, now=now)
        # The send step's bar ends with the run (before the report forks a process).
        with send_bar(not (as_json or quiet)) as observe:
            after = _send_step(
                workspace, send=send, dry_run=dry_run, today=today, now=current, observe=observe
            )
            if new_ledger:  # hook: say what starting over costs
                _warn_new_ledger(workspace.settings)
            request = RunRequest(
                today=today,
                now=current,
                clock=wall_clock(workspace.settings, now=now),
                split=split,
                new_ledger=new_ledger,  # hook
                options=RunOptions(
                    args=sys.argv[1:],
                    progress=progress(not (as_json or quiet)),
                    workers=workers_from_env(os.environ),
                    shard=part,
                ),
                # hook: the letters' bar (issue 13)
                letter_progress=letter_progress(not (as_json or quiet)),
                after=after,
            )
            summary = (rehearse_run if dry_run else perform_run)(workspace, request)
        # hook: every real run writes out/reports/<date>.html (issue 13); a failure only warns
        report_file = (
            None
            if dry_run
            else _run_report(
                workspace,
                summary,
                now=wall_clock(workspace.settings, now=now)(),
                tell=not (as_json or quiet),
            )
        )
        if log is not None:
            log_summary(log, summary, label="outreach " + " ".join(sys.argv[1:]))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2))
    elif not quiet or needs_attention(summary):
        print_summary(summary)
    if report_file is not None and not (as_json or quiet):
        click.echo(_("report: {path}").format(path=report_file))
    sys.exit(summary.exit_code)


def _run_report(
    workspace: Workspace, summary: RunSummary, *, now: datetime, tell: bool
) -> Path | None:
    """Write the run's report page; a failure is a warning line on stderr, never an error.
    `tell`: say so on a terminal first (the page takes a few seconds after the bars end)."""
    from outreach.report import reports_enabled, write_run_report
    from outreach.workspace import display_path

    if not reports_enabled(os.environ):
        return None
    if tell and sys.stderr.isatty():
        click.echo(_("writing the report page…"), err=True)
    path, error = write_run_report(workspace, summary=summary.as_dict(), now=now)
    if error is not None:
        click.echo(
            _(
                "warning: the run's report page could not be written: {error} — the run itself "
                "is done; `outreach report` makes the page again"
            ).format(error=error),
            err=True,
        )
    return display_path(path) if path is not None else None


def _require_smtp(settings: Settings, what: str) -> None:
    """A usage error unless the config sends over SMTP."""
    if settings.delivery.method != "smtp":
        raise click.UsageError(
            _(
                "{what} sends over SMTP, but delivery.method in config.yaml is {method}: set "
                'delivery.method: smtp and delivery.host (see "Sending for real" in the README)'
            ).format(what=what, method=settings.delivery.method)
        )


def _send_step(
    workspace: Workspace,
    *,
    send: bool,
    dry_run: bool,
    today: date,
    now: datetime,
    observe: SendObserver | None = None,
) -> Callable[..., None] | None:
    """The post-run step (the daemon's too); checks the SMTP setup first for --send."""
    if dry_run:
        if send:
            raise click.UsageError(_("--dry-run sends nothing: use --dry-run or --send, not both"))
        return None
    import os

    from outreach.deliver.send import after_run_step

    if send:
        _require_smtp(workspace.settings, "--send")
    return after_run_step(
        workspace, send=send, environ=os.environ, today=today, now=now, observe=observe
    )


@click.command(
    epilog=examples(
        "outreach send",
        "outreach send --rendered-on 2026-11-24 --json",
        "outreach send --retry-uncertain",
    )
)
@clock_options
@click.option(
    "--retry-uncertain",
    is_flag=True,
    help="Also send the emails left uncertain again (check first: they may have arrived).",
)
@click.option(
    "--rendered-on",
    type=DATE,
    default=None,
    help="Only the emails rendered on this day (e.g. the batch you looked at).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@quiet_options
@config_option
@handle_errors
def send(
    day: date | None,
    now: datetime | None,
    retry_uncertain: bool,
    rendered_on: date | None,
    as_json: bool,
    quiet: bool,
    log_file: Path | None,
    config_path: Path | None,
) -> None:
    """Send the rendered emails waiting in the outbox over SMTP (delivery.method: smtp)."""
    import os

    from outreach.deliver.send import perform_send
    from outreach.logs import log_send_summary, send_needs_attention
    from outreach.model.config import find_config, load_settings

    with run_log(log_file) as log:
        settings = load_settings(find_config(config_path))
        _require_smtp(settings, "outreach send")
        today, current = clock(settings, day=day, now=now)
        with send_bar(not (as_json or quiet)) as observe:
            summary = perform_send(
                settings=settings,
                environ=os.environ,
                today=today,
                now=current,
                retry_uncertain=retry_uncertain,
                only_run_date=rendered_on,
                observe=observe,
            )
        if log is not None:
            log_send_summary(log, summary, label="outreach " + " ".join(sys.argv[1:]))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2))
    elif not quiet or send_needs_attention(summary):
        click.echo(
            _("outreach send for {date} {time}").format(
                date=today.isoformat(), time=current.strftime("%H:%M")
            )
        )
        print_send_summary(summary)
    sys.exit(summary.exit_code)


def _warn_new_ledger(settings: Settings) -> None:
    from outreach.ledger import ledger_exists, read_ledger
    from outreach.ledger.rebuild import made_files
    from outreach.model.errors import OutreachError

    if ledger_exists(settings):
        try:
            if read_ledger(settings, lambda ledger: ledger.runs(limit=1)):
                return  # the ledger has a record: --new-ledger changes nothing
        except OutreachError:
            pass
    made = made_files(settings)
    if made.messages:
        click.echo(
            ngettext(
                "--new-ledger: {n} message already in {out} ({emails}, {letters}) may be made "
                "again",
                "--new-ledger: {n} messages already in {out} ({emails}, {letters}) may be made "
                "again",
                made.messages,
            ).format(
                n=made.messages,
                out=settings.paths.out,
                emails=ngettext("{n} email", "{n} emails", len(made.emails)).format(
                    n=len(made.emails)
                ),
                letters=ngettext("{n} letter", "{n} letters", made.letters).format(n=made.letters),
            ),
            err=True,
        )
