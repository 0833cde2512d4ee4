"""Read the bounce and replies mailboxes, and change what the next run does.

Each message is classified (bounce, complaint, automatic answer, a person's reply, an
unsubscribe request: people and servers do not respect which address was meant for what)
and matched to the email it answers. A bounce or complaint through the VERP token in the
address it came back to (when `bounces.return_path` is set: nothing else counts), else
through the Message-ID it quotes, and only against the address that email went to. A reply
through its In-Reply-To/References, else its sender's address. What is matched is counted
and moved out of the way; what is not outreach's is reported once and set aside (never
deleted). A read-only mailbox (the owner's inbox) is never changed. Everything a chunk of
mail teaches is written with the mail's fingerprints, so a second reading changes nothing.
"""

from __future__ import annotations

import fcntl
import hmac
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from outreach.contacts import Contact, iter_contacts
from outreach.feedback.classify import Classified, classify, fingerprint
from outreach.feedback.mailbox import ImapBox, Mailbox, MaildirBox, MailItem
from outreach.feedback.replies import Judgement, Reply, excerpt, judge
from outreach.feedback.score import verdict
from outreach.feedback.verp import token_pattern, tokens_in, verify_token
from outreach.i18n import _
from outreach.ledger import (
    Block,
    BounceEvent,
    FeedbackStore,
    MessageRecord,
    ReplyRecord,
    open_ledger,
)
from outreach.model.config import Settings, load_settings
from outreach.model.errors import FeedbackError, OutreachError
from outreach.render.templates import unsubscribe_token
from outreach.rules.blocks import block_dict

_CHUNK = 500
_CHUNK_BYTES = 8 * 1024 * 1024
KEPT_DIR = "feedback"  # under the state folder: every counted bounce, as received
_LOCK = "feedback.lock"

# What became of one message (data, the same in every language: --json and the ledger carry
# these codes; the CLI says them in words).
COUNTED, BLOCKED, SEEN, IGNORED, LEFT, UNMATCHED = (
    "counted",
    "blocked",
    "already read",
    "not counted",
    "left in place",  # not translated: a code, said in words by the CLI
    "not matched",
)
STOPPED, QUEUED, SET_ASIDE = (
    "stopped",
    "waits for the owner",  # not translated: a code, said in words by the CLI
    "not ours",
)
NOT_OURS_KIND = "not-ours"  # the kind the ledger remembers for mail set aside
COMPLAINT_DAYS = 30
# The suppression sources that what came back writes (not the owner's own unsubscribes).
AUTOMATIC_STOPS = frozenset({"reply", "mailto", "complaint", "one-click"})
COMPLAINT_WARNING = 1.0  # complaints per 1,000 emails (Gmail asks senders to stay below 3)


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
    # (contact id, channel, source) put on the suppression list: a complaint, a stop request
    suppressed: list[tuple[str, str, str]] = field(default_factory=list)
    readonly: bool = False  # the mailbox being read is the owner's (nothing reported as ours)
    others: int = 0  # mail of read-only mailboxes that was not for outreach
    complaints: int = 0  # in the last COMPLAINT_DAYS days...
    emails: int = 0  # ...against this many emails sent

    @property
    def problems(self) -> list[Outcome]:
        """Messages recognised but not acted on (bad token, unknown address...)."""
        return [m for m in self.messages if m.action == UNMATCHED]

    @property
    def complaint_rate(self) -> float | None:
        """Complaints per 1,000 emails over the last 30 days (None: no email sent)."""
        return 1000 * self.complaints / self.emails if self.emails else None

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
            "suppressed": [
                {"contact_id": c, "channel": ch, "source": s} for c, ch, s in self.suppressed
            ],
            "not_ours": self.others,
            "complaint_rate": {
                "complaints": self.complaints,
                "emails": self.emails,
                "per_1000": self.complaint_rate,
                "days": COMPLAINT_DAYS,
            },
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
    """The bounce mailbox to read (the one given, else the config's) and how to name it."""
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
        _("there is no mailbox to read"),
        path=settings.root / "config.yaml",
        field="bounces",
        hint=_(
            "set bounces.maildir (or bounces.imap, or replies.maildir / replies.imap) in "
            "config.yaml, or pass --maildir DIR"
        ),
    )


