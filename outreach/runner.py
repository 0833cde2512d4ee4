"""One run: contacts → due occurrences → cadence → render → deliver → ledger → summary.

This is the only module that knows the whole order of steps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from outreach.audience import compile_audience
from outreach.cadence import Candidate, PastMessage, decide
from outreach.campaigns import Campaign, Occurrence, due_occurrences
from outreach.config import CadencePolicy, Settings
from outreach.contacts import Contact
from outreach.deliver.base import Deliverer
from outreach.errors import OutreachError, Problem
from outreach.deliver.outbox import OutboxWriter, clean_temporaries
from outreach.ledger import DONE_STATUSES, Ledger, MessageRecord, acquire_lock
from outreach.render.templates import EmailRenderer
from outreach.workspace import Workspace

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

    @property
    def failed(self) -> int:
        """Messages that should have gone out and did not (render or delivery failures)."""
        return sum(c.failed for c in self.campaigns)

    @property
    def exit_code(self) -> int:
        """0 all went well; 1 some messages failed (the rest were done)."""
        return 1 if self.failed else 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "date": self.run_date.isoformat(),
            "dry_run": self.dry_run,
            "delivery": self.delivery,
            "outbox": self.outbox,
            "campaigns": [c.as_dict() for c in self.campaigns],
            "problems": [p.as_dict() for p in self.problems],
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
    statuses: dict[tuple[str, str], str]
    emails: EmailRenderer | None


def address_gaps(contact: Contact) -> list[str]:
    """The postal address fields a letter to this contact still needs."""
    if "address" in contact.held_back:
        return ["country"]
    return [name for name in ("street", "postal_code", "city") if not getattr(contact, name)]


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
    for position, channel in enumerate(order):
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
        del position
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

    def flush(self) -> None:
        if self.pending:
            self.ledger.record(self.pending, run_id=self.run_id)
            self.pending = []


def _policy_for(settings: Settings, campaign: Campaign) -> CadencePolicy:
    return campaign.cadence.apply(settings.cadence) if campaign.cadence else settings.cadence


def _history(ledger: Ledger, *, today: date, settings: Settings, campaigns: Sequence[Campaign]) -> dict[str, list[PastMessage]]:
    reach = max(
        max(p.per_days, p.min_gap_days) for p in [_policy_for(settings, c) for c in campaigns] or [settings.cadence]
    )
    pressure = ledger.contact_pressure(since=today - timedelta(days=reach))
    return {
        contact_id: [PastMessage(effective_date=d, campaign=name, essential=essential) for d, name, essential in rows]
        for contact_id, rows in pressure.items()
    }


def execute_run(
    *,
    workspace: Workspace,
    ledger: Ledger,
    deliverer: Deliverer | None,
    today: date,
    now: datetime,
    args: Sequence[str] = (),
    progress: Callable[[Iterator[Contact]], Iterator[Contact]] | None = None,
) -> RunSummary:
    """Run the workspace's campaigns for `today`; a None deliverer is a dry run."""
    settings = workspace.settings
    dry_run = deliverer is None
    run_id = ledger.begin_run(run_date=today, started_at=now, args=args)
    writer = _LedgerWriter(ledger, run_id)
    sink: Deliverer = deliverer if deliverer is not None else _NoDelivery()  # type: ignore[assignment]
    fmt = settings.contacts.date_format
    suppressions = ledger.suppressions()
    history = _history(ledger, today=today, settings=settings, campaigns=workspace.campaigns)
    runs = [
        _CampaignRun(
            campaign=c,
            summary=CampaignSummary(name=c.name, kind=c.kind, channel=c.channel),
            matches=compile_audience(c.audience, path=c.path),
            policy=_policy_for(settings, c),
            statuses=ledger.statuses_for(c.name),
            emails=EmailRenderer(settings=settings, campaign=c, today=today, now=now) if c.email else None,
        )
        for c in workspace.campaigns
    ]
    by_name = {r.campaign.name: r for r in runs}
    contacts: Iterator[Contact] = iter(workspace.contacts.contacts)
    if progress is not None:
        contacts = progress(contacts)

    def record(run: _CampaignRun, contact: Contact, occ: Occurrence, *, channel: str, status: str, **extra: object) -> None:
        effective = today + timedelta(days=settings.letters.delivery_days) if channel == "letter" else today
        writer.add(
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
                effective_date=effective,
                updated_at=now,
                **extra,  # type: ignore[arg-type]
            )
        )

    try:
        for contact in contacts:
            candidates: list[Candidate] = []
            pending: dict[tuple[str, str], tuple[_CampaignRun, Occurrence]] = {}
            for run in runs:
                summary = run.summary
                try:
                    if not run.matches(contact):
                        continue
                    occurrences = due_occurrences(run.campaign, contact, today=today, date_format=fmt)
                except OutreachError as exc:
                    summary.problems.append(_problem(exc, contact, run.campaign))
                    continue
                for occ in occurrences:
                    summary.due += 1
                    if run.statuses.get((contact.id, occ.key)) in DONE_STATUSES:
                        summary.already += 1
                        continue
                    channel, reason = choose_channel(run.campaign, contact, suppressions)
                    if channel is None:
                        summary.skipped[reason or "no channel"] += 1
                        record(run, contact, occ, channel=run.campaign.channel if run.campaign.channel != "preferred" else (contact.preferred_channel or "email"), status="skipped", reason=reason)
                        continue
                    effective = today + timedelta(days=settings.letters.delivery_days) if channel == "letter" else today
                    candidates.append(
                        Candidate(
                            contact_id=contact.id,
                            campaign=run.campaign.name,
                            occurrence_key=occ.key,
                            priority=run.campaign.priority,
                            essential=run.campaign.essential,
                            channel=channel,
                            latest=occ.latest,
                            effective_date=effective,
                            policy=run.policy,
                        )
                    )
                    pending[(run.campaign.name, occ.key)] = (run, occ)
            if not candidates:
                continue
            for decision in decide(candidates=candidates, history=history.get(contact.id, ()), today=today):
                cand = decision.candidate
                run, occ = pending[(cand.campaign, cand.occurrence_key)]
                summary = run.summary
                if decision.action != "send":
                    summary.deferred += 1
                    record(run, contact, occ, channel=cand.channel, status="deferred", reason=decision.reason)
                    continue
                if cand.channel == "letter":
                    # Letters are laid out and batched by the letters step; counted here.
                    summary.letters += 1
                    continue
                assert run.emails is not None
                try:
                    message = run.emails.render(contact, occ)
                except OutreachError as exc:
                    summary.failed += 1
                    summary.problems.append(_problem(exc, contact, run.campaign))
                    record(run, contact, occ, channel="email", status="skipped", reason="render failed", error=str(exc))
                    continue
                result = sink.push(message)
                if result is None:  # dry run
                    summary.emails += 1
                    continue
                if result.status in ("failed",):
                    summary.failed += 1
                else:
                    summary.emails += 1
                    if result.status == "sent":
                        summary.sent += 1
                record(
                    run, contact, occ, channel="email", status=result.status,
                    artifact=result.artifact, message_id=message.message_id, error=result.error,
                )
        writer.flush()
    finally:
        sink.close()
    del by_name
    summary_obj = RunSummary(
        run_date=today,
        dry_run=dry_run,
        delivery="none" if dry_run else settings.delivery.method,
        campaigns=[r.summary for r in runs],
        problems=list(workspace.contacts.problems),
        outbox=None if dry_run else str(Path(settings.paths.out) / "outbox" / today.isoformat()),
    )
    ledger.end_run(run_id, ended_at=now, counts=summary_obj.as_dict())
    return summary_obj


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
        ledger.end_run(run_id, ended_at=now, counts={"interrupted": True})
    return removed


