"""How results are shown: the run's table, problems, progress bars."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from outreach.i18n import ngettext
from outreach.model.errors import Problem
from outreach.pipeline.summary import (
    SHOWN_PER_REASON,
    CampaignSummary,
    RunSummary,
    distinct_lines,
    shown_line,
)

if TYPE_CHECKING:
    from outreach.deliver.send import SendObserver, SendProgress, SendSummary, Unsent
from outreach.cli.errors import fail


def print_problems(
    problems: list[Problem], *, limit: int = 20, more: str = "see `outreach validate`"
) -> None:
    """Each different problem once (with how often it came), up to `limit`; `more` says
    where the others are."""
    lines = distinct_lines(problems)
    for text, count in lines[:limit]:
        click.echo(f"  {shown_line(text, count)}")
    if len(lines) > limit:
        click.echo(f"  … and {len(lines) - limit} more ({more})")


# Where the problems a summary leaves out are: a message that could not be made is a failed
# row of the ledger (a full disk is no problem `validate` could find).
MESSAGE_PROBLEMS = "`outreach history --status failed` lists every message that failed"
VALIDATE_JSON = "`outreach validate --json` lists them all"


def print_summary(summary: RunSummary) -> None:
    """The human summary of a run."""
    title = f"outreach run for {summary.run_date.isoformat()}"
    if summary.dry_run:
        title += " — dry run: nothing written, nothing sent"
    click.echo(title)
    header = (
        "campaign",
        "due",
        "done before",
        "emails",
        "letters",
        "deferred",
        "skipped",
        "failed",
        "missed",
    )
    rows = [
        (
            c.name,
            c.due,
            c.already,
            c.emails,
            c.letters,
            c.deferred,
            sum(c.skipped.values()),
            c.failed,
            c.missed,
        )
        for c in summary.campaigns
    ]
    print_table(header, list(rows))  # list(): print_table takes rows of any cells
    for c in summary.campaigns:
        _print_campaign_notes(c, summary)
    _print_problems_and_outbox(summary)


def _print_campaign_notes(c: CampaignSummary, summary: RunSummary) -> None:
    """What the run's table does not say about one campaign: who was held back and why, the
    language fallbacks, the letters' batch."""
    contacts_file = summary_contacts_file(summary)
    for (outcome, reason), held in c.held_by_reason().items():
        shown = ", ".join(
            f"{h.contact_id} ({contacts_file} line {h.line})" if h.line else h.contact_id
            for h in held[:SHOWN_PER_REASON]
        )
        more = f" and {len(held) - SHOWN_PER_REASON} more" if len(held) > SHOWN_PER_REASON else ""
        click.echo(f"{outcome} in {c.name}: {len(held)} {reason}: {shown}{more}")
    if c.deferred:
        click.echo(
            f"deferred in {c.name}: {c.deferred} by the cadence policy, tried again on the "
            "next run inside their window (`outreach explain ID` says why)"
        )
    if c.default_language:
        click.echo(
            ngettext(
                "default language in {campaign}: {n} message in {locale}: no template "
                "variant for the contact's language",
                "default language in {campaign}: {n} messages in {locale}: no template "
                "variant for the contact's language",
                c.default_language,
            ).format(campaign=c.name, n=c.default_language, locale=summary_default_locale(summary))
        )
    if c.batch:
        letters = ngettext("{n} letter", "{n} letters", c.letters).format(n=c.letters)
        if c.merged:
            letters += ngettext(
                " (covering {n} more at the same address)",
                " (covering {n} more at the same addresses)",
                c.merged,
            ).format(n=c.merged)
        pages = ngettext("{n} page", "{n} pages", c.pages).format(n=c.pages)
        click.echo(f"letters for {c.name}: {letters}, {pages} in {c.batch}")


