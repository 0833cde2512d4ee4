"""`outreach explain`: why a contact does or does not get each campaign's message, line by line
on a hand-built scenario."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing

from conftest import BASE_CONFIG, HEADER, Workspace, with_consent

# November 2026: Sun 22, Mon 23, Tue 24, Wed 25, Thu 26, Fri 27, Sat 28.
CADENCE = """\
cadence:
  min_gap_days: 7
  max_messages: 4
  per_days: 30
  quiet_weekdays: [sun]
"""
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
    "promotion.yaml": """\
        kind: promotion
        channel: email
        audience:
          tags_any: [newsletter]
          tags_none: [staff]
        priority: 40
        start: 2026-11-23
        end: 2026-11-27
        email:
          subject: "Menú de otoño"
          text: promo.txt.j2
        """,
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
# The line of each row in contacts.csv is in the comment (the header is line 1).
CONTACTS = "\n".join(
    [
        HEADER + ",next_appointment",
        # 2: birthday 26 Nov (window 23–26), the promotion, a table booked for 25 Nov.
        "c1,Ana,García,ana@example.com,1990-11-26,,,,,,,newsletter,,2026-11-25",
        # 3: birthday 2 Dec (window 29 Nov – 2 Dec); a table booked for 24 Nov.
        "c2,José,Núñez,jose@example.com,1985-12-02,,,,,,,,,2026-11-24",
        # 4: opted out of email in the file.
        "c4,Íñigo,Ortiz,inigo@example.com,1970-11-24,,,,,,,newsletter,email,",
        # 5: staff: excluded from the promotion.
        "c5,Lucía,Martín,lucia@example.com,1975-11-25,,,,,,,newsletter;staff,,",
        # 6: unsubscribed with `outreach unsubscribe` in the tests that need it.
        "c6,Pablo,Díaz,pablo@example.com,1982-11-25,,,,,,,,,",
        # 7: a broken email address.
        "c7,María,López,maria@@example.com,1979-11-24,,,,,,,,,",
        # 8: a birthday that is not a date.
        "c8,Elena,Gómez,elena@example.com,31/02/1990,,,,,,,,,",
        # 9–10: a name with a line break: the whole row is held back.
        'c9,"Ana\nMaría",Ruiz,ruiz@example.com,,,,,,,,,,',
    ]
)


def scenario(make_workspace: Callable[..., Workspace]) -> Workspace:
    ws = make_workspace([], campaigns=CAMPAIGNS)
    ws.write("config.yaml", BASE_CONFIG[: BASE_CONFIG.index("cadence:")] + CADENCE)
    # Everyone consented to marketing email (the legal basis is tests/test_legal.py's).
    lines = with_consent(CONTACTS.split("\n"))
    (ws.root / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ws


def explain(ws: Workspace, contact: str, day: str) -> list[str]:
    result = ws.run("explain", contact, "--date", day)
    assert result.code == 0, result.err
    return result.out.splitlines()


def test_birthday_goes_promotion_deferred_reminder_not_yet(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = scenario(make_workspace)
    assert explain(ws, "c1", "2026-11-23") == [
        "c1 Ana García <ana@example.com> (contacts.csv line 2), on 2026-11-23:",
        # Both open today; the birthday has the higher priority (80 > 40).
        "  birthday: would go today by email "
        "(birthday on 2026-11-26, window 2026-11-23 to 2026-11-26)",
        "  promotion: deferred by the cadence policy: birthday on 2026-11-23 is the same day; "
        "min_gap_days 7; tried again on each run until 2026-11-27, after that it is missed "
        "(promotion from 2026-11-23 to 2026-11-27)",
        # The reminder goes the day before the booking (25 Nov).
        "  reminder: nothing due on 2026-11-23; the next window opens on 2026-11-24 "
        "(next_appointment on 2026-11-25, only on 2026-11-24)",
        "no messages in the ledger for this contact",
    ]
    assert not (ws.root / "state").exists()


def test_after_a_run_already_made_and_essential_goes_anyway(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = scenario(make_workspace)
    assert ws.run("run", "--all", "--date", "2026-11-23").code == 0
    assert explain(ws, "c1", "2026-11-24") == [
        "c1 Ana García <ana@example.com> (contacts.csv line 2), on 2026-11-24:",
        "  birthday: already made on 2026-11-23 by email: "
        "out/outbox/2026-11-23/birthday/c1.eml "
        "(birthday on 2026-11-26, window 2026-11-23 to 2026-11-26)",
        # The essential reminder is decided first, so it is the nearest message today.
        "  promotion: deferred by the cadence policy: reminder on 2026-11-24 is the same day; "
        "min_gap_days 7; tried again on each run until 2026-11-27, after that it is missed "
        "(promotion from 2026-11-23 to 2026-11-27)",
        "  reminder: would go today by email (next_appointment on 2026-11-25, only on "
        "2026-11-24); essential, sent despite: birthday on 2026-11-23 is 1 day before; "
        "min_gap_days 7",
        "messages in the ledger, newest first:",
        "  2026-11-23 promotion promotion email deferred: birthday on 2026-11-23 is the same "
        "day; min_gap_days 7",
        "  2026-11-23 birthday birthday:2026 email rendered "
        "(out/outbox/2026-11-23/birthday/c1.eml)",
    ]


def test_window_closed_is_missed(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    for day in ("2026-11-23", "2026-11-24"):
        assert ws.run("run", "--all", "--date", day).code == 0
    # No run after the 24th; on the 28th the promotion's window (to the 27th) has closed.
    lines = explain(ws, "c1", "2026-11-28")
    assert lines[:4] == [
        "c1 Ana García <ana@example.com> (contacts.csv line 2), on 2026-11-28:",
        "  birthday: nothing due on 2026-11-28; the last one (birthday:2026, window "
        "2026-11-23 to 2026-11-26) is rendered (2026-11-23); the next window opens on "
        "2027-11-23 (birthday on 2027-11-26, window 2027-11-23 to 2027-11-26)",
        "  promotion: window closed: the last one (promotion, window 2026-11-23 to "
        "2026-11-27) was deferred until its window closed and is recorded as missed, never "
        "sent late (window closed while deferred: reminder on 2026-11-24 is the same day; "
        "min_gap_days 7)",
        "  reminder: nothing due on 2026-11-28; the last one (reminder:2026-11-25:-1, window "
        "2026-11-24 to 2026-11-24) is rendered (2026-11-24); no later window",
    ]
    data = json.loads(ws.run("explain", "c1", "--date", "2026-11-28", "--json").out)
    assert [(a["campaign"], a["outcome"]) for a in data["campaigns"]] == [
        ("birthday", "not due"),
        ("promotion", "missed"),
        ("reminder", "not due"),
    ]
    # The real ledger still says deferred: explain changes nothing.
    rows = ws.run("history", "--contact", "c1", "--campaign", "promotion", "--json")
    assert [m["status"] for m in json.loads(rows.out)["messages"]] == ["deferred"]
    # ...with the rule that deferred it as data beside the sentence.
    with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as db:
        assert db.execute(
            "SELECT reason_code FROM messages WHERE contact_id = 'c1' AND campaign = 'promotion'"
        ).fetchall() == [("min_gap",)]


def test_not_due_and_not_in_audience(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    assert explain(ws, "c2", "2026-11-23") == [
        "c2 José Núñez <jose@example.com> (contacts.csv line 3), on 2026-11-23:",
        "  birthday: nothing due on 2026-11-23; the next window opens on 2026-11-29 "
        "(birthday on 2026-12-02, window 2026-11-29 to 2026-12-02)",
        "  promotion: not in the audience: needs one of the tags newsletter "
        "(the contact's tags: none)",
        "  reminder: would go today by email (next_appointment on 2026-11-24, only on 2026-11-23)",
        "no messages in the ledger for this contact",
    ]
    assert explain(ws, "c5", "2026-11-23")[1:3] == [
        "  birthday: would go today by email "
        "(birthday on 2026-11-25, window 2026-11-22 to 2026-11-25)",
        "  promotion: not in the audience: has the tag staff, which the campaign excludes "
        "(tags_none)",
    ]


def test_opted_out_in_the_file_and_on_the_suppression_list(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = scenario(make_workspace)
    assert explain(ws, "c4", "2026-11-23") == [
        "c4 Íñigo Ortiz <inigo@example.com> (contacts.csv line 4), on 2026-11-23:",
        "  birthday: opted out of email: the contacts file says opt_out: email (line 4) "
        "(birthday on 2026-11-24, window 2026-11-21 to 2026-11-24)",
        "  promotion: opted out of email: the contacts file says opt_out: email (line 4) "
        "(promotion from 2026-11-23 to 2026-11-27)",
        "  reminder: not due: no next_appointment in the contacts file",
        "no messages in the ledger for this contact",
    ]
    assert ws.run("unsubscribe", "Pablo@Example.com").code == 0
    assert explain(ws, "c6", "2026-11-23") == [
        "c6 Pablo Díaz <pablo@example.com> (contacts.csv line 6), on 2026-11-23:",
        "  birthday: opted out of email: on the suppression list: pablo@example.com (all) "
        "(birthday on 2026-11-25, window 2026-11-22 to 2026-11-25)",
        "  promotion: not in the audience: needs one of the tags newsletter "
        "(the contact's tags: none)",
        "  reminder: not due: no next_appointment in the contacts file",
        "on the suppression list: pablo@example.com (all)",
        "no messages in the ledger for this contact",
    ]
    data = json.loads(ws.run("explain", "c6", "--date", "2026-11-23", "--json").out)
    assert data["campaigns"][0]["outcome"] == "opted out"
    assert data["suppressed"] == ["pablo@example.com (all)"]


def test_bad_data_names_the_row_and_the_problem(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    c7 = explain(ws, "c7", "2026-11-23")
    assert c7[0] == "c7 María López (no email) (contacts.csv line 7), on 2026-11-23:"
    assert c7[1].startswith(
        "  birthday: no usable email: contacts.csv:7: email (column 4): "
        "'maria@@example.com' is not a valid email address"
    )
    assert c7[1].endswith("(birthday on 2026-11-24, window 2026-11-21 to 2026-11-24)")
    assert c7[4] == "problems with this contact in the contacts file:"
    assert c7[5].startswith("  contacts.csv:7: email (column 4): 'maria@@example.com'")
    c8 = explain(ws, "c8", "2026-11-23")
    assert c8[1].startswith("  birthday: no birthday message: contacts.csv:8: birthday (column 5):")
    data = json.loads(ws.run("explain", "c8", "--date", "2026-11-23", "--json").out)
    assert data["campaigns"][0]["outcome"] == "bad data"
    assert data["problems"][0]["line"] == 8


def test_held_back_and_unknown_ids(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    c9 = explain(ws, "c9", "2026-11-23")
    assert c9[0] == (
        "c9 is held back: its row in the contacts file is not used, so no campaign reaches it"
    )
    assert c9[1].startswith("  contacts.csv:9: first_name (column 2): contains a line break")
    assert c9[-1] == "no messages in the ledger for this contact"
    unknown = ws.run("explain", "zz9", "--date", "2026-11-23")
    assert unknown.code == 2
    assert "no contact 'zz9' in the contacts file" in unknown.err
    assert "ids in the file look like c1, c2, c4" in unknown.err


def test_id_case_is_ignored(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    assert explain(ws, "C2", "2026-11-23")[0].startswith("c2 José Núñez")


def test_a_removed_contact_points_at_its_history(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    assert ws.run("run", "--all", "--date", "2026-11-23").code == 0
    # c1's row is deleted from the file; the ledger still knows its two messages.
    contacts = ws.root / "contacts.csv"
    rows = contacts.read_text(encoding="utf-8").splitlines()
    contacts.write_text("\n".join(r for r in rows if not r.startswith("c1,")) + "\n")
    result = ws.run("explain", "c1", "--date", "2026-11-24")
    assert result.code == 2
    assert "no contact 'c1' in the contacts file" in result.err
    assert "the ledger has 2 messages for that id" in result.err
    assert "outreach history --contact c1" in result.err
