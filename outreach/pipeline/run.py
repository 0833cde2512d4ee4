"""One run: contacts → decide → apply (outlet, store) → letters → summary.

A run depends on two small interfaces: a *store* (`outreach.ledger.store.RunStore`: the ledger,
or a rehearsal's in-memory one) and an *outlet* (`outreach.deliver.outlets`: publish,
render-only, count-only). `decide` (pipeline.decide) is pure; `apply` (pipeline.apply)
claims each message in the store (its final row, only where no run has made it) before the
publish outlet writes its file, so two runs never both make one message. The rehearsals — dry
run, validate, plan, explain — are this run with another store or outlet, and an observer that
reads each decision.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from outreach.contacts import Contact, ContactStream
from outreach.deliver.outlets import (
    LetterProgress,
    Outlet,
    PublishOutlet,
    RenderOnlyOutlet,
    outbox_folder,
)
from outreach.donotcontact import LoadedLists, load_lists
from outreach.i18n import _
from outreach.ledger import Ledger, MessageRecord, open_ledger, read_ledger, workspace_lock
from outreach.ledger.backend import ledger_exists
from outreach.ledger.rebuild import check_ledger_start
from outreach.ledger.recovery import recover_interrupted
from outreach.ledger.store import RunStore
from outreach.model.reasons import Code, Reason
from outreach.pipeline.apply import Clock, Observer, Scene, Tally, apply
from outreach.pipeline.decide import CampaignRule, Decision, Knowledge, RunDates, decide_chunk
from outreach.pipeline.letters import LetterJob, make_letters
from outreach.pipeline.parallel import ordered_map
from outreach.pipeline.summary import CampaignSummary, HeldBack, RunSummary
from outreach.rules.audience import campaign_audience
from outreach.rules.cadence import policy_for, reach
from outreach.rules.known import Ledgered, address_fingerprint, as_known
from outreach.rules.legal import FORGOTTEN, LegalPolicy
from outreach.shards import Shard
from outreach.workspace import Workspace, display_path

__all__ = ["RunDates", "RunOptions", "RunSummary", "execute_run", "perform_run"]

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

Progress = Callable[[Iterator[Contact]], Iterator[Contact]]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run goes about it: what it is recorded as, who watches, how many processes."""

    args: Sequence[str] = ()  # the command line, kept with the run's row
    progress: Progress | None = None  # wraps the contacts done, for a progress bar
    # Processes that render a large run's emails (default: one per core from PARALLEL_MIN
    # contacts; an observer keeps the run in one process, where it can read every decision).
    workers: int | None = None
    shard: Shard | None = None  # only the contacts whose id hashes into it (outreach.shards)


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


class _Progress(Iterator[Contact]):
    """The contacts done so far, for a progress bar; its length hint is the expected total."""

    def __init__(self, contacts: Iterator[Contact], expected: int) -> None:
        self.contacts = contacts
        self.expected = expected

    def __next__(self) -> Contact:
        return next(self.contacts)

    def __length_hint__(self) -> int:
        return self.expected


@dataclass(frozen=True, slots=True)
class _People:
    """The contacts a run goes through, and the stream they come from (for its problems)."""

    contacts: Iterable[Contact]
    expected: int
    stream: ContactStream | None
    owned: bool  # the run opened the stream: it closes it


def _people(
    workspace: Workspace, contacts: Iterable[Contact] | None, shard: Shard | None
) -> _People:
    """The run's contacts: these, or the workspace's contacts file read a chunk at a time."""
    stream: ContactStream | None = None
    if contacts is None:
        stream = workspace.stream_contacts()  # before the run begins: it may fail
        people = _People(stream, stream.size_hint, stream, owned=True)
    elif isinstance(contacts, ContactStream):
        people = _People(contacts, contacts.size_hint, contacts, owned=False)
    else:
        size = len(contacts) if isinstance(contacts, Sequence) else 0
        people = _People(contacts, size, None, owned=False)
    if shard is None:
        return people
    return _People(
        (contact for contact in people.contacts if shard.contains(contact.id)),
        people.expected // shard.count,
        people.stream,
        people.owned,
    )


def _missed_reason(record: MessageRecord) -> Reason:
    closed = record.latest.isoformat() if record.latest else "?"
    detail = _("its window closed on {date} while it was deferred").format(date=closed)
    return Reason(Code.WINDOW_CLOSED, record.channel, detail=detail)


