"""One run: contacts → due occurrences → cadence → render → deliver → ledger → summary.

This is the only module that knows the whole order of steps.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import TYPE_CHECKING

from outreach.audience import compile_audience
from outreach.cadence import Candidate, PastMessage, decide
from outreach.campaigns import Campaign, Occurrence, due_occurrences
from outreach.config import CadencePolicy, Settings
from outreach.contacts import Contact, ContactStream
from outreach.deliver.base import Deliverer
from outreach.deliver.outbox import OutboxWriter, clean_temporaries
from outreach.deliver.printing import write_batch
from outreach.errors import OutreachError, Problem
from outreach.ledger import DONE_STATUSES, Ledger, MessageRecord, acquire_lock
from outreach.render.letter import LetterRenderer, missing_address_fields
from outreach.render.templates import EmailRenderer
from outreach.workspace import Workspace

if TYPE_CHECKING:
    from outreach.sending import SendSummary, Unsent

# Ledger rows are written in batches: one transaction per this many messages.
LEDGER_BATCH = 500


@dataclass
class CampaignSummary:
    """What one run did for one campaign."""

    name: str
    kind: str
    channel: str
    due: int = 0
    already: int = 0
    emails: int = 0
    letters: int = 0
    pages: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    missed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    batch: str | None = None

    def merge(self, other: CampaignSummary) -> None:
        """Add another part of the same campaign's run (a chunk of contacts) to this one."""
        for name in (
            "due",
            "already",
            "emails",
            "letters",
            "pages",
            "sent",
            "failed",
            "deferred",
            "missed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.update(other.skipped)
        self.problems.extend(other.problems)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "name": self.name,
            "kind": self.kind,
            "channel": self.channel,
            "due": self.due,
            "already_done": self.already,
            "emails": self.emails,
            "letters": self.letters,
            "pages": self.pages,
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
            "missed": self.missed,
            "skipped": dict(sorted(self.skipped.items())),
            "problems": [p.as_dict() for p in self.problems],
            "batch": self.batch,
        }


