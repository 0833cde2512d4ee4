"""`plan`: what the coming days' runs would do, by running them.

Each simulated day is the runner itself (`execute_run`) on an in-memory store seeded from the
ledger, with the count-only outlet: the store keeps what each day records (what is done, what
waits, what weighs on cadence, the windows that close), so the next day sees it exactly as a
real run would see the ledger. Nothing reaches the disk.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from outreach.collector import collector_paused
from outreach.contacts import Contact
from outreach.deliver.outlets import CountOnlyOutlet
from outreach.i18n import _
from outreach.ledger import RunStore, Seed, rehearsal
from outreach.lookup import find_contact, not_a_contact
from outreach.model.campaigns import Campaign, Occurrence
from outreach.model.errors import OutreachError
from outreach.pipeline.decide import Decision, RunDates
from outreach.pipeline.parallel import ordered_map, tell
from outreach.pipeline.run import (
    RunOptions,
    RunSummary,
    execute_run,
    known_contacts,
    worker_count,
)
from outreach.rules.arrival import lookahead
from outreach.rules.audience import AudienceFilter, campaign_audience
from outreach.rules.cadence import reach
from outreach.rules.occurrences import occurrence_basis, occurrences_between
from outreach.shards import Shard
from outreach.workspace import Workspace

# Each simulated day runs at this local time, as a morning cron job would.
RUN_TIME = time(9, 0)

MessageKey = tuple[str, str, str]  # (contact_id, campaign, occurrence_key)
_NONE: tuple[Occurrence, ...] = ()


@dataclass(frozen=True, slots=True)
class DayCounts:
    """What one simulated day does for one campaign."""

    day: date
    campaign: str
    emails: int = 0
    letters: int = 0
    deferred: int = 0  # held back that day (a message waiting several days counts each day)
    missed: int = 0  # became missed that day: its window closed while it was deferred
    skipped: int = 0  # cannot go (opted out, no address), counted on the first day only

    @property
    def empty(self) -> bool:
        """Whether nothing at all happens."""
        return not (self.emails or self.letters or self.deferred or self.missed or self.skipped)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "date": self.day.isoformat(),
            "campaign": self.campaign,
            "emails": self.emails,
            "letters": self.letters,
            "deferred": self.deferred,
            "missed": self.missed,
            "skipped": self.skipped,
        }


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """A message the plan would make."""

    day: date
    campaign: str
    channel: str
    occurrence_key: str

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "date": self.day.isoformat(),
            "campaign": self.campaign,
            "channel": self.channel,
            "occurrence": self.occurrence_key,
        }


@dataclass(frozen=True, slots=True)
class Pressure:
    """One contact and the messages the plan would make for them."""

    contact_id: str
    messages: tuple[PlannedMessage, ...]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"contact": self.contact_id, "messages": [m.as_dict() for m in self.messages]}


@dataclass(frozen=True, slots=True)
class StoryLine:
    """One thing that happens to the watched contact on one day."""

    day: date
    campaign: str
    outcome: str  # send | deferred | skipped | missed | bad data | failed
    detail: str

    def __str__(self) -> str:
        return f"{self.day.isoformat()} {self.campaign} {self.detail}"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "date": self.day.isoformat(),
            "campaign": self.campaign,
            "outcome": self.outcome,
            "text": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """The simulated days: counts per day and campaign, the busiest contacts, one story."""

    start: date
    days: int
    campaigns: tuple[str, ...]
    counts: tuple[DayCounts, ...]  # one per day and campaign, in day then campaign order
    pressure: tuple[Pressure, ...]  # contacts with two messages or more, most first
    contact_id: str | None = None
    story: tuple[StoryLine, ...] = ()

    @property
    def end(self) -> date:
        """The last simulated day."""
        return self.start + timedelta(days=self.days - 1)

    def totals(self) -> list[DayCounts]:
        """The period's counts per campaign (`day` is the first day)."""
        totals = []
        for name in self.campaigns:
            rows = [c for c in self.counts if c.campaign == name]
            totals.append(
                DayCounts(
                    day=self.start,
                    campaign=name,
                    emails=sum(r.emails for r in rows),
                    letters=sum(r.letters for r in rows),
                    deferred=sum(r.deferred for r in rows),
                    missed=sum(r.missed for r in rows),
                    skipped=sum(r.skipped for r in rows),
                )
            )
        return totals

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "days": self.days,
            "campaigns": list(self.campaigns),
            "table": [c.as_dict() for c in self.counts],
            "totals": {
                t.campaign: {k: v for k, v in t.as_dict().items() if k not in ("date", "campaign")}
                for t in self.totals()
            },
            "pressure": [p.as_dict() for p in self.pressure],
            "contact": self.contact_id,
            "story": [s.as_dict() for s in self.story] if self.contact_id else None,
        }