def open_replies(settings: Settings, *, environ: Mapping[str, str]) -> tuple[Mailbox, str] | None:
    """The replies mailbox of the config, opened read-only (it may be the owner's inbox)."""
    limit = settings.bounces.max_message_bytes
    replies = settings.replies
    if replies.maildir is not None:
        path = settings.resolve(replies.maildir)
        try:
            return MaildirBox(path, limit=limit, readonly=True), str(replies.maildir)
        except FeedbackError as exc:
            raise FeedbackError(exc.message, path=path, field="replies.maildir") from None
    if replies.imap is not None:
        imap = replies.imap
        box = ImapBox(imap, environ=environ, limit=limit, readonly=True, config_key="replies.imap")
        return box, f"imap://{imap.username}@{imap.host}/{imap.folder}"
    return None


@dataclass
class _Context:
    settings: Settings
    ledger: FeedbackStore
    today: date
    now: datetime
    contacts: dict[str, Contact]  # by id
    by_email: dict[str, Contact]  # by lower-cased email
    kept_ready: bool = False  # the folder for kept bounces exists
    mailto: re.Pattern[str] | None = None  # the List-Unsubscribe mailto address
    emailed: dict[str, bool] = field(default_factory=dict)  # contact id → outreach emailed them


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
    readonly: bool = False,
) -> FeedbackReport:
    """Read every message of the mailbox; record, block, move what is recognised and set
    aside what is not outreach's (`readonly`: the owner's inbox, where nothing moves)."""
    by_id, by_email = contacts if contacts is not None else load_contact_index(settings)
    context = _Context(settings, ledger, today, now, by_id, by_email)
    context.mailto = mailto_pattern(settings)
    report = FeedbackReport(mailbox=name, readonly=readonly)
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


def mailto_pattern(settings: Settings) -> re.Pattern[str] | None:
    """What the config's List-Unsubscribe mailto address looks like, `{id}`/`{token}` as groups."""
    mailto = settings.unsubscribe.mailto
    if not mailto:
        return None
    address = mailto.removeprefix("mailto:").partition("?")[0].strip().lower()
    pattern = re.escape(address)
    pattern = pattern.replace(re.escape("{id}"), r"(?P<id>[^@\s]{1,200})", 1)
    pattern = pattern.replace(re.escape("{token}"), r"(?P<token>[0-9a-f]{16})", 1)
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class _Answer:
    """Whom a reply is from, the email it answers, and whether its word can be taken."""

    contact_id: str | None
    record: MessageRecord | None = None
    trusted: bool = False  # the contact's own address wrote it, or a verified token names them
    source: str = "reply"  # on the suppression list: reply | mailto
    judgement: Judgement | None = None  # set when where it went says what it asks
    problem: str | None = None


def _match_reply(reply: Reply, *, context: _Context) -> _Answer:
    """The contact a reply is from: the unsubscribe address it went to, else the email it
    answers (In-Reply-To, References), else its sender, a contact outreach has emailed."""
    mailto = _mailto(reply, context)
    if mailto is not None:
        return mailto
    for message_id in reply.answers:
        record = context.ledger.find_email(message_id=message_id)
        if record is not None:
            contact = context.contacts.get(record.contact_id)
            own = (contact.email or "").lower() if contact is not None else None
            # Another address of the same person counts for the contact it answers.
            return _Answer(record.contact_id, record, trusted=own == reply.sender)
    contact = context.by_email.get(reply.sender or "")
    if contact is not None and _emailed(contact.id, context):
        return _Answer(contact.id, trusted=True)
    return _Answer(
        None,
        problem=_("{address} is not a contact outreach has emailed").format(address=reply.sender),
    )


def _emailed(contact_id: str, context: _Context) -> bool:
    found = context.emailed.get(contact_id)
    if found is None:
        rows = context.ledger.messages(contact_id=contact_id)
        found = context.emailed[contact_id] = any(m.channel == "email" for m in rows)
    return found


