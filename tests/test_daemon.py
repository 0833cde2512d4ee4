"""`outreach daemon` as a real process: jobs a few seconds ahead of its clock (`--now`, moving
on with the real one), signals, logs."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import smtp_server as smtp_server_module
from conftest import Workspace

from outreach.ledger import acquire_lock
from outreach.model.config import WEEKDAYS, ScheduleJob
from outreach.scheduler import Daemon as ScheduleDaemon
from outreach.scheduler import DaemonJob

smtp_server = smtp_server_module.smtp_server

TZ = ZoneInfo("Europe/Madrid")  # the test config's time zone
ROWS = [
    "c1,Ana,García,ana@example.com,,,,,,,,customer,",
    "c2,José,Núñez,jose@example.com,,,,,,,,customer,",
]


def always_open(name: str) -> str:
    """A promotion open on any day the tests may run."""
    return f"""\
        name: {name}
        kind: promotion
        channel: email
        start: 2000-01-01
        end: 2099-12-31
        email:
          subject: "Novedades"
          text: promo.txt.j2
        """


CAMPAIGNS = {"promo.yaml": always_open("promo"), "news.yaml": always_open("news")}


def schedule(*jobs: str) -> str:
    return "schedule:\n" + "".join(f"  - {job}\n" for job in jobs)


def today() -> date:
    return datetime.now(TZ).date()


def runs(ws: Workspace) -> list[tuple[list[str], bool]]:
    """(args, finished) of every run in the ledger, oldest first."""
    path = ws.root / "state" / "ledger.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT args, ended_at FROM runs ORDER BY id").fetchall()
    return [(json.loads(args), ended is not None) for args, ended in rows]


def runs_so_far(ws: Workspace) -> list[tuple[list[str], bool]]:
    """runs() while the daemon may be creating the ledger (no table yet: no runs yet)."""
    try:
        return runs(ws)
    except sqlite3.OperationalError:
        return []


def statuses(ws: Workspace) -> list[tuple[str, str, str]]:
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        return sorted(db.execute("SELECT contact_id, campaign, status FROM messages"))


def emails(ws: Workspace) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in ws.files("out/outbox"))


def wait_for(what: Callable[[], object], *, timeout: float = 40, step: float = 0.05) -> None:
    """Poll until `what()` is true; fail with a clear message after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(step)
    pytest.fail(f"waited {timeout}s in vain for {what.__doc__ or what}")


class Daemon:
    """A running `outreach daemon` with its log file."""

    def __init__(self, ws: Workspace, *args: str) -> None:
        self.log = ws.root / "daemon.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "outreach", "daemon", "--log-file", str(self.log), *args],
            cwd=ws.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""

    def logged(self, fragment: str) -> Callable[[], bool]:
        def check() -> bool:
            return fragment in self.text()

        check.__doc__ = f"{fragment!r} in the daemon's log"
        return check

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    """Start daemons; any left running by a failed test are killed."""
    started: list[Daemon] = []

    def start(ws: Workspace, *args: str) -> Daemon:
        started.append(Daemon(ws, *args))
        return started[-1]

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def workspace(make_workspace: Callable[..., Workspace]) -> Callable[..., Workspace]:
    def make(*jobs: str, rows: list[str] = ROWS, config_extra: str = "") -> Workspace:
        return make_workspace(
            rows,
            config_extra=config_extra + schedule(*jobs),
            campaigns=CAMPAIGNS,
            templates={"promo.txt.j2": "Hola {{ contact.first_name }}\n"},
        )

    return make


# The daemon's clock in the next two tests: `--now` starts it here and it moves on with the
# real one from the daemon's own start, so a job a few seconds ahead comes at its time however
# long the process took to start on a busy machine.
START = datetime(2026, 11, 24, 9, 0, 0, tzinfo=TZ)