def _print_problems_and_outbox(summary: RunSummary) -> None:
    """The problems of the run, then where its emails are."""
    problems = [p for c in summary.campaigns for p in c.problems]
    if problems:
        count = len(problems)
        click.echo(
            ngettext(
                "{n} message could not be made:", "{n} messages could not be made:", count
            ).format(n=count)
        )
        print_problems(problems, more=MESSAGE_PROBLEMS)
    if summary.problems:
        count = len(summary.problems)
        click.echo(
            ngettext(
                "{n} problem in the contacts file (rows held back):",
                "{n} problems in the contacts file (rows held back):",
                count,
            ).format(n=count)
        )
        print_problems(summary.problems)
    made = sum(c.emails for c in summary.campaigns)
    if summary.sending is not None:
        print_send_summary(summary.sending)
    elif made and not summary.dry_run and summary.delivery == "outbox":
        click.echo(f"emails written to {summary.outbox}/ — not sent (delivery: outbox)")
    elif made and not summary.dry_run:
        click.echo(
            ngettext(
                "{n} email rendered and waiting in {outbox}/ — not sent; send it with "
                "`outreach send` or `outreach run --send`",
                "{n} emails rendered and waiting in {outbox}/ — not sent; send them with "
                "`outreach send` or `outreach run --send`",
                made,
            ).format(n=made, outbox=summary.outbox)
        )
    if summary.sending is None and summary.uncertain_emails:
        _print_uncertain(summary.uncertain_emails)
    print_came_back(summary)


# Who asked, in words, for a suppression's source (outreach.feedback).
SOURCES = {
    "reply": "asked to stop in a reply",
    "mailto": "wrote to the unsubscribe address",
    "owner": "asked to stop in a reply (confirmed by you)",
    "complaint": "marked an email as spam",
    "one-click": "unsubscribed with one click",
    "cli": "unsubscribed by hand",
}


def print_came_back(summary: RunSummary) -> None:
    """The run's "what came back" section: each suppression people's answers made since the
    previous run, with how to undo it, and the replies that wait."""
    if not summary.came_back and not summary.replies_waiting:
        return
    click.echo("what came back since the previous run:")
    for value, channel, source in summary.came_back:
        why = SOURCES.get(source, source)
        click.echo(
            f"  {value} gets no more {channel} ({why}); undo with "
            f"`outreach unsubscribe --remove {value} --reason ...`"
        )
    if summary.replies_waiting:
        waiting = ngettext(
            "  {n} reply waits for you: see `outreach replies`",
            "  {n} replies wait for you: see `outreach replies`",
            summary.replies_waiting,
        )
        click.echo(waiting.format(n=summary.replies_waiting))


def summary_contacts_file(summary: RunSummary) -> str:
    """The contacts file the summary's line numbers refer to."""
    return summary.contacts_file or "contacts file"


def summary_default_locale(summary: RunSummary) -> str:
    """The language messages without a variant for theirs were made in."""
    return summary.default_locale or "the default language"


@contextlib.contextmanager
def send_bar(enabled: bool) -> Iterator[SendObserver | None]:
    """A bar for the send step (emails sent, the rate, each pause counted down), or None."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    import threading

    from outreach.progress import ProgressBar

    bar: ProgressBar | None = None
    why = {"rate_limit": "the rate limit", "retry": "a retry"}
    drawing = threading.Lock()  # pauses are told from the connections' threads

    def observe(event: SendProgress) -> None:
        with drawing:
            _draw(event)

    def _draw(event: SendProgress) -> None:
        nonlocal bar
        if event.kind == "start":
            bar = ProgressBar(label="emails sent", total=event.total, stream=sys.stderr)
        elif bar is not None and event.kind == "handed":
            bar.status(None)
            bar.advance()
        elif bar is not None and event.kind == "wait":
            reason = why.get(event.why, event.why)
            bar.status(f"waiting {{left}} for {reason}", until=time.monotonic() + event.seconds)

    try:
        yield observe
    finally:
        if bar is not None:
            bar.close()


def letter_progress(enabled: bool) -> Callable[[str, int, int], None] | None:
    """A bar per campaign's letter batch: letters laid out (they come in chunks of 100)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from outreach.progress import ProgressBar

    bars: dict[str, ProgressBar] = {}

    def update(campaign: str, done: int, total: int) -> None:
        bar = bars.get(campaign)
        if bar is None:
            bar = bars[campaign] = ProgressBar(
                label=f"letters ({campaign})", total=total, stream=sys.stderr
            )
        bar.advance(done - bar.done)
        if done >= total:
            bar.close()

    return update