def _mailto(reply: Reply, context: _Context) -> _Answer | None:
    """A message to the List-Unsubscribe mailto address: a stop request by where it went."""
    pattern = context.mailto
    if pattern is None:
        return None
    for address in reply.recipients:
        match = pattern.fullmatch(address)
        if match is None:
            continue
        asked = Judgement(
            "stop", _("a message to the unsubscribe address {address}").format(address=address)
        )
        token = match.groupdict().get("token")
        wanted = unquote(match.groupdict().get("id") or "").lower()
        by_token = next((c for c in context.contacts if c.lower() == wanted), None)
        secret = context.settings.coupon.secret
        made = unsubscribe_token(secret=secret, contact_id=by_token) if by_token else ""
        if by_token and token and hmac.compare_digest(made, token):
            return _Answer(by_token, trusted=True, source="mailto", judgement=asked)
        contact = context.by_email.get(reply.sender or "")
        if contact is not None:
            return _Answer(contact.id, trusted=True, source="mailto", judgement=asked)
        return _Answer(
            None,
            problem=_("{address} wrote to the unsubscribe address and is not a contact").format(
                address=reply.sender
            ),
        )
    return None


@dataclass
class _Match:
    record: MessageRecord | None
    contact_id: str | None
    problem: str | None = None
    by_token: bool = False  # through a verified VERP token (else a quoted Message-ID)


def _match(found: Classified, context: _Context) -> _Match:
    """The email a bounce or complaint answers, or why none.

    With VERP (`bounces.return_path`) only a verified token names it; without, only the
    Message-ID it quotes. Never the address alone: anyone can write a report naming anyone.
    """
    settings, ledger = context.settings, context.ledger
    template = settings.bounces.return_path
    if template is not None:
        candidates = tokens_in(found.envelope, token_pattern(template))
        for token in candidates:
            digits = verify_token(token, secret=settings.coupon.secret)
            if digits is None:
                continue
            record = ledger.find_email(id_prefix=digits)
            if record is None:
                return _Match(None, None, _("its token names no email in the ledger"))
            return _Match(record, record.contact_id, by_token=True)
        if candidates:
            return _Match(None, None, _("the token in the address it came back to does not verify"))
        return _Match(
            None,
            None,
            _("it carries no token of ours (bounces.return_path is set): nobody blocked"),
        )
    for message_id in found.message_ids:
        record = ledger.find_email(message_id=message_id)
        if record is not None:
            return _Match(record, record.contact_id)
    if not found.addresses:
        return _Match(None, None, _("it quotes no email of ours (it names no address)"))
    shown = ", ".join(found.addresses)
    return _Match(
        None, None, _("it quotes no email of ours (it names {addresses})").format(addresses=shown)
    )


def _keep(item: MailItem, found: Classified, context: _Context) -> str:
    """Keep the mail as received under state/feedback/DAY/; the path, relative to the root."""
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


@dataclass
class _Batch:
    """What one chunk of mail teaches, written to the ledger at once."""

    history: dict[str, list[tuple[date, str]]]
    already: set[tuple[str, str]]
    events: list[BounceEvent] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    suppressions: list[tuple[str, str, str]] = field(default_factory=list)
    replies: list[ReplyRecord] = field(default_factory=list)
    reply_stops: list[tuple[str, str, str]] = field(default_factory=list)
    seen: list[tuple[str, str, date]] = field(default_factory=list)
    moved: list[MailItem] = field(default_factory=list)
    aside: list[MailItem] = field(default_factory=list)
    done: dict[str, str] = field(default_factory=dict)  # fingerprint → kind, in this chunk


def _outcome(
    item: MailItem,
    found: Classified,
    action: str,
    contact_ids: tuple[str, ...] = (),
    problem: str | None = None,
) -> Outcome:
    return Outcome(
        source=item.source,
        kind=found.kind,
        addresses=found.addresses,
        contact_ids=contact_ids,
        status=found.status,
        diagnostic=found.diagnostic,
        action=action,
        problem=problem or found.problem,
    )


