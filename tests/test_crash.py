"""Crash safety: `outreach run` killed with SIGKILL at many points, then run again.

Each case writes a workspace of a few thousand contacts, starts the real CLI as a subprocess,
kills it at one point (before it reads anything, while it holds the lock, after N outbox files,
while it commits a batch of ledger rows, twice in a row...), runs it again to the end (the same
day, or the next one) and checks exactly-once against the outbox and the ledger:

* every due occurrence is in the outbox exactly once and in the ledger exactly once as
  `rendered`, pointing at that file; the opted-out and suppressed ones are `skipped`;
* no outbox file without a ledger row, no ledger row whose file is missing, no temporary file;
* every file is a complete email for its contact (it parses, with the ledger's Message-ID);
* every run in the ledger has ended (the dead ones were settled by the next run).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
from conftest import ForkedRun, Workspace, unmeasured
from processes import has_open

from outreach.ledger import Ledger
from outreach.pipeline.run import CHUNK, LEDGER_BATCH
from outreach.shards import shard_of

DAY = date(2026, 11, 24)
CONTACTS = 1500
# Birthdays on 25-27 November with `days_before: 3`: due on the 24th and still on the 25th,
# so a rerun on the next day must complete the same set.
DUE_DAYS = (25, 26, 27)
BATCH = LEDGER_BATCH  # the ledger is written once per this many messages

TEMPLATES = {
    # The contact id in the body shows each file holds its own contact's message.
    "birthday.txt.j2": "Hola {{ contact.first_name }}, ¡feliz cumpleaños! ({{ contact.id }})\n"
    "Tu regalo: {{ coupon }}\n",
}


@dataclass(frozen=True)
class Population:
    """Who is in contacts.csv and what each should end up with."""

    due: frozenset[str]  # in the birthday window on DAY (and on DAY + 1)
    opted_out: frozenset[str]  # due, but opt_out=email in the CSV
    suppressed: frozenset[str]  # due, but on the ledger's suppression list
    emails: dict[str, str]

    @property
    def rendered(self) -> frozenset[str]:
        return self.due - self.opted_out - self.suppressed


def contact_rows(n: int) -> tuple[list[str], Population, dict[str, str]]:
    """CSV rows; the population; the suppression list (value → channel) to apply."""
    rows: list[str] = []
    due: set[str] = set()
    opted: set[str] = set()
    emails: dict[str, str] = {}
    suppress: dict[str, str] = {}
    for i in range(n):
        cid = f"c{i:05d}"
        address = f"persona.{i}@example.com"
        emails[cid] = address
        opt_out = ""
        if i % 100 == 7:
            birthday = f"{1 + i % 28:02d}/06/{1950 + i % 50}"  # far from the window
        else:
            birthday = f"{DUE_DAYS[i % 3]}/11/{1950 + i % 50}"
            due.add(cid)
            if i % 100 == 13:
                opt_out = "email"
                opted.add(cid)
            elif i % 100 == 29:
                # By id for some, by address (in another case) for others.
                suppress[cid if i % 200 == 29 else address.upper()] = "email"
            elif i % 100 == 31:
                suppress[cid] = "all"
        rows.append(
            f"{cid},Persona{i},Apellido,{address},{birthday},,,,,email,es,customer,{opt_out}"
        )
    suppressed = {
        cid for cid, address in emails.items() if cid in suppress or address.upper() in suppress
    }
    population = Population(
        due=frozenset(due),
        opted_out=frozenset(opted),
        suppressed=frozenset(suppressed & due),
        emails=emails,
    )
    return rows, population, suppress


def apply_suppressions(ws: Workspace, suppress: dict[str, str]) -> None:
    with Ledger.open(ws.root / "state" / "ledger.sqlite") as ledger:
        for value, channel in suppress.items():
            ledger.suppress(value, channel=channel, source="test", now=datetime.now(UTC))


def start_run(
    ws: Workspace, day: date, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> ForkedRun:
    """A run to kill: unmeasured, since a killed process never writes its coverage data."""
    return ws.start("run", "--all", "--date", day.isoformat(), *args, env=env, measured=False)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


@dataclass(frozen=True)
class KillPoint:
    """When to SIGKILL the run: `kind` says what to wait for, `value` how much of it.

    `files`: the run kills itself just before it links the (N+1)-th due contact's email into
    the outbox, so the first N are there (tests/killpoints.py, inside the run: no polling, the
    same point on any machine). The others are watched from outside, and the run is killed
    once they hold: `started` at once, `opened` contacts.csv open, `lock` taken, `ledger`
    created, `seen` the N-th file there (for a run whose workers write the files), `wal` the
    next write to the ledger's log after the N-th file (the commit of that batch).
    """

    kind: str  # started | opened | lock | ledger | files | seen | wal
    value: int = 0


def kill_at(
    ws: Workspace,
    point: KillPoint,
    population: Population,
    *,
    url: str | None = None,
    shard: str | None = None,
) -> None:
    """Start a run, SIGKILL it at `point`; fail if it ended on its own first.

    With `url` the run's ledger is that PostgreSQL database (`lock`: it has taken the lock);
    with `shard` (shard-K-of-N) it runs that shard only.
    """
    state = ws.root / "state"
    folder = ws.root / "out" / "outbox" / DAY.isoformat()
    if shard is not None:
        folder /= shard
    folder /= "birthday"
    env = {"OUTREACH_LEDGER_URL": url} if url is not None else {}
    args = ("--shard", shard.split("-")[1] + "/" + shard.split("-")[3]) if shard else ()
    # The run writes files in contacts.csv order, so "N files exist" is "the N-th exists" (a
    # run after a killed one may skip some): one stat per poll from outside, where counting a
    # folder of thousands would steal the run's CPU; from inside, the run dies as it is about
    # to link the next one's.
    order = sorted(population.rendered)
    if point.kind == "files":
        env["OUTREACH_TEST_KILLPOINT"] = f"link {order[point.value]}.eml 1"
    nth = folder / f"{order[point.value - 1]}.eml" if point.kind in {"seen", "wal"} else None
    with start_run(ws, DAY, env=env, args=args) as proc:
        if point.kind == "files":
            try:
                proc.wait(timeout=120)
            finally:
                proc.kill()  # a no-op once it is dead
                proc.wait()
            assert proc.stderr is not None
            assert proc.returncode == -signal.SIGKILL, (
                f"the run ended (exit {proc.returncode}) before {point}: "
                f"{proc.stderr.read().decode()}"
            )
            return
        started = time.monotonic()

        def reached() -> bool:
            if point.kind == "started":  # at once: before it has read anything
                return True
            if point.kind == "opened":  # it is loading: contacts.csv is open
                return has_open(proc.pid, ws.root / "contacts.csv")
            if point.kind == "lock" and url is not None:
                return pg_lock_taken(url, proc.pid)
            if point.kind == "lock":
                return file_size(state / "run.lock") > 0
            if point.kind == "ledger":
                return (state / "ledger.sqlite").exists()
            assert nth is not None
            return nth.exists()

        try:
            while not reached():
                if proc.poll() is not None:
                    assert proc.stderr is not None
                    pytest.fail(
                        f"the run ended (exit {proc.returncode}) before {point}: "
                        f"{proc.stderr.read().decode()}"
                    )
                if time.monotonic() - started > 60:
                    pytest.fail(f"{point} never happened")
                time.sleep(0.0005)
            if point.kind == "wal":
                # The next change in the write-ahead log: the batch of ledger rows that the
                # N-th file completes is being committed.
                wal = state / "ledger.sqlite-wal"
                size = file_size(wal)
                while file_size(wal) == size and proc.poll() is None:
                    time.sleep(0.0001)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()  # a no-op once it is dead; stops it if the test failed
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run must die by SIGKILL, not finish"


def pause_at(point: str) -> dict[str, str]:
    """The environment for a run that stops itself (SIGSTOP) at `point`, "KIND MATCH N" as in
    tests/killpoints.py, until the test sends it SIGCONT."""
    return {"OUTREACH_TEST_PAUSEPOINT": point}


def wait_until_paused(proc: ForkedRun | subprocess.Popen[Any], timeout: float = 60) -> None:
    """Until `proc` has stopped itself at its pause point; fail if it ends first. (Only then
    may it be sent SIGCONT: sent before, the stop would come after it and last.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
        except FileNotFoundError:
            stat = ""
        if stat.rsplit(")", 1)[-1].split()[:1] == ["T"]:  # stopped
            return
        assert proc.poll() is None, "the run ended before its pause point"
        assert time.monotonic() < deadline, "the run never reached its pause point"
        time.sleep(0.005)


def pg_lock_taken(url: str, pid: int) -> bool:
    """Whether the run with this pid has taken (and signed) its lock on PostgreSQL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        found = db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'outreach_locks'"
        ).fetchone()
        if not found or not found[0]:
            return False
        row = db.execute("SELECT count(*) FROM outreach_locks WHERE pid = %s", (pid,)).fetchone()
        return bool(row and row[0])


def rerun(
    ws: Workspace,
    day: date,
    *,
    url: str | None = None,
    args: tuple[str, ...] = (),
    measured: bool = False,
) -> None:
    """The run after a kill. Unmeasured unless asked: tracing its 1,500 contacts doubled a
    kill case's time, and the cases that ask (recovery with work to do) measure what it does."""
    env = {"OUTREACH_LEDGER_URL": url} if url is not None else None
    result = ws.run("run", "--all", "--date", day.isoformat(), *args, env=env, measured=measured)
    assert result.code == 0, result.out + result.err


def ledger_rows(ws: Workspace, url: str | None, sql: str) -> list[tuple[object, ...]]:
    """The rows of `sql` on the workspace's ledger: its SQLite file, or the database at `url`."""
    if url is None:
        with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as db:
            return db.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url) as pg:
        return pg.execute(sql).fetchall()


