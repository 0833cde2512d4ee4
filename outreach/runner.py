"""One run: contacts → due occurrences → eligibility → cadence → outlet → store → summary.

This is the only module that knows the whole order of steps, and it knows it once. A run
depends on two small interfaces: a *store* (`outreach.ledger.store.RunStore`: the SQLite
ledger, or an in-memory store seeded from it) and an *outlet* (`outreach.deliver.outlets`:
publish, render-only, count-only). An email or letter is claimed in the store (its final
row, only where no run has made it) before the publish outlet writes its file, so two runs
never both make one message. The rehearsals — dry run, validate, plan, explain — are
this runner with another store or outlet, and an observer that watches each decision.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from outreach.arrival import Timing, email_instead, send_window, timing
from outreach.audience import WhereRefusedError, compile_audience
from outreach.cadence import Candidate, decide, first_open_day, policy_for, reach
from outreach.campaigns import Campaign, Occurrence, occurrences_between
from outreach.config import CadencePolicy
from outreach.contacts import Contact, ContactStream
from outreach.deliver.outlets import (
    LetterProgress,
    Made,
    MessageKey,
    Outlet,
    PublishOutlet,
    RenderOnlyOutlet,
    outbox_folder,
)
from outreach.eligibility import choose_channel, first_choice
from outreach.errors import OutreachError
from outreach.households import Household, group_by, household_key
from outreach.ledger import Ledger, MessageRecord, open_ledger, workspace_lock
from outreach.ledger.store import RunStore
from outreach.pipeline.parallel import ordered_map
from outreach.reasons import Code, Outcome, Reason
from outreach.rebuild import check_ledger_start
from outreach.recovery import recover_interrupted
from outreach.render.limits import limits_of
from outreach.shards import Shard
from outreach.summary import CampaignSummary, HeldBack, RunSummary, label
from outreach.workspace import Workspace, display_path

__all__ = [
    "CampaignSummary",
    "Clock",
    "RunDates",
    "RunSummary",
    "TraceEvent",
    "execute_run",
    "perform_run",
    "recover_interrupted",
]

# Ledger rows are written in batches: one transaction per this many messages.
LEDGER_BATCH = 500
# Contacts are handled in chunks of this many; a chunk's emails are rendered, claimed in the
# ledger in one transaction (their final rows), then written.
# A run reads the contacts file as it goes: only the chunks in flight are in memory.
CHUNK = 500
# Below this many contacts a run stays in one process: starting workers would cost more.
PARALLEL_MIN = 4000
# Chunks handed to the workers ahead of the one the parent waits for, per worker: enough to
# keep every worker busy, few enough that the contacts in memory stay a handful of chunks.
AHEAD = 2

Clock = Callable[[], datetime]


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


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """What the run decided for one contact and campaign (for explain, plan and validate)."""

    contact_id: str
    campaign: str
    outcome: Outcome
    occurrence: Occurrence | None = None
    channel: str | None = None
    reason: Reason | None = None
    status: str | None = None  # for `already`: the ledger status that makes it done
    own_language: bool = True  # for `send`: False when it goes in the default language
    occurrence_key: str | None = None  # for `missed`, which has no Occurrence at hand


Observer = Callable[[TraceEvent], None]


@dataclass
class _CampaignRun:
    """A campaign compiled for this run."""

    campaign: Campaign
    matches: Callable[[Contact], bool]
    policy: CadencePolicy
    done: Mapping[tuple[str, str], str]


@dataclass
class _ChunkResult:
    """What handling one chunk of contacts produced, to record in the parent process."""

    records: list[MessageRecord] = field(default_factory=list)
    # (campaign, index of the contact in its chunk, occurrence, why not the first channel)
    letters: list[tuple[str, int, Occurrence, Reason | None]] = field(default_factory=list)
    summaries: dict[str, CampaignSummary] = field(default_factory=dict)


def _chunks(contacts: Iterable[Contact]) -> Iterator[list[Contact]]:
    """The contacts in lists of CHUNK, read only as each list is wanted."""
    remaining = iter(contacts)
    while chunk := list(itertools.islice(remaining, CHUNK)):
        yield chunk


def worker_count(requested: int | None, contacts: int, *, minimum: int = PARALLEL_MIN) -> int:
    """Processes for work on `contacts` contacts: as asked, else one per core (up to 4) from
    `minimum` contacts on."""
    if requested is not None:
        return max(1, requested)
    if contacts < minimum:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _in_workers(
    process: Callable[[list[Contact]], _ChunkResult],
    chunks: Iterator[list[Contact]],
    *,
    processes: int,
) -> Iterator[tuple[list[Contact], _ChunkResult]]:
    """Run chunks in forked worker processes; yield each chunk with its result, in order.

    Rendering is CPU-bound Python, so one process per core is what makes a large run fast.
    Workers render, claim the chunk's emails in the ledger (on a connection of their own) and
    write the granted files; the parent records the rest (skipped, deferred, failed). Workers
    inherit the workspace lock's open file, so a new run cannot start while a worker of a
    killed run is still writing. The parent reads the next chunk only when the
    workers have room for it: the contacts in memory are the chunks in flight. Forked, the
    workers inherit `process` with the compiled templates and the store's answers; only each
    chunk's contacts travel, pickled. They die with the run (outreach.pipeline.parallel).
    """
    with ordered_map(process, chunks, processes=processes, ahead=AHEAD) as done:
        yield from done


class _Progress(Iterator[Contact]):
    """The contacts done so far, for a progress bar; its length hint is the expected total."""

    def __init__(self, contacts: Iterator[Contact], expected: int) -> None:
        self.contacts = contacts
        self.expected = expected

    def __next__(self) -> Contact:
        return next(self.contacts)

    def __length_hint__(self) -> int:
        return self.expected


def _missed_reason(record: MessageRecord) -> Reason:
    closed = record.latest.isoformat() if record.latest else "?"
    detail = f"its window closed on {closed} while it was deferred"
    return Reason(Code.WINDOW_CLOSED, record.channel, detail=detail)


_LetterJob = tuple["_CampaignRun", Contact, Occurrence, Reason | None]
_EmailJob = tuple["_CampaignRun", CampaignSummary, Contact, Occurrence, Reason | None]


def letter_groups(jobs: Sequence[_LetterJob], *, merge: bool) -> list[list[_LetterJob]]:
    """The run's letters, those to one household (one campaign, occurrence and postal address)
    together when merging; essential letters always alone."""

    def key(job: _LetterJob) -> tuple[str, str, date, str] | None:
        run, contact, occ, _ = job
        if not merge or run.campaign.essential:
            return None
        return (run.campaign.name, occ.key, occ.date, household_key(contact))

    return [[jobs[i] for i in group] for group in group_by(jobs, key=key)]


def execute_run(
    *,
    workspace: Workspace,
    store: RunStore,
    outlet: Outlet,
    dates: RunDates,
    clock: Clock,
    observer: Observer | None = None,
    contacts: Iterable[Contact] | None = None,
    args: Sequence[str] = (),
    progress: Callable[[Iterator[Contact]], Iterator[Contact]] | None = None,
    workers: int | None = None,
    shard: Shard | None = None,
) -> RunSummary:
    """Decide for every contact and campaign, hand what goes to the outlet, record it all.

    `contacts` runs only these (a list: explain, plan); by default the run reads the
    workspace's contacts file a chunk at a time and reports its problems. `clock` tells the
    wall-clock time, for the run's and the records' stamps. `workers` processes render the
    emails of a large run (default: one per core from PARALLEL_MIN contacts; an observer
    keeps the run in one process, where it can watch every decision). `shard` takes only
    the contacts whose id hashes into it (outreach.shards).
    """
    settings = workspace.settings
    today = dates.today
    stream: ContactStream | None = None
    people: Iterable[Contact]
    own_stream = contacts is None
    if contacts is None:
        stream = workspace.stream_contacts()  # before the run begins: it may fail
        people, expected = stream, stream.size_hint
    elif isinstance(contacts, ContactStream):
        stream = contacts
        people, expected = stream, stream.size_hint
    else:
        people = contacts
        expected = len(contacts) if isinstance(contacts, Sequence) else 0
    if shard is not None:
        people = (contact for contact in people if shard.contains(contact.id))
        expected //= shard.count
    started = clock()
    run_id = store.begin_run(run_date=today, started_at=started, args=args)
    fmt = settings.contacts.date_format
    delivery_days = settings.letters.delivery_days
    letter_arrival = today + timedelta(days=delivery_days)
    letter_time = timedelta(days=delivery_days)
    contacts_file = display_path(settings.contacts_path)
    campaigns = workspace.campaigns
    totals = {
        c.name: CampaignSummary(name=c.name, kind=c.kind, channel=c.channel) for c in campaigns
    }
    # A chunk's emails are made once it is decided: with an observer, its events wait here so
    # that each email's comes in decision order (`slot`: the place of the one being made).
    events: list[TraceEvent | None] = []
    buffering = False
    slot: int | None = None

    def note(event: TraceEvent) -> None:
        if observer is None:
            return
        if slot is not None:
            events[slot] = event
        elif buffering:
            events.append(event)
        else:
            observer(event)

    # Windows that closed while their messages waited: missed, counted by this run.
    missed_lines: dict[str, list[HeldBack]] = {}
    for row in store.close_windows(today=today, now=started, run_id=run_id):
        reason = _missed_reason(row)
        note(
            TraceEvent(
                row.contact_id,
                row.campaign,
                "missed",
                None,
                row.channel,
                reason,
                occurrence_key=row.occurrence_key,
            )
        )
        summary = totals.get(row.campaign)
        if summary is None:
            continue  # a campaign this run does not cover: dated by this run all the same
        summary.missed += 1
        held = HeldBack("missed", row.contact_id, None, row.occurrence_key, reason)
        summary.held.append(held)
        missed_lines.setdefault(row.contact_id, []).append(held)

    suppressions = store.suppressions()
    history = store.history(since=today - timedelta(days=reach(settings, campaigns)))
    runs = [
        _CampaignRun(
            campaign=c,
            matches=compile_audience(
                c.audience, path=c.path, line=c.where_line, limits=limits_of(settings)
            ),
            policy=policy_for(settings, c),
            done=store.done_for(c.name),
        )
        for c in campaigns
    ]
    by_name = {r.campaign.name: r for r in runs}
    out = _ChunkResult()  # where record() collects for the current chunk
    stamp = started

    def record(
        run: _CampaignRun,
        contact: Contact,
        occ: Occurrence,
        *,
        channel: str,
        status: str,
        artifact: str | None = None,
        message_id: str | None = None,
        reason: Reason | None = None,
        error: str | None = None,
        into: list[MessageRecord] | None = None,
    ) -> None:
        """Keep the message's row for the parent to record (or `into` another list)."""
        (out.records if into is None else into).append(
            MessageRecord(
                contact_id=contact.id,
                campaign=run.campaign.name,
                occurrence_key=occ.key,
                channel=channel,
                status=status,
                run_date=today,
                event_date=occ.date,
                earliest=occ.earliest,
                latest=occ.latest,
                essential=run.campaign.essential,
                effective_date=letter_arrival if channel == "letter" else today,
                updated_at=stamp,
                artifact=artifact,
                message_id=message_id,
                reason=reason.text if reason is not None else None,
                reason_code=reason.code.value if reason is not None else None,
                error=error,
            )
        )

    def account(
        run: _CampaignRun,
        summary: CampaignSummary,
        contact: Contact,
        occ: Occurrence,
        channel: str,
        made: Made,
        why: Reason | None,
        *,
        merged: bool = False,
        claimed: list[MessageRecord] | None = None,
    ) -> None:
        """Count and record what the outlet made of one message (`merged`: a letter that a
        housemate's letter covers). `claimed`: its row is in the ledger already (claimed
        before its file was written); only a failure is recorded, into that list."""
        name = run.campaign.name
        if made.failed:
            reason = made.reason or Reason(Code.RENDER_FAILED, channel)
            summary.failed += 1
            if made.problem is not None:
                summary.problems.append(made.problem)
            summary.held.append(HeldBack("failed", contact.id, contact.line, occ.key, reason))
            record(
                run,
                contact,
                occ,
                channel=channel,
                status="failed",
                reason=Reason(reason.code),
                error=reason.detail,
                into=claimed,
            )
            note(TraceEvent(contact.id, name, "failed", occ, channel, reason))
            return
        summary.sent += made.status == "sent"
        summary.default_language += not made.own_language
        if claimed is None:
            record(
                run,
                contact,
                occ,
                channel=channel,
                status=made.status,
                artifact=made.artifact,
                message_id=made.message_id,
            )
        if merged:
            summary.merged += 1
        elif channel == "letter":
            summary.letters += 1  # its "send" was noted when it was decided
        else:
            summary.emails += 1
            event = TraceEvent(
                contact.id, name, "send", occ, channel, why, own_language=made.own_language
            )
            note(event)

    def claim_rows(
        offers: Sequence[tuple[MessageKey, Made]],
        jobs: Mapping[MessageKey, tuple[_CampaignRun, Contact, Occurrence]],
        *,
        channel: str,
    ) -> set[MessageKey]:
        """Claim the messages an outlet is about to write (their final rows); the keys held."""
        rows: list[MessageRecord] = []
        for key, made in offers:
            run, contact, occ = jobs[key]
            record(
                run,
                contact,
                occ,
                channel=channel,
                status="rendered",
                artifact=made.artifact,
                message_id=made.message_id,
                into=rows,
            )
        return store.claim(rows, run_id=run_id)

    def already(summary: CampaignSummary, contact: Contact, occ: Occurrence) -> None:
        """A message another run claimed first (it makes it): counted, not made here."""
        summary.already += 1
        note(TraceEvent(contact.id, summary.name, "already", occ, status="rendered"))

    def make_emails(jobs: list[_EmailJob], slots: list[int]) -> None:
        """Render a chunk's emails, claim them in one transaction, write the granted ones."""
        nonlocal slot
        by_key = {(job[2].id, job[0].campaign.name, job[3].key): job for job in jobs}
        offered: set[MessageKey] = set()
        held: set[MessageKey] = set()

        def claim(offers: Sequence[tuple[MessageKey, Made]]) -> set[MessageKey]:
            offered.update(key for key, _ in offers)
            targets = {key: (by_key[key][0], by_key[key][2], by_key[key][3]) for key, _ in offers}
            granted = claim_rows(offers, targets, channel="email")
            held.update(granted)
            return granted

        made_all = outlet.emails([(job[0].campaign, job[2], job[3]) for job in jobs], claim=claim)
        unmade: list[MessageRecord] = []  # claimed, then the write failed
        places: list[int | None] = [*slots] if slots else [None] * len(jobs)
        for (key, (run, summary, contact, occ, why)), made, place in zip(
            by_key.items(), made_all, places, strict=True
        ):
            slot = place
            if key in held:
                account(run, summary, contact, occ, "email", made, why, claimed=unmade)
            elif key in offered:
                already(summary, contact, occ)
            else:
                account(run, summary, contact, occ, "email", made, why)
        slot = None
        # A second small transaction: the failed writes' rows, so the next run makes them.
        store.settle_claims(unmade, run_id=run_id)

    calendar = dates.calendar

    def due(campaign: Campaign, contact: Contact) -> list[Occurrence]:
        # A letter is posted delivery_days before its window: a campaign that can send one
        # looks that far ahead.
        end = dates.until or today
        if campaign.letter is not None:
            end += letter_time
        if calendar is not None:
            known = calendar.get((campaign.name, contact.id))
            if known is not None:
                return [o for o in known if o.earliest <= end and o.latest >= today]
        return occurrences_between(campaign, contact, start=today, end=end, date_format=fmt)

    def decide_day(run: _CampaignRun, occ: Occurrence, channel: str = "email") -> date:
        if dates.until is None:
            return today
        first, last = send_window(occ, channel=channel, delivery_days=delivery_days)
        return first_open_day(run.policy, start=max(first, today), end=last)

    def process(chunk: list[Contact]) -> _ChunkResult:
        """Decide for a chunk of contacts and hand the emails to the outlet; return what to record."""
        nonlocal out, stamp
        out = _ChunkResult()
        stamp = clock()
        summaries = out.summaries
        for run in runs:
            c = run.campaign
            summaries[c.name] = CampaignSummary(name=c.name, kind=c.kind, channel=c.channel)
        nonlocal buffering
        emails: list[_EmailJob] = []  # made together once the chunk is decided
        slots: list[int] = []  # with an observer: where each email's event goes
        buffering = observer is not None
        for index, contact in enumerate(chunk):
            candidates: list[Candidate] = []
            pending: dict[tuple[str, str], tuple[_CampaignRun, Occurrence, Reason | None]] = {}
            for run in runs:
                name = run.campaign.name
                summary = summaries[name]
                try:
                    if not run.matches(contact):
                        note(TraceEvent(contact.id, name, "not in audience"))
                        continue
                    occurrences = due(run.campaign, contact)
                except OutreachError as exc:
                    if isinstance(exc, WhereRefusedError):
                        raise  # a `where` the sandbox refuses is the campaign's error (exit 2)
                    # Listed as "could not be made", so counted as failed too, and placed in
                    # the contact's row of the contacts file.
                    summary.failed += 1
                    summary.problems.append(
                        exc.as_problem(contact_id=contact.id, campaign=name).in_file(contacts_file)
                    )
                    note(
                        TraceEvent(
                            contact.id,
                            name,
                            "bad data",
                            reason=Reason(Code.BAD_DATA, detail=str(exc)),
                        )
                    )
                    continue
                if not occurrences:
                    note(TraceEvent(contact.id, name, "not due"))
                    continue
                chosen = choose_channel(run.campaign, contact, suppressions)
                occurrences = [
                    occ
                    for occ in occurrences
                    if timing(
                        occ,
                        channel=chosen[0],
                        today=today,
                        until=dates.until or today,
                        delivery_days=delivery_days,
                    )
                    is not Timing.EARLY
                ]
                if not occurrences:
                    note(TraceEvent(contact.id, name, "not due"))
                for occ in occurrences:
                    channel, why = chosen
                    late = channel == "letter" and today > occ.latest - letter_time
                    instead = late and email_instead(run.campaign, contact, suppressions)
                    if instead and (dates.until or today) < occ.earliest:
                        continue  # too late for a letter, too early for its email
                    summary.due += 1
                    status = run.done.get((contact.id, occ.key))
                    if status is not None:
                        summary.already += 1
                        note(TraceEvent(contact.id, name, "already", occ, status=status))
                        continue
                    if late:
                        # Posted now it would arrive after its window: by email, or missed.
                        too_late = Reason(
                            Code.LETTER_TOO_LATE,
                            "letter",
                            detail=f"it takes {delivery_days} day(s); the window ends "
                            f"{occ.latest.isoformat()}",
                        )
                        if not instead:
                            summary.missed += 1
                            summary.held.append(
                                HeldBack("missed", contact.id, contact.line, occ.key, too_late)
                            )
                            record(
                                run, contact, occ, channel="letter", status="missed",
                                reason=too_late,
                            )  # fmt: skip
                            note(TraceEvent(contact.id, name, "missed", occ, "letter", too_late))
                            continue
                        channel, why = "email", too_late
                    if channel is None:
                        assert why is not None
                        summary.skipped[label(why)] += 1
                        summary.held.append(
                            HeldBack("skipped", contact.id, contact.line, occ.key, why)
                        )
                        record(
                            run,
                            contact,
                            occ,
                            channel=why.channel or first_choice(run.campaign, contact),
                            status="skipped",
                            reason=why,
                        )
                        note(TraceEvent(contact.id, name, "skipped", occ, why.channel, why))
                        continue
                    day = decide_day(run, occ, channel)
                    candidates.append(
                        Candidate(
                            contact_id=contact.id,
                            campaign=name,
                            occurrence_key=occ.key,
                            priority=run.campaign.priority,
                            essential=run.campaign.essential,
                            channel=channel,
                            latest=occ.latest,
                            effective_date=(
                                day + timedelta(days=delivery_days) if channel == "letter" else day
                            ),
                            policy=run.policy,
                        )
                    )
                    pending[(name, occ.key)] = (run, occ, why)
            if not candidates:
                continue
            past = history.get(contact.id, ())
            if dates.until is None:
                decisions = decide(candidates=candidates, history=past, today=today)
            else:  # over a span, each occurrence on its own day
                decisions = [
                    d
                    for cand in candidates
                    for d in decide(
                        candidates=[cand],
                        history=past,
                        today=decide_day(
                            *pending[(cand.campaign, cand.occurrence_key)][:2], cand.channel
                        ),
                    )
                ]
            for decision in decisions:
                cand = decision.candidate
                run, occ, why = pending[(cand.campaign, cand.occurrence_key)]
                summary = summaries[cand.campaign]
                if decision.action != "send":
                    summary.deferred += 1
                    reason = Reason(
                        decision.code or Code.MIN_GAP,
                        cand.channel,
                        detail=decision.reason,
                        blocking=decision.blocked_by.campaign if decision.blocked_by else None,
                    )
                    record(
                        run,
                        contact,
                        occ,
                        channel=cand.channel,
                        status="deferred",
                        reason=reason,
                    )
                    note(
                        TraceEvent(contact.id, cand.campaign, "deferred", occ, cand.channel, reason)
                    )
                    continue
                if decision.code is not None:
                    why = Reason(decision.code, cand.channel, detail=decision.reason)
                if cand.channel == "letter":
                    # Laid out at the end of the run: an observer hears of the decision now, in
                    # decision order, and of a failure (as "failed") when the layout refuses it.
                    note(TraceEvent(contact.id, cand.campaign, "send", occ, "letter", why))
                    out.letters.append((cand.campaign, index, occ, why))
                    continue
                emails.append((run, summary, contact, occ, why))
                if buffering:
                    slots.append(len(events))
                    events.append(None)
        if emails:
            make_emails(emails, slots)
        if buffering:
            buffering = False
            assert observer is not None
            for event in events:
                if event is not None:
                    observer(event)
            events.clear()
        return out

    letter_jobs: list[_LetterJob] = []
    pending_records: list[MessageRecord] = []

    def flush(force: bool = False) -> None:
        if pending_records and (force or len(pending_records) >= LEDGER_BATCH):
            store.record(pending_records, run_id=run_id)
            pending_records.clear()

    def take(chunk: list[Contact], result: _ChunkResult) -> list[Contact]:
        """Record a finished chunk (its files exist by now) and fold in its counts."""
        pending_records.extend(result.records)
        flush()
        for name, part in result.summaries.items():
            totals[name].merge(part)
        letter_jobs.extend(
            (by_name[name], chunk[index], occ, why) for name, index, occ, why in result.letters
        )
        if missed_lines:
            for contact in chunk:
                for held in missed_lines.get(contact.id, ()):
                    held.line = contact.line
        return chunk

    parallel = worker_count(workers, expected) if observer is None else 1
    try:
        chunks = _chunks(people)
        if parallel > 1:
            done = _in_workers(process, chunks, processes=parallel)
        else:
            done = ((chunk, process(chunk)) for chunk in chunks)
        finished = _Progress(
            (contact for chunk, result in done for contact in take(chunk, result)), expected
        )
        for _ in progress(finished) if progress is not None else finished:
            pass
        # The letters: rendered and queued here, laid out (and printed) by the outlet at once.
        out = _ChunkResult()
        stamp = clock()
        covered: dict[MessageKey, list[_LetterJob]] = {}  # a household's letter → the others
        for group in letter_groups(letter_jobs, merge=settings.letters.households == "merge"):
            run, contact, occ, why = group[0]
            household = Household(tuple(job[1] for job in group)) if len(group) > 1 else None
            failed = outlet.letter(run.campaign, contact, occ, household=household)
            if failed is not None:
                for job in group:
                    account(job[0], totals[run.campaign.name], *job[1:3], "letter", failed, job[3])
            elif household is not None:
                covered[(contact.id, run.campaign.name, occ.key)] = group[1:]
        jobs = {
            (c.id, run.campaign.name, o.key): (run, c, o, why) for run, c, o, why in letter_jobs
        }
        housemates_refused: set[MessageKey] = set()  # covered by a letter, held by another run
        letters_refused: list[MessageKey] = []  # another run holds these households' letters

        def claim_letters(offers: Sequence[tuple[MessageKey, Made]]) -> set[MessageKey]:
            # A household's letter first, then the housemates it covers (their rows point to
            # it): a letter another run holds is not printed, nor are its housemates claimed.
            granted = claim_rows(offers, {k: jobs[k][:3] for k, _ in offers}, channel="letter")
            letters_refused.extend(key for key, _ in offers if key not in granted)
            housemates = {
                (job[1].id, job[0].campaign.name, job[2].key): job[:3]
                for key in granted
                for job in covered.get(key, ())
            }
            offer = Made(status="rendered")
            kept = claim_rows([(k, offer) for k in housemates], housemates, channel="letter")
            housemates_refused.update(set(housemates) - kept)
            return granted

        for batch in outlet.finish(claim=claim_letters):
            stamp = clock()
            summary = totals[batch.campaign]
            for key, made in batch.made.items():
                run, contact, occ, why = jobs[key]
                account(run, summary, contact, occ, "letter", made, why)
                for job in covered.get(key, ()):
                    if (job[1].id, job[0].campaign.name, job[2].key) in housemates_refused:
                        already(summary, job[1], job[2])
                        continue
                    # Each member's row points to the one letter, and cadence counts it.
                    merged = not made.failed
                    account(job[0], summary, *job[1:3], "letter", made, job[3], merged=merged)
            summary.pages += batch.pages
            if batch.artifact is not None:
                summary.batch = batch.artifact
                summary.postage = batch.postage
        for key in letters_refused:
            run, contact, occ, why = jobs[key]
            for job in [(run, contact, occ, why), *covered.get(key, ())]:
                already(totals[run.campaign.name], job[1], job[2])
        pending_records.extend(out.records)
        flush(force=True)
    finally:
        outlet.close()
        if own_stream and stream is not None:
            stream.close()
    # The contacts file's problems go in the summary even when the run covers a few contacts.
    problems = list(stream.problems if stream is not None else workspace.contacts.problems)
    summary_obj = RunSummary(
        run_date=today,
        dry_run=False,
        delivery=settings.delivery.method,
        campaigns=[totals[c.name] for c in campaigns],
        problems=problems,
        outbox=str(outbox_folder(settings, today) / (shard.label if shard is not None else "")),
        started_at=started,
        contacts_file=str(settings.paths.contacts),
        default_locale=settings.default_locale,
    )
    summary_obj.ended_at = clock()
    store.end_run(run_id, ended_at=summary_obj.ended_at, counts=summary_obj.counts())
    return summary_obj


