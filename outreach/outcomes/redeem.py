"""`outreach redeem`: is this code one of ours, still good, not used yet? Record it once.

Works offline on the ledger alone: the code's symbols are checked first (a typo is told from
an unknown code), then looked up in the coupon index, which reads the messages it has not
seen yet when a code is not in it. Recording is one insert under the code's primary key, so of
two tills redeeming the same code at once exactly one wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from outreach.ledger import outcomes as store
from outreach.ledger.outcomes import Issued, Redemption
from outreach.outcomes.coupons import code_symbols, display, near_misses, read_code

if TYPE_CHECKING:  # a till's start does not build the campaign models (benchmarks/startup.py)
    from outreach.model.campaigns import Campaign
    from outreach.model.config import Coupon

Outcome = Literal["valid", "used", "expired", "unknown", "mistyped"]
EXIT_CODES: Mapping[Outcome, int] = {
    "valid": 0,
    "used": 1,
    "expired": 1,
    "unknown": 2,
    "mistyped": 2,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a till is told about a code."""

    outcome: Outcome
    typed: str
    code: str | None = None  # as printed, once read
    issued: Issued | None = None
    expires: date | None = None
    earlier: Redemption | None = None  # `used`: the redemption that came first
    problem: str | None = None  # `mistyped`: what looks wrong
    position: int | None = None  # `mistyped`: which character, when that can be told
    suggestion: str | None = None  # `mistyped`: the one known code a slip away

    @property
    def exit_code(self) -> int:
        """0 recorded, 1 real but used or expired, 2 unknown or mistyped."""
        return EXIT_CODES[self.outcome]


@dataclass(frozen=True, slots=True)
class Till:
    """Where and when a code is redeemed, and for how much."""

    day: date
    now: datetime
    amount_cents: int | None = None
    name: str | None = None


def _coder(coupon: Coupon) -> Any:
    def code_of(campaign: str, contact_id: str, key: str) -> str:
        return code_symbols(
            secret=coupon.secret,
            contact_id=contact_id,
            campaign=campaign,
            occurrence_key=key,
            length=coupon.length,
        )

    return code_of


def find_issued(conn: Any, symbols: str, *, coupon: Coupon) -> list[Issued]:
    """The given-out messages with this code, reading new messages into the index first if
    needed (and, for a code still not found, every message the index lacks).

    The code is looked up again after each step even when this process added nothing: another
    till may have read the same messages into the index meanwhile.
    """
    found = store.issued_with_code(conn, symbols)
    if found:
        return found
    code_of = _coder(coupon)
    store.index_coupons(conn, code_of)
    found = store.issued_with_code(conn, symbols)
    if found:
        return found
    store.index_missing_coupons(conn, code_of)
    return store.issued_with_code(conn, symbols)


def expiry(issued: Issued, campaign: Campaign | None, *, valid_days: int) -> date:
    """The last day a code is good: a promotion's end, else `valid_days` after it arrived."""
    if campaign is not None and campaign.kind == "promotion" and campaign.end is not None:
        return campaign.end
    return issued.effective_date + timedelta(days=valid_days)


def _mistyped(conn: Any, typed: str, *, coupon: Coupon) -> Verdict:
    reading = read_code(typed, prefix=coupon.prefix, length=coupon.length)
    assert reading.problem is not None
    suggestion = None
    if reading.slipped is not None:
        store.index_coupons(conn, _coder(coupon))
        known = sorted(store.known_codes(conn, near_misses(reading.slipped)))
        if len(known) == 1:
            suggestion = display(known[0], prefix=coupon.prefix)
    return Verdict(
        "mistyped",
        typed,
        problem=reading.problem,
        position=reading.position,
        suggestion=suggestion,
    )


def redeem(
    conn: Any,
    typed: str,
    *,
    coupon: Coupon,
    campaigns: Mapping[str, Campaign],
    till: Till,
) -> Verdict:
    """Check a typed code and, when it is good, record its redemption (once, ever)."""
    reading = read_code(typed, prefix=coupon.prefix, length=coupon.length)
    if reading.symbols is None:
        return _mistyped(conn, typed, coupon=coupon)
    symbols = reading.symbols
    shown = display(symbols, prefix=coupon.prefix)
    found = find_issued(conn, symbols, coupon=coupon)
    if not found:
        return Verdict("unknown", typed, shown)
    issued = found[0]
    ends = expiry(issued, campaigns.get(issued.campaign), valid_days=coupon.valid_days)
    wanted = Redemption(
        code=symbols,
        campaign=issued.campaign,
        contact_id=issued.contact_id,
        occurrence_key=issued.occurrence_key,
        day=till.day,
        amount_cents=till.amount_cents,
        till=till.name,
    )
    earlier = store.earlier_redemption(conn, symbols)
    if earlier is None and till.day > ends:
        return Verdict("expired", typed, shown, issued, ends)
    if earlier is None:
        earlier = store.record_redemption(conn, wanted, now=till.now)
    if earlier is not None:
        return Verdict("used", typed, shown, issued, ends, earlier)
    return Verdict("valid", typed, shown, issued, ends)


def code_owner(conn: Any, *, coupon: Coupon) -> Any:
    """A function from a typed code to the contact it was given to (None: not one of ours)."""

    def owner(typed: str) -> str | None:
        reading = read_code(typed, prefix=coupon.prefix, length=coupon.length)
        if reading.symbols is None:
            return None
        found = find_issued(conn, reading.symbols, coupon=coupon)
        return found[0].contact_id if found else None

    return owner
