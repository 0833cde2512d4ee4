"""Replies read and acted on, and the feedback loop's loose ends, on Maildirs on disk: the
cases of issue 22's "Why", each against the promo run of tests/feedback_helpers (replies are
built from the real emails of its outbox, answering their Message-IDs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from conftest import Workspace
from feedback_helpers import DATA, deliver, ledger_rows, make_maildir, promo_workspace, tree

from outreach.feedback.process import FeedbackReport, read_bounces
from outreach.feedback.queue import close_reply, list_replies, remove_suppression, unblock
from outreach.feedback.verp import verp_token
from outreach.ledger import Ledger
from outreach.model.config import load_settings

MakeWorkspace = Callable[..., Workspace]
DAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
BOUNCES = "bounces:\n  maildir: Maildir\n"
REPLIES = "replies:\n  maildir: Inbox\n"
VERP = '  return_path: "rebotes+{token}@casalucia.example"\n'


def workspace(make_workspace: MakeWorkspace, *, verp: bool = False) -> Workspace:
    ws = promo_workspace(make_workspace, config_extra=BOUNCES + (VERP if verp else "") + REPLIES)
    config = ws.root / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("unsubscribe:\n", 'unsubscribe:\n  mailto: "baja@casalucia.example"\n'),
        encoding="utf-8",
    )
    make_maildir(ws.root / "Maildir")
    make_maildir(ws.root / "Inbox")
    return ws


def read(ws: Workspace, day: date = DAY) -> FeedbackReport:
    settings = load_settings(ws.root / "config.yaml")
    return read_bounces(settings, maildir=None, environ={}, today=day, now=NOW)


def sent(ws: Workspace, contact_id: str) -> EmailMessage:
    """The promo email of the run's outbox for this contact."""
    path = next(p for p in ws.files("out/outbox") if p.name == f"{contact_id}.eml")
    found = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(found, EmailMessage)
    return found


def reply(
    ws: Workspace,
    contact_id: str,
    text: str,
    *,
    sender: str,
    to: str = "reservas@casalucia.example",
    answers: str | None = None,
    number: int = 1,
) -> bytes:
    """A reply to the contact's email (In-Reply-To its Message-ID), quoting it whole."""
    original = sent(ws, contact_id)
    body = original.get_body(("plain",))
    assert body is not None
    quoted = "\n".join("> " + line for line in body.get_content().splitlines())
    message_id = answers or original["Message-ID"]
    return (
        f"From: <{sender}>\nTo: <{to}>\nSubject: Re: {original['Subject']}\n"
        f"Date: Tue, 24 Nov 2026 08:00:00 +0100\nMessage-ID: <r{number}.{contact_id}@example.net>\n"
        f"In-Reply-To: {message_id}\nReferences: {message_id}\n"
        "Content-Type: text/plain; charset=utf-8\n\n"
        f"{text}\n\nEl lun, 23 nov 2026, Casa Lucía <hola@casalucia.example> escribió:\n{quoted}\n"
    ).encode()


def suppressed(ws: Workspace) -> list[tuple[object, ...]]:
    return ledger_rows(ws, "SELECT value, channel, source FROM suppressions ORDER BY value")


