"""A ledger that must not start over silently, and `outreach ledger rebuild`.

The ledger is what makes runs safe to repeat. A ledger that is missing, emptied (a file
truncated to 0 bytes) or moved aside beside an out/ folder that holds earlier messages would
make every one of them again — and with SMTP send them again. So a run refuses to start with
a new ledger when out/ holds messages, unless told to (`run --new-ledger`), and
`outreach ledger rebuild` writes the ledger's record of what was made from out/ itself:

* every email in out/outbox/<day>/<campaign>/ whose Message-ID matches the contact, campaign
  and one of the occurrences its file name allows (the Message-ID is a hash of the three);
* every letter in the manifests of out/letters/<day>/, whose rows name contact and occurrence.

What out/ cannot prove is said, not guessed: whether an email was sent. With
`delivery: outbox` an email in the outbox is delivered as far as outreach knows (`rendered`);
with SMTP it may or may not have gone, so it is recorded `uncertain` (never sent again
automatically; `outreach send --retry-uncertain` after checking).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from urllib.parse import unquote

from outreach.i18n import _, ngettext
from outreach.ledger import Ledger, MessageRecord, acquire_lock, ledger_location
from outreach.model.config import Settings
from outreach.model.errors import LedgerError

OUTBOX = "outbox"
LETTERS = "letters"
_REMINDER_DETAIL = re.compile(r"(?P<id>.+)\.(?P<day>\d{4}-\d{2}-\d{2})_(?P<offset>-?\d+)")
_MESSAGE_ID = re.compile(r"([0-9a-f]{32})@.+")
_HEADER_BYTES = 64 * 1024


@dataclass
class MadeFiles:
    """What out/ holds from earlier runs: email files and letters in batch manifests."""

    emails: list[Path] = field(default_factory=list)
    manifests: list[Path] = field(default_factory=list)
    letters: int = 0

    @property
    def messages(self) -> int:
        return len(self.emails) + self.letters


def _day_folders(base: Path) -> list[tuple[date, Path]]:
    found: list[tuple[date, Path]] = []
    if not base.is_dir():
        return found
    for entry in sorted(base.iterdir()):
        try:
            day = date.fromisoformat(entry.name)
        except ValueError:
            continue
        if entry.is_dir():
            found.append((day, entry))
    return found


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    try:
        return list(csv.DictReader(io.StringIO(text)))
    except csv.Error:
        return []


def made_files(settings: Settings) -> MadeFiles:
    """The emails and letters earlier runs left in out/ (complete files only)."""
    made = MadeFiles()
    for _day, folder in _day_folders(settings.out_dir / OUTBOX):
        made.emails += sorted(p for p in folder.glob("*/*.eml") if not p.name.startswith("."))
    for _day, folder in _day_folders(settings.out_dir / LETTERS):
        for manifest in sorted(folder.glob("*.manifest.csv")):
            if manifest.name.startswith("."):
                continue
            made.manifests.append(manifest)
            made.letters += len(_manifest_rows(manifest))
    return made


def _is_empty(ledger: Ledger) -> bool:
    return not ledger.runs(limit=1) and not ledger.count_messages()


def _describe(made: MadeFiles) -> str:
    return _("{emails} and {letters}").format(
        emails=ngettext("{n} email", "{n} emails", len(made.emails)).format(n=len(made.emails)),
        letters=ngettext("{n} letter", "{n} letters", made.letters).format(n=made.letters),
    )


def check_ledger_start(ledger: Ledger, *, settings: Settings, new_ledger: bool) -> None:
    """Refuse a run on a new or emptied ledger when out/ holds messages of earlier runs."""
    if new_ledger or not _is_empty(ledger):
        return
    made = made_files(settings)
    if not made.messages:
        return
    raise LedgerError(
        _(
            "the ledger is new or empty, but {out} holds {made} from "
            "earlier runs: starting over would make them again (and with SMTP send them again)"
        ).format(out=settings.paths.out, made=_describe(made)),
        path=ledger.path,
        hint=ngettext(
            "run `outreach ledger rebuild` to record them from the out folder first; or, "
            "to make that {n} message again on purpose, `outreach run --new-ledger`",
            "run `outreach ledger rebuild` to record them from the out folder first; or, "
            "to make those {n} messages again on purpose, `outreach run --new-ledger`",
            made.messages,
        ).format(n=made.messages),
    )


def _campaign_name(component: str) -> str:
    return unquote(component)  # path_component writes other characters as %XX per byte


def _digest(*, contact_id: str, campaign: str, occurrence_key: str) -> str:
    text = f"{campaign}\x00{contact_id}\x00{occurrence_key}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _email_keys(stem: str, run_day: date) -> list[tuple[str, str]]:
    """(contact id, occurrence key) pairs a file name allows, the likeliest first."""
    pairs: list[tuple[str, str]] = []
    reminder = _REMINDER_DETAIL.fullmatch(stem)
    if reminder is not None:
        cid = unquote(reminder["id"])
        pairs.append((cid, f"reminder:{reminder['day']}:{reminder['offset']}"))
    cid = unquote(stem)
    years = (run_day.year, run_day.year + 1, run_day.year - 1)
    pairs += [(cid, "one_off"), (cid, "promotion")]
    pairs += [(cid, f"birthday:{year}") for year in years]
    return pairs


def _message_id(path: Path) -> str | None:
    """The Message-ID of an email file (without angle brackets), or None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES)
    except OSError:
        return None
    value = BytesHeaderParser(policy=compat32).parsebytes(head).get("Message-ID")
    return str(value).strip().strip("<>") if value else None


