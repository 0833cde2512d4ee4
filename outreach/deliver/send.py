"""The send step: hand rendered emails waiting in the outbox to the SMTP server, exactly once.

Rendering and sending are separate steps. A run always writes each email to the outbox and
records it `rendered`; this step (`outreach send`, or `outreach run --send` after rendering)
takes every email that is `rendered`, or `failed` for a passing reason, whose window is still
open, reads its .eml file and delivers it. The file is what goes out, byte for byte, so a
person may look at the outbox before sending.

Exactly once rests on the order of writes around DATA: the row says `sending` (committed)
before the message is handed over and `sent` after the server's 250. A process killed in
between leaves `sending`, which the next run or send (holding the workspace lock, so no live
process is sending) turns into `uncertain`: it may have arrived, so it is never sent again
unless a person asks (`outreach send --retry-uncertain`).

The `sending` mark is a claim: a conditional update that takes the row only while it is still
one this step may send, made as the email is taken for a connection. A send step on another
machine (overlapping shards of one PostgreSQL ledger) that took the row first has it, and this
step does not hand it to the server at all (`elsewhere` counts those). An email claimed but
never handed over (the step stopped first) goes back to what it was.

A permanent refusal (5xx) is recorded `failed` with the server's reply and reason
`permanent`, and never tried again; a transient one is tried again by the next send inside
the message's window. An email whose window closes before it could be sent is `missed`.
Quiet hours (and, for non-essential messages, quiet weekdays) of the campaign's cadence
policy hold emails back until they end.

`delivery.connections` above 1 sends over that many connections at once, one thread each,
taking the emails from one shared list (each email goes by one connection only) and sharing
one rate limit. Their ledger writes are made on the thread that opened the ledger, in the same
order as with one connection: `sending` committed before an email's data goes.
"""

from __future__ import annotations

import email.policy
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses
from functools import partial
from typing import TYPE_CHECKING, Protocol

from outreach.contacts import ContactStream, iter_contacts
from outreach.deliver.base import DeliveryResult
from outreach.deliver.dkim import DkimKey, load_dkim_key, signed
from outreach.deliver.smtp import (
    DEFAULT_PORTS,
    SendingStoppedError,
    SendRate,
    SmtpDeliverer,
    SmtpHooks,
    password_from_env,
)
from outreach.feedback.refusals import record_refusals  # hook: feedback
from outreach.feedback.verp import return_path  # hook: feedback
from outreach.i18n import N_, _
from outreach.ledger import Ledger, MessageRecord, SendQueue, open_ledger, workspace_lock
from outreach.model.campaigns import Campaign, load_campaign
from outreach.model.config import CadencePolicy, Settings
from outreach.model.errors import CampaignError, DeliveryError, OutreachError
from outreach.render.email import RenderedEmail, check_address
from outreach.rules.blocks import EMAIL_BLOCKED, email_blocked  # hook: feedback
from outreach.rules.cadence import policy_for, quiet_until
from outreach.rules.eligibility import opted_out
from outreach.workspace import campaign_files, display_path

if TYPE_CHECKING:
    from outreach.contacts import Contact
    from outreach.pipeline.summary import RunSummary
    from outreach.workspace import Workspace

# Marks a failed email that must not be tried again (a 5xx, a file that cannot be sent).
PERMANENT = "permanent"
TRANSIENT = "transient"
# The SMTP rate limit's memory, kept across runs.
RATE_STATE_NAME = "smtp-rate.json"

OnSending = Callable[[RenderedEmail], None]


class BatchDeliverer(Protocol):
    """One connection: takes messages from a shared iterator, yields each one's result."""

    def push_all(self, messages: Iterator[RenderedEmail]) -> Iterator[DeliveryResult]:
        """Deliver what `messages` yields; raise DeliveryError to stop the step."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent)."""
        ...


# Makes the connections (`delivery.connections`, one shared rate limit) once the send step
# knows what to call right before each message's data.
DelivererFactory = Callable[[OnSending], Sequence[BatchDeliverer]]