def ledger_counts(ws: Workspace, url: str | None = None) -> tuple[int, int]:
    """(rendered rows, outbox files) right after a kill: a chunk's rows are claimed before
    its files are written, so files lag rows by up to a chunk."""
    path = ws.root / "state" / "ledger.sqlite"
    rows = 0
    if url is not None:
        rows = int(
            ledger_rows(ws, url, "SELECT count(*) FROM messages WHERE status = 'rendered'")[0][0]
        )  # type: ignore[call-overload]
    elif path.exists():
        with closing(sqlite3.connect(path)) as db:
            have = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'messages'")
            if have.fetchone()[0]:
                rows = db.execute(
                    "SELECT count(*) FROM messages WHERE status = 'rendered'"
                ).fetchone()[0]
    files = len(list((ws.root / "out").rglob("*.eml"))) if (ws.root / "out").exists() else 0
    return rows, files


def parse_complete(data: bytes) -> Message:
    """The email in `data`; fails on a truncated or malformed message."""
    message = BytesParser(policy=compat32).parsebytes(data)
    assert not message.defects, message.defects
    parts = list(message.walk())
    for part in parts:
        assert not part.defects, part.defects
    leaves = [part for part in parts if not part.is_multipart()]
    assert leaves and all(part.get_payload(decode=True) for part in leaves)
    boundary = message.get_boundary()
    if boundary is not None:  # multipart: the closing delimiter is the very end of the file
        assert data.rstrip().endswith(f"--{boundary}--".encode())
    return message


