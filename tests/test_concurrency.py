"""Two runs on one workspace: one acts, the other exits 2 naming the holder; stale locks."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Result, Workspace, unmeasured_env
from test_crash import wait_until_paused

from outreach.ledger.recovery import still_running

DAY = "2026-11-24"
CONTACTS = 3000
# "another run is in progress (pid 1234, since 2026-11-24 09:30:00)"
BUSY = re.compile(
    r"another run is in progress \(pid (\d+), since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\)"
)

# A process that takes the workspace lock the way a run does, says so, and then hangs.
HOLDER = """
import sys, time
from datetime import datetime
from pathlib import Path
from pathlib import Path
from outreach.ledger import acquire_lock
with acquire_lock(Path(sys.argv[1]), now=datetime(2026, 11, 24, 9, 30)):
    print("locked", flush=True)
    time.sleep(120)
"""


def rows(n: int) -> list[str]:
    """N contacts, every one due for the birthday campaign on DAY (birthdays 24-27 Nov)."""
    return [
        f"c{i:05d},Persona{i},Apellido,persona.{i}@example.com,{24 + i % 4}/11/1980,"
        ",,,,email,es,customer,"
        for i in range(n)
    ]


KILLPOINTS = Path(__file__).with_name("killpoints.py")


def start_run(ws: Workspace, *, pause_at: str | None = None) -> subprocess.Popen[str]:
    """`outreach run` as a user starts it; with `pause_at` ("KIND MATCH N", tests/killpoints.py)
    it stops itself there until it is sent SIGCONT."""
    paused = []
    if pause_at is not None:
        kind, point = pause_at.split(" ", 1)
        paused = [str(KILLPOINTS), "--pause", kind, *point.rsplit(" ", 1), "--"]
    return subprocess.Popen(
        [sys.executable, *(paused or ["-m", "outreach"]), "run", "--all", "--date", DAY],
        cwd=ws.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> Result:
    out, err = proc.communicate(timeout=120)
    return Result(proc.returncode, out, err)


def wait_for_lock_holder(ws: Workspace, proc: subprocess.Popen[str]) -> None:
    """Until `proc` has written its pid into state/run.lock (it holds the lock then)."""
    lock = ws.root / "state" / "run.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and f'"pid": {proc.pid}' in lock.read_text()):
        assert proc.poll() is None, "the first run ended before it was seen holding the lock"
        assert time.monotonic() < deadline
        time.sleep(0.001)


def check_each_message_once(ws: Workspace, n: int) -> tuple[int, int]:
    """Each contact's message once in the outbox and once in the ledger; (runs, ended runs)."""
    files = sorted((ws.root / "out").rglob("*"))
    emls = [path for path in files if path.is_file()]
    assert [p.name for p in emls] == [f"c{i:05d}.eml" for i in range(n)]
    with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as db:
        found = db.execute(
            "SELECT contact_id, status, artifact FROM messages ORDER BY contact_id"
        ).fetchall()
        total, ended = db.execute("SELECT count(*), count(ended_at) FROM runs").fetchone()
    assert [(cid, status) for cid, status, _ in found] == [
        (f"c{i:05d}", "rendered") for i in range(n)
    ]
    assert {artifact for _, _, artifact in found} == {
        p.relative_to(ws.root).as_posix() for p in emls
    }
    return total, ended