# Headers that would add recipients the envelope (From/To only) would not carry.
_MORE_RECIPIENTS = ("Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
# Why an email rendered earlier does not go after all. The ledger keeps these English words (its
# reasons are data, the same in every language); whoever shows them says _(reason).
OPTED_OUT_EMAIL = N_("opted out (email)")
NOT_A_CONTACT = N_("no longer in the contacts file")
NO_EMAIL = N_("no usable email")
ADDRESS_CHANGED = N_("email address changed since it was rendered")
_HEADERS = BytesHeaderParser(policy=email.policy.compat32)


@dataclass(frozen=True, slots=True)
class Unsent:
    """An email that did not go (failed) or may have gone (uncertain), and why."""

    contact_id: str
    campaign: str
    occurrence_key: str
    error: str
    permanent: bool = False
    artifact: str | None = None

    @classmethod
    def of(cls, record: MessageRecord, *, error: str, permanent: bool = False) -> Unsent:
        """The Unsent for a ledger row."""
        return cls(
            contact_id=record.contact_id,
            campaign=record.campaign,
            occurrence_key=record.occurrence_key,
            error=error,
            permanent=permanent,
            artifact=record.artifact,
        )

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "contact_id": self.contact_id,
            "campaign": self.campaign,
            "occurrence_key": self.occurrence_key,
            "error": self.error,
            "permanent": self.permanent,
            "artifact": self.artifact,
        }


@dataclass(frozen=True, slots=True)
class QuietWait:
    """Emails held back by quiet hours or a quiet day, and when they may go."""

    reason: str  # "quiet hours (21:00-09:00)" or "quiet day (sun)"
    until: datetime
    count: int
    closing: int  # of them, those whose window ends before `until`: they will be missed

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "reason": self.reason,
            "until": self.until.isoformat(timespec="minutes"),
            "count": self.count,
            "closing": self.closing,
        }


@dataclass
class SendSummary:
    """What one send step did, for the CLI to print."""

    send_date: date
    now: datetime
    server: str
    waiting: int = 0  # emails found waiting with their window open
    sent: int = 0
    failed: list[Unsent] = field(default_factory=list)
    uncertain: list[Unsent] = field(default_factory=list)  # made uncertain by this step
    needs_human: list[Unsent] = field(default_factory=list)  # every open uncertain email
    skipped: Counter[str] = field(default_factory=Counter)
    quiet: list[QuietWait] = field(default_factory=list)
    missed: int = 0
    settled: int = 0  # left `sending` by a killed process, now uncertain
    stopped: str | None = None  # why sending stopped before the end
    not_tried: int = 0  # waiting emails left for the next send because sending stopped
    elsewhere: int = 0  # taken by another send step (another machine) first: not sent here

    @property
    def exit_code(self) -> int:
        """0 all went well (or waits for quiet hours); 1 something failed or is uncertain."""
        return 1 if self.failed or self.uncertain or self.stopped else 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "date": self.send_date.isoformat(),
            "now": self.now.isoformat(timespec="minutes"),
            "server": self.server,
            "waiting": self.waiting,
            "sent": self.sent,
            "failed": [u.as_dict() for u in self.failed],
            "uncertain": [u.as_dict() for u in self.uncertain],
            "needs_human": [u.as_dict() for u in self.needs_human],
            "skipped": dict(sorted(self.skipped.items())),
            "quiet": [q.as_dict() for q in self.quiet],
            "missed": self.missed,
            "settled": self.settled,
            "stopped": self.stopped,
            "not_tried": self.not_tried,
            "elsewhere": self.elsewhere,
            "exit_code": self.exit_code,
        }


# ---------------------------------------------------------------------------------------------
# Setting up


def server_name(settings: Settings) -> str:
    """`host:port` of the configured SMTP server."""
    delivery = settings.delivery
    return f"{delivery.host}:{delivery.port or DEFAULT_PORTS[delivery.security]}"


@dataclass(frozen=True, slots=True)
class SendProgress:
    """What the send step is doing, for a progress bar: starting, one more email, a pause."""

    kind: str  # start | handed | wait
    total: int = 0  # start: emails about to go
    seconds: float = 0.0  # wait: how long
    why: str = ""  # wait: rate_limit | retry


