"""Why a message went, waited or was held back: a closed set of codes, turned into words last.

Every decision the runner makes carries a `Reason` (a code, the channel it concerns, a short
detail and, for cadence, the message that blocked it). The ledger stores its text, the
summaries count by code, and `explain`, `plan` and the CLI read the code, never the sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

# What became of one due message in one run (the runner's outcome, as the observer sees it).
Outcome = Literal[
    "not in audience",
    "not due",
    "bad data",
    "already",
    "skipped",
    "deferred",
    "send",
    "failed",
    "missed",
]

# A message's status in the ledger.
Status = Literal[
    "rendered", "sending", "sent", "failed", "uncertain", "deferred", "missed", "skipped"
]


class Code(StrEnum):
    """The closed set of reasons."""

    # eligibility: the message cannot go at all
    OPTED_OUT = "opted_out"
    NO_EMAIL = "no_email"
    INCOMPLETE_ADDRESS = "incomplete_address"
    NO_EMAIL_TEMPLATE = "no_email_template"
    NO_LETTER_TEMPLATE = "no_letter_template"
    EMAIL_BLOCKED = "email_blocked"  # the address bounced (or a complaint): outreach.feedback
    LETTER_BLOCKED = "letter_blocked"  # the post returned a letter to this address
    # a marketing message without consent, customer relationship or legitimate interest
    NO_LEGAL_BASIS = "no_legal_basis"
    # cadence: it waits
    QUIET_DAY = "quiet_day"
    MIN_GAP = "min_gap"
    MAX_MESSAGES = "max_messages"
    ESSENTIAL_OVERRIDE = "essential_override"  # an essential message sent despite a rule
    # the window closed while it waited
    WINDOW_CLOSED = "window_closed"
    # a letter posted today would arrive after the window (letters.delivery_days)
    LETTER_TOO_LATE = "letter_too_late"
    # making it failed
    RENDER_FAILED = "render_failed"
    LAYOUT_FAILED = "layout_failed"
    WRITE_FAILED = "write_failed"
    # the run died after claiming it and before its file existed: the next run makes it
    INTERRUPTED = "interrupted"
    # the contact's data for this campaign cannot be worked out (a bad date field)
    BAD_DATA = "bad_data"
    # held out to measure against: the campaign's control group (outreach.rules.control)
    CONTROL = "control"


CADENCE = frozenset({Code.QUIET_DAY, Code.MIN_GAP, Code.MAX_MESSAGES})

_PHRASES = {
    Code.OPTED_OUT: "opted out",
    Code.NO_EMAIL: "no usable email",
    Code.INCOMPLETE_ADDRESS: "incomplete postal address",
    Code.NO_EMAIL_TEMPLATE: "campaign has no email",
    Code.NO_LETTER_TEMPLATE: "campaign has no letter",
    Code.EMAIL_BLOCKED: "email blocked (bounces)",
    Code.LETTER_BLOCKED: "letter blocked (returned)",
    Code.NO_LEGAL_BASIS: "no legal basis for marketing",
    Code.QUIET_DAY: "quiet day",
    Code.MIN_GAP: "too soon after another message",
    Code.MAX_MESSAGES: "too many messages in the period",
    Code.ESSENTIAL_OVERRIDE: "essential, sent despite the cadence policy",
    Code.WINDOW_CLOSED: "window closed while deferred",
    Code.LETTER_TOO_LATE: "a letter posted now would arrive too late",
    Code.RENDER_FAILED: "could not be rendered",
    Code.LAYOUT_FAILED: "letter does not fit its envelope",
    Code.WRITE_FAILED: "could not be written",
    Code.INTERRUPTED: "the run died before it was made",
    Code.BAD_DATA: "bad data in the contacts file",
    Code.CONTROL: "held out as control group",
}


def phrase(code: Code) -> str:
    """A few words for a code, for counts ("3 opted out")."""
    return _PHRASES[code]


@dataclass(frozen=True, slots=True)
class Reason:
    """Why: a code from the closed set, the channel it concerns, and the particulars."""

    code: Code
    channel: str | None = None
    detail: str | None = None  # e.g. "birthday on 2026-11-20 is 2 days before; min_gap_days 7"
    blocking: str | None = None  # the campaign of the message that blocked it, for cadence

    @property
    def text(self) -> str:
        """The sentence stored in the ledger and shown to people."""
        if self.code is Code.OPTED_OUT:
            return f"opted out ({self.channel or 'all'})"
        if self.code in CADENCE or self.code is Code.ESSENTIAL_OVERRIDE:
            return self.detail or phrase(self.code)
        if self.detail:
            return f"{phrase(self.code)}: {self.detail}"
        return phrase(self.code)

    def __str__(self) -> str:
        return self.text

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "code": self.code.value,
            "channel": self.channel,
            "detail": self.detail,
            "blocking": self.blocking,
            "text": self.text,
        }
