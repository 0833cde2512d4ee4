"""`outreach ledger …`: repair the ledger, or copy it into another store."""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from outreach.cli.errors import EXIT_OK, handle_errors
from outreach.cli.options import clock, config_option, examples
from outreach.i18n import _, ngettext


@click.group(
    epilog=examples(
        "outreach ledger rebuild                   # record again what out/ holds",
        "outreach ledger rebuild --json",
        "outreach ledger copy --to postgresql://outreach@db.example/shop",
    )
)
def ledger() -> None:
    """Repair the ledger (state/ledger.sqlite), or copy it into another store."""


@ledger.command(
    epilog=examples(
        "outreach ledger rebuild                   # record again what out/ holds",
        "outreach ledger rebuild --json",
    )
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def rebuild(as_json: bool, config_path: Path | None) -> None:
    """Record again what out/ holds, for a ledger that is empty, lost or damaged.

    Emails come from out/outbox, letters from the manifests in out/letters. A damaged ledger
    is moved aside first. Nothing is made or sent again.
    """
    from outreach.ledger.rebuild import rebuild_ledger
    from outreach.model.config import find_config, load_settings

    settings = load_settings(find_config(config_path))
    _today, now = clock(settings, day=None, now=datetime.now(UTC))
    report = rebuild_ledger(settings, now=now)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        sys.exit(EXIT_OK)
    _print_rebuilt(report)
    sys.exit(EXIT_OK)


def _print_rebuilt(report: Any) -> None:
    """What `ledger rebuild` recorded, and what it could not know."""
    if report.moved_aside is not None:
        click.echo(
            _("the damaged ledger was moved aside to {path}").format(path=report.moved_aside)
        )
    emails = report.emails_rendered + report.emails_uncertain
    click.echo(
        _(
            "ledger rebuilt: {emails} and {letters} recorded as made, so no run makes them again"
        ).format(
            emails=ngettext("{n} email", "{n} emails", emails).format(n=emails),
            letters=ngettext("{n} letter", "{n} letters", report.letters).format(n=report.letters),
        )
    )
    if report.emails_uncertain:
        click.echo(
            "  "
            + ngettext(
                "{n} email is recorded `uncertain`: whether it was sent cannot be proven from "
                "the outbox, so it is not sent again automatically; check it and use "
                "`outreach send --retry-uncertain` if it never went",
                "{n} emails are recorded `uncertain`: whether they were sent cannot be proven "
                "from the outbox, so none is sent again automatically; check them and use "
                "`outreach send --retry-uncertain` for the ones that never went",
                report.emails_uncertain,
            ).format(n=report.emails_uncertain)
        )
    elif report.emails_rendered:
        click.echo(
            "  "
            + _(
                "emails are recorded as rendered (written to the outbox); if you sent the .eml "
                "files with another program, that cannot be proven from the outbox"
            )
        )
    for path in report.not_understood:
        click.echo(
            "  " + _("not recorded (cannot tell which message it is): {path}").format(path=path)
        )
    click.echo(
        "  "
        + _(
            "the suppression list and the history of deferred or skipped messages were in the "
            "old ledger: import your unsubscribes again with `outreach unsubscribe --import FILE`"
        )
    )


@ledger.command(
    epilog=examples(
        "outreach ledger copy --to postgresql://outreach@db.example/shop",
        "outreach ledger copy --to state/ledger.sqlite      # from PostgreSQL back to SQLite",
    )
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="Where to copy the ledger: postgresql://user@host/db, or a SQLite file's path.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def copy(target: str, as_json: bool, config_path: Path | None) -> None:
    """Copy the workspace's ledger into another store, SQLite ↔ PostgreSQL.

    Every row is copied with its id; rows the target already has are kept, so copying again
    changes nothing. The counts of both sides are compared, table by table. The workspace's
    lock is held meanwhile, so no run writes during the copy. Point state.url (or
    OUTREACH_LEDGER_URL) at the copy afterwards.
    """
    from outreach.ledger import Ledger, open_ledger, workspace_lock
    from outreach.ledger.copy import copy_ledger
    from outreach.ledger.postgres import AdvisoryLock, check_url, is_postgres_url, redact
    from outreach.ledger.redact import has_password
    from outreach.model.config import find_config, load_settings

    settings = load_settings(find_config(config_path))
    _today, now = clock(settings, day=None, now=datetime.now(UTC))
    postgres = is_postgres_url(target)
    if postgres or has_password(target):  # a key=value string is no file name either
        check_url(target, source="--to")
    where = redact(target)
    with workspace_lock(settings, now=now), open_ledger(settings) as source:
        if postgres:
            lock = AdvisoryLock(target, scope="")  # no run on the target meanwhile either
            lock.acquire(now=now)
            try:
                with Ledger.connect(target) as into:
                    tables = copy_ledger(source, into)
            finally:
                lock.release()
        else:
            path = Path(target.removeprefix("sqlite:///")).resolve()
            if str(path) == str(source.path):
                raise click.UsageError(_("--to names the workspace's own ledger"))
            with Ledger.open(path) as into:
                tables = copy_ledger(source, into)
        from_where = str(source.path)
    if as_json:
        report = {
            "from": from_where,
            "to": where,
            "tables": {
                t.table: {"source": t.source, "copied": t.copied, "target": t.target}
                for t in tables
            },
        }
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        sys.exit(EXIT_OK)
    click.echo(
        _("ledger copied from {source} to {target}; the counts match:").format(
            source=from_where, target=where
        )
    )
    for t in tables:
        click.echo(
            f"  {t.table:<14} "
            + ngettext(
                "{n} row, {copied} copied now", "{n} rows, {copied} copied now", t.source
            ).format(n=f"{t.source:>9}", copied=f"{t.copied:>9}")
        )
    sys.exit(EXIT_OK)