SendObserver = Callable[[SendProgress], None]


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Which of the waiting emails a send step takes, and who watches them go."""

    retry_uncertain: bool = False  # `uncertain` emails too (`outreach send --retry-uncertain`)
    only_run_date: date | None = None  # only the emails rendered on that day
    observe: SendObserver | None = None  # progress: the start, each email, each pause


_EVERY_WAITING = SendOptions()


def smtp_deliverers(
    settings: Settings, *, environ: Mapping[str, str], observe: SendObserver | None = None
) -> DelivererFactory:
    """A factory of SMTP deliverers for the config; raise DeliveryError now if it cannot work.

    Checked before anything is rendered: `delivery.method` is smtp, the password variable is
    set, a username has a password, the DKIM key (`dkim:`) is usable and is not contradicted
    by DNS. Nothing connects until the first email is handed over; with `dkim:` each email is
    signed as its connection takes it.
    """
    delivery = settings.delivery
    if delivery.method != "smtp":
        raise DeliveryError(
            _("delivery.method is {method}: emails stay in the outbox").format(
                method=delivery.method
            ),
            field="delivery.method",
            hint=_(
                "set delivery.method: smtp with delivery.host (see the README, "
                '"Sending for real") to send them'
            ),
        )
    password = password_from_env(delivery, environ)
    key = signing_key(settings, environ=environ)
    rate_state = settings.state_dir / RATE_STATE_NAME
    # The constructor checks the settings without connecting.
    SmtpDeliverer(delivery=delivery, password=password, rate_state_path=rate_state)

    def on_wait(seconds: float, why: str) -> None:
        if observe is not None:
            observe(SendProgress("wait", seconds=seconds, why=why))

    def pause(why: str) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            on_wait(seconds, why)
            time.sleep(seconds)

        return sleep

    def make(on_sending: OnSending) -> Sequence[BatchDeliverer]:
        # One budget for every connection, read from the state file once per send step.
        rate = (
            SendRate(
                per_minute=delivery.rate_per_minute,
                path=rate_state,
                clock=time.time,
                sleep=pause("rate_limit"),
            )
            if delivery.rate_per_minute
            else None
        )
        deliverers = [
            SmtpDeliverer(
                delivery=delivery,
                password=password,
                hooks=SmtpHooks(
                    on_sending=on_sending,
                    # hook: VERP envelope sender (outreach.feedback.verp)
                    envelope_sender=lambda message: return_path(settings, message.message_id),
                    on_wait=on_wait if observe is not None else None,
                ),
                rate_state_path=rate_state,
                rate=rate,
            )
            for _ in range(delivery.connections)
        ]
        return deliverers if key is None else [SigningDeliverer(d, key) for d in deliverers]

    return make


class SigningDeliverer:
    """A connection whose emails are signed with DKIM as it takes them, after the send step
    has stamped their Date; the signing runs on the connection's own thread."""

    def __init__(self, inner: SmtpDeliverer, key: DkimKey) -> None:
        self._inner = inner
        self._key = key

    def push_all(self, messages: Iterator[RenderedEmail]) -> Iterator[DeliveryResult]:
        """Deliver what `messages` yields, each one signed."""
        key = self._key
        return self._inner.push_all(signed(message, key) for message in messages)

    def close(self) -> None:
        """Release the connection (idempotent)."""
        self._inner.close()


def signing_key(settings: Settings, *, environ: Mapping[str, str]) -> DkimKey | None:
    """The DKIM key to sign with (None without `dkim:`), checked against DNS when it answers."""
    key = load_dkim_key(settings, environ=environ)
    if key is not None:
        check_published_key(key, environ=environ)
    return key


def check_published_key(key: DkimKey, *, environ: Mapping[str, str]) -> None:
    """DeliveryError if DNS publishes another key at the selector (every signature would fail);
    nothing when there is no record yet or no DNS server answers."""
    from outreach.deliver.doctor import DnsUnavailableError, make_resolver, published_key

    try:
        published = published_key(make_resolver(environ), key)
    except DnsUnavailableError:
        return
    if published is None or published == key.public_key:
        return
    message = (
        _(
            "DNS publishes a revoked key (empty p=) at {record}, not the public half of {key}: "
            "receivers would find every signature broken"
        )
        if not published
        else _(
            "DNS publishes another public key at {record}, not the public half of {key}: "
            "receivers would find every signature broken"
        )
    )
    raise DeliveryError(
        message.format(record=key.record_name, key=key.source),
        field="dkim",
        hint=_(
            "publish the record `outreach doctor` prints, or name the key that matches the "
            "record in dkim.key_file (a new selector lets the old key stay published meanwhile)"
        ),
    )


def campaign_policies(
    settings: Settings, campaigns: Sequence[Campaign] = ()
) -> dict[str, CadencePolicy]:
    """Campaign name → cadence policy, for the given campaigns and every other campaign file.

    The other files are read only for their policy: one that cannot be read is left out (its
    emails follow config `cadence`), since the emails waiting were rendered when it could.
    """
    policies = {c.name: policy_for(settings, c) for c in campaigns}
    try:
        paths = campaign_files(settings)
    except CampaignError:
        return policies
    for path in paths:
        try:
            campaign = load_campaign(path, templates_dir=settings.templates_dir)
        except CampaignError:
            continue
        policies.setdefault(campaign.name, policy_for(settings, campaign))
    return policies


# ---------------------------------------------------------------------------------------------
# The step


