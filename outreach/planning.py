"""`plan` and `explain`: what runs would do, simulated on a private copy of the ledger.

Both call the runner itself in simulate mode (`execute_run(simulate=True)`) on
`Ledger.open(readonly=True)`, an in-memory copy whose writes vanish: the answers come from the
code that makes the real decisions, and nothing reaches the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from outreach.audience import AudienceFilter, compile_audience
from outreach.cadence import PastMessage, effective_date
from outreach.campaigns import Campaign, Occurrence, occurrences_between
from outreach.contacts import Contact
from outreach.errors import ContactsError, OutreachError, Problem
from outreach.feedback.blocks import current_blocks, describe_block  # hook: feedback
from outreach.ledger import Ledger, MessageRecord
from outreach.runner import RunSummary, TraceEvent, address_gaps, execute_run, load_history
from outreach.workspace import Workspace

# Each simulated day runs at this local time, as a morning cron job would.
RUN_TIME = time(9, 0)
# How far `explain` looks for the next window of a campaign that is not due.
LOOKAHEAD_DAYS = 800

MessageKey = tuple[str, str, str]  # (contact_id, campaign, occurrence_key)


# ---------------------------------------------------------------------------------------------
# Contacts by id


def find_contact(workspace: Workspace, contact_id: str) -> Contact | None:
    """The usable contact with this id (case ignored, as the reader does), or None."""
    contacts = workspace.contacts.contacts
    found = next((c for c in contacts if c.id == contact_id), None)
    if found is None:
        folded = contact_id.casefold()
        found = next((c for c in contacts if c.id.casefold() == folded), None)
    return found


def row_problems(workspace: Workspace, contact_id: str) -> tuple[Problem, ...]:
    """The contacts file's problems that name this contact id."""
    folded = contact_id.casefold()
    return tuple(
        p
        for p in workspace.contacts.problems
        if p.contact_id is not None and p.contact_id.casefold() == folded
    )


def unknown_contact(workspace: Workspace, contact_id: str, *, known_messages: int) -> ContactsError:
    """The error for an id that is not a contact in the file (and not a held-back row)."""
    path = workspace.contacts.path
    if known_messages:
        hint = (
            f"the ledger has {known_messages} message(s) for that id, so it was a contact "
            f"once: see `outreach history --contact {contact_id}`"
        )
    else:
        sample = ", ".join(c.id for c in workspace.contacts.contacts[:3])
        hint = "check the id" + (f" (ids in the file look like {sample})" if sample else "")
    return ContactsError(f"no contact {contact_id!r} in the contacts file", path=path, hint=hint)


def contact_label(contact: Contact, path: object) -> str:
    """`c1 Ana García <ana@example.com> (contacts.csv line 2)`."""
    name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    parts = [contact.id]
    if name:
        parts.append(name)
    parts.append(f"<{contact.email}>" if contact.email else "(no email)")
    return " ".join(parts) + f" ({path} line {contact.line})"