@dataclass
class RunSummary:
    """What one run did, for the CLI to print."""

    run_date: date
    dry_run: bool
    delivery: str
    campaigns: list[CampaignSummary]
    problems: list[Problem]
    outbox: str | None = None
    sending: SendSummary | None = None  # the send step of `run --send`
    # Emails left uncertain by an earlier send (delivery: smtp), for a person to check.
    uncertain_emails: list[Unsent] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Messages that should have gone out and did not (render or delivery failures)."""
        return sum(c.failed for c in self.campaigns)

    @property
    def uncertain(self) -> int:
        """Emails that may or may not have reached the server: a person should check."""
        return len(self.uncertain_emails)

    @property
    def exit_code(self) -> int:
        """0 all went well; 1 some messages failed (the rest were done)."""
        sending = self.sending.exit_code if self.sending is not None else 0
        return 1 if self.failed or sending else 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "date": self.run_date.isoformat(),
            "dry_run": self.dry_run,
            "delivery": self.delivery,
            "outbox": self.outbox,
            "campaigns": [c.as_dict() for c in self.campaigns],
            "problems": [p.as_dict() for p in self.problems],
            "send": self.sending.as_dict() if self.sending is not None else None,
            "uncertain": [u.as_dict() for u in self.uncertain_emails],
            "exit_code": self.exit_code,
        }


class _NoDelivery:
    """The dry run's deliverer: messages are rendered, then dropped."""

    def push(self, message: object) -> None:
        """Drop the message."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class _CampaignRun:
    """A campaign compiled for this run."""

    campaign: Campaign
    summary: CampaignSummary
    matches: Callable[[Contact], bool]
    policy: CadencePolicy
    statuses: Mapping[tuple[str, str], str]
    emails: EmailRenderer | None


def address_gaps(contact: Contact) -> list[str]:
    """The postal address fields a letter to this contact still needs (per its country)."""
    if "address" in contact.held_back:
        return ["country"]
    return list(missing_address_fields(contact))


def opted_out(contact: Contact, channel: str, suppressions: dict[str, frozenset[str]]) -> bool:
    """Whether the CSV or the suppression list forbids this channel for this contact."""
    if channel in contact.opt_out:
        return True
    for key in (contact.id.lower(), (contact.email or "").lower()):
        channels = suppressions.get(key)
        if channels and (channel in channels or "all" in channels):
            return True
    return False


def choose_channel(
    campaign: Campaign, contact: Contact, suppressions: dict[str, frozenset[str]]
) -> tuple[str | None, str | None]:
    """(channel, None) for the channel this message takes, or (None, reason) when none can."""
    if campaign.channel == "preferred":
        first = contact.preferred_channel or "email"
        order = [first, "letter" if first == "email" else "email"]
        if not campaign.fallback:
            order = order[:1]
    else:
        order = [campaign.channel]
    reasons = []
    for channel in order:
        if opted_out(contact, channel, suppressions):
            # An opt-out is an answer, not a gap to route around: no fallback past it.
            return None, f"opted out ({channel})"
        if channel == "email" and not contact.email:
            reasons.append("no usable email")
        elif channel == "letter" and address_gaps(contact):
            reasons.append("incomplete postal address")
        elif channel == "email" and campaign.email is None:
            reasons.append("campaign has no email")
        elif channel == "letter" and campaign.letter is None:
            reasons.append("campaign has no letter")
        else:
            return channel, None
    return None, reasons[0] if reasons else "no channel"


class _LedgerWriter:
    """Buffers ledger records and writes them a transaction at a time."""

    def __init__(self, ledger: Ledger, run_id: int | None) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self.pending: list[MessageRecord] = []

    def add(self, record: MessageRecord) -> None:
        self.pending.append(record)
        if len(self.pending) >= LEDGER_BATCH:
            self.flush()

    def extend(self, records: Iterable[MessageRecord]) -> None:
        for record in records:
            self.add(record)

    def flush(self) -> None:
        if self.pending:
            self.ledger.record(self.pending, run_id=self.run_id)
            self.pending = []


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """What the run decided for one contact and campaign (for `explain` and `plan`)."""

    contact_id: str
    campaign: str
    outcome: (
        str  # not in audience | not due | already | skipped | deferred | send | failed | bad data
    )
    occurrence: Occurrence | None = None
    channel: str | None = None
    reason: str | None = None


Tracer = Callable[[TraceEvent], None]
# The letters step: lays out and batches the letters a run decided to send.
LetterSink = Callable[..., None]


def policy_for(settings: Settings, campaign: Campaign) -> CadencePolicy:
    """The cadence policy of a campaign: config's, with the campaign's overrides."""
    return campaign.cadence.apply(settings.cadence) if campaign.cadence else settings.cadence


def load_history(
    ledger: Ledger, *, today: date, settings: Settings, campaigns: Sequence[Campaign]
) -> dict[str, list[PastMessage]]:
    """Messages that still weigh on each contact's cadence, from the ledger."""
    policies = [policy_for(settings, c) for c in campaigns] or [settings.cadence]
    reach = max(max(p.per_days, p.min_gap_days) for p in policies)
    pressure = ledger.contact_pressure(since=today - timedelta(days=reach))
    return {
        contact_id: [
            PastMessage(effective_date=day, campaign=name, essential=essential)
            for day, name, essential in rows
        ]
        for contact_id, rows in pressure.items()
    }


# Contacts are handled in chunks of this many; a chunk's rows are recorded once its files exist.
# A run reads the contacts file as it goes: only the chunks in flight are in memory.
CHUNK = 500
# Below this many contacts a run stays in one process: starting workers would cost more.
PARALLEL_MIN = 4000
# Chunks handed to the workers ahead of the one the parent waits for, per worker: enough to
# keep every worker busy, few enough that the contacts in memory stay a handful of chunks.
AHEAD = 2


