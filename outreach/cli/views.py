"""How results are shown: the run's table, problems, progress bars."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from outreach.cli.errors import fail
from outreach.i18n import N_, _, ngettext

if TYPE_CHECKING:
    from outreach.deliver.send import SendObserver, SendProgress, SendSummary, Unsent
    from outreach.model.errors import Problem
    from outreach.pipeline.summary import CampaignSummary, RunSummary


# Where the problems a summary leaves out are: a message that could not be made is a failed
# row of the ledger (a full disk is no problem `validate` could find).
SEE_VALIDATE = N_("see `outreach validate`")
MESSAGE_PROBLEMS = N_("`outreach history --status failed` lists every message that failed")
VALIDATE_JSON = N_("`outreach validate --json` lists them all")


def print_problems(problems: list[Problem], *, limit: int = 20, more: str = SEE_VALIDATE) -> None:
    """Each different problem once (with how often it came), up to `limit`; `more` (marked
    with N_) says where the others are."""
    from outreach.pipeline.summary import distinct_lines, shown_line

    lines = distinct_lines(problems)
    for text, count in lines[:limit]:
        click.echo(f"  {shown_line(text, count)}")
    if len(lines) > limit:
        click.echo("  " + _("… and {n} more ({where})").format(n=len(lines) - limit, where=_(more)))


# The run's table: its columns' titles.
RUN_COLUMNS = (
    N_("campaign"),
    N_("due"),
    N_("done before"),
    N_("emails"),
    N_("letters"),
    N_("deferred"),
    N_("skipped"),
    N_("failed"),
    N_("missed"),
)
# What happened to a held-back message, in words (the summary's outcome codes).
OUTCOMES = {"skipped": N_("skipped"), "failed": N_("failed"), "missed": N_("missed")}


def print_summary(summary: RunSummary) -> None:
    """The human summary of a run."""
    day = summary.run_date.isoformat()
    if summary.dry_run:
        click.echo(
            _("outreach run for {date} — dry run: nothing written, nothing sent").format(date=day)
        )
    else:
        click.echo(_("outreach run for {date}").format(date=day))
    header = tuple(_(column) for column in RUN_COLUMNS)
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
    from outreach.pipeline.summary import SHOWN_PER_REASON

    contacts_file = summary_contacts_file(summary)
    for (outcome, reason), held in c.held_by_reason().items():
        shown = ", ".join(
            _("{id} ({file} line {line})").format(id=h.contact_id, file=contacts_file, line=h.line)
            if h.line
            else h.contact_id
            for h in held[:SHOWN_PER_REASON]
        )
        extra = len(held) - SHOWN_PER_REASON
        if extra > 0:
            shown = _("{listed} and {n} more").format(listed=shown, n=extra)
        click.echo(
            _("{outcome} in {campaign}: {n} {reason}: {contacts}").format(
                outcome=_(OUTCOMES.get(outcome, outcome)),
                campaign=c.name,
                n=len(held),
                reason=reason,
                contacts=shown,
            )
        )
    if c.deferred:
        click.echo(
            _(
                "deferred in {campaign}: {n} by the cadence policy, tried again on the "
                "next run inside their window (`outreach explain ID` says why)"
            ).format(campaign=c.name, n=c.deferred)
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
            letters = ngettext(
                "{letters} (covering {n} more at the same address)",
                "{letters} (covering {n} more at the same addresses)",
                c.merged,
            ).format(letters=letters, n=c.merged)
        pages = ngettext("{n} page", "{n} pages", c.pages).format(n=c.pages)
        click.echo(
            _("letters for {campaign}: {letters}, {pages} in {batch}").format(
                campaign=c.name, letters=letters, pages=pages, batch=c.batch
            )
        )


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
        click.echo(
            _("emails written to {outbox}/ — not sent (delivery: outbox)").format(
                outbox=summary.outbox
            )
        )
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
    "reply": N_("asked to stop in a reply"),
    "mailto": N_("wrote to the unsubscribe address"),
    "owner": N_("asked to stop in a reply (confirmed by you)"),
    "complaint": N_("marked an email as spam"),
    "one-click": N_("unsubscribed with one click"),
    "cli": N_("unsubscribed by hand"),
}
# A channel a suppression covers, in words (said after "no more", "no … since").
CHANNELS = {"email": N_("email"), "letter": N_("letter"), "all": N_("email or letter")}


def source_words(source: str) -> str:
    """Who asked for a suppression, in words (the source itself when it has none)."""
    return _(SOURCES[source]) if source in SOURCES else source


def channel_words(channel: str) -> str:
    """What a suppression stops, in words (the channel itself when it has none)."""
    return _(CHANNELS[channel]) if channel in CHANNELS else channel


def print_came_back(summary: RunSummary) -> None:
    """The run's "what came back" section: each suppression people's answers made since the
    previous run, with how to undo it, and the replies that wait."""
    if not summary.came_back and not summary.replies_waiting:
        return
    click.echo(_("what came back since the previous run:"))
    for value, channel, source in summary.came_back:
        click.echo(
            "  "
            + _(
                "{value} gets no more {channel} ({why}); undo with "
                "`outreach unsubscribe --remove {value} --reason ...`"
            ).format(value=value, channel=channel_words(channel), why=source_words(source))
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
    return summary.contacts_file or _("contacts file")


def summary_default_locale(summary: RunSummary) -> str:
    """The language messages without a variant for theirs were made in."""
    return summary.default_locale or _("the default language")


@contextlib.contextmanager
def send_bar(enabled: bool) -> Iterator[SendObserver | None]:
    """A bar for the send step (emails sent, the rate, each pause counted down), or None."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    import threading

    from outreach.progress import ProgressBar

    bar: ProgressBar | None = None
    why = {"rate_limit": _("the rate limit"), "retry": _("a retry")}
    drawing = threading.Lock()  # pauses are told from the connections' threads

    def observe(event: SendProgress) -> None:
        with drawing:
            _draw(event)

    def _draw(event: SendProgress) -> None:
        nonlocal bar
        if event.kind == "start":
            bar = ProgressBar(label=_("emails sent"), total=event.total, stream=sys.stderr)
        elif bar is not None and event.kind == "handed":
            bar.status(None)
            bar.advance()
        elif bar is not None and event.kind == "wait":
            reason = why.get(event.why, event.why)
            # {left} is filled by the bar as it counts down.
            waiting = _("waiting {left} for {reason}").replace("{reason}", reason)
            bar.status(waiting, until=time.monotonic() + event.seconds)

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
                label=_("letters ({campaign})").format(campaign=campaign),
                total=total,
                stream=sys.stderr,
            )
        bar.advance(done - bar.done)
        if done >= total:
            bar.close()

    return update


