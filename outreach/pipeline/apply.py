"""Carrying decisions out: the outlet makes, the store claims and records, the tally counts.

`apply` is the one place that knows the order of making: a chunk's emails are prepared
(rendered, nothing written), claimed in the store in one transaction (their final rows, only
where no other run made them), published (written) — and the decisions that make nothing
(skipped, deferred, missed) become rows. The letters of the whole run take the same three
steps at its end (`pipeline.letters`). Neither calls back into whoever fed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from outreach.deliver.outlets import Made, MessageKey, Outlet
from outreach.ledger import MessageRecord
from outreach.ledger.store import RunStore
from outreach.model.reasons import Code, Reason
from outreach.pipeline.decide import CampaignRule, Decided, Decision
from outreach.pipeline.summary import CampaignSummary, HeldBack, label

if TYPE_CHECKING:
    from outreach.contacts import Contact
    from outreach.model.campaigns import Occurrence

Clock = Callable[[], datetime]
Observer = Callable[[Decision], None]


@dataclass(frozen=True, slots=True)
class Scene:
    """What stays the same for every chunk of one run: where decisions are carried out."""

    store: RunStore
    outlet: Outlet
    run_id: int
    today: date
    letter_arrival: date  # when a letter posted today arrives: the day it counts
    contacts_file: Path  # for the problems of a contact's bad data
    rules: Mapping[str, CampaignRule]
    clock: Clock
    observer: Observer | None = None


@dataclass
class Tally:
    """What carrying out one chunk's decisions produced, for the parent process to record."""

    summaries: dict[str, CampaignSummary]
    records: list[MessageRecord] = field(default_factory=list)
    # The letters to make at the end of the run: (index of the contact in its chunk, decision)
    letters: list[tuple[int, Decision]] = field(default_factory=list)

    @classmethod
    def fresh(cls, rules: Mapping[str, CampaignRule]) -> Tally:
        """Nothing counted yet, for each campaign of the run."""
        return cls({name: _summary(rule) for name, rule in rules.items()})


def _summary(rule: CampaignRule) -> CampaignSummary:
    c = rule.campaign
    return CampaignSummary(name=c.name, kind=c.kind, channel=c.channel)


@dataclass(frozen=True, slots=True)
class Books:
    """Rows and counts for one step of a run, stamped at one moment."""

    scene: Scene
    at: datetime
    records: list[MessageRecord]

    def row(self, decision: Decision, *, status: str, made: Made | None = None) -> MessageRecord:
        """The ledger row of a decision (a failure's reason code in `reason`, its text in
        `error`; a held-back message's whole reason in `reason`)."""
        assert decision.occurrence is not None and decision.channel is not None
        occ, channel, scene = decision.occurrence, decision.channel, self.scene
        reason, error = decision.reason, None
        if status == "failed":
            failure = _failure_reason(made, channel)
            reason, error = Reason(failure.code), failure.detail
        elif status != "skipped" and status != "deferred" and status != "missed":
            reason = None
        return MessageRecord(
            contact_id=decision.contact_id,
            campaign=decision.campaign,
            occurrence_key=occ.key,
            channel=channel,
            status=status,
            run_date=scene.today,
            event_date=occ.date,
            earliest=occ.earliest,
            latest=occ.latest,
            essential=scene.rules[decision.campaign].campaign.essential,
            effective_date=scene.letter_arrival if channel == "letter" else scene.today,
            updated_at=self.at,
            artifact=made.artifact if made is not None else None,
            message_id=made.message_id if made is not None else None,
            reason=reason.record if reason is not None else None,
            reason_code=reason.code.value if reason is not None else None,
            error=error,
            basis=decision.basis,
        )

    def count(self, decision: Decision, contact: Contact, summary: CampaignSummary) -> None:
        """Count (and, for what is held back, record) a decision that makes nothing."""
        outcome, why = decision.outcome, decision.reason
        if outcome == "bad data":
            # Listed as "could not be made", so counted as failed, in the contact's row.
            assert decision.problem is not None
            summary.failed += 1
            summary.problems.append(decision.problem.in_file(self.scene.contacts_file))
            return
        if outcome in ("not in audience", "not due"):  # not translated: an outcome code
            return
        summary.due += 1
        if outcome == "already":
            summary.already += 1
            return
        assert why is not None and decision.key is not None
        if outcome == "deferred":
            summary.deferred += 1
        else:
            if outcome == "skipped":
                summary.skipped[label(why)] += 1
            else:
                summary.missed += 1
            held = HeldBack(outcome, contact.id, contact.line, decision.key, why)
            summary.held.append(held)
        self.records.append(self.row(decision, status=outcome))

    def account(
        self,
        decision: Decision,
        made: Made,
        summary: CampaignSummary,
        *,
        line: int | None,
        claimed: list[MessageRecord] | None = None,
        merged: bool = False,
    ) -> Decision:
        """Count and record what the outlet made of one message; the final decision.

        `claimed`: its row is in the store already (claimed before its file was written);
        only a failure is recorded, into that list. `merged`: a letter a housemate's covers.
        """
        assert decision.channel is not None and decision.key is not None
        if made.failed:
            reason = _failure_reason(made, decision.channel)
            summary.failed += 1
            if made.problem is not None:
                summary.problems.append(made.problem)
            summary.held.append(HeldBack("failed", decision.contact_id, line, decision.key, reason))
            row = self.row(decision, status="failed", made=made)
            (self.records if claimed is None else claimed).append(row)
            return replace(decision, outcome="failed", reason=reason)
        summary.sent += made.status == "sent"
        summary.default_language += not made.own_language
        if claimed is None:
            self.records.append(self.row(decision, status=made.status, made=made))
        if merged:
            summary.merged += 1
        elif decision.channel == "letter":
            summary.letters += 1
        else:
            summary.emails += 1
        return decision.made(own_language=made.own_language)