# ---------------------------------------------------------------------------------------------
# plan


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
    are worked out once; what is done is learnt from the runs' own trace events, so the rule of
    what counts as done stays in the runner.
    """

    def __init__(self, workspace: Workspace, *, start: date, end: date) -> None:
        fmt = workspace.settings.contacts.date_format
        audiences: list[tuple[Campaign, AudienceFilter]] = [
            (c, compile_audience(c.audience, path=c.path)) for c in workspace.campaigns
        ]
        self.contacts = workspace.contacts.contacts
        # campaign → the (contact_id, occurrence_key) that can be due in the period
        self.keys: dict[str, set[tuple[str, str]]] = {c.name: set() for c in workspace.campaigns}
        # first day inside the period → (position, latest, message key) of windows opening then
        self.opening: dict[date, list[tuple[int, date, MessageKey]]] = {}
        for position, contact in enumerate(self.contacts):
            for campaign, audience in audiences:
                try:
                    if not audience.matches(contact):
                        continue
                    found = occurrences_between(
                        campaign, contact, start=start, end=end, date_format=fmt
                    )
                except OutreachError:
                    # Bad data for this campaign: nothing can be due from it.
                    continue
                keys = self.keys[campaign.name]
                for occ in found:
                    keys.add((contact.id, occ.key))
                    entry = (position, occ.latest, (contact.id, campaign.name, occ.key))
                    self.opening.setdefault(max(occ.earliest, start), []).append(entry)
        self.open: list[tuple[int, date, MessageKey]] = []

    def contacts_on(self, day: date, *, done: set[MessageKey]) -> list[Contact]:
        """The contacts (in file order) with an occurrence open on `day` that is not done."""
        self.open.extend(self.opening.pop(day, ()))
        keep = []
        positions = set()
        for entry in self.open:
            position, latest, key = entry
            if latest < day or key in done:
                continue
            keep.append(entry)
            positions.add(position)
        self.open = keep
        return [self.contacts[p] for p in sorted(positions)]


# What a simulated run records for each traced outcome (execute_run with simulate=True).
_RECORDED = {"send": "rendered", "deferred": "deferred", "skipped": "skipped", "failed": "skipped"}


@dataclass
class _Recorder:
    """Follows the simulated runs' trace: what is done, what waits, what each contact gets."""

    watch: str | None
    essential: dict[str, bool]  # campaign name → essential
    delivery_days: int
    # What weighs on each contact's cadence: the ledger's, then what the simulated days add.
    # Reloading it from the ledger copy every day cost a second a day at 100k contacts.
    history: dict[str, list[PastMessage]] = field(default_factory=dict)
    # campaign → (contact_id, occurrence_key) → status: the ledger's rows that can matter in
    # the period, then the status each simulated decision records (what the runner writes in
    # simulate mode), so no day reads the whole ledger again.
    statuses: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    day: date = date.min
    done: set[MessageKey] = field(default_factory=set)
    waiting: dict[MessageKey, tuple[date, str]] = field(default_factory=dict)
    sent: dict[str, list[PlannedMessage]] = field(default_factory=dict)
    story: list[StoryLine] = field(default_factory=list)
    told: set[tuple[str, str, str]] = field(default_factory=set)
    # A skip (opted out, no address) comes up again every day of its window; the plan counts
    # it on the first day only.
    skips: set[MessageKey] = field(default_factory=set)
    new_skips: dict[str, int] = field(default_factory=dict)

    def note(self, event: TraceEvent) -> None:
        outcome = event.outcome
        if outcome == "not due" or outcome == "not in audience":  # the hot path
            return
        occ = event.occurrence
        if occ is not None:
            key = (event.contact_id, event.campaign, occ.key)
            if outcome == "already":
                self.done.add(key)
                return
            status = _RECORDED.get(outcome)
            if status is not None:
                self.statuses.setdefault(event.campaign, {})[(event.contact_id, occ.key)] = status
            if outcome == "deferred":
                self.waiting[key] = (occ.latest, event.reason or "")
            else:
                self.waiting.pop(key, None)
            if status == "skipped" and key not in self.skips:
                self.skips.add(key)
                self.new_skips[event.campaign] = self.new_skips.get(event.campaign, 0) + 1
            if outcome == "send":
                self.done.add(key)
                channel = event.channel or "email"
                message = PlannedMessage(self.day, event.campaign, channel, occ.key)
                self.sent.setdefault(event.contact_id, []).append(message)
                # The runner records it with this effective date; the next days must see it.
                arrives = effective_date(channel, today=self.day, delivery_days=self.delivery_days)
                past = PastMessage(arrives, event.campaign, self.essential[event.campaign])
                self.history.setdefault(event.contact_id, []).append(past)
        if event.contact_id == self.watch:
            self._tell(event)

    def _tell(self, event: TraceEvent) -> None:
        outcome, reason = event.outcome, event.reason
        if outcome == "send":
            detail = f"would go by {event.channel}" + (f" ({reason})" if reason else "")
        elif outcome == "deferred":
            detail = f"deferred: {reason}"
        else:
            # Skips and bad data repeat every day of a window; once is enough.
            once = (event.campaign, outcome, reason or "")
            if once in self.told or outcome == "already":
                return
            self.told.add(once)
            detail = f"skipped: {reason}" if outcome == "skipped" else f"cannot be made: {reason}"
        self.story.append(StoryLine(self.day, event.campaign, outcome, detail))

    def close_windows(self, day: date) -> dict[str, int]:
        """Deferred messages whose window closed before `day`: they become missed today."""
        closed = [key for key, (latest, _) in self.waiting.items() if latest < day]
        missed: dict[str, int] = {}
        for key in closed:
            latest, _reason = self.waiting.pop(key)
            contact_id, campaign, occurrence_key = key
            statuses = self.statuses.get(campaign)
            if statuses is not None and (contact_id, occurrence_key) in statuses:
                statuses[(contact_id, occurrence_key)] = "missed"
            missed[campaign] = missed.get(campaign, 0) + 1
            if contact_id == self.watch:
                detail = f"missed: its window closed on {latest.isoformat()} while it was deferred"
                self.story.append(StoryLine(day, campaign, "missed", detail))
        return missed


