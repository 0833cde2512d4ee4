"""What cli.py and cli_ledger.py share: exit codes, error handling, --config, the clock, --help examples."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from outreach.errors import OutreachError

if TYPE_CHECKING:
    from outreach.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_NOTHING_DONE = 0, 1, 2


def fail(message: str) -> None:
    """Print `error: message` on stderr."""
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
                fail(str(exc))
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
                fail(text)
            sys.exit(EXIT_NOTHING_DONE)

    return wrapper  # type: ignore[return-value]


def examples(*lines: str) -> str:
    """A command's --help epilog: a few example command lines, kept as written (`\b`)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


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
