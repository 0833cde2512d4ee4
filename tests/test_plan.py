"""`outreach plan`: simulated days on a copy of the ledger, checked against answers worked out by
hand, against real runs, and against the plain one-run-a-day loop it speeds up."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from conftest import BASE_CONFIG, Workspace

from outreach.deliver.outlets import CountOnlyOutlet
from outreach.ledger import Ledger, MessageRecord
from outreach.pipeline.decide import RunDates
from outreach.pipeline.run import RunRequest, execute_run, rehearse_run
from outreach.rehearse.plan import plan_days
from outreach.workspace import load_workspace

# The calendar of the scenario (November 2026):
#   Sun 22, Mon 23, Tue 24, Wed 25, Thu 26, Fri 27, Sat 28, Sun 29, Mon 30, Tue 1 Dec.
CADENCE = """\
cadence:
  min_gap_days: 7
  max_messages: 4
  per_days: 30
  quiet_weekdays: [sun]
"""
BIRTHDAY = """\
kind: birthday
channel: email
days_before: 3
priority: 80
email:
  subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
  text: birthday.txt.j2
"""
PROMOTION = """\
kind: promotion
channel: email
audience:
  tags_any: [newsletter]
priority: 40
start: 2026-11-23
end: {end}
email:
  subject: "Menú de otoño"
  text: promo.txt.j2
"""
# Birthday windows are the 3 days before the birthday and the day itself.
ROWS = [
    # c1: birthday 26 Nov (window 23–26) and the promotion, both open on Mon 23.
    "c1,Ana,García,ana@example.com,1990-11-26,,,,,,,newsletter,",
    # c2: birthday Wed 2 Dec: its window opens on Sunday 29 Nov, a quiet day.
    "c2,José,Núñez,jose@example.com,1985-12-02,,,,,,,,",
    # c3: the promotion on Mon 23, then a birthday on Tue 1 Dec (window Sat 28 – Tue 1).
    "c3,Begoña,Ibáñez,begona@example.com,1980-12-01,,,,,,,newsletter,",
    # c4: opted out of email in the file: skipped, never deferred.
    "c4,Íñigo,Ortiz,inigo@example.com,1970-11-24,,,,,,,newsletter,email",
]


def scenario(
    make_workspace: Callable[..., Workspace],
    *,
    rows: list[str] = ROWS,
    promotion_end: str = "2026-11-27",
    extra: dict[str, str] | None = None,
) -> Workspace:
    """The workspace of the hand-worked scenario: min_gap_days 7 and quiet Sundays."""
    campaigns = {
        "birthday.yaml": BIRTHDAY,
        "promotion.yaml": PROMOTION.format(end=promotion_end),
        **(extra or {}),
    }
    ws = make_workspace(rows, campaigns=campaigns)
    config = BASE_CONFIG[: BASE_CONFIG.index("cadence:")] + CADENCE
    ws.write("config.yaml", config)
    return ws


def table(out: str) -> dict[tuple[str, str], tuple[int, int, int, int, int]]:
    """The JSON plan's table as (date, campaign) → counts, leaving out the empty rows."""
    return {
        (row["date"], row["campaign"]): (
            row["emails"],
            row["letters"],
            row["deferred"],
            row["missed"],
            row["skipped"],
        )
        for row in json.loads(out)["table"]
        if any(row[k] for k in ("emails", "letters", "deferred", "missed", "skipped"))
    }


def state_snapshot(ws: Workspace) -> dict[str, bytes]:
    state = ws.root / "state"
    return {p.name: p.read_bytes() for p in sorted(state.iterdir())} if state.exists() else {}