def test_a_job_runs_at_its_time_once_and_sigterm_stops_the_daemon(
    workspace: Callable[..., Workspace], daemons: Callable[..., Daemon]
) -> None:
    at = "09:00:10"
    # news: its time has passed today, so the daemon catches up at start; promo: 10 s later.
    ws = workspace('{campaigns: [news], at: "00:00"}', f'{{campaigns: [promo], at: "{at}"}}')
    daemon = daemons(ws, "--now", START.strftime("%Y-%m-%dT%H:%M:%S"))

    wait_for(daemon.logged("waiting for the next job"))
    assert runs(ws) == [(["daemon", "job:00:00 news"], True)]
    assert emails(ws) == ["news/c1.eml", "news/c2.eml"]

    wait_for(lambda: len(runs_so_far(ws)) == 2 and runs_so_far(ws)[1][1])
    assert runs(ws)[1] == (["daemon", f"job:{at} promo"], True)
    assert emails(ws) == ["news/c1.eml", "news/c2.eml", "promo/c1.eml", "promo/c2.eml"]
    assert statuses(ws) == [
        ("c1", "news", "rendered"),
        ("c1", "promo", "rendered"),
        ("c2", "news", "rendered"),
        ("c2", "promo", "rendered"),
    ]
    time.sleep(2.5)  # a few more ticks of the loop: each job ran once today
    assert len(runs(ws)) == 2

    code, err = daemon.stop(signal.SIGTERM)
    assert code == 0, err
    log = daemon.text()
    assert log.rstrip().endswith("INFO stopped")
    assert log.index("waiting for the next job") < log.index(f"job {at} promo: starting")
    assert f"job {at} promo: run for 2026-11-24: 2 emails" in log
    assert "  promo: due 2, done before 0, emails 2" in log
    assert err == log  # the same lines on stderr (for the journal) and in the log file


def test_a_failing_run_does_not_stop_the_next(
    workspace: Callable[..., Workspace], daemons: Callable[..., Daemon]
) -> None:
    first, second = "09:00:06", "09:00:12"
    ws = workspace(f'{{campaigns: [promo], at: "{first}"}}', f'{{campaigns: all, at: "{second}"}}')
    contacts = ws.root / "contacts.csv"
    daemon = daemons(ws, "--now", START.strftime("%Y-%m-%dT%H:%M:%S"))
    wait_for(daemon.logged("waiting for the next job"))
    # Between start and the first job, the contacts file goes away (a sync tool, a person).
    contacts.rename(ws.root / "contacts.bak")

    wait_for(daemon.logged(f"job {first} promo: the run failed"))
    (ws.root / "contacts.bak").rename(contacts)
    wait_for(lambda: any(ended for _, ended in runs_so_far(ws)))

    code, err = daemon.stop(signal.SIGINT)
    assert code == 0, err
    log = daemon.text()
    assert f"ERROR job {first} promo: the run failed: contacts.csv" in log
    # The failed run did nothing; the next job ran every campaign, promo included.
    assert runs(ws) == [(["daemon", f"job:{second} all"], True)]
    assert emails(ws) == ["news/c1.eml", "news/c2.eml", "promo/c1.eml", "promo/c2.eml"]
    assert log.rstrip().endswith("INFO stopped")


@pytest.mark.slow
def test_sigterm_lets_the_run_in_progress_finish(
    workspace: Callable[..., Workspace], daemons: Callable[..., Daemon]
) -> None:
    rows = [f"p{i:04d},Nombre{i},Apellido,p{i}@example.com,,,,,,,,customer," for i in range(2500)]
    ws = workspace('{campaigns: [promo], at: "00:00"}', rows=rows)
    daemon = daemons(ws)
    wait_for(daemon.logged("job 00:00 promo: starting the run"), step=0.01)

    code, err = daemon.stop(signal.SIGTERM)

    assert code == 0, err
    log = daemon.text()
    # The stop was asked for while the run was going, and the run still did every message.
    assert "stop requested" in log and "job 00:00 promo: run for" in log, log + err
    assert log.index("stop requested") < log.index("job 00:00 promo: run for"), log
    assert "2500 emails" in log
    assert runs(ws) == [(["daemon", "job:00:00 promo"], True)]
    assert len(ws.files("out/outbox")) == 2500
    assert "waiting for the next job" not in log
    assert log.rstrip().endswith("INFO stopped")