def _failure_reason(made: Made | None, channel: str) -> Reason:
    if made is not None and made.reason is not None:
        return made.reason
    return Reason(Code.RENDER_FAILED, channel)


def already(decision: Decision, summary: CampaignSummary) -> Decision:
    """A message another run claimed first (it makes it): counted, not made here."""
    summary.already += 1
    return replace(decision, outcome="already", channel=None, reason=None, status="rendered")


def claim(books: Books, decisions: Sequence[Decision], offers: Sequence[Made]) -> set[MessageKey]:
    """Claim in the store the messages an outlet is about to write (their final rows)."""
    rows = [
        books.row(decision, status="rendered", made=made)
        for decision, made in zip(decisions, offers, strict=True)
        if not made.failed
    ]
    scene = books.scene
    return scene.store.claim(rows, run_id=scene.run_id)


def _occurrence(decision: Decision) -> Occurrence:
    assert decision.occurrence is not None
    return decision.occurrence


def key_of(decision: Decision) -> MessageKey:
    """The message a decision is about: (contact id, campaign, occurrence key)."""
    assert decision.key is not None
    return (decision.contact_id, decision.campaign, decision.key)


def apply(decided: Iterable[Decided], *, scene: Scene) -> Tally:
    """Carry out a chunk's decisions: what to record, counted per campaign."""
    tally = Tally.fresh(scene.rules)
    books = Books(scene, scene.clock(), tally.records)
    told: list[Decision] = []  # for an observer: every decision, in order
    emails: list[tuple[int, Contact, Decision]] = []  # (place in `told`, contact, decision)
    for index, contact, decision in decided:
        if decision.outcome == "send":
            tally.summaries[decision.campaign].due += 1
            if decision.channel == "letter":
                # Laid out at the end of the run: an observer hears of it now, and of a
                # failure (as "failed") when the layout refuses it.
                tally.letters.append((index, decision))
            else:
                emails.append((len(told), contact, decision))
        else:
            books.count(decision, contact, tally.summaries[decision.campaign])
        told.append(decision)
    if emails:
        for place, final in _make_emails(books, tally, emails):
            told[place] = final
    if scene.observer is not None:
        for decision in told:
            scene.observer(decision)
    return tally


def _make_emails(
    books: Books, tally: Tally, jobs: Sequence[tuple[int, Contact, Decision]]
) -> list[tuple[int, Decision]]:
    """Prepare a chunk's emails, claim them in one transaction, publish the granted ones."""
    scene = books.scene
    decisions = [decision for _, _, decision in jobs]
    offers = scene.outlet.prepare_emails(
        [(scene.rules[d.campaign].campaign, contact, _occurrence(d)) for _, contact, d in jobs]
    )
    granted = claim(books, decisions, offers)
    failures = scene.outlet.publish_emails(granted)
    unmade: list[MessageRecord] = []  # claimed, then the write failed
    finals = []
    for (place, contact, decision), offer in zip(jobs, offers, strict=True):
        key = key_of(decision)
        summary = tally.summaries[decision.campaign]
        if key in granted:
            made = failures.get(key, offer)
            final = books.account(decision, made, summary, line=contact.line, claimed=unmade)
        elif not offer.failed:
            final = already(decision, summary)
        else:
            final = books.account(decision, offer, summary, line=contact.line)
        finals.append((place, final))
    # A second small transaction: the failed writes' rows, so the next run makes them.
    scene.store.settle_claims(unmade, run_id=scene.run_id)
    return finals