CONTACTS = N_("contacts")


def progress(enabled: bool, *, label: str = CONTACTS) -> Callable[..., Iterator[Any]] | None:
    """A bar over the items a run reads; `label` (marked with N_) may name `{words}`."""
    if not enabled or not sys.stderr.isatty():
        return None

    def wrap(items: Iterator[Any], **words: str) -> Iterator[Any]:
        import operator

        from outreach.progress import ProgressBar

        # The run streams the contacts: the bar's length is the items' length hint (the
        # file's lines). They come back from the workers in chunks; the bar smooths that.
        total = operator.length_hint(items)
        with ProgressBar(label=_(label).format(**words), total=total, stream=sys.stderr) as bar:
            for item in items:
                bar.advance()
                yield item

    return wrap


def _when(until: datetime, now: datetime) -> str:
    """`09:00` within a day of now, else `2026-11-30 09:00`."""
    if (until - now).total_seconds() < 24 * 3600:
        return until.strftime("%H:%M")
    return until.strftime("%Y-%m-%d %H:%M")


MORE_IN_HISTORY = N_("… and {n} more (see `outreach history`)")


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
        click.echo("  " + _(MORE_IN_HISTORY).format(n=len(uncertain) - 20))


def print_send_summary(summary: SendSummary) -> None:
    """The human summary of a send step."""
    from outreach.model.reasons import words

    held = sum(wait.count for wait in summary.quiet)
    if not summary.waiting:
        click.echo(_("nothing waiting to be sent"))
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
                _("permanent: not tried again")
                if unsent.permanent
                else _("tried again by the next send inside its window")
            )
            click.echo(f"  {unsent.contact_id} ({unsent.campaign}): {unsent.error} — {then}")
        if len(summary.failed) > 20:
            click.echo("  " + _(MORE_IN_HISTORY).format(n=len(summary.failed) - 20))
    if summary.skipped:
        reasons = ", ".join(f"{n} {words(r)}" for r, n in sorted(summary.skipped.items()))
        click.echo(_("not sent after all: {reasons}").format(reasons=reasons))
    for wait in summary.quiet:
        line = ngettext(
            "{reason}: {n} email waits until {when}",
            "{reason}: {n} emails wait until {when}",
            wait.count,
        ).format(reason=words(wait.reason), n=wait.count, when=_when(wait.until, summary.now))
        if wait.closing:
            line = _("{line} ({n} of them will have missed their window by then)").format(
                line=line, n=wait.closing
            )
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
