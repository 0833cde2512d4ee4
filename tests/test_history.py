"""`outreach history`: the ledger's messages newest first, filters, runs, uncertain rows."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import BASE_CONFIG, Workspace

from outreach.ledger import Ledger

CADENCE = """\
cadence:
  min_gap_days: 7
  max_messages: 4
  per_days: 30
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
        priority: 40
        start: 2026-11-23
        end: 2026-11-27
        email:
          subject: "Menú de otoño"
          text: promo.txt.j2
        """,
}
ROWS = [
    # Birthday 26 Nov and the promotion: the birthday goes on the 23rd, the promotion waits.
    "c1,Ana,García,ana@example.com,1990-11-26,,,,,,,newsletter,",
    # Nothing due on the 23rd or 24th.
    "c2,José,Núñez,jose@example.com,1985-12-02,,,,,,,,",
    # The promotion on the 23rd.
    "c3,Begoña,Ibáñez,begona@example.com,,,,,,,,newsletter,",
    # Opted out of email: both skipped, on each run.
    "c4,Íñigo,Ortiz,inigo@example.com,1970-11-24,,,,,,,newsletter,email",
]


@pytest.fixture(scope="module")
def made() -> dict[str, Path]:
    """The workspace `ran` made first in this test process, kept for the module's other tests."""
    return {}


@pytest.fixture
def ran(
    make_workspace: Callable[..., Workspace],
    made: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Workspace:
    """The workspace after runs on Mon 23 and Tue 24 Nov 2026: the runs are made once per test
    process, and each test gets its own copy of the result (some write to its ledger)."""
    ws = make_workspace(ROWS, campaigns=CAMPAIGNS)
    if "ws" in made:
        shutil.rmtree(ws.root)
        shutil.copytree(made["ws"], ws.root)
        return ws
    ws.write("config.yaml", BASE_CONFIG[: BASE_CONFIG.index("cadence:")] + CADENCE)
    for day in ("2026-11-23", "2026-11-24"):
        assert ws.run("run", "--all", "--date", day).code == 0
    made["ws"] = tmp_path_factory.mktemp("history-ran") / "ws"
    shutil.copytree(ws.root, made["ws"])
    return ws


def rows(ws: Workspace, *args: str) -> list[tuple[object, ...]]:
    result = ws.run("history", "--json", *args)
    assert result.code == 0, result.err
    return [
        (m["date"], m["contact"], m["campaign"], m["status"], m["reason"], m["artifact"])
        for m in json.loads(result.out)["messages"]
    ]


# Newest first: by the date of the run that last wrote the row, then the latest written.
# The second run wrote c4's skips and c1's deferral again, in file and decision order.
ALL = [
    ("2026-11-24", "c4", "promotion", "skipped", "opted out (email)", None),
    ("2026-11-24", "c4", "birthday", "skipped", "opted out (email)", None),
    (
        "2026-11-24",
        "c1",
        "promotion",
        "deferred",
        "birthday on 2026-11-23 is 1 day before; min_gap_days 7",
        None,
    ),
    ("2026-11-23", "c3", "promotion", "rendered", None, "out/outbox/2026-11-23/promotion/c3.eml"),
    ("2026-11-23", "c1", "birthday", "rendered", None, "out/outbox/2026-11-23/birthday/c1.eml"),
]


def test_messages_newest_first(ran: Workspace) -> None:
    assert rows(ran) == ALL


@pytest.mark.slow
def test_filters(ran: Workspace) -> None:
    assert rows(ran, "--contact", "c1") == [ALL[2], ALL[4]]
    assert rows(ran, "--campaign", "promotion") == [ALL[0], ALL[2], ALL[3]]
    assert rows(ran, "--status", "skipped") == [ALL[0], ALL[1]]
    assert rows(ran, "--status", "rendered", "--status", "deferred") == ALL[2:]
    assert rows(ran, "--since", "2026-11-24") == ALL[:3]
    assert rows(ran, "--contact", "c1", "--campaign", "promotion") == [ALL[2]]
    assert rows(ran, "--contact", "c2") == []
    data = json.loads(ran.run("history", "--json", "--limit", "2").out)
    assert (data["matched"], data["shown"]) == (5, 2)


def test_text_table_limit_and_runs(ran: Workspace) -> None:
    result = ran.run("history", "--limit", "2", "--runs")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "date",
        "contact",
        "campaign",
        "occurrence",
        "channel",
        "status",
        "reason",
        "/",
        "error",
        "artifact",
    ]
    assert lines[1].split() == [
        "2026-11-24",
        "c4",
        "promotion",
        "promotion",
        "email",
        "skipped",
        "opted",
        "out",
        "(email)",
    ]
    assert lines[2].split()[:6] == [
        "2026-11-24",
        "c4",
        "birthday",
        "birthday:2026",
        "email",
        "skipped",
    ]
    assert lines[3] == "showing the newest 2 of 5 messages (--limit 0 shows all)"
    assert lines[4] == "last runs:"
    assert lines[5].split() == ["run", "date", "started", "ended", "command", "result"]
    # The newest run first, with its command line and what it did.
    second, first = lines[6], lines[7]
    assert second.split()[:2] == ["2", "2026-11-24"]
    assert second.endswith("run --all --date 2026-11-24  deferred 1, skipped 2")
    assert first.split()[:2] == ["1", "2026-11-23"]
    assert first.endswith("run --all --date 2026-11-23  emails 2, deferred 1, skipped 2")
    assert len(lines) == 8
    everything = ran.run("history", "--limit", "0").out.splitlines()
    assert len(everything) == 1 + 5


def test_uncertain_rows_stand_out(ran: Workspace) -> None:
    # What a run killed while handing an email to the mail server leaves behind (the send
    # step settles `sending` rows to `uncertain` on the next run).
    with Ledger.open(ran.root / "state" / "ledger.sqlite") as ledger:
        ledger.set_status(
            contact_id="c3",
            campaign="promotion",
            occurrence_key="promotion",
            status="uncertain",
            error="the run died while handing the message to the mail server",
            now=datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        )
    result = ran.run("history")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    uncertain = [line for line in lines[1:] if " uncertain " in line]
    assert len(uncertain) == 1
    assert uncertain[0].split()[:6] == [
        "2026-11-23",
        "c3",
        "promotion",
        "promotion",
        "email",
        "uncertain",
    ]
    assert "the run died while handing the message to the mail server" in uncertain[0]
    assert lines[-1] == (
        "1 message uncertain: the run died while handing them to the mail server; check "
        "the mailbox, then `outreach send --retry-uncertain` or leave them"
    )
    # Counted over everything that matches, even when the row is not among those shown.
    assert ran.run("history", "--limit", "1").out.splitlines()[-1] == lines[-1]
    assert json.loads(ran.run("history", "--json").out)["uncertain"] == 1
    # Nothing uncertain among c1's messages: no such line.
    assert "uncertain" not in ran.run("history", "--contact", "c1").out


def test_no_ledger_yet(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS, campaigns=CAMPAIGNS)
    result = ws.run("history")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "no ledger yet (state/ledger.sqlite does not exist): nothing has run"
    ]
    assert not (ws.root / "state").exists()
    data = json.loads(ws.run("history", "--json").out)
    assert (data["messages"], data["matched"]) == ([], 0)


def test_history_reads_without_writing(ran: Workspace) -> None:
    state = ran.root / "state"
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    assert ran.run("history", "--runs").code == 0
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before


def test_bad_status_is_a_usage_error(ran: Workspace) -> None:
    result = ran.run("history", "--status", "lost")
    assert result.code == 2
    assert "'lost' is not one of" in result.err
