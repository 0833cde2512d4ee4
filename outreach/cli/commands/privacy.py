"""`outreach export` and `outreach forget`: a person's right of access and erasure."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from outreach.cli.errors import handle_errors
from outreach.cli.options import clock, clock_options, config_option, examples
from outreach.i18n import N_, _, ngettext

# export's sections, in words (the keys stay as --json has them).
SECTIONS = (
    (N_("suppressions: {n}"), "suppressions"),
    (N_("blocks: {n}"), "blocks"),
    (N_("bounces: {n}"), "bounces"),
    (N_("replies: {n}"), "replies"),
)


@click.command(
    epilog=examples(
        "outreach export c012            # what the workspace holds about contact c012",
        "outreach export c012 --json > c012.json",
    )
)
@click.argument("contact_id")
@click.option("--json", "as_json", is_flag=True, help="Print it for a program.")
@config_option
@handle_errors
def export(contact_id: str, as_json: bool, config_path: Path | None) -> None:
    """Everything the workspace holds about one person: rows, messages, suppressions, blocks,
    bounces and replies."""
    from outreach.model.config import find_config, load_settings
    from outreach.privacy import export_person

    settings = load_settings(find_config(config_path))
    found = export_person(settings, contact_id)
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    click.echo(_("contact {id}").format(id=found["contact"]))
    for row in found["rows"]:
        click.echo("  " + _("{file} line {line}:").format(file=row["file"], line=row["line"]))
        for key, value in row["fields"].items():
            click.echo(f"    {key}: {_shown(value)}")
    if not found["rows"]:
        click.echo("  " + _("no row in the contacts file"))
    click.echo(_("messages: {n}").format(n=len(found["messages"])))
    for m in found["messages"]:
        basis = ", " + _("basis: {basis}").format(basis=m["basis"]) if m.get("basis") else ""
        where = f", {m['artifact']}" if m.get("artifact") else ""
        click.echo(
            f"  {m['date']} {m['campaign']} ({m['occurrence']}) {m['channel']}: "
            f"{m['status']}{basis}{where}"
        )
    for title, key in SECTIONS:
        click.echo(_(title).format(n=len(found[key])))
        for row in found[key]:
            click.echo("  " + ", ".join(f"{k}: {_shown(v)}" for k, v in row.items() if v))


def _shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


@click.command(
    epilog=examples(
        "outreach forget c012            # asks before it erases",
        "outreach forget c012 --yes",
    )
)
@click.argument("contact_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@clock_options
@config_option
@handle_errors
def forget(
    contact_id: str,
    yes: bool,
    day: date | None,
    now: datetime | None,
    config_path: Path | None,
) -> None:
    """Erase one person: ledger rows, emails, letters, kept mails; keeps only a salted hash so
    they are never mailed again."""
    from outreach.model.config import find_config, load_settings
    from outreach.privacy import export_person, forget_person

    settings = load_settings(find_config(config_path))
    _today, moment = clock(settings, day=day, now=now)
    if not yes:
        export_person(settings, contact_id)  # an unknown id stops here, before asking
        click.confirm(
            _("erase everything about {id} (ledger rows, emails, letters, kept mails)?").format(
                id=contact_id
            ),
            abort=True,
        )
    done = forget_person(settings, contact_id, now=moment)
    if done.already:
        click.echo(
            _("{id} was already forgotten; what was left is erased now").format(id=contact_id)
        )
    click.echo(
        _("erased {rows} and {files}").format(
            rows=ngettext("{n} ledger row", "{n} ledger rows", done.rows).format(n=done.rows),
            files=ngettext("{n} file", "{n} files", len(done.files)).format(n=len(done.files)),
        )
    )
    for batch in done.batches_rewritten:
        click.echo(_("letter batch {batch}: rewritten without their pages").format(batch=batch))
    for batch in done.batches_removed:
        click.echo(
            _("letter file {batch}: removed (it held only their letter)").format(batch=batch)
        )
    for page in done.reports_rebuilt:
        click.echo(_("report page {page}: rebuilt without them").format(page=page))
    click.echo(
        _(
            "kept: a salted hash on the suppression list and one line in state/forgotten.log "
            "({digest}); now delete their row from {contacts} too"
        ).format(digest=done.digest, contacts=settings.paths.contacts)
    )