def perform_run(
    *,
    workspace: Workspace,
    today: date,
    now: datetime,
    clock: Clock | None = None,
    dry_run: bool = False,
    split: bool = False,
    workers: int | None = None,
    args: Sequence[str] = (),
    progress: Callable[[Iterator[Contact]], Iterator[Contact]] | None = None,
    after: Callable[[Ledger, RunSummary], None] | None = None,
    new_ledger: bool = False,
    letter_progress: LetterProgress | None = None,
    shard: Shard | None = None,
) -> RunSummary:
    """A whole run as `outreach run` and the daemon do it: lock, recover, render, record.

    A dry run is the same run on a private copy of the ledger (its writes vanish) with the
    render-only outlet: every email rendered, every letter laid out and window-checked,
    nothing written. `now` is the run's moment for its decisions and the messages' dates;
    `clock` the wall clock for its stamps (default: the real one). `after` runs once rendering
    is done, still under the lock, with the ledger and the run's summary (the send step of
    `run --send`); a dry run never calls it. `letter_progress` hears (campaign, letters laid
    out, letters in its batch) for a progress bar. `shard` runs one part of the contacts
    (outreach.shards) under that shard's lock, beside the other shards.
    """
    settings = workspace.settings
    tick: Clock = clock if clock is not None else (lambda: datetime.now(settings.tz))
    with ExitStack() as stack:
        # Opened first: a contacts file that cannot be read stops the run before anything is
        # written. The rows are read as the run goes.
        stream = stack.enter_context(closing(workspace.stream_contacts()))
        outlet: Outlet
        if dry_run:
            ledger = stack.enter_context(open_ledger(settings, readonly=True, shard=shard))
            outlet = RenderOnlyOutlet(
                settings=settings,
                campaigns=workspace.campaigns,
                today=today,
                now=now,
                workers=workers,
                progress=letter_progress,
            )
        else:
            stack.enter_context(workspace_lock(settings, now=tick(), shard=shard))
            ledger = stack.enter_context(open_ledger(settings, shard=shard))
            # A new or emptied ledger beside earlier output is refused (`--new-ledger` allows).
            check_ledger_start(ledger, settings=settings, new_ledger=new_ledger)
            recover_interrupted(ledger, settings=settings, now=tick())
            outlet = PublishOutlet(
                settings=settings,
                campaigns=workspace.campaigns,
                today=today,
                now=now,
                split=split,
                workers=workers,
                progress=letter_progress,
                shard=shard,
            )
        summary = execute_run(
            workspace=workspace,
            store=ledger,
            outlet=outlet,
            dates=RunDates(today),
            clock=tick,
            contacts=stream,
            args=args,
            progress=progress,
            workers=workers,
            shard=shard,
        )
        if dry_run:
            summary.dry_run = True
            summary.delivery = "none"
            summary.outbox = None
        if after is not None and not dry_run:
            after(ledger, summary)
        return summary
