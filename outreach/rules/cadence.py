"""The cadence policy: which of a contact's due messages go today, and which wait.

Pure decisions over plain records: the runner gives one contact's candidates and the
contact's history (from the ledger), and gets back a `Decision` per candidate. Dates are
*effective* dates, the day a message reaches the contact: the run date for an email, the
expected arrival for a letter, so an email and a letter never land together.

Rules, for each candidate in decision order (see `_decision_order`):

* An essential candidate (an appointment reminder) is always sent: a reminder for
  tomorrow's appointment must go, even on a quiet weekday or right after a promotion. It
  still counts toward the contact's pressure, so essentials are decided first and the
  other candidates of the run see them.
* A non-essential candidate is deferred on a quiet weekday (of today); when any message
  already sent, rendered or accepted in this run lands less than `min_gap_days` from its
  effective date, before or after; or when, counting it, some window of `per_days`
  consecutive days around its effective date would hold more than `max_messages`.
* Each accepted candidate joins the history for the candidates after it.

Quiet hours are not part of `decide`: they say when SMTP may hand over email, which
`in_quiet_hours` and `next_send_time` answer.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal

from outreach.model.config import WEEKDAYS, CadencePolicy
from outreach.model.reasons import (
    CROWDED,
    ESSENTIAL_DESPITE,
    GAP_AFTER,
    GAP_AFTER_LETTER,
    GAP_BEFORE,
    GAP_BEFORE_LETTER,
    GAP_SAME_DAY,
    GAP_SAME_DAY_LETTER,
    QUIET_DAY,
    QUIET_HOURS,
    SPAN,
    Code,
)

if TYPE_CHECKING:
    from outreach.model.campaigns import Campaign
    from outreach.model.config import Settings

Action = Literal["send", "defer"]


@dataclass(frozen=True, slots=True)
class PastMessage:
    """A message already rendered or sent to the contact (from the ledger)."""

    effective_date: date
    campaign: str
    essential: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """An occurrence due today for one contact, already past audience and opt-out checks."""

    contact_id: str
    campaign: str
    occurrence_key: str
    priority: int
    essential: bool
    channel: str  # 'email' | 'letter'
    latest: date  # the occurrence window's last day
    effective_date: date  # today for email, today + letters.delivery_days for letters
    policy: CadencePolicy  # the campaign's effective policy (config + override)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one candidate today, and why.

    For a deferral `reason` says which rule held it back and `blocked_by` names the
    message that was too close (None for a quiet day or a full window). For a send
    `reason` is None, except for an essential message, where it names the rule that
    would otherwise have deferred it.
    """

    candidate: Candidate
    action: Action
    reason: str | None
    blocked_by: PastMessage | None
    code: Code | None = None  # the rule, as data: quiet_day, min_gap, max_messages


def policy_for(settings: Settings, campaign: Campaign) -> CadencePolicy:
    """The cadence policy of a campaign: config's, with the campaign's overrides."""
    return campaign.cadence.apply(settings.cadence) if campaign.cadence else settings.cadence


def reach(settings: Settings, campaigns: Sequence[Campaign]) -> int:
    """How many days back a message can still weigh on a decision, under any campaign's policy."""
    policies = [policy_for(settings, c) for c in campaigns] or [settings.cadence]
    return max(max(p.per_days, p.min_gap_days) for p in policies)


def first_open_day(policy: CadencePolicy, *, start: date, end: date) -> date:
    """The first day from `start` to `end` that is not a quiet weekday (else `start`)."""
    day = start
    while day <= end:
        if WEEKDAYS[day.weekday()] not in policy.quiet_weekdays:
            return day
        day += timedelta(days=1)
    return start


def is_missed(latest: date, today: date) -> bool:
    """Whether an occurrence's window closed before today (it is never sent late)."""
    return today > latest


def _decision_order(candidate: Candidate) -> tuple[bool, int, date, str, str, str, date]:
    # Essentials first (they go anyway and must count for the others), then higher
    # priority, then the window that closes first; the rest only makes ties deterministic.
    return (
        not candidate.essential,
        -candidate.priority,
        candidate.latest,
        candidate.campaign,
        candidate.occurrence_key,
        candidate.channel,
        candidate.effective_date,
    )


def _history_order(message: PastMessage) -> tuple[date, str, bool]:
    return (message.effective_date, message.campaign, message.essential)


