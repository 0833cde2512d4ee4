"""When a letter must be posted to arrive in time: its window is the occurrence's, moved back
by `letters.delivery_days`, so that it arrives inside the window (a birthday letter by the
birthday). A letter that can no longer arrive in time goes by email when the campaign allows
fallback, and is otherwise missed: never late.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import Enum

from outreach.contacts import Contact
from outreach.model.campaigns import Campaign, Occurrence
from outreach.rules.eligibility import Suppressions, opted_out, unusable


class Timing(Enum):
    """Where the run's days fall against one occurrence's window for one channel."""

    EARLY = "early"  # not yet: the message's window opens after the run's last day
    IN_TIME = "in time"  # not translated: a value
    TOO_LATE = (
        "too late"  # not translated: a value; a letter posted now would arrive after the window
    )


def lookahead(campaign: Campaign, *, delivery_days: int) -> timedelta:
    """How much further than its own days a run looks for a campaign's occurrences: one that
    can send a letter posts it `delivery_days` before the window."""
    return timedelta(days=delivery_days) if campaign.letter is not None else timedelta(0)


def too_late_to_post(occ: Occurrence, *, today: date, delivery_days: int) -> bool:
    """Whether a letter posted today would arrive after the occurrence's window."""
    return today > occ.latest - timedelta(days=delivery_days)


def effective_date(channel: str, *, day: date, delivery_days: int) -> date:
    """The day a message made on `day` counts for cadence: the day it arrives (a letter
    `delivery_days` later)."""
    return day + timedelta(days=delivery_days) if channel == "letter" else day


def send_window(occ: Occurrence, *, channel: str, delivery_days: int) -> tuple[date, date]:
    """The first and last day the message may be made and sent (letters: posted)."""
    if channel != "letter":
        return occ.earliest, occ.latest
    back = timedelta(days=delivery_days)
    return occ.earliest - back, occ.latest - back


def timing(
    occ: Occurrence, *, channel: str | None, today: date, until: date, delivery_days: int
) -> Timing:
    """Whether a run over today…until may make this occurrence's message by `channel` (None:
    no channel can carry it: judged as an email, by the occurrence's own window)."""
    first, last = send_window(occ, channel=channel or "email", delivery_days=delivery_days)
    if first > until:
        return Timing.EARLY
    if today > last:
        # An email whose window closed is not due at all (never listed); a letter is too late.
        return Timing.TOO_LATE if channel == "letter" else Timing.EARLY
    return Timing.IN_TIME


def email_instead(campaign: Campaign, contact: Contact, suppressions: Suppressions) -> bool:
    """Whether a letter too late for the post may go by email instead (the campaign allows
    fallback and the contact can get its email)."""
    return (
        campaign.fallback
        and not opted_out(contact, "email", suppressions)
        and unusable(campaign, contact, "email", suppressions) is None
    )
