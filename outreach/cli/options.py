"""Options several commands share (one decorator each), date types, the clock."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from outreach.cli.errors import F
from outreach.cli.helptext import EXAMPLES
from outreach.i18n import _
from outreach.model.errors import OutreachError

if TYPE_CHECKING:
    import logging  # a command that logs imports it (outreach.logs): not every start

    from outreach.model.config import Basics, Settings


class _DateType(click.ParamType[date]):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(
                _("{value} is not a date as YYYY-MM-DD").format(value=repr(value)), param, ctx
            )


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
            self.fail(
                _("{value} is not a date and time as YYYY-MM-DDTHH:MM").format(value=repr(value)),
                param,
                ctx,
            )


DATE = _DateType()


DATETIME = _DateTimeType()


def examples(*lines: str) -> str:
    """A command's --help epilog: a few example command lines, kept as written (`\b`); each
    line's comment (after `# `) is translated when --help is shown (cli/helptext.py)."""
    return f"\b\n{EXAMPLES}\n" + "\n".join(f"  {line}" for line in lines)


def workers_from_env(environ: Mapping[str, str]) -> int | None:
    """OUTREACH_WORKERS: how many processes render a large run (default: one per core)."""
    value = environ.get("OUTREACH_WORKERS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.UsageError(
            _("OUTREACH_WORKERS must be a whole number from 1 (got {value})").format(
                value=repr(value)
            )
        )
    return int(value)


def clock(settings: Basics, *, day: date | None, now: datetime | None) -> tuple[date, datetime]:
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