def _process_chunk(
    items: Sequence[MailItem], *, context: _Context, mailbox: Mailbox, report: FeedbackReport
) -> None:
    ledger = context.ledger
    prints = [fingerprint(item.data) for item in items]
    seen = ledger.feedback_seen(prints)
    # Mail read before is not parsed again: the ledger knows what it was.
    classified = [
        Classified(seen[digest], fingerprint=digest)
        if digest in seen
        else classify(item.data, tz=context.settings.tz, truncated=item.truncated)
        for item, digest in zip(items, prints, strict=True)
    ]
    matches = [
        _match(c, context)
        if c.fingerprint not in seen and (c.kind in _BOUNCES or _verp_notice(c, context))
        else None
        for c in classified
    ]
    batch = _prepare(classified, matches, context)
    for item, found, match in zip(items, classified, matches, strict=True):
        digest = found.fingerprint
        if digest in seen or digest in batch.done:
            _again(item, seen.get(digest) or batch.done[digest], batch, report)
            continue
        elif match is not None:
            _bounce(item, found, match, context=context, batch=batch, report=report)
        elif found.kind == "reply":
            _reply(item, found, context=context, batch=batch, report=report)
        elif found.kind == "auto-reply":
            batch.seen.append((found.fingerprint, found.kind, context.today))
            batch.moved.append(item)
            if not report.readonly:  # the owner's inbox holds plenty of automatic mail
                report.messages.append(_outcome(item, found, IGNORED))
        else:
            _not_ours(item, found, None, context=context, batch=batch, report=report)
        last = batch.seen[-1] if batch.seen else None
        batch.done[digest] = last[1] if last is not None and last[0] == digest else found.kind
    _write(batch, context=context, mailbox=mailbox)


_BOUNCES = frozenset({"hard", "soft", "complaint"})


def _verp_notice(found: Classified, context: _Context) -> bool:
    """A mail server's failure notice naming no readable address, back through VERP."""
    return (
        found.kind == "unrecognised"
        and found.notice
        and context.settings.bounces.return_path is not None
    )


def _prepare(
    classified: Sequence[Classified], matches: Sequence[_Match | None], context: _Context
) -> _Batch:
    """The chunk's batch, with the bounce history and blocks its addresses already have."""
    addresses = {
        a
        for c, m in zip(classified, matches, strict=True)
        if m is not None and m.contact_id is not None
        for a in _addresses(c, m, context)
    }
    history = {
        a: [(e.day, e.kind) for e in events]
        for a, events in context.ledger.bounce_events(addresses).items()
    }
    already = {(b.channel, b.value) for b in context.ledger.blocks(values=addresses)}
    return _Batch(history=history, already=already)


def _again(item: MailItem, kind: str, batch: _Batch, report: FeedbackReport) -> None:
    """Mail read before: moved (or set aside) again, nothing counted."""
    if kind == NOT_OURS_KIND:
        batch.aside.append(item)  # set aside again: it came back (a client moved it)
        return
    batch.moved.append(item)
    if not report.readonly:  # the owner's inbox is read again and again: nothing to say
        report.messages.append(Outcome(item.source, kind, (), (), None, None, SEEN))


def _not_ours(
    item: MailItem,
    found: Classified,
    problem: str | None,
    *,
    context: _Context,
    batch: _Batch,
    report: FeedbackReport,
) -> None:
    """Mail outreach cannot act on: reported once, then set aside (never deleted)."""
    batch.seen.append((found.fingerprint, NOT_OURS_KIND, context.today))
    batch.aside.append(item)
    if report.readonly:
        report.others += 1  # the owner's own mail: none of outreach's business
        return
    action = UNMATCHED if found.kind in _BOUNCES or found.notice else SET_ASIDE
    report.messages.append(_outcome(item, found, action, problem=problem))


def _bounce(
    item: MailItem,
    found: Classified,
    match: _Match,
    *,
    context: _Context,
    batch: _Batch,
    report: FeedbackReport,
) -> None:
    """Count a bounce or complaint against the email it answers; block what must be."""
    contact_id = match.contact_id
    addresses = tuple(_addresses(found, match, context)) if contact_id else ()
    if contact_id is None or not addresses:
        problem = match.problem or _("it names no address the email went to: nobody blocked")
        _not_ours(item, found, problem, context=context, batch=batch, report=report)
        return
    kept = _keep(item, found, context)
    action = COUNTED
    if found.kind == "complaint":
        # A complaint is about the channel it came from: letters go on.
        stop = (contact_id, "email", "complaint")
        batch.suppressions.append(stop)
        report.suppressed.append(stop)
        action = STOPPED
    else:
        for address in addresses:
            if _count_bounce(address, found, match, kept=kept, context=context, batch=batch):
                report.blocked.append(batch.blocks[-1])
                action = BLOCKED
    kind = found.kind if found.kind in _BOUNCES else _notice_kind(found)
    batch.seen.append((found.fingerprint, kind, context.today))
    batch.moved.append(item)
    report.messages.append(replace(_outcome(item, found, action, (contact_id,)), kind=kind))


