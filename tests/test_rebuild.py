"""A ledger that is empty, lost or damaged never redoes what out/ holds; `ledger rebuild`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing

import pytest
from conftest import Workspace

DAY = "2026-11-24"
ROWS = [
    f"c{i},Ana{i},Núñez,p{i}@example.com,26/11/1980,Calle Mayor {i},28001,Madrid,ES,"
    f"{'letter' if i % 3 == 0 else 'email'},es,customer,"
    for i in range(1, 10)
]
CAMPAIGNS = {
    "birthday.yaml": """\
        kind: birthday
        channel: preferred
        days_before: 3
        email:
          subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
          text: birthday.txt.j2
        letter:
          template: letter.html.j2
        """,
    "promo.yaml": """\
        kind: promotion
        channel: email
        start: 2026-11-01
        end: 2026-11-30
        email:
          subject: Otoño
          text: promo.txt.j2
        """,
}
TEMPLATES = {"letter.html.j2": "<p>Querida {{ contact.first_name }}:</p>\n"}


@pytest.fixture
def ran(make_workspace: Callable[..., Workspace]) -> Workspace:
    ws = make_workspace(ROWS, campaigns=CAMPAIGNS, templates=TEMPLATES)
    first = ws.run("run", "--all", "--date", DAY)
    assert first.code == 0, first.out + first.err
    return ws


def outbox_and_letters(ws: Workspace) -> list[str]:
    return sorted(p.relative_to(ws.root).as_posix() for p in (ws.root / "out").rglob("*.*"))


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_a_lost_or_damaged_ledger_refuses_to_redo_and_rebuild_restores_it(
    ran: Workspace, damage: str
) -> None:
    ws = ran
    ledger = ws.root / "state" / "ledger.sqlite"
    before = outbox_and_letters(ws)
    assert len([p for p in before if p.endswith(".eml")]) == 6 + 9  # birthday emails + promo
    with closing(sqlite3.connect(ledger)) as db:
        made = sorted(
            db.execute(
                "SELECT contact_id, campaign, occurrence_key, channel, artifact, message_id "
                "FROM messages WHERE status = 'rendered'"
            ).fetchall()
        )
    for suffix in ("-wal", "-shm"):
        ledger.with_name(ledger.name + suffix).unlink(missing_ok=True)
    if damage == "truncate":
        ledger.write_bytes(b"")
    elif damage == "delete":
        ledger.unlink()
    else:
        ledger.write_bytes(b"this is not a database" * 100)

    refused = ws.run("run", "--all", "--date", DAY)
    assert refused.code == 2, refused.out + refused.err
    assert "Traceback" not in refused.err
    assert "outreach ledger rebuild" in refused.err
    assert outbox_and_letters(ws) == before  # nothing made again
    if damage != "garbage":
        assert "15 emails and 3 letters" in refused.err
        assert "--new-ledger" in refused.err
    else:
        assert "moving it aside by hand starts an empty ledger" in refused.err

    rebuilt = ws.run("ledger", "rebuild", "--json")
    assert rebuilt.code == 0, rebuilt.out + rebuilt.err
    report = json.loads(rebuilt.out)
    assert (report["emails_rendered"], report["letters"], report["not_understood"]) == (15, 3, [])
    assert (report["moved_aside"] is not None) == (damage == "garbage")
    with closing(sqlite3.connect(ledger)) as db:
        again = sorted(
            db.execute(
                "SELECT contact_id, campaign, occurrence_key, channel, artifact, message_id "
                "FROM messages WHERE status = 'rendered'"
            ).fetchall()
        )
    assert again == made

    rerun = ws.run("run", "--all", "--date", DAY, "--json")
    assert rerun.code == 0, rerun.out + rerun.err
    summary = json.loads(rerun.out)
    assert [(c["emails"], c["letters"]) for c in summary["campaigns"]] == [(0, 0), (0, 0)]
    assert outbox_and_letters(ws) == before
    assert ws.run("ledger", "rebuild").code == 2  # a ledger with a record: nothing to rebuild


def test_new_ledger_says_how_many_it_would_make_again(ran: Workspace) -> None:
    ws = ran
    (ws.root / "state" / "ledger.sqlite").unlink()
    result = ws.run("run", "--all", "--date", DAY, "--new-ledger")
    assert result.code == 0, result.out + result.err
    assert "18 messages already in out" in result.err


def test_with_smtp_a_rebuilt_email_is_uncertain_never_resent(ran: Workspace) -> None:
    ws = ran
    config = ws.root / "config.yaml"
    config.write_text(config.read_text() + "delivery: {method: smtp, host: 127.0.0.1, port: 9}\n")
    (ws.root / "state" / "ledger.sqlite").write_bytes(b"")
    result = ws.run("ledger", "rebuild")
    assert result.code == 0, result.out + result.err
    assert "15 emails are recorded `uncertain`" in result.out
    with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as db:
        statuses = dict(
            db.execute("SELECT channel, status FROM messages GROUP BY channel").fetchall()
        )
    assert statuses == {"email": "uncertain", "letter": "rendered"}
