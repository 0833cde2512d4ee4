"""The `outreach` group and its entry point: every command registered here."""

from __future__ import annotations

import importlib
import os
import sys

import click

from outreach import __version__
from outreach.cli.errors import EXIT_FAILED, json_error
from outreach.cli.helptext import speak_click, translate_help
from outreach.cli.options import examples
from outreach.i18n import _, use

# Each command and the module that defines it (outreach/cli/commands/), imported when the
# command is called or listed: a till's `redeem` loads its own module, not the other twenty
# commands' options (about 8 ms of each start).
COMMANDS = {
    "run": "run",
    "send": "run",
    "doctor": "doctor",
    "validate": "rehearse",
    "preview": "rehearse",
    "plan": "rehearse",
    "explain": "rehearse",
    "daemon": "setup",
    "init": "setup",
    "report": "records",
    "history": "records",
    "unsubscribe": "feedback",
    "bounces": "feedback",
    "returned": "feedback",
    "replies": "replies",
    "unblock": "replies",
    "serve": "feedback",
    "export": "privacy",
    "forget": "privacy",
    "ledger": "ledger",
    "redeem": "outcomes",
    "visits": "outcomes",
    "results": "outcomes",
}


class _Commands(click.Group):
    """The `outreach` group: its commands are loaded from COMMANDS when first asked for, and
    their help put in the language in use then (`translate_help`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"outreach.cli.commands.{COMMANDS[cmd_name]}")
            command: click.Command = getattr(module, cmd_name)
            translate_help(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def every_command(self) -> dict[str, click.Command]:
        """All the commands, loaded (for the tests and tools that walk them)."""
        ctx = click.Context(self)
        return {name: command for name in COMMANDS if (command := self.get_command(ctx, name))}


@click.group(
    cls=_Commands,
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
