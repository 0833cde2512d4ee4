"""The cadence policy: hand-worked scenarios, quiet hours, and properties over random runs."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.model.campaigns import CadenceOverride
from outreach.model.config import WEEKDAYS, CadencePolicy
from outreach.rules.arrival import effective_date
from outreach.rules.cadence import (
    Candidate,
    Decision,
    PastMessage,
    decide,
    in_quiet_hours,
    is_missed,
    next_send_time,
)

MADRID = ZoneInfo("Europe/Madrid")
WEDNESDAY = date(2026, 11, 25)
SUNDAY = date(2026, 11, 22)
POLICY = CadencePolicy(min_gap_days=7, max_messages=4, per_days=30, quiet_weekdays=("sun",))


def candidate(
    campaign: str,
    *,
    today: date = WEDNESDAY,
    priority: int = 50,
    essential: bool = False,
    channel: str = "email",
    key: str | None = None,
    latest: date | None = None,
    policy: CadencePolicy = POLICY,
    delivery_days: int = 2,
    contact_id: str = "c1",
) -> Candidate:
    return Candidate(
        contact_id=contact_id,
        campaign=campaign,
        occurrence_key=key or campaign,
        priority=priority,
        essential=essential,
        channel=channel,
        latest=latest or today + timedelta(days=5),
        effective_date=effective_date(channel, day=today, delivery_days=delivery_days),
        policy=policy,
    )


def past(day: date, campaign: str = "earlier", *, essential: bool = False) -> PastMessage:
    return PastMessage(effective_date=day, campaign=campaign, essential=essential)


def actions(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.candidate.campaign, d.action) for d in decisions]


# --- hand-worked scenarios -------------------------------------------------------------


def test_birthday_colliding_with_promotion_higher_priority_goes() -> None:
    # Both are emails on Wednesday 2026-11-25. The birthday (80) outranks the promotion (50),
    # so it goes first; the promotion then finds the birthday 0 days away, and 0 < 7.
    promotion = candidate("promotion", priority=50)
    birthday = candidate("birthday", priority=80)
    decisions = decide(candidates=[promotion, birthday], history=[], today=WEDNESDAY)
    assert actions(decisions) == [("birthday", "send"), ("promotion", "defer")]
    deferred = decisions[1]
    assert deferred.reason == "birthday on 2026-11-25 is the same day; min_gap_days 7"
    assert deferred.blocked_by == past(WEDNESDAY, "birthday")
    assert decisions[0].reason is None
    assert decisions[0].blocked_by is None


def test_equal_priority_the_window_closing_first_goes() -> None:
    # Same priority: "later" closes on 11-30, "soon" on 11-26, so "soon" goes although
    # "later" sorts first by name.
    later = candidate("a-later", latest=date(2026, 11, 30))
    soon = candidate("z-soon", latest=date(2026, 11, 26))
    decisions = decide(candidates=[later, soon], history=[], today=WEDNESDAY)
    assert actions(decisions) == [("z-soon", "send"), ("a-later", "defer")]


def test_equal_priority_and_window_fall_back_to_campaign_then_key() -> None:
    gapless = CadencePolicy(min_gap_days=0, max_messages=1, per_days=1)
    first = candidate("alpha", key="k2", policy=gapless)
    second = candidate("alpha", key="k1", policy=gapless)
    third = candidate("beta", key="k0", policy=gapless)
    decisions = decide(candidates=[third, first, second], history=[], today=WEDNESDAY)
    assert [(d.candidate.occurrence_key, d.action) for d in decisions] == [
        ("k1", "send"),
        ("k2", "defer"),
        ("k0", "defer"),
    ]


def test_two_campaigns_same_day_both_go_when_gap_is_zero_and_max_allows() -> None:
    relaxed = CadencePolicy(min_gap_days=0, max_messages=2, per_days=30)
    decisions = decide(
        candidates=[candidate("a", policy=relaxed), candidate("b", policy=relaxed)],
        history=[],
        today=WEDNESDAY,
    )
    assert actions(decisions) == [("a", "send"), ("b", "send")]


def test_two_campaigns_same_day_gap_zero_but_max_one() -> None:
    # min_gap 0 lets them share a day, but max_messages 1 per 30 days does not. The only
    # window start is 11-25 - 29 days = 10-27, so the window is 10-27..11-25 holding "a".
    strict = CadencePolicy(min_gap_days=0, max_messages=1, per_days=30)
    decisions = decide(
        candidates=[candidate("b", policy=strict), candidate("a", policy=strict)],
        history=[],
        today=WEDNESDAY,
    )
    assert actions(decisions) == [("a", "send"), ("b", "defer")]
    assert decisions[1].reason == (
        "1 message in the 30 days 2026-10-27 to 2026-11-25 (max_messages 1)"
    )
    assert decisions[1].blocked_by is None


def test_a_letter_arriving_in_two_days_blocks_an_email_today() -> None:
    # A letter printed today (Wednesday) with delivery_days 2 arrives Friday 11-27, 2 days
    # after today's email. With min_gap_days 3, 2 < 3 blocks; with 2, 2 is not < 2: it goes.
    letter_arrival = past(date(2026, 11, 27), "birthday")
    gap3 = CadencePolicy(min_gap_days=3)
    gap2 = CadencePolicy(min_gap_days=2)
    [blocked] = decide(
        candidates=[candidate("promotion", policy=gap3)], history=[letter_arrival], today=WEDNESDAY
    )
    assert blocked.action == "defer"
    assert blocked.reason == "birthday on 2026-11-27 is 2 days after; min_gap_days 3"
    assert blocked.blocked_by == letter_arrival
    [sent] = decide(
        candidates=[candidate("promotion", policy=gap2)], history=[letter_arrival], today=WEDNESDAY
    )
    assert sent.action == "send"


def test_a_letter_candidate_counts_at_its_arrival_date() -> None:
    # The letter printed today (11-25) arrives 11-27. An email sent 11-20 is 7 days before
    # the arrival: not < 7, so it goes. An email sent 11-21 is 6 days before: deferred.
    letter = candidate("birthday", channel="letter")
    assert letter.effective_date == date(2026, 11, 27)
    [ok] = decide(candidates=[letter], history=[past(date(2026, 11, 20))], today=WEDNESDAY)
    assert ok.action == "send"
    [held] = decide(candidates=[letter], history=[past(date(2026, 11, 21))], today=WEDNESDAY)
    assert held.action == "defer"
    assert held.reason == (
        "earlier on 2026-11-21 is 6 days before this letter's arrival on 2026-11-27; min_gap_days 7"
    )


def test_an_accepted_letter_blocks_a_later_email_in_the_same_run() -> None:
    # The birthday letter (priority 80) goes first and will arrive 11-27; the promotion
    # email today is 2 days before that arrival: 2 < 7, deferred naming the letter.
    letter = candidate("birthday", channel="letter", priority=80)
    email = candidate("promotion", priority=50)
    decisions = decide(candidates=[email, letter], history=[], today=WEDNESDAY)
    assert actions(decisions) == [("birthday", "send"), ("promotion", "defer")]
    assert decisions[1].blocked_by == past(date(2026, 11, 27), "birthday")
    assert decisions[1].reason == "birthday on 2026-11-27 is 2 days after; min_gap_days 7"


def test_quiet_sunday_defers_and_monday_sends() -> None:
    [sunday] = decide(candidates=[candidate("promo", today=SUNDAY)], history=[], today=SUNDAY)
    assert sunday.action == "defer"
    assert sunday.reason == "quiet day (sun)"
    assert sunday.blocked_by is None
    monday = SUNDAY + timedelta(days=1)
    [sent] = decide(candidates=[candidate("promo", today=monday)], history=[], today=monday)
    assert sent.action == "send"


def test_quiet_weekday_comes_from_the_campaign_override() -> None:
    override = CadenceOverride(quiet_weekdays=("Wednesday",)).apply(POLICY)
    assert override.quiet_weekdays == ("wed",)
    [held] = decide(candidates=[candidate("p", policy=override)], history=[], today=WEDNESDAY)
    assert held.reason == "quiet day (wed)"


def test_essential_goes_on_a_quiet_day_and_says_why() -> None:
    # An appointment reminder for Monday must go on Sunday; cadence is explained, not applied.
    reminder = candidate("appointment", today=SUNDAY, essential=True)
    [decision] = decide(candidates=[reminder], history=[], today=SUNDAY)
    assert decision.action == "send"
    assert decision.reason == "essential, sent despite: quiet day (sun)"
    assert decision.blocked_by is None


def test_essential_goes_despite_a_recent_message_and_full_window() -> None:
    history = [past(WEDNESDAY - timedelta(days=d)) for d in (1, 8, 15, 22)]
    [decision] = decide(
        candidates=[candidate("appointment", essential=True)], history=history, today=WEDNESDAY
    )
    assert decision.action == "send"
    assert decision.reason == (
        "essential, sent despite: earlier on 2026-11-24 is 1 day before; min_gap_days 7"
    )


def test_essential_is_decided_first_and_counts_toward_pressure() -> None:
    # The promotion outranks the reminder, but the reminder goes anyway, so it is decided
    # first and the promotion, on the same day, must then wait.
    promotion = candidate("promotion", priority=90)
    reminder = candidate("appointment", priority=10, essential=True)
    decisions = decide(candidates=[promotion, reminder], history=[], today=WEDNESDAY)
    assert actions(decisions) == [("appointment", "send"), ("promotion", "defer")]
    assert decisions[1].blocked_by == past(WEDNESDAY, "appointment", essential=True)


def test_an_essential_in_history_blocks_the_next_message() -> None:
    sent_reminder = past(WEDNESDAY - timedelta(days=3), "appointment", essential=True)
    [held] = decide(candidates=[candidate("promo")], history=[sent_reminder], today=WEDNESDAY)
    assert held.action == "defer"
    assert held.blocked_by == sent_reminder
    assert held.reason == "appointment on 2026-11-22 is 3 days before; min_gap_days 7"


def test_a_deferred_candidate_does_not_block_the_next() -> None:
    # History 5 days ago. "strict" (priority 90, min_gap 10) is held back by it; "loose"
    # (priority 10, min_gap 3) is 5 >= 3 away from it and nothing else was accepted.
    history = [past(WEDNESDAY - timedelta(days=5))]
    strict = candidate("strict", priority=90, policy=CadencePolicy(min_gap_days=10))
    loose = candidate("loose", priority=10, policy=CadencePolicy(min_gap_days=3))
    decisions = decide(candidates=[loose, strict], history=history, today=WEDNESDAY)
    assert actions(decisions) == [("strict", "defer"), ("loose", "send")]


def test_the_nearest_blocking_message_is_named_and_the_earlier_wins_a_tie() -> None:
    before = past(WEDNESDAY - timedelta(days=3), "before")
    after = past(WEDNESDAY + timedelta(days=3), "after")
    closer_after = past(WEDNESDAY + timedelta(days=2), "closer")
    [tie] = decide(candidates=[candidate("p")], history=[after, before], today=WEDNESDAY)
    assert tie.blocked_by == before
    [near] = decide(
        candidates=[candidate("p")], history=[before, after, closer_after], today=WEDNESDAY
    )
    assert near.blocked_by == closer_after
    assert near.reason == "closer on 2026-11-27 is 2 days after; min_gap_days 7"


def test_min_gap_edges() -> None:
    # min_gap_days 7: a message exactly 7 days away is fine, 6 days away is not, both ways.
    for offset, expected in ((-7, "send"), (-6, "defer"), (6, "defer"), (7, "send")):
        history = [past(WEDNESDAY + timedelta(days=offset))]
        [decision] = decide(candidates=[candidate("p")], history=history, today=WEDNESDAY)
        assert decision.action == expected, offset
    # min_gap_days 1 only forbids the same day.
    one = CadencePolicy(min_gap_days=1, max_messages=10)
    for offset, expected in ((-1, "send"), (0, "defer"), (1, "send")):
        history = [past(WEDNESDAY + timedelta(days=offset))]
        [decision] = decide(
            candidates=[candidate("p", policy=one)], history=history, today=WEDNESDAY
        )
        assert decision.action == expected, offset


# Max-messages windows. Policy: no gap, at most 2 messages in any 10 consecutive days.
# History on D (Monday 2026-03-02) and D+5 (2026-03-07). A window of 10 days is [s, s+9].
#  - candidate D+9: window [D, D+9] holds D, D+5 and it → 3 > 2: defer; the only start
#    considered first is D+9-9 = D, so the reason names 2026-03-02 to 2026-03-11.
#  - candidate D+10: windows [D+1 .. D+10] ... [D+10 .. D+19]; the fullest, [D+1, D+10],
#    holds D+5 and it → 2: send. D has just left the window: the exact per_days boundary.
#  - candidate D-4: window [D-4, D+5] holds D, D+5 and it → 3: defer; earlier windows
#    [D-13, D-4] .. [D-5, D+4] hold at most D. Reason: 2026-02-26 to 2026-03-07.
#  - candidate D-5: the latest window containing it is [D-5, D+4], holding only D → send.
#  - candidate D+3: [D-6, D+3] holds only D, but [D-4, D+5] .. [D+3, D+12] hold D+5 and
#    (for the first few) D → [D-4, D+5] first reaches 3: defer with 2026-02-26 to 2026-03-07.
D = date(2026, 3, 2)
WINDOW = CadencePolicy(min_gap_days=0, max_messages=2, per_days=10)


@pytest.mark.parametrize(
    ("offset", "action", "reason"),
    [
        (9, "defer", "2 messages in the 10 days 2026-03-02 to 2026-03-11 (max_messages 2)"),
        (10, "send", None),
        (-4, "defer", "2 messages in the 10 days 2026-02-26 to 2026-03-07 (max_messages 2)"),
        (-5, "send", None),
        (3, "defer", "2 messages in the 10 days 2026-02-26 to 2026-03-07 (max_messages 2)"),
    ],
)
def test_max_messages_window_edges(offset: int, action: str, reason: str | None) -> None:
    today = D + timedelta(days=offset)
    history = [past(D, "first"), past(D + timedelta(days=5), "second")]
    [decision] = decide(
        candidates=[candidate("p", today=today, policy=WINDOW)], history=history, today=today
    )
    assert (decision.action, decision.reason) == (action, reason)
    assert decision.blocked_by is None


def test_per_days_one_is_a_daily_limit() -> None:
    daily = CadencePolicy(min_gap_days=0, max_messages=1, per_days=1)
    [same] = decide(
        candidates=[candidate("p", policy=daily)], history=[past(WEDNESDAY)], today=WEDNESDAY
    )
    assert same.reason == "1 message in the 1 day 2026-11-25 to 2026-11-25 (max_messages 1)"
    [next_day] = decide(
        candidates=[candidate("p", policy=daily)],
        history=[past(WEDNESDAY - timedelta(days=1))],
        today=WEDNESDAY,
    )
    assert next_day.action == "send"


def test_history_later_than_the_candidate_counts_in_the_window() -> None:
    # Letters already printed arrive after today: four of them in the next 30 days fill
    # the window [11-25, 12-24] that also holds today's email.
    relaxed = CadencePolicy(min_gap_days=0, max_messages=4, per_days=30)
    history = [past(WEDNESDAY + timedelta(days=d)) for d in (3, 10, 20, 29)]
    [held] = decide(candidates=[candidate("p", policy=relaxed)], history=history, today=WEDNESDAY)
    assert held.reason == "4 messages in the 30 days 2026-11-25 to 2026-12-24 (max_messages 4)"
    later = [past(WEDNESDAY + timedelta(days=d)) for d in (3, 10, 20, 30)]
    [sent] = decide(candidates=[candidate("p", policy=relaxed)], history=later, today=WEDNESDAY)
    assert sent.action == "send"


def test_no_candidates_and_mixed_contacts() -> None:
    assert decide(candidates=[], history=[past(WEDNESDAY)], today=WEDNESDAY) == []
    with pytest.raises(ValueError, match="one contact"):
        decide(
            candidates=[candidate("a"), candidate("b", contact_id="c2")],
            history=[],
            today=WEDNESDAY,
        )


def test_effective_date_and_is_missed() -> None:
    assert effective_date("email", day=WEDNESDAY, delivery_days=2) == WEDNESDAY
    assert effective_date("letter", day=WEDNESDAY, delivery_days=2) == date(2026, 11, 27)
    assert effective_date("letter", day=WEDNESDAY, delivery_days=0) == WEDNESDAY
    assert not is_missed(WEDNESDAY, WEDNESDAY)
    assert is_missed(WEDNESDAY, WEDNESDAY + timedelta(days=1))
    assert not is_missed(WEDNESDAY, WEDNESDAY - timedelta(days=1))


# --- quiet hours -----------------------------------------------------------------------

NIGHT = CadencePolicy(quiet_hours="21:00-09:00")
LUNCH = CadencePolicy(quiet_hours="12:00-14:00")


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, micro, tzinfo=MADRID)


@pytest.mark.parametrize(
    ("moment", "quiet"),
    [
        (at(20, 59, 59, 999999), False),
        (at(21, 0), True),
        (at(23, 59, 59), True),
        (at(0, 0), True),
        (at(8, 59, 59, 999999), True),
        (at(9, 0), False),
        (at(12, 0), False),
    ],
)
def test_quiet_hours_across_midnight(moment: datetime, quiet: bool) -> None:
    assert in_quiet_hours(NIGHT, now=moment) is quiet


@pytest.mark.parametrize(
    ("moment", "quiet"),
    [(at(11, 59), False), (at(12, 0), True), (at(13, 59), True), (at(14, 0), False)],
)
def test_quiet_hours_within_a_day(moment: datetime, quiet: bool) -> None:
    assert in_quiet_hours(LUNCH, now=moment) is quiet


def test_no_quiet_hours_and_an_empty_range() -> None:
    assert not in_quiet_hours(CadencePolicy(), now=at(3))
    empty = CadencePolicy(quiet_hours="09:00-09:00")
    assert not any(in_quiet_hours(empty, now=at(hour)) for hour in range(24))


def test_quiet_hours_need_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        in_quiet_hours(NIGHT, now=datetime(2026, 11, 24, 22, 0))


def test_next_send_time() -> None:
    assert next_send_time(NIGHT, now=at(10, 15)) == at(10, 15)
    assert next_send_time(NIGHT, now=at(22, 30)) == at(9, 0, day=25)
    assert next_send_time(NIGHT, now=at(21, 0)) == at(9, 0, day=25)
    assert next_send_time(NIGHT, now=at(3, 0)) == at(9, 0)
    assert next_send_time(LUNCH, now=at(12, 30)) == at(14, 0)
    assert next_send_time(CadencePolicy(), now=at(23)) == at(23)
    assert next_send_time(NIGHT, now=at(22, 30)).tzinfo is MADRID


def test_next_send_time_over_a_skipped_wall_time() -> None:
    # Madrid skips 02:00-03:00 on 2026-03-29: quiet hours ending at 02:30 end at 03:30 CEST,
    # the same instant as 02:30 would have been in CET.
    policy = CadencePolicy(quiet_hours="01:00-02:30")
    resumes = next_send_time(policy, now=datetime(2026, 3, 29, 1, 30, tzinfo=MADRID))
    assert resumes == datetime(2026, 3, 29, 3, 30, tzinfo=MADRID)
    assert resumes.utcoffset() == timedelta(hours=2)


# --- properties ------------------------------------------------------------------------

BASE = date(2026, 6, 1)

policies = st.builds(
    CadencePolicy,
    min_gap_days=st.integers(0, 10),
    max_messages=st.integers(1, 5),
    per_days=st.integers(1, 40),
    quiet_weekdays=st.lists(st.sampled_from(WEEKDAYS), max_size=3, unique=True).map(tuple),
)


@st.composite
def runs(
    draw: st.DrawFn, *, one_policy: bool = False, essentials: bool = True
) -> tuple[date, list[Candidate], list[PastMessage]]:
    today = BASE + timedelta(days=draw(st.integers(0, 6)))
    shared = draw(policies)
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from("abcde"),
                st.sampled_from(("k1", "k2")),
                st.integers(0, 3),  # priority: few values, so ties are common
                st.booleans() if essentials else st.just(False),
                st.sampled_from(("email", "letter")),
                st.integers(0, 4),  # latest, days after today
                st.integers(0, 3),  # letters.delivery_days
                st.just(shared) if one_policy else policies,
            ),
            max_size=6,
            unique_by=lambda spec: (spec[0], spec[1]),
        )
    )
    candidates = [
        Candidate(
            contact_id="c1",
            campaign=name,
            occurrence_key=key,
            priority=priority,
            essential=essential,
            channel=channel,
            latest=today + timedelta(days=latest),
            effective_date=effective_date(channel, day=today, delivery_days=delivery),
            policy=policy,
        )
        for name, key, priority, essential, channel, latest, delivery, policy in specs
    ]
    history = draw(
        st.lists(
            st.builds(
                PastMessage,
                effective_date=st.integers(-60, 5).map(lambda d: today + timedelta(days=d)),
                campaign=st.sampled_from(("old", "a", "b")),
                essential=st.booleans() if essentials else st.just(False),
            ),
            max_size=12,
        )
    )
    return today, candidates, history


def in_window(days: list[date], start: date, span: int) -> int:
    return sum(start <= d < start + timedelta(days=span) for d in days)


def windows_around(day: date, span: int) -> list[date]:
    return [day - timedelta(days=back) for back in range(span)]


@settings(max_examples=100, deadline=None)
@given(runs())
def test_every_send_respects_the_rules_against_what_came_before(
    run: tuple[date, list[Candidate], list[PastMessage]],
) -> None:
    # Each candidate's own policy governs it, against history and earlier decisions (a
    # later candidate with a looser override is checked by its own policy in turn).
    today, candidates, history = run
    decisions = decide(candidates=candidates, history=history, today=today)
    assert sorted(map(id, (d.candidate for d in decisions))) == sorted(map(id, candidates))
    landed = [m.effective_date for m in history]
    for decision in decisions:
        cand, policy = decision.candidate, decision.candidate.policy
        if decision.action == "defer":
            assert not cand.essential
            assert decision.reason
            continue
        if not cand.essential:
            assert WEEKDAYS[today.weekday()] not in policy.quiet_weekdays
            gap = policy.min_gap_days
            assert all(abs((d - cand.effective_date).days) >= gap for d in landed)
            for start in windows_around(cand.effective_date, policy.per_days):
                assert in_window(landed, start, policy.per_days) + 1 <= policy.max_messages
        landed.append(cand.effective_date)


def respecting(history: list[PastMessage], policy: CadencePolicy) -> list[PastMessage]:
    """Keep, in date order, the messages that break neither min_gap nor max_messages."""
    kept: list[PastMessage] = []
    for message in sorted(history, key=lambda m: m.effective_date):
        days = [m.effective_date for m in kept]
        day = message.effective_date
        if any(abs((d - day).days) < policy.min_gap_days for d in days):
            continue
        if any(
            in_window(days, start, policy.per_days) + 1 > policy.max_messages
            for start in windows_around(day, policy.per_days)
        ):
            continue
        kept.append(message)
    return kept


@settings(max_examples=100, deadline=None)
@given(runs(one_policy=True, essentials=False))
def test_with_one_policy_the_result_respects_it_everywhere(
    run: tuple[date, list[Candidate], list[PastMessage]],
) -> None:
    today, candidates, raw_history = run
    policy = candidates[0].policy if candidates else CadencePolicy()
    history = respecting(raw_history, policy)
    decisions = decide(candidates=candidates, history=history, today=today)
    sends = [d.candidate.effective_date for d in decisions if d.action == "send"]
    everything = sorted([m.effective_date for m in history] + sends)
    for i, send in enumerate(sends):
        others = [d for j, d in enumerate(sends) if j != i] + [m.effective_date for m in history]
        assert all(abs((d - send).days) >= policy.min_gap_days for d in others)
    first, last = (everything[0], everything[-1]) if everything else (today, today)
    for offset in range(-policy.per_days, (last - first).days + 1):
        start = first + timedelta(days=offset)
        assert in_window(everything, start, policy.per_days) <= policy.max_messages
    if WEEKDAYS[today.weekday()] in policy.quiet_weekdays:
        assert not sends


@settings(max_examples=80, deadline=None)
@given(runs(), st.randoms(use_true_random=False))
def test_decide_is_deterministic_and_ignores_input_order(
    run: tuple[date, list[Candidate], list[PastMessage]], shuffler: random.Random
) -> None:
    today, candidates, history = run
    expected = decide(candidates=candidates, history=history, today=today)
    assert decide(candidates=candidates, history=history, today=today) == expected
    shuffled_candidates, shuffled_history = list(candidates), list(history)
    shuffler.shuffle(shuffled_candidates)
    shuffler.shuffle(shuffled_history)
    assert decide(candidates=shuffled_candidates, history=shuffled_history, today=today) == (
        expected
    )


def brute_force(
    candidates: list[Candidate], history: list[PastMessage], today: date
) -> list[tuple[str, str, PastMessage | None, str | None]]:
    """The rules read literally: every message, every window start, no bisection."""
    order = sorted(
        candidates,
        key=lambda c: (not c.essential, -c.priority, c.latest, c.campaign, c.occurrence_key),
    )
    seen = sorted(history, key=lambda m: (m.effective_date, m.campaign, m.essential))
    out: list[tuple[str, str, PastMessage | None, str | None]] = []
    for cand in order:
        policy, day = cand.policy, cand.effective_date
        blocker: PastMessage | None = None
        window: str | None = None
        quiet = WEEKDAYS[today.weekday()] in policy.quiet_weekdays
        near = [m for m in seen if abs((m.effective_date - day).days) < policy.min_gap_days]
        if near:
            # nearest; the earlier on a tie; the first in sorted order on the same date
            blocker = min(
                near, key=lambda m: (abs((m.effective_date - day).days), m.effective_date)
            )
        days = [m.effective_date for m in seen]
        counts = [
            (in_window(days, start, policy.per_days), start)
            for start in reversed(windows_around(day, policy.per_days))
        ]
        fullest = max(count for count, _ in counts)
        if fullest + 1 > policy.max_messages:
            start = next(start for count, start in counts if count == fullest)
            window = f"{start.isoformat()} to "
            window += (start + timedelta(days=policy.per_days - 1)).isoformat()
        blocked = quiet or blocker is not None or window is not None
        if blocked and not cand.essential:
            if quiet:
                out.append((cand.campaign, "defer", None, None))
            elif blocker is not None:
                out.append((cand.campaign, "defer", blocker, None))
            else:
                out.append((cand.campaign, "defer", None, window))
            continue
        out.append((cand.campaign, "send", None, None))
        seen = sorted(
            [*seen, PastMessage(day, cand.campaign, cand.essential)],
            key=lambda m: (m.effective_date, m.campaign, m.essential),
        )
    return out


@settings(max_examples=100, deadline=None)
@given(runs())
def test_decide_agrees_with_a_brute_force_reading_of_the_rules(
    run: tuple[date, list[Candidate], list[PastMessage]],
) -> None:
    today, candidates, history = run
    decisions = decide(candidates=candidates, history=history, today=today)
    expected = brute_force(candidates, history, today)
    assert [(d.candidate.campaign, d.action, d.blocked_by) for d in decisions] == [
        (campaign, action, blocker) for campaign, action, blocker, _ in expected
    ]
    for decision, (_, _, _, window) in zip(decisions, expected, strict=True):
        if window is not None:
            assert decision.reason is not None
            assert window in decision.reason
