"""The command line: parse arguments, call the library, print. No business logic here."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from outreach import __version__
from outreach.config import Settings, find_config, load_settings
from outreach.errors import OutreachError, Problem
from outreach.runner import RunSummary

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


def handle_errors(func: F) -> F:
    """Turn our errors into `error: file:line: what — what to do` and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OutreachError as exc:
            _fail(str(exc))
            sys.exit(EXIT_NOTHING_DONE)
        except BrokenPipeError:
            sys.exit(EXIT_OK)  # the reader (`| head`) has had enough
        except OSError as exc:
            # Disk full, permissions, a folder that vanished: say which file, no traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc} — check the folder's space and permissions")
            sys.exit(EXIT_NOTHING_DONE)

    return wrapper  # type: ignore[return-value]


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
    for c in summary.campaigns:
        if c.skipped:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(c.skipped.items()))
            click.echo(f"skipped in {c.name}: {reasons}")
        if c.batch:
            click.echo(f"letters for {c.name}: {c.letters} letters, {c.pages} pages in {c.batch}")
    problems = [p for c in summary.campaigns for p in c.problems]
    if problems:
        click.echo(f"{len(problems)} message(s) could not be made:")
        _print_problems(problems)
    if summary.problems:
        click.echo(f"{len(summary.problems)} problem(s) in the contacts file (rows held back):")
        _print_problems(summary.problems)
    if not summary.dry_run and summary.delivery == "outbox":
        made = sum(c.emails for c in summary.campaigns)
        if made:
            click.echo(f"emails written to {summary.outbox}/ — not sent (delivery: outbox)")


def _progress(enabled: bool, total: int) -> Callable[[Iterator[Any]], Iterator[Any]] | None:
    if not enabled or not sys.stderr.isatty():
        return None

    def wrap(items: Iterator[Any]) -> Iterator[Any]:
        with click.progressbar(items, length=total, label="contacts", file=sys.stderr) as bar:
            yield from bar

    return wrap


@cli.command()
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
    config_path: Path | None,
) -> None:
    """Run campaigns for today (or --date): render what is due, record it in the ledger."""
    from outreach.runner import perform_run
    from outreach.workspace import load_workspace

    if not campaigns and not all_campaigns:
        raise click.UsageError(
            "name one or more campaigns (e.g. campaigns/birthday.yaml) or use --all"
        )
    workspace = load_workspace(config_path, campaigns=list(campaigns) or None)
    today, current = clock(workspace.settings, day=day, now=now)
    summary = perform_run(
        workspace=workspace,
        today=today,
        now=current,
        dry_run=dry_run,
        split=split,
        args=sys.argv[1:],
        progress=_progress(not as_json, len(workspace.contacts.contacts)),
    )
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_summary(summary)
    sys.exit(summary.exit_code)


@cli.command()
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
    report = validate_workspace(settings, today=today, now=current)
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


@cli.command()
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


def main() -> None:
    """Entry point of the `outreach` console script."""
    cli(prog_name="outreach")


__all__ = ["cli", "find_config", "load_settings", "main"]