def send_waiting(
    *,
    settings: Settings,
    ledger: Ledger,
    make_deliverer: DelivererFactory,
    today: date,
    now: datetime,
    policies: Mapping[str, CadencePolicy] | None = None,
    contacts: Iterable[Contact] | None = None,
    options: SendOptions = _EVERY_WAITING,
) -> SendSummary:
    """Send every email waiting in the outbox whose window is open; record each outcome.

    Call it only while holding the workspace lock. `policies` gives each campaign's quiet
    hours (config `cadence` for the others); `contacts`, when given, are checked for opt-outs
    and changed addresses since rendering (the suppression list is always checked).
    `options.only_run_date` limits the step to emails rendered on that day.
    """
    observe, only_run_date = options.observe, options.only_run_date
    summary = SendSummary(send_date=today, now=now, server=server_name(settings))
    summary.settled = ledger.settle_interrupted(now=now)
    summary.missed = ledger.mark_unsent_missed(today=today, now=now)
    rows = ledger.waiting_emails(today=today, uncertain=options.retry_uncertain)
    if only_run_date is not None:
        rows = [r for r in rows if r.run_date == only_run_date]
    summary.waiting = len(rows)
    due = _hold_quiet(rows, settings=settings, policies=policies or {}, today=today, now=now)
    summary.quiet = due.waits
    if due.ready:
        # Keep only the contacts of the emails about to go: `contacts` may be a stream of the
        # whole file, which a large run never holds at once.
        wanted = {r.contact_id for r in due.ready}
        kept = None if contacts is None else [c for c in contacts if c.id in wanted]
        checks = _Checks(settings=settings, ledger=ledger, contacts=kept)
        if observe is not None:
            observe(SendProgress("start", total=len(due.ready)))
        _deliver(
            due.ready,
            summary=summary,
            ledger=ledger,
            checks=checks,
            make=make_deliverer,
            observe=observe,
            uncertain=options.retry_uncertain,
        )
        # hook: a 5xx for a recipient counts as a hard bounce (outreach.feedback.process)
        record_refusals(settings, ledger=ledger, failed=summary.failed, today=today, now=now)
    elif isinstance(contacts, ContactStream):
        contacts.close()  # nothing to send: let go of the file unread
    summary.needs_human = _needs_human(ledger, today=today)
    return summary


def _needs_human(ledger: SendQueue, *, today: date) -> list[Unsent]:
    return [
        Unsent.of(r, error=r.error or _("the mail server may or may not have it"))
        for r in ledger.open_uncertain_emails(today=today)
    ]


def perform_send(
    *,
    settings: Settings,
    environ: Mapping[str, str],
    today: date,
    now: datetime,
    retry_uncertain: bool = False,
    only_run_date: date | None = None,
    observe: SendObserver | None = None,
) -> SendSummary:
    """`outreach send`: check the SMTP setup, take the workspace lock, send what waits."""
    make = smtp_deliverers(settings, environ=environ, observe=observe)
    # Opened now, so a broken contacts file stops the command before anything is done.
    contacts = iter_contacts(
        display_path(settings.contacts_path),
        settings=settings.contacts,
        default_locale=settings.default_locale,
    )
    policies = campaign_policies(settings)
    with workspace_lock(settings, now=now), open_ledger(settings) as ledger:
        return send_waiting(
            settings=settings,
            ledger=ledger,
            make_deliverer=make,
            today=today,
            now=now,
            policies=policies,
            contacts=contacts,
            options=SendOptions(
                retry_uncertain=retry_uncertain, only_run_date=only_run_date, observe=observe
            ),
        )


def send_after_run(
    *,
    workspace: Workspace,
    environ: Mapping[str, str],
    today: date,
    now: datetime,
    observe: SendObserver | None = None,
) -> Callable[[Ledger, RunSummary], None]:
    """The send step of `outreach run --send`, for `perform_run(after=...)`.

    Checks the SMTP setup at once (before anything is rendered); the step then sends
    everything waiting, earlier transient failures included, and puts its summary in the
    run's (`RunSummary.sending`).
    """
    settings = workspace.settings
    make = smtp_deliverers(settings, environ=environ, observe=observe)
    policies = campaign_policies(settings, workspace.campaigns)

    def step(ledger: Ledger, run: RunSummary) -> None:
        run.sending = send_waiting(
            settings=settings,
            ledger=ledger,
            make_deliverer=make,
            today=today,
            now=now,
            policies=policies,
            contacts=workspace.stream_contacts(),
            options=SendOptions(observe=observe),
        )
        run.uncertain_emails = run.sending.needs_human

    return step


