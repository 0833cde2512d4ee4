"""The command line: parse arguments, call the library, print. No business logic here."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from outreach import __version__
from outreach.config import Settings, find_config, load_settings
from outreach.errors import OutreachError, Problem
from outreach.ledger import STATUSES
from outreach.summary import SHOWN_PER_REASON, RunSummary

if TYPE_CHECKING:
    from outreach.sending import SendObserver, SendProgress, SendSummary, Unsent
    from outreach.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_NOTHING_DONE = 0, 1, 2


class _DateType(click.ParamType[date]):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date as YYYY-MM-DD", param, ctx)


class _DateTimeType(click.ParamType[datetime]):
    name = "YYYY-MM-DDTHH:MM"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date and time as YYYY-MM-DDTHH:MM", param, ctx)


DATE = _DateType()
DATETIME = _DateTimeType()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def json_error(*, kind: str, message: str, exit_code: int, **details: object) -> None:
    """An error as `--json` prints it: `{"error": {...}}` on stdout (the exit code as ever)."""
    error = {"kind": kind, "message": message, "exit_code": exit_code, **details}
    click.echo(json.dumps({"error": error}, ensure_ascii=False, indent=2))


def handle_errors(func: F) -> F:
    """Turn our errors into `error: file:line: what — what to do` (JSON under --json), exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except OutreachError as exc:
            if as_json:
                kind = type(exc).__name__.removesuffix("Error").lower() or "outreach"
                json_error(
                    kind=kind,
                    message=str(exc),
                    exit_code=EXIT_NOTHING_DONE,
                    detail=exc.message,
                    path=exc.path,
                    line=exc.line,
                    field=exc.field,
                    hint=exc.hint,
                )
            else:
                _fail(str(exc))
            sys.exit(EXIT_NOTHING_DONE)
        except BrokenPipeError:
            sys.exit(EXIT_OK)  # the reader (`| head`) has had enough
        except OSError as exc:
            # Disk full, permissions, a folder that vanished: say which file, no traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            text = f"{where}{exc.strerror or exc} — check the folder's space and permissions"
            if as_json:
                json_error(kind="os", message=text, exit_code=EXIT_NOTHING_DONE, path=exc.filename)
            else:
                _fail(text)
            sys.exit(EXIT_NOTHING_DONE)

    return wrapper  # type: ignore[return-value]


def _examples(*lines: str) -> str:
    """A command's --help epilog: a few example command lines, kept as written (`\b`)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def workers_from_env(environ: Mapping[str, str]) -> int | None:
    """OUTREACH_WORKERS: how many processes render a large run (default: one per core)."""
    value = environ.get("OUTREACH_WORKERS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.UsageError(f"OUTREACH_WORKERS must be a whole number from 1 (got {value!r})")
    return int(value)


def clock(settings: Settings, *, day: date | None, now: datetime | None) -> tuple[date, datetime]:
    """Today and now in the config time zone: `--now`, else `--date` at the current time, else the clock."""
    tz = settings.tz
    if now is not None:
        now = now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)
        return (day or now.date()), now
    real = datetime.now(tz)
    if day is None:
        return real.date(), real
    return day, datetime.combine(day, real.timetz())


def wall_clock(settings: Settings, *, now: datetime | None) -> Callable[[], datetime]:
    """The clock that stamps runs and locks: the real one, or `--now` moving on from there.

    `--date` only says which day a run is for; it never makes up a time of day.
    """
    tz = settings.tz
    if now is None:
        return lambda: datetime.now(tz)
    start = now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def config_option(func: F) -> F:
    """--config, shared by every command that reads a workspace."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="config.yaml to use (default: ./config.yaml).",
    )(func)


def clock_options(func: F) -> F:
    """--date and --now: stand-ins for the clock."""
    func = click.option(
        "--now",
        "now",
        type=DATETIME,
        default=None,
        help="Stand-in for the clock (local time in the config time zone).",
    )(func)
    return click.option(
        "--date",
        "day",
        type=DATE,
        default=None,
        help="Stand-in for today (YYYY-MM-DD).",
    )(func)


def quiet_options(func: F) -> F:
    """--quiet and --log-file: for cron and other unattended runs."""
    func = click.option(
        "--log-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Append a timestamped summary of each run to this file (rotated at 1 MB, 5 kept).",
    )(func)
    return click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="Print nothing unless something failed or needs a person (for cron).",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="outreach")
