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
from outreach.model.config import find_config, load_settings

# hook: the owner's side of what came back — replies, and undoing suppressions and blocks;
# each command builds, calls one function of outreach/feedback/queue.py, and prints.
SOURCES = {
    "reply": "asked to stop in a reply",
    "mailto": "wrote to the unsubscribe address",
    "owner": "asked to stop in a reply (confirmed by you)",
    "complaint": "marked an email as spam",
    "one-click": "unsubscribed with one click",
    "cli": "unsubscribed by hand",
}


def print_feedback_extras(report: Any) -> None:
    """What `bounces` adds after its messages: suppressions, mail not ours, complaint rate."""
    for contact_id, channel, source in report.suppressed:
        why = SOURCES.get(source, source)
        click.echo(
            f"suppressed: {contact_id} gets no more {channel} ({why}); "
            f"undo with `outreach unsubscribe --remove {contact_id} --reason ...`"
        )
    if report.others:
        click.echo(f"{report.others} message(s) of the replies mailbox were not for outreach")
    rate = report.complaint_rate
    if rate is not None:
        line = (
            f"complaints: {report.complaints} in {report.emails} email(s) over the last "
            f"30 days ({rate:.1f} per 1,000)"
        )
        if rate >= 1.0:
            line += " — warning: above 1 per 1,000 (Gmail asks senders to stay below 3)"
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

    settings = load_settings(find_config(config_path))
    today, _ = clock(settings, day=day, now=now)
    views = list_replies(settings, today=today, everything=everything)
    if as_json:
        click.echo(
            json.dumps({"replies": [v.as_dict() for v in views]}, ensure_ascii=False, indent=2)
        )
        return
    if not views:
        click.echo("no replies wait for you" if not everything else "no replies yet")
    for view in views:
        r = view.reply
        who = f"{r.contact_id} ({view.name})" if view.name else r.contact_id
        click.echo(
            f"#{r.id}  {who}, {r.campaign or 'no campaign'}, received {r.received.isoformat()} "
            f"(waiting {view.waiting_days} day(s)): {r.kind}, {r.status}"
        )
        click.echo(f"    {r.subject}: {r.excerpt}")
        if r.note:
            click.echo(f"    note: {r.note}")


@replies.command("done")
@click.argument("reply_id", metavar="ID", type=int)
@click.option("--note", default=None, help="What you did about it (kept with the reply).")
@config_option
@handle_errors
def replies_done(reply_id: int, note: str | None, config_path: Path | None) -> None:
    """Close a reply: you dealt with it (it is kept, with your note)."""
    from outreach.feedback.queue import close_reply

    settings = load_settings(find_config(config_path))
    _, current = clock(settings, day=None, now=None)
    closed = close_reply(settings, reply_id, note=note, stop=False, now=current)
    click.echo(f"reply {closed.id} from {closed.contact_id} is done")


@replies.command("stop")
@click.argument("reply_id", metavar="ID", type=int)
@config_option
@handle_errors
def replies_stop(reply_id: int, config_path: Path | None) -> None:
    """Read a reply as a request to stop: the contact gets no more emails."""
    from outreach.feedback.queue import close_reply

    settings = load_settings(find_config(config_path))
    _, current = clock(settings, day=None, now=None)
    closed = close_reply(settings, reply_id, note=None, stop=True, now=current)
    click.echo(f"{closed.contact_id} gets no more emails (reply {closed.id} kept as the request)")


def unsubscribe_undo(
    *, remove: str | None, reason: str | None, as_json: bool, config_path: Path | None
) -> None:
    """`unsubscribe --list` and `unsubscribe --remove ID_OR_ADDRESS --reason TEXT`."""
    from outreach.feedback.queue import list_suppressions, remove_suppression
    from outreach.rules.blocks import describe_block

    settings = load_settings(find_config(config_path))
    if remove is None:
        found = list_suppressions(settings)
        if as_json:
            click.echo(json.dumps(found.as_dict(), ensure_ascii=False, indent=2))
            return
        if not found.rows and not found.blocks:
            click.echo("the suppression list is empty and nothing is blocked")
        for value, channel, source, since in found.rows:
            click.echo(f"{value}: no {channel} since {since[:10]} ({SOURCES.get(source, source)})")
        for block in found.blocks:
            click.echo(f"blocked: {describe_block(block)}")
        return
    if reason is None:
        raise click.UsageError('--remove needs --reason "why" (it is kept)')
    today, current = clock(settings, day=None, now=None)
    lifted = remove_suppression(settings, remove, reason=reason, today=today, now=current)
    if as_json:
        rows = [{"value": v, "channel": c, "source": s} for v, c, s in lifted]
        click.echo(json.dumps({"removed": rows, "reason": reason}, ensure_ascii=False, indent=2))
        sys.exit(EXIT_OK if lifted else EXIT_NOTHING_DONE)
    if not lifted:
        click.echo(f"{remove} is not on the suppression list")
        sys.exit(EXIT_NOTHING_DONE)
    for value, channel, source in lifted:
        click.echo(f"{value} may get {channel} again (was: {SOURCES.get(source, source)})")


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
        click.echo(f"nothing is blocked for {target}")
    for block in removed:
        click.echo(f"unblocked: {describe_block(block)}")
    sys.exit(code)
