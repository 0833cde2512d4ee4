"""Properties of whole runs: random workspaces run over a year of dates, then audited.

The library does the runs exactly as `perform_run` would (mark missed windows, then
`execute_run` on a real SQLite ledger), in `simulate` mode so nothing is rendered. The audit
works from the ledger and from the run's trace (the order in which it decided), and computes
on its own, from the contacts and campaigns, which occurrences were due on each run day:

* no occurrence is sent twice, and every send is in the ledger once, as `rendered`;
* nothing is sent outside its window, and the windows are the ones the design defines;
* nothing is sent to a contact opted out of that channel (CSV or suppression list), essential
  or not;
* no non-essential message on a quiet weekday, closer than `min_gap_days` to any message
  decided before it, or making some `per_days` window around it hold more than
  `max_messages` (essential messages count; letters count on their arrival day);
* essential messages are never held back;
* nothing is held back that cadence could have fitted: every deferral names a rule that
  really blocks it at that moment;
* every occurrence due on a run day is accounted for that day, and in the end is rendered,
  or deferred / missed / skipped with a reason; nothing stays deferred past its window.
"""

from __future__ import annotations

import calendar
import random
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.contacts import Contact, ContactList
from outreach.deliver.outlets import CountOnlyOutlet
from outreach.ledger import Ledger, MessageRecord
from outreach.model.campaigns import Audience, CadenceOverride, Campaign, EmailSpec, LetterSpec
from outreach.model.config import WEEKDAYS, CadencePolicy, Letters, Sender, Settings
from outreach.model.reasons import Code
from outreach.pipeline.decide import Decision, RunDates
from outreach.pipeline.run import execute_run
from outreach.workspace import Workspace

MADRID = ZoneInfo("Europe/Madrid")
FIRST_DAY = date(2026, 1, 1)
CONSENT_DAY = date(2025, 1, 15)  # before every run day of these scenarios

TAGS = ("a", "b", "c")
CHANNELS = ("email", "letter")


# --- scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Suppression:
    """An entry added to the suppression list just before run number `before_run`."""

    value: str
    channel: str  # email | letter | all
    before_run: int


@dataclass(frozen=True)
class Scenario:
    settings: Settings
    contacts: tuple[Contact, ...]
    campaigns: tuple[Campaign, ...]
    run_days: tuple[date, ...]
    suppressions: tuple[Suppression, ...]


def _policies() -> st.SearchStrategy[CadencePolicy]:
    return st.builds(
        CadencePolicy,
        min_gap_days=st.integers(0, 10),
        max_messages=st.integers(1, 4),
        per_days=st.integers(1, 30),
        quiet_weekdays=st.lists(st.sampled_from(WEEKDAYS), max_size=3, unique=True).map(tuple),
    )


def _overrides() -> st.SearchStrategy[CadenceOverride | None]:
    return st.none() | st.builds(
        CadenceOverride,
        min_gap_days=st.none() | st.integers(0, 10),
        max_messages=st.none() | st.integers(1, 4),
        per_days=st.none() | st.integers(1, 30),
        quiet_weekdays=st.none()
        | st.lists(st.sampled_from(WEEKDAYS), max_size=2, unique=True).map(tuple),
    )


_tag_sets = st.frozensets(st.sampled_from(TAGS), max_size=2)


def _near(draw: st.DrawFn, days: list[date], before: int, after: int) -> date:
    """A day close to one of the run days, so that occurrences meet runs and collide."""
    return draw(st.sampled_from(days)) + timedelta(days=draw(st.integers(-before, after)))