def after_run_step(
    workspace: Workspace,
    *,
    send: bool,
    environ: Mapping[str, str],
    today: date,
    now: datetime,
    observe: SendObserver | None = None,
) -> Callable[[Ledger, RunSummary], None] | None:
    """What follows a run, for the CLI and the daemon alike: with `send`, the send step (the
    SMTP setup checked at once); under `delivery: smtp` without it, the list of uncertain
    emails a person should check; else nothing."""
    if send:
        return send_after_run(
            workspace=workspace, environ=environ, today=today, now=now, observe=observe
        )
    if workspace.settings.delivery.method == "smtp":
        return report_uncertain(today=today)
    return None


def report_uncertain(*, today: date) -> Callable[[Ledger, RunSummary], None]:
    """For a run without --send (delivery: smtp): list the uncertain emails for a person."""

    def step(ledger: Ledger, run: RunSummary) -> None:
        run.uncertain_emails = _needs_human(ledger, today=today)

    return step


# ---------------------------------------------------------------------------------------------
# Quiet hours and days


@dataclass
class _Due:
    ready: list[MessageRecord]
    waits: list[QuietWait]


def _hold_quiet(
    rows: Sequence[MessageRecord],
    *,
    settings: Settings,
    policies: Mapping[str, CadencePolicy],
    today: date,
    now: datetime,
) -> _Due:
    """Split the waiting emails into those that may go now and those quiet time holds back."""
    ready: list[MessageRecord] = []
    held: dict[tuple[str, datetime], list[MessageRecord]] = {}
    known: dict[tuple[str, bool], tuple[str, datetime] | None] = {}
    for row in rows:
        key = (row.campaign, row.essential)
        if key not in known:
            policy = policies.get(row.campaign, settings.cadence)
            known[key] = quiet_until(policy, essential=row.essential, today=today, now=now)
        wait = known[key]
        if wait is None:
            ready.append(row)
        else:
            held.setdefault(wait, []).append(row)
    waits = [
        QuietWait(
            reason=reason,
            until=until,
            count=len(group),
            closing=sum(1 for r in group if r.latest is not None and r.latest < until.date()),
        )
        for (reason, until), group in sorted(held.items(), key=lambda item: item[0][1])
    ]
    return _Due(ready, waits)


class _Refused(Exception):
    """The file cannot be sent as it is (permanent), or cannot be read now (transient)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class _Checks:
    """What an email must pass to be sent: its file, and the contact's latest word."""

    def __init__(
        self, *, settings: Settings, ledger: SendQueue, contacts: Sequence[Contact] | None
    ) -> None:
        self.root = settings.root
        self.sender = _address_key(settings.sender.email)
        self.suppressions = ledger.suppressions()
        self.contacts = {c.id: c for c in contacts} if contacts is not None else None

    def message(self, record: MessageRecord) -> RenderedEmail:
        """The email in the row's .eml file, its envelope from its own From and To headers."""
        if record.artifact is None:
            raise _Refused(_("the ledger names no .eml file for this email"))
        path = self.root / record.artifact
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            # Removed from the outbox, most likely by a person who looked at it first.
            raise _Refused(
                _("{file} is not in the outbox any more").format(file=record.artifact)
            ) from None
        except OSError as exc:
            raise _Refused(
                _("cannot read {file}: {error}").format(file=record.artifact, error=exc.strerror),
                permanent=False,
            ) from None
        return _parse(data, record=record, sender=self.sender)

    def skip_reason(self, record: MessageRecord, to_addr: str) -> str | None:
        """Why the email must not go after all (an opt-out since it was rendered), or None."""
        for key in (record.contact_id.lower(), to_addr.lower()):
            channels = self.suppressions.get(key)
            if channels and ("email" in channels or "all" in channels):
                return OPTED_OUT_EMAIL
        # hook: an address bounces blocked since the email was rendered
        if email_blocked(to_addr, self.suppressions):
            return EMAIL_BLOCKED
        if self.contacts is None:
            return None
        contact = self.contacts.get(record.contact_id)
        if contact is None:
            return NOT_A_CONTACT
        if opted_out(contact, "email", self.suppressions):
            return OPTED_OUT_EMAIL
        if contact.email is None:
            return NO_EMAIL
        if _address_key(contact.email) != _address_key(to_addr):
            return ADDRESS_CHANGED
        return None


