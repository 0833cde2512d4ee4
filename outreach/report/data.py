"""What the report shows, gathered from the ledger, the plan and the out/ folder.

Everything here is plain records: the charts and the HTML page are made from them elsewhere
(`charts.py`, `page.py`), so this module never formats anything for people.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TypeVar

from outreach.contacts import Contact
from outreach.feedback.process import AUTOMATIC_STOPS, COMPLAINT_DAYS
from outreach.i18n import _
from outreach.ledger import (
    COUNTED_STATUSES,
    Block,
    LedgerReader,
    MessageRecord,
    ReplyRecord,
    ledger_exists,
    read_ledger,
)
from outreach.ledger.outcomes import opened, redemptions
from outreach.model.config import Settings
from outreach.model.errors import OutreachError, Problem
from outreach.model.reasons import Code
from outreach.outcomes.results import CampaignResult, read_results
from outreach.pipeline.parallel import ordered_map
from outreach.rehearse.plan import Plan, plan_days
from outreach.workspace import Workspace

_T = TypeVar("_T")

PLAN_DAYS = 30
# Contacts listed under one reason of one campaign; the rest is a count ("and 812 more").
LISTED_PER_REASON = 25
# Runs shown in a period report, newest first.
RUNS_SHOWN = 10
# Letter batches and emails shown: the newest ones (a period may hold many run days).
SAMPLES_SHOWN = 12
THUMBNAIL_PX = 220  # the longer side of a letter's first-page thumbnail
THUMBNAIL_JOBS = 2
HELD_STATUSES = ("deferred", "skipped", "failed", "missed", "uncertain")

# Why a message was held back, as a closed set of codes (the ledger keeps the sentence).
REASON_CODES = (
    "quiet_day",
    "min_gap",
    "max_messages",
    "window_closed",
    "letter_too_late",
    "other",
)


_CODES = frozenset(code.value for code in Code)


def held_code(record: MessageRecord) -> str:
    """Why a deferred or missed message was held back: one of REASON_CODES.

    The ledger keeps the runner's code beside its sentence (a missed message keeps the code of
    what deferred it, `window_closed` when nothing did); the report never reads the sentence.
    """
    return record.reason_code if record.reason_code in REASON_CODES else "other"


@dataclass(frozen=True, slots=True)
class DayCount:
    """Messages of one campaign on one channel on one day, from the ledger or the plan.

    A past message is `sent` once a server took it; until then (the outbox, a letter's PDF)
    it is only prepared.
    """

    day: date
    campaign: str
    channel: str  # email | letter
    count: int
    planned: bool
    sent: bool = False


@dataclass(frozen=True, slots=True)
class HeldCount:
    """Messages held back on one day: deferred or missed, and why."""

    day: date
    status: str  # deferred | missed
    reason: str  # one of REASON_CODES, or "planned" for the plan's days
    count: int
    planned: bool


@dataclass(frozen=True, slots=True)
class HeldContact:
    """One contact a run held back, and where its row is."""

    contact_id: str
    name: str
    line: int | None
    detail: str  # the ledger's reason or error, as written


@dataclass(frozen=True, slots=True)
class HeldGroup:
    """The contacts of one campaign held back for one reason in one run."""

    campaign: str
    status: str
    reason: str  # the ledger's reason, or its error's kind, as a short text
    code: str  # a REASON_CODES code (deferred, missed), else the ledger's Code value or ""
    total: int
    contacts: tuple[HeldContact, ...]


@dataclass(frozen=True, slots=True)
class RunView:
    """One run as its summary tells it: per campaign counts, reasons, row problems."""

    run_id: int | None
    run_date: date
    started_at: datetime | None
    dry_run: bool
    campaigns: tuple[Mapping[str, object], ...]
    problems: tuple[Problem, ...]
    extra: Mapping[str, object] = field(default_factory=dict)  # keys this page does not know


@dataclass(frozen=True, slots=True)
class LetterBatch:
    """A batch PDF of one campaign's letters on one day, with its first page as a PNG."""

    day: date
    campaign: str
    pdf: str  # relative to the workspace root
    manifest: str | None
    letters: int
    thumbnail: bytes | None


@dataclass(frozen=True, slots=True)
class EmailSample:
    """One campaign's email as its recipient sees it (one .eml of the outbox)."""

    day: date
    campaign: str
    eml: str  # relative to the workspace root
    folder: str
    count: int  # .eml files of that campaign that day
    subject: str
    html: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the page shows."""

    business: str
    country: str  # the sender's: the region of the page's dates and money
    generated_at: datetime
    past_start: date
    past_end: date
    plan_start: date
    plan_end: date
    campaigns: tuple[str, ...]
    daily: tuple[DayCount, ...]
    totals: Mapping[str, Mapping[str, int]]  # campaign -> status -> messages (period, ledger)
    per_contact: Mapping[int, int]  # messages in the cadence window -> contacts
    cap: int
    window_days: int
    window_start: date
    silent_contacts: int  # contacts with no message in the window
    held: tuple[HeldCount, ...]
    runs: tuple[RunView, ...]
    held_groups: tuple[HeldGroup, ...]  # of the newest run shown
    letters: tuple[LetterBatch, ...]
    emails: tuple[EmailSample, ...]
    notes: tuple[str, ...] = ()  # codes: plan_failed, no_pdftoppm, no_ledger
    replies: tuple[ReplyRecord, ...] = ()  # that wait for the owner, oldest first
    complaints: tuple[int, int] = (0, 0)  # complaints, emails sent: the last 30 days to `end`
    # suppressions that what came back made in the period: (value, channel, source, day)
    stops: tuple[tuple[str, str, str, str], ...] = ()
    # Did they come back (outreach.outcomes.results): per campaign, and redemptions by day.
    comebacks: tuple[CampaignResult, ...] = ()
    redeemed_daily: tuple[tuple[date, int], ...] = ()
    attribution_days: int = 30
    # What came back in the period: blocks made (bounces, complaints, returned letters) and the
    # feedback mail read, by kind (hard, soft, complaint, reply...).
    blocks: tuple[Block, ...] = ()
    feedback: Mapping[str, int] = field(default_factory=dict)


@dataclass
class _Past:
    """What the ledger and the out/ folder say about the period (made in a process of its own)."""

    daily: list[DayCount] = field(default_factory=list)
    held: list[HeldCount] = field(default_factory=list)
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    messages_per_contact: dict[str, int] = field(default_factory=dict)
    runs: list[RunView] = field(default_factory=list)
    run_rows: list[MessageRecord] = field(default_factory=list)
    letters: tuple[LetterBatch, ...] = ()
    emails: tuple[EmailSample, ...] = ()
    notes: list[str] = field(default_factory=list)
    replies: list[ReplyRecord] = field(default_factory=list)
    complaints: tuple[int, int] = (0, 0)
    stops: list[tuple[str, str, str, str]] = field(default_factory=list)
    comebacks: tuple[CampaignResult, ...] = ()
    redeemed_daily: tuple[tuple[date, int], ...] = ()
    blocks: list[Block] = field(default_factory=list)
    feedback: dict[str, int] = field(default_factory=dict)


def gather_report(
    workspace: Workspace,
    *,
    start: date,
    end: date,
    now: datetime,
    summary: Mapping[str, object] | None = None,
) -> ReportData:
    """The report for the days start..end (the past) and the 30 days after end (the plan).

    `summary` is the run that just ended (`RunSummary.as_dict()`), shown as "the run"; without
    it the runs of the period are read from the ledger.
    """
    settings = workspace.settings
    plan_start = end + timedelta(days=1)
    window_start = end - timedelta(days=settings.cadence.per_days - 1)
    # The plan is most of the work (a simulated run a day, on every contact): the ledger and
    # the out/ folder are read meanwhile in another process, on the other core.
    past_of = _in_background(
        functools.partial(
            _gather_past,
            settings=settings,
            start=start,
            end=end,
            window_start=window_start,
            summary=summary,
        )
    )
    plan: Plan | None = None
    with contextlib.suppress(OutreachError):  # the past half of the page is worth having alone
        # One process: this one already has the past's reader (a fork) going.
        plan = plan_days(workspace, start=plan_start, days=PLAN_DAYS, top=0, workers=1)
    contacts = workspace.contacts
    past = past_of()
    daily, held, notes = past.daily, past.held, past.notes
    if plan is None:
        notes.append("plan_failed")
    else:
        for c in plan.counts:
            if c.emails:
                daily.append(DayCount(c.day, c.campaign, "email", c.emails, True))
            if c.letters:
                daily.append(DayCount(c.day, c.campaign, "letter", c.letters, True))
        for day, deferred, missed in _plan_held(plan):
            if deferred:
                held.append(HeldCount(day, "deferred", "planned", deferred, True))
            if missed:
                held.append(HeldCount(day, "missed", "planned", missed, True))
    names = [c.name for c in workspace.campaigns]
    names.extend(name for name in past.totals if name not in names)
    per_contact = Counter(n for n in past.messages_per_contact.values() if n)
    known = {c.id for c in contacts.contacts}
    heard = sum(1 for cid, n in past.messages_per_contact.items() if n and cid in known)
    wanted = {r.contact_id for r in past.run_rows}
    by_id = {c.id: c for c in contacts.contacts if c.id in wanted}
    return ReportData(
        business=settings.sender.name,
        country=settings.sender.address.country or "",
        generated_at=now,
        past_start=start,
        past_end=end,
        plan_start=plan_start,
        plan_end=plan_start + timedelta(days=PLAN_DAYS - 1),
        campaigns=tuple(names),
        daily=tuple(daily),
        totals=past.totals,
        per_contact=dict(sorted(per_contact.items())),
        cap=settings.cadence.max_messages,
        window_days=settings.cadence.per_days,
        window_start=window_start,
        silent_contacts=max(0, len(known) - heard),
        held=tuple(held),
        runs=tuple(past.runs),
        held_groups=tuple(_held_groups(past.run_rows, by_id)),
        letters=past.letters,
        emails=past.emails,
        notes=tuple(notes),
        replies=tuple(past.replies),
        complaints=past.complaints,
        stops=tuple(past.stops),
        comebacks=past.comebacks,
        redeemed_daily=past.redeemed_daily,
        attribution_days=settings.results.attribution_days,
        blocks=tuple(past.blocks),
        feedback=past.feedback,
    )


def _comebacks(
    ledger: LedgerReader, settings: Settings, *, start: date, end: date
) -> tuple[tuple[CampaignResult, ...], tuple[tuple[date, int], ...]]:
    """The period's results per campaign, and its redemptions counted by day."""
    days = settings.results.attribution_days
    with opened(ledger, _("read the results")) as conn:
        found = read_results(conn, start=start, end=end, attribution_days=days)
        redeemed = Counter(r.day for r in redemptions(conn) if start <= r.day <= end)
    return tuple(found), tuple(sorted(redeemed.items()))


def _gather_past(
    *,
    settings: Settings,
    start: date,
    end: date,
    window_start: date,
    summary: Mapping[str, object] | None,
) -> _Past:
    """The ledger's messages and runs of the period, and the files in out/."""
    past = _Past()
    past.letters, past.emails = _outgoing(settings, start=start, end=end, notes=past.notes)
    if not ledger_exists(settings):
        past.notes.append("no_ledger")

    def read(ledger: LedgerReader) -> None:
        # Assigns, never appends: a read that had to be redone from a copy starts afresh.
        records = [r for r in ledger.messages(since=start) if r.run_date <= end]
        past.daily = _past_days(records)
        past.replies = ledger.replies(statuses=["open"])
        month = end - timedelta(days=COMPLAINT_DAYS - 1)
        complained = ledger.feedback_kinds(since=month).get("complaint", 0)
        past.complaints = (complained, ledger.emails_sent(since=month))
        past.blocks = [b for b in ledger.blocks() if start <= b.day <= end]
        past.feedback = ledger.feedback_kinds(since=start)
        past.stops = [
            (value, channel, source, since[:10])
            for value, channel, source, since in ledger.suppression_rows()
            if source in AUTOMATIC_STOPS and start.isoformat() <= since[:10] <= end.isoformat()
        ]
        past.held = _past_held(records, start=start, end=end, tz=settings.tz)
        totals: dict[str, Counter[str]] = {}
        for r in records:
            totals.setdefault(r.campaign, Counter())[r.status] += 1
        past.totals = {name: dict(counts) for name, counts in totals.items()}
        past.comebacks, past.redeemed_daily = _comebacks(ledger, settings, start=start, end=end)
        past.messages_per_contact = {
            contact_id: sum(1 for m in messages if m[0] <= end)
            for contact_id, messages in ledger.contact_pressure(since=window_start).items()
        }
        if summary is not None:
            past.runs = [_run_view(None, None, summary)]
        else:
            past.runs = list(_period_runs(ledger, start=start, end=end))
        past.run_rows = []
        if past.runs:
            latest = past.runs[0].run_date
            if start <= latest <= end:
                past.run_rows = [
                    r for r in records if r.run_date == latest and r.status in HELD_STATUSES
                ]
            else:
                past.run_rows = [
                    r
                    for r in ledger.messages(since=latest, statuses=HELD_STATUSES)
                    if r.run_date == latest
                ]

    read_ledger(settings, read)
    return past


def _period_runs(ledger: LedgerReader, *, start: date, end: date) -> list[RunView]:
    """The runs of the period that left a summary, newest first."""
    runs = []
    for row in ledger.runs(limit=RUNS_SHOWN * 5):
        counts = row.get("counts")
        day = row.get("run_date")
        if not isinstance(counts, dict) or "campaigns" not in counts:
            continue  # a run still going, or one that died: no summary
        if not isinstance(day, date) or not start <= day <= end:
            continue
        started = row.get("started_at")
        run_id = row.get("id")
        runs.append(
            _run_view(
                run_id if isinstance(run_id, int) else None,
                started if isinstance(started, datetime) else None,
                counts,
            )
        )
        if len(runs) == RUNS_SHOWN:
            break
    return runs


# ---------------------------------------------------------------------------------------------
# A job in a process of its own


def _in_background(job: Callable[[], _T]) -> Callable[[], _T]:
    """Start `job` in a forked process; a function that waits for its result.

    Where there is no fork, the job runs when its result is wanted. The process dies with
    this one (outreach.pipeline.parallel), and ends when its result is taken or dropped.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        return job
    # Forked, the process inherits the job instead of receiving it pickled.
    running = ordered_map(lambda _: job(), [None], processes=1)

    def wait() -> _T:
        with running:
            ((_, result),) = running
        return result

    return wait


# ---------------------------------------------------------------------------------------------
# The ledger's side


def _past_days(records: Iterable[MessageRecord]) -> list[DayCount]:
    """Messages made per run day, campaign and channel: sent, or only prepared."""
    counted = set(COUNTED_STATUSES)
    found: Counter[tuple[date, str, str, bool]] = Counter(
        (r.run_date, r.campaign, r.channel, r.status == "sent")
        for r in records
        if r.status in counted
    )
    return [
        DayCount(day, campaign, channel, n, False, sent)
        for (day, campaign, channel, sent), n in sorted(found.items())
    ]


def _past_held(
    records: Iterable[MessageRecord], *, start: date, end: date, tz: object
) -> list[HeldCount]:
    """Deferred messages per run day and missed ones per day they were marked, by reason."""
    found: Counter[tuple[date, str, str]] = Counter()
    for r in records:
        if r.status == "deferred":
            found[(r.run_date, "deferred", held_code(r))] += 1
        elif r.status == "missed":
            day = r.run_date
            if r.updated_at is not None:
                moment = r.updated_at
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                day = moment.astimezone(tz).date()  # type: ignore[arg-type]
            if start <= day <= end:
                # The reason of a miss is the deferral that kept it back until too late.
                found[(day, "missed", held_code(r))] += 1
    return [
        HeldCount(day, status, code, n, False) for (day, status, code), n in sorted(found.items())
    ]


def _plan_held(plan: Plan) -> list[tuple[date, int, int]]:
    by_day: dict[date, list[int]] = {}
    for c in plan.counts:
        entry = by_day.setdefault(c.day, [0, 0])
        entry[0] += c.deferred
        entry[1] += c.missed
    return [(day, d, m) for day, (d, m) in sorted(by_day.items())]


def _run_view(
    run_id: int | None, started: datetime | None, counts: Mapping[str, object]
) -> RunView:
    """A run summary dict (as `RunSummary.as_dict()` makes it) as a RunView; unknown keys kept."""
    known = {"date", "dry_run", "campaigns", "problems"}
    day_text = counts.get("date")
    day = date.fromisoformat(day_text) if isinstance(day_text, str) else date.min
    campaigns = counts.get("campaigns")
    problems = counts.get("problems")
    return RunView(
        run_id=run_id,
        run_date=day,
        started_at=started,
        dry_run=bool(counts.get("dry_run")),
        campaigns=tuple(c for c in campaigns if isinstance(c, Mapping))
        if isinstance(campaigns, list)
        else (),
        problems=tuple(_problem(p) for p in problems if isinstance(p, Mapping))
        if isinstance(problems, list)
        else (),
        extra={k: v for k, v in counts.items() if k not in known},
    )


def _problem(data: Mapping[str, object]) -> Problem:
    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    def number(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) else None

    return Problem(
        message=text("message") or "",
        path=text("path"),
        line=number("line"),
        field=text("field"),
        column=number("column"),
        contact_id=text("contact_id"),
        campaign=text("campaign"),
        hint=text("hint"),
        blocking=bool(data.get("blocking")),
    )


def contact_name(contact: Contact | None) -> str:
    """First and last name, as the contacts file spells them."""
    if contact is None:
        return ""
    return " ".join(part for part in (contact.first_name, contact.last_name) if part)


def _code(record: MessageRecord) -> str:
    """The ledger's reason code of a record when it is one of ours, else ""."""
    return record.reason_code if record.reason_code in _CODES else ""


def _held_groups(rows: Sequence[MessageRecord], by_id: Mapping[str, Contact]) -> list[HeldGroup]:
    """The held-back messages of one run, by campaign, status and reason."""
    groups: dict[tuple[str, str, str], list[MessageRecord]] = {}
    for r in rows:
        # A deferral's sentence names dates and other campaigns: group by its rule; the rest
        # by their code when the ledger has one (its sentence holds the channel, the error...).
        key_text = held_code(r) if r.status in ("deferred", "missed") else _code(r)
        groups.setdefault((r.campaign, r.status, key_text or r.reason or r.error or ""), []).append(
            r
        )
    out = []
    order = {status: i for i, status in enumerate(HELD_STATUSES)}
    for (campaign, status, key_text), members in sorted(
        groups.items(), key=lambda item: (item[0][0], order[item[0][1]], -len(item[1]))
    ):
        listed = []
        for r in sorted(members, key=lambda r: r.contact_id)[:LISTED_PER_REASON]:
            contact = by_id.get(r.contact_id)
            listed.append(
                HeldContact(
                    contact_id=r.contact_id,
                    name=contact_name(contact),
                    line=contact.line if contact is not None else None,
                    detail=r.error or r.reason or "",
                )
            )
        first = members[0]
        code = held_code(first) if status in ("deferred", "missed") else _code(first)
        out.append(
            HeldGroup(
                campaign=campaign,
                status=status,
                reason=key_text if code in REASON_CODES else first.reason or first.error or "",
                code=code,
                total=len(members),
                contacts=tuple(listed),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# What goes out: the files of the period in out/


def _day_folders(base: Path, *, start: date, end: date) -> list[tuple[date, Path]]:
    """out/<kind>/<YYYY-MM-DD>/ folders within the period, newest first."""
    found: list[tuple[date, Path]] = []
    if not base.is_dir():
        return found
    for folder in base.iterdir():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.is_dir() and start <= day <= end:
            found.append((day, folder))
    return sorted(found, reverse=True)


def _outgoing(
    settings: Settings, *, start: date, end: date, notes: list[str]
) -> tuple[tuple[LetterBatch, ...], tuple[EmailSample, ...]]:
    root = settings.root
    batches = [
        (day, pdf)
        for day, folder in _day_folders(settings.out_dir / "letters", start=start, end=end)
        for pdf in sorted(folder.glob("*.pdf"))
    ][:SAMPLES_SHOWN]
    pdftoppm = shutil.which("pdftoppm")
    thumbnails: list[bytes | None] = [None] * len(batches)
    if pdftoppm is not None and batches:
        # pdftoppm runs as a process of its own: a few at once while this one goes on.
        with ThreadPoolExecutor(max_workers=THUMBNAIL_JOBS) as pool:
            thumbnails = list(pool.map(lambda b: first_page_png(b[1], tool=pdftoppm), batches))
    letters: list[LetterBatch] = []
    for (day, pdf), thumbnail in zip(batches, thumbnails, strict=True):
        manifest = pdf.with_suffix(".manifest.csv")
        letters.append(
            LetterBatch(
                day=day,
                campaign=pdf.stem,
                pdf=_from_root(pdf, root),
                manifest=_from_root(manifest, root) if manifest.exists() else None,
                letters=_manifest_rows(manifest),
                thumbnail=thumbnail,
            )
        )
    if letters and pdftoppm is None:
        notes.append("no_pdftoppm")
    emails: list[EmailSample] = []
    seen: set[str] = set()
    for day, folder in _day_folders(settings.out_dir / "outbox", start=start, end=end):
        for campaign_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if campaign_dir.name in seen or len(emails) == SAMPLES_SHOWN:
                continue
            # Names, not paths: a day's folder may hold a hundred thousand of them.
            with os.scandir(campaign_dir) as entries:
                names = [e.name for e in entries if e.name.endswith(".eml")]
            if not names:
                continue
            seen.add(campaign_dir.name)
            first = campaign_dir / min(names)
            emails.append(_email_sample(first, day=day, count=len(names), root=root))
    return tuple(letters), tuple(emails)


def _from_root(path: Path, root: Path) -> str:
    """A file's path as the page names it: from the workspace's folder, or whole when
    `paths.out` points outside it."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def _manifest_rows(manifest: Path) -> int:
    if not manifest.exists():
        return 0
    with manifest.open(encoding="utf-8") as handle:
        return max(0, sum(1 for _ in handle) - 1)


def first_page_png(pdf: Path, *, tool: str) -> bytes | None:
    """The PDF's first page as a small PNG (pdftoppm, from poppler-utils), or None."""
    with tempfile.TemporaryDirectory(prefix="outreach-thumb-") as folder:
        target = Path(folder) / "page"
        try:
            subprocess.run(
                [
                    tool,
                    *("-f", "1", "-l", "1", "-singlefile", "-png"),
                    *("-scale-to", str(THUMBNAIL_PX)),
                    str(pdf),
                    str(target),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        png = target.with_suffix(".png")
        return png.read_bytes() if png.exists() else None


def _email_sample(path: Path, *, day: date, count: int, root: Path) -> EmailSample:
    """The HTML part (or the text) and subject of one .eml file."""
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    html = text = None
    if isinstance(message, EmailMessage):
        body = message.get_body(preferencelist=("html",))
        if body is not None and isinstance(body, EmailMessage):
            html = str(body.get_content())
        plain = message.get_body(preferencelist=("plain",))
        if plain is not None and isinstance(plain, EmailMessage):
            text = str(plain.get_content())
    return EmailSample(
        day=day,
        campaign=path.parent.name,
        eml=_from_root(path, root),
        folder=_from_root(path.parent, root),
        count=count,
        subject=str(message.get("Subject", "")),
        html=html,
        text=text,
    )