class _DueSchedule:
    """Which contacts have something still open on each day, so a simulated day visits only them.

    A run visits every contact, but a contact matters on a day only if some occurrence's window
    contains the day and that occurrence is not done yet (rendered, sent, missed…); the others
    would only be noted "not due" or "already". Each contact's occurrences over the whole period
    are worked out once; what is done is asked of the store the runs record into, so the rule
    of what counts as done stays in one place.
    """

    def __init__(
        self, workspace: Workspace, *, contacts: Sequence[Contact], start: date, end: date
    ) -> None:
        fmt = workspace.settings.contacts.date_format
        settings = workspace.settings
        # The same audiences as the run's (the workspace's expression limits), and the same
        # lead time: a campaign that can send letters looks delivery_days ahead.
        days = settings.letters.delivery_days
        audiences: list[tuple[Campaign, AudienceFilter, timedelta]] = [
            (c, campaign_audience(c, settings), lookahead(c, delivery_days=days))
            for c in workspace.campaigns
        ]
        self.contacts = contacts
        # campaign → the occurrence keys that can be due in the period (for the store's seed)
        self.keys: dict[str, set[str]] = {c.name: set() for c in workspace.campaigns}
        # first day inside the period → (position, latest, message key) of windows opening then
        self.opening: dict[date, list[tuple[int, date, MessageKey]]] = {}
        # (campaign, contact id) → its occurrences meeting the period, for the day's runs
        self.calendar: dict[tuple[str, str], Sequence[Occurrence]] = {}
        # (campaign, basis) → its occurrences: contacts born the same day, or with the same
        # appointment, share them (a contact's own error is its own: not kept)
        known: dict[tuple[str, object], tuple[Occurrence, ...]] = {}
        calendar, opening = self.calendar, self.opening  # the hot loop: 100,000 × campaigns
        for position, contact in enumerate(self.contacts):
            for campaign, audience, ahead in audiences:
                try:
                    if not audience.matches(contact):
                        continue
                    basis = (campaign.name, occurrence_basis(campaign, contact))
                    found = known.get(basis)
                    if found is None:
                        found = tuple(
                            occurrences_between(
                                campaign, contact, start=start, end=end + ahead, date_format=fmt
                            )
                        )
                        known[basis] = found
                except OutreachError:
                    # Bad data for this campaign: nothing can be due from it.
                    continue
                calendar[(basis[0], contact.id)] = found or _NONE
                for occ in found:
                    entry = (position, occ.latest, (contact.id, basis[0], occ.key))
                    first = occ.earliest - ahead
                    day = first if first > start else start
                    found_on = opening.get(day)
                    if found_on is None:
                        opening[day] = [entry]
                    else:
                        found_on.append(entry)
        for (name, _basis), found in known.items():
            self.keys[name].update(occ.key for occ in found)
        self.open: list[tuple[int, date, MessageKey]] = []
        self.visited: set[int] = set()  # positions of the contacts the last day visited

    def contacts_on(self, day: date, *, store: RunStore) -> list[Contact]:
        """The contacts (in file order) with an occurrence open on `day` that is not done.

        Only a contact the last day's run visited can have had a message made since (closed
        windows end before the day): the store is asked about a message when its window
        opens, and again only after a day its contact was visited.
        """
        done = {campaign: store.done_for(campaign) for campaign in self.keys}
        keep = []
        for fresh, entries in ((False, self.open), (True, self.opening.pop(day, ()))):
            for entry in entries:
                position, latest, (contact_id, campaign, occurrence_key) = entry
                if latest < day:
                    continue
                asked = fresh or position in self.visited
                if asked and (contact_id, occurrence_key) in done[campaign]:
                    continue
                keep.append(entry)
        self.open = keep
        self.visited = {entry[0] for entry in keep}
        return [self.contacts[p] for p in sorted(self.visited)]