def perform_run(
    *,
    workspace: Workspace,
    today: date,
    now: datetime,
    dry_run: bool = False,
    args: Sequence[str] = (),
    progress: Callable[[Iterator[Contact]], Iterator[Contact]] | None = None,
) -> RunSummary:
    """A whole run as `outreach run` and the daemon do it: lock, recover, render, record."""
    settings = workspace.settings
    if dry_run:
        # A private in-memory copy of the ledger: the run goes through every step and
        # nothing reaches the disk.
        with Ledger.open(settings.ledger_path, readonly=True) as ledger:
            ledger.mark_missed(today=today, now=now)
            return execute_run(workspace=workspace, ledger=ledger, deliverer=None, today=today,
                               now=now, args=args, progress=progress)
    with acquire_lock(settings.state_dir, now=now), Ledger.open(settings.ledger_path) as ledger:
        recover_interrupted(ledger, settings=settings, now=now)
        ledger.mark_missed(today=today, now=now)
        deliverer = OutboxWriter(root=settings.root, out_dir=settings.out_dir, run_date=today)
        return execute_run(workspace=workspace, ledger=ledger, deliverer=deliverer, today=today,
                           now=now, args=args, progress=progress)


def _problem(exc: OutreachError, contact: Contact, campaign: Campaign) -> Problem:
    return Problem(
        message=exc.message,
        path=exc.path,
        line=exc.line,
        field=exc.field,
        contact_id=contact.id,
        campaign=campaign.name,
        hint=exc.hint,
    )