def progress(enabled: bool, *, label: str = "contacts") -> Callable[..., Iterator[Any]] | None:
    if not enabled or not sys.stderr.isatty():
        return None

    def wrap(items: Iterator[Any], **words: str) -> Iterator[Any]:
        import operator

        from outreach.progress import ProgressBar

        # The run streams the contacts: the bar's length is the items' length hint (the
        # file's lines). They come back from the workers in chunks; the bar smooths that.
        total = operator.length_hint(items)
        with ProgressBar(label=label.format(**words), total=total, stream=sys.stderr) as bar:
            for item in items:
                bar.advance()
                yield item

    return wrap


def _when(until: datetime, now: datetime) -> str:
    """`09:00` within a day of now, else `2026-11-30 09:00`."""
    if (until - now).total_seconds() < 24 * 3600:
        return until.strftime("%H:%M")
    return until.strftime("%Y-%m-%d %H:%M")


def _print_uncertain(uncertain: list[Unsent]) -> None:
    click.echo(
        ngettext(
            "{n} email uncertain — it may have arrived; check, then "
            "`outreach send --retry-uncertain` sends it again:",
            "{n} emails uncertain — they may have arrived; check, then "
            "`outreach send --retry-uncertain` sends them again:",
            len(uncertain),
        ).format(n=len(uncertain))
    )
    for unsent in uncertain[:20]:
        click.echo(
            f"  {unsent.contact_id} ({unsent.campaign} {unsent.occurrence_key}): {unsent.error}"
        )
    if len(uncertain) > 20:
        click.echo(f"  … and {len(uncertain) - 20} more (see `outreach history`)")


def print_send_summary(summary: SendSummary) -> None:
    """The human summary of a send step."""
    held = sum(wait.count for wait in summary.quiet)
    if not summary.waiting:
        click.echo("nothing waiting to be sent")
    elif summary.waiting > held:
        click.echo(
            ngettext(
                "sent {n} email (SMTP {server})", "sent {n} emails (SMTP {server})", summary.sent
            ).format(n=summary.sent, server=summary.server)
        )
    if summary.failed:
        failed = len(summary.failed)
        click.echo(ngettext("{n} email failed:", "{n} emails failed:", failed).format(n=failed))
        for unsent in summary.failed[:20]:
            then = (
                "permanent: not tried again"
                if unsent.permanent
                else "tried again by the next send inside its window"
            )
            click.echo(f"  {unsent.contact_id} ({unsent.campaign}): {unsent.error} — {then}")
        if len(summary.failed) > 20:
            click.echo(f"  … and {len(summary.failed) - 20} more (see `outreach history`)")
    if summary.skipped:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(summary.skipped.items()))
        click.echo(f"not sent after all: {reasons}")
    for wait in summary.quiet:
        line = ngettext(
            "{reason}: {n} email waits until {when}",
            "{reason}: {n} emails wait until {when}",
            wait.count,
        ).format(reason=wait.reason, n=wait.count, when=_when(wait.until, summary.now))
        if wait.closing:
            line += f" ({wait.closing} of them will have missed their window by then)"
        click.echo(line)
    if summary.missed:
        click.echo(
            ngettext(
                "{n} email missed: its window closed before it was sent",
                "{n} emails missed: their window closed before they were sent",
                summary.missed,
            ).format(n=summary.missed)
        )
    if summary.settled:
        click.echo(
            ngettext(
                "{n} email left half-sent by a killed run is now uncertain",
                "{n} emails left half-sent by a killed run are now uncertain",
                summary.settled,
            ).format(n=summary.settled)
        )
    if summary.needs_human:
        _print_uncertain(summary.needs_human)
    if summary.stopped:
        fail(summary.stopped)
        if summary.not_tried:
            click.echo(
                ngettext(
                    "{n} email not tried: it waits for the next send",
                    "{n} emails not tried: they wait for the next send",
                    summary.not_tried,
                ).format(n=summary.not_tried)
            )


def print_table(header: tuple[str, ...], rows: list[tuple[object, ...]], *, left: int = 1) -> None:
    """Columns padded to their widest cell; the first `left` columns flush left."""
    cells = [[str(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        line = "  ".join(
            v.ljust(w) if i < left else v.rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        click.echo(line.rstrip())