def _parse(data: bytes, *, record: MessageRecord, sender: tuple[str, str] | None) -> RenderedEmail:
    # Only the header block is parsed, and with the plain (compat32) policy: the default
    # policy's header objects cost more than the SMTP exchange. The body goes out untouched.
    end = data.find(b"\r\n\r\n")
    head = _HEADERS.parsebytes(data[: end + 2] if end >= 0 else data)
    name = record.artifact
    for header in _MORE_RECIPIENTS:
        if header in head:
            raise _Refused(
                _("{file} has a {header} header; outreach sends to one To address").format(
                    file=name, header=header
                )
            )
    froms = _addresses(head.get_all("From", []))
    tos = _addresses(head.get_all("To", []))
    if len(tos) != 1:
        raise _Refused(
            _("{file}: To must hold exactly one address (it holds {n})").format(
                file=name, n=len(tos)
            )
        )
    if len(froms) != 1:
        raise _Refused(
            _("{file}: From must hold exactly one address (it holds {n})").format(
                file=name, n=len(froms)
            )
        )
    (from_addr,), (to_addr,) = froms, tos
    if sender is None or _address_key(from_addr) != sender:
        raise _Refused(
            _("{file}: From is {address}, not the sender in config.yaml").format(
                file=name, address=from_addr
            )
        )
    message_id = "".join(str(head.get("Message-ID", "")).split()).strip("<>")
    if record.message_id and message_id != record.message_id:
        raise _Refused(
            _("{file}: its Message-ID is not the one rendered for this email").format(file=name)
        )
    try:
        subject = str(make_header(decode_header(str(head.get("Subject", "")))))
    except (LookupError, UnicodeError, HeaderParseError):
        subject = str(head.get("Subject", ""))  # only for messages; the file goes as it is
    return RenderedEmail(
        contact_id=record.contact_id,
        campaign=record.campaign,
        occurrence_key=record.occurrence_key,
        message_id=message_id,
        from_addr=from_addr,
        to_addrs=(to_addr,),
        subject=subject,
        data=data,
    )


def redated(message: RenderedEmail, moment: datetime) -> RenderedEmail:
    """The message with the `Date` of its sending, not of its rendering (RFC 5322 3.6.1: the
    date it was ready for delivery), so one held overnight is not stamped the evening before."""
    data = message.data
    end = data.find(b"\r\n\r\n")
    head = data[: end + 2] if end >= 0 else data
    start = 0 if head.startswith(b"Date:") else head.find(b"\r\nDate:") + 2
    if start == 1:  # no Date header (a hand-made file): add one
        stamped = b"Date: " + format_datetime(moment).encode("ascii") + b"\r\n" + data
    else:
        stop = head.find(b"\r\n", start)
        while head[stop + 2 : stop + 3] in (b" ", b"\t"):  # a folded Date header
            stop = head.find(b"\r\n", stop + 2)
        line = b"Date: " + format_datetime(moment).encode("ascii")
        stamped = data[:start] + line + data[stop:]
    return replace(message, data=stamped)


def _addresses(values: Sequence[object]) -> list[str]:
    """The addresses (addr-spec only) in the values of one kind of address header."""
    return [addr for _, addr in getaddresses([str(v) for v in values]) if addr]


def _address_key(addr: str) -> tuple[str, str] | None:
    """An address as compared: local part as written, domain in lower-case ASCII."""
    try:
        local, _at, domain = check_address(addr.strip()).rpartition("@")
    except ValueError:
        return None
    return local, domain.lower()


# ---------------------------------------------------------------------------------------------
# Handing over


def _deliver(
    rows: Sequence[MessageRecord],
    *,
    summary: SendSummary,
    ledger: SendQueue,
    checks: _Checks,
    make: DelivererFactory,
    observe: SendObserver | None = None,
    uncertain: bool = False,
) -> None:
    """Hand the rows to the connections; every ledger write happens on this thread.

    Each row is claimed (`sending`) as a connection takes it; `uncertain` rows may be claimed
    too when the step retries them."""
    handover = _Handover(
        rows, summary=summary, ledger=ledger, checks=checks, observe=observe, uncertain=uncertain
    )
    handover.run(make)


