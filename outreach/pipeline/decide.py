"""What the run does with each contact, as values: the pure decision step.

`decide` takes one contact and everything a run knows before it makes anything (the compiled
campaigns, the suppressions, the cadence history, what the ledger already holds, the days) and
returns one `Decision` per (campaign, occurrence) it looked at, in decision order. It reads no
file, no clock and no store: the rules it calls (audience, occurrences, eligibility, arrival,
cadence) are functions over records. `apply` carries the decisions out; every rehearsal
(explain, plan, validate) and every observer reads the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING

from outreach.i18n import _, ngettext
from outreach.model.campaigns import Campaign, FieldError, Occurrence
from outreach.model.errors import OutreachError, Problem
from outreach.model.reasons import Code, Outcome, Reason
from outreach.rules import cadence
from outreach.rules.arrival import (
    Timing,
    effective_date,
    email_instead,
    lookahead,
    send_window,
    timing,
    too_late_to_post,
)
from outreach.rules.audience import WhereRefusedError
from outreach.rules.cadence import Candidate, PastMessage, first_open_day
from outreach.rules.control import in_control
from outreach.rules.eligibility import (
    Suppressions,
    channel_order,
    choose_channel,
    first_choice,
    opted_out,
    unusable,
)
from outreach.rules.known import Ledgered, as_known
from outreach.rules.legal import (
    DoNotContact,
    FutureConsentError,
    LegalPolicy,
    basis,
    is_forgotten,
)
from outreach.rules.occurrences import occurrences_between

if TYPE_CHECKING:
    from outreach.contacts import Contact
    from outreach.model.config import CadencePolicy


@dataclass(frozen=True, slots=True)
class Decision:
    """What the run decided for one contact, campaign and occurrence, and why.

    `outcome` is one of reasons.Outcome: `send` (to make now), `deferred`, `skipped`,
    `missed`, `already` (done by an earlier run), `not in audience`, `not due`, `bad data`,
    and — once `apply` has carried a send out — `failed`. `day` is the day it counts
    (cadence's effective date: letters arrive `delivery_days` after posting).
    """

    contact_id: str
    campaign: str
    outcome: Outcome
    occurrence: Occurrence | None = None
    channel: str | None = None
    reason: Reason | None = None
    status: str | None = None  # for `already`: the ledger status that makes it done
    own_language: bool = True  # for `send`: False when it goes in the default language
    occurrence_key: str | None = None  # for `missed` by a closed window: no Occurrence at hand
    day: date | None = None
    problem: Problem | None = None  # for `bad data`: the contact's problem, located
    basis: str | None = None  # for `send`: the legal basis it goes on (rules/legal)

    @property
    def key(self) -> str | None:
        """The occurrence's key, from the occurrence or (a closed window) as recorded."""
        return self.occurrence.key if self.occurrence is not None else self.occurrence_key

    def made(self, *, own_language: bool) -> Decision:
        """The same send, once made (in the contact's language or not)."""
        if own_language == self.own_language:
            return self  # most are: no copy on the hot path
        return replace(self, own_language=own_language)


@dataclass(frozen=True, slots=True)
class CampaignRule:
    """A campaign compiled for one run: who it reaches, its cadence, what is done already."""

    campaign: Campaign
    matches: Callable[[Contact], bool]
    policy: CadencePolicy
    done: Mapping[tuple[str, str], str]


@dataclass(frozen=True, slots=True)
class RunDates:
    """The days a run decides for: `today`, or (validate) every occurrence up to `until`.

    Over a span, each occurrence is decided on the first day a run could send it (its window's
    first day from `today` on that is not a quiet weekday), alone against the store's history.
    """

    today: date
    until: date | None = None
    # Occurrences already worked out for (campaign, contact id) over days that cover the run's
    # (plan's schedule): the run filters them by window instead of working them out again.
    calendar: Mapping[tuple[str, str], Sequence[Occurrence]] | None = None

    @property
    def last(self) -> date:
        """The last day the run decides for."""
        return self.until or self.today


@dataclass(frozen=True, slots=True)
class Knowledge:
    """All a run knows before it makes anything: what `decide` needs besides the contact."""

    rules: Sequence[CampaignRule]
    suppressions: Suppressions
    history: Mapping[str, Sequence[PastMessage]]
    dates: RunDates
    delivery_days: int
    date_format: str
    legal: LegalPolicy = field(default_factory=LegalPolicy)
    lists: DoNotContact | None = None  # config suppression_lists, loaded once per run
    # Salted hashes of the people `outreach forget` erased, and the salt: nothing is decided
    # (so nothing recorded) for a row that matches one.
    forgotten: frozenset[str] = frozenset()
    forget_salt: str = ""
    # What the ledger adds to the rows (the latest visits, the confirmed addresses), read
    # once per run: `decide_chunk` hands every rule the contact as the run knows it.
    known: Ledgered = field(default_factory=Ledgered)


# A message that may go, waiting for cadence: what cadence weighs, and the decision's parts.
_Pending = tuple[Candidate, CampaignRule, Occurrence, "Reason | None", "str | None"]

# A decision with the contact it is about and that contact's place in its chunk.
Decided = tuple[int, "Contact", Decision]


def decide_chunk(chunk: Sequence[Contact], knowing: Knowledge) -> Iterator[Decided]:
    """Every decision for a chunk of contacts, contact by contact, in decision order, each
    with the contact as the run knows it (rules.known: what the ledger adds to the row)."""
    for index, row in enumerate(chunk):
        contact = known_contact(row, knowing)
        for decision in decide(contact, knowing):
            yield index, contact, decision


def known_contact(contact: Contact, knowing: Knowledge) -> Contact:
    """The contact as the run knows it: its row and what the ledger adds (rules.known)."""
    known = knowing.known
    if not (known.visits or known.confirmations):
        return contact
    return as_known(contact, known, date_format=knowing.date_format)


def decide(contact: Contact, knowing: Knowledge) -> list[Decision]:
    """Every decision for one contact, in decision order: each campaign's verdict on its
    occurrences, then what cadence makes of those that may go."""
    if knowing.forgotten and is_forgotten(
        contact, salt=knowing.forget_salt, keys=knowing.forgotten
    ):
        return []
    decisions: list[Decision] = []
    pending: list[_Pending] = []
    for rule in knowing.rules:
        for decision in _campaign_decisions(contact, rule, knowing):
            if decision.outcome == "send":
                assert decision.occurrence is not None and decision.channel is not None
                candidate = _candidate(contact, rule, decision, knowing)
                pending.append(
                    (candidate, rule, decision.occurrence, decision.reason, decision.basis)
                )
            else:
                decisions.append(decision)
    if pending:
        decisions.extend(_cadence(contact, pending, knowing))
    return decisions


def decision_day(
    rule: CampaignRule, occ: Occurrence, channel: str, dates: RunDates, *, delivery_days: int
) -> date:
    """The day a run decides an occurrence on: today, or over a span its first open day."""
    if dates.until is None:
        return dates.today
    first, last = send_window(occ, channel=channel, delivery_days=delivery_days)
    return first_open_day(rule.policy, start=max(first, dates.today), end=last)


def _due(campaign: Campaign, contact: Contact, knowing: Knowledge) -> list[Occurrence]:
    """The campaign's occurrences for the contact over the run's days (a campaign that can
    send a letter looks `delivery_days` further: a letter is posted that much earlier)."""
    dates = knowing.dates
    end = dates.last + lookahead(campaign, delivery_days=knowing.delivery_days)
    if dates.calendar is not None:
        known = dates.calendar.get((campaign.name, contact.id))
        if known is not None:
            return [o for o in known if o.earliest <= end and o.latest >= dates.today]
    return occurrences_between(
        campaign, contact, start=dates.today, end=end, date_format=knowing.date_format
    )


def _campaign_decisions(contact: Contact, rule: CampaignRule, knowing: Knowledge) -> list[Decision]:
    """One campaign's verdicts for the contact: `send` for those cadence is still to weigh."""
    name = rule.campaign.name
    try:
        if not rule.matches(contact):
            outcome: Outcome = "not in audience"  # not translated: an outcome code
            return [Decision(contact.id, name, outcome)]
        occurrences = _due(rule.campaign, contact, knowing)
    except WhereRefusedError:
        raise  # a `where` the sandbox refuses is the campaign's error (exit 2)
    except OutreachError as exc:
        reason = Reason(Code.BAD_DATA, detail=str(exc))
        problem = exc.as_problem(contact_id=contact.id, campaign=name)
        return [Decision(contact.id, name, "bad data", reason=reason, problem=problem)]
    if not occurrences:
        return [Decision(contact.id, name, "not due")]
    chosen = choose_channel(rule.campaign, contact, knowing.suppressions)
    dates = knowing.dates
    occurrences = [
        occ
        for occ in occurrences
        if timing(
            occ,
            channel=chosen[0],
            today=dates.today,
            until=dates.last,
            delivery_days=knowing.delivery_days,
        )
        is not Timing.EARLY
    ]
    if not occurrences:
        return [Decision(contact.id, name, "not due")]
    found = (_occurrence_decision(contact, rule, occ, chosen, knowing) for occ in occurrences)
    return [decision for decision in found if decision is not None]


def _occurrence_decision(
    contact: Contact,
    rule: CampaignRule,
    occ: Occurrence,
    chosen: tuple[str | None, Reason | None],
    knowing: Knowledge,
) -> Decision | None:
    """The verdict on one due occurrence before cadence (None: not this run's business)."""
    name, dates, days = rule.campaign.name, knowing.dates, knowing.delivery_days
    channel, why = chosen
    late = channel == "letter" and too_late_to_post(occ, today=dates.today, delivery_days=days)
    instead = late and email_instead(rule.campaign, contact, knowing.suppressions)
    if instead and dates.last < occ.earliest:
        return None  # too late for a letter, too early for its email
    status = rule.done.get((contact.id, occ.key))
    if status is not None:
        return Decision(contact.id, name, "already", occ, status=status)
    if late:
        # Posted now it would arrive after its window: by email, or missed.
        too_late = Reason(
            Code.LETTER_TOO_LATE,
            "letter",
            detail=ngettext(
                "it takes {n} day; the window ends {end}",
                "it takes {n} days; the window ends {end}",
                days,
            ).format(n=days, end=occ.latest.isoformat()),
        )
        if not instead:
            return Decision(contact.id, name, "missed", occ, "letter", too_late)
        channel, why = "email", too_late
    if channel is None:
        assert why is not None
        used = why.channel or first_choice(rule.campaign, contact)
        return Decision(contact.id, name, "skipped", occ, used, why)
    found = _lawful(contact, rule, channel, knowing)
    if not isinstance(found, str) and found[1].code == Code.NO_LEGAL_BASIS:
        letter = _lawful_letter(contact, rule, occ, channel, knowing)
        if letter is not None:  # no basis for the email; the letter has one
            channel, why, found = "letter", found[1], letter
    if not isinstance(found, str):
        return Decision(contact.id, name, found[0], occ, channel, found[1], problem=found[2])
    percent = rule.campaign.control_group
    if percent and in_control(campaign=name, contact_id=contact.id, percent=percent):
        # Held out, recorded as a skipped row: the same on every run, never cadence's business.
        # The % sign outside the message: gettext would read "% o" as a printf format.
        share = _("{share} of the campaign's contacts").format(share=f"{percent:g}%")
        held = Reason(Code.CONTROL, channel, detail=share)
        return Decision(contact.id, name, "skipped", occ, channel, held, basis=found)
    return Decision(contact.id, name, "send", occ, channel, why, basis=found)


def _lawful(
    contact: Contact, rule: CampaignRule, channel: str, knowing: Knowledge
) -> str | tuple[Outcome, Reason, Problem | None]:
    """The legal basis a send goes on, or the outcome, reason (and problem) that hold it back
    for want of one."""
    try:
        found = basis(
            rule.campaign,
            contact,
            channel,
            policy=knowing.legal,
            today=knowing.dates.today,
            lists=knowing.lists,
        )
    except FutureConsentError as exc:
        error = FieldError(
            str(exc),
            contact_id=contact.id,
            line=contact.line,
            field="email_consent",
            hint=_("write the day they consented, which cannot be after today (YYYY-MM-DD)"),
        )
        problem = error.as_problem(contact_id=contact.id, campaign=rule.campaign.name)
        return "bad data", Reason(Code.BAD_DATA, detail=str(exc)), problem
    if isinstance(found, Reason):
        return "skipped", found, None
    return found


def _lawful_letter(
    contact: Contact, rule: CampaignRule, occ: Occurrence, channel: str, knowing: Knowledge
) -> str | None:
    """The basis of a letter instead of a marketing email that has none, where the campaign
    falls back to letters (`channel: preferred`, `fallback: true`), the letter can carry it
    and still arrive in time: with `legal.letter_basis: legitimate_interest`, the letter may
    go where the email may not (LSSI governs electronic messages, not the post)."""
    campaign = rule.campaign
    if channel != "email" or "letter" not in channel_order(campaign, contact):
        return None
    if opted_out(contact, "letter", knowing.suppressions):
        return None
    if unusable(campaign, contact, "letter", knowing.suppressions) is not None:
        return None
    days = knowing.delivery_days
    if too_late_to_post(occ, today=knowing.dates.today, delivery_days=days):
        return None
    found = _lawful(contact, rule, "letter", knowing)
    return found if isinstance(found, str) else None


def _candidate(
    contact: Contact, rule: CampaignRule, decision: Decision, knowing: Knowledge
) -> Candidate:
    assert decision.occurrence is not None and decision.channel is not None
    occ, channel = decision.occurrence, decision.channel
    day = decision_day(rule, occ, channel, knowing.dates, delivery_days=knowing.delivery_days)
    effective = effective_date(channel, day=day, delivery_days=knowing.delivery_days)
    return Candidate(
        contact_id=contact.id,
        campaign=rule.campaign.name,
        occurrence_key=occ.key,
        priority=rule.campaign.priority,
        essential=rule.campaign.essential,
        channel=channel,
        latest=occ.latest,
        effective_date=effective,
        policy=rule.policy,
    )


def _cadence(
    contact: Contact,
    pending: Sequence[_Pending],
    knowing: Knowledge,
) -> list[Decision]:
    """What cadence makes of a contact's messages that may go: sent or deferred, in order."""
    past = knowing.history.get(contact.id, ())
    by_key = {(item[0].campaign, item[0].occurrence_key): item for item in pending}
    dates = knowing.dates
    if dates.until is None:
        verdicts = cadence.decide(
            candidates=[item[0] for item in pending], history=past, today=dates.today
        )
    else:  # over a span, each occurrence on its own day
        verdicts = [
            verdict
            for cand, rule, occ, _, _ in pending
            for verdict in cadence.decide(
                candidates=[cand],
                history=past,
                today=decision_day(
                    rule, occ, cand.channel, dates, delivery_days=knowing.delivery_days
                ),
            )
        ]
    decisions = []
    for verdict in verdicts:
        cand = verdict.candidate
        _, _, occ, why, lawful = by_key[(cand.campaign, cand.occurrence_key)]
        if verdict.action != "send":
            reason = Reason(
                verdict.code or Code.MIN_GAP,
                cand.channel,
                detail=verdict.reason,
                blocking=verdict.blocked_by.campaign if verdict.blocked_by else None,
            )
            decisions.append(
                Decision(
                    contact.id,
                    cand.campaign,
                    "deferred",
                    occ,
                    cand.channel,
                    reason,
                    day=cand.effective_date,
                )
            )
            continue
        if verdict.code is not None:
            why = Reason(verdict.code, cand.channel, detail=verdict.reason)
        decisions.append(
            Decision(
                contact.id,
                cand.campaign,
                "send",
                occ,
                cand.channel,
                why,
                day=cand.effective_date,
                basis=lawful,
            )
        )
    return decisions