def _count_bounce(
    address: str,
    found: Classified,
    match: _Match,
    *,
    kept: str,
    context: _Context,
    batch: _Batch,
) -> bool:
    """Record one bounce against an address; whether it blocked the address now."""
    record, contact_id, today = match.record, match.contact_id or "", context.today
    recipient = next((r for r in found.recipients if r.address == address), None)
    kind = recipient.kind if recipient is not None else _notice_kind(found)
    status = recipient.status if recipient is not None else found.status
    diagnostic = recipient.diagnostic if recipient is not None else found.diagnostic
    batch.events.append(
        BounceEvent(
            address=address,
            contact_id=contact_id,
            day=today,  # the day it was read: a bounce's own Date may be anything
            kind=kind,
            campaign=record.campaign if record else None,
            occurrence_key=record.occurrence_key if record else None,
            status=status,
            diagnostic=diagnostic,
            kept=kept,
            source=found.fingerprint,
        )
    )
    past = batch.history.setdefault(address, [])
    past.append((today, kind))
    if ("email", address) in batch.already:
        return False
    judged = verdict(past, latest=kind, rules=context.settings.bounces, today=today)
    if judged.block is None:
        return False
    batch.already.add(("email", address))
    batch.blocks.append(
        Block(
            channel="email",
            value=address,
            contact_id=contact_id,
            reason=judged.block,
            day=today,
            status=status,
            diagnostic=diagnostic,
            kept=kept,
            score=judged.score,
            reported=found.day,
        )
    )
    return True


def _notice_kind(found: Classified) -> str:
    if found.kind in ("hard", "soft"):
        return found.kind
    return "soft" if found.status and found.status.startswith("4") else "hard"


def _addresses(found: Classified, match: _Match, context: _Context) -> Iterable[str]:
    """The addresses a bounce counts against: the contact's own, the one the email went to.

    Through a verified token that is the contact's address whatever the report names (a
    forwarded address, none), unless it names other contacts; through a quoted Message-ID
    only when the report names it too (or nobody; a complaint: no other contact, since
    providers redact the recipient): quoting one's own email blocks no one else.
    """
    contact = context.contacts.get(match.contact_id or "")
    own = contact.email.lower() if contact is not None and contact.email else None
    if own is None:
        return ()
    if match.by_token or found.kind == "complaint":
        # One contact's token (or email, in a complaint: providers redact the recipient) over
        # a report naming other contacts' addresses: forged.
        if any(a != own and a in context.by_email for a in found.addresses):
            return ()
        return (own,)
    return (own,) if not found.addresses or own in found.addresses else ()


def _reply(
    item: MailItem,
    found: Classified,
    *,
    context: _Context,
    batch: _Batch,
    report: FeedbackReport,
) -> None:
    """A person's mail: a stop request acted on, anything else kept for the owner."""
    reply = found.reply
    assert reply is not None
    answer = _match_reply(reply, context=context)
    if answer.contact_id is None:
        _not_ours(item, found, answer.problem, context=context, batch=batch, report=report)
        return
    judged = answer.judgement or judge(reply)
    kind, evidence, status = judged.kind, judged.evidence, "open"
    if kind == "stop" and not answer.trusted:
        # Anyone can write an In-Reply-To: a stop from an address that is not the contact's
        # waits for the owner.
        kind, evidence = (
            "unclear_stop",
            _("from {address}, not the contact's address: {evidence}").format(
                address=reply.sender, evidence=evidence
            ),
        )
    if kind == "stop":
        stop = (answer.contact_id, "email", answer.source)
        batch.reply_stops.append(stop)
        report.suppressed.append(stop)
        status = "stopped"
    elif kind == "automatic":
        status = "recorded"
    record = answer.record
    batch.replies.append(
        ReplyRecord(
            fingerprint=found.fingerprint,
            contact_id=answer.contact_id,
            sender=reply.sender or "",
            received=context.today,
            subject=reply.subject,
            excerpt=excerpt(reply),
            kind=kind,
            status=status,
            mailbox=report.mailbox,
            campaign=record.campaign if record else None,
            occurrence_key=record.occurrence_key if record else None,
            message_id=reply.message_id,
            written=found.day,
            evidence=evidence,
            # Kept as received: the evidence of a stop request, and what may become one.
            kept=_keep(item, found, context) if kind in ("stop", "unclear_stop") else None,
        )
    )
    batch.seen.append((found.fingerprint, "reply", context.today))
    batch.moved.append(item)
    action = {"stop": STOPPED, "automatic": IGNORED}.get(kind, QUEUED)
    outcome = _outcome(item, found, action, (answer.contact_id,))
    report.messages.append(replace(outcome, kind=kind, addresses=(reply.sender or "",)))