@dataclass
class _ChunkResult:
    """What handling one chunk of contacts produced, to record in the parent process."""

    records: list[MessageRecord] = field(default_factory=list)
    # (campaign, index of the contact in its chunk, occurrence)
    letters: list[tuple[str, int, Occurrence]] = field(default_factory=list)
    summaries: dict[str, CampaignSummary] = field(default_factory=dict)


def _chunks(contacts: Iterable[Contact]) -> Iterator[list[Contact]]:
    """The contacts in lists of CHUNK, read only as each list is wanted."""
    remaining = iter(contacts)
    while chunk := list(itertools.islice(remaining, CHUNK)):
        yield chunk


def _worker_count(requested: int | None, contacts: int) -> int:
    if requested is not None:
        return max(1, requested)
    if contacts < PARALLEL_MIN:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


# The chunk function of the run in progress, for forked workers (fork: they inherit it, with
# the compiled templates and the ledger's answers, instead of receiving them pickled; only
# each chunk's contacts travel, pickled, as the parent reads them).
_ACTIVE: Callable[[list[Contact]], _ChunkResult] | None = None


def _run_chunk(chunk: list[Contact]) -> _ChunkResult:
    assert _ACTIVE is not None
    return _ACTIVE(chunk)


def _in_workers(
    process: Callable[[list[Contact]], _ChunkResult],
    chunks: Iterator[list[Contact]],
    *,
    processes: int,
) -> Iterator[tuple[list[Contact], _ChunkResult]]:
    """Run chunks in forked worker processes; yield each chunk with its result, in order.

    Rendering is CPU-bound Python, so one process per core is what makes a large run fast.
    Workers only render and write files; the parent alone writes the ledger, after each
    chunk's files exist. Workers inherit the workspace lock's open file, so a new run cannot
    start while a worker of a killed run is still writing. The parent reads the next chunk
    only when the workers have room for it: the contacts in memory are the chunks in flight.
    """
    global _ACTIVE
    _ACTIVE = process
    try:
        with multiprocessing.get_context("fork").Pool(processes=processes) as pool:
            flight: deque[tuple[list[Contact], AsyncResult[_ChunkResult]]] = deque()
            for chunk in chunks:
                flight.append((chunk, pool.apply_async(_run_chunk, (chunk,))))
                if len(flight) > AHEAD * processes:
                    done, result = flight.popleft()
                    yield done, result.get()
            while flight:
                done, result = flight.popleft()
                yield done, result.get()
    finally:
        _ACTIVE = None


class _Progress(Iterator[Contact]):
    """The contacts done so far, for a progress bar; its length hint is the expected total."""

    def __init__(self, contacts: Iterator[Contact], expected: int) -> None:
        self.contacts = contacts
        self.expected = expected

    def __next__(self) -> Contact:
        return next(self.contacts)

    def __length_hint__(self) -> int:
        return self.expected


@dataclass
class _Letter:
    run: _CampaignRun
    contact: Contact
    occurrence: Occurrence


def _skip_channel(campaign: Campaign, contact: Contact) -> str:
    """The channel a skipped message would have taken, for its ledger row."""
    if campaign.channel != "preferred":
        return campaign.channel
    return contact.preferred_channel or "email"


# A failed email waits for the send step to retry it from its file; it is not rendered again.
_RENDER_DONE = DONE_STATUSES | {"failed"}