@dataclass
class _Ledger:
    """What the parent process keeps of a run in progress: totals, rows to record, letters."""

    scene: Scene
    totals: dict[str, CampaignSummary]
    # Windows that closed while their messages waited: held back as missed, by contact.
    missed: dict[str, list[HeldBack]] = field(default_factory=dict)
    pending: list[MessageRecord] = field(default_factory=list)
    letters: list[LetterJob] = field(default_factory=list)
    # contact id → (address_confirmed date, fingerprint) as the ledger holds them
    confirmed: dict[str, tuple[date, str]] = field(default_factory=dict)

    def flush(self, *, force: bool = False) -> None:
        """Record the rows kept so far, in batches of LEDGER_BATCH."""
        if self.pending and (force or len(self.pending) >= LEDGER_BATCH):
            self.scene.store.record(self.pending, run_id=self.scene.run_id)
            self.pending.clear()

    def take(self, chunk: list[Contact], tally: Tally) -> list[Contact]:
        """Record a finished chunk (its files exist by now) and fold in its counts."""
        self.pending.extend(tally.records)
        self.flush()
        self.confirm(chunk)
        for name, part in tally.summaries.items():
            self.totals[name].merge(part)
        self.letters.extend((chunk[index], decision) for index, decision in tally.letters)
        if self.missed:
            for contact in chunk:
                for held in self.missed.get(contact.id, ()):
                    held.line = contact.line
        return chunk

    def confirm(self, chunk: list[Contact]) -> None:
        """Keep the address of each confirmation first seen (or given a new date): the
        confirmation covers that address only (rules.known)."""
        new: list[tuple[str, date, str]] = []
        for contact in chunk:
            day = contact.address_confirmed
            if day is not None and self.confirmed.get(contact.id, (None, ""))[0] != day:
                new.append((contact.id, day, address_fingerprint(contact)))
        if new:
            self.scene.store.confirm_addresses(new, now=self.scene.clock())
            self.confirmed.update((cid, (day, print_)) for cid, day, print_ in new)

    def close_windows(self, *, started: datetime) -> None:
        """Deferred messages whose window closed before today: missed, counted by this run."""
        scene = self.scene
        rows = scene.store.close_windows(today=scene.today, now=started, run_id=scene.run_id)
        for row in rows:
            reason = _missed_reason(row)
            if scene.observer is not None:
                scene.observer(
                    Decision(
                        row.contact_id,
                        row.campaign,
                        "missed",
                        None,
                        row.channel,
                        reason,
                        occurrence_key=row.occurrence_key,
                    )
                )
            summary = self.totals.get(row.campaign)
            if summary is None:
                continue  # a campaign this run does not cover: dated by this run all the same
            summary.missed += 1
            held = HeldBack("missed", row.contact_id, None, row.occurrence_key, reason)
            summary.held.append(held)
            self.missed.setdefault(row.contact_id, []).append(held)


def _knowledge(workspace: Workspace, store: RunStore, dates: RunDates) -> Knowledge:
    """What the store and the campaigns tell before the run makes anything."""
    settings, campaigns = workspace.settings, workspace.campaigns
    rules = [
        CampaignRule(
            campaign=c,
            matches=campaign_audience(c, settings),
            policy=policy_for(settings, c),
            done=store.done_for(c.name),
        )
        for c in campaigns
    ]
    since = dates.today - timedelta(days=reach(settings, campaigns))
    suppressions = store.suppressions()
    return Knowledge(
        rules=rules,
        suppressions=suppressions,
        history=store.history(since=since),
        dates=dates,
        delivery_days=settings.letters.delivery_days,
        date_format=settings.contacts.date_format,
        legal=LegalPolicy.of(settings.legal, date_format=settings.contacts.date_format),
        forgotten=frozenset(key for key in suppressions if key.startswith(FORGOTTEN)),
        forget_salt=settings.coupon.secret,
        known=ledgered(store),
    )


def ledgered(store: RunStore) -> Ledgered:
    """What the ledger adds to the contacts' rows (rules.known), read once, in bulk."""
    return Ledgered(visits=store.latest_visits(), confirmations=store.address_confirmations())


def known_contacts(workspace: Workspace, contacts: Sequence[Contact]) -> list[Contact]:
    """The contacts as a run knows them (rules.known), for a rehearsal that reads them before
    it runs (plan's calendar, explain's answers): what it says, the run does."""
    settings = workspace.settings
    if not ledger_exists(settings):
        return list(contacts)
    known = read_ledger(settings, ledgered)
    if not (known.visits or known.confirmations):
        return list(contacts)
    fmt = settings.contacts.date_format
    return [as_known(contact, known, date_format=fmt) for contact in contacts]