def check_exactly_once(
    ws: Workspace,
    population: Population,
    days: list[date],
    *,
    url: str | None = None,
    shards: int | None = None,
) -> None:
    """Every due occurrence exactly once in the outbox and the ledger; nothing stray.

    `url`: the ledger is that PostgreSQL database; `shards`: the runs were shards of so many.
    """
    with unmeasured():  # the test's own reading of 1,500 files: no package code to measure
        _check_exactly_once(ws, population, days, url=url, shards=shards)


def _check_exactly_once(
    ws: Workspace, population: Population, days: list[date], *, url: str | None, shards: int | None
) -> None:
    root = ws.root
    rows: list[tuple[Any, ...]] = ledger_rows(
        ws,
        url,
        "SELECT contact_id, campaign, occurrence_key, status, artifact, message_id, reason, "
        "run_date FROM messages",
    )
    ((unfinished,),) = ledger_rows(ws, url, "SELECT count(*) FROM runs WHERE ended_at IS NULL")
    assert unfinished == 0, "a run died and was never settled"
    keys = Counter((cid, campaign, key) for cid, campaign, key, *_ in rows)
    assert max(keys.values()) == 1
    assert {key for _, _, key, *_ in rows} == {"birthday:2026"}

    rendered = {cid: row for cid, _, _, status, *row in rows if status == "rendered"}
    skipped = {cid: row for cid, _, _, status, *row in rows if status == "skipped"}
    assert Counter(status for _, _, _, status, *_ in rows) == {
        "rendered": len(population.rendered),
        "skipped": len(population.opted_out | population.suppressed),
    }
    assert set(rendered) == population.rendered
    assert set(skipped) == population.opted_out | population.suppressed
    for cid, (_artifact, _mid, reason, _day) in skipped.items():
        assert reason == "opted out (email)", (cid, reason)

    files = [path for path in (root / "out").rglob("*") if path.is_file()]
    strays = [path for path in files if path.suffix != ".eml" or path.name.startswith(".")]
    assert strays == [], "temporary or unexpected files left behind"
    on_disk = {path.relative_to(root).as_posix() for path in files}
    in_ledger = {artifact for artifact, *_ in rendered.values()}
    assert on_disk - in_ledger == set(), "outbox files without a ledger row"
    assert in_ledger - on_disk == set(), "ledger rows whose file is missing"
    assert len(files) == len(population.rendered)
    parts = [f"shard-{k}-of-{shards}/" for k in range(1, shards + 1)] if shards else [""]
    allowed = {f"out/outbox/{day.isoformat()}/{part}birthday" for day in days for part in parts}
    assert {path.parent.relative_to(root).as_posix() for path in files} <= allowed

    for cid, (artifact, message_id, _reason, run_day) in rendered.items():
        if shards:
            part = f"shard-{shard_of(cid, shards)}-of-{shards}/"
            assert artifact.startswith(f"out/outbox/{run_day}/{part}birthday/")
        else:
            assert artifact.startswith(f"out/outbox/{run_day}/birthday/")
        assert artifact.endswith(f"/{cid}.eml")
        data = (root / artifact).read_bytes()
        message = parse_complete(data)
        assert message["Message-ID"] == f"<{message_id}>"
        assert population.emails[cid] in message["To"]
        assert f"({cid})".encode() in data