@dataclass
class RebuildReport:
    """What `outreach ledger rebuild` recorded, and what it could not."""

    ledger: Path
    moved_aside: Path | None = None
    emails_rendered: int = 0
    emails_uncertain: int = 0
    letters: int = 0
    not_understood: list[Path] = field(default_factory=list)
    delivery: str = "outbox"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "ledger": str(self.ledger),
            "moved_aside": str(self.moved_aside) if self.moved_aside else None,
            "emails_rendered": self.emails_rendered,
            "emails_uncertain": self.emails_uncertain,
            "letters": self.letters,
            "not_understood": [str(p) for p in self.not_understood],
        }


def _move_aside(path: Path, *, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.replace(target.with_name(target.name + suffix))
    return target


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class _HoldsRecordError(LedgerError):
    """The ledger is readable and not empty: there is nothing to rebuild."""


def rebuild_ledger(settings: Settings, *, now: datetime) -> RebuildReport:
    """Write a new ledger's record of the messages in out/; LedgerError if the ledger holds a
    record already (then there is nothing to rebuild)."""
    if settings.ledger_url is not None:
        raise LedgerError(
            _(
                "`outreach ledger rebuild` works on the SQLite ledger; this workspace's ledger is "
                "on PostgreSQL"
            ),
            path=ledger_location(settings),
            hint=_(
                "restore the database from the server's backup, or rebuild into SQLite "
                "(without state.url and OUTREACH_LEDGER_URL) and `outreach ledger copy` it back"
            ),
        )
    path = settings.ledger_path
    report = RebuildReport(ledger=path, delivery=settings.delivery.method)
    with acquire_lock(settings.state_dir, now=now):
        try:
            with Ledger.open(path) as ledger:
                if not _is_empty(ledger):
                    raise _HoldsRecordError(
                        _("the ledger is readable and holds a record: nothing to rebuild"),
                        path=path,
                        hint=_("`outreach history` shows what it knows"),
                    )
        except _HoldsRecordError:
            raise
        except LedgerError:
            report.moved_aside = _move_aside(path, now=now)
        with Ledger.open(path) as ledger:
            run_id = ledger.begin_run(
                run_date=now.date(), started_at=now, args=["ledger", "rebuild"]
            )
            records = _email_records(settings, report, now=now)
            records += _letter_records(settings, report, now=now)
            ledger.record(records, run_id=run_id)
            ledger.end_run(run_id, ended_at=now, counts=report.as_dict())
    return report


def _email_records(
    settings: Settings, report: RebuildReport, *, now: datetime
) -> list[MessageRecord]:
    records: list[MessageRecord] = []
    smtp = settings.delivery.method == "smtp"
    for day, folder in _day_folders(settings.out_dir / OUTBOX):
        for eml in sorted(folder.glob("*/*.eml")):
            if eml.name.startswith("."):
                continue
            campaign = _campaign_name(eml.parent.name)
            message_id = _message_id(eml)
            digest = _MESSAGE_ID.fullmatch(message_id) if message_id else None
            found = digest.group(1) if digest else None
            match = next(
                (
                    (cid, key)
                    for cid, key in _email_keys(eml.name.removesuffix(".eml"), day)
                    if found == _digest(contact_id=cid, campaign=campaign, occurrence_key=key)
                ),
                None,
            )
            if match is None or found is None:
                report.not_understood.append(eml)
                continue
            cid, key = match
            records.append(
                MessageRecord(
                    contact_id=cid,
                    campaign=campaign,
                    occurrence_key=key,
                    channel="email",
                    status="uncertain" if smtp else "rendered",
                    run_date=day,
                    event_date=day,
                    earliest=day,
                    latest=day,
                    artifact=_relative(eml, settings.root),
                    message_id=message_id,
                    reason=_("ledger rebuilt from the outbox"),
                    error=_("whether it was sent cannot be proven from the outbox")
                    if smtp
                    else None,
                    updated_at=now,
                )
            )
            if smtp:
                report.emails_uncertain += 1
            else:
                report.emails_rendered += 1
    return records


def _campaign_of_stem(stem: str, names: dict[str, str]) -> str:
    if stem in names:
        return names[stem]
    base, dash, number = stem.rpartition("-")
    if dash and number.isdigit() and base in names:
        return names[base]  # a second batch of the same day: <campaign>-2
    return stem


def _letter_records(
    settings: Settings, report: RebuildReport, *, now: datetime
) -> list[MessageRecord]:
    from outreach.model.campaigns import load_campaigns
    from outreach.model.errors import OutreachError
    from outreach.render.letter import safe_file_name

    names: dict[str, str] = {}
    try:
        paths = sorted(settings.campaigns_dir.glob("*.yaml"))
        for loaded in load_campaigns(paths, templates_dir=settings.templates_dir):
            names[safe_file_name(loaded.name)] = loaded.name
    except OutreachError:
        pass  # a broken campaign file: batches keep their file's name as the campaign's
    records: list[MessageRecord] = []
    arrival = timedelta(days=settings.letters.delivery_days)
    for day, folder in _day_folders(settings.out_dir / LETTERS):
        for manifest in sorted(folder.glob("*.manifest.csv")):
            stem = manifest.name.removesuffix(".manifest.csv")
            pdf = manifest.with_name(f"{stem}.pdf")
            rows = _manifest_rows(manifest)
            if not pdf.is_file() or not rows:
                report.not_understood.append(manifest)
                continue
            campaign = _campaign_of_stem(stem, names)
            for row in rows:
                cid, key = row.get("contact_id", ""), row.get("occurrence_key", "")
                if not cid or not key:
                    continue
                # A household's letter covers several contacts: each gets its row back.
                covered = [c for c in (row.get("covers") or "").split(";") if c and c != cid]
                artifact = _relative(pdf, settings.root)
                for member in (cid, *covered):
                    records.append(
                        _letter_record(
                            member,
                            campaign,
                            key,
                            artifact=artifact,
                            day=day,
                            arrival=arrival,
                            now=now,
                        )
                    )
                    report.letters += 1
    return records


def _letter_record(
    cid: str,
    campaign: str,
    key: str,
    *,
    artifact: str,
    day: date,
    arrival: timedelta,
    now: datetime,
) -> MessageRecord:
    """The ledger row of a letter found in a manifest."""
    return MessageRecord(
        contact_id=cid,
        campaign=campaign,
        occurrence_key=key,
        channel="letter",
        status="rendered",
        run_date=day,
        event_date=day,
        earliest=day,
        latest=day,
        artifact=artifact,
        reason=_("ledger rebuilt from the letter manifests"),
        effective_date=day + arrival,
        updated_at=now,
    )