def execute_run(
    *,
    workspace: Workspace,
    ledger: Ledger,
    deliverer: Deliverer | None,
    today: date,
    now: datetime,
    args: Sequence[str] = (),
    progress: Callable[[Iterator[Contact]], Iterator[Contact]] | None = None,
    simulate: bool = False,
    trace: Tracer | None = None,
    contacts: Sequence[Contact] | None = None,
    stream: ContactStream | None = None,
    letters: LetterSink | None = None,
    history: Mapping[str, Sequence[PastMessage]] | None = None,
    statuses: Mapping[str, Mapping[tuple[str, str], str]] | None = None,
    workers: int | None = None,
) -> RunSummary:
    """Run the workspace's campaigns for `today` and record every decision in the ledger.

    A None deliverer renders and drops (a dry run on a throwaway ledger). `simulate` decides
    and records without rendering anything (for `plan`). `trace` sees every decision.
    `history` stands in for `load_history` (what weighs on each contact's cadence) and
    `statuses` (campaign → (contact_id, occurrence_key) → status) for `Ledger.statuses_for`,
    for a caller that keeps them up to date itself across many simulated days.
    `workers` processes render and write the messages of a large run (default: one per core,
    for runs of PARALLEL_MIN contacts or more).
    `contacts` runs only these (the contacts file's problems still go in the summary);
    otherwise the run reads `stream` (default: the workspace's), a chunk at a time, and
    reports its problems.
    """
    settings = workspace.settings
    dry_run = deliverer is None
    people: Iterable[Contact]
    own_stream = contacts is None and stream is None
    if contacts is not None:
        people, expected = contacts, len(contacts)
    else:
        if stream is None:
            stream = workspace.stream_contacts()  # before the run begins: it may fail
        people, expected = stream, stream.size_hint
    run_id = ledger.begin_run(run_date=today, started_at=now, args=args)
    writer = _LedgerWriter(ledger, run_id)
    sink: Deliverer = deliverer if deliverer is not None else _NoDelivery()  # type: ignore[assignment]
    fmt = settings.contacts.date_format
    letter_arrival = today + timedelta(days=settings.letters.delivery_days)
    suppressions = ledger.suppressions()
    if history is None:
        history = load_history(
            ledger, today=today, settings=settings, campaigns=workspace.campaigns
        )
    runs = [
        _CampaignRun(
            campaign=c,
            summary=CampaignSummary(name=c.name, kind=c.kind, channel=c.channel),
            matches=compile_audience(c.audience, path=c.path),
            policy=policy_for(settings, c),
            statuses=ledger.statuses_for(c.name) if statuses is None else statuses.get(c.name, {}),
            emails=(
                EmailRenderer(settings=settings, campaign=c, today=today, now=now)
                if c.email and not simulate
                else None
            ),
        )
        for c in workspace.campaigns
    ]
    note: Tracer = trace if trace is not None else (lambda event: None)
    out = _ChunkResult()  # where record() and the letters collect for the current chunk

    def record(
        run: _CampaignRun,
        contact: Contact,
        occ: Occurrence,
        *,
        channel: str,
        status: str,
        artifact: str | None = None,
        message_id: str | None = None,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        out.records.append(
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
                updated_at=now,
                artifact=artifact,
                message_id=message_id,
                reason=reason,
                error=error,
            )
        )

    def fail(
        run: _CampaignRun, contact: Contact, occ: Occurrence, channel: str, exc: OutreachError
    ) -> None:
        run.summary.failed += 1
        run.summary.problems.append(
            exc.as_problem(contact_id=contact.id, campaign=run.campaign.name)
        )
        record(
            run,
            contact,
            occ,
            channel=channel,
            status="skipped",
            reason="render failed",
            error=str(exc),
        )
        note(TraceEvent(contact.id, run.campaign.name, "failed", occ, channel, str(exc)))

    def process(chunk: list[Contact]) -> _ChunkResult:
        """Decide, render and deliver for a chunk of contacts; return what to record."""
        nonlocal out
        out = _ChunkResult()
        for run in runs:
            run.summary = out.summaries[run.campaign.name] = CampaignSummary(
                name=run.campaign.name, kind=run.campaign.kind, channel=run.campaign.channel
            )
        for index, contact in enumerate(chunk):
            candidates: list[Candidate] = []
            pending: dict[tuple[str, str], tuple[_CampaignRun, Occurrence]] = {}
            for run in runs:
                summary = run.summary
                name = run.campaign.name
                try:
                    if not run.matches(contact):
                        note(TraceEvent(contact.id, name, "not in audience"))
                        continue
                    occurrences = due_occurrences(
                        run.campaign, contact, today=today, date_format=fmt
                    )
                except OutreachError as exc:
                    summary.problems.append(
                        exc.as_problem(contact_id=contact.id, campaign=run.campaign.name)
                    )
                    note(TraceEvent(contact.id, name, "bad data", reason=str(exc)))
                    continue
                if not occurrences:
                    note(TraceEvent(contact.id, name, "not due"))
                for occ in occurrences:
                    summary.due += 1
                    status = run.statuses.get((contact.id, occ.key))
                    if status in _RENDER_DONE:
                        summary.already += 1
                        note(TraceEvent(contact.id, name, "already", occ, reason=status))
                        continue
                    channel, reason = choose_channel(run.campaign, contact, suppressions)
                    if channel is None:
                        reason = reason or "no channel"
                        summary.skipped[reason] += 1
                        record(
                            run,
                            contact,
                            occ,
                            channel=_skip_channel(run.campaign, contact),
                            status="skipped",
                            reason=reason,
                        )
                        note(TraceEvent(contact.id, name, "skipped", occ, reason=reason))
                        continue
                    candidates.append(
                        Candidate(
                            contact_id=contact.id,
                            campaign=name,
                            occurrence_key=occ.key,
                            priority=run.campaign.priority,
                            essential=run.campaign.essential,
                            channel=channel,
                            latest=occ.latest,
                            effective_date=letter_arrival if channel == "letter" else today,
                            policy=run.policy,
                        )
                    )
                    pending[(name, occ.key)] = (run, occ)
            if not candidates:
                continue
            past = history.get(contact.id, ())
            for decision in decide(candidates=candidates, history=past, today=today):
                cand = decision.candidate
                run, occ = pending[(cand.campaign, cand.occurrence_key)]
                summary = run.summary
                if decision.action != "send":
                    summary.deferred += 1
                    record(
                        run,
                        contact,
                        occ,
                        channel=cand.channel,
                        status="deferred",
                        reason=decision.reason,
                    )
                    note(
                        TraceEvent(
                            contact.id,
                            cand.campaign,
                            "deferred",
                            occ,
                            cand.channel,
                            decision.reason,
                        )
                    )
                    continue
                note(
                    TraceEvent(
                        contact.id, cand.campaign, "send", occ, cand.channel, decision.reason
                    )
                )
                if simulate:
                    summary.letters += cand.channel == "letter"
                    summary.emails += cand.channel == "email"
                    record(run, contact, occ, channel=cand.channel, status="rendered")
                elif cand.channel == "letter":
                    out.letters.append((cand.campaign, index, occ))
                else:
                    _email(run, contact, occ, sink=sink, record=record, fail=fail, dry_run=dry_run)
        return out

    totals = {
        r.campaign.name: CampaignSummary(
            name=r.campaign.name, kind=r.campaign.kind, channel=r.campaign.channel
        )
        for r in runs
    }
    letter_jobs: list[_Letter] = []
    by_name = {r.campaign.name: r for r in runs}

    def take(chunk: list[Contact], result: _ChunkResult) -> list[Contact]:
        """Record a finished chunk (its files exist by now) and fold in its counts."""
        writer.extend(result.records)
        for name, part in result.summaries.items():
            totals[name].merge(part)
        letter_jobs.extend(
            _Letter(by_name[name], chunk[index], occ) for name, index, occ in result.letters
        )
        return chunk

    chunks = _chunks(people)
    parallel = _worker_count(workers, expected) if not simulate and trace is None else 1
    try:
        if parallel > 1:
            done = _in_workers(process, chunks, processes=parallel)
        else:
            done = ((chunk, process(chunk)) for chunk in chunks)
        finished = _Progress(
            (contact for chunk, result in done for contact in take(chunk, result)), expected
        )
        for _ in progress(finished) if progress is not None else finished:
            pass
        for run in runs:
            run.summary = totals[run.campaign.name]  # the letters step counts into the totals
        out = _ChunkResult()
        if letter_jobs and letters is not None:
            letters(letter_jobs, record=record, fail=fail)
        elif letter_jobs:
            for job in letter_jobs:
                job.run.summary.letters += 1
        writer.extend(out.records)
        writer.flush()
    finally:
        sink.close()
        if own_stream and stream is not None:
            stream.close()
    summary_obj = RunSummary(
        run_date=today,
        dry_run=dry_run,
        delivery="none" if dry_run else settings.delivery.method,
        campaigns=[totals[r.campaign.name] for r in runs],
        problems=list(workspace.contacts.problems if stream is None else stream.problems),
        outbox=None if dry_run else str(Path(settings.paths.out) / "outbox" / today.isoformat()),
    )
    ledger.end_run(run_id, ended_at=now, counts=summary_obj.as_dict())
    return summary_obj