def _write(batch: _Batch, *, context: _Context, mailbox: Mailbox) -> None:
    """Write what the chunk taught, then move the mail: a crash in between leaves mail to be
    read again, and its fingerprints (and the replies' own) make that change nothing."""
    ledger = context.ledger
    if batch.replies or batch.reply_stops:
        ledger.record_replies(batch.replies, suppressions=batch.reply_stops, now=context.now)
    if batch.events or batch.blocks or batch.suppressions or batch.seen:
        ledger.record_feedback(
            events=batch.events,
            blocks=batch.blocks,
            suppressions=batch.suppressions,
            seen=batch.seen,
            now=context.now,
        )
    for item in batch.moved:
        mailbox.move(item)
    for item in batch.aside:
        mailbox.set_aside(item)


def read_bounces(
    settings: Settings,
    *,
    maildir: Path | None,
    environ: Mapping[str, str],
    today: date,
    now: datetime,
) -> FeedbackReport:
    """`outreach bounces`: read the bounce mailbox (the given Maildir, or the config's) and
    the config's replies mailbox once."""
    boxes: list[tuple[Mailbox, str, bool]] = []
    try:
        replies = open_replies(settings, environ=environ) if maildir is None else None
        if replies is not None:
            boxes.append((*replies, True))
        configured = settings.bounces.maildir is not None or settings.bounces.imap is not None
        if maildir is not None or configured or not boxes:
            boxes.insert(0, (*open_mailbox(settings, maildir=maildir, environ=environ), False))
        with feedback_lock(settings.state_dir), open_ledger(settings) as ledger:
            contacts = load_contact_index(settings)
            reports = [
                process_mailbox(
                    settings,
                    mailbox=box,
                    name=name,
                    ledger=ledger,
                    today=today,
                    now=now,
                    contacts=contacts,
                    readonly=readonly,
                )
                for box, name, readonly in boxes
            ]
            report = _merged(reports)
            report.complaints = ledger.feedback_kinds(
                since=today - timedelta(days=COMPLAINT_DAYS)
            ).get("complaint", 0)
            report.emails = ledger.emails_sent(since=today - timedelta(days=COMPLAINT_DAYS))
            return report
    finally:
        for box, _kind, _name in boxes:
            box.close()


def _merged(reports: Sequence[FeedbackReport]) -> FeedbackReport:
    """One report of several mailboxes read."""
    merged = FeedbackReport(mailbox=" + ".join(r.mailbox for r in reports))
    for report in reports:
        merged.messages.extend(report.messages)
        merged.blocked.extend(report.blocked)
        merged.suppressed.extend(report.suppressed)
        merged.others += report.others
    return merged


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
        n = len(report.messages)
        read = (
            _("bounces: {n} message(s) ({counts}), {blocked} blocked")
            if counts
            else _("bounces: {n} message(s), {blocked} blocked")
        )
        logger.info("%s", read.format(n=n, counts=counts, blocked=len(report.blocked)))
        for problem in report.problems:
            logger.warning("bounces: %s: %s", problem.source, problem.problem)
        for contact_id, channel, source in report.suppressed:
            suppressed = _("bounces: {contact} suppressed for {channel} ({source})")
            logger.info("%s", suppressed.format(contact=contact_id, channel=channel, source=source))
        return report

    return job