@pytest.fixture
def crash_workspace(
    make_workspace: Callable[..., Workspace],
) -> Callable[..., tuple[Workspace, Population]]:
    def make(*, with_suppressions: bool = True) -> tuple[Workspace, Population]:
        rows, population, suppress = contact_rows(CONTACTS)
        ws = make_workspace(rows, templates=TEMPLATES)
        if with_suppressions:
            apply_suppressions(ws, suppress)
        else:
            population = Population(
                due=population.due,
                opted_out=population.opted_out,
                suppressed=frozenset(),
                emails=population.emails,
            )
        return ws, population

    return make


def files_at_commit(batch: int) -> int:
    """How many outbox files exist when the run commits its `batch`-th batch of rows.

    A batch is BATCH records in contacts.csv order, and the skipped (opted-out, suppressed)
    contacts have a row but no file, so the commits do not fall on round numbers of files.
    """
    _, population, _ = contact_rows(CONTACTS)
    records = sorted(population.due)[: batch * BATCH]
    return sum(1 for cid in records if cid in population.rendered)


FIRST_COMMIT, SECOND_COMMIT = files_at_commit(1), files_at_commit(2)


def files_of_first_chunk() -> int:
    """How many outbox files the run's first chunk of contacts (CHUNK rows of contacts.csv)
    makes: the run claims a chunk's rows, then writes its files, so a run killed as it links
    the next file has claimed the second chunk and written none of it."""
    _, population, _ = contact_rows(CONTACTS)
    return sum(1 for cid in population.rendered if int(cid.removeprefix("c")) < CHUNK)


FIRST_CHUNK = files_of_first_chunk()

