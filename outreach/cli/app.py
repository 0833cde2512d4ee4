"""The `outreach` group and its entry point: every command registered here."""

from __future__ import annotations

import os
import sys

import click

from outreach import __version__
from outreach.cli.commands.doctor import doctor
from outreach.cli.commands.feedback import bounces, returned, serve, unsubscribe
from outreach.cli.commands.ledger import ledger
from outreach.cli.commands.outcomes import redeem, results, visits
from outreach.cli.commands.privacy import export, forget
from outreach.cli.commands.records import history, report
from outreach.cli.commands.rehearse import explain, plan, preview, validate
from outreach.cli.commands.replies import replies, unblock
from outreach.cli.commands.run import run, send
from outreach.cli.commands.setup import daemon, init
from outreach.cli.errors import EXIT_FAILED, json_error
from outreach.cli.helptext import speak_click, translate_help
from outreach.cli.options import examples
from outreach.i18n import _, use


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=examples(
        "outreach validate                         # is everything in order?",
        "outreach run --all --dry-run              # what a run would make, nothing kept",
        "outreach run --all                        # today's messages",
    ),
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx, value),
    help="Show the version and exit.",
)
def cli() -> None:
    """Keep in touch with customers — birthdays, promotions, reminders — without pestering them."""


def _print_version(ctx: click.Context, value: bool) -> None:
    """--version, said when asked (click's version_option translates its line at import)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(_("%(prog)s, version %(version)s") % {"prog": "outreach", "version": __version__})
    ctx.exit()


def main() -> None:
    """Entry point of the `outreach` console script."""
    # The environment's language before click parses anything (so --help and usage errors
    # follow LANGUAGE/LC_ALL/LC_MESSAGES/LANG); a command that reads config.yaml switches to
    # its `language:` (load_settings).
    use(None)
    # outreach uses no pydantic plugin; looking for them reads the metadata of every installed
    # package (~50 ms of each start, a till's `redeem` included). An owner's setting wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    speak_click()
    translate_help(cli)
    if "--json" not in sys.argv[1:]:
        cli(prog_name="outreach")
        return
    # Under --json a usage error is JSON on stdout too; the exit code stays click's.
    try:
        code = cli.main(prog_name="outreach", standalone_mode=False)
    except click.ClickException as exc:
        kind = "usage" if isinstance(exc, click.UsageError) else "error"
        json_error(kind=kind, message=exc.format_message(), exit_code=exc.exit_code)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo(_("Aborted!"), err=True)
        sys.exit(EXIT_FAILED)
    if isinstance(code, int) and code:
        sys.exit(code)  # click's own exit (e.g. ctx.exit) without standalone mode


cli.add_command(run)
cli.add_command(send)
cli.add_command(doctor)
cli.add_command(validate)
cli.add_command(preview)
cli.add_command(plan)
cli.add_command(explain)
cli.add_command(daemon)
cli.add_command(init)
cli.add_command(report)
cli.add_command(history)
cli.add_command(unsubscribe)
cli.add_command(bounces)
cli.add_command(returned)
cli.add_command(replies)
cli.add_command(unblock)
cli.add_command(serve)
cli.add_command(export)
cli.add_command(forget)
cli.add_command(ledger)
cli.add_command(redeem)
cli.add_command(visits)
cli.add_command(results)
