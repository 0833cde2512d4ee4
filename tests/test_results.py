"""`outreach results`: visit rates against the control group, with Newcombe's interval."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPORT_ON, Workspace

from outreach.ledger import Ledger, MessageRecord
from outreach.ledger.outcomes import Exposure, Visit, add_visits
from outreach.outcomes.coupons import coupon_code
from outreach.outcomes.results import campaign_results, read_results
from outreach.outcomes.stats import newcombe, wilson
from outreach.rules.control import in_control

# Newcombe (1998), Table II, method 10 (the hybrid score interval): x1/n1 − x2/n2, limits.
PUBLISHED = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "limits"), PUBLISHED)
def test_the_interval_matches_newcombes_worked_examples(
    counts: tuple[int, int, int, int], limits: tuple[float, float]
) -> None:
    x1, n1, x2, n2 = counts
    found = newcombe(x1, n1, x2, n2)
    assert found.estimate == pytest.approx(x1 / n1 - x2 / n2)
    assert (round(found.low, 4), round(found.high, 4)) == limits


def test_wilson_is_the_score_interval_and_refuses_impossible_counts() -> None:
    # Newcombe's companion paper (1998, single proportion), 81/263: 0.2553 to 0.3662.
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson(3, 2)
    with pytest.raises(ValueError):
        wilson(0, 0)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


@pytest.mark.parametrize("effect", [0.06, 0.0])
def test_a_simulated_restaurant_recovers_a_planted_effect_and_no_effect(effect: float) -> None:
    # 5,000 contacts, a fifth held out; 25 % come back anyway within the window.
    base, contacts, share = 0.25, 5_000, 0.2
    covered = 0
    for seed in range(200):
        rng = random.Random(seed)
        control = _binomial(rng, contacts, share)
        treated = contacts - control
        found = newcombe(
            _binomial(rng, treated, base + effect), treated, _binomial(rng, control, base), control
        )
        covered += found.low <= effect <= found.high
    assert covered >= 180  # at least 90 % of the seeds (95 % expected)


def test_tallies_count_each_contact_once_within_the_window() -> None:
    day = date(2026, 11, 1)
    rng = random.Random(4)
    exposures, visits = [], []
    for i in range(5_000):
        contact_id = f"c{i:05d}"
        control = in_control(campaign="birthday", contact_id=contact_id, percent=20)
        exposures.append(Exposure("birthday", contact_id, day, control))
        if rng.random() < (0.2 if control else 0.3):
            visits.append((contact_id, day + timedelta(days=rng.randrange(31)), 2000))
            visits.append((contact_id, day + timedelta(days=31), 999))  # after the window
        if rng.random() < 0.1:
            visits.append((contact_id, day - timedelta(days=1), 999))  # before it
    visits.sort()
    (result,) = campaign_results(exposures, visits, [], attribution_days=30)
    held = sum(e.control for e in exposures)
    assert (result.treated, result.control) == (5_000 - held, held)
    came = {v[0] for v in visits if v[2] == 2000}
    assert result.visits_treated + result.visits_control == len(came)
    assert result.revenue_treated_cents + result.revenue_control_cents == 2000 * len(came)
    assert result.uplift is not None
    assert result.uplift.low <= 0.1 <= result.uplift.high and not result.uplift.covers_zero


ROWS = [f"c{i:03d},Ana,García,c{i}@example.com,26/11/1990,,,,,,,customer," for i in range(40)]
CAMPAIGN = """\
    kind: birthday
    channel: email
    days_before: 3
    control_group: 30%
    email:
      subject: "¡Feliz cumpleaños!"
      text: birthday.txt.j2
    """


def test_the_command_counts_both_groups_and_says_when_it_cannot_tell_yet(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS, campaigns={"birthday.yaml": CAMPAIGN})
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0
    held = {
        c
        for i in range(40)
        if in_control(campaign="birthday", contact_id=(c := f"c{i:03d}"), percent=30)
    }
    got = {f"c{i:03d}" for i in range(40)} - held
    came = sorted(got)[:6] + sorted(held)[:4]
    lines = ["date,id,amount"] + [f'2026-12-01,{c},"20,00"' for c in came]
    lines.append("2027-02-01,c000,5")  # long after the window: counts for nothing
    ws.write("caja.csv", "\n".join(lines) + "\n")
    assert ws.run("visits", "--import", "caja.csv").code == 0
    out = ws.run("results", "--from", "2026-11-01", "--to", "2026-11-30", "--json")
    assert out.code == 0, out.err
    (birthday,) = json.loads(out.out)["campaigns"]
    expected = newcombe(6, len(got), 4, len(held))
    assert expected.covers_zero
    assert birthday == {
        "campaign": "birthday",
        "treated": len(got),
        "control": len(held),
        "visits_treated": 6,
        "visits_control": 4,
        "redeemed": 0,
        "uplift": round(expected.estimate, 6),
        "uplift_low": round(expected.low, 6),
        "uplift_high": round(expected.high, 6),
        "revenue_treated": 120.0,
        "revenue_control": 80.0,
    }
    text = ws.run("results", "--from", "2026-11-01", "--to", "2026-11-30")
    assert text.code == 0, text.err
    assert "birthday: not enough data yet" in text.out
    empty = ws.run("results", "--from", "2025-01-01", "--to", "2025-01-31")
    assert "no messages or control decisions" in empty.out
    code = coupon_code(
        secret="test-secret",
        contact_id=sorted(got)[0],
        campaign="birthday",
        occurrence_key="birthday:2026",
        prefix="CL-",
        length=8,
    )
    assert ws.run("redeem", code, "--date", "2026-11-27").code == 0
    page = ws.root / "page.html"
    made = ws.run(
        "report", "--from", "2026-11-01", "--to", "2026-11-30", "-o", str(page), env=REPORT_ON
    )
    assert made.code == 0, made.err
    html = page.read_text(encoding="utf-8")
    section = html[html.index('<section id="comeback">') : html.index('<section id="outgoing">')]
    assert "<h2>Do they come back?</h2>" in section
    row = re.search(r'<tr data-campaign="birthday">(.*?)</tr>', section)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:5] == ["birthday", str(len(got)), "6", str(len(held)), "4"]
    assert 'data-verdict="verdict_wait"' in row.group(1)
    assert cells[7] == "1" and cells[8] == "120,00 / 80,00"
    assert 'id="chart-comeback-title"' in section and 'id="chart-redeemed-title"' in section
    assert 'id="chart-redeemed-series-redeemed-26"' in section  # 27 November: day 26 of the period


def test_the_restaurant_recipes_load_once_switched_on(tmp_path: Path) -> None:
    from outreach.model.campaigns import load_campaign
    from outreach.skeleton import create_workspace

    create_workspace(tmp_path, today=date(2026, 11, 24))
    loaded = {}
    for example in sorted((tmp_path / "campaigns").glob("*.yaml.example")):
        path = example.with_name(example.name.removesuffix(".example"))
        example.rename(path)
        loaded[path.stem] = load_campaign(path, templates_dir=tmp_path / "templates")
    assert sorted(loaded) == ["thanks", "welcome", "winback"]
    assert loaded["winback"].control_group == 20 and loaded["winback"].every_days == 120
    assert loaded["thanks"].offsets == (2,) and loaded["welcome"].date_field == "first_visit"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        with Ledger.open(tmp_path / "state" / "ledger.sqlite") as led:
            yield led
    else:
        with Ledger.connect(request.getfixturevalue("pg_url")) as led:
            yield led


def test_results_read_the_same_from_either_ledger(ledger: Ledger) -> None:
    day, now = date(2026, 11, 24), datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

    def row(contact_id: str, status: str, code: str | None, earliest: date) -> MessageRecord:
        return MessageRecord(
            contact_id=contact_id,
            campaign="birthday",
            occurrence_key="birthday:2026",
            channel="email",
            status=status,
            run_date=day,
            earliest=earliest,
            effective_date=day,
            updated_at=now,
            reason_code=code,
        )

    ledger.record(
        [
            row("t1", "sent", None, day),
            row("t2", "rendered", None, day),
            row("t3", "sent", None, date(2026, 9, 1)),  # its window opened before --from
            row("k1", "skipped", "control", day),
            row("k2", "skipped", "control", day),
            row("o1", "skipped", "opted_out", day),  # held back for another reason: no group
        ]
    )
    conn = ledger.connection()
    visits = [
        Visit("t1", day + timedelta(days=3), 2550),
        Visit("t1", day + timedelta(days=40)),  # after the window
        Visit("k1", day, 1000),
        Visit("t2", day - timedelta(days=1)),  # before it
    ]
    assert add_visits(conn, visits, source="caja.csv", now=now) == 4
    (result,) = read_results(
        conn, start=date(2026, 11, 1), end=date(2026, 11, 30), attribution_days=30
    )
    assert (result.treated, result.control) == (2, 2)
    assert (result.visits_treated, result.visits_control) == (1, 1)
    assert (result.revenue_treated_cents, result.revenue_control_cents) == (2550, 1000)
    assert result.uplift == newcombe(1, 2, 1, 2)
