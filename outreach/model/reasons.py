"""Why a message went, waited or was held back: a closed set of codes, turned into words last.

Every decision the runner makes carries a `Reason` (a code, the channel it concerns, a short
detail and, for cadence, the message that blocked it). The summaries count by code, and
`explain`, `plan` and the CLI read the code, never the sentence.

Words, in two forms. A decision is a value made in worker processes and compared in tests, and
the ledger keeps a sentence beside the code for years: both hold English (`Reason.record`, and
the details the rules write from a `Wording`), whatever language the owner reads. The owner's
language comes last, when the words are shown: `Reason.text` (what every display reads) and
`words()` for a sentence read back from the ledger. Both find the English sentence's wording in
the catalog and say it again in the current language; a sentence no wording matches (a detail
another part of the tool wrote in the owner's language already) is shown as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Literal

from outreach.i18n import N_, _, language, pgettext

# What became of one due message in one run (the runner's outcome, as the observer sees it).
Outcome = Literal[
    "not in audience",  # not translated: a value (the CLI says it in words)
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


def status_word(status: str) -> str:
    """A message's status in the owner's language ("rendered" → "preparado"): the code stays
    in the ledger and in --json."""
    words = {
        "rendered": pgettext("status of one message", "rendered"),
        "sending": pgettext("status of one message", "being sent"),
        "sent": pgettext("status of one message", "sent"),
        "failed": pgettext("status of one message", "failed"),
        "uncertain": pgettext("status of one message", "uncertain"),
        "deferred": pgettext("status of one message", "deferred"),
        "missed": pgettext("status of one message", "missed"),
        "skipped": pgettext("status of one message", "skipped"),
    }
    return words.get(status, status)


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
    Code.OPTED_OUT: N_("opted out"),
    Code.NO_EMAIL: N_("no usable email"),
    Code.INCOMPLETE_ADDRESS: N_("incomplete postal address"),
    Code.NO_EMAIL_TEMPLATE: N_("campaign has no email"),
    Code.NO_LETTER_TEMPLATE: N_("campaign has no letter"),
    Code.EMAIL_BLOCKED: N_("email blocked (bounces)"),
    Code.LETTER_BLOCKED: N_("letter blocked (returned)"),
    Code.NO_LEGAL_BASIS: N_("no legal basis for marketing"),
    Code.QUIET_DAY: N_("quiet day"),
    Code.MIN_GAP: N_("too soon after another message"),
    Code.MAX_MESSAGES: N_("too many messages in the period"),
    Code.ESSENTIAL_OVERRIDE: N_("essential, sent despite the cadence policy"),
    Code.WINDOW_CLOSED: N_("window closed while deferred"),
    Code.LETTER_TOO_LATE: N_("a letter posted now would arrive too late"),
    Code.RENDER_FAILED: N_("could not be rendered"),
    Code.LAYOUT_FAILED: N_("letter does not fit its envelope"),
    Code.WRITE_FAILED: N_("could not be written"),
    Code.INTERRUPTED: N_("the run died before it was made"),
    Code.BAD_DATA: N_("bad data in the contacts file"),
    Code.CONTROL: N_("held out as control group"),
}
_BY_PHRASE = {text: code for code, text in _PHRASES.items()}


def phrase(code: Code) -> str:
    """A few words for a code, for counts ("3 opted out"), in the owner's language."""
    return _(_PHRASES[code])


@dataclass(frozen=True, slots=True)
class Wording:
    """A detail's sentence with named placeholders, in English (`one`, and `other` for a count
    `{n}` other than one), marked for the catalog where it is defined.

    The English is what decisions and the ledger hold; `words()` finds it again to say it in
    the owner's language. Both languages the tool speaks use the rule one / not one, so a
    count picks between two marked sentences (a language with more forms would make these
    `ngettext` entries).
    """

    one: str
    other: str | None = None

    def english(self, **params: object) -> str:
        """The sentence as decisions and the ledger keep it."""
        return self._form(params).format(**params)

    def _form(self, params: dict[str, object]) -> str:
        if self.other is not None and params.get("n") != 1:
            return self.other
        return self.one


_WORDINGS: list[tuple[re.Pattern[str], str]] = []
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# What a placeholder of this name can hold, so a sentence splits where it was joined (a
# period "30 days" followed by a date); any other name takes the shortest text that fits.
_SHAPES = {
    **dict.fromkeys(("day", "arrival", "first", "last"), r"\d{4}-\d{2}-\d{2}"),
    **dict.fromkeys(("n", "gap", "most"), r"\d+"),
    "fields": r"\w+(?:, \w+)*",  # an address's field names, as eligibility lists them
}


def wording(one: str, other: str | None = None) -> Wording:
    """A `Wording` that `words()` will recognise (call it at import, with N_-marked text)."""
    for form in (one, other):
        if form is None:
            continue
        parts = _PLACEHOLDER.split(form)
        pattern = "".join(
            re.escape(part) if index % 2 == 0 else f"(?P<{part}>{_SHAPES.get(part, '.+?')})"
            for index, part in enumerate(parts)
        )
        _WORDINGS.append((re.compile(pattern, re.DOTALL), form))
    return Wording(one, other)


