"""The run's letters, made at its end: queued (one per household when merging), prepared,
claimed, published as one batch per campaign, and accounted for, housemates included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from outreach.contacts import Contact
from outreach.deliver.outlets import LetterBatch, Made, MessageKey
from outreach.ledger import MessageRecord
from outreach.pipeline.apply import Books, Scene, already, key_of
from outreach.pipeline.decide import Decision
from outreach.pipeline.summary import CampaignSummary
from outreach.rules.households import Household, group_by, household_key

LetterJob = tuple[Contact, Decision]


def letter_groups(jobs: Sequence[LetterJob], *, scene: Scene, merge: bool) -> list[list[LetterJob]]:
    """The run's letters, those to one household (one campaign, occurrence and postal address)
    together when merging; essential letters always alone."""

    def key(job: LetterJob) -> tuple[str, str, date, str] | None:
        contact, decision = job
        occ = decision.occurrence
        if not merge or scene.rules[decision.campaign].campaign.essential or occ is None:
            return None
        return (decision.campaign, occ.key, occ.date, household_key(contact))

    return [[jobs[i] for i in group] for group in group_by(jobs, key=key)]


@dataclass
class _Letters:
    """The letters of one run on their way: who each letter covers, what the store refused."""

    jobs: dict[MessageKey, LetterJob]
    covered: dict[MessageKey, list[LetterJob]] = field(default_factory=dict)
    refused: list[MessageKey] = field(default_factory=list)  # held by another run
    housemates_refused: set[MessageKey] = field(default_factory=set)


def make_letters(
    jobs: Sequence[LetterJob],
    *,
    scene: Scene,
    totals: Mapping[str, CampaignSummary],
    merge: bool,
) -> list[MessageRecord]:
    """Queue, claim, publish and account for the run's letters; the rows to record."""
    books = Books(scene, scene.clock(), [])
    letters = _Letters({key_of(decision): (contact, decision) for contact, decision in jobs})
    for group in letter_groups(jobs, scene=scene, merge=merge):
        _queue(books, letters, group, totals)
    granted = _claim(books, letters, scene.outlet.prepare_letters())
    for batch in scene.outlet.publish_letters(granted):
        books = Books(scene, scene.clock(), books.records)
        _account_batch(books, letters, batch, totals[batch.campaign])
    for key in letters.refused:
        for _, decision in [letters.jobs[key], *letters.covered.get(key, ())]:
            _tell(scene, already(decision, totals[decision.campaign]))
    return books.records


def _tell(scene: Scene, decision: Decision) -> None:
    if scene.observer is not None:
        scene.observer(decision)


def _tell_failure(scene: Scene, decision: Decision) -> None:
    """A letter's "send" was told when it was decided: only its failure is news."""
    if decision.outcome == "failed":
        _tell(scene, decision)


def _queue(
    books: Books,
    letters: _Letters,
    group: Sequence[LetterJob],
    totals: Mapping[str, CampaignSummary],
) -> None:
    """Hand one group's letter to the outlet: a household's to all of them, or, when that
    letter cannot be made (no form of their names fits the window), one each."""
    scene = books.scene
    contact, decision = group[0]
    household = Household(tuple(job[0] for job in group)) if len(group) > 1 else None
    failed = _hand(scene, contact, decision, household)
    if failed is None:
        if household is not None:
            letters.covered[key_of(decision)] = list(group[1:])
        return
    failures = [(contact, decision, failed)]
    if household is not None:
        alone = ((member, job, _hand(scene, member, job, None)) for member, job in group)
        failures = [(member, job, made) for member, job, made in alone if made is not None]
    for member, job, made in failures:
        summary = totals[job.campaign]
        _tell_failure(scene, books.account(job, made, summary, line=member.line))


def _hand(
    scene: Scene, contact: Contact, decision: Decision, household: Household | None
) -> Made | None:
    """Queue one letter with the outlet; a Made only when it fails at once."""
    assert decision.occurrence is not None
    campaign = scene.rules[decision.campaign].campaign
    return scene.outlet.letter(campaign, contact, decision.occurrence, household=household)


def _claim(books: Books, letters: _Letters, offered: Sequence[MessageKey]) -> set[MessageKey]:
    """Claim the letters about to be laid out: a household's letter first, then the housemates
    it covers (their rows point to it). A letter another run holds is not printed, nor are its
    housemates claimed."""
    store, run_id = books.scene.store, books.scene.run_id
    offer = Made(status="rendered")
    rows = [books.row(letters.jobs[key][1], status="rendered", made=offer) for key in offered]
    granted = store.claim(rows, run_id=run_id)
    letters.refused.extend(key for key in offered if key not in granted)
    housemates = [job for key in granted for job in letters.covered.get(key, ())]
    rows = [books.row(decision, status="rendered", made=offer) for _, decision in housemates]
    kept = store.claim(rows, run_id=run_id)
    letters.housemates_refused.update(key_of(d) for _, d in housemates if key_of(d) not in kept)
    return set(granted)


def _account_batch(
    books: Books, letters: _Letters, batch: LetterBatch, summary: CampaignSummary
) -> None:
    """Count and record what became of one campaign's letters (each member's row points to
    its household's one letter, and cadence counts it)."""
    scene = books.scene
    for key, made in batch.made.items():
        contact, decision = letters.jobs[key]
        _tell_failure(scene, books.account(decision, made, summary, line=contact.line))
        for member, job in letters.covered.get(key, ()):
            if key_of(job) in letters.housemates_refused:
                _tell(scene, already(job, summary))
                continue
            final = books.account(job, made, summary, line=member.line, merged=not made.failed)
            _tell_failure(scene, final)
    summary.pages += batch.pages
    if batch.artifact is not None:
        summary.batch = batch.artifact
        summary.postage = batch.postage