def _gap_reason(blocker: PastMessage, candidate: Candidate, distance: int, gap: int) -> str:
    letter = candidate.channel == "letter"
    if distance == 0:
        said = GAP_SAME_DAY_LETTER if letter else GAP_SAME_DAY
    elif distance < 0:
        said = GAP_BEFORE_LETTER if letter else GAP_BEFORE
    else:
        said = GAP_AFTER_LETTER if letter else GAP_AFTER
    return said.english(
        campaign=blocker.campaign,
        day=blocker.effective_date.isoformat(),
        span=SPAN.english(n=abs(distance)),
        arrival=candidate.effective_date.isoformat(),
        gap=gap,
    )


class _Pressure:
    """The contact's messages as sorted day ordinals, so each rule is a few bisections."""

    __slots__ = ("days", "messages")

    def __init__(self, history: Sequence[PastMessage]) -> None:
        if len(history) > 1:
            self.messages = sorted(history, key=_history_order)
        else:
            self.messages = list(history)
        self.days = [message.effective_date.toordinal() for message in self.messages]

    def add(self, message: PastMessage, day: int) -> None:
        # In full history order, so which message a reason names never depends on the run.
        index = bisect_right(self.messages, _history_order(message), key=_history_order)
        self.days.insert(index, day)
        self.messages.insert(index, message)

    def too_close(self, day: int, gap: int) -> tuple[PastMessage, int] | None:
        """The nearest message less than `gap` days from `day` (earlier wins a tie)."""
        days = self.days
        if gap <= 0 or not days:
            return None
        low = bisect_left(days, day - gap + 1)
        high = bisect_left(days, day + gap)
        if low == high:
            return None
        split = bisect_left(days, day, low, high)  # first message on or after `day`
        after = days[split] - day if split < high else gap
        before = day - days[split - 1] if split > low else gap
        if before <= after:
            # The first of that day's messages in history order, so the name is stable.
            index = bisect_left(days, day - before, low, split)
            return self.messages[index], -before
        return self.messages[split], after

    def crowded(self, day: int, *, most: int, span: int) -> tuple[int, int] | None:
        """(count, start) of the fullest `span`-day window around `day` if one more overflows."""
        days = self.days
        if len(days) < most:  # the common case, no bisection needed
            return None
        low = bisect_left(days, day - span + 1)
        high = bisect_right(days, day + span - 1)
        if high - low < most:  # even every message near `day` in one window leaves room
            return None
        # A window's count only rises when its end reaches a message, so the fullest window
        # starts at the earliest start or just where its end meets a message after `day`.
        starts = [day - span + 1]
        starts.extend(d - span + 1 for d in days[bisect_right(days, day, low, high) : high])
        best_count, best_start = -1, starts[0]
        for start in starts:
            count = bisect_right(days, start + span - 1, low, high) - bisect_left(
                days, start, low, high
            )
            if count > best_count:
                best_count, best_start = count, start
        if best_count + 1 > most:
            return best_count, best_start
        return None


def _blocking_rule(
    candidate: Candidate, *, pressure: _Pressure, day: int, today: date
) -> tuple[str, PastMessage | None, Code] | None:
    """Why cadence would hold this candidate back, or None."""
    policy = candidate.policy
    weekday = WEEKDAYS[today.weekday()]
    if weekday in policy.quiet_weekdays:
        return QUIET_DAY.english(weekday=weekday), None, Code.QUIET_DAY
    close = pressure.too_close(day, policy.min_gap_days)
    if close is not None:
        blocker, distance = close
        reason = _gap_reason(blocker, candidate, distance, policy.min_gap_days)
        return reason, blocker, Code.MIN_GAP
    crowd = pressure.crowded(day, most=policy.max_messages, span=policy.per_days)
    if crowd is not None:
        count, start = crowd
        first = date.fromordinal(start)
        last = date.fromordinal(start + policy.per_days - 1)
        detail = CROWDED.english(
            n=count,
            period=SPAN.english(n=policy.per_days),
            first=first.isoformat(),
            last=last.isoformat(),
            most=policy.max_messages,
        )
        return detail, None, Code.MAX_MESSAGES
    return None


