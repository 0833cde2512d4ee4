"""The ledger on PostgreSQL end to end: shards, the advisory lock, faults, `ledger copy`.

A real server (tests/pg_server.py), the real CLI as a subprocess. The in-process ledger tests
run on both stores in test_ledger.py; here is what only a shared server database has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import smtp_server as servers
from conftest import Workspace, unmeasured_env
from pg_server import PgServer
from smtp_server import RecordingHandler, SmtpServer
from test_crash import (
    DAY,
    FIRST_CHUNK,
    TEMPLATES,
    KillPoint,
    Population,
    check_exactly_once,
    contact_rows,
    kill_at,
    ledger_counts,
    pause_at,
    rerun,
    start_run,
    wait_until_paused,
)
from test_send import delivery_config

from outreach.ledger import Ledger, MessageRecord
from outreach.ledger.postgres import AdvisoryLock
from outreach.model.config import load_settings
from outreach.model.errors import ConfigError, LedgerError, LockError
from outreach.scheduler import DaemonJob, parse_hhmm
from outreach.shards import Shard, parse_shard, shard_of

smtp_server_factory = servers.smtp_server_factory

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
# "another run is in progress (shard-1-of-2 on host, pid 1234, since 2026-11-24 09:00:00)"
BUSY = re.compile(
    r"another run is in progress \((?:(shard-\d+-of-\d+) )?on (\S+), pid (\d+), since "
)
# Small enough to stay quick, large enough for three ledger batches (500 rows each).
CONTACTS = 1300


def pg_env(url: str) -> dict[str, str]:
    return {"OUTREACH_LEDGER_URL": url}


def sql(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(query).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def pg_workspace(
    make_workspace: Callable[..., Workspace], pg_url: str
) -> Callable[..., tuple[Workspace, Population, str]]:
    """A crash-test workspace (test_crash) whose ledger is a fresh PostgreSQL database."""

    def make(n: int = CONTACTS) -> tuple[Workspace, Population, str]:
        rows, population, suppress = contact_rows(n)
        ws = make_workspace(rows, templates=TEMPLATES)
        with Ledger.connect(pg_url) as ledger:
            for value, channel in suppress.items():
                ledger.suppress(value, channel=channel, source="test", now=NOW)
        return ws, population, pg_url

    return make


# -- shards ----------------------------------------------------------------------------------


def test_a_shard_is_a_stable_hash_of_the_id_and_every_contact_has_one() -> None:
    # The same on every machine and every Python: pinned, not computed again.
    assert [shard_of(f"c{i:03d}", 4) for i in range(8)] == [1, 1, 2, 1, 3, 4, 3, 1]
    ids = [f"c{i:05d}" for i in range(4000)]
    owners = Counter(sum(Shard(k, 4).contains(cid) for k in range(1, 5)) for cid in ids)
    assert owners == {1: 4000}  # each contact in exactly one shard
    sizes = Counter(shard_of(cid, 4) for cid in ids)
    assert min(sizes.values()) > 900  # and the shards about even


@pytest.mark.parametrize("spec", ["0/4", "5/4", "2", "a/b", "1/0", "1/5000", "-1/4"])
def test_a_bad_shard_is_refused_with_the_form_to_use(spec: str) -> None:
    with pytest.raises(ConfigError, match="K/N"):
        parse_shard(spec)
    assert parse_shard(" 2 / 4 ") == Shard(2, 4)


def test_shards_on_one_server_make_what_one_run_makes_and_read_as_one_ledger(
    make_workspace: Callable[..., Workspace], pg_url: str, tmp_path: Path
) -> None:
    rows = [
        f"c{i:03d},P{i},A,p{i}@example.com,{24 + i % 3}/11/1980,Calle {i},2800{i % 10},Madrid,ES,"
        f"{'letter' if i % 5 == 0 else 'email'},es,customer,"
        for i in range(60)
    ]
    ws = make_workspace(rows)
    for k in (1, 2, 3):
        result = ws.run(
            "run", "--all", "--date", DAY.isoformat(), "--shard", f"{k}/3", env=pg_env(pg_url)
        )
        assert result.code == 0, result.out + result.err
    sharded = sql(pg_url, "SELECT contact_id, campaign, occurrence_key, status FROM messages")
    # The same workspace run once, whole, on SQLite.
    whole = Workspace(tmp_path / "whole")
    whole.root.mkdir()
    for name in ("config.yaml", "contacts.csv"):
        (whole.root / name).write_bytes((ws.root / name).read_bytes())
    for folder in ("campaigns", "templates"):
        for path in (ws.root / folder).iterdir():
            whole.write(f"{folder}/{path.name}", path.read_text())
    assert whole.run("run", "--all", "--date", DAY.isoformat()).code == 0
    with Ledger.open(whole.root / "state" / "ledger.sqlite", readonly=True) as alone:
        expected = [
            (m.contact_id, m.campaign, m.occurrence_key, m.status) for m in alone.messages()
        ]
    assert sorted(sharded) == sorted(expected) and len(expected) >= 60
    # Each shard's files in its own folder, each contact's in its shard's.
    emails = sorted((ws.root / "out" / "outbox").rglob("*.eml"))
    assert len(emails) == sum(1 for *_, status in expected if status == "rendered")
    for path in emails:
        assert path.parent.parent.name == f"shard-{shard_of(path.name.split('.')[0], 3)}-of-3"
    # history reads the whole shared ledger, and each run says its shard.
    history = ws.run("history", "--json", "--limit", "1000", "--runs", env=pg_env(pg_url))
    assert history.code == 0, history.err
    assert json.loads(history.out)["matched"] == len(expected)
    scopes = sql(pg_url, "SELECT scope, host FROM runs ORDER BY id")
    assert scopes == [(f"shard-{k}-of-3", socket.gethostname()) for k in (1, 2, 3)]


def test_letters_make_one_batch_per_shard_named_for_it(
    make_workspace: Callable[..., Workspace], pg_url: str
) -> None:
    rows = [
        f"c{i:03d},P{i},A,,{27 + i % 2}/11/1980,Calle Mayor {i},28013,Madrid,ES,letter,es,customer,"
        for i in range(12)
    ]
    ws = make_workspace(
        rows,
        campaigns={"birthday.yaml": LETTER_CAMPAIGN},
        templates={"letter.html.j2": "<p>¡Feliz cumpleaños, {{ contact.first_name }}!</p>\n"},
    )
    for k in (1, 2):
        result = ws.run(
            "run", "--all", "--date", DAY.isoformat(), "--shard", f"{k}/2", env=pg_env(pg_url)
        )
        assert result.code == 0, result.out + result.err
    folder = ws.root / "out" / "letters" / DAY.isoformat()
    names = sorted(path.name for path in folder.iterdir())
    assert names == [
        "birthday.shard-1-of-2.manifest.csv",
        "birthday.shard-1-of-2.pdf",
        "birthday.shard-1-of-2.postage.csv",
        "birthday.shard-2-of-2.manifest.csv",
        "birthday.shard-2-of-2.pdf",
        "birthday.shard-2-of-2.postage.csv",
    ]
    for k in (1, 2):
        manifest = (folder / f"birthday.shard-{k}-of-2.manifest.csv").read_text("utf-8-sig")
        ids = set(re.findall(r"\bc\d{3}\b", manifest))
        assert ids and all(shard_of(cid, 2) == k for cid in ids)
    statuses = sql(pg_url, "SELECT status, count(*) FROM messages GROUP BY status")
    assert statuses == [("rendered", 12)]


LETTER_CAMPAIGN = """\
    kind: birthday
    channel: letter
    days_before: 3
    letter:
      template: letter.html.j2
    """


# -- the lock ------------------------------------------------------------------------------


def test_the_same_shard_on_two_machines_one_acts_the_other_exits_2_naming_it(
    pg_workspace: Callable[..., tuple[Workspace, Population, str]],
) -> None:
    ws, _population, url = pg_workspace(40)
    holder = AdvisoryLock(url, scope="shard-1-of-2")
    holder.acquire(now=NOW)
    try:
        busy = ws.run("run", "--all", "--date", DAY.isoformat(), "--shard", "1/2", env=pg_env(url))
        assert busy.code == 2, busy.out + busy.err
        match = BUSY.search(busy.err)
        assert match, busy.err
        assert match.groups() == ("shard-1-of-2", socket.gethostname(), str(os.getpid()))
        # Another shard runs beside it; a run of the whole workspace waits for every shard.
        other = ws.run("run", "--all", "--date", DAY.isoformat(), "--shard", "2/2", env=pg_env(url))
        assert other.code == 0, other.err
        whole = ws.run("run", "--all", "--date", DAY.isoformat(), env=pg_env(url))
        assert whole.code == 2 and BUSY.search(whole.err), whole.err
    finally:
        holder.release()
    assert not (ws.root / "out" / "outbox" / DAY.isoformat() / "shard-1-of-2").exists()
    assert ws.run("run", "--all", "--date", DAY.isoformat(), env=pg_env(url)).code == 0


def test_a_whole_run_holding_the_workspace_keeps_every_shard_out(pg_url: str) -> None:
    whole = AdvisoryLock(pg_url, scope="")
    whole.acquire(now=NOW)
    try:
        with pytest.raises(LockError, match=r"in progress \(on ") as refused:
            AdvisoryLock(pg_url, scope="shard-3-of-4").acquire(now=NOW)
        assert f"pid {os.getpid()}" in str(refused.value)
    finally:
        whole.release()
    shard = AdvisoryLock(pg_url, scope="shard-3-of-4")
    shard.acquire(now=NOW)
    try:
        # Shards of another count would share contacts with it: refused while it runs.
        with pytest.raises(LockError, match="shards of another count") as refused:
            AdvisoryLock(pg_url, scope="shard-1-of-3").acquire(now=NOW)
        assert "shard-3-of-4 is running" in str(refused.value)
        beside = AdvisoryLock(pg_url, scope="shard-1-of-4")
        beside.acquire(now=NOW)
        beside.release()
    finally:
        shard.release()
    again = AdvisoryLock(pg_url, scope="shard-1-of-3")
    again.acquire(now=NOW)
    again.release()


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_server_one_acts_the_other_exits_2(
    pg_workspace: Callable[..., tuple[Workspace, Population, str]],
) -> None:
    ws, population, url = pg_workspace()
    procs = [start_run(ws, DAY, env=pg_env(url)) for _ in range(2)]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        results.append((proc.returncode, err.decode()))
    assert sorted(code for code, _ in results) == [0, 2], results
    (loser,) = [err for code, err in results if code == 2]
    assert BUSY.search(loser), loser
    check_exactly_once(ws, population, [DAY], url=url)


# -- faults --------------------------------------------------------------------------------


def test_a_password_in_config_is_refused(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(
        ["c001,Ana,A,ana@example.com,25/11/1980,,,,,email,es,customer,"],
        config_extra="state:\n  url: postgresql://outreach:s3cret@db.example/shop\n",
    )
    result = ws.run("run", "--all", "--date", DAY.isoformat())
    assert result.code == 2
    assert "config.yaml" in result.err and "PGPASSWORD" in result.err
    assert "Traceback" not in result.err
    assert not (ws.root / "out").exists() and not (ws.root / "state").exists()


def test_an_unreachable_server_at_start_is_exit_2_and_nothing_is_written(
    make_workspace: Callable[..., Workspace],
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ws = make_workspace(["c001,Ana,A,ana@example.com,25/11/1980,,,,,email,es,customer,"])
    url = f"postgresql://outreach@127.0.0.1:{port}/shop"
    result = ws.run("run", "--all", "--date", DAY.isoformat(), env=pg_env(url))
    assert result.code == 2, result.out + result.err
    assert "cannot connect to the ledger database" in result.err
    assert "PostgreSQL server is running" in result.err and "Traceback" not in result.err
    assert not (ws.root / "out").exists() and not (ws.root / "state").exists()
    history = ws.run("history", env=pg_env(url))
    assert history.code == 2 and "cannot connect" in history.err
    other = ws.run("history", env=pg_env("mysql://outreach@127.0.0.1/shop"))
    assert other.code == 2 and "OUTREACH_LEDGER_URL: 'mysql://" in other.err, other.err


def test_a_database_of_another_program_is_not_taken_for_a_ledger(pg_server: PgServer) -> None:
    url = pg_server.empty_database()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE orders (id integer)")
    with pytest.raises(LedgerError, match="not an outreach ledger"):
        Ledger.connect(url)


def test_a_readonly_ledger_on_the_server_writes_nothing(pg_url: str) -> None:
    record = MessageRecord(
        "c1", "birthday", "birthday:2026", "email", "rendered", DAY, updated_at=NOW
    )
    with Ledger.connect(pg_url, readonly=True) as ledger:
        run_id = ledger.begin_run(run_date=DAY, started_at=NOW, args=["plan"])
        ledger.record([record], run_id=run_id)
        ledger.suppress("x@example.com", channel="email", source="test", now=NOW)
        assert len(ledger.messages()) == 1  # it sees its own writes...
    with Ledger.connect(pg_url) as ledger:
        assert ledger.messages() == [] and ledger.runs() == [] and ledger.suppressions() == {}


@pytest.mark.slow
def test_the_server_going_away_mid_run_stops_it_and_the_next_run_completes(
    pg_workspace: Callable[..., tuple[Workspace, Population, str]], pg_server: PgServer
) -> None:
    ws, population, url = pg_workspace()
    # Paused as it is about to write its 1,051st email (past the first commit), while the
    # server stops: the run cannot finish first, however fast the machine or slow the stop.
    nth = sorted(population.rendered)[1050]
    proc = start_run(ws, DAY, env={**pg_env(url), **pause_at(f"link {nth}.eml 1")})
    try:
        wait_until_paused(proc)
        pg_server.stop()
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        if not pg_server.running():
            pg_server.start()
    message = err.decode()
    assert proc.returncode == 2, message
    assert url.rsplit("/", 1)[0] in message and "Traceback" not in message
    assert "the next run completes" in message
    rows, files = ledger_counts(ws, url)
    assert 0 < files <= rows  # every file's row was claimed before it was written
    rerun(ws, DAY, url=url)
    check_exactly_once(ws, population, [DAY], url=url)


# -- SIGKILL -------------------------------------------------------------------------------

# One kill point per phase of a run (test_crash has them all, on SQLite).
KILLS = {
    "lock-held": KillPoint("lock"),
    "first-file": KillPoint("files", 1),
    "mid-batch": KillPoint("files", 300),
    "after-a-commit": KillPoint("files", 1100),
    "between-claim-and-write": KillPoint("files", FIRST_CHUNK),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(KILLS))
def test_a_killed_run_on_the_server_completes_exactly_once(
    case: str, pg_workspace: Callable[..., tuple[Workspace, Population, str]]
) -> None:
    ws, population, url = pg_workspace()
    kill_at(ws, KILLS[case], population, url=url)
    rows, files = ledger_counts(ws, url)
    assert files <= rows
    if case == "between-claim-and-write":
        assert rows > files, (rows, files)  # claimed, never written: recovery fails them
    rerun_day = DAY + timedelta(days=1) if case == "after-a-commit" else DAY
    rerun(ws, rerun_day, url=url)
    check_exactly_once(ws, population, sorted({DAY, rerun_day}), url=url)


@pytest.mark.slow
def test_a_killed_shard_is_completed_by_its_rerun_and_no_other_shard_touches_it(
    pg_workspace: Callable[..., tuple[Workspace, Population, str]],
) -> None:
    ws, population, url = pg_workspace()
    mine = Population(
        due=frozenset(c for c in population.due if shard_of(c, 2) == 1),
        opted_out=population.opted_out,
        suppressed=population.suppressed,
        emails=population.emails,
    )
    kill_at(ws, KillPoint("files", 400), mine, url=url, shard="shard-1-of-2")
    left = sorted((ws.root / "out").rglob("*.eml"))
    # The other shard runs meanwhile: it neither settles the dead run nor removes its files.
    rerun(ws, DAY, url=url, args=("--shard", "2/2"))
    assert all(path.exists() for path in left)
    unfinished = sql(url, "SELECT scope FROM runs WHERE ended_at IS NULL")
    assert unfinished == [("shard-1-of-2",)]
    rerun(ws, DAY, url=url, args=("--shard", "1/2"))
    check_exactly_once(ws, population, [DAY], url=url, shards=2)


# -- ledger copy ---------------------------------------------------------------------------


def test_ledger_copy_to_the_server_and_back_is_idempotent_and_counted(
    make_workspace: Callable[..., Workspace], pg_url: str, pg_server: PgServer, tmp_path: Path
) -> None:
    rows = [
        f"c{i:03d},P{i},A,p{i}@example.com,{24 + i % 3}/11/1980,,,,,email,es,customer,"
        for i in range(30)
    ]
    ws = make_workspace(rows)
    assert ws.run("run", "--all", "--date", DAY.isoformat()).code == 0
    assert ws.run("unsubscribe", "p3@example.com").code == 0
    target = pg_server.empty_database()
    first = ws.run("ledger", "copy", "--to", target, "--json")
    assert first.code == 0, first.err
    tables = json.loads(first.out)["tables"]
    assert tables["messages"]["copied"] == tables["messages"]["source"] == 30
    assert tables["suppressions"] == {"source": 1, "copied": 1, "target": 1}
    again = ws.run("ledger", "copy", "--to", target, "--json")
    assert all(t["copied"] == 0 for t in json.loads(again.out)["tables"].values())
    # The copy is the ledger: a run on it the next day makes nothing twice, and gets new ids.
    nxt = ws.run(
        "run",
        "--all",
        "--date",
        (DAY + timedelta(days=1)).isoformat(),
        "--json",
        env=pg_env(target),
    )
    assert nxt.code == 0, nxt.err
    assert sql(target, "SELECT count(*), max(id) FROM runs") == [(2, 2)]
    assert sql(target, "SELECT count(*) FROM messages") == [(30,)]
    # And back into a SQLite file.
    back = tmp_path / "back.sqlite"
    result = ws.run("ledger", "copy", "--to", str(back), env=pg_env(target))
    assert result.code == 0, result.err
    assert "the counts match" in result.out
    with Ledger.open(back, readonly=True) as copied:
        assert len(copied.runs()) == 2 and copied.count_messages() == {"rendered": 30}
    # A target that has moved on (the run above) is not passed off as a copy of this one.
    stale = ws.run("ledger", "copy", "--to", target)
    assert stale.code == 2, stale.out + stale.err
    assert "does not match the source (runs 1 → 2)" in stale.err


def test_a_schedule_job_takes_a_shard_and_is_named_by_it(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        [],
        config_extra='schedule:\n  - at: "09:30"\n    shard: "2/3"\n  - at: "10:00"\n    shard: "4/3"\n',
    )
    with pytest.raises(
        ConfigError, match=r"schedule\[1\]\.shard: shard 4 of 3 does not exist \(got '4/3'\)"
    ):
        load_settings(ws.root / "config.yaml")
    ws.write("config.yaml", (ws.root / "config.yaml").read_text().split('  - at: "10:00"')[0])
    (spec,) = load_settings(ws.root / "config.yaml").schedule
    # Each machine's job is its own in the shared ledger's record of what ran today.
    assert DaemonJob(index=0, spec=spec, at=parse_hhmm("09:30")).label == "09:30 all shard 2/3"


def test_rebuild_is_refused_for_a_ledger_on_the_server(
    make_workspace: Callable[..., Workspace], pg_url: str
) -> None:
    ws = make_workspace(["c001,Ana,A,ana@example.com,25/11/1980,,,,,email,es,customer,"])
    result = ws.run("ledger", "rebuild", env=pg_env(pg_url))
    assert result.code == 2 and "works on the SQLite ledger" in result.err, result.err
    assert not (ws.root / "state").exists()


def test_state_url_in_config_names_the_ledger_and_the_environment_wins(
    make_workspace: Callable[..., Workspace], pg_url: str, pg_server: PgServer
) -> None:
    other = pg_server.database()
    ws = make_workspace(
        ["c001,Ana,A,ana@example.com,25/11/1980,,,,,email,es,customer,"],
        config_extra=f"state:\n  url: {pg_url}\n",
    )
    # The suppression list is the shared one too.
    assert ws.run("unsubscribe", "c001").code == 0
    assert sql(pg_url, "SELECT value, channel FROM suppressions") == [("c001", "all")]
    result = ws.run("run", "--all", "--date", DAY.isoformat(), env=pg_env(other))
    assert result.code == 0, result.err
    assert sql(other, "SELECT count(*) FROM runs") == [(1,)]
    assert sql(pg_url, "SELECT count(*) FROM runs") == [(0,)]
    assert not (ws.root / "state").exists()  # no SQLite ledger beside it


def test_the_server_itself_refuses_a_second_row_for_one_message(pg_url: str) -> None:
    insert = (
        "INSERT INTO messages (contact_id, campaign, occurrence_key, channel, status, run_date, "
        "effective_date, created_at, updated_at) VALUES ('c1', 'birthday', 'birthday:2026', "
        "'email', %s, '2026-11-24', '2026-11-24', 'x', 'x')"
    )
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(insert, ("rendered",))
        # What two machines writing the same message at once would do: the second is refused.
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.execute(insert, ("sending",))
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(insert.replace("'c1'", "'c2'"), ("posted",))


# -- claims: two machines the locks do not keep apart ----------------------------------------


@pytest.mark.slow
def test_two_machines_whose_locks_do_not_exclude_make_each_message_exactly_once(
    pg_workspace: Callable[..., tuple[Workspace, Population, str]], tmp_path: Path
) -> None:
    # Machine A runs the workspace; its lock's connection is cut (a network partition: the
    # server drops the lock, A runs on), so machine B, a copy of the workspace on another
    # disk, takes the lock and runs the same contacts at the same time. Only the claim in
    # the ledger keeps both from writing a message.
    ws, population, url = pg_workspace(3000)
    other = Workspace(tmp_path / "machine-b")
    shutil.copytree(ws.root, other.root)
    # A pauses as it writes its second email; B, as it writes its first (of the contacts A
    # has not claimed); then both go on: the two runs overlap on any machine.
    second = sorted(population.rendered)[1]
    with start_run(ws, DAY, env={**pg_env(url), **pause_at(f"link {second}.eml 1")}) as a:
        wait_until_paused(a)
        cut = sql(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'outreach lock workspace'",
        )
        assert cut == [(True,)]
        with start_run(other, DAY, env={**pg_env(url), **pause_at("link .eml 1")}) as b:
            wait_until_paused(b)
            os.kill(a.pid, signal.SIGCONT)
            os.kill(b.pid, signal.SIGCONT)
            _, err_b = b.communicate(timeout=120)
        _, err_a = a.communicate(timeout=120)
    assert b.returncode == 0, err_b.decode()
    assert a.returncode == 0, err_a.decode()
    files = Counter(
        path.name for root in (ws.root, other.root) for path in (root / "out").rglob("*.eml")
    )
    assert files == Counter({f"{cid}.eml": 1 for cid in population.rendered})
    rows = sql(url, "SELECT contact_id, artifact FROM messages WHERE status = 'rendered'")
    assert sorted(str(cid) for cid, _ in rows) == sorted(population.rendered)
    for _cid, artifact in rows:
        assert sum((root / str(artifact)).is_file() for root in (ws.root, other.root)) == 1
    # The two runs did overlap: B began before A ended.
    (a_end, b_start), *_ = sql(
        url,
        "SELECT (SELECT ended_at FROM runs ORDER BY id LIMIT 1), "
        "(SELECT started_at FROM runs ORDER BY id DESC LIMIT 1)",
    )
    assert str(b_start) <= str(a_end)


@pytest.mark.slow
def test_two_send_steps_over_the_same_rows_hand_each_email_over_once(
    pg_workspace: Callable[..., tuple[Workspace, Population, str]],
    smtp_server_factory: Callable[..., SmtpServer],
    tmp_path: Path,
) -> None:
    # The emails are rendered once; two machines (sharing the outbox folder's files) send
    # them at once, A's lock cut as above. Each email is claimed `sending` by one of them.
    handler = RecordingHandler(data_delay_s=0.005)
    server = smtp_server_factory(handler=handler)
    ws, population, url = pg_workspace()
    ws.write("config.yaml", (ws.root / "config.yaml").read_text() + delivery_config(server.port))
    rerun(ws, DAY, url=url)
    other = Workspace(tmp_path / "machine-b")
    shutil.copytree(ws.root, other.root)
    now = f"{DAY.isoformat()}T10:00"
    send = [sys.executable, "-m", "outreach", "send", "--now", now]
    env = unmeasured_env(**pg_env(url))
    with subprocess.Popen(send, cwd=ws.root, env=env, stderr=subprocess.PIPE) as a:
        deadline = time.monotonic() + 60
        while len(server.messages) < 20:
            assert a.poll() is None and time.monotonic() < deadline
            time.sleep(0.001)
        sql(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'outreach lock workspace'",
        )
        with subprocess.Popen(send, cwd=other.root, env=env, stderr=subprocess.PIPE) as b:
            _, err_b = b.communicate(timeout=120)
            sent_before_a_ended = a.poll() is None
        _, err_a = a.communicate(timeout=120)
    assert a.returncode == 0, err_a.decode()
    assert b.returncode == 0, err_b.decode()
    assert sent_before_a_ended or len(server.messages) == len(population.rendered)
    received = Counter(rcpt for message in server.messages for rcpt in message.rcpt_tos)
    assert received == Counter({population.emails[cid]: 1 for cid in population.rendered})
    statuses = Counter(
        str(s) for (s,) in sql(url, "SELECT status FROM messages WHERE status <> 'skipped'")
    )
    assert statuses == {"sent": len(population.rendered)}
