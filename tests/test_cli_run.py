"""End to end: `outreach run` as a subprocess on workspaces written into tmp_path."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from conftest import Workspace

DAY = "2026-11-24"
# Birthdays 26 Nov (due: inside the 3-day window), 28 Nov (not yet), 20 Nov (window closed).
ROWS = [
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c2,José,Núñez,jose@example.com,1985-11-28,,,,,,,customer,",
    "c3,Begoña,Ibáñez,begona@example.com,20/11/1970,,,,,,,customer,",
    "c4,Íñigo,Ortiz,inigo@example.com,24/11/2000,,,,,,,customer,email",
    "c5,Mary,Smith,mary@example.org,25/11/1980,,,,,,en,customer,",
]


def ledger_rows(ws: Workspace) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        return sorted(
            db.execute("SELECT contact_id, campaign, occurrence_key, status FROM messages")
        )


def read_eml(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def test_run_writes_one_email_per_due_contact(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS)
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 0, result.err
    outbox = ws.root / "out" / "outbox" / DAY / "birthday"
    # c1 (26th) and c5 (25th) are due; c4 (24th) opted out of email; c2, c3 are outside the window.
    assert sorted(p.name for p in outbox.glob("*.eml")) == ["c1.eml", "c5.eml"]
    msg = read_eml(outbox / "c1.eml")
    assert msg["To"].addresses[0].display_name == "Ana García"
    assert msg["To"].addresses[0].addr_spec == "ana@example.com"
    assert msg["Subject"] == "¡Feliz cumpleaños, Ana!"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Hola Ana, ¡feliz cumpleaños!")
    html = msg.get_body(("html",)).get_content()
    assert 'style="color: #333' in html  # CSS inlined
    assert ledger_rows(ws) == [
        ("c1", "birthday", "birthday:2026", "rendered"),
        ("c4", "birthday", "birthday:2026", "skipped"),
        ("c5", "birthday", "birthday:2026", "rendered"),
    ]
    assert "opted out (email)" in result.out


def test_run_twice_and_next_day_render_nothing_new(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS)
    assert ws.run("run", "--all", "--date", DAY).code == 0
    first = {p: p.stat().st_mtime_ns for p in ws.files("out")}
    again = ws.run("run", "--all", "--date", DAY, "--json")
    assert again.code == 0, again.err
    summary = json.loads(again.out)
    birthday = summary["campaigns"][0]
    assert (birthday["emails"], birthday["already_done"]) == (0, 2)
    assert {p: p.stat().st_mtime_ns for p in ws.files("out")} == first
    # The next day c1 and c5 are still inside their windows but done; c2 (28 Nov) enters its
    # window (3 days before) and is the only new message.
    nextday = ws.run("run", "--all", "--date", "2026-11-25", "--json")
    birthday = json.loads(nextday.out)["campaigns"][0]
    assert (birthday["emails"], birthday["already_done"]) == (1, 2)
    assert [p.name for p in ws.files("out/outbox/2026-11-25")] == ["c2.eml"]
    assert len(ledger_rows(ws)) == 4
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 3


def test_dry_run_writes_nothing(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS)
    result = ws.run("run", "--all", "--date", DAY, "--dry-run", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["campaigns"][0]["emails"] == 2
    assert not (ws.root / "out").exists()
    assert not (ws.root / "state").exists()


def test_header_injection_and_markup_in_names(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(
        [
            'c1,"Ana\r\nBcc: evil@example.net",García,ana@example.com,26/11/1990,,,,,,,,',
            "c2,<script>alert(1)</script>,Ruiz,ruiz@example.com,26/11/1990,,,,,,,,",
        ]
    )
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 0, result.err
    outbox = ws.root / "out" / "outbox" / DAY / "birthday"
    assert [p.name for p in outbox.glob("*.eml")] == ["c2.eml"]
    assert "contacts.csv:2" in result.out  # the held-back row is reported with its line
    msg = read_eml(outbox / "c2.eml")
    assert msg["Bcc"] is None
    assert [a.addr_spec for a in msg["To"].addresses] == ["ruiz@example.com"]
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_missing_field_is_reported_and_others_go_on(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        [
            "c1,,García,ana@example.com,26/11/1990,,,,,,,,",
            "c2,José,Núñez,jose@example.com,26/11/1985,,,,,,,,",
        ]
    )
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 1  # one message failed, the rest were done
    assert [p.name for p in ws.files("out")] == ["c2.eml"]
    assert "c1" in result.out and "first_name" in result.out


def test_bad_campaign_exits_2_and_does_nothing(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(
        ROWS,
        campaigns={
            "birthday.yaml": "kind: birthday\nchannel: email\ndays_befor: 3\nemail:\n  subject: Hola\n  text: birthday.txt.j2\n",
        },
    )
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 2
    assert "birthday.yaml:3" in result.err and "days_befor" in result.err
    assert not (ws.root / "out").exists() and not (ws.root / "state").exists()


def test_config_with_wrong_type_exits_2(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS, config_extra="letters:\n  duplex: sometimes\n")
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 2
    assert "config.yaml:" in result.err and "letters.duplex" in result.err


def test_run_needs_campaigns_or_all(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS)
    result = ws.run("run", "--date", DAY)
    assert result.code == 2
    assert "--all" in result.err


def test_run_one_campaign_by_path(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS)
    result = ws.run("run", "campaigns/birthday.yaml", "--date", DAY)
    assert result.code == 0, result.err
    assert len(ws.files("out")) == 2


def test_subject_per_language_follows_the_contact_locale(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        ROWS,
        campaigns={
            "birthday.yaml": """\
                kind: birthday
                channel: email
                days_before: 3
                email:
                  subject:
                    default: "¡Feliz cumpleaños, {{ contact.first_name }}!"
                    en: "Happy birthday, {{ contact.first_name }}!"
                  text: birthday.txt.j2
                """,
        },
        templates={"birthday.en.txt.j2": "Happy birthday, {{ contact.first_name }}!\n"},
    )
    assert ws.run("run", "--all", "--date", DAY).code == 0
    outbox = ws.root / "out" / "outbox" / DAY / "birthday"
    assert read_eml(outbox / "c1.eml")["Subject"] == "¡Feliz cumpleaños, Ana!"  # es
    assert read_eml(outbox / "c5.eml")["Subject"] == "Happy birthday, Mary!"  # en


def test_one_message_one_language(make_workspace: Callable[..., Workspace]) -> None:
    """No English variant: the English contact's whole email is Spanish, its date too."""
    ws = make_workspace(
        ROWS,
        campaigns={
            "birthday.yaml": """\
                kind: birthday
                channel: email
                days_before: 3
                email:
                  subject:
                    default: "¡Feliz cumpleaños, {{ contact.first_name }}!"
                    en: "Happy birthday, {{ contact.first_name }}!"
                  text: birthday.txt.j2
                """,
        },
        templates={
            "birthday.txt.j2": "Hola {{ contact.first_name }}, el {{ occurrence.date | date('long') }}\n"
        },
    )
    result = ws.run("run", "--all", "--date", DAY, "--json")
    assert result.code == 0, result.err
    outbox = ws.root / "out" / "outbox" / DAY / "birthday"
    mary = read_eml(outbox / "c5.eml")
    assert mary["Subject"] == "¡Feliz cumpleaños, Mary!"
    body = mary.get_content()
    assert " de noviembre de 2026" in body, body
    assert "November" not in body
    campaigns = json.loads(result.out)["campaigns"]
    assert campaigns[0]["default_language"] == 1  # Mary alone has no variant of her own
    # validate said so first, naming her.
    checked = ws.run("validate", "--date", DAY)
    assert (
        "1 contact gets birthday in the default language (es): no template variant for "
        "their language: c5 (en, line 6)"
    ) in checked.out, checked.out


def test_a_subject_per_language_needs_a_default(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(
        ROWS,
        campaigns={
            "birthday.yaml": "kind: birthday\nemail:\n  subject:\n    en: Hi\n  text: birthday.txt.j2\n",
        },
    )
    result = ws.run("validate")
    assert result.code == 2
    assert "birthday.yaml:3" in result.out + result.err and "default" in result.out + result.err
