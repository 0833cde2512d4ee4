"""`outreach results`: per campaign, did the people who got it come back more than those held out?

Each contact who got a campaign's message (treated) or was held out as its control group
counts once per campaign, from the first day of their message's window; a visit within
`results.attribution_days` after that day counts for them. The uplift is the treated visit
rate minus the control's, with Newcombe's hybrid score interval (outreach.outcomes.stats).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from outreach.ledger import outcomes as store
from outreach.ledger.outcomes import Exposure, Redemption
from outreach.outcomes.stats import Difference, newcombe


@dataclass(frozen=True, slots=True)
class CampaignResult:
    """What one campaign brought back, against its control group."""

    campaign: str
    treated: int
    control: int
    visits_treated: int  # treated contacts who came back within the window
    visits_control: int
    redeemed: int
    revenue_treated_cents: int
    revenue_control_cents: int
    uplift: Difference | None  # None without both groups

    @property
    def enough(self) -> bool:
        """Whether the interval tells an effect from none (it does not cover zero)."""
        return self.uplift is not None and not self.uplift.covers_zero

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of `outreach results --json`."""
        up = self.uplift
        return {
            "campaign": self.campaign,
            "treated": self.treated,
            "control": self.control,
            "visits_treated": self.visits_treated,
            "visits_control": self.visits_control,
            "redeemed": self.redeemed,
            "uplift": round(up.estimate, 6) if up else None,
            "uplift_low": round(up.low, 6) if up else None,
            "uplift_high": round(up.high, 6) if up else None,
            "revenue_treated": self.revenue_treated_cents / 100,
            "revenue_control": self.revenue_control_cents / 100,
        }


@dataclass
class _Tally:
    treated: int = 0
    control: int = 0
    visited_treated: int = 0
    visited_control: int = 0
    revenue_treated: int = 0
    revenue_control: int = 0


# contact id → (ISO days of their visits, in order; the amounts in cents, 0 when none)
VisitsByContact = Mapping[str, tuple[list[str], list[int]]]


def _by_contact(visits: Iterable[tuple[str, date, int | None]]) -> VisitsByContact:
    grouped: dict[str, tuple[list[str], list[int]]] = {}
    for contact_id, day, cents in visits:  # ordered by contact, then day
        days, amounts = grouped.setdefault(contact_id, ([], []))
        days.append(day.isoformat())
        amounts.append(cents or 0)
    return grouped


def tally(
    exposures: Iterable[tuple[str, str, str, int]],
    visits: VisitsByContact,
    *,
    attribution_days: int,
) -> dict[str, _Tally]:
    """Per campaign: each group's size, who came back within the window, what they spent.

    Days stay ISO text (they sort as dates): a million exposures are not a million dates."""
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    span = timedelta(days=attribution_days)
    ends: dict[str, str] = {}
    for campaign, contact_id, day, control in exposures:
        t = tallies[campaign]
        found = visits.get(contact_id)
        came, spent = False, 0
        if found is not None:
            last_day = ends.get(day)
            if last_day is None:
                last_day = ends[day] = (date.fromisoformat(day) + span).isoformat()
            days, amounts = found
            first = bisect_left(days, day)
            last = bisect_right(days, last_day)
            came, spent = last > first, sum(amounts[first:last])
        if control:
            t.control += 1
            t.visited_control += came
            t.revenue_control += spent
        else:
            t.treated += 1
            t.visited_treated += came
            t.revenue_treated += spent
    return tallies


def campaign_results(
    exposures: Iterable[Exposure | tuple[str, str, str, int]],
    visits: Iterable[tuple[str, date, int | None]],
    redemptions: Sequence[Redemption],
    *,
    attribution_days: int,
) -> list[CampaignResult]:
    """Every campaign's result, by name."""
    rows = (
        (e.campaign, e.contact_id, e.day.isoformat(), int(e.control))
        if isinstance(e, Exposure)
        else e
        for e in exposures
    )
    tallies = tally(rows, _by_contact(visits), attribution_days=attribution_days)
    redeemed: dict[str, int] = defaultdict(int)
    for redemption in redemptions:
        redeemed[redemption.campaign] += 1
    results = []
    for name in sorted(set(tallies) | set(redeemed)):
        t = tallies.get(name, _Tally())
        uplift = None
        if t.treated and t.control:
            uplift = newcombe(t.visited_treated, t.treated, t.visited_control, t.control)
        results.append(
            CampaignResult(
                campaign=name,
                treated=t.treated,
                control=t.control,
                visits_treated=t.visited_treated,
                visits_control=t.visited_control,
                redeemed=redeemed.get(name, 0),
                revenue_treated_cents=t.revenue_treated,
                revenue_control_cents=t.revenue_control,
                uplift=uplift,
            )
        )
    return results


def read_results(
    conn: Any, *, start: date, end: date, attribution_days: int
) -> list[CampaignResult]:
    """The results of messages and control decisions from `start` to `end` (their visits
    counted up to `attribution_days` later)."""
    exposures = store.exposure_rows(conn, start=start, end=end)
    last = end + timedelta(days=attribution_days)
    visits = store.visits_between(conn, start=start, end=last)
    redeemed = [r for r in store.redemptions(conn) if start <= r.day <= last]
    return campaign_results(exposures, visits, redeemed, attribution_days=attribution_days)