def execute_run(
    *,
    workspace: Workspace,
    store: RunStore,
    outlet: Outlet,
    dates: RunDates,
    clock: Clock,
    observer: Observer | None = None,
    contacts: Iterable[Contact] | None = None,
    options: RunOptions = RunOptions(),
) -> RunSummary:
    """Decide for every contact and campaign, hand what goes to the outlet, record it all.

    `contacts` runs only these (a list: explain, plan); by default the run reads the
    workspace's contacts file a chunk at a time and reports its problems. `clock` tells the
    wall-clock time, for the run's and the records' stamps.
    """
    settings = workspace.settings
    people = _people(workspace, contacts, options.shard)
    # Read before the run begins: a list that cannot be read stops it with nothing written.
    lists = _do_not_contact(workspace)
    started = clock()
    run_id = store.begin_run(run_date=dates.today, started_at=started, args=options.args)
    knowing = _knowledge(workspace, store, dates)
    if lists is not None:
        knowing = replace(knowing, lists=lists.lists)
    scene = Scene(
        store=store,
        outlet=outlet,
        run_id=run_id,
        today=dates.today,
        letter_arrival=dates.today + timedelta(days=settings.letters.delivery_days),
        contacts_file=display_path(settings.contacts_path),
        rules={rule.campaign.name: rule for rule in knowing.rules},
        clock=clock,
        observer=observer,
    )
    kept = _Ledger(
        scene,
        {name: _fresh(rule) for name, rule in scene.rules.items()},
        confirmed=dict(knowing.known.confirmations),
    )
    kept.close_windows(started=started)
    try:
        _go_through(people, kept=kept, knowing=knowing, options=options)
        merge = settings.letters.households == "merge"
        kept.pending.extend(
            make_letters(kept.letters, scene=scene, totals=kept.totals, merge=merge)
        )
        kept.flush(force=True)
    finally:
        outlet.close()
        if people.owned and people.stream is not None:
            people.stream.close()
    return _summary(
        workspace, kept, people=people, started=started, shard=options.shard, lists=lists
    )


def _do_not_contact(workspace: Workspace) -> LoadedLists | None:
    """The do-not-contact lists, when the run has marketing campaigns to check them for."""
    settings = workspace.settings
    if not settings.suppression_lists:
        return None
    if not any(c.purpose == "marketing" for c in workspace.campaigns):
        return None
    return load_lists(settings.suppression_lists, root=settings.root)


def _fresh(rule: CampaignRule) -> CampaignSummary:
    c = rule.campaign
    return CampaignSummary(name=c.name, kind=c.kind, channel=c.channel)


def _go_through(people: _People, *, kept: _Ledger, knowing: Knowledge, options: RunOptions) -> None:
    """Decide and apply chunk by chunk, in worker processes where it pays."""
    scene = kept.scene

    def process(chunk: list[Contact]) -> Tally:
        return apply(decide_chunk(chunk, knowing), scene=scene)

    parallel = worker_count(options.workers, people.expected) if scene.observer is None else 1
    chunks = _chunks(people.contacts)
    with ExitStack() as stack:
        done: Iterator[tuple[list[Contact], Tally]]
        if parallel > 1:
            # Rendering is CPU-bound Python: one process per core makes a large run fast.
            # Workers render, claim the chunk's emails in the ledger (on a connection of their
            # own) and write the granted files; the parent records the rest. Forked, they
            # inherit `process` with the compiled templates and the store's answers; only each
            # chunk's contacts travel. The parent reads the next chunk only when the workers
            # have room for it; the workers die with the run (pipeline.parallel).
            done = stack.enter_context(
                ordered_map(process, chunks, processes=parallel, ahead=AHEAD)
            )
        else:
            done = ((chunk, process(chunk)) for chunk in chunks)
        finished = _Progress(
            (contact for chunk, tally in done for contact in kept.take(chunk, tally)),
            people.expected,
        )
        for _ in options.progress(finished) if options.progress is not None else finished:
            pass


