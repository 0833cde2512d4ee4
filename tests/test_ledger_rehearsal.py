"""Rehearsals run the SQL ledger on an in-memory SQLite seeded from the real one.

They never change the real ledger (its folder stays byte for byte the same), and the seeded
ledger answers what a run asks (suppressions, cadence history, done messages, windows that
close) as the real ledger does, also after both record the same days.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from conftest import Workspace

from outreach.ledger import STATUSES, Block, Ledger, MessageRecord, Seed
from outreach.pipeline.run import RunRequest, perform_run, rehearse_run
from outreach.rehearse.explain import explain_contact
from outreach.rehearse.plan import plan_days
from outreach.rehearse.validate import validate_workspace
from outreach.rules.cadence import PastMessage
from outreach.shards import Shard
from outreach.workspace import load_workspace

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
ROWS = [
    "c1,Ana,García,ana@example.com,1990-11-26,,,,,,,newsletter,",
    "c2,José,Núñez,jose@example.com,1985-12-02,,,,,,,,",
    "c3,Begoña,Ibáñez,begona@example.com,1980-11-25,,,,,,,newsletter,",
    "c4,Íñigo,Ortiz,inigo@example.com,1970-11-24,,,,,,,newsletter,",
]
CAMPAIGNS = ("birthday", "promotion")


def message(contact_id: str, campaign: str, key: str, status: str, day: date) -> MessageRecord:
    """A message of `day` whose window is the three days around it."""
    return MessageRecord(
        contact_id=contact_id,
        campaign=campaign,
        occurrence_key=key,
        channel="email",
        status=status,
        run_date=day,
        earliest=day - timedelta(days=1),
        latest=day + timedelta(days=1),
        artifact=f"out/{campaign}/{contact_id}.eml" if status != "deferred" else None,
        effective_date=day,
        updated_at=datetime.combine(day, time(9), tzinfo=UTC),
    )


def fill(ledger: Ledger, rng: random.Random, *, contacts: int, rows: int) -> None:
    """Random rows over the 60 days before DAY, a suppression and a block."""
    records = {}
    for _ in range(rows):
        day = DAY - timedelta(days=rng.randint(1, 60))
        contact = f"c{rng.randint(1, contacts)}"
        campaign = rng.choice(CAMPAIGNS)
        key = f"{campaign}:{rng.choice([2025, 2026])}"
        status = rng.choice(STATUSES)
        records[(contact, campaign, key)] = message(contact, campaign, key, status, day)
    ledger.record(records.values())
    ledger.suppress("c2", channel="email", source="test", now=NOW)
    ledger.record_feedback(
        blocks=[Block("email", "bounced@example.com", "c3", "hard-bounce", DAY)], now=NOW
    )


def pressure(
    history: Mapping[str, Sequence[PastMessage]], contacts: int
) -> dict[str, list[PastMessage]]:
    """A history as comparable values (same-day messages in any order)."""
    found = {}
    for number in range(1, contacts + 1):
        past = history.get(f"c{number}", ())
        if past:
            found[f"c{number}"] = sorted(past, key=lambda m: (m.effective_date, m.campaign))
    return found


def answers(store: Ledger, *, since: date, contacts: int) -> tuple[object, ...]:
    """What a run asks of its store, as values."""
    return (
        store.suppressions(),
        pressure(store.history(since=since), contacts),
        {name: dict(store.done_for(name)) for name in CAMPAIGNS},
    )


@pytest.mark.parametrize("seed_number", range(3))
def test_a_plans_rehearsal_answers_as_the_ledger_does_day_after_day(
    tmp_path: Path, seed_number: int
) -> None:
    rng = random.Random(seed_number)
    contacts = 30
    since = DAY - timedelta(days=30)
    keys = {name: {f"{name}:2025", f"{name}:2026"} for name in CAMPAIGNS}
    with Ledger.open(tmp_path / "ledger.sqlite") as real:
        fill(real, rng, contacts=contacts, rows=200)
        seed = Seed(since=since, occurrence_keys=keys, remember=True)
        with Ledger.seeded(real, seed) as rehearsal:
            assert answers(rehearsal, since=since, contacts=contacts) == answers(
                real, since=since, contacts=contacts
            )
            for offset in range(6):  # days that each close windows and record a few rows
                day = DAY + timedelta(days=offset)
                moment = datetime.combine(day, time(9), tzinfo=UTC)
                later = since + timedelta(days=offset)
                closed, done = [], []
                for store in (real, rehearsal):
                    run = store.begin_run(run_date=day, started_at=moment, args=["plan"])
                    closed.append(store.close_windows(today=day, now=moment, run_id=run))
                    # Asked between the day's writes, so what is remembered is in use.
                    done.append(dict(store.done_for("birthday")))
                    store.record(
                        [
                            message(f"c{n}", rng_campaign, f"{rng_campaign}:2026", status, day)
                            for n, rng_campaign, status in todays_rows(
                                random.Random(seed_number * 100 + offset), contacts
                            )
                        ],
                        run_id=run,
                    )
                assert sorted(r.key for r in closed[0]) == sorted(r.key for r in closed[1])
                assert done[0] == done[1]
                assert answers(rehearsal, since=later, contacts=contacts) == answers(
                    real, since=later, contacts=contacts
                )


def test_a_shards_rehearsal_holds_the_messages_of_its_contacts_only(tmp_path: Path) -> None:
    since = DAY - timedelta(days=30)
    keys = {name: {f"{name}:2025", f"{name}:2026"} for name in CAMPAIGNS}
    with Ledger.open(tmp_path / "ledger.sqlite") as real:
        fill(real, random.Random(3), contacts=30, rows=200)
        whole = Seed(since=since, occurrence_keys=keys)
        with Ledger.seeded(real, whole) as everyone:
            seeded = everyone.messages()
        parts = []
        for index in (1, 2):
            shard = Shard(index, 2)
            with Ledger.seeded(real, Seed(since=since, occurrence_keys=keys, shard=shard)) as one:
                part = one.messages()
                assert part == [m for m in seeded if shard.contains(m.contact_id)]
                assert one.suppressions() == real.suppressions()
                parts.append(part)
        assert all(parts) and len(parts[0]) + len(parts[1]) == len(seeded)


def todays_rows(rng: random.Random, contacts: int) -> list[tuple[int, str, str]]:
    """A day's writes: a few contacts' messages in any status."""
    chosen = rng.sample(range(1, contacts + 1), 5)
    return [(n, rng.choice(CAMPAIGNS), rng.choice(STATUSES)) for n in chosen]


def test_an_explains_rehearsal_holds_the_contacts_rows_and_answers_for_them(
    tmp_path: Path,
) -> None:
    since = DAY - timedelta(days=30)
    with Ledger.open(tmp_path / "ledger.sqlite") as real:
        fill(real, random.Random(7), contacts=5, rows=40)
        with Ledger.seeded(real, Seed(contact_id="c3")) as rehearsal:
            assert rehearsal.messages() == real.messages(contact_id="c3")
            assert rehearsal.suppressions() == real.suppressions()
            assert rehearsal.history(since=since).get("c3") == real.history(since=since).get("c3")
            for name in CAMPAIGNS:
                mine = {k: v for k, v in real.done_for(name).items() if k[0] == "c3"}
                assert dict(rehearsal.done_for(name)) == mine


def test_a_validates_rehearsal_holds_the_suppressions_and_blocks_and_no_message(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite") as real:
        fill(real, random.Random(3), contacts=5, rows=40)
        with Ledger.seeded(real, Seed(messages=False)) as rehearsal:
            assert rehearsal.suppressions() == real.suppressions() != {}
            assert rehearsal.blocks() == real.blocks() != []
            assert rehearsal.messages() == []


def test_rehearsals_leave_the_real_ledger_byte_identical(
    make_workspace: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(ROWS)
    monkeypatch.chdir(ws.root)
    workspace = load_workspace(Path("config.yaml"))
    settings = workspace.settings
    # A real run first: the ledger has messages, a run, and (below) a suppression.
    perform_run(workspace, RunRequest(today=DAY, now=NOW))
    with Ledger.open(settings.ledger_path) as ledger:
        assert ledger.messages()
        ledger.suppress("c4", channel="all", source="test", now=NOW)
    state = settings.ledger_path.parent
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    later = DAY + timedelta(days=1)
    moment = datetime.combine(later, time(9), tzinfo=settings.tz)

    plan = plan_days(workspace, start=later, days=4, workers=1)
    explanation = explain_contact(workspace, contact_id="c3", today=later, now=moment)
    report = validate_workspace(settings, today=later, now=moment)
    dry = rehearse_run(workspace, RunRequest(today=later, now=moment))

    assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    # They did rehearse on the ledger's rows: c4 is suppressed, c1's birthday was made.
    assert plan.counts and explanation.suppressed == ()
    assert not report.blocking and dry.dry_run
    with Ledger.open(settings.ledger_path) as ledger:
        assert ledger.suppressions()["c4"] == frozenset({"all"})
        assert len(ledger.runs()) == 1