def test_plan_table_matches_the_hand_worked_days(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    result = ws.run("plan", "--from", "2026-11-22", "--days", "10", "--json")
    assert result.code == 0, result.err
    # (emails, letters, deferred, missed, skipped)
    assert table(result.out) == {
        # Sun 22: c4's birthday window is open but c4 opted out of email (counted once).
        ("2026-11-22", "birthday"): (0, 0, 0, 0, 1),
        # Mon 23: c1's birthday (priority 80) goes and its promotion (40) waits: the same day.
        # c3 gets the promotion; c4's promotion is skipped (opted out).
        ("2026-11-23", "birthday"): (1, 0, 0, 0, 0),
        ("2026-11-23", "promotion"): (1, 0, 1, 0, 1),
        # Tue 24 – Fri 27: c1's promotion waits each day (1–4 days after the birthday < 7).
        ("2026-11-24", "promotion"): (0, 0, 1, 0, 0),
        ("2026-11-25", "promotion"): (0, 0, 1, 0, 0),
        ("2026-11-26", "promotion"): (0, 0, 1, 0, 0),
        ("2026-11-27", "promotion"): (0, 0, 1, 0, 0),
        # Sat 28: the promotion's window closed on the 27th while deferred: missed.
        # c3's birthday window opens; the promotion was 5 days before: deferred.
        ("2026-11-28", "promotion"): (0, 0, 0, 1, 0),
        ("2026-11-28", "birthday"): (0, 0, 1, 0, 0),
        # Sun 29: quiet day; c2's window opens and c3 still waits: both deferred.
        ("2026-11-29", "birthday"): (0, 0, 2, 0, 0),
        # Mon 30: c2 goes; c3 goes too (the promotion was exactly 7 days before).
        ("2026-11-30", "birthday"): (2, 0, 0, 0, 0),
    }
    plan = json.loads(result.out)
    assert (plan["from"], plan["to"], plan["days"]) == ("2026-11-22", "2026-12-01", 10)
    assert plan["totals"]["birthday"] == {
        "emails": 3,
        "letters": 0,
        "deferred": 3,
        "missed": 0,
        "skipped": 1,
    }
    assert plan["totals"]["promotion"] == {
        "emails": 1,
        "letters": 0,
        "deferred": 5,
        "missed": 1,
        "skipped": 1,
    }
    # Only c3 hears twice in these days.
    assert plan["pressure"] == [
        {
            "contact": "c3",
            "messages": [
                {
                    "date": "2026-11-23",
                    "campaign": "promotion",
                    "channel": "email",
                    "occurrence": "promotion",
                },
                {
                    "date": "2026-11-30",
                    "campaign": "birthday",
                    "channel": "email",
                    "occurrence": "birthday:2026",
                },
            ],
        }
    ]
    assert not (ws.root / "state").exists()
    assert not (ws.root / "out").exists()


def test_plan_takes_its_processes_from_outreach_workers_as_the_run_does(
    make_workspace: Callable[..., Workspace],
) -> None:
    # Three parts, each planning a shard of the four contacts, make the one-process plan.
    ws = scenario(make_workspace)
    args = ("plan", "--from", "2026-11-22", "--days", "10", "--json")
    alone = ws.run(*args, env={"OUTREACH_WORKERS": "1"})
    assert alone.code == 0, alone.err
    parts = ws.run(*args, env={"OUTREACH_WORKERS": "3"})
    assert parts.code == 0, parts.err
    assert json.loads(parts.out) == json.loads(alone.out)
    assert table(alone.out)[("2026-11-30", "birthday")] == (2, 0, 0, 0, 0)
    wrong = ws.run(*args, env={"OUTREACH_WORKERS": "none"})
    assert wrong.code == 2
    assert "OUTREACH_WORKERS must be a whole number from 1 (got 'none')" in wrong.out + wrong.err


def test_plan_text_output(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    result = ws.run("plan", "--from", "2026-11-22", "--days", "10")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "plan for 2026-11-22 to 2026-12-01 (10 days) — simulated on a copy of the ledger: "
        "nothing written",
        "date        campaign   emails  letters  deferred  missed  skipped",
        "2026-11-22  birthday        0        0         0       0        1",
        "2026-11-23  birthday        1        0         0       0        0",
        "            promotion       1        0         1       0        1",
        "2026-11-24  promotion       0        0         1       0        0",
        "2026-11-25  promotion       0        0         1       0        0",
        "2026-11-26  promotion       0        0         1       0        0",
        "2026-11-27  promotion       0        0         1       0        0",
        "2026-11-28  birthday        0        0         1       0        0",
        "            promotion       0        0         0       1        0",
        "2026-11-29  birthday        0        0         2       0        0",
        "2026-11-30  birthday        2        0         0       0        0",
        "total       birthday        3        0         3       0        1",
        "total       promotion       1        0         5       1        1",
        "(1 day with nothing to do is left out)",
        "contacts with the most messages in these days:",
        "  c3: 2 — promotion 2026-11-23 (email), birthday 2026-11-30 (email)",
    ]


def test_contact_story_birthday_beats_promotion_then_missed(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = scenario(make_workspace)
    result = ws.run("plan", "--from", "2026-11-22", "--days", "10", "--contact", "c1")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "plan for c1, 2026-11-22 to 2026-12-01 (10 days) — simulated: nothing written",
        "  2026-11-23 birthday would go by email",
        "  2026-11-23 promotion deferred: birthday on 2026-11-23 is the same day; min_gap_days 7",
        "  2026-11-24 promotion deferred: birthday on 2026-11-23 is 1 day before; min_gap_days 7",
        "  2026-11-25 promotion deferred: birthday on 2026-11-23 is 2 days before; min_gap_days 7",
        "  2026-11-26 promotion deferred: birthday on 2026-11-23 is 3 days before; min_gap_days 7",
        "  2026-11-27 promotion deferred: birthday on 2026-11-23 is 4 days before; min_gap_days 7",
        "  2026-11-28 promotion missed: its window closed on 2026-11-27 while it was deferred",
    ]


def test_contact_story_quiet_sunday_then_monday(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    c3 = ws.run("plan", "--from", "2026-11-22", "--days", "10", "--contact", "c3")
    assert c3.code == 0, c3.err
    assert c3.out.splitlines()[1:] == [
        "  2026-11-23 promotion would go by email",
        "  2026-11-28 birthday deferred: promotion on 2026-11-23 is 5 days before; min_gap_days 7",
        "  2026-11-29 birthday deferred: quiet day (sun)",
        "  2026-11-30 birthday would go by email",
    ]
    c2 = ws.run("plan", "--from", "2026-11-22", "--days", "10", "--contact", "c2", "--json")
    story = json.loads(c2.out)["story"]
    assert [(s["date"], s["campaign"], s["outcome"], s["text"]) for s in story] == [
        ("2026-11-29", "birthday", "deferred", "deferred: quiet day (sun)"),
        ("2026-11-30", "birthday", "send", "would go by email"),
    ]
    # An opted-out contact: the skip is told once, not on every day of the window.
    c4 = ws.run("plan", "--from", "2026-11-22", "--days", "10", "--contact", "c4")
    assert c4.out.splitlines()[1:] == [
        "  2026-11-22 birthday skipped: opted out (email)",
        "  2026-11-23 promotion skipped: opted out (email)",
    ]


def test_plan_restricted_to_one_campaign(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    result = ws.run(
        "plan", "--from", "2026-11-22", "--days", "10", "--campaign", "promotion", "--json"
    )
    assert result.code == 0, result.err
    # Without the birthdays nothing competes with the promotion: c1 and c3 get it on Monday.
    assert table(result.out) == {("2026-11-23", "promotion"): (2, 0, 0, 0, 1)}
    assert json.loads(result.out)["campaigns"] == ["promotion"]


def test_plan_writes_nothing_and_continues_from_the_ledger(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = scenario(make_workspace)
    whole = table(ws.run("plan", "--from", "2026-11-22", "--days", "10", "--json").out)
    assert ws.run("run", "--all", "--date", "2026-11-22").code == 0
    assert ws.run("run", "--all", "--date", "2026-11-23").code == 0
    before = state_snapshot(ws)
    outbox = sorted(p.relative_to(ws.root) for p in ws.files("out"))
    assert before and outbox
    rest = ws.run("plan", "--from", "2026-11-24", "--days", "8", "--json")
    assert rest.code == 0, rest.err
    assert state_snapshot(ws) == before
    assert sorted(p.relative_to(ws.root) for p in ws.files("out")) == outbox

    # The plan picks up where the real runs left off: the same days as the whole plan
    # (skips aside: a plan counts each skip on its own first day).
    def sent_deferred_missed(
        rows: dict[tuple[str, str], tuple[int, int, int, int, int]],
    ) -> dict[tuple[str, str], tuple[int, ...]]:
        return {
            key: counts[:4]
            for key, counts in rows.items()
            if key[0] >= "2026-11-24" and any(counts[:4])
        }

    assert sent_deferred_missed(table(rest.out)) == sent_deferred_missed(whole)


def test_plan_predicts_a_run_after_three_missed_days(
    make_workspace: Callable[..., Workspace],
) -> None:
    tasting = """\
        kind: one_off
        channel: email
        audience:
          tags_any: [wine]
        priority: 60
        send_on: 2026-11-26
        grace_days: 3
        email:
          subject: "Cata de vinos"
          text: promo.txt.j2
        """
    rows = [
        # Birthday 26 Nov (window 23–26) and the promotion (23–25): both open on Mon 23.
        "c1,Ana,García,ana@example.com,1990-11-26,,,,,,,newsletter,",
        # The promotion on Mon 23; birthday 27 Nov (window 24–27) opens during the gap.
        "c5,Lucía,Martín,lucia@example.com,1975-11-27,,,,,,,newsletter,",
        # Birthday 28 Nov (window 25–28): opens during the gap, still open on Fri 27.
        "c6,Pablo,Díaz,pablo@example.com,1982-11-28,,,,,,,,",
        # Birthday 29 Nov and the tasting (26–29): both open on Fri 27, only one may go.
        "c7,Elena,Gómez,elena@example.com,1991-11-29,,,,,,,wine,",
    ]
    ws = scenario(
        make_workspace, rows=rows, promotion_end="2026-11-25", extra={"tasting.yaml": tasting}
    )
    first = ws.run("run", "--all", "--date", "2026-11-23", "--json")
    assert first.code == 0, first.err
    # Cron does not run on 24, 25 and 26. What will Friday's run do?
    predicted = ws.run("plan", "--from", "2026-11-27", "--days", "1", "--json")
    assert predicted.code == 0, predicted.err
    assert table(predicted.out) == {
        # c6 and c7 get their birthdays; c5's waits (the promotion was 4 days before).
        ("2026-11-27", "birthday"): (2, 0, 1, 0, 0),
        # c1's promotion was deferred and its window closed on the 25th: missed.
        ("2026-11-27", "promotion"): (0, 0, 0, 1, 0),
        # c7's tasting (priority 60) waits for the birthday (80) that goes the same day.
        ("2026-11-27", "tasting"): (0, 0, 1, 0, 0),
    }
    story = ws.run("plan", "--from", "2026-11-27", "--days", "3", "--contact", "c7")
    assert story.out.splitlines()[1:] == [
        "  2026-11-27 birthday would go by email",
        "  2026-11-27 tasting deferred: birthday on 2026-11-27 is the same day; min_gap_days 7",
        "  2026-11-28 tasting deferred: birthday on 2026-11-27 is 1 day before; min_gap_days 7",
        # Sunday: the quiet day is the first rule that holds it back.
        "  2026-11-29 tasting deferred: quiet day (sun)",
    ]
    friday = ws.run("run", "--all", "--date", "2026-11-27", "--json")
    assert friday.code == 0, friday.err
    done = {c["name"]: (c["emails"], c["deferred"]) for c in json.loads(friday.out)["campaigns"]}
    assert done == {"birthday": (2, 1), "promotion": (0, 0), "tasting": (0, 1)}
    # The run that marks the message missed counts it, as the plan said it would.
    missed = {c["name"]: c["missed"] for c in json.loads(friday.out)["campaigns"]}
    assert missed == {"birthday": 0, "promotion": 1, "tasting": 0}
    held = [h for c in json.loads(friday.out)["campaigns"] for h in c["held_back"]]
    assert [(h["outcome"], h["contact"], h["line"], h["reason"]["code"]) for h in held] == [
        ("missed", "c1", 2, "window_closed")
    ]
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        rows_now = sorted(db.execute("SELECT contact_id, campaign, status, run_date FROM messages"))
    assert rows_now == [
        ("c1", "birthday", "rendered", "2026-11-23"),
        # Dated by the run that marked it missed, not by the run that deferred it.
        ("c1", "promotion", "missed", "2026-11-27"),
        ("c5", "birthday", "deferred", "2026-11-27"),
        ("c5", "promotion", "rendered", "2026-11-23"),
        ("c6", "birthday", "rendered", "2026-11-27"),
        ("c7", "birthday", "rendered", "2026-11-27"),
        ("c7", "tasting", "deferred", "2026-11-27"),
    ]


def test_plan_of_an_unknown_contact_exits_2(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    result = ws.run("plan", "--from", "2026-11-22", "--contact", "zz9")
    assert result.code == 2
    assert "no contact 'zz9' in the contacts file" in result.err


def test_plan_without_a_repeat_says_so(make_workspace: Callable[..., Workspace]) -> None:
    ws = scenario(make_workspace)
    result = ws.run("plan", "--from", "2026-11-22", "--days", "2")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == (
        "no contact would get more than one message in these days"
    )


@pytest.mark.parametrize(("start", "days"), [(date(2026, 11, 20), 20), (date(2026, 12, 27), 9)])
def test_plan_equals_a_plain_run_every_day(
    make_workspace: Callable[..., Workspace],
    monkeypatch: pytest.MonkeyPatch,
    start: date,
    days: int,
) -> None:
    """The plan only visits contacts with something open and keeps cadence history itself;
    running every contact on every day on a ledger copy must give the same days."""
    rows = []
    for n in range(60):
        birthday = date(1980, 11, 15) + timedelta(days=(n * 7) % 60)
        tags = ["newsletter", "", "newsletter;staff", "vip"][n % 4]
        opt = "email" if n % 11 == 0 else ""
        # Every fifth contact prefers letters: they count at their arrival, two days later.
        channel = "letter" if n % 5 == 0 else ""
        address = "Calle Mayor 1,28013,Madrid,ES"
        rows.append(
            f"k{n},N{n},L,k{n}@example.com,{birthday.isoformat()},{address},{channel},,{tags},{opt}"
        )
    birthday_by_preference = """\
        kind: birthday
        channel: preferred
        fallback: true
        days_before: 3
        priority: 80
        email:
          subject: "¡Feliz cumpleaños!"
          text: birthday.txt.j2
        letter:
          template: letter.html.j2
        """
    reminder = """\
        kind: reminder
        channel: email
        date_field: birthday
        every_days: 9
        grace_days: 2
        priority: 60
        email:
          subject: "Hola"
          text: promo.txt.j2
        """
    ws = scenario(
        make_workspace,
        rows=rows,
        promotion_end="2027-01-03",
        extra={"visit.yaml": reminder, "birthday.yaml": birthday_by_preference},
    )
    ws.write("templates/letter.html.j2", "<p>Feliz cumpleaños</p>\n")
    monkeypatch.chdir(ws.root)
    workspace = load_workspace(Path("config.yaml"))
    expected = []
    with Ledger.open(workspace.settings.ledger_path, readonly=True) as ledger:
        for offset in range(days):
            day = start + timedelta(days=offset)
            now = datetime.combine(day, time(9), tzinfo=workspace.settings.tz)
            closing = [
                r.campaign
                for r in ledger.messages(statuses=["deferred"])
                if r.latest is not None and r.latest < day
            ]
            summary = execute_run(
                workspace=workspace,
                store=ledger,
                outlet=CountOnlyOutlet(),
                dates=RunDates(day),
                clock=lambda now=now: now,
            )
            for c in summary.campaigns:
                # The run that closes a window counts the message missed.
                assert c.missed == closing.count(c.name)
                expected.append(
                    (day, c.name, c.emails, c.letters, c.deferred, closing.count(c.name))
                )
        made = sorted(
            (r.contact_id, r.campaign, r.occurrence_key, r.run_date)
            for r in ledger.messages(statuses=["rendered"])
        )
    plan = plan_days(workspace, start=start, days=days, top=10_000)
    assert [
        (c.day, c.campaign, c.emails, c.letters, c.deferred, c.missed) for c in plan.counts
    ] == (expected)
    # The scenario does exercise cadence, letters and missed windows.
    assert sum(c.deferred for c in plan.counts) > 0
    assert sum(c.letters for c in plan.counts) > 0
    assert sum(c.missed for c in plan.counts) > 0
    planned = sorted(
        (p.contact_id, m.campaign, m.occurrence_key, m.day)
        for p in plan.pressure
        for m in p.messages
    )
    # The pressure list holds every contact with two messages or more.
    twice = {contact for contact, *_ in made if sum(1 for m in made if m[0] == contact) > 1}
    assert planned == [m for m in made if m[0] in twice]
    assert twice
    # Planned in three forked processes (every third contact each), it is the same plan, and
    # the progress hears of every day once, in order.
    heard: list[date] = []
    split = plan_days(workspace, start=start, days=days, top=10_000, workers=3, on_day=heard.append)
    assert split.as_dict() == plan.as_dict()
    assert heard == [start + timedelta(days=offset) for offset in range(days)]


def test_a_plan_in_parts_counts_each_window_the_ledger_closes_once(
    make_workspace: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deferred in the ledger before the plan, their windows closing on its second day: of
    # contacts in the file and of one no longer in it. Each is missed once, in one part.
    ws = scenario(make_workspace)
    monkeypatch.chdir(ws.root)
    workspace = load_workspace(Path("config.yaml"))
    day = date(2026, 11, 22)
    with Ledger.open(workspace.settings.ledger_path) as ledger:
        ledger.record(
            [
                MessageRecord(
                    contact_id=contact_id,
                    campaign="promotion",
                    occurrence_key="promotion",
                    channel="email",
                    status="deferred",
                    run_date=day,
                    earliest=day,
                    latest=day,
                    updated_at=datetime.combine(day, time(9), tzinfo=workspace.settings.tz),
                )
                for contact_id in ("c1", "c2", "c3", "gone")
            ]
        )
    start = date(2026, 11, 22)
    whole = plan_days(workspace, start=start, days=3, workers=1)
    missed = {(c.day, c.campaign): c.missed for c in whole.counts if c.missed}
    assert missed == {(date(2026, 11, 23), "promotion"): 4}
    for parts in (2, 3):
        assert plan_days(workspace, start=start, days=3, workers=parts) == whole


def test_plan_reaches_the_contacts_the_run_reaches_under_the_configured_limits(
    make_workspace: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A `where` that builds a 6,000,000-character value: refused under the default render
    # limit (5,000,000), allowed by this workspace's `limits.render_size`. The plan must
    # compile the audience as the run does, with the configured limits, or it leaves out
    # contacts the run reaches.
    promotion = PROMOTION.format(end="2026-11-27").replace(
        "  tags_any: [newsletter]\n",
        '  tags_any: [newsletter]\n  where: "(contact.first_name * 2000000) | length > 0"\n',
    )
    ws = scenario(make_workspace, extra={"promotion.yaml": promotion})
    ws.write(
        "config.yaml",
        (ws.root / "config.yaml").read_text() + "limits:\n  render_size: 20000000\n",
    )
    monkeypatch.chdir(ws.root)
    workspace = load_workspace(Path("config.yaml"))
    day = date(2026, 11, 23)
    now = datetime.combine(day, time(9), tzinfo=workspace.settings.tz)
    run = rehearse_run(workspace, RunRequest(today=day, now=now, clock=lambda: now))
    ran = {c.name: c.emails for c in run.campaigns}
    plan = plan_days(workspace, start=day, days=1, top=10_000)
    planned = {c.campaign: c.emails for c in plan.counts if c.day == day}
    # c1 and c3 are in the newsletter audience (c4 opted out of email); c1's birthday
    # (priority 80) goes on the 23rd too, so cadence defers c1's promotion: c3's goes.
    assert ran["promotion"] == 1
    assert planned.get("promotion", 0) == ran["promotion"]
