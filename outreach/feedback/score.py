"""When bounces block an address: a score, not a hair trigger (as in Mailman).

A hard bounce counts 1, a soft one 0.5, at most once a day per address (the day's worst);
after `quiet_days` without a bounce the score starts again from nothing. The address is
blocked when the score reaches `threshold`, or at the first hard bounce when
`hard_bounce_blocks` (the default).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from outreach.model.config import Bounces

WEIGHTS = {"hard": 1.0, "soft": 0.5}


@dataclass(frozen=True, slots=True)
class Verdict:
    """An address's score now, and whether (and why) it is to be blocked."""

    score: float
    block: str | None  # a reason code (hard-bounce, soft-bounces) or None


def bounce_score(events: Iterable[tuple[date, str]], *, quiet_days: int, today: date) -> float:
    """The score of (day, kind) bounces on `today`."""
    worst: dict[date, float] = {}
    for day, kind in events:
        worst[day] = max(worst.get(day, 0.0), WEIGHTS.get(kind, 0.0))
    score = 0.0
    last: date | None = None
    for day in sorted(worst):
        if last is not None and (day - last).days > quiet_days:
            score = 0.0  # a quiet spell: what came before is forgotten
        score += worst[day]
        last = day
    if last is not None and (today - last).days > quiet_days:
        return 0.0
    return score


def verdict(
    events: Iterable[tuple[date, str]], *, latest: str, rules: Bounces, today: date
) -> Verdict:
    """What the bounces (the latest of kind `latest` among them) mean for the address."""
    score = bounce_score(events, quiet_days=rules.quiet_days, today=today)
    if latest == "hard" and rules.hard_bounce_blocks:
        return Verdict(score, "hard-bounce")
    if score >= rules.threshold:
        return Verdict(score, "hard-bounce" if latest == "hard" else "soft-bounces")
    return Verdict(score, None)