def test_a_stop_request_by_reply_suppresses_email_at_once_with_evidence(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    inbox = ws.root / "Inbox"
    stop = deliver(
        inbox, "", reply(ws, "c-002", "Por favor, dadme de baja.", sender="bruno@example.net")
    )
    deliver(inbox, "", reply(ws, "c-003", "¿Tenéis mesa el sábado?", sender="carla@example.org"))
    deliver(inbox, "", b"From: <proveedor@example.com>\nSubject: Factura\n\nAdjunta.\n")
    report = read(ws)
    assert suppressed(ws) == [("c-002", "email", "reply")]
    assert report.suppressed == [("c-002", "email", "reply")]
    rows = ledger_rows(ws, "SELECT contact_id, campaign, kind, status, evidence, kept FROM replies")
    by_contact = {r[0]: r for r in rows}
    assert by_contact["c-002"][1:5] == ("promo", "stop", "stopped", "Por favor, dadme de baja.")
    kept = ws.root / str(by_contact["c-002"][5])
    assert kept.read_bytes() == stop.read_bytes()
    assert by_contact["c-003"][2:4] == ("question", "open")
    assert report.others == 1  # the owner's own mail: not reported, not touched
    # The owner's inbox is never changed: all three stay where they were.
    assert len(tree(inbox / "new")) == 3 and not (inbox / ".not-ours").exists()
    # The next run sends c-002 no more email (and no letter instead: an answer, not a gap).
    settings = load_settings(ws.root / "config.yaml")
    with Ledger.open(settings.ledger_path) as ledger:
        assert ledger.suppressions()["c-002"] == frozenset({"email"})
    # A second reading reads nothing new, counts nothing twice.
    again = read(ws)
    assert again.messages == [] or all(m.action == "already read" for m in again.messages)
    assert again.problems == [] and again.others == 0
    assert len(ledger_rows(ws, "SELECT id FROM replies")) == 2


def test_a_negated_request_and_a_complaint_wait_for_the_owner(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    inbox = ws.root / "Inbox"
    text = "No me deis de baja, ¡me encantan vuestros menús!"
    deliver(inbox, "", reply(ws, "c-001", text, sender="ana@example.com"))
    deliver(
        inbox,
        "",
        reply(ws, "c-004", "El cocido llegó frío. Una vergüenza.", sender="dario@contoso.example"),
    )
    auto = reply(
        ws, "c-006", "Estoy fuera de la oficina hasta el lunes.", sender="fede@example.com"
    )
    deliver(inbox, "", auto)
    read(ws)
    assert suppressed(ws) == []
    views = list_replies(load_settings(ws.root / "config.yaml"), today=date(2026, 11, 26))
    assert [(v.reply.contact_id, v.reply.kind, v.waiting_days) for v in views] == [
        ("c-001", "unclear_stop", 2),
        ("c-004", "complaint", 2),
    ]
    assert views[0].name == "Ana López" and views[0].reply.campaign == "promo"
    # The automatic answer is recorded, and waits for nobody.
    assert ledger_rows(
        ws, "SELECT contact_id, kind, status FROM replies WHERE kind = 'automatic'"
    ) == [("c-006", "automatic", "recorded")]
    # The owner reads the unclear one as a stop; closes the complaint with a note.
    settings = load_settings(ws.root / "config.yaml")
    first, second = (v.reply.id for v in views)
    assert first is not None and second is not None
    close_reply(settings, first, note=None, stop=True, now=NOW)
    close_reply(settings, second, note="called him", stop=False, now=NOW)
    assert suppressed(ws) == [("c-001", "email", "owner")]
    assert list_replies(settings, today=DAY) == []
    closed = {v.reply.id: v.reply for v in list_replies(settings, today=DAY, everything=True)}
    assert (closed[second].status, closed[second].note) == ("done", "called him")


def test_a_forged_in_reply_to_suppresses_nobody(make_workspace: MakeWorkspace) -> None:
    ws = workspace(make_workspace)
    # c-003 answers c-002's email (its Message-ID is easy to work out): it waits for the owner.
    deliver(ws.root / "Inbox", "", reply(ws, "c-002", "unsubscribe", sender="carla@example.org"))
    # Another address of the same person answering her own email counts for her, but waits.
    deliver(
        ws.root / "Inbox",
        "",
        reply(ws, "c-005", "Dadme de baja", sender="elena@work.example", number=2),
    )
    read(ws)
    assert suppressed(ws) == []
    rows = ledger_rows(
        ws, "SELECT contact_id, kind, status, evidence FROM replies ORDER BY contact_id"
    )
    assert [r[:3] for r in rows] == [
        ("c-002", "unclear_stop", "open"),
        ("c-005", "unclear_stop", "open"),
    ]
    assert "from carla@example.org, not the contact's address" in str(rows[0][3])


def test_a_message_to_the_list_unsubscribe_mailto_suppresses_its_sender(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    gmail = (
        b"From: Gema Ortiz <gema@example.com>\nTo: baja@casalucia.example\n"
        b"Subject: unsubscribe\nMessage-ID: <u1@mail.gmail.com>\n\nThis message was "
        b"automatically generated by Gmail.\n"
    )
    deliver(ws.root / "Maildir", "", gmail)  # the bounce mailbox: wherever it lands
    stranger = gmail.replace(b"gema@example.com", b"nadie@example.org").replace(b"u1@", b"u2@")
    deliver(ws.root / "Maildir", "", stranger)
    report = read(ws)
    assert suppressed(ws) == [("c-007", "email", "mailto")]
    assert [m.action for m in report.messages] == ["stopped", "not ours"]
    assert len(tree(ws.root / "Maildir" / ".not-ours" / "new")) == 1


def test_a_mailto_carrying_a_token_names_its_contact_and_a_bad_token_nobody(
    make_workspace: MakeWorkspace,
) -> None:
    from outreach.render.templates import unsubscribe_token

    ws = workspace(make_workspace)
    config = ws.root / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'mailto: "baja@casalucia.example"', 'mailto: "baja+{id}.{token}@casalucia.example"'
        ),
        encoding="utf-8",
    )
    token = unsubscribe_token(secret="test-secret", contact_id="c-003")
    for number, address in enumerate(
        [f"baja+c-003.{token}@casalucia.example", "baja+c-004.0123456789abcdef@casalucia.example"]
    ):
        mail = (
            f"From: <forwarded{number}@example.org>\nTo: <{address}>\nSubject: unsubscribe\n"
            f"Message-ID: <m{number}@example.org>\n\nunsubscribe\n"
        )
        deliver(ws.root / "Maildir", "", mail.encode())
    report = read(ws)
    assert suppressed(ws) == [("c-003", "email", "mailto")]
    assert [m.action for m in report.messages] == ["stopped", "not ours"]


def test_verp_blocks_the_contacts_address_whatever_the_report_names(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace, verp=True)
    settings = load_settings(ws.root / "config.yaml")
    message_id = str(sent(ws, "c-002")["Message-ID"]).strip("<>")
    token = verp_token(secret=settings.coupon.secret, message_id=message_id)
    assert token is not None
    verp = f"rebotes+{token}@casalucia.example".encode()
    forwarded = (
        (DATA / "exim-hard.eml")
        .read_bytes()
        .replace(b"bruno@example.net", b"b.arrieta@forwarded.example")
    )
    forwarded = b"Delivered-To: " + verp + b"\n" + forwarded
    deliver(ws.root / "Maildir", "", forwarded)
    report = read(ws)
    assert [(b.value, b.contact_id) for b in report.blocked] == [("bruno@example.net", "c-002")]
    # A failure notice with no readable report, back through c-003's token.
    message_id = str(sent(ws, "c-003")["Message-ID"]).strip("<>")
    token = verp_token(secret=settings.coupon.secret, message_id=message_id)
    notice = (
        f"Return-Path: <>\nDelivered-To: rebotes+{token}@casalucia.example\n"
        "From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail Returned to Sender\n\n"
        "Your message could not be delivered.\n"
    ).encode()
    deliver(ws.root / "Maildir", "", notice)
    later = read(ws, date(2026, 11, 25))
    assert [(b.value, b.day, b.score) for b in later.blocked] == [
        ("carla@example.org", date(2026, 11, 25), 1.0)
    ]


def test_with_verp_reports_without_a_valid_token_block_nobody(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace, verp=True)
    settings = load_settings(ws.root / "config.yaml")
    maildir = ws.root / "Maildir"
    # 1. A DSN with no token naming v1 (ana).
    deliver(maildir, "", (DATA / "postfix-hard.eml").read_bytes())
    # 2. The attacker's (c-008's) own valid token over a report naming v2 and v3.
    message_id = str(sent(ws, "c-008")["Message-ID"]).strip("<>")
    token = verp_token(secret=settings.coupon.secret, message_id=message_id)
    forged = (
        (DATA / "exim-hard.eml")
        .read_bytes()
        .replace(b"bruno@example.net", b"bruno@example.net\n  carla@example.org")
    )
    deliver(maildir, "", f"Delivered-To: rebotes+{token}@casalucia.example\n".encode() + forged)
    # 3. An ARF complaint with no token naming v4 (gema).
    deliver(maildir, "", (DATA / "arf-complaint.eml").read_bytes())
    report = read(ws)
    assert report.blocked == [] and report.suppressed == []
    assert suppressed(ws) == [] and ledger_rows(ws, "SELECT * FROM blocks") == []
    assert len(report.problems) == 3
    assert len(tree(maildir / ".not-ours" / "new")) == 3
    # Reported once: the next reading is quiet.
    assert read(ws).problems == []


def test_a_strangers_bounce_is_reported_once_then_set_aside(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    stranger = (
        (DATA / "postfix-hard.eml")
        .read_bytes()
        .replace(b"ana@example.com", b"nobody@example.com")
        .replace(b"0574cd0930cc35256512d8e8f3a5a3ec", b"ffffffffffffffffffffffffffffffff")
    )
    deliver(ws.root / "Maildir", "", stranger)
    deliver(ws.root / "Maildir", "", stranger)  # delivered twice: set aside twice, shown once
    first = read(ws)
    assert [m.action for m in first.messages] == ["not matched"]
    assert tree(ws.root / "Maildir" / "new") == []
    assert len(tree(ws.root / "Maildir" / ".not-ours" / "new")) == 2
    assert read(ws).messages == []
    result = ws.run("bounces", "--date", "2026-11-25")
    assert result.code == 0, result.err


def test_without_verp_a_quoted_message_id_counts_only_for_the_address_it_went_to(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    maildir = ws.root / "Maildir"
    # c-008 quotes its own email in a report naming c-002 and c-003: nobody is blocked.
    own = str(sent(ws, "c-008")["Message-ID"]).strip("<>").partition("@")[0]
    forged = (
        (DATA / "postfix-hard.eml")
        .read_bytes()
        .replace(b"0574cd0930cc35256512d8e8f3a5a3ec", own.encode())
    )
    deliver(maildir, "", forged.replace(b"ana@example.com", b"bruno@example.net"))
    # A complaint whose provider redacted the recipient still counts for the email it quotes.
    redacted = (
        (DATA / "arf-complaint.eml")
        .read_bytes()
        .replace(b"gema@example.com", b"redacted@yahoo.example")
    )
    deliver(maildir, "", redacted)
    report = read(ws)
    assert report.blocked == []
    assert suppressed(ws) == [("c-007", "email", "complaint")]
    assert [m.action for m in report.messages] == ["not matched", "stopped"]


def test_a_complaint_suppresses_email_only_and_block_dates_are_the_reading_day(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    deliver(ws.root / "Maildir", "arf-complaint.eml")
    old = (
        (DATA / "postfix-hard.eml")
        .read_bytes()
        .replace(b"Date: ", b"Date: Mon, 2 Apr 0101 10:00:00 +0000\nX-Old-Date: ", 1)
    )
    deliver(ws.root / "Maildir", "", old)
    report = read(ws)
    assert suppressed(ws) == [("c-007", "email", "complaint")]
    [block] = report.blocked
    assert (block.value, block.day, block.score) == ("ana@example.com", DAY, 1.0)
    assert report.complaints == 1 and report.emails == 8
    assert report.complaint_rate == 125.0


def test_suppressions_and_blocks_are_listed_and_undone_with_a_reason(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    deliver(ws.root / "Maildir", "postfix-hard.eml")
    deliver(ws.root / "Inbox", "", reply(ws, "c-002", "BAJA", sender="bruno@example.net"))
    read(ws)
    listed = ws.run("unsubscribe", "--list", "--json")
    assert listed.code == 0, listed.err
    data = json.loads(listed.out)
    assert [(s["value"], s["source"]) for s in data["suppressions"]] == [("c-002", "reply")]
    assert [b["address"] for b in data["blocks"]] == ["ana@example.com"]
    settings = load_settings(ws.root / "config.yaml")
    lifted = remove_suppression(
        settings, "bruno@example.net", reason="called to come back", today=DAY, now=NOW
    )
    assert lifted == [("c-002", "email", "reply")]
    assert [
        b.value for b in unblock(settings, "c-001", channel=None, reason="typo", today=DAY, now=NOW)
    ] == ["ana@example.com"]
    assert suppressed(ws) == [] and ledger_rows(ws, "SELECT * FROM blocks") == []
    assert ledger_rows(ws, "SELECT what, value, was, reason, day FROM undone ORDER BY id") == [
        ("suppression", "c-002", "reply", "called to come back", "2026-11-24"),
        ("block", "ana@example.com", "hard-bounce", "typo", "2026-11-24"),
    ]
    missing = ws.run("unsubscribe", "--remove", "c-002", "--reason", "again")
    assert missing.code == 2 and "not on the suppression list" in missing.out


def test_the_owners_queue_on_the_command_line(make_workspace: MakeWorkspace) -> None:
    ws = workspace(make_workspace)
    inbox = ws.root / "Inbox"
    deliver(
        inbox, "", reply(ws, "c-004", "Me cobrasteis dos veces.", sender="dario@contoso.example")
    )
    deliver(inbox, "", reply(ws, "c-001", "¿Cómo me doy de baja?", sender="ana@example.com"))
    deliver(inbox, "", reply(ws, "c-002", "Dadme de baja", sender="bruno@example.net"))
    script = "<script>alert(1)</script> ¿Hay mesa?"
    deliver(inbox, "", reply(ws, "c-005", script, sender="elena@yahoo.com"))
    read_out = ws.run("bounces", "--date", "2026-11-24")
    assert read_out.code == 0, read_out.err
    assert "suppressed: c-002 gets no more email (asked to stop in a reply)" in read_out.out
    listed = ws.run("replies", "--json", "--date", "2026-11-27")
    assert listed.code == 0, listed.err
    rows = json.loads(listed.out)["replies"]
    assert [(r["contact_id"], r["campaign"], r["kind"], r["status"]) for r in rows] == [
        ("c-004", "promo", "complaint", "open"),
        ("c-001", "promo", "unclear_stop", "open"),
        ("c-005", "promo", "question", "open"),
    ]
    assert rows[0]["received"] == "2026-11-24" and rows[0]["waiting_days"] == 3
    assert rows[0]["excerpt"] == "Me cobrasteis dos veces."
    # The report shows what waits, oldest first, with how long it has waited.
    page = ws.run("report", "--to", "2026-11-26", "--output", "report.html")
    assert page.code == 0, page.err
    html = (ws.root / "report.html").read_text(encoding="utf-8")
    assert "3 replies wait for your answer (outreach replies shows them)." in html
    assert "c-004, complaint, waiting 2 days: Re: Menú de otoño — Me cobrasteis" in html
    assert "Complaints: 0 in 8 emails over the last 30 days (0,0 per 1,000)." in html
    assert "c-002: no more email since 2026-11-24 (reply)" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; ¿Hay mesa?" in html and "<script>" not in html
    why = ws.run("explain", "c-004", "--date", "2026-11-27")
    assert "wrote back: reply #1 read 2026-11-24 (promo): complaint, open" in why.out
    explained = ws.run("history", "--contact", "c-002")
    assert "wrote back: reply #3 read 2026-11-24 (promo): stop, stopped" in explained.out
    assert "[the request: Dadme de baja]" in explained.out
    text = ws.run("replies", "--date", "2026-11-27")
    assert "c-004 (Darío Marín), promo, received 2026-11-24 (waiting 3 days): complaint" in text.out
    done = ws.run("replies", "done", str(rows[0]["id"]), "--note", "refunded")
    assert done.code == 0 and "is done" in done.out
    stop = ws.run("replies", "stop", str(rows[1]["id"]))
    assert stop.code == 0 and "c-001 gets no more emails" in stop.out
    assert ws.run("replies", "done", str(rows[2]["id"])).code == 0
    assert ws.run("replies").out.strip() == "no replies wait for you"
    everything = json.loads(ws.run("replies", "--all", "--json").out)["replies"]
    assert sorted((r["contact_id"], r["status"], r["note"]) for r in everything) == [
        ("c-001", "stopped", None),
        ("c-002", "stopped", None),
        ("c-004", "done", "refunded"),
        ("c-005", "done", None),
    ]
    missing = ws.run("replies", "done", "999")
    assert missing.code == 2 and "there is no reply 999" in missing.err
    removed = ws.run("unsubscribe", "--remove", "c-001", "--reason", "asked by phone")
    assert removed.code == 0 and "c-001 may get email again" in removed.out
    no_reason = ws.run("unsubscribe", "--remove", "c-002")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    unblocked = ws.run("unblock", "nobody@example.com")
    assert unblocked.code == 2 and "nothing is blocked for nobody@example.com" in unblocked.out


def test_replies_and_undo_on_the_postgresql_ledger(pg_url: str) -> None:
    from outreach.ledger import Block, ReplyRecord

    stop = ReplyRecord(
        fingerprint="f1",
        contact_id="c-002",
        sender="bruno@example.net",
        received=DAY,
        subject="Re: Menú",
        excerpt="Dadme de baja",
        kind="stop",
        status="stopped",
        mailbox="Inbox",
        message_id="r1@example.net",
        evidence="Dadme de baja",
    )
    question = ReplyRecord(
        "f2", "c-003", "carla@example.org", DAY, "Re: Menú", "¿Mesa?", "question", "open", "Inbox"
    )
    block = Block(
        "email", "ana@example.com", "c-001", "hard-bounce", DAY, score=1.0, reported=date(101, 4, 2)
    )
    with Ledger.connect(pg_url) as ledger:
        ledger.record_replies([stop, question], suppressions=[("c-002", "email", "reply")], now=NOW)
        # The same reply again (another copy, same Message-ID): kept once.
        ledger.record_replies([replace(stop, fingerprint="f3")], now=NOW)
        ledger.record_feedback(blocks=[block], now=NOW)
        assert [r.contact_id for r in ledger.replies()] == ["c-002", "c-003"]
        waiting = ledger.replies(statuses=["open"])
        assert [r.kind for r in waiting] == ["question"] and waiting[0].id is not None
        closed = ledger.close_reply(waiting[0].id, status="done", note="sí", now=NOW)
        assert closed is not None and (closed.status, closed.note) == ("done", "sí")
        assert ledger.blocks()[0].reported == date(101, 4, 2)
        assert ledger.remove_suppressions(["c-002"], reason="volvió", today=DAY, now=NOW) == [
            ("c-002", "email", "reply")
        ]
        assert [
            b.value
            for b in ledger.remove_blocks(
                ["ana@example.com"], channel="email", reason="ok", today=DAY, now=NOW
            )
        ] == ["ana@example.com"]
        assert [u[0] for u in ledger.undone()] == ["suppression", "block"]
        assert ledger.suppressions() == {}


def test_the_run_says_what_came_back_since_the_previous_run(
    make_workspace: MakeWorkspace,
) -> None:
    ws = workspace(make_workspace)
    moments = ["--now", "2026-11-25T08:00"]
    assert ws.run("run", "--all", "--date", "2026-11-25", *moments).code == 0
    inbox = ws.root / "Inbox"
    deliver(inbox, "", reply(ws, "c-002", "Por favor, dadme de baja.", sender="bruno@example.net"))
    deliver(inbox, "", reply(ws, "c-003", "¿Tenéis mesa el sábado?", sender="carla@example.org"))
    settings = load_settings(ws.root / "config.yaml")
    read_bounces(
        settings,
        maildir=None,
        environ={},
        today=date(2026, 11, 25),
        now=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
    )
    # The next run tells the owner of the stop request (with how to undo it) and of the
    # question that waits, in its text and in its JSON.
    text = ws.run("run", "--all", "--date", "2026-11-26", "--now", "2026-11-26T08:00")
    assert text.code == 0, text.err
    assert "what came back since the previous run:" in text.out
    assert (
        "c-002 gets no more email (asked to stop in a reply); undo with "
        "`outreach unsubscribe --remove c-002 --reason ...`"
    ) in text.out
    assert "1 reply waits for you: see `outreach replies`" in text.out
    # Told once: the run after that has no new suppression to report, the question still waits.
    later = ws.run("run", "--all", "--date", "2026-11-27", "--now", "2026-11-27T08:00", "--json")
    assert later.code == 0, later.err
    came_back = json.loads(later.out)["came_back"]
    assert came_back == {"suppressed": [], "replies_waiting": 1}