class _Handover:
    """One send step's hand-over: which connection took which row, and what is recorded.

    The connections call `take` and `on_sending` on their own threads; every ledger write and
    every change to the summary is made on the thread that opened the ledger (`_LedgerThread`).
    """

    def __init__(
        self,
        rows: Sequence[MessageRecord],
        *,
        summary: SendSummary,
        ledger: SendQueue,
        checks: _Checks,
        observe: SendObserver | None,
        uncertain: bool,
    ) -> None:
        self.rows = rows
        self.summary = summary
        self.ledger = ledger
        self.checks = checks
        self.observe = observe
        self.uncertain = uncertain
        self.now = summary.now
        self.owner = _LedgerThread()
        self.records: dict[tuple[str, str, str], MessageRecord] = {}
        # Claimed `sending` (their data is on the way), by the thread of their connection.
        self.handed: dict[int, set[tuple[str, str, str]]] = {}
        self.went: set[tuple[str, str, str]] = set()  # their data began to go to the server
        self.done: set[tuple[str, str, str]] = set()  # their outcome is recorded
        self.settled = 0  # rows whose outcome this step recorded (sent, failed, uncertain, skipped)
        self.stop = threading.Event()  # a connection stopped: the others take nothing new
        self.problems: list[BaseException] = []
        self.taking = threading.Lock()
        self.position = 0

    def outcome(self, record: MessageRecord) -> None:
        self.settled += 1
        if self.observe is not None:
            self.observe(SendProgress("handed"))  # sent, failed or skipped

    def on_sending(self, message: RenderedEmail) -> None:
        # Its `sending` claim was committed when it was taken: from here on a crash leaves
        # `sending`, which the next run settles as uncertain.
        self.went.add((message.contact_id, message.campaign, message.occurrence_key))

    def claim(self, record: MessageRecord) -> bool:
        """Take the row for this step (False: another send step has it)."""
        taken: list[bool] = []

        def mark() -> None:
            taken.append(self.ledger.claim_sending(record, uncertain=self.uncertain, now=self.now))

        self.owner.call(mark)
        return taken[0]

    def elsewhere(self, record: MessageRecord) -> None:
        self.summary.elsewhere += 1
        self.outcome(record)

    def release(self) -> None:
        """Rows claimed but never handed to the server go back to what they were."""
        claimed = {key for keys in self.handed.values() for key in keys}
        for key in sorted(claimed - self.done - self.went):
            record = self.records[key]
            self.ledger.set_status(
                contact_id=record.contact_id,
                campaign=record.campaign,
                occurrence_key=record.occurrence_key,
                status=record.status,
                error=record.error,
                reason=record.reason,
                reason_code=record.reason_code,
                now=self.now,
            )

    def fail(self, record: MessageRecord, error: str, *, permanent: bool) -> None:
        self.ledger.set_status(
            contact_id=record.contact_id,
            campaign=record.campaign,
            occurrence_key=record.occurrence_key,
            status="failed",
            error=error,
            reason=PERMANENT if permanent else TRANSIENT,
            now=self.now,
        )
        self.summary.failed.append(Unsent.of(record, error=error, permanent=permanent))

    def skipped(self, record: MessageRecord, reason: str) -> None:
        self.ledger.set_status(
            contact_id=record.contact_id,
            campaign=record.campaign,
            occurrence_key=record.occurrence_key,
            status="skipped",
            reason=reason,
            now=self.now,
        )
        self.summary.skipped[reason] += 1
        self.outcome(record)

    def result_of(self, result: DeliveryResult) -> None:
        record = self.records[result.key]
        _record(result, record, summary=self.summary, ledger=self.ledger, fail=self.fail)
        self.done.add(result.key)
        self.outcome(record)

    def refused(self, record: MessageRecord, why: _Refused) -> None:
        self.fail(record, why.message, permanent=why.permanent)
        self.outcome(record)

    def give_back(self, thread: int, error: str) -> None:
        # Those whose data began to go; the others were never handed over (release()).
        for key in (self.handed.get(thread, set()) & self.went) - self.done:
            self.fail(self.records[key], error, permanent=False)
            self.done.add(key)
            self.outcome(self.records[key])

    def take(self) -> RenderedEmail | None:
        """The next email to go, for whichever connection asks first (each goes once)."""
        with self.taking:
            while not self.stop.is_set() and self.position < len(self.rows):
                record = self.rows[self.position]
                self.position += 1
                try:
                    message = self.checks.message(record)
                except _Refused as why:
                    self.owner.call(partial(self.refused, record, why))
                    continue
                skip = self.checks.skip_reason(record, message.to_addrs[0])
                if skip is not None:
                    self.owner.call(partial(self.skipped, record, skip))
                    continue
                if not self.claim(record):
                    self.owner.call(partial(self.elsewhere, record))
                    continue
                key = (record.contact_id, record.campaign, record.occurrence_key)
                self.records[key] = record
                self.handed.setdefault(threading.get_ident(), set()).add(key)
                return redated(message, self.now)
            return None

    def work(self, deliverer: BatchDeliverer) -> None:
        summary = self.summary
        try:
            for result in deliverer.push_all(iter(self.take, None)):
                self.owner.call(partial(self.result_of, result))
        except SendingStoppedError as stopped:
            self.stop.set()
            if stopped.result is not None:
                self.owner.call(partial(self.result_of, stopped.result))
            summary.stopped = summary.stopped or str(stopped)
        except DeliveryError as error:
            # A login or TLS problem: no email can go. One handed over part-way never reached
            # the end of its data, so nothing was queued: try it again later.
            self.stop.set()
            summary.stopped = summary.stopped or str(error)
            self.owner.call(partial(self.give_back, threading.get_ident(), error.message))
        except BaseException as exc:
            self.stop.set()
            self.problems.append(exc)
        finally:
            deliverer.close()

    def run(self, make: DelivererFactory) -> None:
        """Make the connections, let them take every row, then give back what none handed over."""
        deliverers = make(self.on_sending)
        try:
            if len(deliverers) == 1:
                self.work(deliverers[0])
            else:
                threads = [
                    threading.Thread(
                        target=self.owner.run_then_finish, args=(self.work, d), daemon=True
                    )
                    for d in deliverers
                ]
                for thread in threads:
                    thread.start()
                self.owner.serve(workers=len(threads))
                for thread in threads:
                    thread.join()
        finally:
            self.stop.set()
            self.owner.close()
            for deliverer in deliverers:
                deliverer.close()  # a thread still in flight only if this thread was interrupted
            with suppress(OutreachError):
                self.release()
        if self.problems:
            raise self.problems[0]
        if self.summary.stopped is not None:
            self.summary.not_tried = len(self.rows) - self.settled