@pytest.mark.slow
def test_two_runs_started_at_once_one_acts_the_other_exits_2(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(rows(CONTACTS))
    first, second = start_run(ws), start_run(ws)
    results = {first.pid: finish(first), second.pid: finish(second)}
    codes = sorted(result.code for result in results.values())
    assert codes == [0, 2], {pid: (r.code, r.err) for pid, r in results.items()}
    (winner,) = [pid for pid, r in results.items() if r.code == 0]
    (loser,) = [r for r in results.values() if r.code == 2]
    match = BUSY.search(loser.err)
    assert match, loser.err
    assert int(match.group(1)) == winner
    assert loser.out == ""  # it did nothing, so it has nothing to report
    assert check_each_message_once(ws, CONTACTS) == (1, 1)  # one run in the ledger, ended


@pytest.mark.slow
def test_a_run_started_while_another_holds_the_lock_exits_2_and_names_it(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(rows(CONTACTS))
    # The first run stops as it records itself in the ledger, holding the lock, until the
    # second has been refused: on any machine, however slow the second's start.
    first = start_run(ws, pause_at="sql INSERT INTO runs 1")
    try:
        wait_until_paused(first)
        wait_for_lock_holder(ws, first)
        second = ws.run("run", "--all", "--date", DAY)
        assert first.poll() is None, "the first run must still hold the lock"
    finally:
        os.kill(first.pid, signal.SIGCONT)
        done = finish(first)
    assert done.code == 0, done.err
    assert second.code == 2
    match = BUSY.search(second.err)
    assert match, second.err
    assert int(match.group(1)) == first.pid
    # `since` is when the first run really started (the wall clock), not --date at some hour.
    since = datetime.strptime(match.group(2), "%Y-%m-%d %H:%M:%S")
    madrid = datetime.now(ZoneInfo("Europe/Madrid")).replace(tzinfo=None)  # the config's zone
    assert abs((madrid - since).total_seconds()) < 600, match.group(2)
    assert "wait for that run to finish" in second.err
    assert check_each_message_once(ws, CONTACTS) == (1, 1)
    # Once the first run is over, the lock is free: a new run acts (and has nothing new).
    # Unmeasured: 3,000 contacts already done, a path the smaller runs measure.
    again = ws.run("run", "--all", "--date", DAY, "--json", measured=False)
    assert again.code == 0, again.err
    assert '"already_done": 3000' in again.out


def test_a_stale_lock_from_a_killed_process_is_taken_over(
    make_workspace: Callable[..., Workspace],
) -> None:
    n = 20
    ws = make_workspace(rows(n))
    state = ws.root / "state"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdout=subprocess.PIPE,
        text=True,
        env=unmeasured_env(),
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            # While the holder lives, runs are refused and name it.
            refused = ws.run("run", "--all", "--date", DAY)
            assert refused.code == 2
            assert f"another run is in progress (pid {holder.pid}, since 2026-11-24 09:30:00)" in (
                refused.err
            )
            assert not (ws.root / "out").exists()
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
    lock = state / "run.lock"
    assert f'"pid": {holder.pid}' in lock.read_text()  # the dead holder's details remain
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 0, result.err
    assert check_each_message_once(ws, n) == (1, 1)
    assert lock.read_text() == ""  # released by the run that took it over


def test_a_stale_lock_file_naming_a_dead_pid_does_not_block(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(rows(5))
    lock = ws.root / "state" / "run.lock"
    lock.parent.mkdir()
    # What a crashed run on another kernel (a restored backup, a copied folder) leaves:
    # details on disk, but no process holding the lock.
    lock.write_text('{"pid": 999999, "since": "2026-11-23T09:30:00+01:00"}\n')
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 0, result.err
    assert check_each_message_once(ws, 5) == (1, 1)


def test_a_process_that_took_a_dead_runs_id_is_not_that_run() -> None:
    # Recovery leaves alone a run whose process still runs on this machine (its lock on the
    # server was cut, it goes on). After a reboot the dead run's id may be anyone's: a process
    # that started after the run did is not the run, and recovery goes ahead.
    host = socket.gethostname()
    before = datetime.now(UTC)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as proc:
        try:
            assert still_running(host, proc.pid, datetime.now(UTC))  # its own run
            assert not still_running(host, proc.pid, before - timedelta(hours=1))
            assert not still_running("another-machine", proc.pid, datetime.now(UTC))
        finally:
            proc.kill()
    assert not still_running(host, proc.pid, datetime.now(UTC))  # gone
