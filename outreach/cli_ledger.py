"""`outreach ledger …`: commands that repair the ledger (registered by cli.py)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from outreach.cli import EXIT_OK, _examples, clock, config_option, handle_errors
from outreach.config import find_config, load_settings


@click.group(
    epilog=_examples(
        "outreach ledger rebuild                   # record again what out/ holds",
        "outreach ledger rebuild --json",
    )
)
def ledger() -> None:
    """Repair the ledger (state/ledger.sqlite)."""


@ledger.command()
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def rebuild(as_json: bool, config_path: Path | None) -> None:
    """Record again what out/ holds, for a ledger that is empty, lost or damaged.

    Emails come from out/outbox, letters from the manifests in out/letters. A damaged ledger
    is moved aside first. Nothing is made or sent again.
    """
    from outreach.rebuild import rebuild_ledger

    settings = load_settings(find_config(config_path))
    _, now = clock(settings, day=None, now=datetime.now(UTC))
    report = rebuild_ledger(settings, now=now)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        sys.exit(EXIT_OK)
    if report.moved_aside is not None:
        click.echo(f"the damaged ledger was moved aside to {report.moved_aside}")
    click.echo(
        f"ledger rebuilt: {report.emails_rendered + report.emails_uncertain} email(s) and "
        f"{report.letters} letter(s) recorded as made, so no run makes them again"
    )
    if report.emails_uncertain:
        click.echo(
            f"  {report.emails_uncertain} email(s) are recorded `uncertain`: whether they were "
            "sent cannot be proven from the outbox, so none is sent again automatically; "
            "check them and use `outreach send --retry-uncertain` for the ones that never went"
        )
    elif report.emails_rendered:
        click.echo(
            "  emails are recorded as rendered (written to the outbox); if you sent the .eml "
            "files with another program, that cannot be proven from the outbox"
        )
    for path in report.not_understood:
        click.echo(f"  not recorded (cannot tell which message it is): {path}")
    click.echo(
        "  the suppression list and the history of deferred or skipped messages were in the "
        "old ledger: import your unsubscribes again with `outreach unsubscribe --import FILE`"
    )
    sys.exit(EXIT_OK)