# (kill points in order, day of the completing rerun as days after DAY)
CASES = {
    # Before the run has read anything, and while it loads the workspace (before the lock).
    "at-start": ([KillPoint("started")], 0),
    "loading": ([KillPoint("opened")], 0),
    # The lock is held: the run is recovering, marking missed windows, or beginning.
    "lock-held": ([KillPoint("lock")], 0),
    # The first outbox files, whose rows are still in memory.
    "first-file": ([KillPoint("files", 1)], 0),
    "mid-first-batch": ([KillPoint("files", 250)], 0),
    # Around the first ledger commit: the file before it, then in or just after the commit
    # (the next change of the write-ahead log once the files are nearly there).
    "before-first-commit": ([KillPoint("files", FIRST_COMMIT - 1)], 0),
    "first-commit": ([KillPoint("wal", FIRST_COMMIT - 10)], 0),
    "second-commit": ([KillPoint("wal", SECOND_COMMIT - 10)], 0),
    "late": ([KillPoint("files", SECOND_COMMIT + 250)], 0),
    # Killed twice before a run completes: the second run recovers, then dies too; or it dies
    # while it removes the first one's stray files.
    "twice": ([KillPoint("files", 500), KillPoint("files", 1200)], 0),
    "during-recovery": ([KillPoint("files", SECOND_COMMIT + 250), KillPoint("lock")], 0),
    # Between a chunk's claim (its rows committed) and the writing of its files.
    "between-claim-and-write": ([KillPoint("files", FIRST_CHUNK)], 0),
    # The rerun is on the next day: the dead run's files are in yesterday's folder.
    "next-day": ([KillPoint("files", 1300)], 1),
}


# The reruns coverage measures: recovery removing a dead run's claims, and finishing a recovery
# that was itself killed.
MEASURED_RERUNS = {"between-claim-and-write", "during-recovery", "twice"}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_completes_exactly_once_on_the_next_run(
    case: str, crash_workspace: Callable[..., tuple[Workspace, Population]]
) -> None:
    points, rerun_after = CASES[case]
    ws, population = crash_workspace()
    for point in points:
        kill_at(ws, point, population)
    rows, files = ledger_counts(ws)
    assert files <= rows <= len(population.rendered)
    if case == "between-claim-and-write":
        # The dead run left rows whose file was never made: recovery has work to do.
        assert rows > files, (files, rows)
    rerun_day = DAY + timedelta(days=rerun_after)
    rerun(ws, rerun_day, measured=case in MEASURED_RERUNS)
    check_exactly_once(ws, population, sorted({DAY, rerun_day}))


@pytest.mark.slow
def test_a_run_killed_while_creating_the_ledger_is_completed(
    crash_workspace: Callable[..., tuple[Workspace, Population]],
) -> None:
    ws, population = crash_workspace(with_suppressions=False)
    assert not (ws.root / "state").exists()
    kill_at(ws, KillPoint("ledger"), population)
    rerun(ws, DAY)
    check_exactly_once(ws, population, [DAY])
    # And a further run on the next day changes nothing.
    before = sorted(p.relative_to(ws.root) for p in (ws.root / "out").rglob("*"))
    rerun(ws, DAY + timedelta(days=1))
    assert sorted(p.relative_to(ws.root) for p in (ws.root / "out").rglob("*")) == before
    check_exactly_once(ws, population, [DAY])


@pytest.mark.slow
def test_a_killed_parallel_run_completes_exactly_once(
    crash_workspace: Callable[..., tuple[Workspace, Population]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two worker processes render while the parent records (the CLI subprocesses inherit
    # the environment). Kill the parent mid-run: its workers finish their chunk at most and
    # exit, holding the workspace lock until then, so a rerun may first be told to wait.
    monkeypatch.setenv("OUTREACH_WORKERS", "2")
    ws, population = crash_workspace()
    kill_at(ws, KillPoint("seen", 900), population)
    deadline = time.monotonic() + 30
    while True:
        result = ws.run("run", "--all", "--date", DAY.isoformat())
        if result.code != 2 or time.monotonic() > deadline:
            break
        assert "another run is in progress" in result.err
        time.sleep(0.2)
    assert result.code == 0, result.out + result.err
    check_exactly_once(ws, population, [DAY])