def _day_counts(
    day: date,
    summary: RunSummary | None,
    *,
    missed: dict[str, int],
    skipped: dict[str, int],
    names: Sequence[str],
) -> list[DayCounts]:
    runs = {c.name: c for c in summary.campaigns} if summary is not None else {}
    rows = []
    for name in names:
        c = runs.get(name)
        rows.append(
            DayCounts(
                day=day,
                campaign=name,
                emails=c.emails if c else 0,
                letters=c.letters if c else 0,
                deferred=c.deferred if c else 0,
                missed=missed.get(name, 0),
                skipped=skipped.get(name, 0),
            )
        )
    return rows


def plan_days(
    workspace: Workspace,
    *,
    start: date,
    days: int,
    contact_id: str | None = None,
    top: int = 10,
    on_day: Callable[[date], None] | None = None,
) -> Plan:
    """Simulate a run on each of `days` days from `start` on a throwaway copy of the ledger.

    With `contact_id` only that contact is simulated (cadence is per contact, so its story is
    the same as in the whole simulation) and its day-by-day story is kept. `on_day` hears of
    each day once it is simulated (for a progress bar).
    """
    if days < 1:
        raise ValueError("plan at least one day")
    settings = workspace.settings
    names = [c.name for c in workspace.campaigns]
    end = start + timedelta(days=days - 1)
    recorder = _Recorder(
        watch=None,
        essential={c.name: c.essential for c in workspace.campaigns},
        delivery_days=settings.letters.delivery_days,
    )
    schedule: _DueSchedule | None = None
    watched: list[Contact] = []
    if contact_id is not None:
        contact = find_contact(workspace, contact_id)
        if contact is None:
            raise _not_a_contact(workspace, contact_id)
        watched = [contact]
        recorder.watch = contact.id
    else:
        schedule = _DueSchedule(workspace, start=start, end=end)
    counts: list[DayCounts] = []
    with Ledger.open(settings.ledger_path, readonly=True) as ledger:
        for record in ledger.messages(contact_id=recorder.watch, statuses=["deferred"]):
            if record.latest is not None:
                recorder.waiting[record.key] = (record.latest, record.reason or "")
        # Older messages than load_history reads never weigh on a later day either: every
        # cadence rule looks at most `reach` days around the day it decides.
        recorder.history = load_history(
            ledger, today=start, settings=settings, campaigns=workspace.campaigns
        )
        for name in names:
            if schedule is not None:
                wanted = schedule.keys[name]
                known = ledger.statuses_for(name, occurrence_keys={key for _, key in wanted})
                recorder.statuses[name] = {k: v for k, v in known.items() if k in wanted}
            else:
                recorder.statuses[name] = {
                    (r.contact_id, r.occurrence_key): r.status
                    for r in ledger.messages(contact_id=watched[0].id, campaign=name)
                }
        for offset in range(days):
            day = start + timedelta(days=offset)
            now = datetime.combine(day, RUN_TIME, tzinfo=settings.tz)
            recorder.day = day
            recorder.new_skips = {}
            missed = recorder.close_windows(day)
            ledger.mark_missed(today=day, now=now)
            people = watched if schedule is None else schedule.contacts_on(day, done=recorder.done)
            summary = None
            if people:
                summary = execute_run(
                    workspace=workspace,
                    ledger=ledger,
                    deliverer=None,
                    today=day,
                    now=now,
                    args=("plan",),
                    simulate=True,
                    trace=recorder.note,
                    contacts=people,
                    history=recorder.history,
                    statuses=recorder.statuses,
                )
            counts.extend(
                _day_counts(day, summary, missed=missed, skipped=recorder.new_skips, names=names)
            )
            if on_day is not None:
                on_day(day)
    # Only contacts who would hear from the business more than once are "under pressure".
    busy = [item for item in recorder.sent.items() if len(item[1]) > 1 or recorder.watch]
    busiest = sorted(busy, key=lambda item: (-len(item[1]), item[0]))[:top]
    return Plan(
        start=start,
        days=days,
        campaigns=tuple(names),
        counts=tuple(counts),
        pressure=tuple(Pressure(cid, tuple(messages)) for cid, messages in busiest),
        contact_id=recorder.watch,
        story=tuple(recorder.story),
    )


