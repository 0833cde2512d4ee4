"""Run the outreach CLI and SIGKILL (or pause) it at a point defined by what it has done, not by time.

    python tests/killpoints.py [--pause] KIND MATCH N -- outreach's arguments…

The process kills itself (with --pause: stops itself, until SIGCONT) just before the N-th step
of KIND whose subject contains MATCH:

* `sql`: an SQL statement starting with MATCH (SQLite's statement trace on every connection
  `sqlite3.connect` opens, which fires as the statement begins: `DELETE FROM messages` kills
  before any row goes);
* `unlink`: a file removed whose path contains MATCH (the interpreter's `os.remove` audit event);
* `rename`: a file moved into place from a path containing MATCH (`os.rename`, `os.replace`);
* `write`: a file opened for writing or appending whose path contains MATCH;
* `link`: a file linked into place whose new name contains MATCH (`os.link`: the outbox links
  each complete email, written unnamed, to its name).

The steps are seen through the interpreter's audit hooks (PEP 578) and SQLite's trace inside the
real CLI process:
no change to outreach, no sleeping, the same point on every run and every machine. Exit status
-9 (SIGKILL) tells the caller the point came; 0 that the command finished without meeting it.
"""

from __future__ import annotations

import os
import runpy
import signal
import sqlite3
import sys
from typing import Any


def install(kind: str, match: str, count: int, signum: int = signal.SIGKILL) -> None:
    """From now on, this process kills itself (or sends itself `signum`: SIGSTOP pauses it
    until the test sends SIGCONT) just before the `count`-th step of `kind` whose subject
    contains `match` (tests/cli_server.py calls it in a forked run whose environment names a
    point in OUTREACH_TEST_KILLPOINT or OUTREACH_TEST_PAUSEPOINT, as "KIND MATCH N")."""
    seen = 0
    mine = os.getpid()  # not a worker forked later, which inherits the hook

    def step() -> None:
        nonlocal seen
        if os.getpid() != mine:
            return
        seen += 1
        if seen == count:
            os.kill(mine, signum)

    def traced(statement: str) -> None:
        if statement.lstrip().upper().startswith(match.upper()):
            step()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        moved = event == "os.rename" and kind == "rename"
        gone = event == "os.remove" and kind == "unlink"
        linked = event == "os.link" and kind == "link"  # (source, new name, …)
        if ((gone or moved) and match in str(args[0])) or (linked and match in str(args[1])):
            step()
        elif event == "open" and kind == "write" and match in str(args[0]):
            mode = args[1] if isinstance(args[1], str) else ""
            flags = args[2] if isinstance(args[2], int) else 0
            if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR):
                step()

    if kind == "sql":
        # Every connection the ledger opens gets the statement trace (the audit event for a
        # new connection fires before it can take one).
        connect = sqlite3.connect

        def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            connection = connect(*args, **kwargs)
            connection.set_trace_callback(traced)
            return connection

        sqlite3.connect = traced_connect
    sys.addaudithook(hook)


def main(argv: list[str]) -> None:
    """Install the hook, then run outreach with the arguments after `--` (`--pause` first:
    stop there instead of dying)."""
    signum = signal.SIGKILL
    if argv[0] == "--pause":
        signum, argv = signal.SIGSTOP, argv[1:]
    kind, match, count = argv[0], argv[1], int(argv[2])
    assert argv[3] == "--", "usage: killpoints.py [--pause] KIND MATCH N -- ARGS…"
    install(kind, match, count, signum)
    sys.argv = ["outreach", *argv[4:]]
    runpy.run_module("outreach", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