def cli() -> None:
    """Keep in touch with customers — birthdays, promotions, reminders — without pestering them."""


def _print_problems(problems: list[Problem], *, limit: int = 20) -> None:
    for problem in problems[:limit]:
        click.echo(f"  {problem}")
    if len(problems) > limit:
        click.echo(f"  … and {len(problems) - limit} more (see `outreach validate`)")


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
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(
                str(v).ljust(w) if i == 0 else str(v).rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    contacts_file = summary_contacts_file(summary)
    for c in summary.campaigns:
        for (outcome, reason), held in c.held_by_reason().items():
            shown = ", ".join(
                f"{h.contact_id} ({contacts_file} line {h.line})" if h.line else h.contact_id
                for h in held[:SHOWN_PER_REASON]
            )
            more = (
                f" and {len(held) - SHOWN_PER_REASON} more" if len(held) > SHOWN_PER_REASON else ""
            )
            click.echo(f"{outcome} in {c.name}: {len(held)} {reason}: {shown}{more}")
        if c.deferred:
            click.echo(
                f"deferred in {c.name}: {c.deferred} by the cadence policy, tried again on the "
                "next run inside their window (`outreach explain ID` says why)"
            )
        if c.default_language:
            click.echo(
                f"default language in {c.name}: {c.default_language} message(s) in "
                f"{summary_default_locale(summary)}: no template variant for the contact's language"
            )
        if c.batch:
            shared = f" (covering {c.merged} more at the same addresses)" if c.merged else ""
            click.echo(
                f"letters for {c.name}: {c.letters} letters{shared}, {c.pages} pages in {c.batch}"
            )
    problems = [p for c in summary.campaigns for p in c.problems]
    if problems:
        click.echo(f"{len(problems)} message(s) could not be made:")
        _print_problems(problems)
    if summary.problems:
        click.echo(f"{len(summary.problems)} problem(s) in the contacts file (rows held back):")
        _print_problems(summary.problems)
    made = sum(c.emails for c in summary.campaigns)
    if summary.sending is not None:
        print_send_summary(summary.sending)
    elif made and not summary.dry_run and summary.delivery == "outbox":
        click.echo(f"emails written to {summary.outbox}/ — not sent (delivery: outbox)")
    elif made and not summary.dry_run:
        click.echo(
            f"{made} email(s) rendered and waiting in {summary.outbox}/ — not sent; send them "
            "with `outreach send` or `outreach run --send`"
        )
    if summary.sending is None and summary.uncertain_emails:
        _print_uncertain(summary.uncertain_emails)


def summary_contacts_file(summary: RunSummary) -> str:
    """The contacts file the summary's line numbers refer to."""
    return summary.contacts_file or "contacts file"


def summary_default_locale(summary: RunSummary) -> str:
    """The language messages without a variant for theirs were made in."""
    return summary.default_locale or "the default language"


@contextlib.contextmanager
def _send_bar(enabled: bool) -> Iterator[SendObserver | None]:
    """A bar for the send step (emails sent, the rate, each pause counted down), or None."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    import threading
    import time

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


def _letter_progress(enabled: bool) -> Callable[[str, int, int], None] | None:
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


def _progress(enabled: bool, *, label: str = "contacts") -> Callable[..., Iterator[Any]] | None:
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


@cli.command(
    epilog=_examples(
        "outreach run --all --dry-run --date 2026-11-24   # rehearse a day: nothing is kept",
        "outreach run campaigns/birthday.yaml --send --quiet --log-file run.log",
        "outreach run --all --shard 2/4                   # this machine's quarter of the contacts",
    )
)
@click.argument("campaigns", nargs=-1)
@click.option(
    "--all", "all_campaigns", is_flag=True, help="Run every campaign in the campaigns folder."
)
@clock_options
@click.option(
    "--dry-run", is_flag=True, help="Render everything, write nothing (not even the ledger)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--split", is_flag=True, help="Also write one PDF per letter beside the batch.")
@click.option(
    "--send",
    is_flag=True,
    help="Then send every email waiting in the outbox over SMTP (needs delivery.method: smtp).",
)
# hook: --new-ledger (issue 10)
@click.option(
    "--new-ledger",
    is_flag=True,
    help="Allow a new, empty ledger even though out/ holds messages of earlier runs "
    "(they are made again; `outreach ledger rebuild` records them instead).",
)
@click.option(
    "--shard",
    metavar="K/N",
    help="Take only shard K of N: the contacts whose id hashes into it (one per machine, "
    "all on one PostgreSQL ledger).",
)
@quiet_options
@config_option
@handle_errors
def run(
    campaigns: tuple[str, ...],
    all_campaigns: bool,
    day: date | None,
    now: datetime | None,
    dry_run: bool,
    as_json: bool,
    split: bool,
    send: bool,
    new_ledger: bool,
    shard: str | None,
    quiet: bool,
    log_file: Path | None,
    config_path: Path | None,
) -> None:
    """Run campaigns for today (or --date): render what is due, record it in the ledger."""
    from outreach.logs import log_summary, needs_attention
    from outreach.runner import perform_run
    from outreach.shards import parse_shard
    from outreach.workspace import load_workspace

    if not campaigns and not all_campaigns:
        raise click.UsageError(
            "name one or more campaigns (e.g. campaigns/birthday.yaml) or use --all"
        )
    part = parse_shard(shard) if shard is not None else None
    with run_log(log_file) as log:
        workspace = load_workspace(config_path, campaigns=list(campaigns) or None)
        today, current = clock(workspace.settings, day=day, now=now)
        # The send step's bar ends with the run (before the report forks a process).
        with _send_bar(not (as_json or quiet)) as observe:
            after = _send_step(
                workspace, send=send, dry_run=dry_run, today=today, now=current, observe=observe
            )
            if new_ledger:  # hook: say what starting over costs
                _warn_new_ledger(workspace.settings)
            summary = perform_run(
                workspace=workspace,
                today=today,
                now=current,
                clock=wall_clock(workspace.settings, now=now),
                dry_run=dry_run,
                split=split,
                workers=workers_from_env(os.environ),
                args=sys.argv[1:],
                progress=_progress(not (as_json or quiet)),
                after=after,
                new_ledger=new_ledger,  # hook
                # hook: the letters' bar (issue 13)
                letter_progress=_letter_progress(not (as_json or quiet)),
                shard=part,
            )
        # hook: every real run writes out/reports/<date>.html (issue 13); a failure only warns
        report_file = None if dry_run else _run_report(workspace, summary, now=current)
        if log is not None:
            log_summary(log, summary, label="outreach " + " ".join(sys.argv[1:]))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2))
    elif not quiet or needs_attention(summary):
        print_summary(summary)
    if report_file is not None and not (as_json or quiet):
        click.echo(f"report: {report_file}")
    sys.exit(summary.exit_code)


def _run_report(workspace: Workspace, summary: RunSummary, *, now: datetime) -> Path | None:
    """Write the run's report page; a failure is a warning line on stderr, never an error."""
    from outreach.report import reports_enabled, write_run_report
    from outreach.workspace import display_path

    if not reports_enabled(os.environ):
        return None
    path, error = write_run_report(workspace, summary=summary.as_dict(), now=now)
    if error is not None:
        click.echo(
            f"warning: the run's report page could not be written: {error} — the run itself "
            "is done; `outreach report` makes the page again",
            err=True,
        )
    return display_path(path) if path is not None else None


@cli.command(
    epilog=_examples(
        "outreach validate",
        "outreach validate --date 2026-11-24 --json",
    )
)
@clock_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def validate(
    day: date | None, now: datetime | None, as_json: bool, config_path: Path | None
) -> None:
    """Check config, contacts, campaigns, and render every template for every contact."""
    from outreach.validation import validate_workspace

    settings = load_settings(find_config(config_path))
    today, current = clock(settings, day=day, now=now)
    # hook: a bar per campaign while its templates render for every contact (issue 13)
    report = validate_workspace(
        settings, today=today, now=current, progress=_progress(not as_json, label="checking")
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for line in report.lines:
            click.echo(line)
        if report.blocking:
            click.echo(f"{len(report.blocking)} blocking problem(s):")
            _print_problems(report.blocking, limit=100)
        if report.warnings:
            click.echo(f"{len(report.warnings)} problem(s) that hold back single contacts:")
            _print_problems(report.warnings, limit=100)
        if not report.blocking and not report.warnings:
            click.echo("everything is in order")
    sys.exit(EXIT_NOTHING_DONE if report.blocking else EXIT_OK)


@cli.command(
    epilog=_examples(
        "outreach preview birthday --contact c001",
        "outreach preview birthday --contact c001 --format pdf -o carta.pdf",
    )
)
@click.argument("campaign")
@click.option("--contact", "contact_id", required=True, help="The contact's id.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "html", "eml", "pdf"]),
    default="text",
    show_default=True,
    help="What to show.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file (pdf: default out/preview/CAMPAIGN-ID.pdf).",
)
@clock_options
@config_option
@handle_errors
def preview(
    campaign: str,
    contact_id: str,
    fmt: str,
    output: Path | None,
    day: date | None,
    now: datetime | None,
    config_path: Path | None,
) -> None:
    """Render one campaign's message for one contact, without recording anything."""
    from outreach.preview import render_preview
    from outreach.workspace import load_workspace

    workspace = load_workspace(config_path, campaigns=[campaign])
    today, current = clock(workspace.settings, day=day, now=now)
    result = render_preview(
        workspace, contact_id=contact_id, fmt=fmt, today=today, now=current, output=output
    )
    if isinstance(result, Path):
        click.echo(f"wrote {result}")
    elif output is not None:
        output.write_text(result, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(result, nl=not result.endswith("\n"))


@contextlib.contextmanager
def run_log(log_file: Path | None) -> Iterator[logging.Logger | None]:
    """The --log-file logger (None without one); an error that ends the command is logged too."""
    if log_file is None:
        yield None
        return
    from outreach.logs import configure_logging

    log = configure_logging(stream=None, log_file=log_file)
    try:
        yield log
    except OutreachError as exc:
        log.error("outreach %s: %s", " ".join(sys.argv[1:]), exc)
        raise


@cli.command(
    epilog=_examples(
        "outreach daemon                           # in the foreground, e.g. under systemd",
        "outreach daemon --once --quiet --log-file daemon.log   # from cron",
    )
)
@click.option("--once", is_flag=True, help="Run the jobs that are due now, then exit (for cron).")
@quiet_options
@config_option
@handle_errors
def daemon(once: bool, quiet: bool, log_file: Path | None, config_path: Path | None) -> None:
    """Run the config's schedule in the foreground until SIGTERM or Ctrl-C."""
    import os

    from outreach.logs import configure_logging
    from outreach.scheduler import Daemon, worst_exit_code

    with run_log(log_file):
        runner = Daemon(config=config_path, clock=lambda: datetime.now(UTC), environ=os.environ)
        runner.start()
    # The log goes to stderr (the journal, under systemd); --quiet keeps only what needs a person.
    configure_logging(
        stream=sys.stderr,
        stream_level=logging.WARNING if quiet else logging.INFO,
        log_file=log_file,
    )
    # A stop request only sets a flag: the run in progress always finishes its messages.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.request_stop())
    results = runner.serve(once=once)
    sys.exit(worst_exit_code(results) if once else EXIT_OK)


@cli.command(
    epilog=_examples(
        "outreach init mi-negocio",
        "outreach init mi-negocio --force",
    )
)
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite the files that already exist.")
@handle_errors
def init(directory: Path, force: bool) -> None:
    """Create a workspace in DIR: config, a few contacts, sample campaigns and templates."""
    from outreach.skeleton import create_workspace

    written = create_workspace(directory, today=date.today(), force=force)
    click.echo(f"created a workspace in {directory}:")
    for path in written:
        click.echo(f"  {path.relative_to(directory).as_posix()}")
    click.echo(
        "\nnext steps:\n"
        f"  cd {shlex.quote(str(directory))}\n"
        "  outreach validate               # check config, contacts, campaigns and templates\n"
        "  outreach run --all --dry-run    # see what a run would do today\n"
        "  outreach run --all              # render what is due into out/outbox/\n"
        "then put your business in config.yaml (sender), your customers in contacts.csv, "
        "and your words in campaigns/ and templates/."
    )


def _require_smtp(settings: Settings, what: str) -> None:
    """A usage error unless the config sends over SMTP."""
    if settings.delivery.method != "smtp":
        raise click.UsageError(
            f"{what} sends over SMTP, but delivery.method in config.yaml is "
            f"{settings.delivery.method}: set delivery.method: smtp and delivery.host "
            '(see "Sending for real" in the README)'
        )


def _send_step(
    workspace: Workspace,
    *,
    send: bool,
    dry_run: bool,
    today: date,
    now: datetime,
    observe: SendObserver | None = None,
) -> Callable[..., None] | None:
    """The post-run step (the daemon's too); checks the SMTP setup first for --send."""
    if dry_run:
        if send:
            raise click.UsageError("--dry-run sends nothing: use --dry-run or --send, not both")
        return None
    import os

    from outreach.sending import after_run_step

    if send:
        _require_smtp(workspace.settings, "--send")
    return after_run_step(
        workspace, send=send, environ=os.environ, today=today, now=now, observe=observe
    )


def _when(until: datetime, now: datetime) -> str:
    """`09:00` within a day of now, else `2026-11-30 09:00`."""
    if (until - now).total_seconds() < 24 * 3600:
        return until.strftime("%H:%M")
    return until.strftime("%Y-%m-%d %H:%M")


def _print_uncertain(uncertain: list[Unsent]) -> None:
    click.echo(
        f"{len(uncertain)} email(s) uncertain — they may have arrived; check, "
        "then `outreach send --retry-uncertain` sends them again:"
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
        click.echo(f"sent {summary.sent} email(s) (SMTP {summary.server})")
    if summary.failed:
        click.echo(f"{len(summary.failed)} email(s) failed:")
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
        line = f"{wait.reason}: {wait.count} email(s) wait until {_when(wait.until, summary.now)}"
        if wait.closing:
            line += f" ({wait.closing} of them will have missed their window by then)"
        click.echo(line)
    if summary.missed:
        click.echo(f"{summary.missed} email(s) missed: their window closed before they were sent")
    if summary.settled:
        click.echo(f"{summary.settled} email(s) left half-sent by a killed run are now uncertain")
    if summary.needs_human:
        _print_uncertain(summary.needs_human)
    if summary.stopped:
        _fail(summary.stopped)
        if summary.not_tried:
            click.echo(f"{summary.not_tried} email(s) not tried: they wait for the next send")


@cli.command(
    epilog=_examples(
        "outreach send",
        "outreach send --rendered-on 2026-11-24 --json",
        "outreach send --retry-uncertain",
    )
)
@clock_options
@click.option(
    "--retry-uncertain",
    is_flag=True,
    help="Also send the emails left uncertain again (check first: they may have arrived).",
)
@click.option(
    "--rendered-on",
    type=DATE,
    default=None,
    help="Only the emails rendered on this day (e.g. the batch you looked at).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@quiet_options
@config_option
@handle_errors
def send(
    day: date | None,
    now: datetime | None,
    retry_uncertain: bool,
    rendered_on: date | None,
    as_json: bool,
    quiet: bool,
    log_file: Path | None,
    config_path: Path | None,
) -> None:
    """Send the rendered emails waiting in the outbox over SMTP (delivery.method: smtp)."""
    import os

    from outreach.logs import log_send_summary, send_needs_attention
    from outreach.sending import perform_send

    with run_log(log_file) as log:
        settings = load_settings(find_config(config_path))
        _require_smtp(settings, "outreach send")
        today, current = clock(settings, day=day, now=now)
        with _send_bar(not (as_json or quiet)) as observe:
            summary = perform_send(
                settings=settings,
                environ=os.environ,
                today=today,
                now=current,
                retry_uncertain=retry_uncertain,
                only_run_date=rendered_on,
                observe=observe,
            )
        if log is not None:
            log_send_summary(log, summary, label="outreach " + " ".join(sys.argv[1:]))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2))
    elif not quiet or send_needs_attention(summary):
        click.echo(f"outreach send for {today.isoformat()} {current.strftime('%H:%M')}")
        print_send_summary(summary)
    sys.exit(summary.exit_code)


def _print_table(header: tuple[str, ...], rows: list[tuple[object, ...]], *, left: int = 1) -> None:
    """Columns padded to their widest cell; the first `left` columns flush left."""
    cells = [[str(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        line = "  ".join(
            v.ljust(w) if i < left else v.rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        click.echo(line.rstrip())


@cli.command(
    epilog=_examples(
        "outreach plan",
        "outreach plan --from 2026-11-24 --days 7",
        "outreach plan --contact c003 --days 60",
    )
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=30,
    show_default=True,
    help="How many days to simulate.",
)
@click.option("--from", "start", type=DATE, default=None, help="First day (default: today).")
@click.option(
    "--campaign",
    "campaign_names",
    multiple=True,
    help="Only this campaign (a name or file; repeat for several). Default: all.",
)
@click.option("--contact", "contact_id", default=None, help="Tell this contact's story day by day.")
@click.option(
    "--top",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="How many of the busiest contacts to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable plan.")
@config_option
@handle_errors
def plan(
    days: int,
    start: date | None,
    campaign_names: tuple[str, ...],
    contact_id: str | None,
    top: int,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Simulate the coming days: who gets what, what cadence defers. Writes nothing."""
    from outreach.plan import plan_days
    from outreach.workspace import load_workspace

    workspace = load_workspace(config_path, campaigns=list(campaign_names) or None)
    first, _ = clock(workspace.settings, day=start, now=None)
    if as_json or not sys.stderr.isatty():
        result = plan_days(workspace, start=first, days=days, contact_id=contact_id, top=top)
    else:
        with click.progressbar(length=days, label="days", file=sys.stderr) as bar:
            result = plan_days(
                workspace,
                start=first,
                days=days,
                contact_id=contact_id,
                top=top,
                on_day=lambda _: bar.update(1),
            )
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    period = f"{result.start.isoformat()} to {result.end.isoformat()} ({days} days)"
    if result.contact_id is not None:
        click.echo(f"plan for {result.contact_id}, {period} — simulated: nothing written")
        for line in result.story:
            click.echo(f"  {line}")
        if not result.story:
            click.echo("  nothing happens to this contact in these days")
        return
    click.echo(f"plan for {period} — simulated on a copy of the ledger: nothing written")
    header = ("date", "campaign", "emails", "letters", "deferred", "missed", "skipped")
    rows: list[tuple[object, ...]] = []
    shown = None
    for c in result.counts:
        if c.empty:
            continue
        day = c.day.isoformat() if c.day != shown else ""
        shown = c.day
        rows.append((day, c.campaign, c.emails, c.letters, c.deferred, c.missed, c.skipped))
    for t in result.totals():
        rows.append(("total", t.campaign, t.emails, t.letters, t.deferred, t.missed, t.skipped))
    _print_table(header, rows, left=2)
    quiet = result.days - len({c.day for c in result.counts if not c.empty})
    if quiet:
        click.echo(f"({quiet} day(s) with nothing to do are left out)")
    if not result.pressure:
        click.echo("no contact would get more than one message in these days")
    else:
        click.echo("contacts with the most messages in these days:")
        for busy in result.pressure:
            listed = ", ".join(
                f"{m.campaign} {m.day.isoformat()} ({m.channel})" for m in busy.messages
            )
            click.echo(f"  {busy.contact_id}: {len(busy.messages)} — {listed}")


@cli.command(
    epilog=_examples(
        "outreach report                           # the last 30 days and the next 30",
        "outreach report --from 2026-11-01 --to 2026-11-30 -o noviembre.html",
    )
)
@click.option(
    "--from",
    "start",
    type=DATE,
    default=None,
    help="First day the page looks back on (default: 29 days before --to).",
)
@click.option(
    "--to",
    "end",
    type=DATE,
    default=None,
    help="Last day it looks back on (default: today); the plan covers the 30 days after it.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the page here (default: out/reports/<--to>.html).",
)
@config_option
@handle_errors
def report(
    start: date | None, end: date | None, output: Path | None, config_path: Path | None
) -> None:
    """One self-contained HTML page: what went, what will go, what was held back and why."""
    from outreach.report import build_report, default_period, report_path
    from outreach.workspace import display_path, load_workspace

    workspace = load_workspace(config_path)
    today, current = clock(workspace.settings, day=None, now=None)
    first, last = default_period(today=today, start=start, end=end)
    if first > last:
        raise click.UsageError(f"--from {first} is after --to {last}: give --from on or before it")
    path = build_report(
        workspace,
        start=first,
        end=last,
        now=current,
        output=output if output is not None else report_path(workspace.settings, last),
    )
    click.echo(f"wrote {display_path(path)}")


@cli.command(
    epilog=_examples(
        "outreach explain c003",
        "outreach explain c003 --date 2026-11-24 --json",
    )
)
@click.argument("contact_id")
@clock_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable answer.")
@config_option
@handle_errors
def explain(
    contact_id: str,
    day: date | None,
    now: datetime | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Why a contact does or does not get each campaign's message today (or --date)."""
    from outreach.explain import explain_contact
    from outreach.workspace import load_workspace

    workspace = load_workspace(config_path)
    today, current = clock(workspace.settings, day=day, now=now)
    answer = explain_contact(workspace, contact_id=contact_id, today=today, now=current)
    if as_json:
        click.echo(json.dumps(answer.as_dict(), ensure_ascii=False, indent=2))
        return
    for line in answer.lines():
        click.echo(line)


@cli.command(
    epilog=_examples(
        "outreach history --contact c003",
        "outreach history --status deferred --since 2026-11-01",
        "outreach history --runs --limit 0",
    )
)
@click.option("--contact", "contact_id", default=None, help="Only this contact's messages.")
@click.option("--campaign", default=None, help="Only this campaign's messages.")
@click.option(
    "--since", type=DATE, default=None, help="Only messages of runs on or after this day."
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only messages with this status (repeat for several).",
)
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    help="Show at most this many messages (0: all).",
)
@click.option("--runs", "show_runs", is_flag=True, help="Also list the last 10 runs.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable rows.")
@config_option
@handle_errors
def history(
    contact_id: str | None,
    campaign: str | None,
    since: date | None,
    statuses: tuple[str, ...],
    limit: int,
    show_runs: bool,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """The ledger's messages, newest first: what went to whom, when, and what waits."""
    from outreach.history import UNCERTAIN_ADVICE, describe_counts, read_history
    from outreach.workspace import display_path

    settings = load_settings(find_config(config_path))
    found = read_history(
        settings,
        contact_id=contact_id,
        campaign=campaign,
        since=since,
        statuses=statuses,
        limit=limit,
        runs=10 if show_runs else 0,
    )
    if as_json:
        click.echo(json.dumps(found.as_dict(), ensure_ascii=False, indent=2))
        return
    if not found.exists:
        where = display_path(settings.ledger_path)
        click.echo(f"no ledger yet ({where} does not exist): nothing has run")
        return
    if not found.messages:
        click.echo("no messages match")
    else:
        header = (
            *("date", "contact", "campaign", "occurrence", "channel", "status"),
            *("reason / error", "artifact"),
        )
        _print_table(
            header,
            [
                (
                    m.run_date.isoformat(),
                    m.contact_id,
                    m.campaign,
                    m.occurrence_key,
                    m.channel,
                    m.status,
                    m.error or m.reason or "",
                    m.artifact or "",
                )
                for m in found.messages
            ],
            left=len(header),
        )
        if found.matched > len(found.messages):
            click.echo(
                f"showing the newest {len(found.messages)} of {found.matched} messages "
                "(--limit 0 shows all)"
            )
    if found.runs:
        click.echo("last runs:")
        tz = settings.tz
        rows: list[tuple[object, ...]] = []
        for run_row in found.runs:
            started, ended = run_row["started_at"], run_row["ended_at"]
            args = run_row["args"]
            rows.append(
                (
                    run_row["id"],
                    str(run_row["run_date"]),
                    started.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                    if isinstance(started, datetime)
                    else "",
                    ended.astimezone(tz).strftime("%H:%M") if isinstance(ended, datetime) else "—",
                    shlex.join(str(a) for a in args) if isinstance(args, list) else "",
                    describe_counts(run_row["counts"]),
                )
            )
        _print_table(("run", "date", "started", "ended", "command", "result"), rows, left=6)
    if found.uncertain:
        click.echo(f"{found.uncertain} message(s) uncertain: {UNCERTAIN_ADVICE}")
    # hook: what bounces, complaints and the post blocked for this contact, and why
    from outreach.feedback.blocks import describe_block

    for block in found.blocks:
        click.echo(f"blocked: {describe_block(block)}")


@cli.command(
    epilog=_examples(
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
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@config_option
@handle_errors
def unsubscribe(
    target: str | None,
    channel: str,
    import_file: Path | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Put an address or contact id on the suppression list: no more messages, essential or not."""
    from outreach.contacts import load_contacts
    from outreach.errors import LockError
    from outreach.history import (
        Entry,
        contacts_covered,
        parse_target,
        read_unsubscribe_file,
    )
    from outreach.history import unsubscribe as add_suppressions

    if target is None and import_file is None:
        raise click.UsageError("give an email address or a contact id, or --import FILE")
    settings = load_settings(find_config(config_path))
    _, current = clock(settings, day=None, now=None)
    entries: list[Entry] = []
    if target is not None:
        try:
            entries.append(Entry(parse_target(target)))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="ADDRESS_OR_ID") from None
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
        click.echo("a run is in progress: waiting for it to finish…", err=True)
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
    what = {"all": "messages (email or letter)", "email": "emails", "letter": "letters"}
    if import_file is None and entries:
        value = entries[0].value
        if report.added:
            click.echo(f"{value} gets no more {what[channel]}")
        else:
            click.echo(f"{value} is already on the suppression list: no more {what[channel]}")
    else:
        scope = {"all": "email and letter", "email": "email", "letter": "letter"}[channel]
        click.echo(
            f"{len(report.added)} added to the suppression list ({scope}), "
            f"{len(report.already)} already there, {len(report.invalid)} invalid line(s)"
        )
        for problem in report.invalid:
            click.echo(f"  {problem}")
    for contact in covered:
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
        click.echo(f"  covers contact {contact.id}" + (f" ({name})" if name else ""))
    if entries and not covered and contacts:
        click.echo(
            "  no contact in the contacts file has it (yet); it stays on the list, so a "
            "contact added later with it gets nothing"
        )
    sys.exit(EXIT_FAILED if report.invalid else EXIT_OK)


def _warn_new_ledger(settings: Settings) -> None:
    from outreach.ledger import ledger_exists, read_ledger
    from outreach.rebuild import made_files

    if ledger_exists(settings):
        try:
            if read_ledger(settings, lambda ledger: ledger.runs(limit=1)):
                return  # the ledger has a record: --new-ledger changes nothing
        except OutreachError:
            pass
    made = made_files(settings)
    if made.messages:
        click.echo(
            f"--new-ledger: {made.messages} message(s) already in {settings.paths.out} "
            f"({len(made.emails)} email(s), {made.letters} letter(s)) may be made again",
            err=True,
        )


# hook: the feedback commands (bounces, returned, serve); their logic is in outreach/feedback/
_ACTIONS = {
    "counted": "counted",
    "blocked": "counted, and blocked",
    "already read": "already read before: moved, nothing changed",
    "not counted": "not counted (automatic reply): moved",
    "left in place": "not a bounce: left in place",
    "not matched": "not matched: left in place, nothing changed",
}


@cli.command(
    epilog=_examples(
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
    from outreach.feedback.blocks import describe_block
    from outreach.feedback.process import read_bounces

    settings = load_settings(find_config(config_path))
    today, current = clock(settings, day=day, now=now)
    report = read_bounces(settings, maildir=maildir, environ=os.environ, today=today, now=current)
    code = EXIT_FAILED if report.problems else EXIT_OK
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        sys.exit(code)
    counts = report.counts()
    if not report.messages:
        click.echo(f"{report.mailbox}: no mail")
    else:
        shown = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
        click.echo(f"{report.mailbox}: {len(report.messages)} message(s): {shown}")
    for message in report.messages:
        who = ", ".join(message.addresses) or "no address"
        if message.contact_ids:
            who += f" (contact {', '.join(message.contact_ids)})"
        detail = "; ".join(d for d in (message.status, message.diagnostic) if d)
        line = f"  {message.source}: {message.kind}, {who}: {_ACTIONS[message.action]}"
        if detail:
            line += f" [{detail}]"
        if message.problem:
            line += f" — {message.problem}"
        click.echo(line)
    for block in report.blocked:
        click.echo(f"blocked: {describe_block(block)}")
    sys.exit(code)


@cli.command(
    epilog=_examples(
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

    if not contact_ids and import_file is None:
        raise click.UsageError("give contact ids, or --import FILE")
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
            f"{block.contact_id}: no more letters to this postal address (until it changes "
            "in the contacts file); campaigns with fallback send email instead"
        )
    for contact_id in report.already:
        click.echo(f"{contact_id}: this postal address was blocked already")
    for problem in report.problems:
        _fail(str(problem))
    sys.exit(code)


@cli.command(
    epilog=_examples(
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
    from outreach.feedback.receiver import make_receiver, route_for
    from outreach.logs import configure_logging

    settings = load_settings(find_config(config_path))
    route_for(settings)  # a URL that cannot be verified stops here, before listening
    try:
        server = make_receiver(settings, host=host, port=port)
    except OSError as exc:
        raise OutreachError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="pick another --port, or stop what listens there",
        ) from None
    configure_logging(stream=sys.stderr, stream_level=logging.INFO, log_file=None)
    click.echo(f"listening on http://{host}:{server.server_port} (stop with Ctrl-C)")
    sys.stdout.flush()

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    """Entry point of the `outreach` console script."""
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
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_FAILED)
    if isinstance(code, int) and code:
        sys.exit(code)  # click's own exit (e.g. ctx.exit) without standalone mode


# hook: `outreach ledger rebuild` (issue 10); imported last, it uses this module's helpers
from outreach.cli_ledger import ledger as _ledger_commands  # noqa: E402

cli.add_command(_ledger_commands)

__all__ = ["cli", "find_config", "load_settings", "main"]