def _email(
    run: _CampaignRun,
    contact: Contact,
    occ: Occurrence,
    *,
    sink: Deliverer,
    record: Callable[..., None],
    fail: Callable[..., None],
    dry_run: bool,
) -> None:
    """Render one email and hand it to the deliverer; record the outcome."""
    assert run.emails is not None
    try:
        message = run.emails.render(contact, occ)
    except OutreachError as exc:
        fail(run, contact, occ, "email", exc)
        return
    result = sink.push(message)
    summary = run.summary
    if dry_run or result is None:
        summary.emails += 1
        return
    if result.status == "failed":
        # The file could not be written (disk full, permissions): nothing exists, so the
        # message is left to be rendered again by the next run rather than marked done.
        summary.failed += 1
        summary.problems.append(
            Problem(
                message=result.error or "could not write the message",
                contact_id=contact.id,
                campaign=run.campaign.name,
            )
        )
        record(
            run,
            contact,
            occ,
            channel="email",
            status="skipped",
            reason="write failed",
            error=result.error,
        )
        return
    summary.emails += 1
    summary.sent += result.status == "sent"
    record(
        run,
        contact,
        occ,
        channel="email",
        status=result.status,
        artifact=result.artifact,
        message_id=message.message_id,
        error=result.error,
    )