def make_contact(rng: random.Random, index: int, *, days: list[date]) -> Contact:
    """A random contact whose birthday and appointment fall near the run days.

    Drawn from a seeded Random rather than field by field: Hypothesis likes to repeat one
    choice across a whole list, which made every contact alike (all opted out, say).
    """

    def near(before: int, after: int) -> date:
        return rng.choice(days) + timedelta(days=rng.randint(-before, after))

    birthday = None
    if rng.random() < 0.8:
        birthday = near(2, 7).replace(year=rng.randint(1950, 2005))
    elif rng.random() < 0.5:
        birthday = date(1996, 2, 29)  # 28 February in 2026 and 2027
    appointment = near(2, 5) if rng.random() < 0.7 else None
    has_address = rng.random() < 0.8
    return Contact(
        # Upper-case ids and mixed-case addresses: suppressions match either, case-blind.
        id=f"C{index:02d}",
        line=index + 2,
        first_name=f"Name{index}",
        email=rng.choice([f"P{index}@Example.com"] * 8 + [f"p{index}@x.org", None]),
        birthday=birthday,
        street="Calle Mayor 1" if has_address else None,
        postal_code="28001" if has_address else None,
        city="Madrid" if has_address else None,
        preferred_channel=rng.choice([None, "email", "letter"]),
        tags=frozenset(rng.sample(TAGS, rng.randint(0, 2))),
        opt_out=rng.choice([frozenset()] * 8 + [frozenset({"email"}), frozenset({"letter"})]),
        email_consent=CONSENT_DAY,  # every marketing message has a basis (tests/test_legal.py)
        extra=MappingProxyType(
            {"next_appointment": appointment.isoformat()} if appointment else {}
        ),
    )


