"""Bounces from real SMTP sending: the VERP envelope sender, a 550 at RCPT time counted as a
hard bounce, and a relay's delivery report (after the next server answered 550) delivered into
the Maildir and matched by its VERP token."""

from __future__ import annotations

import asyncio
import email
import smtplib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
import smtp_server as servers
from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import Workspace
from feedback_helpers import (
    DATA,
    ROWS,
    deliver,
    ledger_rows,
    make_maildir,
    promo_workspace,
)
from smtp_server import HOST, RecordingHandler, SmtpServer

from outreach.feedback.verp import verify_token, verp_token

smtp_server_factory = servers.smtp_server_factory
StartServer = Callable[..., SmtpServer]
MakeWorkspace = Callable[..., Workspace]
REFUSAL = "550 5.1.1 <ana@example.com>: Recipient address rejected: User unknown"
RETURN_PATH = "rebotes+{token}@casalucia.example"


def smtp_config(port: int, *, maildir: bool = False, connections: int = 1) -> str:
    text = (
        "delivery:\n  method: smtp\n  host: 127.0.0.1\n"
        f"  port: {port}\n  security: none\n  timeout_s: 5\n  max_retries: 0\n"
        f"  connections: {connections}\n"
        f'bounces:\n  return_path: "{RETURN_PATH}"\n'
    )
    return text + ("  maildir: Maildir\n" if maildir else "")


def message_ids(ws: Workspace) -> dict[str, str]:
    return {
        str(contact): str(mid)
        for contact, mid in ledger_rows(ws, "SELECT contact_id, message_id FROM messages")
    }


@pytest.mark.parametrize("connections", [1, 4], ids=["one-connection", "pipelined-4"])
def test_each_email_goes_out_with_its_own_verp_sender(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer, connections: int
) -> None:
    handler = RecordingHandler(refuse_rcpt={"ana@example.com": REFUSAL}, pipelining=connections > 1)
    server = smtp_server_factory(handler=handler)
    ws = promo_workspace(
        make_workspace, config_extra=smtp_config(server.port, connections=connections)
    )
    result = ws.run("send", "--date", "2026-11-23", "--now", "2026-11-23T10:00")
    assert result.code == 1, result.err  # one refused
    ids = message_ids(ws)
    assert len(server.messages) == len(ROWS) - 1
    emails = {row.split(",")[0]: row.split(",")[3] for row in ROWS}
    for received in server.messages:
        local, _, domain = received.mail_from.partition("@")
        assert domain == "casalucia.example" and local.startswith("rebotes+")
        digits = verify_token(local.removeprefix("rebotes+"), secret="test-secret")
        assert digits is not None
        # The token names the very email it travels with.
        (contact,) = [c for c, mid in ids.items() if mid.startswith(digits)]
        assert received.rcpt_tos == (emails[contact],)
        sent_id = email.message_from_bytes(received.data)["Message-ID"].strip("<>")
        assert sent_id == ids[contact]
    # The 550 at RCPT time is a hard bounce: counted, and the address blocked.
    assert ledger_rows(
        ws, "SELECT address, contact_id, campaign, kind, status, source FROM bounce_events"
    ) == [("ana@example.com", "c-001", "promo", "hard", "5.1.1", "smtp")]
    assert ledger_rows(ws, "SELECT channel, value, reason, status FROM blocks") == [
        ("email", "ana@example.com", "hard-bounce", "5.1.1")
    ]
    explained = ws.run("explain", "c-001", "--date", "2026-11-24")
    assert "blocked: ana@example.com is blocked for email since 2026-11-23: a hard bounce" in (
        explained.out
    )


def dsn(*, envelope_from: str, recipient: str, reply: str, original: bytes) -> bytes:
    """A delivery status report (RFC 3464) as Postfix writes one, for the Maildir."""
    headers = original.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n").decode()
    now = format_datetime(datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC))
    code = reply.split()[1]
    return f"""Return-Path: <>
X-Original-To: {envelope_from}
Delivered-To: {envelope_from}
Date: {now}
From: MAILER-DAEMON@relay.casalucia.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {envelope_from}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B.relay"
Message-Id: <20261123100005.relay@relay.casalucia.example>

--B.relay
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.casalucia.example.

<{recipient}>: host {HOST} said: {reply} (in reply to RCPT TO command)

--B.relay
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.casalucia.example

Final-Recipient: rfc822; {recipient}
Action: failed
Status: {code}
Diagnostic-Code: smtp; {reply}

--B.relay
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{headers}

--B.relay--
""".encode()