def letters_step(
    *,
    settings: Settings,
    today: date,
    now: datetime,
    split: bool,
    dry_run: bool,
    workers: int | None = None,
    # hook: a progress bar hears (campaign, letters laid out, letters in the batch) (issue 13)
    progress: Callable[[str, int, int], None] | None = None,
) -> LetterSink:
    """The letters step of a run: lay out each campaign's letters, print one batch, record them."""

    def step(
        jobs: Sequence[_Letter], *, record: Callable[..., None], fail: Callable[..., None]
    ) -> None:
        by_campaign: dict[str, list[_Letter]] = {}
        for job in jobs:
            by_campaign.setdefault(job.run.campaign.name, []).append(job)
        for name, campaign_jobs in by_campaign.items():
            run = campaign_jobs[0].run
            try:
                renderer = LetterRenderer(
                    settings=settings, campaign=run.campaign, today=today, now=now
                )
            except OutreachError as exc:
                for job in campaign_jobs:
                    fail(job.run, job.contact, job.occurrence, "letter", exc)
                continue
            rendered = []
            for job in campaign_jobs:
                try:
                    rendered.append(renderer.render(job.contact, job.occurrence))
                except OutreachError as exc:
                    fail(job.run, job.contact, job.occurrence, "letter", exc)
            if dry_run:
                run.summary.letters += len(rendered)
                continue
            if not rendered:
                continue
            batch = write_batch(
                letters=rendered,
                out_dir=settings.out_dir,
                run_date=today,
                campaign=name,
                duplex=settings.letters.duplex,
                sort_by_postal_code=settings.letters.sort_by_postal_code,
                split=split,
                workers=workers or 2,
                # hook: the letters' progress, per campaign (issue 13)
                progress=functools.partial(progress, name) if progress is not None else None,
            )
            by_key = {(j.contact.id, j.occurrence.key): j for j in campaign_jobs}
            for failure in batch.failures:
                job = by_key[(failure.contact_id, failure.occurrence_key)]
                fail(job.run, job.contact, job.occurrence, "letter", failure.error)
            if batch.pdf_path is None:
                continue
            artifact = batch.pdf_path.relative_to(settings.root).as_posix()
            for printed in batch.letters:
                job = by_key[(printed.contact_id, printed.occurrence_key)]
                record(
                    job.run,
                    job.contact,
                    job.occurrence,
                    channel="letter",
                    status="rendered",
                    artifact=artifact,
                )
            run.summary.letters += len(batch.letters)
            run.summary.pages += batch.pages
            run.summary.batch = artifact

    return step