@st.composite
def _campaign(draw: st.DrawFn, index: int, kind: str, *, days: list[date]) -> Campaign:
    common = {
        "name": f"{kind}{index}",
        "kind": kind,
        "path": Path(f"campaigns/{kind}{index}.yaml"),
        "channel": draw(st.sampled_from(["email", "email", "letter", "preferred"])),
        "fallback": draw(st.booleans()),
        "audience": Audience(
            tags_any=tuple(sorted(draw(_tag_sets))) if not draw(st.integers(0, 3)) else (),
            tags_none=("c",) if not draw(st.integers(0, 3)) else (),
        ),
        "priority": draw(st.integers(0, 100)),
        "cadence": draw(_overrides()),
        "email": EmailSpec(subject="s", text="t.txt.j2"),
        "letter": LetterSpec(template="l.html.j2"),
    }
    if kind == "birthday":
        return Campaign(
            **common, days_before=draw(st.integers(0, 7)), days_after=draw(st.integers(0, 2))
        )
    if kind == "promotion":
        start = _near(draw, days, 20, 3)
        end = start + timedelta(days=draw(st.integers(0, 45)))
        return Campaign(**common, start=start, end=end)
    offsets = draw(st.lists(st.sampled_from([-3, -1, 0, 2]), min_size=1, max_size=2, unique=True))
    return Campaign(
        **common,
        essential=True,
        date_field="next_appointment",
        offsets=tuple(offsets),
        grace_days=draw(st.integers(0, 2)),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # Run days in order: mostly daily, with repeats (0) and gaps of up to six weeks.
    days = [FIRST_DAY + timedelta(days=draw(st.integers(0, 30)))]
    for _ in range(draw(st.integers(0, 39))):
        step = draw(st.one_of(st.integers(0, 2), st.integers(0, 2), st.integers(3, 40)))
        if (days[-1] + timedelta(days=step) - FIRST_DAY).days > 366:
            break
        days.append(days[-1] + timedelta(days=step))
    count = draw(st.integers(1, 20))
    rng = random.Random(draw(st.integers(0, 2**32)))
    contacts = tuple(make_contact(rng, i, days=days) for i in range(count))
    kinds = [
        draw(st.sampled_from(["birthday", "promotion", "reminder"]))
        for _ in range(draw(st.integers(2, 3)))
    ]
    campaigns = tuple(draw(_campaign(i, kind, days=days)) for i, kind in enumerate(kinds))
    suppressions = []
    for _ in range(rng.randint(0, 3)):
        who = rng.choice(contacts)
        value = who.email if who.email and rng.random() < 0.5 else who.id
        suppressions.append(
            Suppression(
                value=value.lower() if rng.random() < 0.5 else value,
                channel=rng.choice(["email", "letter", "all"]),
                before_run=rng.randrange(len(days)),
            )
        )
    config = Settings(
        root=Path("/nonexistent"),
        sender=Sender(name="Casa Lucía", email="hola@casalucia.example"),
        cadence=draw(_policies()),
        letters=Letters(delivery_days=draw(st.integers(0, 3))),
    )
    return Scenario(config, contacts, campaigns, tuple(days), tuple(suppressions))


# --- running them --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One decision of one run, in the order the runs made them."""

    run: int
    day: date
    event: Decision


def run_all(scenario: Scenario, ledger: Ledger) -> list[Step]:
    """Every run of the scenario, as perform_run does it; the trace of all of them."""
    workspace = Workspace(
        settings=scenario.settings,
        contacts=ContactList(
            path=Path("contacts.csv"),
            contacts=scenario.contacts,
            problems=(),
            rows=len(scenario.contacts),
        ),
        campaigns=scenario.campaigns,
    )
    steps: list[Step] = []

    def tracer(run: int, day: date) -> Callable[[Decision], None]:
        return lambda event: steps.append(Step(run, day, event))

    for run, day in enumerate(scenario.run_days):
        now = datetime.combine(day, time(9, 30), tzinfo=MADRID) + timedelta(seconds=run)
        for entry in scenario.suppressions:
            if entry.before_run == run:
                ledger.suppress(entry.value, channel=entry.channel, source="test", now=now)
        execute_run(
            workspace=workspace,
            store=ledger,
            outlet=CountOnlyOutlet(),
            dates=RunDates(day),
            clock=lambda now=now: now,
            observer=tracer(run, day),
        )
    return steps


# --- the audit's own reading of the design ----------------------------------------------


def policy_of(scenario: Scenario, campaign: Campaign) -> CadencePolicy:
    base = scenario.settings.cadence
    if campaign.cadence is None:
        return base
    changes = {k: v for k, v in campaign.cadence.model_dump().items() if v is not None}
    return base.model_copy(update=changes)


def in_audience(campaign: Campaign, contact: Contact) -> bool:
    wanted, banned = set(campaign.audience.tags_any), set(campaign.audience.tags_none)
    return (not wanted or bool(wanted & contact.tags)) and not (banned & contact.tags)


def windows(
    campaign: Campaign, contact: Contact, day: date, *, ahead: int = 0
) -> dict[str, tuple[date, date]]:
    """occurrence key → (earliest, latest) of the occurrences due on `day`; with `ahead`, also
    those a letter posted `ahead` days before its window may be due for."""
    found: dict[str, tuple[date, date]] = {}
    if campaign.kind == "birthday" and contact.birthday is not None:
        born = contact.birthday
        for year in (day.year - 1, day.year, day.year + 1):
            if year <= born.year:
                continue
            if (born.month, born.day) == (2, 29) and not calendar.isleap(year):
                when = date(year, 2, 28)
            else:
                when = born.replace(year=year)
            found[f"birthday:{year}"] = (
                when - timedelta(days=campaign.days_before),
                when + timedelta(days=campaign.days_after),
            )
    elif campaign.kind == "promotion":
        assert campaign.start is not None and campaign.end is not None
        found["promotion"] = (campaign.start, campaign.end)
    elif campaign.kind == "reminder" and "next_appointment" in contact.extra:
        base = date.fromisoformat(contact.extra["next_appointment"])
        for offset in campaign.offsets:
            send = base + timedelta(days=offset)
            latest = send + timedelta(days=campaign.grace_days)
            if offset < 0:
                latest = min(latest, base)  # never after the appointment
            found[f"reminder:{base.isoformat()}:{offset}"] = (send, latest)
    return {
        key: span for key, span in found.items() if span[0] - timedelta(ahead) <= day <= span[1]
    }


def opted_out(scenario: Scenario, contact: Contact, channel: str, run: int) -> bool:
    if channel in contact.opt_out:
        return True
    names = {contact.id.lower(), (contact.email or "").lower()}
    return any(
        entry.before_run <= run
        and entry.value.lower() in names
        and entry.channel in (channel, "all")
        for entry in scenario.suppressions
    )


@dataclass(frozen=True)
class Sent:
    day: int  # effective date as an ordinal
    essential: bool


def blocking_rules(
    policy: CadencePolicy, *, today: date, day: int, before: list[Sent]
) -> list[str]:
    """Which cadence rules forbid a non-essential message arriving on `day`, given `before`."""
    rules = []
    if WEEKDAYS[today.weekday()] in policy.quiet_weekdays:
        rules.append("quiet day")
    gap = policy.min_gap_days
    if any(abs(day - other.day) < gap for other in before):
        rules.append("min_gap_days")
    span, most = policy.per_days, policy.max_messages
    for start in range(day - span + 1, day + 1):
        inside = sum(1 for other in before if start <= other.day < start + span)
        if inside + 1 > most:
            rules.append("max_messages")
            break
    return rules


# --- the property --------------------------------------------------------------------------


def audit(scenario: Scenario, steps: list[Step], rows: list[MessageRecord]) -> None:
    contacts = {c.id: c for c in scenario.contacts}
    campaigns = {c.name: c for c in scenario.campaigns}
    delivery_days = scenario.settings.letters.delivery_days
    last_day = scenario.run_days[-1]
    assert not [s for s in steps if s.event.outcome in {"bad data", "failed"}]

    # Every occurrence due on a run day (by the audit's own reckoning) is looked at that day,
    # with the window the design gives it; and nothing else is.
    seen: dict[tuple[int, str, str], dict[str, tuple[date, date]]] = defaultdict(dict)
    for step in steps:
        occ = step.event.occurrence
        if occ is not None:
            seen[(step.run, step.event.contact_id, step.event.campaign)][occ.key] = (
                occ.earliest,
                occ.latest,
            )
    # A letter is posted delivery_days before its window: a run looks that far ahead for it.
    letter_channels: dict[tuple[int, str, str, str], set[str | None]] = defaultdict(set)
    for step in steps:
        if step.event.occurrence is not None:
            event = step.event
            where = (step.run, event.contact_id, event.campaign, event.occurrence.key)
            letter_channels[where].add(event.channel)
    due_keys: set[tuple[str, str, str]] = set()
    for run, day in enumerate(scenario.run_days):
        for contact in scenario.contacts:
            for campaign in scenario.campaigns:
                listed = in_audience(campaign, contact)
                expected = windows(campaign, contact, day) if listed else {}
                reach = windows(campaign, contact, day, ahead=delivery_days) if listed else {}
                looked = seen.get((run, contact.id, campaign.name), {})
                where = (run, day, contact.id, campaign.name)
                assert expected.items() <= looked.items() <= reach.items(), where
                for key in looked.keys() - expected.keys():  # only a letter looks ahead
                    channels = letter_channels[(run, contact.id, campaign.name, key)]
                    assert channels <= {"letter", None}, where
                due_keys.update((contact.id, campaign.name, key) for key in looked)

    # Replay the decisions in the order they were made and check each against the policy.
    history: dict[str, list[Sent]] = defaultdict(list)
    sends: Counter[tuple[str, str, str]] = Counter()
    sent_as: dict[tuple[str, str, str], tuple[date, str]] = {}
    for step in steps:
        event = step.event
        if event.outcome not in {"send", "deferred", "skipped"}:
            continue
        contact, campaign = contacts[event.contact_id], campaigns[event.campaign]
        assert event.occurrence is not None
        key = (contact.id, campaign.name, event.occurrence.key)
        if event.outcome == "skipped":
            assert event.reason
            if event.reason.code is Code.OPTED_OUT:
                channel = event.reason.channel or "all"
                assert opted_out(scenario, contact, channel, step.run), (key, event.reason)
            continue
        assert event.channel in CHANNELS
        ahead = timedelta(days=delivery_days if event.channel == "letter" else 0)
        # Posted `ahead` days before its window, a letter arrives inside it.
        assert event.occurrence.earliest <= step.day + ahead <= event.occurrence.latest
        assert not opted_out(scenario, contact, event.channel, step.run), key
        if event.channel == "email":
            assert contact.email
        else:
            assert contact.street and contact.postal_code and contact.city
        arrival = step.day + timedelta(days=delivery_days if event.channel == "letter" else 0)
        arrives = arrival.toordinal()
        rules = blocking_rules(
            policy_of(scenario, campaign), today=step.day, day=arrives, before=history[contact.id]
        )
        if campaign.essential:
            assert event.outcome == "send", (key, event.reason)  # never held back
        elif event.outcome == "send":
            assert rules == [], (key, step.day, rules, history[contact.id])
        else:  # deferred: only when a rule really blocks it, and the reason names that rule
            assert rules, (key, step.day, event.reason)
            assert event.reason is not None and rules[0] in event.reason.text, (rules, event.reason)
        if event.outcome == "send":
            history[contact.id].append(Sent(arrives, campaign.essential))
            sends[key] += 1
            sent_as[key] = (step.day, event.channel)

    assert all(n == 1 for n in sends.values()), sends.most_common(3)

    # The ledger agrees: each send once as `rendered`, everything else due has its reason.
    by_key = {row.key: row for row in rows}
    assert len(by_key) == len(rows)
    rendered = {row.key for row in rows if row.status == "rendered"}
    assert rendered == set(sends)
    for key, (day, channel) in sent_as.items():
        row = by_key[key]
        assert (row.run_date, row.channel) == (day, channel)
        assert row.earliest is not None and row.latest is not None
        arrival = day + timedelta(days=delivery_days if channel == "letter" else 0)
        assert row.earliest <= arrival <= row.latest
        assert row.effective_date == arrival
    for key in due_keys - rendered:
        assert key in by_key, f"{key} was due and left no trace in the ledger"
        row = by_key[key]
        assert row.status in {"deferred", "missed", "skipped"}, row
        assert row.reason, row
        assert row.latest is not None
        if row.status == "deferred":
            assert row.latest >= last_day, row  # a closed window is `missed`, not deferred
        if row.status == "missed" and row.channel == "letter" and "too late" in row.reason:
            # Too late for the post, and no email instead: missed while its window is open.
            assert row.reason.startswith("a letter posted now would arrive too late: "), row
            assert row.run_date + timedelta(days=delivery_days) > row.latest, row
        elif row.status == "missed":
            assert row.latest < last_day, row
            assert row.reason.startswith("window closed while deferred: "), row
    assert {row.key for row in rows} <= due_keys


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same examples on every machine: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_whole_runs_keep_every_promise_of_the_cadence_policy(scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with Ledger.open(Path(folder) / "ledger.sqlite") as ledger:
            steps = run_all(scenario, ledger)
            rows = ledger.messages()
        audit(scenario, steps, rows)


def test_the_audit_sees_a_real_deferral_and_a_miss() -> None:
    """A hand-made scenario: the audit's checks are exercised, not vacuously true."""
    birthday = Campaign(
        name="birthday",
        kind="birthday",
        path=Path("campaigns/birthday.yaml"),
        priority=80,
        days_before=1,
        email=EmailSpec(subject="s", text="t.txt.j2"),
    )
    promotion = Campaign(
        name="promotion",
        kind="promotion",
        path=Path("campaigns/promotion.yaml"),
        priority=40,
        start=date(2026, 3, 9),
        end=date(2026, 3, 11),
        email=EmailSpec(subject="s", text="t.txt.j2"),
    )
    scenario = Scenario(
        settings=Settings(
            root=Path("/nonexistent"),
            sender=Sender(name="Casa Lucía", email="hola@casalucia.example"),
            cadence=CadencePolicy(min_gap_days=7, max_messages=4, per_days=30),
        ),
        contacts=(
            Contact(
                id="C01",
                line=2,
                email="ana@example.com",
                birthday=date(1990, 3, 10),
                email_consent=CONSENT_DAY,
            ),
        ),
        campaigns=(birthday, promotion),
        # Mon 9 March: birthday (window 9-10) goes, the promotion (9-11) is deferred on the
        # 9th and the 11th, then missed on the 12th.
        run_days=(date(2026, 3, 9), date(2026, 3, 11), date(2026, 3, 12)),
        suppressions=(),
    )
    with (
        tempfile.TemporaryDirectory() as folder,
        Ledger.open(Path(folder) / "ledger.sqlite") as ledger,
    ):
        steps = run_all(scenario, ledger)
        rows = ledger.messages()
    audit(scenario, steps, rows)
    assert [
        (s.day.day, s.event.campaign, s.event.outcome) for s in steps if s.event.occurrence
    ] == [
        (9, "birthday", "send"),
        (9, "promotion", "deferred"),
        (11, "promotion", "deferred"),
    ]
    statuses = {row.campaign: (row.status, row.reason) for row in rows}
    assert statuses == {
        "birthday": ("rendered", None),
        "promotion": (
            "missed",
            "window closed while deferred: birthday on 2026-03-09 is 2 days before; min_gap_days 7",
        ),
    }