def _summary(
    workspace: Workspace,
    kept: _Ledger,
    *,
    people: _People,
    started: datetime,
    shard: Shard | None,
    lists: LoadedLists | None = None,
) -> RunSummary:
    """The run's summary, its end recorded in the store."""
    settings, scene = workspace.settings, kept.scene
    # The contacts file's problems go in the summary even when the run covers a few contacts.
    stream = people.stream
    problems = list(stream.problems if stream is not None else workspace.contacts.problems)
    if lists is not None:
        problems.extend(lists.problems)
    summary = RunSummary(
        run_date=scene.today,
        dry_run=False,
        delivery=settings.delivery.method,
        campaigns=[kept.totals[c.name] for c in workspace.campaigns],
        problems=problems,
        outbox=str(outbox_folder(settings, scene.today) / (shard.label if shard else "")),
        started_at=started,
        contacts_file=str(settings.paths.contacts),
        default_locale=settings.default_locale,
        suppression_lists=lists.changed if lists is not None else {},
    )
    summary.ended_at = scene.clock()
    scene.store.end_run(scene.run_id, ended_at=summary.ended_at, counts=summary.counts())
    return summary


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A whole run as `outreach run` and the daemon ask for it."""

    today: date
    now: datetime  # the run's moment, for its decisions and the messages' dates
    clock: Clock | None = None  # the wall clock for its stamps (default: the real one)
    split: bool = False  # one PDF per letter too
    new_ledger: bool = False  # a new or emptied ledger beside earlier output is allowed
    options: RunOptions = RunOptions()
    letter_progress: LetterProgress | None = None  # (campaign, laid out, in batch)
    # Runs once rendering is done, still under the lock (the send step of `run --send`).
    after: Callable[[Ledger, RunSummary], None] | None = None


def perform_run(workspace: Workspace, request: RunRequest) -> RunSummary:
    """A whole run as `outreach run` and the daemon do it: lock, recover, render, record."""
    settings = workspace.settings
    tick: Clock = request.clock or (lambda: datetime.now(settings.tz))
    shard = request.options.shard
    with ExitStack() as stack:
        # Opened first: a contacts file that cannot be read stops the run before anything is
        # written. The rows are read as the run goes.
        stream = stack.enter_context(closing(workspace.stream_contacts()))
        stack.enter_context(workspace_lock(settings, now=tick(), shard=shard))
        ledger = stack.enter_context(open_ledger(settings, shard=shard))
        check_ledger_start(ledger, settings=settings, new_ledger=request.new_ledger)
        recover_interrupted(ledger, settings=settings, now=tick())
        outlet = PublishOutlet(
            settings=settings,
            campaigns=workspace.campaigns,
            today=request.today,
            now=request.now,
            split=request.split,
            workers=request.options.workers,
            progress=request.letter_progress,
            shard=shard,
        )
        previous = ledger.runs(limit=1)
        summary = execute_run(
            workspace=workspace,
            store=ledger,
            outlet=outlet,
            dates=RunDates(request.today),
            clock=tick,
            contacts=stream,
            options=request.options,
        )
        since = previous[0]["started_at"] if previous else None
        summary.came_back, summary.replies_waiting = came_back(ledger, since=since)
        if request.after is not None:
            request.after(ledger, summary)
        return summary


# Suppressions that people's own answers make (a reply asking to stop, a mail to the
# unsubscribe address, a complaint, a one-click unsubscribe): the owner is told of each.
CAME_BACK_SOURCES = frozenset({"reply", "mailto", "complaint", "one-click"})


def came_back(ledger: Ledger, *, since: object) -> tuple[list[tuple[str, str, str]], int]:
    """What came back since `since` (the previous run's start; None: ever): the suppressions
    people's answers made, and how many replies wait for the owner."""
    stamp = since.astimezone(UTC).isoformat() if isinstance(since, datetime) else ""
    suppressed = [
        (value, channel, source)
        for value, channel, source, created in ledger.suppression_rows()
        if source in CAME_BACK_SOURCES and created >= stamp
    ]
    return suppressed, len(ledger.replies(statuses=["open"]))


def rehearse_run(workspace: Workspace, request: RunRequest) -> RunSummary:
    """A dry run: the same run on a private copy of the ledger (its writes vanish) with the
    render-only outlet — every email rendered, every letter laid out and window-checked,
    nothing written. No lock is taken and `after` is never called."""
    settings = workspace.settings
    tick: Clock = request.clock or (lambda: datetime.now(settings.tz))
    with ExitStack() as stack:
        stream = stack.enter_context(closing(workspace.stream_contacts()))
        ledger = stack.enter_context(
            open_ledger(settings, readonly=True, shard=request.options.shard)
        )
        outlet = RenderOnlyOutlet(
            settings=settings,
            campaigns=workspace.campaigns,
            today=request.today,
            now=request.now,
            workers=request.options.workers,
            progress=request.letter_progress,
        )
        summary = execute_run(
            workspace=workspace,
            store=ledger,
            outlet=outlet,
            dates=RunDates(request.today),
            clock=tick,
            contacts=stream,
            options=request.options,
        )
    summary.dry_run = True
    summary.delivery = "none"
    summary.outbox = None
    return summary