def recover_interrupted(ledger: Ledger, *, settings: Settings, now: datetime) -> int:
    """Undo what runs killed midway left behind; return how many stray files were removed.

    A run writes a message's file before its ledger row, so a killed run can leave files the
    ledger does not know. They are removed here, so that a rerun (on any date) leaves each
    message exactly once in the outbox. Call it only while holding the workspace lock.
    """
    removed = len(clean_temporaries(settings.out_dir))
    ledger.settle_interrupted(now=now)
    for run_id, run_date in ledger.interrupted_runs():
        known = ledger.artifacts_of_run_date(run_date)
        day_dir = settings.out_dir / "outbox" / run_date.isoformat()
        if day_dir.is_dir():
            for path in day_dir.glob("*/*.eml"):
                if path.relative_to(settings.root).as_posix() not in known:
                    path.unlink()
                    removed += 1
        # A letter batch is written whole, then its rows: a batch the ledger does not know
        # was never recorded and will be printed again, so it goes (with its manifest and
        # one-letter PDFs) rather than reach the printer twice.
        letters_dir = settings.out_dir / "letters" / run_date.isoformat()
        if letters_dir.is_dir():
            for pdf in letters_dir.glob("*.pdf"):
                if pdf.relative_to(settings.root).as_posix() in known:
                    continue
                pdf.unlink()
                pdf.with_suffix(".manifest.csv").unlink(missing_ok=True)
                split_dir = pdf.with_suffix("")
                if split_dir.is_dir():
                    shutil.rmtree(split_dir)
                removed += 1
        ledger.end_run(run_id, ended_at=now, counts={"interrupted": True})
    return removed


def perform_run(
    *,
    workspace: Workspace,
    today: date,
    now: datetime,
    dry_run: bool = False,
    split: bool = False,
    workers: int | None = None,
    args: Sequence[str] = (),
    progress: Callable[[Iterator[Contact]], Iterator[Contact]] | None = None,
    after: Callable[[Ledger, RunSummary], None] | None = None,
    # hook: the letters step's progress bar (issue 13)
    letter_progress: Callable[[str, int, int], None] | None = None,
) -> RunSummary:
    """A whole run as `outreach run` and the daemon do it: lock, recover, render, record.

    `after` runs once rendering is done, still under the lock, with the ledger and the run's
    summary (the send step of `run --send`); a dry run never calls it.
    """
    settings = workspace.settings
    letters = letters_step(
        settings=settings,
        today=today,
        now=now,
        split=split,
        dry_run=dry_run,
        workers=workers,
        progress=letter_progress,  # hook: issue 13
    )
    deliverer: Deliverer | None = None
    with ExitStack() as stack:
        # Opened first: a contacts file that cannot be read stops the run before anything is
        # written. The rows are read as the run goes.
        stream = stack.enter_context(closing(workspace.stream_contacts()))
        if dry_run:
            # A private copy of the ledger: the run goes through every step and nothing
            # reaches the disk.
            ledger = stack.enter_context(Ledger.open(settings.ledger_path, readonly=True))
        else:
            stack.enter_context(acquire_lock(settings.state_dir, now=now))
            ledger = stack.enter_context(Ledger.open(settings.ledger_path))
            recover_interrupted(ledger, settings=settings, now=now)
            deliverer = OutboxWriter(root=settings.root, out_dir=settings.out_dir, run_date=today)
        ledger.mark_missed(today=today, now=now)
        summary = execute_run(
            workspace=workspace,
            ledger=ledger,
            deliverer=deliverer,
            today=today,
            now=now,
            args=args,
            progress=progress,
            stream=stream,
            letters=letters,
            workers=workers,
        )
        if after is not None and not dry_run:
            after(ledger, summary)
        return summary
