"""Read a mailbox of bounces and complaints, and change what the next run does.

Each message is classified, matched to the email it answers (the VERP token in the address
it came back to, else the Message-ID it quotes, else the address it names, which must be a
contact outreach has emailed), counted, and — when recognised and matched — moved out of
the way. Mail that is not a bounce, complaint or auto-reply is never moved. Everything a
chunk of mail teaches is written in one transaction with the mail's fingerprints, so a
second reading of the same mail changes nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from outreach.config import Settings, load_settings
from outreach.contacts import Contact, iter_contacts
from outreach.errors import FeedbackError, OutreachError
from outreach.feedback.blocks import block_dict
from outreach.feedback.classify import Classified, classify, fingerprint
from outreach.feedback.mailbox import ImapBox, Mailbox, MaildirBox, MailItem
from outreach.feedback.score import verdict
from outreach.feedback.verp import token_pattern, tokens_in, verify_token
from outreach.ledger import Block, BounceEvent, FeedbackStore, MessageRecord, open_ledger

_CHUNK = 500
_CHUNK_BYTES = 8 * 1024 * 1024
KEPT_DIR = "feedback"  # under the state folder: every counted bounce, as received
_LOCK = "feedback.lock"

# What became of one message (data; the CLI says it in words).
COUNTED, BLOCKED, SEEN, IGNORED, LEFT, UNMATCHED = (
    "counted",
    "blocked",
    "already read",
    "not counted",
    "left in place",
    "not matched",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One message of the mailbox, and what was done about it."""

    source: str
    kind: str
    addresses: tuple[str, ...]
    contact_ids: tuple[str, ...]
    status: str | None
    diagnostic: str | None
    action: str
    problem: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "source": self.source,
            "kind": self.kind,
            "addresses": list(self.addresses),
            "contact_ids": list(self.contact_ids),
            "status": self.status,
            "diagnostic": self.diagnostic,
            "action": self.action,
            "problem": self.problem,
        }


@dataclass
class FeedbackReport:
    """What reading a mailbox did."""

    mailbox: str
    messages: list[Outcome] = field(default_factory=list)
    blocked: list[Block] = field(default_factory=list)

    @property
    def problems(self) -> list[Outcome]:
        """Messages recognised but not acted on (bad token, unknown address...)."""
        return [m for m in self.messages if m.action == UNMATCHED]

    def counts(self) -> dict[str, int]:
        """kind → how many messages."""
        found: dict[str, int] = {}
        for message in self.messages:
            found[message.kind] = found.get(message.kind, 0) + 1
        return found

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view: {"messages": [...], "blocked": [...]}."""
        return {
            "mailbox": self.mailbox,
            "messages": [m.as_dict() for m in self.messages],
            "blocked": [block_dict(b) for b in self.blocked],
        }


@contextmanager
def feedback_lock(state_dir: Path) -> Iterator[None]:
    """One reader of the mailbox at a time (runs are not held up: this is not the run lock)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def open_mailbox(
    settings: Settings, *, maildir: Path | None, environ: Mapping[str, str]
) -> tuple[Mailbox, str]:
    """The mailbox to read (the one given, else the config's) and how to name it."""
    limit = settings.bounces.max_message_bytes
    if maildir is not None:
        return MaildirBox(maildir, limit=limit), str(maildir)
    if settings.bounces.maildir is not None:
        path = settings.resolve(settings.bounces.maildir)
        return MaildirBox(path, limit=limit), str(settings.bounces.maildir)
    imap = settings.bounces.imap
    if imap is not None:
        box = ImapBox(imap, environ=environ, limit=limit)
        return box, f"imap://{imap.username}@{imap.host}/{imap.folder}"
    raise FeedbackError(
        "there is no mailbox to read",
        path=settings.root / "config.yaml",
        field="bounces",
        hint="set bounces.maildir (or bounces.imap) in config.yaml, or pass --maildir DIR",
    )


@dataclass
class _Context:
    settings: Settings
    ledger: FeedbackStore
    today: date
    now: datetime
    contacts: dict[str, Contact]  # by id
    by_email: dict[str, Contact]  # by lower-cased email
    kept_ready: bool = False  # the folder for kept bounces exists


def load_contact_index(settings: Settings) -> tuple[dict[str, Contact], dict[str, Contact]]:
    """Contacts by id and by lower-cased email (empty when the file cannot be read)."""
    by_id: dict[str, Contact] = {}
    by_email: dict[str, Contact] = {}
    try:
        stream = iter_contacts(
            settings.contacts_path,
            settings=settings.contacts,
            default_locale=settings.default_locale,
        )
        for contact in stream:
            by_id[contact.id] = contact
            if contact.email:
                by_email.setdefault(contact.email.lower(), contact)
    except OutreachError:
        pass  # matching by VERP token and Message-ID still works; by address does not
    return by_id, by_email