class _Cancelled(Exception):
    """The send step is ending: a connection's ledger write will not be made."""


class _LedgerThread:
    """Runs the connections' ledger writes on the thread that opened the ledger.

    A SQLite connection belongs to its thread, and one writer keeps the order of events simple:
    a connection waits for its `sending` row to be committed before the data goes.
    """

    def __init__(self) -> None:
        self._thread = threading.get_ident()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._closed = threading.Event()

    def call(self, job: Callable[[], None]) -> None:
        """Run `job` on the ledger's thread and wait for it; its exception is raised here."""
        if threading.get_ident() == self._thread:
            job()
            return
        finished = threading.Event()
        failure: list[BaseException] = []

        def wrapped() -> None:
            try:
                job()
            except BaseException as exc:
                failure.append(exc)
            finally:
                finished.set()

        if self._closed.is_set():
            raise _Cancelled
        self._jobs.put(wrapped)
        while not finished.wait(0.5):
            if self._closed.is_set():
                raise _Cancelled
        if failure:
            raise failure[0]

    def run_then_finish(self, work: Callable[[BatchDeliverer], None], arg: BatchDeliverer) -> None:
        """A connection's thread: its work, then word that it is done."""
        try:
            work(arg)
        finally:
            self._jobs.put(None)

    def serve(self, *, workers: int) -> None:
        """Run the jobs the connections send until every one of them has finished."""
        while workers:
            job = self._jobs.get()
            if job is None:
                workers -= 1
            else:
                job()

    def close(self) -> None:
        """No more jobs: connections still waiting for one are told so."""
        self._closed.set()


def _record(
    result: DeliveryResult,
    record: MessageRecord,
    *,
    summary: SendSummary,
    ledger: SendQueue,
    fail: Callable[..., None],
) -> None:
    """Write what became of one email to the ledger and the summary."""
    if result.status == "sent":
        ledger.set_status(
            contact_id=record.contact_id,
            campaign=record.campaign,
            occurrence_key=record.occurrence_key,
            status="sent",
            now=summary.now,
        )
        summary.sent += 1
    elif result.status == "uncertain":
        error = result.error or _("the server did not confirm the email")
        ledger.set_status(
            contact_id=record.contact_id,
            campaign=record.campaign,
            occurrence_key=record.occurrence_key,
            status="uncertain",
            error=error,
            now=summary.now,
        )
        summary.uncertain.append(Unsent.of(record, error=error))
    else:
        fail(record, result.error or _("delivery failed"), permanent=not result.transient)


__all__ = [
    "PERMANENT",
    "TRANSIENT",
    "BatchDeliverer",
    "DelivererFactory",
    "QuietWait",
    "SendOptions",
    "SendSummary",
    "Unsent",
    "campaign_policies",
    "perform_send",
    "quiet_until",
    "report_uncertain",
    "send_after_run",
    "send_waiting",
    "server_name",
    "smtp_deliverers",
]