def _not_a_contact(workspace: Workspace, contact_id: str) -> ContactsError:
    held = row_problems(workspace, contact_id)
    if held:
        return ContactsError(
            f"contact {contact_id!r} is held back: {held[0]}",
            path=workspace.contacts.path,
            hint="fix that row in the contacts file; see `outreach validate`",
        )
    return unknown_contact(workspace, contact_id, known_messages=0)


# ---------------------------------------------------------------------------------------------
# explain


@dataclass(frozen=True, slots=True)
class Answer:
    """Why one campaign does or does not reach the contact on the day."""

    campaign: str
    outcome: str  # send | deferred | already | missed | not due | not in audience | opted out | bad data | skipped
    text: str
    occurrence: Occurrence | None = None
    channel: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        occ = self.occurrence
        return {
            "campaign": self.campaign,
            "outcome": self.outcome,
            "text": self.text,
            "channel": self.channel,
            "occurrence": None
            if occ is None
            else {
                "key": occ.key,
                "date": occ.date.isoformat(),
                "earliest": occ.earliest.isoformat(),
                "latest": occ.latest.isoformat(),
            },
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything `explain` says about one contact on one day."""

    contact_id: str
    day: date
    contact: Contact | None
    label: str
    answers: tuple[Answer, ...]
    problems: tuple[Problem, ...]  # the row's problems (for a held-back row: why)
    suppressed: tuple[str, ...]  # suppression list entries that cover the contact
    history: tuple[MessageRecord, ...]  # the ledger's messages for the id, newest first
    # hook: what bounces, complaints and the post blocked, in words (outreach.feedback)
    blocked: tuple[str, ...] = ()

    @property
    def held_back(self) -> bool:
        """Whether the id names a row that is not used at all."""
        return self.contact is None

    def lines(self) -> list[str]:
        """The plain-text answer, a line at a time."""
        out: list[str] = []
        if self.contact is None:
            out.append(
                f"{self.contact_id} is held back: its row in the contacts file is not used, so "
                "no campaign reaches it"
            )
            out.extend(f"  {p}" for p in self.problems)
        else:
            out.append(f"{self.label}, on {self.day.isoformat()}:")
            out.extend(f"  {a.campaign}: {a.text}" for a in self.answers)
            if self.problems:
                out.append("problems with this contact in the contacts file:")
                out.extend(f"  {p}" for p in self.problems)
        if self.suppressed:
            out.append("on the suppression list: " + ", ".join(self.suppressed))
        # hook: blocked addresses and why
        out.extend(f"blocked: {text}" for text in self.blocked)
        if self.history:
            out.append("messages in the ledger, newest first:")
            out.extend(f"  {_history_line(r)}" for r in self.history)
        else:
            out.append("no messages in the ledger for this contact")
        return out

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "contact": self.contact_id,
            "date": self.day.isoformat(),
            "found": self.contact is not None,
            "label": self.label,
            "campaigns": [a.as_dict() for a in self.answers],
            "problems": [p.as_dict() for p in self.problems],
            "suppressed": list(self.suppressed),
            "blocked": list(self.blocked),  # hook: feedback blocks
            "history": [
                {
                    "date": r.run_date.isoformat(),
                    "campaign": r.campaign,
                    "occurrence": r.occurrence_key,
                    "channel": r.channel,
                    "status": r.status,
                    "reason": r.reason,
                    "error": r.error,
                    "artifact": r.artifact,
                }
                for r in self.history
            ],
        }


def _history_line(record: MessageRecord) -> str:
    text = (
        f"{record.run_date.isoformat()} {record.campaign} {record.occurrence_key} "
        f"{record.channel} {record.status}"
    )
    detail = record.error or record.reason
    if detail:
        text += f": {detail}"
    if record.artifact:
        text += f" ({record.artifact})"
    return text


def explain_contact(
    workspace: Workspace, *, contact_id: str, today: date, now: datetime
) -> Explanation:
    """Why each campaign does or does not reach a contact on `today`, from a simulated run."""
    settings = workspace.settings
    contact = find_contact(workspace, contact_id)
    events: list[TraceEvent] = []
    with Ledger.open(settings.ledger_path, readonly=True) as ledger:
        # What a real run would do first: close the windows that ended before today.
        ledger.mark_missed(today=today, now=now)
        wanted = contact.id if contact is not None else contact_id
        history = ledger.messages(contact_id=wanted)
        suppressions = ledger.suppressions()
        # hook: the blocks that apply to the contact as the contacts file has it now
        blocked = tuple(
            describe_block(b) for b in current_blocks(contact, ledger.blocks(contact_id=wanted))
        )
        if contact is not None:
            # The contact's own rows are all the run needs to know what is done, instead of
            # every campaign's rows (a million on a big ledger).
            statuses: dict[str, dict[tuple[str, str], str]] = {
                c.name: {} for c in workspace.campaigns
            }
            for record in history:
                known = statuses.get(record.campaign)
                if known is not None:
                    known[(record.contact_id, record.occurrence_key)] = record.status
            execute_run(
                workspace=workspace,
                ledger=ledger,
                deliverer=None,
                today=today,
                now=now,
                args=("explain", contact.id),
                simulate=True,
                trace=events.append,
                contacts=[contact],
                statuses=statuses,
            )
    problems = row_problems(workspace, contact_id)
    history.reverse()
    if contact is None:
        if not problems:
            raise unknown_contact(workspace, contact_id, known_messages=len(history))
        return Explanation(
            contact_id=contact_id,
            day=today,
            contact=None,
            label=contact_id,
            answers=(),
            problems=problems,
            suppressed=_suppressed(contact_id, None, suppressions),
            history=tuple(history),
            blocked=blocked,  # hook: feedback blocks
        )
    explainer = _Explainer(
        workspace=workspace,
        contact=contact,
        today=today,
        now=now,
        history=history,
        suppressions=suppressions,
        problems=problems,
    )
    answers = [
        explainer.answer(campaign, event)
        for campaign in workspace.campaigns
        for event in events
        if event.campaign == campaign.name
    ]
    return Explanation(
        contact_id=contact.id,
        day=today,
        contact=contact,
        label=contact_label(contact, workspace.contacts.path),
        answers=tuple(answers),
        problems=problems,
        suppressed=_suppressed(contact.id, contact.email, suppressions),
        history=tuple(history),
        blocked=blocked,  # hook: feedback blocks
    )


def _suppressed(
    contact_id: str, email: str | None, suppressions: dict[str, frozenset[str]]
) -> tuple[str, ...]:
    found = []
    for value in dict.fromkeys(v for v in (contact_id.lower(), (email or "").lower()) if v):
        channels = suppressions.get(value)
        if channels:
            found.append(f"{value} ({', '.join(sorted(channels))})")
    return tuple(found)


def _channels_text(channels: Iterable[str]) -> str:
    wanted = set(channels)
    return "all" if {"email", "letter"} <= wanted or "all" in wanted else ", ".join(sorted(wanted))


@dataclass
class _Explainer:
    """Turns one trace event into a sentence a business owner can read out on the phone."""

    workspace: Workspace
    contact: Contact
    today: date
    now: datetime
    history: list[MessageRecord]  # newest first
    suppressions: dict[str, frozenset[str]]
    problems: tuple[Problem, ...]

    def problem(self, name: str) -> Problem | None:
        return next((p for p in self.problems if p.field == name), None)

    def answer(self, campaign: Campaign, event: TraceEvent) -> Answer:
        outcome, occ = event.outcome, event.occurrence
        if outcome == "not in audience":
            return Answer(campaign.name, outcome, self.audience_miss(campaign))
        if outcome == "bad data":
            return Answer(campaign.name, outcome, f"cannot be worked out: {event.reason}")
        if outcome == "not due" or occ is None:
            return self.not_due(campaign)
        what = self.what(campaign, occ)
        if outcome == "send":
            return Answer(
                campaign.name, outcome, self.sending(campaign, event, what), occ, event.channel
            )
        if outcome == "deferred":
            text = (
                f"deferred by the cadence policy: {event.reason}; tried again on each run "
                f"until {occ.latest.isoformat()}, after that it is missed ({what})"
            )
            return Answer(campaign.name, outcome, text, occ, event.channel)
        if outcome == "already":
            return self.already(campaign, occ, what)
        if outcome == "skipped":
            return self.skipped(campaign, event.reason or "", occ, what)
        return Answer(campaign.name, outcome, f"{outcome}: {event.reason} ({what})", occ)

    # -- the sentences ---------------------------------------------------------------------

    def what(self, campaign: Campaign, occ: Occurrence) -> str:
        """`birthday on 2026-11-26, window 2026-11-23 to 2026-11-26`."""
        if campaign.kind == "promotion":
            return f"promotion from {occ.earliest.isoformat()} to {occ.latest.isoformat()}"
        if campaign.kind == "birthday":
            thing = f"birthday on {occ.date.isoformat()}"
        elif campaign.kind == "reminder":
            thing = f"{campaign.date_field} on {occ.date.isoformat()}"
        else:
            thing = f"one-off on {occ.date.isoformat()}"
        if occ.earliest == occ.latest:
            return f"{thing}, only on {occ.earliest.isoformat()}"
        return f"{thing}, window {occ.earliest.isoformat()} to {occ.latest.isoformat()}"

    def audience_miss(self, campaign: Campaign) -> str:
        audience, tags = campaign.audience, self.contact.tags
        has = ", ".join(sorted(tags)) or "none"
        wanted = list(audience.tags_any)
        if wanted and tags.isdisjoint(wanted):
            return (
                f"not in the audience: needs one of the tags {', '.join(wanted)} "
                f"(the contact's tags: {has})"
            )
        excluded = sorted(tags.intersection(audience.tags_none))
        if excluded:
            return (
                f"not in the audience: has the tag {', '.join(excluded)}, which the campaign "
                "excludes (tags_none)"
            )
        if audience.where:
            return f"not in the audience: `{audience.where}` is false for this contact"
        return "not in the audience"

    def sending(self, campaign: Campaign, event: TraceEvent, what: str) -> str:
        channel = event.channel or "email"
        if channel == "letter":
            arrival = self.today + timedelta(days=self.workspace.settings.letters.delivery_days)
            text = f"would go today by letter, arriving about {arrival.isoformat()} ({what})"
        else:
            text = f"would go today by email ({what})"
        preferred = self.contact.preferred_channel or "email"
        if campaign.channel == "preferred" and channel != preferred:
            why = "no usable email" if preferred == "email" else "incomplete postal address"
            text += f"; not by {preferred}: {why}"
        if event.reason:
            text += f"; {event.reason}"
        return text

    def already(self, campaign: Campaign, occ: Occurrence, what: str) -> Answer:
        record = next(
            (
                r
                for r in self.history
                if r.campaign == campaign.name and r.occurrence_key == occ.key
            ),
            None,
        )
        if record is None:  # the runner saw it done, so the ledger has it
            return Answer(campaign.name, "already", f"already done ({what})", occ)
        status, channel = record.status, record.channel
        changed = (
            record.updated_at.astimezone(self.now.tzinfo).date()
            if record.updated_at is not None
            else record.run_date
        )
        if status == "rendered":
            where = f": {record.artifact}" if record.artifact else ""
            text = f"already made on {record.run_date.isoformat()} by {channel}{where} ({what})"
        elif status == "sent":
            text = f"already sent on {changed.isoformat()} by {channel} ({what})"
        elif status in ("sending", "uncertain"):
            text = (
                f"uncertain since {changed.isoformat()}: the run died while handing the email to "
                "the mail server, so it may have arrived; it is never resent automatically "
                f"(check the mailbox) ({what})"
            )
        elif status == "failed":
            text = (
                f"failed on {changed.isoformat()}: {record.error or 'delivery failed'}; "
                f"`outreach send` tries it again ({what})"
            )
        elif status == "missed":
            text = f"missed: {record.reason} ({what})"
        else:
            text = f"already {status} on {record.run_date.isoformat()} ({what})"
        return Answer(
            campaign.name, "missed" if status == "missed" else "already", text, occ, channel
        )

    def skipped(self, campaign: Campaign, reason: str, occ: Occurrence, what: str) -> Answer:
        contact = self.contact
        if reason.startswith("opted out"):
            channel = reason.partition("(")[2].rstrip(")") or "email"
            if channel in contact.opt_out:
                said = _channels_text(contact.opt_out)
                text = (
                    f"opted out of {channel}: the contacts file says opt_out: {said} "
                    f"(line {contact.line}) ({what})"
                )
            else:
                entries = (
                    ", ".join(_suppressed(contact.id, contact.email, self.suppressions))
                    or "the suppression list"
                )
                text = f"opted out of {channel}: on the suppression list: {entries} ({what})"
            return Answer(campaign.name, "opted out", text, occ, channel)
        if reason == "no usable email":
            bad = self.problem("email")
            if bad is not None:
                return Answer(campaign.name, "bad data", f"no usable email: {bad} ({what})", occ)
            return Answer(
                campaign.name, "skipped", f"no email address in the contacts file ({what})", occ
            )
        if reason == "incomplete postal address":
            bad = self.problem("country")
            if bad is not None:
                return Answer(
                    campaign.name, "bad data", f"no usable postal address: {bad} ({what})", occ
                )
            gaps = ", ".join(address_gaps(contact))
            return Answer(
                campaign.name,
                "skipped",
                f"incomplete postal address (missing {gaps}) ({what})",
                occ,
            )
        return Answer(campaign.name, "skipped", f"skipped: {reason} ({what})", occ)

    def not_due(self, campaign: Campaign) -> Answer:
        contact, name = self.contact, campaign.name
        if campaign.kind == "birthday" and contact.birthday is None:
            bad = self.problem("birthday")
            if bad is not None:
                return Answer(name, "bad data", f"no birthday message: {bad}")
            return Answer(name, "not due", "not due: no birthday in the contacts file")
        settings = self.workspace.settings
        fmt = settings.contacts.date_format
        upcoming = [
            occ
            for occ in occurrences_between(
                campaign,
                contact,
                start=self.today + timedelta(days=1),
                end=self.today + timedelta(days=LOOKAHEAD_DAYS),
                date_format=fmt,
            )
            if occ.earliest > self.today
        ]
        if campaign.kind == "reminder" and not upcoming and not self._has_field(campaign):
            return Answer(
                name, "not due", f"not due: no {campaign.date_field} in the contacts file"
            )
        past = [
            r
            for r in self.history
            if r.campaign == name and r.latest is not None and r.latest < self.today
        ]
        past.sort(key=lambda r: (r.latest or date.min, r.run_date), reverse=True)
        text = f"nothing due on {self.today.isoformat()}"
        outcome = "not due"
        if past:
            last = past[0]
            window = f"{last.occurrence_key}, window {_window(last)}"
            if last.status == "missed":
                outcome = "missed"
                text = (
                    f"window closed: the last one ({window}) was deferred until its window "
                    f"closed and is recorded as missed, never sent late ({last.reason})"
                )
            else:
                text += f"; the last one ({window}) is {last.status} ({last.run_date.isoformat()})"
        if upcoming:
            nxt = upcoming[0]
            text += (
                f"; the next window opens on {nxt.earliest.isoformat()} "
                f"({self.what(campaign, nxt)})"
            )
        elif outcome == "missed":
            pass  # the closed window says it all
        elif campaign.kind == "promotion" and campaign.end is not None:
            text += f"; the promotion ended on {campaign.end.isoformat()}"
        else:
            text += "; no later window"
        return Answer(name, outcome, text)

    def _has_field(self, campaign: Campaign) -> bool:
        name = campaign.date_field or ""
        return bool(self.contact.extra.get(name) or getattr(self.contact, name, None))


def _window(record: MessageRecord) -> str:
    first = record.earliest.isoformat() if record.earliest else "?"
    last = record.latest.isoformat() if record.latest else "?"
    return f"{first} to {last}"
