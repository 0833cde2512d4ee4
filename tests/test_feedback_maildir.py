"""`outreach bounces` on a Maildir on disk, end to end through the CLI: what is recognised is
counted, blocked and moved; nothing else is touched; reading again changes nothing; the next
runs act on it."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import HEADER, Workspace, with_consent
from feedback_helpers import (
    BOUNCE_DATE,
    DATA,
    ROWS,
    SAMPLES,
    copy_samples,
    deliver,
    ledger_rows,
    make_maildir,
    promo_workspace,
    snapshot,
    tree,
)

from outreach.feedback.mailbox import MaildirBox
from outreach.feedback.process import process_mailbox
from outreach.ledger import Ledger
from outreach.model.config import load_settings

MakeWorkspace = Callable[..., Workspace]
MAILDIR = "bounces:\n  maildir: Maildir\n"
WINTER = """\
    name: winter
    kind: promotion
    channel: preferred
    fallback: true
    start: 2026-11-25
    end: 2026-12-31
    email:
      subject: "Menú de invierno"
      text: promo.txt.j2
    letter:
      template: promo_letter.html.j2
    """


def bounced_workspace(make_workspace: MakeWorkspace) -> tuple[Workspace, Path, dict[str, object]]:
    ws = promo_workspace(make_workspace, config_extra=MAILDIR)
    maildir = make_maildir(ws.root / "Maildir")
    copy_samples(maildir)
    deliver(maildir, "", b"From: Ana <ana@example.com>\nSubject: Re: Menu\n\nMesa para dos?\n")
    result = ws.run("bounces", "--date", BOUNCE_DATE, "--json")
    assert result.code == 0, result.err
    return ws, maildir, json.loads(result.out)


def test_recognised_mail_is_counted_blocked_and_moved_the_rest_stays(
    make_workspace: MakeWorkspace,
) -> None:
    ws, maildir, report = bounced_workspace(make_workspace)
    messages = report["messages"]
    assert isinstance(messages, list)
    by_address = {tuple(m["addresses"]): m for m in messages if m["kind"] != "question"}
    for name, (kind, contact_id, address) in SAMPLES.items():
        if address is None:
            continue
        found = by_address[(address,)]
        assert (found["kind"], found["contact_ids"]) == (kind, [contact_id]), name
    assert sorted(m["kind"] for m in messages) == sorted(
        [k for k, _, _ in SAMPLES.values()] + ["question"]
    )
    # Ana's question, sent to the bounce address: it waits for the owner.
    person = next(m for m in messages if m["kind"] == "question")
    assert (person["action"], person["contact_ids"]) == ("waits for the owner", ["c-001"])
    # Blocked: the five hard bounces (email); not the soft one. The complaint: email only.
    blocked = {(b["channel"], b["address"] or b["contact_id"]) for b in report["blocked"]}
    assert blocked == {
        ("email", "ana@example.com"),
        ("email", "bruno@example.net"),
        ("email", "carla@example.org"),
        ("email", "dario@contoso.example"),
        ("email", "elena@yahoo.com"),
    }
    assert report["suppressed"] == [
        {"contact_id": "c-007", "channel": "email", "source": "complaint"}
    ]
    ana = next(b for b in report["blocked"] if b["address"] == "ana@example.com")
    assert ana["reason"] == "hard-bounce" and ana["status"] == "5.1.1"
    assert ana["date"] == BOUNCE_DATE
    kept = ws.root / ana["kept"]
    assert kept.read_bytes() == (DATA / "postfix-hard.eml").read_bytes()
    assert ledger_rows(ws, "SELECT value, channel, source FROM suppressions") == [
        ("c-007", "email", "complaint")
    ]
    assert ledger_rows(ws, "SELECT address, kind FROM bounce_events WHERE kind = 'soft'") == [
        ("hugo@example.org", "soft")
    ]
    # Everything was matched, so it all sits in the processed subfolder.
    assert tree(maildir / "new") == []
    assert ledger_rows(ws, "SELECT contact_id, kind, status FROM replies") == [
        ("c-001", "question", "open")
    ]
    assert len(tree(maildir / ".outreach-processed" / "cur")) == len(SAMPLES) + 1
    assert all(name.endswith(":2,S") for name in tree(maildir / ".outreach-processed" / "cur"))


def test_reading_the_same_mail_again_changes_nothing(make_workspace: MakeWorkspace) -> None:
    ws, maildir, _ = bounced_workspace(make_workspace)
    before = snapshot(ws)
    kept = tree(ws.root / "state" / "feedback")
    # The same bounces again (a fetchmail that delivers twice, a crash before the move).
    copy_samples(maildir)
    result = ws.run("bounces", "--date", "2026-11-26", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    actions = sorted(m["action"] for m in report["messages"])
    assert actions == ["already read"] * len(SAMPLES)
    assert report["blocked"] == []
    assert snapshot(ws) == before
    assert tree(ws.root / "state" / "feedback") == kept
    assert tree(maildir / "new") == []
    # And with nothing new at all.
    again = ws.run("bounces", "--date", "2026-11-26")
    assert again.code == 0 and "Maildir: no mail" in again.out
    assert snapshot(ws) == before


@pytest.mark.slow
def test_the_next_run_falls_back_to_letters_and_respects_the_complaint(
    make_workspace: MakeWorkspace,
) -> None:
    ws, _, _ = bounced_workspace(make_workspace)
    ws.write("campaigns/winter.yaml", WINTER)
    result = ws.run("run", "--all", "--date", "2026-11-25", "--json")
    assert result.code == 0, result.err
    rows = {
        contact: (channel, status, reason)
        for contact, channel, status, reason in ledger_rows(
            ws,
            "SELECT contact_id, channel, status, reason FROM messages WHERE campaign = 'winter'",
        )
    }
    for contact in ("c-001", "c-002", "c-003", "c-004", "c-005"):
        assert rows[contact][:2] == ("letter", "rendered"), contact  # bounced: letters take over
    assert rows["c-007"][1:] == ("skipped", "opted out (email)")  # the complaint: no letter
    assert rows["c-006"][:2] == ("email", "rendered")  # a vacation reply changes nothing
    assert rows["c-008"][:2] == ("email", "rendered")  # one soft bounce changes nothing
    explained = ws.run("explain", "c-001", "--date", "2026-11-25")
    assert "blocked: ana@example.com is blocked for email since 2026-11-24: a hard bounce" in (
        explained.out
    )
    history = ws.run("history", "--contact", "c-001", "--json")
    blocks = json.loads(history.out)["blocked"]
    assert [(b["address"], b["reason"], b["status"]) for b in blocks] == [
        ("ana@example.com", "hard-bounce", "5.1.1")
    ]
    listed = ws.run("unsubscribe", "--list")
    assert "c-007: no email since 2026-11-24 (marked an email as spam)" in listed.out


def test_a_new_address_in_the_contacts_file_starts_clean(make_workspace: MakeWorkspace) -> None:
    ws, _, _ = bounced_workspace(make_workspace)
    rows = [r.replace("ana@example.com", "ana.lopez@example.com") for r in ROWS]
    ws.write(
        "contacts.csv",
        "\n".join(with_consent([HEADER, *rows])) + "\n",
    )
    ws.write("campaigns/winter.yaml", WINTER)
    explained = ws.run("explain", "c-001", "--date", "2026-11-25")
    assert "blocked:" not in explained.out
    result = ws.run("run", "--all", "--date", "2026-11-25")
    assert result.code == 0, result.err
    assert ledger_rows(
        ws,
        "SELECT channel, status FROM messages WHERE campaign = 'winter' AND contact_id = 'c-001'",
    ) == [("email", "rendered")]


def test_without_fallback_a_blocked_address_is_skipped_with_its_reason(
    make_workspace: MakeWorkspace,
) -> None:
    ws, _, _ = bounced_workspace(make_workspace)
    ws.write("campaigns/winter.yaml", WINTER.replace("fallback: true", "fallback: false"))
    assert ws.run("run", "--all", "--date", "2026-11-25").code == 0
    assert ledger_rows(
        ws, "SELECT status, reason FROM messages WHERE campaign = 'winter' AND contact_id = 'c-002'"
    ) == [("skipped", "email blocked (bounces)")]


BIG = 50 * 1024 * 1024


def bad_mail(ws: Workspace, maildir: Path) -> None:
    deliver(
        maildir,
        "",
        b"From: MAILER-DAEMON@x.example\nContent-Type: multipart/report; "
        b'report-type=delivery-status; boundary="b"\n\n--b\nContent-Type: message/delivery-'
        b"status\n\nFinal-Recipient: rfc822; \xff\xfe@\n--b",
    )  # malformed, cut short
    deliver(
        maildir,
        "",
        "From: Jos\xe9 <jose@example.com>\nSubject: Caf\xe9\n\nHola\n".encode("latin-1"),
    )
    unknown = (
        (DATA / "postfix-hard.eml").read_bytes().replace(b"ana@example.com", b"nobody@example.com")
    )
    unknown = unknown.replace(
        b"0574cd0930cc35256512d8e8f3a5a3ec", b"ffffffffffffffffffffffffffffffff"
    )
    deliver(maildir, "", unknown)
    # A 50 MB message: a person sending a big attachment.
    big = maildir / "new" / "1795511799.M9P9.test"
    with big.open("wb") as out:
        out.write(b"From: Ana <ana@example.com>\nSubject: fotos\nContent-Type: text/plain\n\n")
        chunk = b"x" * 1023 + b"\n"
        for _ in range(BIG // len(chunk)):
            out.write(chunk)


def test_bad_input_is_reported_once_set_aside_and_blocks_nobody(
    make_workspace: MakeWorkspace,
) -> None:
    ws = promo_workspace(
        make_workspace,
        config_extra=MAILDIR + '  return_path: "rebotes+{token}@casalucia.example"\n',
    )
    maildir = make_maildir(ws.root / "Maildir")
    bad_mail(ws, maildir)
    forged = (
        (DATA / "postfix-hard.eml")
        .read_bytes()
        .replace(
            b"X-Original-To: hola@casalucia.example",
            b"X-Original-To: rebotes+0574cd0930cc00000000@casalucia.example",
        )
    )
    deliver(maildir, "", forged)
    result = ws.run("bounces", "--date", BOUNCE_DATE, "--json")
    assert result.code == 1, result.err  # bounces that could not be matched: shown once
    report = json.loads(result.out)
    problems = {m["source"].split("/")[-1]: m for m in report["messages"]}
    assert len(problems) == 5
    reasons = sorted(str(m["problem"]) for m in problems.values())
    assert any("does not verify" in r for r in reasons)
    assert any("it carries no token of ours" in r for r in reasons)
    assert any("cut at the size limit" in r for r in reasons)
    assert all(m["kind"] in ("unrecognised", "hard", "reply", "other") for m in problems.values())
    assert report["blocked"] == [] and report["suppressed"] == []
    # Nobody blocked or suppressed; only Ana's (cut) mail waits for the owner.
    assert ledger_rows(ws, "SELECT count(*) FROM blocks") == [(0,)]
    assert ledger_rows(ws, "SELECT count(*) FROM suppressions") == [(0,)]
    assert ledger_rows(ws, "SELECT count(*) FROM bounce_events") == [(0,)]
    assert ledger_rows(ws, "SELECT contact_id, status FROM replies") == [("c-001", "open")]
    # The rest is set aside, never deleted, and later readings are quiet.
    assert tree(maildir / "new") == []
    assert len(tree(maildir / ".not-ours" / "new")) == 4
    text = ws.run("bounces", "--date", BOUNCE_DATE)
    assert text.code == 0, text.out
    assert "Maildir: no mail" in text.out
    assert "Traceback" not in text.err


def test_a_50_mb_message_is_read_only_up_to_the_limit(make_workspace: MakeWorkspace) -> None:
    ws = promo_workspace(make_workspace, config_extra=MAILDIR)
    maildir = make_maildir(ws.root / "Maildir")
    bad_mail(ws, maildir)
    settings = load_settings(ws.root / "config.yaml")
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    tracemalloc.start()
    try:
        with Ledger.open(settings.ledger_path) as ledger:
            box = MaildirBox(maildir, limit=settings.bounces.max_message_bytes)
            report = process_mailbox(
                settings,
                mailbox=box,
                name="Maildir",
                ledger=ledger,
                today=date(2026, 11, 24),
                now=now,
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(report.messages) == 4
    # Parsing costs a few times what is read, never the whole 50 MB.
    assert peak < 16 * settings.bounces.max_message_bytes < BIG


def test_no_mailbox_is_a_clear_error(make_workspace: MakeWorkspace) -> None:
    ws = promo_workspace(make_workspace)
    result = ws.run("bounces")
    assert result.code == 2
    assert "there is no mailbox to read" in result.err and "--maildir" in result.err
    (ws.root / "notmail").mkdir()
    result = ws.run("bounces", "--maildir", "notmail")
    assert result.code == 2
    assert "notmail: bounces.maildir: not a Maildir" in result.err


def test_the_daemon_reads_the_mailbox_on_its_schedule(make_workspace: MakeWorkspace) -> None:
    config = MAILDIR + '  every_minutes: 30\nschedule:\n  - campaigns: all\n    at: "00:00"\n'
    ws = promo_workspace(make_workspace, config_extra=config)
    maildir = make_maildir(ws.root / "Maildir")
    copy_samples(maildir, ["postfix-hard.eml", "vacation.eml"])
    result = ws.run("daemon", "--once")
    assert result.code == 0, result.err
    assert "bounces: 2 message(s) (auto-reply 1, hard 1), 1 blocked" in result.err
    assert ledger_rows(ws, "SELECT value FROM blocks") == [("ana@example.com",)]
    assert tree(maildir / "new") == []


def test_what_could_not_be_matched_is_said_in_the_owners_spanish(
    make_workspace: MakeWorkspace,
) -> None:
    ws = promo_workspace(
        make_workspace,
        config_extra="language: es\n"
        + MAILDIR
        + '  return_path: "rebotes+{token}@casalucia.example"\n',
    )
    maildir = make_maildir(ws.root / "Maildir")
    hard = (DATA / "postfix-hard.eml").read_bytes()
    forged = hard.replace(
        b"X-Original-To: hola@casalucia.example",
        b"X-Original-To: rebotes+0574cd0930cc00000000@casalucia.example",
    )
    deliver(maildir, "", forged)
    deliver(maildir, "", hard.replace(b"ana@example.com", b"nobody@example.com"))
    result = ws.run("bounces", "--date", BOUNCE_DATE)
    assert result.code == 1, result.err
    assert "— el token de la dirección a la que volvió no se verifica" in result.out
    assert (
        "— no lleva ningún token nuestro (bounces.return_path está configurado): "
        "no se bloquea a nadie" in result.out
    )
    for english in ("does not verify", "carries no token", "is set):"):
        assert english not in result.out + result.err, english
    assert ledger_rows(ws, "SELECT count(*) FROM blocks") == [(0,)]