class RelayHandler:
    """A relay: accepts the mail, hands it on to the next server, and when that one refuses a
    recipient, writes the bounce to the sender (the envelope's MAIL FROM) into the Maildir."""

    def __init__(self, *, next_port: int, maildir: Path) -> None:
        self.next_port = next_port
        self.maildir = maildir
        self.senders: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.mail_from, str) and isinstance(envelope.content, bytes)
        mail_from, rcpts, data = envelope.mail_from, list(envelope.rcpt_tos), envelope.content
        self.senders.append(mail_from)

        def forward() -> None:
            with smtplib.SMTP(HOST, self.next_port, timeout=5) as smtp:
                try:
                    smtp.sendmail(mail_from, rcpts, data)
                except smtplib.SMTPRecipientsRefused as refused:
                    for rcpt, (code, reply) in refused.recipients.items():
                        text = f"{code} {reply.decode()}"
                        report = dsn(
                            envelope_from=mail_from, recipient=rcpt, reply=text, original=data
                        )
                        deliver(self.maildir, "", report)

        await asyncio.get_running_loop().run_in_executor(None, forward)
        return "250 2.0.0 Ok: queued"


def test_a_relays_bounce_in_the_maildir_is_matched_by_its_verp_token(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer, tmp_path: Path
) -> None:
    final = smtp_server_factory(handler=RecordingHandler(refuse_rcpt={"ana@example.com": REFUSAL}))
    maildir = make_maildir(tmp_path / "ws" / "Maildir")
    relay_handler = RelayHandler(next_port=final.port, maildir=maildir)
    relay = smtp_server_factory(handler=relay_handler)
    ws = promo_workspace(make_workspace, config_extra=smtp_config(relay.port, maildir=True))
    assert ws.run("send", "--date", "2026-11-23", "--now", "2026-11-23T10:00").code == 0
    assert len(final.messages) == len(ROWS) - 1
    bounces = sorted((maildir / "new").iterdir())
    assert len(bounces) == 1
    # The relay answered 250, so only the report in the mailbox tells.
    assert ledger_rows(ws, "SELECT count(*) FROM bounce_events") == [(0,)]
    result = ws.run("bounces", "--date", "2026-11-23")
    assert result.code == 0, result.err
    assert "hard, ana@example.com (contact c-001): counted, and blocked [5.1.1;" in result.out
    # Matched by the token: campaign and occurrence are known (an address alone would not say).
    assert ledger_rows(ws, "SELECT address, campaign, occurrence_key, kind FROM bounce_events") == [
        ("ana@example.com", "promo", "promotion", "hard")
    ]
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        (kept,) = db.execute("SELECT kept FROM blocks").fetchone()
    assert (ws.root / kept).read_bytes() == (
        maildir / ".outreach-processed" / "cur" / (bounces[0].name + ":2,S")
    ).read_bytes()


def test_an_email_rendered_before_its_address_was_blocked_is_not_sent(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer
) -> None:
    server = smtp_server_factory()
    ws = promo_workspace(make_workspace, config_extra=smtp_config(server.port, maildir=True))
    # About c-001's promo, back through its VERP address (with VERP on, nothing else counts).
    token = verp_token(secret="test-secret", message_id=message_ids(ws)["c-001"])
    bounce = (DATA / "postfix-hard.eml").read_bytes()
    deliver(
        make_maildir(ws.root / "Maildir"),
        "",
        f"Delivered-To: {RETURN_PATH.format(token=token)}\n".encode() + bounce,
    )
    assert ws.run("bounces", "--date", "2026-11-23").code == 0
    result = ws.run("send", "--date", "2026-11-23", "--now", "2026-11-23T10:00")
    assert result.code == 0, result.err
    assert sorted(r for m in server.messages for r in m.rcpt_tos) == sorted(
        row.split(",")[3] for row in ROWS[1:]
    )
    assert ledger_rows(ws, "SELECT status, reason FROM messages WHERE contact_id = 'c-001'") == [
        ("skipped", "email blocked (bounces)")
    ]


def test_a_recipient_refused_in_spanish_is_still_read_back_as_a_hard_bounce(
    make_workspace: MakeWorkspace, smtp_server_factory: StartServer
) -> None:
    """The owner reads the refusal in Spanish, and the send step still recognises its own
    Spanish sentence: the 550 is counted and the address blocked as in English."""
    handler = RecordingHandler(refuse_rcpt={"ana@example.com": REFUSAL})
    server = smtp_server_factory(handler=handler)
    ws = promo_workspace(make_workspace, config_extra="language: es\n" + smtp_config(server.port))
    result = ws.run("send", "--date", "2026-11-23", "--now", "2026-11-23T10:00")
    assert result.code == 1, result.err
    said = "el servidor rechazó al destinatario ana@example.com: " + REFUSAL
    assert said in result.out
    assert "the server refused" not in result.out + result.err
    assert ledger_rows(ws, "SELECT error FROM messages WHERE contact_id = 'c-001'") == [(said,)]
    assert ledger_rows(ws, "SELECT channel, value, reason, status FROM blocks") == [
        ("email", "ana@example.com", "hard-bounce", "5.1.1")
    ]