def process_mailbox(
    settings: Settings,
    *,
    mailbox: Mailbox,
    name: str,
    ledger: FeedbackStore,
    today: date,
    now: datetime,
    contacts: tuple[dict[str, Contact], dict[str, Contact]] | None = None,
) -> FeedbackReport:
    """Read every message of the mailbox; record, block and move what is recognised."""
    by_id, by_email = contacts if contacts is not None else load_contact_index(settings)
    context = _Context(settings, ledger, today, now, by_id, by_email)
    report = FeedbackReport(mailbox=name)
    chunk: list[MailItem] = []
    held = 0
    for item in mailbox.items():
        chunk.append(item)
        held += len(item.data)
        # A chunk is bounded in bytes too: 500 messages cut at the limit must not pile up.
        if len(chunk) >= _CHUNK or held >= _CHUNK_BYTES:
            _process_chunk(chunk, context=context, mailbox=mailbox, report=report)
            chunk, held = [], 0
    if chunk:
        _process_chunk(chunk, context=context, mailbox=mailbox, report=report)
    return report


@dataclass
class _Match:
    record: MessageRecord | None
    contact_id: str | None
    problem: str | None = None


def _match(found: Classified, context: _Context) -> _Match:
    """The email a bounce or complaint answers, or why none."""
    settings, ledger = context.settings, context.ledger
    template = settings.bounces.return_path
    if template is not None:
        candidates = tokens_in(found.envelope, token_pattern(template))
        if candidates:
            for token in candidates:
                digits = verify_token(token, secret=settings.coupon.secret)
                if digits is None:
                    continue
                record = ledger.find_email(id_prefix=digits)
                if record is None:
                    return _Match(None, None, "its token names no email in the ledger")
                return _Match(record, record.contact_id)
            return _Match(None, None, "the token in the address it came back to does not verify")
    for message_id in found.message_ids:
        record = ledger.find_email(message_id=message_id)
        if record is not None:
            return _Match(record, record.contact_id)
    for address in found.addresses:
        contact = context.by_email.get(address)
        mailed = contact is not None and any(
            m.channel == "email" for m in ledger.messages(contact_id=contact.id)
        )
        if contact is not None and mailed:
            return _Match(None, contact.id)
    shown = ", ".join(found.addresses) or "no address"
    return _Match(None, None, f"no email of ours went to {shown}")


def _keep(item: MailItem, found: Classified, context: _Context) -> str:
    """Keep the bounce as received under state/feedback/DAY/; the path, relative to the root."""
    settings = context.settings
    folder = settings.state_dir / KEPT_DIR / context.today.isoformat()
    if not context.kept_ready:
        folder.mkdir(parents=True, exist_ok=True)
        context.kept_ready = True
    path = folder / f"{found.fingerprint}.eml"
    if not path.exists():
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(item.data)
        temporary.replace(path)
    try:
        return str(path.relative_to(settings.root))
    except ValueError:
        return str(path)


