"""What comes back: `unsubscribe`, `bounces`, `returned`, `serve`."""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from outreach.cli.commands.replies import print_feedback_extras, unsubscribe_undo
from outreach.cli.errors import EXIT_FAILED, EXIT_NOTHING_DONE, EXIT_OK, fail, handle_errors
from outreach.cli.options import clock, clock_options, config_option, examples
from outreach.i18n import N_, _, ngettext
from outreach.model.errors import OutreachError, Problem


@click.command(
    epilog=examples(
        "outreach unsubscribe ana@example.com",
        "outreach unsubscribe c007 --channel letter",
        "outreach unsubscribe --import bajas.csv",
    )
)
@click.argument("target", metavar="ADDRESS_OR_ID", required=False)
@click.option(
    "--channel",
    type=click.Choice(["email", "letter", "all"]),
    default="all",
    show_default=True,
    help="What the contact no longer gets.",
)
@click.option(
    "--import",
    "import_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A file of addresses: one per line, or a CSV with an email column.",
)
@click.option("--list", "listing", is_flag=True, help="List the suppressions and blocks.")
@click.option(
    "--remove",
    "remove",
    metavar="ID_OR_ADDRESS",
    default=None,
    help="Take a contact id or address off the suppression list (needs --reason).",
)
@click.option("--reason", default=None, help="Why it is removed (kept: the person's request).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def unsubscribe(
    target: str | None,
    channel: str,
    import_file: Path | None,
    listing: bool,
    remove: str | None,
    reason: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Put an address or contact id on the suppression list: no more messages, essential or not."""
    if listing or remove is not None:
        unsubscribe_undo(remove=remove, reason=reason, as_json=as_json, config_path=config_path)
        return
    from outreach.contacts import load_contacts
    from outreach.history import (
        Entry,
        contacts_covered,
        parse_target,
        read_unsubscribe_file,
    )
    from outreach.history import unsubscribe as add_suppressions
    from outreach.model.config import find_config, load_settings
    from outreach.model.errors import LockError

    if target is None and import_file is None:
        raise click.UsageError(_("give an email address or a contact id, or --import FILE"))
    settings = load_settings(find_config(config_path))
    _today, current = clock(settings, day=None, now=None)
    entries: list[Entry] = []
    if target is not None:
        try:
            entries.append(Entry(parse_target(target)))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=_("ADDRESS_OR_ID")) from None
    invalid: list[Problem] = []
    if import_file is not None:
        found, invalid = read_unsubscribe_file(import_file)
        entries.extend(found)
    source = f"import {import_file.name}" if import_file is not None else "cli"
    try:
        report = add_suppressions(
            settings, entries=entries, channel=channel, source=source, now=current, invalid=invalid
        )
    except LockError:
        click.echo(_("a run is in progress: waiting for it to finish…"), err=True)
        report = add_suppressions(
            settings,
            entries=entries,
            channel=channel,
            source=source,
            now=current,
            invalid=invalid,
            wait=True,
        )
    try:
        contacts = load_contacts(
            settings.contacts_path,
            settings=settings.contacts,
            default_locale=settings.default_locale,
        ).contacts
    except OutreachError:
        contacts = ()  # the list is updated either way; only the note about contacts is lost
    covered = contacts_covered(contacts, [e.value for e in entries])
    if as_json:
        data = report.as_dict()
        data["contacts"] = [c.id for c in covered]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        sys.exit(EXIT_FAILED if report.invalid else EXIT_OK)
    _print_unsubscribed(report, entries=entries, channel=channel, single=import_file is None)
    for contact in covered:
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
        if name:
            click.echo("  " + _("covers contact {id} ({name})").format(id=contact.id, name=name))
        else:
            click.echo("  " + _("covers contact {id}").format(id=contact.id))
    if entries and not covered and contacts:
        click.echo(
            "  "
            + _(
                "no contact in the contacts file has it (yet); it stays on the list, so a "
                "contact added later with it gets nothing"
            )
        )
    sys.exit(EXIT_FAILED if report.invalid else EXIT_OK)


# What a suppression covers, in words: `unsubscribe --channel`.
SCOPES = {"all": N_("email and letter"), "email": N_("email"), "letter": N_("letter")}
WHAT_STOPS = {
    "all": N_("messages (email or letter)"),
    "email": N_("emails"),
    "letter": N_("letters"),
}


def _print_unsubscribed(report: Any, *, entries: list[Any], channel: str, single: bool) -> None:
    """What `unsubscribe` added: one address in a sentence, an imported file in counts."""
    what = _(WHAT_STOPS[channel])
    if single and entries:
        value = entries[0].value
        if report.added:
            click.echo(_("{value} gets no more {what}").format(value=value, what=what))
        else:
            click.echo(
                _("{value} is already on the suppression list: no more {what}").format(
                    value=value, what=what
                )
            )
        return
    invalid = ngettext("{n} invalid line", "{n} invalid lines", len(report.invalid)).format(
        n=len(report.invalid)
    )
    click.echo(
        _(
            "{added} added to the suppression list ({scope}), {already} already there, {invalid}"
        ).format(
            added=len(report.added),
            scope=_(SCOPES[channel]),
            already=len(report.already),
            invalid=invalid,
        )
    )
    for problem in report.invalid:
        click.echo(f"  {problem}")


# hook: the feedback commands (bounces, returned, serve); their logic is in outreach/feedback/
WAITS = "waits for the owner"  # not translated: the action's code (the values below are said)
_ACTIONS = {
    "counted": N_("counted"),
    "blocked": N_("counted, and blocked"),
    "already read": N_("already read before: moved, nothing changed"),
    "not counted": N_("not counted (automatic reply): moved"),
    "left in place": N_("not a bounce: left in place"),  # not translated: the key, a code
    "not matched": N_("not matched: set aside in not-ours, nobody blocked"),
    "stopped": N_("a request to stop: no more emails to this contact"),
    WAITS: N_("a reply: waits for you in `outreach replies`"),
    "not ours": N_("not outreach's: set aside in not-ours"),
}


@click.command(
    epilog=examples(
        "outreach bounces                          # read the config's bounce mailbox",
        "outreach bounces --maildir ~/Maildir/.bounces --json",
    )
)
@click.option(
    "--maildir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Read this Maildir instead of the config's bounces mailbox.",
)
@clock_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def bounces(
    maildir: Path | None,
    day: date | None,
    now: datetime | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Read bounces, complaints and auto-replies; block the addresses that must be blocked."""
    from outreach.feedback.process import read_bounces
    from outreach.model.config import find_config, load_settings
    from outreach.rules.blocks import describe_block

    settings = load_settings(find_config(config_path))
    today, current = clock(settings, day=day, now=now)
    report = read_bounces(settings, maildir=maildir, environ=os.environ, today=today, now=current)
    code = EXIT_FAILED if report.problems else EXIT_OK
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        sys.exit(code)
    counts = report.counts()
    if not report.messages:
        click.echo(_("{mailbox}: no mail").format(mailbox=report.mailbox))
    else:
        shown = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
        click.echo(
            ngettext(
                "{mailbox}: {n} message: {counts}",
                "{mailbox}: {n} messages: {counts}",
                len(report.messages),
            ).format(mailbox=report.mailbox, n=len(report.messages), counts=shown)
        )
    for message in report.messages:
        who = ", ".join(message.addresses) or _("no address")
        if message.contact_ids:
            who = _("{who} (contact {ids})").format(who=who, ids=", ".join(message.contact_ids))
        detail = "; ".join(d for d in (message.status, message.diagnostic) if d)
        line = f"  {message.source}: {message.kind}, {who}: {_(_ACTIONS[message.action])}"
        if detail:
            line += f" [{detail}]"
        if message.problem:
            line += f" — {message.problem}"
        click.echo(line)
    for block in report.blocked:
        click.echo(_("blocked: {block}").format(block=describe_block(block)))
    print_feedback_extras(report)
    sys.exit(code)


@click.command(
    epilog=examples(
        "outreach returned c012 c031               # the post brought these letters back",
        "outreach returned --import devoluciones.csv --json",
    )
)
@click.argument("contact_ids", metavar="ID ...", nargs=-1)
@click.option(
    "--import",
    "import_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The post's list of returned letters: a CSV with an id column, or one id per line.",
)
@clock_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def returned(
    contact_ids: tuple[str, ...],
    import_file: Path | None,
    day: date | None,
    now: datetime | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Letters the post returned: no more letters to that address until it changes."""
    from outreach.feedback.returned import ReturnedEntry, mark_returned, read_returned_file
    from outreach.model.config import find_config, load_settings

    if not contact_ids and import_file is None:
        raise click.UsageError(_("give contact ids, or --import FILE"))
    settings = load_settings(find_config(config_path))
    today, current = clock(settings, day=day, now=now)
    entries = [ReturnedEntry(value.strip()) for value in contact_ids]
    problems: list[Problem] = []
    if import_file is not None:
        found, problems = read_returned_file(import_file)
        entries.extend(found)
    report = mark_returned(
        settings,
        entries=entries,
        source=import_file,
        today=today,
        now=current,
        problems=problems,
    )
    done = report.blocked or report.already
    code = EXIT_OK if not report.problems else EXIT_FAILED if done else EXIT_NOTHING_DONE
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        sys.exit(code)
    for block in report.blocked:
        click.echo(
            _(
                "{id}: no more letters to this postal address (until it changes in the "
                "contacts file); campaigns with fallback send email instead"
            ).format(id=block.contact_id)
        )
    for contact_id in report.already:
        click.echo(_("{id}: this postal address was blocked already").format(id=contact_id))
    for problem in report.problems:
        fail(str(problem))
    sys.exit(code)


@click.command(
    epilog=examples(
        "outreach serve                            # http://127.0.0.1:8025, behind your web server",
        "outreach serve --host 0.0.0.0 --port 8080",
    )
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8025, show_default=True, help="Port (0: any)."
)
@config_option
@handle_errors
def serve(host: str, port: int, config_path: Path | None) -> None:
    """Receive one-click unsubscribes (RFC 8058) at the path of the config's unsubscribe URL."""
    import logging  # here, not at import: a command's start stays light

    from outreach.feedback.receiver import make_receiver, route_for
    from outreach.logs import configure_logging
    from outreach.model.config import find_config, load_settings

    settings = load_settings(find_config(config_path))
    route_for(settings)  # a URL that cannot be verified stops here, before listening
    try:
        server = make_receiver(settings, host=host, port=port)
    except OSError as exc:
        raise OutreachError(
            _("cannot listen on {host}:{port}: {problem}").format(
                host=host, port=port, problem=exc.strerror
            ),
            hint=_("pick another --port, or stop what listens there"),
        ) from None
    configure_logging(stream=sys.stderr, stream_level=logging.INFO, log_file=None)
    click.echo(
        _("listening on {url} (stop with Ctrl-C)").format(url=f"http://{host}:{server.server_port}")
    )
    sys.stdout.flush()

    def stop(*_signal: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