def decide(
    *, candidates: Sequence[Candidate], history: Sequence[PastMessage], today: date
) -> list[Decision]:
    """Send or defer each of one contact's candidates today, in decision order."""
    if not candidates:
        return []
    ordered = candidates
    if len(candidates) > 1:
        contact_id = candidates[0].contact_id
        if any(candidate.contact_id != contact_id for candidate in candidates):
            # Mixing contacts would let one contact's messages crowd out another's.
            raise ValueError("decide() takes one contact's candidates")  # not translated: a bug
        ordered = sorted(candidates, key=_decision_order)
    pressure = _Pressure(history)
    decisions: list[Decision] = []
    final = len(ordered) - 1
    for index, candidate in enumerate(ordered):
        day = candidate.effective_date.toordinal()
        rule = _blocking_rule(candidate, pressure=pressure, day=day, today=today)
        if candidate.essential:
            if rule is None:
                decisions.append(Decision(candidate, "send", None, None))
            else:
                reason = ESSENTIAL_DESPITE.english(rule=rule[0])
                decisions.append(Decision(candidate, "send", reason, None, Code.ESSENTIAL_OVERRIDE))
        elif rule is not None:
            decisions.append(Decision(candidate, "defer", rule[0], rule[1], rule[2]))
            continue
        else:
            decisions.append(Decision(candidate, "send", None, None))
        if index == final:  # nobody after it to see it
            break
        message = PastMessage(candidate.effective_date, candidate.campaign, candidate.essential)
        pressure.add(message, day)
    return decisions


def in_quiet_hours(policy: CadencePolicy, *, now: datetime) -> bool:
    """Whether `now` (aware, config time zone) falls in the quiet hours [start, end)."""
    if now.tzinfo is None:
        raise ValueError("in_quiet_hours() needs an aware datetime")  # not translated: a bug
    hours = policy.quiet_range()
    if hours is None:
        return False
    start, end = hours
    moment = now.time()
    if start <= end:  # a same-day range; "09:00-09:00" is empty
        return start <= moment < end
    return moment >= start or moment < end  # crosses midnight


def next_send_time(policy: CadencePolicy, *, now: datetime) -> datetime:
    """When email may go: `now`, or the end of the current quiet hours."""
    if not in_quiet_hours(policy, now=now):
        return now
    hours = policy.quiet_range()
    assert hours is not None  # in_quiet_hours said we are inside them
    start, end = hours
    day = now.date()
    if start > end and now.time() >= start:  # the evening part of a range across midnight
        day += timedelta(days=1)
    wall = datetime.combine(day, end, tzinfo=now.tzinfo)
    # A round trip through UTC turns a wall time skipped by a DST change into a real one.
    return wall.astimezone(UTC).astimezone(now.tzinfo)


def quiet_until(
    policy: CadencePolicy, *, essential: bool, today: date, now: datetime
) -> tuple[str, datetime] | None:
    """(why, until when) email under this policy must wait, or None if it may go now. `why` is
    a value in English (it goes into `--json`); `model.reasons.words` says it to the owner.

    Quiet hours hold every email; a quiet weekday holds all but essential ones (as in the
    cadence decision). `now` is aware, in the config time zone.
    """
    weekday = WEEKDAYS[today.weekday()]
    if not essential and weekday in policy.quiet_weekdays:
        reason = QUIET_DAY.english(weekday=weekday)
        moment = _midnight(today + timedelta(days=1), now)
    elif in_quiet_hours(policy, now=now):
        reason = QUIET_HOURS.english(hours=policy.quiet_hours)
        moment = now
    else:
        return None
    # A quiet day may be followed by more, and the first hours of a day may be quiet too.
    for _ in range(8):
        day = moment.date()
        if not essential and WEEKDAYS[day.weekday()] in policy.quiet_weekdays:
            moment = _midnight(day + timedelta(days=1), now)
            continue
        later = next_send_time(policy, now=moment)
        if later == moment:
            break
        moment = later
    return reason, moment


def _midnight(day: date, now: datetime) -> datetime:
    wall = datetime.combine(day, time(0), tzinfo=now.tzinfo)
    return wall.astimezone(UTC).astimezone(now.tzinfo)  # a real time even across DST


# ---------------------------------------------------------------------------------------------
# Reading and checking one email


__all__ = [
    "Candidate",
    "Decision",
    "PastMessage",
    "decide",
    "first_open_day",
    "in_quiet_hours",
    "is_missed",
    "next_send_time",
    "policy_for",
    "quiet_until",
    "reach",
]