def _process_chunk(
    items: Sequence[MailItem], *, context: _Context, mailbox: Mailbox, report: FeedbackReport
) -> None:
    settings, ledger, today = context.settings, context.ledger, context.today
    tz = settings.tz
    prints = [fingerprint(item.data) for item in items]
    seen = ledger.feedback_seen(prints)
    # Mail read before is not parsed again: the ledger knows what it was.
    classified = [
        Classified(seen[digest], fingerprint=digest)
        if digest in seen
        else classify(item.data, tz=tz, truncated=item.truncated)
        for item, digest in zip(items, prints, strict=True)
    ]
    matches = [
        _match(c, context)
        if c.kind in ("hard", "soft", "complaint") and c.fingerprint not in seen
        else None
        for c in classified
    ]
    addresses = {
        a
        for c, m in zip(classified, matches, strict=True)
        if m is not None and m.contact_id is not None
        for a in _addresses(c, m, context)
    }
    history = {
        a: [(e.day, e.kind) for e in events]
        for a, events in ledger.bounce_events(addresses).items()
    }
    complained = {
        m.contact_id.lower()
        for c, m in zip(classified, matches, strict=True)
        if c.kind == "complaint" and m is not None and m.contact_id is not None
    }
    already = {(b.channel, b.value) for b in ledger.blocks(values=addresses | complained)}
    events: list[BounceEvent] = []
    blocks: list[Block] = []
    suppressions: list[tuple[str, str, str]] = []
    fingerprints: list[tuple[str, str, date]] = []
    to_move: list[MailItem] = []
    batch_seen: set[str] = set()
    for item, found, match in zip(items, classified, matches, strict=True):
        kind = found.kind

        def outcome(
            action: str, contact_ids: tuple[str, ...] = (), problem: str | None = None
        ) -> Outcome:
            return Outcome(
                source=item.source,  # noqa: B023 - called within this iteration only
                kind=kind,  # noqa: B023
                addresses=found.addresses,  # noqa: B023
                contact_ids=contact_ids,
                status=found.status,  # noqa: B023
                diagnostic=found.diagnostic,  # noqa: B023
                action=action,
                problem=problem or found.problem,  # noqa: B023
            )

        if kind == "unrecognised":
            report.messages.append(outcome(LEFT))
            continue
        if found.fingerprint in seen or found.fingerprint in batch_seen:
            report.messages.append(outcome(SEEN))
            to_move.append(item)
            continue
        if kind == "auto-reply":
            batch_seen.add(found.fingerprint)
            fingerprints.append((found.fingerprint, kind, today))
            report.messages.append(outcome(IGNORED))
            to_move.append(item)
            continue
        assert match is not None
        if match.contact_id is None:
            report.messages.append(outcome(UNMATCHED, problem=match.problem))
            continue
        contact_id = match.contact_id
        record = match.record
        day = found.day if found.day is not None and found.day <= today else today
        kept = _keep(item, found, context)
        action = COUNTED
        if kind == "complaint":
            suppressions.append((contact_id, "all", "complaint"))
            if ("all", contact_id.lower()) not in already:
                already.add(("all", contact_id.lower()))
                block = Block(
                    channel="all",
                    value=contact_id,
                    contact_id=contact_id,
                    reason="complaint",
                    day=day,
                    diagnostic=found.diagnostic,
                    kept=kept,
                )
                blocks.append(block)
                report.blocked.append(block)
            action = BLOCKED
        else:
            for address in _addresses(found, match, context):
                recipient = next((r for r in found.recipients if r.address == address), None)
                bounce_kind = recipient.kind if recipient is not None else kind
                status = recipient.status if recipient is not None else found.status
                diagnostic = recipient.diagnostic if recipient is not None else found.diagnostic
                events.append(
                    BounceEvent(
                        address=address,
                        contact_id=contact_id,
                        day=day,
                        kind=bounce_kind,
                        campaign=record.campaign if record else None,
                        occurrence_key=record.occurrence_key if record else None,
                        status=status,
                        diagnostic=diagnostic,
                        kept=kept,
                        source=found.fingerprint,
                    )
                )
                past = history.setdefault(address, [])
                past.append((day, bounce_kind))
                if ("email", address) in already:
                    continue
                judged = verdict(past, latest=bounce_kind, rules=settings.bounces, today=today)
                if judged.block is not None:
                    already.add(("email", address))
                    block = Block(
                        channel="email",
                        value=address,
                        contact_id=contact_id,
                        reason=judged.block,
                        day=day,
                        status=status,
                        diagnostic=diagnostic,
                        kept=kept,
                        score=judged.score,
                    )
                    blocks.append(block)
                    report.blocked.append(block)
                    action = BLOCKED
        batch_seen.add(found.fingerprint)
        fingerprints.append((found.fingerprint, kind, today))
        report.messages.append(outcome(action, (contact_id,)))
        to_move.append(item)
    if events or blocks or suppressions or fingerprints:
        ledger.record_feedback(
            events=events,
            blocks=blocks,
            suppressions=suppressions,
            seen=fingerprints,
            now=context.now,
        )
    # Moved only once the ledger has them: a crash in between leaves them to be read again,
    # and their fingerprints make that second reading change nothing but the move.
    for item in to_move:
        mailbox.move(item)


def _addresses(found: Classified, match: _Match, context: _Context) -> Iterable[str]:
    """The addresses a bounce counts against: those it names, else the contact's own."""
    if found.addresses:
        return found.addresses
    contact = context.contacts.get(match.contact_id or "")
    return (contact.email.lower(),) if contact is not None and contact.email else ()


def read_bounces(
    settings: Settings,
    *,
    maildir: Path | None,
    environ: Mapping[str, str],
    today: date,
    now: datetime,
) -> FeedbackReport:
    """`outreach bounces`: read the mailbox (the given Maildir, or the config's) once."""
    mailbox, name = open_mailbox(settings, maildir=maildir, environ=environ)
    try:
        with feedback_lock(settings.state_dir), open_ledger(settings) as ledger:
            return process_mailbox(
                settings, mailbox=mailbox, name=name, ledger=ledger, today=today, now=now
            )
    finally:
        mailbox.close()


def feedback_job(
    config: Path,
    *,
    clock: Callable[[], datetime],
    environ: Mapping[str, str],
    logger: logging.Logger,
) -> Callable[[], FeedbackReport | None]:
    """What the daemon runs every `bounces.every_minutes`: read the mailbox once, log what it
    did; a failure is logged, never raised (the schedule goes on)."""

    def job() -> FeedbackReport | None:
        try:
            settings = load_settings(config)
            now = clock().astimezone(settings.tz)
            report = read_bounces(
                settings, maildir=None, environ=environ, today=now.date(), now=now
            )
        except OutreachError as exc:
            logger.error("bounces: %s", exc)
            return None
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(report.counts().items()))
        logger.info(
            "bounces: %d message(s)%s, %d blocked",
            len(report.messages),
            f" ({counts})" if counts else "",
            len(report.blocked),
        )
        for problem in report.problems:
            logger.warning("bounces: %s: %s", problem.source, problem.problem)
        return report

    return job
