"""End to end: `outreach run --send` and `outreach send` against real aiosmtpd servers.

The CLI runs as a subprocess on a workspace in tmp_path whose config points at a server on
127.0.0.1; the server records every message, so each test checks what really arrived.
"""

from __future__ import annotations

import email
import email.policy
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import smtp_server as servers
from conftest import BASE_CONFIG, Result, Workspace, unmeasured_env
from smtp_server import RecordingHandler, SmtpServer

from outreach.ledger import Ledger, MessageRecord

smtp_server = servers.smtp_server
smtp_server_factory = servers.smtp_server_factory
closed_port = servers.closed_port

StartServer = Callable[..., SmtpServer]
MakeWorkspace = Callable[..., Workspace]

DAY = "2026-11-24"
NOW = "2026-11-24T10:00"  # outside any quiet hours used here
SENDER = "hola@casalucia.example"
PASSWORD_ENV = "OUTREACH_TEST_SMTP_PASSWORD"
# Due on 24 Nov (birthday windows open 3 days before): c1 (26th), c5 (25th), c6 (today).
# c2 (28th) is not due yet; c4 opted out of email.
ROWS = [
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c2,José,Núñez,jose@example.com,1985-11-28,,,,,,,customer,",
    "c4,Íñigo,Ortiz,inigo@example.com,24/11/2000,,,,,,,customer,email",
    "c5,Mary,Smith,mary@example.org,25/11/1980,,,,,,en,customer,",
    "c6,Luis,Pérez,luis@example.net,24/11/1975,,,,,,,customer,",
]
DUE = {"c1": "ana@example.com", "c5": "mary@example.org", "c6": "luis@example.net"}

BIRTHDAY = """\
    kind: birthday
    channel: email
    days_before: 3
    priority: 80
    email:
      subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
      text: birthday.txt.j2
      html: birthday.html.j2
    """


def delivery_config(port: int, **extra: object) -> str:
    """A `delivery: smtp` block for a server on 127.0.0.1 (one quick retry, short timeout)."""
    values: dict[str, object] = {
        "method": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "timeout_s": 5,
        "max_retries": 1,
        **extra,
    }
    return "delivery:\n" + "".join(f"  {key}: {value}\n" for key, value in values.items())


def smtp_workspace(
    make_workspace: MakeWorkspace,
    port: int,
    *,
    rows: list[str] = ROWS,
    quiet_hours: str | None = None,
    campaigns: dict[str, str] | None = None,
    **delivery: object,
) -> Workspace:
    ws = make_workspace(rows, campaigns=campaigns)
    config = BASE_CONFIG
    if quiet_hours is not None:
        config = config.replace(
            "  per_days: 30\n", f'  per_days: 30\n  quiet_hours: "{quiet_hours}"\n'
        )
    ws.write("config.yaml", config + delivery_config(port, **delivery))
    return ws