def test_once_runs_what_is_due_and_exits(workspace: Callable[..., Workspace]) -> None:
    tomorrow = WEEKDAYS[(today().weekday() + 1) % 7]
    ws = workspace(
        '{campaigns: [promo], at: "00:00"}',
        f'{{campaigns: [news], at: "00:00", days: [{tomorrow}]}}',  # not today
    )
    first = ws.run("daemon", "--once")
    assert first.code == 0, first.err
    assert first.out == ""
    assert "job 00:00 promo: run for" in first.err
    assert runs(ws) == [(["daemon", "job:00:00 promo"], True)]
    assert emails(ws) == ["promo/c1.eml", "promo/c2.eml"]

    # Run again (cron every hour): the ledger says the job ran today, so nothing runs.
    again = ws.run("daemon", "--once")
    assert again.code == 0, again.err
    assert "no job is due" in again.err
    assert len(runs(ws)) == 1


def test_once_exit_code_when_messages_fail(workspace: Callable[..., Workspace]) -> None:
    ws = workspace(
        '{campaigns: all, at: "00:00"}', rows=[*ROWS, "c3,,López,l@example.com,,,,,,,,,"]
    )
    result = ws.run("daemon", "--once")
    assert result.code == 1
    assert "WARNING   problem [news]: " in result.err and "first_name" in result.err


def test_a_locked_workspace_is_logged_and_tried_again(workspace: Callable[..., Workspace]) -> None:
    ws = workspace('{campaigns: [promo], at: "00:00"}')
    with acquire_lock(ws.root / "state", now=datetime.now(UTC)):
        locked = ws.run("daemon", "--once")
    assert locked.code == 2
    assert "another run is in progress" in locked.err
    assert "not run; the next start tries again" in locked.err
    assert emails(ws) == []

    after = ws.run("daemon", "--once")
    assert after.code == 0, after.err
    assert emails(ws) == ["promo/c1.eml", "promo/c2.eml"]


def test_send_true_sends_after_the_run(
    workspace: Callable[..., Workspace], smtp_server: smtp_server_module.SmtpServer
) -> None:
    smtp = (
        f"delivery: {{method: smtp, host: {smtp_server.host}, port: {smtp_server.port}, "
        "security: none}\n"
    )
    ws = workspace('{campaigns: [promo], at: "00:00", send: true}', config_extra=smtp)
    result = ws.run("daemon", "--once")
    assert result.code == 0, result.err
    assert sorted(m.rcpt_tos for m in smtp_server.handler.messages) == [
        ("ana@example.com",),
        ("jose@example.com",),
    ]
    assert statuses(ws) == [("c1", "promo", "sent"), ("c2", "promo", "sent")]
    assert "send: 2 sent of 2 waiting, 0 failed, 0 uncertain" in result.err
    assert runs(ws) == [(["daemon", "job:00:00 promo +send"], True)]


def test_a_job_without_send_reports_uncertain_emails_as_the_run_command_does(
    workspace: Callable[..., Workspace], smtp_server: smtp_server_module.SmtpServer
) -> None:
    """One post-run step for the CLI and the daemon: under delivery: smtp, both name the
    emails a killed send left uncertain, even when the job does not send."""
    smtp = (
        f"delivery: {{method: smtp, host: {smtp_server.host}, port: {smtp_server.port}, "
        "security: none}\n"
    )
    ws = workspace('{campaigns: [promo], at: "00:00"}', config_extra=smtp)
    assert ws.run("run", "campaigns/promo.yaml").code == 0
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        db.execute("UPDATE messages SET status = 'uncertain' WHERE contact_id = 'c1'")
    by_hand = ws.run("run", "campaigns/promo.yaml")
    assert "1 email uncertain" in by_hand.out, by_hand.out
    result = ws.run("daemon", "--once")
    assert result.code == 0, result.err
    assert "uncertain" in result.err and "c1" in result.err, result.err
    assert smtp_server.handler.messages == []  # reported, never sent


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("", "schedule: there is no schedule to run"),
        (
            schedule(
                '{campaigns: [promo], at: "09:00"}', '{campaigns: [promo, nope], at: "10:00"}'
            ),
            "schedule[1].campaigns: no campaign 'nope'",
        ),
        (
            schedule('{campaigns: all, at: "09:00", send: true}'),
            "schedule[0].send: `send: true`, but delivery.method is outbox",
        ),
        (schedule('{campaigns: all, at: "25:00"}'), "schedule[0].at"),
    ],
)
def test_the_daemon_checks_its_schedule_at_start(
    make_workspace: Callable[..., Workspace], config: str, message: str
) -> None:
    ws = make_workspace(ROWS, config_extra=config, campaigns=CAMPAIGNS)
    result = ws.run("daemon")  # would run forever if it started
    assert result.code == 2
    assert message in result.err
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert runs(ws) == []