@dataclass
class _Watcher:
    """Watches the simulated runs: what each contact gets, new skips, one contact's story."""

    watch: str | None
    day: date = date.min
    sent: dict[str, list[PlannedMessage]] = field(default_factory=dict)
    story: list[StoryLine] = field(default_factory=list)
    told: set[tuple[str, str, str]] = field(default_factory=set)
    # A skip (opted out, no address) comes up again every day of its window; the plan counts
    # it on the first day only.
    skips: set[MessageKey] = field(default_factory=set)
    new_skips: dict[str, int] = field(default_factory=dict)

    def note(self, event: Decision) -> None:
        outcome = event.outcome
        if outcome == "not due" or outcome == "not in audience":  # not translated: codes (hot path)
            return
        occ = event.occurrence
        if occ is not None:
            key = (event.contact_id, event.campaign, occ.key)
            if outcome == "skipped" and key not in self.skips:
                self.skips.add(key)
                self.new_skips[event.campaign] = self.new_skips.get(event.campaign, 0) + 1
            elif outcome == "send":
                message = PlannedMessage(
                    self.day, event.campaign, event.channel or "email", occ.key
                )
                self.sent.setdefault(event.contact_id, []).append(message)
        if event.contact_id == self.watch:
            self._tell(event)

    def _tell(self, event: Decision) -> None:
        outcome, reason = event.outcome, event.reason
        text = reason.text if reason is not None else ""
        if outcome == "send" and reason is not None:
            detail = _("would go by {channel} ({reason})").format(
                channel=event.channel, reason=text
            )
        elif outcome == "send":
            detail = _("would go by {channel}").format(channel=event.channel)
        elif outcome == "deferred":
            detail = _("deferred: {reason}").format(reason=text)
        elif outcome == "missed":
            detail = _("missed: {reason}").format(reason=reason.detail if reason else text)
        else:
            # Skips and bad data repeat every day of a window; once is enough.
            once = (event.campaign, outcome, text)
            if once in self.told or outcome == "already":
                return
            self.told.add(once)
            if outcome == "skipped":
                detail = _("skipped: {reason}").format(reason=text)
            elif outcome == "failed":
                detail = _("cannot be made: {reason}").format(reason=text)
            else:
                detail = _("cannot be made: {reason}").format(
                    reason=reason.detail if reason else text
                )
        self.story.append(StoryLine(self.day, event.campaign, outcome, detail))


def _fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def _day_counts(
    day: date, summary: RunSummary, *, skipped: dict[str, int], names: list[str]
) -> list[DayCounts]:
    runs = {c.name: c for c in summary.campaigns}
    return [
        DayCounts(
            day=day,
            campaign=name,
            emails=runs[name].emails,
            letters=runs[name].letters,
            deferred=runs[name].deferred,
            missed=runs[name].missed,
            skipped=skipped.get(name, 0),
        )
        for name in names
    ]