def cli(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI with ARGS in the workspace, with extra environment variables and no password
    but the one a test gives."""
    return ws.run(*args, env=env, unset=(PASSWORD_ENV,))


def ledger_rows(ws: Workspace) -> dict[str, tuple[str, str | None, str | None]]:
    """contact_id → (status, reason, error) of every email in the ledger."""
    path = ws.root / "state" / "ledger.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT contact_id, status, reason, error FROM messages WHERE channel = 'email'"
        ).fetchall()
    return {contact: (status, reason, error) for contact, status, reason, error in rows}


def statuses(ws: Workspace) -> dict[str, str]:
    return {contact: row[0] for contact, row in ledger_rows(ws).items()}


def recipients(server: SmtpServer) -> Counter[str]:
    return Counter(rcpt for message in server.messages for rcpt in message.rcpt_tos)


def outbox_file(ws: Workspace, contact_id: str, *, day: str = DAY) -> Path:
    return ws.root / "out" / "outbox" / day / "birthday" / f"{contact_id}.eml"


# -- the happy path ------------------------------------------------------------------------------


def test_run_send_delivers_each_due_email_once_as_written_in_the_outbox(
    make_workspace: MakeWorkspace, smtp_server: SmtpServer
) -> None:
    ws = smtp_workspace(make_workspace, smtp_server.port)
    result = cli(ws, "run", "--all", "--send", "--now", NOW)
    assert result.code == 0, result.err
    assert "sent 3 emails (SMTP 127.0.0.1:" in result.out
    assert statuses(ws) == {"c1": "sent", "c4": "skipped", "c5": "sent", "c6": "sent"}

    received = {m.rcpt_tos: m for m in smtp_server.messages}
    assert sorted(received) == sorted((addr,) for addr in DUE.values())
    assert smtp_server.handler.connections == 1  # one connection for the whole batch
    for contact_id, addr in DUE.items():
        got = received[(addr,)]
        assert got.mail_from == SENDER
        written = outbox_file(ws, contact_id).read_bytes()
        assert got.data == written  # headers and both MIME parts, byte for byte
        message = email.message_from_bytes(got.data, policy=email.policy.default)
        assert message["To"].addresses[0].addr_spec == addr
        assert message.get_content_type() == "multipart/alternative"
        text, html = (part.get_content() for part in message.iter_parts())
        assert text.startswith("Hola ")
        assert '<p style="color: #333' in html

    again = cli(ws, "run", "--all", "--send", "--now", "2026-11-24T11:00", "--json")
    assert again.code == 0, again.err
    summary = json.loads(again.out)
    assert summary["send"]["sent"] == 0
    assert summary["send"]["waiting"] == 0
    assert summary["campaigns"][0]["already_done"] == 3
    assert len(smtp_server.messages) == 3
    assert smtp_server.handler.connections == 1  # nothing to send: no connection at all


def test_run_without_send_keeps_everything_then_send_delivers(
    make_workspace: MakeWorkspace, smtp_server: SmtpServer
) -> None:
    ws = smtp_workspace(make_workspace, smtp_server.port)
    rendered = cli(ws, "run", "--all", "--now", NOW)
    assert rendered.code == 0, rendered.err
    assert (
        "3 emails rendered and waiting in out/outbox/2026-11-24/ — not sent; send them with "
        "`outreach send` or `outreach run --send`" in rendered.out
    )
    assert smtp_server.messages == []
    assert statuses(ws) == {"c1": "rendered", "c4": "skipped", "c5": "rendered", "c6": "rendered"}

    # A person looks at the outbox first, then sends.
    sent = cli(ws, "send", "--now", "2026-11-24T12:30", "--json")
    assert sent.code == 0, sent.err
    summary = json.loads(sent.out)
    assert (summary["sent"], summary["failed"], summary["exit_code"]) == (3, [], 0)
    assert recipients(smtp_server) == Counter(DUE.values())
    assert statuses(ws)["c1"] == "sent"

    again = cli(ws, "send", "--now", "2026-11-24T12:31")
    assert again.code == 0, again.err
    assert "nothing waiting to be sent" in again.out
    assert recipients(smtp_server) == Counter(DUE.values())


def test_send_checks_each_file_and_the_latest_opt_outs(
    make_workspace: MakeWorkspace, smtp_server: SmtpServer
) -> None:
    ws = smtp_workspace(make_workspace, smtp_server.port)
    assert cli(ws, "run", "--all", "--now", NOW).code == 0
    # The person who looked removed one email, and another was edited to copy someone in.
    outbox_file(ws, "c5").unlink()
    edited = outbox_file(ws, "c6")
    edited.write_bytes(
        edited.read_bytes().replace(b"\r\nSubject:", b"\r\nCc: x@example.com\r\nSubject:", 1)
    )
    # Ana unsubscribed after the run (as the unsubscribe link would record it).
    with Ledger.open(ws.root / "state" / "ledger.sqlite") as ledger:
        ledger.suppress("ana@example.com", channel="email", source="test", now=datetime.now(UTC))

    result = cli(ws, "send", "--now", "2026-11-24T12:00")
    assert result.code == 1
    assert smtp_server.messages == []
    rows = ledger_rows(ws)
    assert rows["c1"][:2] == ("skipped", "opted out (email)")
    assert rows["c5"][:2] == ("failed", "permanent")
    assert "is not in the outbox any more" in (rows["c5"][2] or "")
    assert rows["c6"][:2] == ("failed", "permanent")
    assert "has a Cc header" in (rows["c6"][2] or "")
    assert "not sent after all: 1 opted out (email)" in result.out
    assert "2 emails failed:" in result.out
    assert "permanent: not tried again" in result.out


# -- refusals and outages --------------------------------------------------------------------------


def test_421_is_retried_and_a_550_fails_that_email_for_good(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer
) -> None:
    handler = RecordingHandler(
        refuse_mail=["421 4.3.2 too busy, try later"],
        refuse_rcpt={"luis@example.net": "550 5.1.1 no such user here"},
    )
    server = smtp_server_factory(handler=handler)
    ws = smtp_workspace(make_workspace, server.port)
    result = cli(ws, "run", "--all", "--send", "--now", NOW)
    assert result.code == 1
    assert recipients(server) == Counter(["ana@example.com", "mary@example.org"])
    status, reason, error = ledger_rows(ws)["c6"]
    assert (status, reason) == ("failed", "permanent")
    assert error is not None and "550 5.1.1 no such user here" in error
    assert "550 5.1.1 no such user here — permanent: not tried again" in result.out
    # c6 is due first (its birthday is today): 421, then after a pause 550; then c5 and c1.
    assert handler.mail_commands == 4

    again = cli(ws, "run", "--all", "--send", "--now", "2026-11-24T11:00")
    assert again.code == 0, again.err
    assert handler.mail_commands == 4  # the refused one is not tried again
    assert recipients(server) == Counter(["ana@example.com", "mary@example.org"])


def test_server_down_fails_transiently_stops_then_the_next_run_delivers(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer, closed_port: int
) -> None:
    ws = smtp_workspace(make_workspace, closed_port, max_retries=0, max_consecutive_failures=2)
    result = cli(ws, "run", "--all", "--send", "--now", NOW)
    assert result.code == 1
    assert (
        f"error: stopped sending after 2 consecutive failures: the server at 127.0.0.1:"
        f"{closed_port} refused the connection" in result.err
    )
    assert "1 email not tried: it waits for the next send" in result.out
    rows = ledger_rows(ws)
    assert [rows[c][:2] for c in ("c6", "c5")] == [("failed", "transient")] * 2
    assert rows["c1"][0] == "rendered"

    server = smtp_server_factory()
    ws.write(
        "config.yaml",
        BASE_CONFIG + delivery_config(server.port, max_retries=0, max_consecutive_failures=2),
    )
    later = cli(ws, "run", "--all", "--send", "--now", "2026-11-24T11:00")
    assert later.code == 0, later.err
    assert recipients(server) == Counter(DUE.values())
    assert set(statuses(ws).values()) == {"sent", "skipped"}


# -- quiet hours and windows ---------------------------------------------------------------------


def test_quiet_hours_hold_email_until_they_end_per_campaign(
    make_workspace: MakeWorkspace, smtp_server: SmtpServer
) -> None:
    promo = """\
        kind: promotion
        channel: email
        audience: {tags_any: [promo]}
        start: 2026-11-20
        end: 2026-12-05
        cadence: {quiet_hours: "20:00-10:00"}
        email:
          subject: Menú de otoño
          text: promo.txt.j2
        """
    rows = [*ROWS, "c7,Eva,Sanz,eva@example.com,,,,,,,,promo,"]
    ws = smtp_workspace(
        make_workspace,
        smtp_server.port,
        rows=rows,
        quiet_hours="21:00-09:00",
        campaigns={"birthday.yaml": BIRTHDAY, "promo.yaml": promo},
    )
    night = cli(ws, "run", "--all", "--send", "--now", "2026-11-24T22:00")
    assert night.code == 0, night.err
    assert smtp_server.messages == []
    # c6's birthday is today: its window closes before 09:00 tomorrow.
    assert (
        "quiet hours (21:00-09:00): 3 emails wait until 09:00 "
        "(1 of them will have missed their window by then)" in night.out
    )
    assert "quiet hours (20:00-10:00): 1 email waits until 10:00" in night.out

    morning = cli(ws, "send", "--now", "2026-11-25T09:05")
    assert morning.code == 0, morning.err
    assert recipients(smtp_server) == Counter(["ana@example.com", "mary@example.org"])
    assert "1 email missed: its window closed before it was sent" in morning.out
    assert "quiet hours (20:00-10:00): 1 email waits until 10:00" in morning.out
    assert statuses(ws)["c6"] == "missed"

    later = cli(ws, "send", "--now", "2026-11-25T10:00")
    assert later.code == 0, later.err
    assert recipients(smtp_server) == Counter(
        ["ana@example.com", "mary@example.org", "eva@example.com"]
    )


# -- exactly once ----------------------------------------------------------------------------------


def test_a_lost_reply_is_uncertain_reported_and_only_resent_on_request(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer
) -> None:
    server = smtp_server_factory(handler=RecordingHandler(vanish_at=2))
    ws = smtp_workspace(make_workspace, server.port)
    result = cli(ws, "run", "--all", "--send", "--now", NOW)
    assert result.code == 1
    # The second email (c5) reached the server, whose reply was lost; the others went on.
    assert recipients(server) == Counter(DUE.values())
    assert statuses(ws) == {"c1": "sent", "c4": "skipped", "c5": "uncertain", "c6": "sent"}
    assert "1 email uncertain — it may have arrived" in result.out
    assert "c5 (birthday birthday:2026)" in result.out

    again = cli(ws, "run", "--all", "--send", "--now", "2026-11-24T11:00", "--json")
    assert again.code == 0, again.err
    summary = json.loads(again.out)
    assert summary["send"]["waiting"] == 0  # never resent by itself...
    assert [u["contact_id"] for u in summary["uncertain"]] == ["c5"]  # ...and still reported
    assert recipients(server) == Counter(DUE.values())
    plain = cli(ws, "run", "--all", "--now", "2026-11-24T11:10")
    assert "1 email uncertain — it may have arrived" in plain.out

    retried = cli(ws, "send", "--retry-uncertain", "--now", "2026-11-24T11:30")
    assert retried.code == 0, retried.err
    assert recipients(server)["mary@example.org"] == 2  # the person asked for it
    assert statuses(ws)["c5"] == "sent"


@pytest.mark.parametrize("connections", [1, 4], ids=["one-connection", "pipelined-4"])
def test_killed_mid_batch_no_email_is_received_twice(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer, connections: int
) -> None:
    handler = RecordingHandler(data_delay_s=0.25, pipelining=connections > 1)
    server = smtp_server_factory(handler=handler)
    rows = [
        f"k{i:02d},Ana,García,k{i:02d}@example.com,{24 + i % 3}/11/1990,,,,,,,customer,"
        for i in range(30)
    ]
    # A timeout well above the slow DATA below: the client must be killed while it waits.
    ws = smtp_workspace(
        make_workspace, server.port, rows=rows, timeout_s=30, connections=connections
    )
    ledger_path = ws.root / "state" / "ledger.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach", "run", "--all", "--send", "--now", NOW],
        cwd=ws.root,
        env=unmeasured_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # After a few emails the server starts taking its time over each DATA: the emails
        # marked `sending` for longer than a normal DATA takes are surely in flight (with
        # pipelining, a connection has also claimed the next email whose envelope went).
        deadline = time.monotonic() + 60
        seen: list[str] | None = None
        while time.monotonic() < deadline:
            if len(server.messages) >= 3:
                handler.data_delay_s = 10.0
                with sqlite3.connect(ledger_path, timeout=10) as db:
                    found = db.execute(
                        "SELECT contact_id FROM messages WHERE status = 'sending' ORDER BY 1"
                    ).fetchall()
                current = [row[0] for row in found]
                if len(current) >= connections and current == seen:
                    break
                seen = current
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    handler.data_delay_s = 0.0
    before = statuses(ws)
    in_flight = sorted(c for c, s in before.items() if s == "sending")
    # One on each connection, and with pipelining the next one each has claimed: all are
    # `sending`, so none of them is ever sent again without a person asking.
    assert connections <= len(in_flight) <= (2 * connections if connections > 1 else 1)
    assert 3 <= len(server.messages) < 30

    rerun = cli(ws, "run", "--all", "--send", "--now", "2026-11-24T10:30")
    assert rerun.code == 0, rerun.err
    after = statuses(ws)
    assert all(after[c] == "uncertain" for c in in_flight)
    assert Counter(after.values()) == Counter(
        {"sent": 30 - len(in_flight), "uncertain": len(in_flight)}
    )
    counts = recipients(server)
    assert all(n == 1 for n in counts.values())  # nobody got anything twice
    in_flight_addrs = {f"{c}@example.com" for c in in_flight}
    assert set(counts) | in_flight_addrs == {f"k{i:02d}@example.com" for i in range(30)}
    for contact in in_flight:
        assert f"{contact} (birthday birthday:2026)" in rerun.out

    retried = cli(ws, "send", "--retry-uncertain", "--now", "2026-11-24T10:45")
    assert retried.code == 0, retried.err
    for contact in in_flight:
        assert statuses(ws)[contact] == "sent"
        address = f"{contact}@example.com"
        assert recipients(server)[address] == counts[address] + 1


def test_a_lost_reply_mid_pipeline_with_four_connections_is_uncertain_and_only_that_email(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer
) -> None:
    server = smtp_server_factory(handler=RecordingHandler(vanish_at=2, pipelining=True))
    ws = smtp_workspace(make_workspace, server.port, connections=4)
    result = cli(ws, "run", "--all", "--send", "--now", NOW, "--json")
    assert result.code == 1
    # The second email to reach the server had its reply lost: it is uncertain; any envelope
    # that was on the wire behind it went again; nobody got anything twice.
    assert recipients(server) == Counter(DUE.values())
    status = statuses(ws)
    (lost,) = [c for c, s in status.items() if s == "uncertain"]
    assert server.messages[1].rcpt_tos == (DUE[lost],)
    assert {c: s for c, s in status.items() if c != lost} == {
        **{c: "sent" for c in DUE if c != lost},
        "c4": "skipped",
    }
    summary = json.loads(result.out)
    assert [u["contact_id"] for u in summary["uncertain"]] == [lost]

    again = cli(ws, "send", "--now", "2026-11-24T11:00", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["waiting"] == 0  # never resent by itself
    assert recipients(server) == Counter(DUE.values())


# -- credentials and setup -------------------------------------------------------------------------


def test_login_with_the_password_from_the_environment(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer
) -> None:
    server = smtp_server_factory(users={"tienda": "s3cret"})
    ws = smtp_workspace(make_workspace, server.port, username="tienda", password_env=PASSWORD_ENV)
    missing = cli(ws, "run", "--all", "--send", "--now", NOW)
    assert missing.code == 2
    assert f"the environment variable {PASSWORD_ENV} (delivery.password_env) is not set" in (
        missing.err
    )
    assert ledger_rows(ws) == {}  # checked before anything was rendered
    assert not (ws.root / "out").exists()

    wrong = cli(ws, "run", "--all", "--send", "--now", NOW, env={PASSWORD_ENV: "nope"})
    assert wrong.code == 1
    errors = [line for line in wrong.err.splitlines() if line]
    assert len(errors) == 1
    assert errors[0].startswith(
        "error: delivery.username: the server rejected the login for 'tienda': 535"
    )
    assert errors[0].endswith(f"check delivery.username and the password in ${PASSWORD_ENV}")
    assert set(statuses(ws).values()) == {"rendered", "skipped"}  # rendered, not sent
    assert server.messages == []

    right = cli(ws, "send", "--now", NOW, env={PASSWORD_ENV: "s3cret"})
    assert right.code == 0, right.err
    assert recipients(server) == Counter(DUE.values())
    assert {m.login for m in server.messages} == {"tienda"}


def test_send_needs_smtp_in_the_config(make_workspace: MakeWorkspace) -> None:
    ws = make_workspace(ROWS)
    for args in (["run", "--all", "--send"], ["send"]):
        result = cli(ws, *args, "--now", NOW)
        assert result.code == 2
        assert "delivery.method in config.yaml is outbox" in result.err
    assert ledger_rows(ws) == {}
    both = cli(ws, "run", "--all", "--send", "--dry-run", "--now", NOW)
    assert both.code == 2
    assert "use --dry-run or --send, not both" in both.err


def test_send_rendered_on_one_day_only(
    make_workspace: MakeWorkspace, smtp_server: SmtpServer
) -> None:
    ws = smtp_workspace(make_workspace, smtp_server.port)
    assert cli(ws, "run", "--all", "--now", NOW).code == 0
    # The next day c2 (28 Nov) enters its window.
    assert cli(ws, "run", "--all", "--now", "2026-11-25T10:00").code == 0
    result = cli(ws, "send", "--rendered-on", "2026-11-25", "--now", "2026-11-25T10:05")
    assert result.code == 0, result.err
    assert recipients(smtp_server) == Counter(["jose@example.com"])
    # c6's window (its birthday, 24 Nov) closed unsent; c1 and c5 still wait.
    assert statuses(ws) == {
        "c1": "rendered",
        "c2": "sent",
        "c4": "skipped",
        "c5": "rendered",
        "c6": "missed",
    }


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-24T22:00", ("quiet hours (21:00-09:00)", "2026-11-25T09:00")),
        ("2026-11-24T08:59", ("quiet hours (21:00-09:00)", "2026-11-24T09:00")),
        ("2026-11-24T09:00", None),
        # Saturday night: Sunday is a quiet day, so Monday 09:00.
        ("2026-11-28T23:00", ("quiet hours (21:00-09:00)", "2026-11-30T09:00")),
        ("2026-11-29T12:00", ("quiet day (sun)", "2026-11-30T09:00")),
    ],
)
def test_quiet_until(now: str, expected: tuple[str, str] | None) -> None:
    from zoneinfo import ZoneInfo

    from outreach.deliver.send import quiet_until
    from outreach.model.config import CadencePolicy

    policy = CadencePolicy(quiet_hours="21:00-09:00", quiet_weekdays=("sun",))
    moment = datetime.fromisoformat(now).replace(tzinfo=ZoneInfo("Europe/Madrid"))
    found = quiet_until(policy, essential=False, today=moment.date(), now=moment)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found[0], found[1].isoformat(timespec="minutes")) == (
            expected[0],
            expected[1] + "+01:00",
        )
    # An essential email (a reminder) ignores quiet days, never quiet hours.
    sunday_noon = datetime(2026, 11, 29, 12, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    assert quiet_until(policy, essential=True, today=date(2026, 11, 29), now=sunday_noon) is None


def test_ledger_waiting_emails_and_missed(tmp_path: Path) -> None:
    today = date(2026, 11, 24)
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

    def row(contact: str, status: str, latest: int, **extra: object) -> MessageRecord:
        values: dict[str, object] = {
            "contact_id": contact,
            "campaign": "birthday",
            "occurrence_key": "birthday:2026",
            "channel": "email",
            "status": status,
            "run_date": date(2026, 11, 22),
            "earliest": date(2026, 11, 20),
            "latest": date(2026, 11, latest),
            "updated_at": now,
            # A failed email waits for the send step only when its file exists.
            "artifact": "out/outbox/x.eml" if status == "failed" else None,
            **extra,
        }
        return MessageRecord(**values)  # type: ignore[arg-type]

    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.record(
            [
                row("late", "rendered", 26),
                row("urgent", "rendered", 24),
                row("retry", "failed", 25, reason="transient"),
                row("refused", "failed", 25, reason="permanent"),
                row("maybe", "uncertain", 25),
                row("done", "sent", 25),
                row("letter", "rendered", 25, channel="letter"),
                row("closed", "rendered", 23),
                row("closed-retry", "failed", 23, reason="transient"),
                row("closed-refused", "failed", 23, reason="permanent"),
            ]
        )
        waiting = [r.contact_id for r in ledger.waiting_emails(today=today)]
        assert waiting == ["urgent", "retry", "late"]  # most urgent first
        with_uncertain = ledger.waiting_emails(today=today, uncertain=True)
        assert [r.contact_id for r in with_uncertain] == ["urgent", "retry", "maybe", "late"]
        assert [r.contact_id for r in ledger.open_uncertain_emails(today=today)] == ["maybe"]

        assert ledger.mark_unsent_missed(today=today, now=now) == 2
        by_contact = {r.contact_id: r for r in ledger.messages()}
        assert by_contact["closed"].status == "missed"
        assert by_contact["closed-retry"].status == "missed"
        assert by_contact["closed-refused"].status == "failed"  # keeps the server's reply
        assert by_contact["letter"].status == "rendered"  # letters are not sent over SMTP


def test_a_server_that_is_down_is_said_in_the_owners_spanish_with_what_to_do(
    make_workspace: MakeWorkspace, closed_port: int
) -> None:
    ws = smtp_workspace(make_workspace, closed_port, max_retries=0, max_consecutive_failures=2)
    ws.write("config.yaml", "language: es\n" + (ws.root / "config.yaml").read_text())
    result = cli(ws, "run", "--all", "--send", "--now", NOW)
    assert result.code == 1
    assert (
        f"envío detenido tras 2 fallos seguidos: el servidor de 127.0.0.1:{closed_port} "
        "rechazó la conexión" in result.err
    )
    assert (
        "compruebe que el servidor SMTP funciona y que los ajustes de envío son correctos"
        in result.err
    )
    for english in ("stopped sending", "refused the connection", "check that the SMTP server"):
        assert english not in result.out + result.err, english