def test_a_broken_campaign_stops_the_daemon_at_start(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        ROWS,
        config_extra=schedule('{campaigns: all, at: "09:00"}'),
        campaigns={**CAMPAIGNS, "broken.yaml": "kind: promotion\nstart: soon\n"},
    )
    result = ws.run("daemon", "--once", "--log-file", "daemon.log")
    assert result.code == 2
    assert "broken.yaml" in result.err
    assert runs(ws) == []
    # The log file (where an unattended daemon is looked after) says why too.
    (line,) = (ws.root / "daemon.log").read_text(encoding="utf-8").splitlines()
    assert " ERROR outreach daemon --once --log-file daemon.log: " in line
    assert "broken.yaml" in line


def test_a_job_is_due_on_its_days_after_its_time() -> None:
    job = DaemonJob(
        index=0,
        spec=ScheduleJob(campaigns=("promo",), at="09:30", days=("mon", "wed")),
        at=datetime.strptime("09:30", "%H:%M").time(),
    )
    monday = datetime(2026, 11, 23, 9, 30, tzinfo=TZ)
    assert job.is_due(monday)
    assert not job.is_due(monday - timedelta(seconds=1))
    assert job.is_due(monday.replace(hour=23, minute=59))
    assert not job.is_due(monday + timedelta(days=1))  # Tuesday
    assert job.is_due(monday + timedelta(days=2))  # Wednesday
    assert job.label == "09:30 promo"
    assert job.marker == "job:09:30 promo"
    every_day = DaemonJob(index=1, spec=ScheduleJob(at="00:00", send=True), at=monday.time())
    assert every_day.runs_on(date(2026, 11, 29))  # a Sunday
    assert every_day.label == "00:00 all +send"


def test_a_locked_out_job_is_tried_again_five_minutes_later(
    workspace: Callable[..., Workspace],
) -> None:
    # In-process, on a clock the test moves: the daemon's own state between runs.
    ws = workspace('{campaigns: [promo], at: "09:30"}')
    moments = [datetime(2026, 11, 24, 9, 0, tzinfo=TZ)]
    daemon = ScheduleDaemon(config=ws.root / "config.yaml", clock=lambda: moments[-1])
    daemon.start()
    assert daemon.run_due() == []  # 09:00: not yet

    moments.append(datetime(2026, 11, 24, 9, 31, tzinfo=TZ))
    with acquire_lock(ws.root / "state", now=moments[-1]):
        (locked,) = daemon.run_due()
    assert locked.exit_code == 2 and locked.error is not None
    assert "another run is in progress" in locked.error
    moments.append(moments[-1] + timedelta(minutes=4))
    assert daemon.run_due() == []  # not before five minutes
    moments.append(moments[-1] + timedelta(minutes=1))
    (done,) = daemon.run_due()
    assert done.exit_code == 0 and done.summary is not None
    assert done.summary.campaigns[0].emails == 2
    moments.append(moments[-1] + timedelta(hours=5))
    assert daemon.run_due() == []  # once a day

    # The next day, a new daemon (a restart) catches up at once, and only once.
    moments.append(datetime(2026, 11, 25, 12, 0, tzinfo=TZ))
    restarted = ScheduleDaemon(config=ws.root / "config.yaml", clock=lambda: moments[-1])
    restarted.start()
    assert [r.run_date for r in restarted.run_due()] == [date(2026, 11, 25)]
    again = ScheduleDaemon(config=ws.root / "config.yaml", clock=lambda: moments[-1])
    again.start()
    assert again.run_due() == []  # the ledger says it ran today
    assert [args for args, _ in runs(ws)] == [["daemon", "job:09:30 promo"]] * 2
