"""Classifying what comes back: real-world-shaped samples, auto-replies, bad input; the score;
VERP tokens."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from feedback_helpers import DATA, SAMPLES

from outreach.feedback.classify import classify
from outreach.feedback.score import bounce_score, verdict
from outreach.feedback.verp import token_pattern, tokens_in, verify_token, verp_token
from outreach.model.config import Bounces
from outreach.render.email import message_id_for

TZ = ZoneInfo("Europe/Madrid")
STATUS = {
    "postfix-hard.eml": "5.1.1",
    "exim-hard.eml": "5.1.1",
    "qmail-hard.eml": "5.1.1",
    "exchange-hard.eml": "5.1.10",
    "yahoo-hard.eml": "554",
    "postfix-delayed.eml": "4.4.1",
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_sample_is_what_its_server_meant(name: str) -> None:
    kind, contact_id, address = SAMPLES[name]
    found = classify((DATA / name).read_bytes(), tz=TZ)
    assert found.kind == kind
    assert found.problem is None
    if address is None:
        assert found.addresses == ()
        return
    assert found.addresses == (address,)
    # Each quotes the Message-ID outreach gave the original.
    expected = message_id_for(
        contact_id=contact_id or "",
        campaign="promo",
        occurrence_key="promotion",
        domain="casalucia.example",
    )
    assert found.message_ids == (expected,)
    assert found.status == STATUS.get(name)
    assert found.day == date(2026, 11, 24)


def test_diagnostics_keep_the_servers_words_on_one_line() -> None:
    found = classify((DATA / "postfix-hard.eml").read_bytes(), tz=TZ)
    assert found.diagnostic == (
        "550 5.1.1 <ana@example.com>: Recipient address rejected: User unknown in virtual "
        "mailbox table"
    )


def mail(headers: str, body: str = "Hola.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode()


@pytest.mark.parametrize(
    "headers",
    [
        # Exchange / Outlook out of office
        "From: Ana <ana@example.com>\nTo: hola@casalucia.example\n"
        "Subject: Automatic reply: Menu\nAuto-Submitted: auto-generated\n"
        "X-Auto-Response-Suppress: All",
        # an old vacation program: no Auto-Submitted, only its own header and subject
        "From: Ana <ana@example.com>\nTo: hola@casalucia.example\nSubject: Out of Office\n"
        "X-Autoreply: yes",
        "From: Ana <ana@example.com>\nTo: hola@casalucia.example\n"
        "Subject: =?utf-8?q?Respuesta_autom=C3=A1tica?=\nPrecedence: auto_reply",
        # a sieve vacation sent with the null return path, as RFC 5230 says
        "Return-Path: <>\nFrom: Ana <ana@example.com>\nTo: hola@casalucia.example\n"
        "Subject: Vacaciones\nAuto-Submitted: auto-replied (vacation)",
    ],
)
def test_auto_replies_are_recognised_and_never_bounces(headers: str) -> None:
    body = "I am out of the office. The address ana@example.com is not read: 550 days away.\n"
    assert classify(mail(headers, body), tz=TZ).kind == "auto-reply"


def test_a_person_replying_is_a_reply() -> None:
    data = mail(
        "From: Ana <ana@example.com>\nTo: hola@casalucia.example\nSubject: Re: Menu\n"
        "Message-ID: <abc@example.com>",
        "¿Tenéis mesa el sábado?\n",
    )
    found = classify(data, tz=TZ)
    assert found.kind == "reply"
    assert found.reply is not None and found.reply.sender == "ana@example.com"
    assert found.reply.text == "¿Tenéis mesa el sábado?"


def test_a_success_report_is_automatic_not_a_bounce() -> None:
    data = (DATA / "postfix-hard.eml").read_bytes().replace(b"Action: failed", b"Action: delivered")
    found = classify(data, tz=TZ)
    assert found.kind == "auto-reply"
    assert found.addresses == ()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81\n\n\xff",
        # a multipart report whose boundary never comes
        b"From: MAILER-DAEMON@x.example\nContent-Type: multipart/report; "
        b'report-type=delivery-status; boundary="nope"\n\nno parts at all\n',
        # broken base64 and a part without a type
        b"From: MAILER-DAEMON@x.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Transfer-Encoding: base64\n\n!!!not base64!!!\n--b\n\n--b--\n",
    ],
)
def test_bad_input_is_unrecognised_or_reported_never_an_exception(data: bytes) -> None:
    found = classify(data, tz=TZ)
    assert found.kind == "unrecognised"
    assert found.fingerprint


def test_a_person_writing_latin_1_headers_is_a_reply_shown_printable() -> None:
    data = (
        "From: Mar\xeda <maria@example.com>\nSubject: Se\xf1or\nTo: hola@casalucia.example\n\n"
        "Hola\n".encode("latin-1")
    )
    found = classify(data, tz=TZ)
    assert found.kind == "reply" and found.reply is not None
    assert found.reply.sender == "maria@example.com"
    assert found.reply.subject.encode("utf-8")


def test_non_utf8_headers_in_a_real_bounce_still_classify_and_stay_printable() -> None:
    data = (
        (DATA / "postfix-hard.eml")
        .read_bytes()
        .replace(
            b"Subject: Undelivered Mail Returned to Sender",
            "Subject: Courrier non remis \xe0 l'exp\xe9diteur".encode("latin-1"),
        )
    )
    data = data.replace(
        b"Diagnostic-Code: smtp; 550 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1 Usu\xe1rio".encode("latin-1"),
    )
    found = classify(data, tz=TZ)
    assert found.kind == "hard"
    assert found.diagnostic is not None
    assert "\ufffd" in found.diagnostic  # shown as a replacement character
    found.diagnostic.encode("utf-8")  # and always valid UTF-8


def test_a_cut_message_says_so() -> None:
    data = (DATA / "postfix-hard.eml").read_bytes()[:1800]
    found = classify(data, tz=TZ, truncated=True)
    assert found.problem == "cut at the size limit"


def test_the_same_bounce_has_the_same_fingerprint_and_others_differ() -> None:
    fingerprints = {
        name: classify((DATA / name).read_bytes(), tz=TZ).fingerprint for name in SAMPLES
    }
    assert len(set(fingerprints.values())) == len(SAMPLES)
    again = classify((DATA / "qmail-hard.eml").read_bytes(), tz=TZ).fingerprint
    assert again == fingerprints["qmail-hard.eml"]


# -- the score ------------------------------------------------------------------------------


def d(day: int, month: int = 11) -> date:
    return date(2026, month, day)


def test_soft_bounces_count_half_and_once_a_day() -> None:
    events = [(d(1), "soft"), (d(1), "soft"), (d(2), "soft"), (d(2), "hard"), (d(3), "soft")]
    assert bounce_score(events, quiet_days=30, today=d(3)) == 0.5 + 1.0 + 0.5


def test_the_score_starts_again_after_a_quiet_spell() -> None:
    events = [(d(1), "soft"), (d(2), "soft"), (d(20, 12), "soft")]
    assert bounce_score(events, quiet_days=7, today=d(20, 12)) == 0.5
    assert bounce_score(events[:2], quiet_days=7, today=d(30)) == 0.0


def test_one_hard_bounce_blocks_by_default_soft_ones_at_the_threshold() -> None:
    rules = Bounces()
    assert verdict([(d(1), "hard")], latest="hard", rules=rules, today=d(1)).block == "hard-bounce"
    softs = [(d(day), "soft") for day in range(1, 6)]
    assert verdict(softs, latest="soft", rules=rules, today=d(5)).block is None  # 2.5 < 3
    softs.append((d(6), "soft"))
    judged = verdict(softs, latest="soft", rules=rules, today=d(6))
    assert (judged.block, judged.score) == ("soft-bounces", 3.0)


def test_without_hard_bounce_blocks_a_hard_bounce_only_counts() -> None:
    rules = Bounces(hard_bounce_blocks=False, threshold=2)
    assert verdict([(d(1), "hard")], latest="hard", rules=rules, today=d(1)).block is None
    both = [(d(1), "hard"), (d(2), "hard")]
    assert verdict(both, latest="hard", rules=rules, today=d(2)).block == "hard-bounce"


# -- VERP tokens ----------------------------------------------------------------------------


def test_a_token_verifies_only_with_its_secret_and_unchanged() -> None:
    mid = message_id_for(
        contact_id="c-001", campaign="promo", occurrence_key="promotion", domain="x.example"
    )
    token = verp_token(secret="s3cret", message_id=mid)
    assert token is not None and len(token) == 20
    assert verify_token(token, secret="s3cret") == mid[:12]
    assert verify_token(token.upper(), secret="s3cret") == mid[:12]  # servers may change case
    assert verify_token(token, secret="other") is None
    tampered = ("0" if token[0] != "0" else "1") + token[1:]
    assert verify_token(tampered, secret="s3cret") is None
    assert verify_token("short", secret="s3cret") is None
    assert verp_token(secret="s", message_id="not-ours@example.com") is None


def test_tokens_are_found_in_the_address_the_bounce_came_back_to() -> None:
    pattern = token_pattern("rebotes+{token}@casalucia.example")
    values = ["rebotes+ABCdef0123456789abcd@CasaLucia.example", "hola@casalucia.example"]
    assert tokens_in(values, pattern) == ["abcdef0123456789abcd"]