def plan_days(
    workspace: Workspace,
    *,
    start: date,
    days: int,
    contact_id: str | None = None,
    top: int = 10,
    on_day: Callable[[date], None] | None = None,
    workers: int | None = None,
) -> Plan:
    """Run each of `days` days from `start` on an in-memory store seeded from the ledger.

    With `contact_id` only that contact is run (cadence is per contact, so its story is the
    same as in the whole simulation) and its day-by-day story is kept. `on_day` hears of
    each day once it is simulated (for a progress bar). A large workspace is planned in
    `workers` forked processes (default: one per core from PARALLEL_MIN contacts), each over
    a shard of the contacts (outreach.shards): cadence is per contact, so the shards never
    need each other.
    """
    if days < 1:
        raise ValueError(_("plan at least one day"))
    names = [c.name for c in workspace.campaigns]
    story: list[StoryLine] = []
    watch: str | None = None
    if contact_id is not None:
        contact = find_contact(workspace, contact_id)
        if contact is None:
            raise not_a_contact(workspace, contact_id)
        watch = contact.id
        counts, sent, story = _simulate(
            workspace,
            contacts=known_contacts(workspace, [contact]),
            watch=watch,
            start=start,
            days=days,
            on_day=on_day,
        )
        # The watched contact is shown whatever it gets, once or more.
        busiest = _ranked(sent.items(), top)
    else:
        # As the run knows them (the ledger's visits, the confirmed addresses): the calendar
        # of due occurrences is worked out from these before any day runs.
        everyone = known_contacts(workspace, workspace.contacts.contacts)
        parts = _parts(workers, len(everyone))
        if parts > 1:
            counts, busiest = _in_parts(
                workspace, everyone, parts=parts, start=start, days=days, top=top, on_day=on_day
            )
        else:
            counts, sent, _story = _simulate(
                workspace, contacts=everyone, watch=None, start=start, days=days, on_day=on_day
            )
            busiest = _busiest(sent, top)
    return Plan(
        start=start,
        days=days,
        campaigns=tuple(names),
        counts=tuple(counts),
        pressure=tuple(Pressure(cid, tuple(messages)) for cid, messages in busiest),
        contact_id=watch,
        story=tuple(story),
    )


def _simulate(
    workspace: Workspace,
    *,
    contacts: Sequence[Contact],
    watch: str | None,
    start: date,
    days: int,
    on_day: Callable[[date], None] | None,
    shard: Shard | None = None,
) -> tuple[list[DayCounts], dict[str, list[PlannedMessage]], list[StoryLine]]:
    """The day runs over `contacts`: each day's counts, what each contact gets, the story.
    With `shard`, the ledger's messages of the shard's contacts only are the runs' own (the
    windows they close), as a sharded run's."""
    # The schedule and the day runs make many records and no cycles: collections would walk
    # every contact again and again, for a fifth of the plan's time, and free nothing.
    with collector_paused():
        return _simulate_days(
            workspace,
            contacts=contacts,
            watch=watch,
            start=start,
            days=days,
            on_day=on_day,
            shard=shard,
        )


def _simulate_days(
    workspace: Workspace,
    *,
    contacts: Sequence[Contact],
    watch: str | None,
    start: date,
    days: int,
    on_day: Callable[[date], None] | None,
    shard: Shard | None,
) -> tuple[list[DayCounts], dict[str, list[PlannedMessage]], list[StoryLine]]:
    settings = workspace.settings
    campaigns = workspace.campaigns
    names = [c.name for c in campaigns]
    end = start + timedelta(days=days - 1)
    schedule = (
        _DueSchedule(workspace, contacts=contacts, start=start, end=end) if watch is None else None
    )
    # Older messages than this never weigh on a day of the period: every cadence rule looks
    # at most `reach` days around the day it decides.
    since = start - timedelta(days=reach(settings, campaigns))
    seed = (
        Seed(since=since, occurrence_keys=schedule.keys, remember=True, shard=shard)
        if schedule is not None
        else Seed(contact_id=watch)
    )
    watcher = _Watcher(watch=watch)
    counts: list[DayCounts] = []
    with rehearsal(settings, seed) as store:
        store.shard = shard
        for offset in range(days):
            day = start + timedelta(days=offset)
            moment = datetime.combine(day, RUN_TIME, tzinfo=settings.tz)
            watcher.day = day
            watcher.new_skips = {}
            people = contacts if schedule is None else schedule.contacts_on(day, store=store)
            summary = execute_run(
                workspace=workspace,
                store=store,
                outlet=CountOnlyOutlet(),
                dates=RunDates(day, calendar=schedule.calendar if schedule is not None else None),
                clock=_fixed(moment),
                observer=watcher.note,
                contacts=people,
                options=RunOptions(args=("plan",)),
            )
            counts.extend(_day_counts(day, summary, skipped=watcher.new_skips, names=names))
            if on_day is not None:
                on_day(day)
    return counts, watcher.sent, watcher.story