def words(text: str | None) -> str:
    """An English reason sentence (a decision's detail, the ledger's `reason`) in the owner's
    language; itself when it is not one of the tool's wordings."""
    if not text:
        return ""
    return _words(text, language())


@lru_cache(maxsize=4096)
def _words(text: str, lang: str) -> str:
    """`words()` for one language (`lang` is part of the cache key: a text reads differently
    in each)."""
    if text.startswith("opted out (") and text.endswith(")"):
        return _opted_out(text.removeprefix("opted out (").removesuffix(")"))
    if text in _BY_PHRASE:
        return _(text)
    head, colon, rest = text.partition(": ")
    if colon and head in _BY_PHRASE:
        return _("{reason}: {detail}").format(reason=_(head), detail=_words(rest, lang))
    for pattern, form in _WORDINGS:
        found = pattern.fullmatch(text)
        if found is not None:
            params = {key: _words(value, lang) for key, value in found.groupdict().items()}
            return _(form).format(**params)
    return text


def _opted_out(channel: str) -> str:
    if channel == "all":
        return _("opted out (all)")
    if channel == "email":
        return _("opted out (email)")
    if channel == "letter":
        return _("opted out (letter)")
    return _("opted out ({channel})").format(channel=channel)


# The details the rules write into a reason, all here so that `words()` knows every one
# whichever modules a command has imported.
ESSENTIAL_DESPITE = wording(N_("essential, sent despite: {rule}"))
# The ledger's own sentence for a message whose window closed before a run could send it.
WINDOW_CLOSED_UNSENT = wording(N_("window closed before it was sent"))
# The run's sentence for a deferred message whose window closed (outreach.pipeline.run).
WINDOW_CLOSED_ON = wording(N_("its window closed on {day} while it was deferred"))
# cadence (outreach.rules.cadence)
SPAN = wording(N_("{n} day"), N_("{n} days"))
GAP_SAME_DAY = wording(N_("{campaign} on {day} is the same day; min_gap_days {gap}"))
GAP_BEFORE = wording(N_("{campaign} on {day} is {span} before; min_gap_days {gap}"))
GAP_AFTER = wording(N_("{campaign} on {day} is {span} after; min_gap_days {gap}"))
GAP_SAME_DAY_LETTER = wording(
    N_("{campaign} on {day} is the same day this letter's arrival on {arrival}; min_gap_days {gap}")
)
GAP_BEFORE_LETTER = wording(
    N_(
        "{campaign} on {day} is {span} before this letter's arrival on {arrival}; min_gap_days {gap}"
    )
)
GAP_AFTER_LETTER = wording(
    N_("{campaign} on {day} is {span} after this letter's arrival on {arrival}; min_gap_days {gap}")
)
CROWDED = wording(
    N_("{n} message in the {period} {first} to {last} (max_messages {most})"),
    N_("{n} messages in the {period} {first} to {last} (max_messages {most})"),
)
QUIET_DAY = wording(N_("quiet day ({weekday})"))
QUIET_HOURS = wording(N_("quiet hours ({hours})"))
# no legal basis (outreach.rules.legal)
LISTED = wording(N_("on a do-not-contact list ({lists})"))
NO_LETTER_CONSENT = wording(N_("no consent (legal.letter_basis)"))
REFUSED = wording(N_("consent refused"))
NO_EMAIL_CONSENT = wording(N_("no email_consent"))
# an incomplete address (outreach.rules.eligibility)
INVALID_FIELDS = wording(N_("invalid {fields}"))
MISSING_FIELDS = wording(N_("missing {fields}"))


@dataclass(frozen=True, slots=True)
class Reason:
    """Why: a code from the closed set, the channel it concerns, and the particulars."""

    code: Code
    channel: str | None = None
    detail: str | None = None  # e.g. "birthday on 2026-11-20 is 2 days before; min_gap_days 7"
    blocking: str | None = None  # the campaign of the message that blocked it, for cadence

    @property
    def record(self) -> str:
        """The sentence the ledger keeps and `--json` shows: English, whatever the owner reads,
        so a ledger reads the same after the language changes (`words()` says it in theirs)."""
        if self.code is Code.OPTED_OUT:
            return f"opted out ({self.channel or 'all'})"
        if self.code in CADENCE or self.code is Code.ESSENTIAL_OVERRIDE:
            return self.detail or _PHRASES[self.code]
        if self.detail:
            return f"{_PHRASES[self.code]}: {self.detail}"
        return _PHRASES[self.code]

    @property
    def text(self) -> str:
        """The sentence shown to people, in the owner's language."""
        return words(self.record)

    def __str__(self) -> str:
        return self.text

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "code": self.code.value,
            "channel": self.channel,
            "detail": self.detail,
            "blocking": self.blocking,
            "text": self.record,
        }
