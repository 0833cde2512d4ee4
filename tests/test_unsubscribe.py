"""`outreach unsubscribe`: the suppression list, and opt-outs winning over every message."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from conftest import HEADER, Workspace, with_consent

from outreach.ledger import acquire_lock

CAMPAIGNS = {
    "birthday.yaml": """\
        kind: birthday
        channel: email
        days_before: 3
        priority: 80
        email:
          subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
          text: birthday.txt.j2
        """,
    # Essential: never held back by cadence. Opt-outs must still win.
    "reminder.yaml": """\
        kind: reminder
        channel: email
        essential: true
        priority: 90
        date_field: next_appointment
        offsets: [-1]
        email:
          subject: "Su reserva"
          text: promo.txt.j2
        """,
}
# On 24 Nov 2026 every contact has a birthday in its window (24–26 Nov) and a booking on the
# 25th, so the reminder is due too.
CONTACTS = "\n".join(
    [
        HEADER + ",next_appointment",
        "c1,Ana,García,ana@example.com,1990-11-26,,,,,,,,,2026-11-25",
        "c2,José,Núñez,jose@example.com,1985-11-25,,,,,,,,,2026-11-25",
        "c3,Begoña,Ibáñez,begona@example.com,1970-11-24,,,,,,,,,2026-11-25",
    ]
)
DAY = "2026-11-24"


@pytest.fixture
def ws(make_workspace: Callable[..., Workspace]) -> Workspace:
    workspace = make_workspace([], campaigns=CAMPAIGNS)
    (workspace.root / "contacts.csv").write_text(
        "\n".join(with_consent(CONTACTS.split("\n"))) + "\n", encoding="utf-8"
    )
    return workspace


def suppressions(ws: Workspace) -> list[tuple[str, str, str]]:
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        return sorted(db.execute("SELECT value, channel, source FROM suppressions"))


def outbox(ws: Workspace) -> list[str]:
    return sorted(
        p.relative_to(ws.root / "out" / "outbox" / DAY).as_posix() for p in ws.files("out")
    )


def ledger_rows(ws: Workspace, contact: str) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        return sorted(
            db.execute(
                "SELECT campaign, status, reason FROM messages WHERE contact_id = ?", (contact,)
            )
        )


def test_an_unsubscribed_address_gets_nothing_not_even_essential(ws: Workspace) -> None:
    result = ws.run("unsubscribe", "Ana@Example.com")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "Ana@example.com gets no more messages (email or letter)",
        "  covers contact c1 (Ana García)",
    ]
    assert suppressions(ws) == [("ana@example.com", "all", "cli")]
    run = ws.run("run", "--all", "--date", DAY)
    assert run.code == 0, run.err
    # c2 and c3 get the birthday and the essential reminder; c1 gets nothing at all.
    assert outbox(ws) == [
        "birthday/c2.eml",
        "birthday/c3.eml",
        "reminder/c2.2026-11-25_-1.eml",
        "reminder/c3.2026-11-25_-1.eml",
    ]
    assert ledger_rows(ws, "c1") == [
        ("birthday", "skipped", "opted out (email)"),
        ("reminder", "skipped", "opted out (email)"),
    ]
    # And the next day too: a skipped message is looked at again, and skipped again.
    assert ws.run("run", "--all", "--date", "2026-11-25").code == 0
    assert not list((ws.root / "out" / "outbox").glob("*/*/c1*"))


def test_by_contact_id_and_per_channel(ws: Workspace) -> None:
    # A letter-only opt-out leaves email alone.
    assert ws.run("unsubscribe", "c2", "--channel", "letter").out.splitlines() == [
        "c2 gets no more letters",
        "  covers contact c2 (José Núñez)",
    ]
    assert ws.run("unsubscribe", "C3", "--channel", "email").out.splitlines() == [
        "C3 gets no more emails",
        "  covers contact c3 (Begoña Ibáñez)",
    ]
    assert suppressions(ws) == [("c2", "letter", "cli"), ("c3", "email", "cli")]
    assert ws.run("run", "--all", "--date", DAY).code == 0
    assert outbox(ws) == [
        "birthday/c1.eml",
        "birthday/c2.eml",
        "reminder/c1.2026-11-25_-1.eml",
        "reminder/c2.2026-11-25_-1.eml",
    ]
    assert ledger_rows(ws, "c3") == [
        ("birthday", "skipped", "opted out (email)"),
        ("reminder", "skipped", "opted out (email)"),
    ]


def test_already_on_the_list(ws: Workspace) -> None:
    assert ws.run("unsubscribe", "jose@example.com").code == 0
    again = ws.run("unsubscribe", "jose@example.com", "--channel", "email")
    assert again.code == 0, again.err
    # "all" already covers email.
    assert again.out.splitlines()[0] == (
        "jose@example.com is already on the suppression list: no more emails"
    )
    assert suppressions(ws) == [("jose@example.com", "all", "cli")]


def test_unknown_address_is_kept_with_a_note(ws: Workspace) -> None:
    result = ws.run("unsubscribe", "someone@example.org")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "someone@example.org gets no more messages (email or letter)",
        "  no contact in the contacts file has it (yet); it stays on the list, so a contact "
        "added later with it gets nothing",
    ]
    assert suppressions(ws) == [("someone@example.org", "all", "cli")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ana@@example.com", "'ana@@example.com' is not a valid email address"),
        ("two words", "'two words' is neither an email address nor a contact id"),
    ],
)
def test_invalid_value_exits_2_and_adds_nothing(ws: Workspace, value: str, message: str) -> None:
    result = ws.run("unsubscribe", value)
    assert result.code == 2
    assert message in result.err
    assert not (ws.root / "state").exists()


def test_nothing_to_unsubscribe_is_a_usage_error(ws: Workspace) -> None:
    result = ws.run("unsubscribe")
    assert result.code == 2
    assert "give an email address or a contact id, or --import FILE" in result.err


def test_import_a_list_of_addresses(ws: Workspace) -> None:
    assert ws.run("unsubscribe", "begona@example.com").code == 0
    ws.write(
        "bajas.txt",
        """\
        # unsubscribed at the counter
        ana@example.com

        JOSE@Example.com
        not-an-address
        ana@example.com
        begona@example.com
        broken@@example.com
        """,
    )
    result = ws.run("unsubscribe", "--import", "bajas.txt")
    assert result.code == 1  # some lines could not be used; the rest were added
    lines = result.out.splitlines()
    # Added: lines 2 and 4. Already there: line 6 (line 2 again) and line 7 (before the import).
    assert lines[0] == (
        "2 added to the suppression list (email and letter), 2 already there, 2 invalid lines"
    )
    assert lines[1] == (
        "  bajas.txt:5: 'not-an-address' is not an email address — one address per line, "
        "or a CSV with an email column"
    )
    assert lines[2].startswith("  bajas.txt:8: 'broken@@example.com' is not a valid email address")
    assert lines[3:] == [
        "  covers contact c1 (Ana García)",
        "  covers contact c2 (José Núñez)",
        "  covers contact c3 (Begoña Ibáñez)",
    ]
    assert suppressions(ws) == [
        ("ana@example.com", "all", "import bajas.txt"),
        ("begona@example.com", "all", "cli"),
        ("jose@example.com", "all", "import bajas.txt"),
    ]


def test_import_a_csv_with_an_email_column(ws: Workspace) -> None:
    ws.write(
        "export.csv",
        """\
        name;Email;note
        Ana;ana@example.com;pidió la baja
        Bob;;sin correo
        Zed;zed@;mal
        """,
    )
    result = ws.run("unsubscribe", "--import", "export.csv", "--channel", "email", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["added"] == ["ana@example.com"]
    assert report["already"] == []
    assert [(p["line"], p["field"]) for p in report["invalid"]] == [(4, "email")]
    assert report["contacts"] == ["c1"]
    assert suppressions(ws) == [("ana@example.com", "email", "import export.csv")]


def test_waits_for_a_run_in_progress(ws: Workspace) -> None:
    # A run holds the workspace lock: the unsubscribe waits for it rather than fail or race.
    with acquire_lock(ws.root / "state", now=datetime(2026, 11, 24, 9, tzinfo=UTC)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "outreach", "unsubscribe", "ana@example.com"],
            cwd=ws.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # It says it waits (however long its start takes on a busy machine), and does.
        assert proc.stderr is not None
        watchdog = threading.Timer(60, proc.kill)  # a silent wait would fail, not hang
        watchdog.start()
        said = proc.stderr.readline()
        watchdog.cancel()
        assert "a run is in progress: waiting for it to finish" in said
        time.sleep(1)
        assert proc.poll() is None
        assert not (ws.root / "state" / "ledger.sqlite").exists()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, said + err
    assert out.splitlines()[0] == "ana@example.com gets no more messages (email or letter)"
    assert suppressions(ws) == [("ana@example.com", "all", "cli")]