_Busy = list[tuple[str, list["PlannedMessage"]]]


def _ranked(items: Iterable[tuple[str, list[PlannedMessage]]], top: int) -> _Busy:
    """The `top` contacts who get the most messages (then by id)."""
    return sorted(items, key=lambda item: (-len(item[1]), item[0]))[:top]


def _busiest(sent: dict[str, list[PlannedMessage]], top: int) -> _Busy:
    """The `top` contacts who would hear from the business most (more than once)."""
    return _ranked((item for item in sent.items() if len(item[1]) > 1), top)


# Contacts from which a plan is worth splitting between processes (a fork and a second read
# of the ledger cost less than the half of the day runs they save).
PARALLEL_MIN = 10_000


def _parts(requested: int | None, contacts: int) -> int:
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return min(worker_count(requested, contacts, minimum=PARALLEL_MIN), max(1, contacts))


def _in_parts(
    workspace: Workspace,
    contacts: Sequence[Contact],
    *,
    parts: int,
    start: date,
    days: int,
    top: int,
    on_day: Callable[[date], None] | None,
) -> tuple[list[DayCounts], _Busy]:
    """The plan of `contacts` as `parts` forked processes plan a shard of them each
    (outreach.shards); their counts added up, their busiest contacts merged."""
    reported = [0] * parts
    shown = 0

    def heard(part: int, _day: object) -> None:
        # A day is shown once every part has planned it.
        nonlocal shown
        reported[part] += 1
        while on_day is not None and shown < min(reported):
            on_day(start + timedelta(days=shown))
            shown += 1

    def plan_part(part: int) -> tuple[list[DayCounts], _Busy]:
        shard = Shard(part + 1, parts)
        return _plan_part(workspace, contacts, shard=shard, start=start, days=days, top=top)

    with ordered_map(plan_part, range(parts), processes=parts, ahead=1, on_note=heard) as planned:
        results = [result for _, result in planned]
    counts = [_added(same) for same in zip(*(results[i][0] for i in range(parts)), strict=True)]
    merged = [item for i in range(parts) for item in results[i][1]]
    return counts, _ranked(merged, top)


def _added(same: tuple[DayCounts, ...]) -> DayCounts:
    first = same[0]
    return DayCounts(
        day=first.day,
        campaign=first.campaign,
        emails=sum(c.emails for c in same),
        letters=sum(c.letters for c in same),
        deferred=sum(c.deferred for c in same),
        missed=sum(c.missed for c in same),
        skipped=sum(c.skipped for c in same),
    )


def _plan_part(
    workspace: Workspace,
    contacts: Sequence[Contact],
    *,
    shard: Shard,
    start: date,
    days: int,
    top: int,
) -> tuple[list[DayCounts], _Busy]:
    """A worker's shard of the plan: each day told to the caller, then the counts and the
    busiest. A shard, not every n-th contact: a window that closes in the ledger is closed
    (and counted missed) by the one part whose shard holds its contact, known or not."""
    mine = [contact for contact in contacts if shard.contains(contact.id)]
    counts, sent, _story = _simulate(
        workspace, contacts=mine, watch=None, start=start, days=days, on_day=tell, shard=shard
    )
    return counts, _busiest(sent, top)
