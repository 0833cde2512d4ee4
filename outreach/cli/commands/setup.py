"""`outreach init` and `outreach daemon`: a new workspace, the scheduler."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import click

from outreach.cli.errors import EXIT_OK, handle_errors
from outreach.cli.options import (
    DATETIME,
    config_option,
    examples,
    quiet_options,
    run_log,
    wall_clock,
)
from outreach.i18n import _


@click.command(
    epilog=examples(
        "outreach daemon                           # in the foreground, e.g. under systemd",
        "outreach daemon --once --quiet --log-file daemon.log   # from cron",
        "outreach daemon --now 2026-11-24T08:59:50   # try the schedule from a given moment",
    )
)
@click.option("--once", is_flag=True, help="Run the jobs that are due now, then exit (for cron).")
@click.option(
    "--now",
    "now",
    type=DATETIME,
    default=None,
    help="Stand-in for the clock: the daemon starts at this moment (local time in the config "
    "time zone) and its clock moves on from there.",
)
@quiet_options
@config_option
@handle_errors
def daemon(
    once: bool, now: datetime | None, quiet: bool, log_file: Path | None, config_path: Path | None
) -> None:
    """Run the config's schedule in the foreground until SIGTERM or Ctrl-C."""

    import logging  # here, not at import: a command's start stays light

    from outreach.logs import configure_logging
    from outreach.model.config import find_config, load_settings
    from outreach.scheduler import Daemon, worst_exit_code

    with run_log(log_file):
        clock = (
            wall_clock(load_settings(find_config(config_path)), now=now)
            if now is not None
            else lambda: datetime.now(UTC)
        )
        runner = Daemon(config=config_path, clock=clock, environ=os.environ)
        runner.start()
    # The log goes to stderr (the journal, under systemd); --quiet keeps only what needs a person.
    configure_logging(
        stream=sys.stderr,
        stream_level=logging.WARNING if quiet else logging.INFO,
        log_file=log_file,
    )
    # A stop request only sets a flag: the run in progress always finishes its messages.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.request_stop())
    results = runner.serve(once=once)
    sys.exit(worst_exit_code(results) if once else EXIT_OK)


@click.command(
    epilog=examples(
        "outreach init mi-negocio",
        "outreach init mi-negocio --force",
    )
)
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite the files that already exist.")
@handle_errors
def init(directory: Path, force: bool) -> None:
    """Create a workspace in DIR: config, a few contacts, sample campaigns and templates."""
    from outreach.skeleton import create_workspace

    written = create_workspace(directory, today=date.today(), force=force)
    click.echo(_("created a workspace in {path}:").format(path=directory))
    for path in written:
        click.echo(f"  {path.relative_to(directory).as_posix()}")
    click.echo("\n" + _("next steps:"))
    click.echo(f"  cd {shlex.quote(str(directory))}")
    steps = (
        ("outreach validate", _("check config, contacts, campaigns and templates")),
        ("outreach run --all --dry-run", _("see what a run would do today")),
        ("outreach run --all", _("render what is due into out/outbox/")),
    )
    for command, why in steps:
        click.echo(f"  {command:<31} # {why}")
    click.echo(
        _(
            "then put your business in config.yaml (sender), your customers in contacts.csv, "
            "and your words in campaigns/ and templates/."
        )
    )
