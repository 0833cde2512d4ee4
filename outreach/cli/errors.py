"""Errors, caught once: a problem's place and what to do, exit codes, `--json` errors."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from outreach.i18n import _
from outreach.model.errors import OutreachError

F = TypeVar("F", bound=Callable[..., Any])


EXIT_OK, EXIT_FAILED, EXIT_NOTHING_DONE = 0, 1, 2


def fail(message: str) -> None:
    click.echo(_("error: {message}").format(message=message), err=True)


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
            what = exc.strerror or str(exc)
            text = (
                _("{path}: {problem} — check the folder's space and permissions").format(
                    path=exc.filename, problem=what
                )
                if exc.filename
                else _("{problem} — check the folder's space and permissions").format(problem=what)
            )
            if as_json:
                json_error(kind="os", message=text, exit_code=EXIT_NOTHING_DONE, path=exc.filename)
            else:
                fail(text)
            sys.exit(EXIT_NOTHING_DONE)

    return wrapper  # type: ignore[return-value]
