"""The owner's side of what came back: `outreach replies` and `outreach unblock`, and the
undo of `outreach unsubscribe` (`--list`, `--remove`)."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from outreach.cli.errors import EXIT_NOTHING_DONE, EXIT_OK, handle_errors
from outreach.cli.options import clock, clock_options, config_option, examples
from outreach.cli.views import channel_words, source_words
from outreach.i18n import _, ngettext

# hook: the owner's side of what came back — replies, and undoing suppressions and blocks;
# each command builds, calls one function of outreach/feedback/queue.py, and prints.


def print_feedback_extras(report: Any) -> None:
    """What `bounces` adds after its messages: suppressions, mail not ours, complaint rate."""
    for contact_id, channel, source in report.suppressed:
        click.echo(
            _(
                "suppressed: {id} gets no more {channel} ({why}); "
                "undo with `outreach unsubscribe --remove {id} --reason ...`"
            ).format(id=contact_id, channel=channel_words(channel), why=source_words(source))
        )
    if report.others:
        click.echo(
            ngettext(
                "{n} message of the replies mailbox was not for outreach",
                "{n} messages of the replies mailbox were not for outreach",
                report.others,
            ).format(n=report.others)
        )
    rate = report.complaint_rate
    if rate is not None:
        line = ngettext(
            "complaints: {complaints} in {n} email over the last 30 days ({rate} per 1,000)",
            "complaints: {complaints} in {n} emails over the last 30 days ({rate} per 1,000)",
            report.emails,
        ).format(complaints=report.complaints, n=report.emails, rate=f"{rate:.1f}")
        if rate >= 1.0:
            line = _(
                "{line} — warning: above 1 per 1,000 (Gmail asks senders to stay below 3)"
            ).format(line=line)
        click.echo(line)


@click.group(
    invoke_without_command=True,
    epilog=examples(
        "outreach replies                          # what waits for you",
        'outreach replies done 12 --note "called her back"',
        "outreach replies stop 14                  # an unclear request you read as a stop",
    ),
)
@click.option("--all", "everything", is_flag=True, help="Also the replies already dealt with.")
@clock_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable rows.")
@config_option
@click.pass_context
@handle_errors
def replies(
    ctx: click.Context,
    everything: bool,
    day: date | None,
    now: datetime | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """What people wrote back and waits for you: complaints, questions, thanks, unclear requests."""
    if ctx.invoked_subcommand is not None:
        return
    from outreach.feedback.queue import list_replies
    from outreach.model.config import find_config, load_settings

    settings = load_settings(find_config(config_path))
    today, _now = clock(settings, day=day, now=now)
    views = list_replies(settings, today=today, everything=everything)
    if as_json:
        click.echo(
            json.dumps({"replies": [v.as_dict() for v in views]}, ensure_ascii=False, indent=2)
        )
        return
    if not views:
        click.echo(_("no replies wait for you") if not everything else _("no replies yet"))
    for view in views:
        r = view.reply
        who = f"{r.contact_id} ({view.name})" if view.name else r.contact_id
        click.echo(
            ngettext(
                "#{id}  {who}, {campaign}, received {received} (waiting {n} day): {kind}, {status}",
                "#{id}  {who}, {campaign}, received {received} (waiting {n} days): {kind}, "
                "{status}",
                view.waiting_days,
            ).format(
                id=r.id,
                who=who,
                campaign=r.campaign or _("no campaign"),
                received=r.received.isoformat(),
                n=view.waiting_days,
                kind=r.kind,
                status=r.status,
            )
        )
        click.echo(f"    {r.subject}: {r.excerpt}")
        if r.note:
            click.echo("    " + _("note: {note}").format(note=r.note))


@replies.command(
    "done",
    epilog=examples(
        "outreach replies done 12",
        'outreach replies done 12 --note "called her back"',
    ),
)
@click.argument("reply_id", metavar="ID", type=int)
@click.option("--note", default=None, help="What you did about it (kept with the reply).")
@config_option
@handle_errors
def replies_done(reply_id: int, note: str | None, config_path: Path | None) -> None:
    """Close a reply: you dealt with it (it is kept, with your note)."""
    from outreach.feedback.queue import close_reply
    from outreach.model.config import find_config, load_settings

    settings = load_settings(find_config(config_path))
    _today, current = clock(settings, day=None, now=None)
    closed = close_reply(settings, reply_id, note=note, stop=False, now=current)
    click.echo(
        _("reply {id} from {contact} is done").format(id=closed.id, contact=closed.contact_id)
    )


@replies.command(
    "stop",
    epilog=examples(
        "outreach replies stop 14",
        "outreach replies stop 14 --config /srv/casa/config.yaml",
    ),
)
@click.argument("reply_id", metavar="ID", type=int)
@config_option
@handle_errors
def replies_stop(reply_id: int, config_path: Path | None) -> None:
    """Read a reply as a request to stop: the contact gets no more emails."""
    from outreach.feedback.queue import close_reply
    from outreach.model.config import find_config, load_settings

    settings = load_settings(find_config(config_path))
    _today, current = clock(settings, day=None, now=None)
    closed = close_reply(settings, reply_id, note=None, stop=True, now=current)
    click.echo(
        _("{contact} gets no more emails (reply {id} kept as the request)").format(
            contact=closed.contact_id, id=closed.id
        )
    )


def unsubscribe_undo(
    *, remove: str | None, reason: str | None, as_json: bool, config_path: Path | None
) -> None:
    """`unsubscribe --list` and `unsubscribe --remove ID_OR_ADDRESS --reason TEXT`."""
    from outreach.feedback.queue import list_suppressions, remove_suppression
    from outreach.model.config import find_config, load_settings
    from outreach.rules.blocks import describe_block

    settings = load_settings(find_config(config_path))
    if remove is None:
        found = list_suppressions(settings)
        if as_json:
            click.echo(json.dumps(found.as_dict(), ensure_ascii=False, indent=2))
            return
        if not found.rows and not found.blocks:
            click.echo(_("the suppression list is empty and nothing is blocked"))
        for value, channel, source, since in found.rows:
            click.echo(
                _("{value}: no {channel} since {since} ({why})").format(
                    value=value,
                    channel=channel_words(channel),
                    since=since[:10],
                    why=source_words(source),
                )
            )
        for block in found.blocks:
            click.echo(_("blocked: {block}").format(block=describe_block(block)))
        return
    if reason is None:
        raise click.UsageError(_('--remove needs --reason "why" (it is kept)'))
    today, current = clock(settings, day=None, now=None)
    lifted = remove_suppression(settings, remove, reason=reason, today=today, now=current)
    if as_json:
        rows = [{"value": v, "channel": c, "source": s} for v, c, s in lifted]
        click.echo(json.dumps({"removed": rows, "reason": reason}, ensure_ascii=False, indent=2))
        sys.exit(EXIT_OK if lifted else EXIT_NOTHING_DONE)
    if not lifted:
        click.echo(_("{value} is not on the suppression list").format(value=remove))
        sys.exit(EXIT_NOTHING_DONE)
    for value, channel, source in lifted:
        click.echo(
            _("{value} may get {channel} again (was: {why})").format(
                value=value, channel=channel_words(channel), why=source_words(source)
            )
        )


@click.command(
    epilog=examples(
        "outreach unblock ana@example.com          # a bounce blocked it by mistake",
        "outreach unblock c012 --channel letter",
    )
)
@click.argument("target", metavar="ID_OR_ADDRESS")
@click.option(
    "--channel",
    type=click.Choice(["email", "letter", "all"]),
    default=None,
    help="Only this channel's block (default: every block of it).",
)
@click.option("--reason", default="unblocked by the owner", help="Why (kept).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def unblock(
    target: str, channel: str | None, reason: str, as_json: bool, config_path: Path | None
) -> None:
    """Remove a block that bounces or returned letters made: the address may be used again."""
    from outreach.feedback.queue import unblock as remove_blocks
    from outreach.model.config import find_config, load_settings
    from outreach.rules.blocks import block_dict, describe_block

    settings = load_settings(find_config(config_path))
    today, current = clock(settings, day=None, now=None)
    removed = remove_blocks(
        settings, target, channel=channel, reason=reason, today=today, now=current
    )
    code = EXIT_OK if removed else EXIT_NOTHING_DONE
    if as_json:
        data = {"unblocked": [block_dict(b) for b in removed], "reason": reason}
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        sys.exit(code)
    if not removed:
        click.echo(_("nothing is blocked for {target}").format(target=target))
    for block in removed:
        click.echo(_("unblocked: {block}").format(block=describe_block(block)))
    sys.exit(code)
