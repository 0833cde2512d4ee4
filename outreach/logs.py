"""Logging for unattended runs: a rotating log file, and each run's summary as log lines."""

from __future__ import annotations

import logging
import logging.handlers
from collections import Counter
from pathlib import Path
from typing import TextIO

from outreach.deliver.send import SendSummary, Unsent
from outreach.i18n import N_, _, ngettext
from outreach.model.errors import OutreachError, Problem
from outreach.pipeline.summary import RunSummary, shown_line

LOGGER_NAME = "outreach"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
# A year of daily runs is well under 1 MB; five old files keep several years.
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 5
# A log line per problem, up to this many per run; `outreach validate` lists them all.
PROBLEM_LINES = 20
# A line per reason messages were held back for, by the outcome.
HELD_LINES = {
    "skipped": N_("  skipped in {campaign}: {n} {reason}: {names}"),
    "failed": N_("  failed in {campaign}: {n} {reason}: {names}"),
    "missed": N_("  missed in {campaign}: {n} {reason}: {names}"),
}
# A message the send step could not deliver, by what became of it.
UNSENT_LINES = {
    "failed": N_("  failed: {contact} ({campaign} {occurrence}): {error}"),
    "uncertain": N_("  uncertain: {contact} ({campaign} {occurrence}): {error}"),
}


class _OurHandler:
    """Marks the handlers configure_logging added, so a second call replaces them."""


class _StreamHandler(logging.StreamHandler[TextIO], _OurHandler):
    pass


class _FileHandler(logging.handlers.RotatingFileHandler, _OurHandler):
    pass


def configure_logging(
    *, stream: TextIO | None, stream_level: int = logging.INFO, log_file: Path | None = None
) -> logging.Logger:
    """Send the `outreach` logger to a stream and/or a rotating log file; return the logger."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _OurHandler)]:
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    if stream is not None:
        console = _StreamHandler(stream)
        console.setLevel(stream_level)
        console.setFormatter(formatter)
        logger.addHandler(console)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = _FileHandler(
                log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
            )
        except OSError as exc:
            raise OutreachError(
                _("cannot open the log file: {error}").format(error=exc.strerror),
                path=log_file,
                hint=_("check the path given to --log-file and that its folder is writable"),
            ) from None
        file_handler.setLevel(logging.INFO)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    logger.setLevel(logging.INFO)
    # Our handlers are the whole story: nothing goes on to the root logger's.
    logger.propagate = False
    return logger


def needs_attention(summary: RunSummary) -> bool:
    """Whether a person should look at this run: failures, uncertain sends, bad data rows."""
    return bool(
        summary.exit_code
        or summary.uncertain
        or summary.problems
        or any(c.problems for c in summary.campaigns)
    )


def send_needs_attention(summary: SendSummary) -> bool:
    """Whether a person should look at this send step: failures, uncertain or stopped sends."""
    return bool(summary.exit_code or summary.needs_human)


def summary_lines(summary: RunSummary) -> list[str]:
    """One line for the run and one per campaign (counts as in the run's table)."""
    emails = sum(c.emails for c in summary.campaigns)
    letters = sum(c.letters for c in summary.campaigns)
    deferred = sum(c.deferred for c in summary.campaigns)
    head = _("run for {date}: {emails}, {letters}, {deferred}, {failed}").format(
        date=summary.run_date.isoformat(),
        emails=ngettext("{n} email", "{n} emails", emails).format(n=emails),
        letters=ngettext("{n} letter", "{n} letters", letters).format(n=letters),
        deferred=_counted_deferred(deferred),
        failed=_counted_failed(summary.failed),
    )
    if summary.dry_run:
        head += _(" (dry run)")
    lines = [head]
    for c in summary.campaigns:
        line = _(
            "  {campaign}: due {due}, done before {already}, emails {emails}, "
            "letters {letters}, deferred {deferred}, skipped {skipped}, failed {failed}"
        ).format(
            campaign=c.name,
            due=c.due,
            already=c.already,
            emails=c.emails,
            letters=c.letters,
            deferred=c.deferred,
            skipped=sum(c.skipped.values()),
            failed=c.failed,
        )
        if c.skipped:
            line += " (" + ", ".join(f"{n} {r}" for r, n in sorted(c.skipped.items())) + ")"
        lines.append(line)
    if summary.sending is not None:
        lines.append("  " + send_line(summary.sending))
    return lines


def _counted_deferred(n: int) -> str:
    return ngettext("{n} deferred", "{n} deferred", n).format(n=n)


def _counted_failed(n: int) -> str:
    return ngettext("{n} failed", "{n} failed", n).format(n=n)


def send_line(summary: SendSummary) -> str:
    """The send step in one line."""
    line = _("send: {sent} of {waiting} waiting, {failed}, {uncertain} uncertain").format(
        sent=ngettext("{n} sent", "{n} sent", summary.sent).format(n=summary.sent),
        waiting=summary.waiting,
        failed=_counted_failed(len(summary.failed)),
        uncertain=len(summary.needs_human),
    )
    held = sum(wait.count for wait in summary.quiet)
    if held:
        line += _(", {n} held for quiet time").format(n=held)
    if summary.missed:
        line += _(", {n} missed").format(n=summary.missed)
    if summary.stopped:
        line += _("; stopped: {why}").format(why=summary.stopped)
    return line


def log_summary(logger: logging.Logger, summary: RunSummary, *, label: str = "") -> None:
    """Log a run's summary: INFO when all went well, WARNING with the problems otherwise."""
    level = logging.WARNING if needs_attention(summary) else logging.INFO
    lines = summary_lines(summary)
    if label:
        lines[0] = _("{label}: {line}").format(label=label, line=lines[0])
    for line in lines:
        logger.log(level, line)
    message_problems = [p for c in summary.campaigns for p in c.problems]
    for problems, more in (
        (
            message_problems,
            _("`outreach history --status failed` lists every message that failed"),
        ),
        (summary.problems, _("see `outreach validate`")),
    ):
        _log_problems(logger, problems, more=more)
    if summary.sending is not None:
        _log_unsent(logger, summary.sending)
    else:
        _log_uncertain(logger, summary.uncertain_emails)
    for c in summary.campaigns:
        for (outcome, reason), held in c.held_by_reason().items():
            names = ", ".join(
                _("{contact} (line {line})").format(contact=h.contact_id, line=h.line)
                if h.line
                else h.contact_id
                for h in held[:PROBLEM_LINES]
            )
            if len(held) > PROBLEM_LINES:
                names += _(" and {n} more").format(n=len(held) - PROBLEM_LINES)
            said = _(HELD_LINES.get(outcome, HELD_LINES["skipped"]))
            line = said.format(campaign=c.name, n=len(held), reason=reason, names=names)
            logger.log(level, "%s", line)


def _log_problems(logger: logging.Logger, problems: list[Problem], *, more: str) -> None:
    """Each different problem once (with how often it came), up to PROBLEM_LINES."""
    # The same sentence in two campaigns is two lines: each says its campaign.
    lines = list(Counter((problem.campaign, str(problem)) for problem in problems).items())
    for (campaign, text), count in lines[:PROBLEM_LINES]:
        problem = shown_line(text, count)
        if campaign:
            said = _("  problem [{campaign}]: {problem}").format(campaign=campaign, problem=problem)
        else:
            said = _("  problem: {problem}").format(problem=problem)
        logger.warning("%s", said)
    if len(lines) > PROBLEM_LINES:
        extra = len(lines) - PROBLEM_LINES
        said = ngettext(
            "  … and {n} more problem ({more})", "  … and {n} more problems ({more})", extra
        ).format(n=extra, more=more)
        logger.warning("%s", said)


def _log_uncertain(logger: logging.Logger, uncertain: list[Unsent]) -> None:
    for unsent in uncertain[:PROBLEM_LINES]:
        said = _(
            "  uncertain: {contact} ({campaign} {occurrence}): {error} — it may have arrived; "
            "check the mailbox, then `outreach send --retry-uncertain` if it did not"
        ).format(
            contact=unsent.contact_id,
            campaign=unsent.campaign,
            occurrence=unsent.occurrence_key,
            error=unsent.error,
        )
        logger.warning("%s", said)


def log_send_summary(logger: logging.Logger, summary: SendSummary, *, label: str = "") -> None:
    """Log a send step on its own (`outreach send`), as log_summary does a run."""
    level = logging.WARNING if send_needs_attention(summary) else logging.INFO
    line = _("send for {date} (SMTP {server}): {send}").format(
        date=summary.send_date.isoformat(), server=summary.server, send=send_line(summary)
    )
    if label:
        line = _("{label}: {line}").format(label=label, line=line)
    logger.log(level, "%s", line)
    _log_unsent(logger, summary)


def _log_unsent(logger: logging.Logger, summary: SendSummary) -> None:
    for said, unsent in [
        *((UNSENT_LINES["failed"], u) for u in summary.failed[:PROBLEM_LINES]),
        *((UNSENT_LINES["uncertain"], u) for u in summary.needs_human[:PROBLEM_LINES]),
    ]:
        line = _(said).format(
            contact=unsent.contact_id,
            campaign=unsent.campaign,
            occurrence=unsent.occurrence_key,
            error=unsent.error,
        )
        logger.warning("%s", line)
