"""What the ledger holds (its records) and the roles it plays, each a small Protocol.

A run decides and records through a `RunStore`; the send step works a `SendQueue`; what comes
back (bounces, returned letters) goes through a `FeedbackStore`; `history` and the report read
through a `LedgerReader`. One class plays them all: the SQL ledger (outreach.ledger.sql), on a
SQLite file, on PostgreSQL, or — for the rehearsals (dry run, validate, plan, explain) — on an
in-memory SQLite seeded from the real one, so every rule is the SQL's, written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from outreach.rules.cadence import PastMessage


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message to one contact: its occurrence, channel, status and where it is."""

    contact_id: str
    campaign: str
    occurrence_key: str
    channel: str  # email | letter
    status: str
    run_date: date
    event_date: date | None = None
    earliest: date | None = None
    latest: date | None = None
    artifact: str | None = None  # path relative to the workspace root
    message_id: str | None = None
    reason: str | None = None
    error: str | None = None
    essential: bool = False
    # When it reaches the contact (letters: run_date + delivery_days); cadence counts this day.
    # Stored as run_date when not given, so a message can never escape the cadence policy.
    effective_date: date | None = None
    updated_at: datetime | None = None
    # Why it was held back, as data (an outreach.model.reasons.Code value); `reason` is its sentence.
    # A missed message keeps the code of what deferred it; `window_closed` when nothing did.
    reason_code: str | None = None
    # The legal basis it went on (outreach.rules.legal), kept as proof: "consent 2025-03-01
    # formulario web", "service", … with config legal.consent_text_version after " · text ".
    basis: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """(contact_id, campaign, occurrence_key): what makes a message unique."""
        return (self.contact_id, self.campaign, self.occurrence_key)


@dataclass(frozen=True, slots=True)
class BounceEvent:
    """One bounce counted against an address: a hard one (5.x.x) or a soft one (4.x.x)."""

    address: str  # lower-cased
    contact_id: str
    day: date
    kind: str  # hard | soft
    campaign: str | None = None
    occurrence_key: str | None = None
    status: str | None = None  # e.g. 5.1.1, or the SMTP reply code
    diagnostic: str | None = None
    kept: str | None = None  # the bounce as received, relative to the workspace root
    source: str = ""  # the bounce's fingerprint, or `smtp` for a refusal at sending time


@dataclass(frozen=True, slots=True)
class Block:
    """An address blocked for a channel, and why.

    Email: `value` is the address (a new address in contacts.csv starts clean). Letter: the
    contact id with `postal_key`, the address the post returned (a changed address starts
    clean). All: a complaint about the contact (also on the suppression list).
    """

    channel: str  # email | letter | all
    value: str
    contact_id: str
    reason: str  # one of BLOCK_REASONS
    day: date
    postal_key: str = ""
    status: str | None = None
    diagnostic: str | None = None
    kept: str | None = None
    score: float | None = None
    reported: date | None = None  # the bounce's own Date (`day` is when outreach read it)


REPLY_STATUSES = ("open", "done", "stopped", "recorded")


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """One reply a person wrote, what outreach made of it, and where the owner left it."""

    fingerprint: str
    contact_id: str
    sender: str  # lower-cased
    received: date  # the day outreach read it
    subject: str
    excerpt: str
    kind: str  # outreach.feedback.replies.KINDS
    status: str  # one of REPLY_STATUSES
    mailbox: str
    campaign: str | None = None  # of the message it answers
    occurrence_key: str | None = None
    message_id: str | None = None  # the reply's own
    written: date | None = None  # its Date header's day
    evidence: str | None = None  # the sentence that decided its kind
    kept: str | None = None
    note: str | None = None
    id: int | None = None


def email_block_key(address: str) -> str:
    """The key under which `suppressions()` lists an address blocked for email.

    NUL cannot occur in an address or a contact id, so a block never reads as an opt-out
    (an opt-out has no fallback; a bounced address lets a letter take over).
    """
    return "\x00blocked-email\x00" + address.strip().lower()


def letter_block_key(contact_id: str, postal_key: str) -> str:
    """The key under which `suppressions()` lists a contact's postal address the post returned."""
    return "\x00blocked-letter\x00" + contact_id.lower() + "\x00" + postal_key


class RunStore(Protocol):
    """What a run reads and records (runner, plan, explain, validate)."""

    def suppressions(self) -> dict[str, frozenset[str]]: ...
    def history(self, *, since: date) -> Mapping[str, Sequence[PastMessage]]: ...
    def done_for(
        self, campaign: str, *, occurrence_keys: Iterable[str] | None = None
    ) -> Mapping[tuple[str, str], str]: ...
    def begin_run(self, *, run_date: date, started_at: datetime, args: Sequence[str]) -> int: ...
    def close_windows(self, *, today: date, now: datetime, run_id: int) -> list[MessageRecord]: ...
    def record(self, records: Iterable[MessageRecord], *, run_id: int | None = None) -> None: ...
    def claim(
        self, records: Sequence[MessageRecord], *, run_id: int
    ) -> set[tuple[str, str, str]]: ...
    def settle_claims(self, records: Iterable[MessageRecord], *, run_id: int) -> None: ...
    def end_run(self, run_id: int, *, ended_at: datetime, counts: Mapping[str, object]) -> None: ...
    def latest_visits(self) -> dict[str, date]: ...
    def address_confirmations(self) -> dict[str, tuple[date, str]]: ...
    def confirm_addresses(
        self, confirmed: Sequence[tuple[str, date, str]], *, now: datetime
    ) -> None: ...


class SendQueue(Protocol):
    """What the send step works through: the emails waiting, and what became of each."""

    def suppressions(self) -> dict[str, frozenset[str]]: ...
    def settle_interrupted(self, *, now: datetime) -> int: ...
    def mark_unsent_missed(self, *, today: date, now: datetime) -> int: ...
    def waiting_emails(self, *, today: date, uncertain: bool = False) -> list[MessageRecord]: ...
    def open_uncertain_emails(self, *, today: date) -> list[MessageRecord]: ...
    def claim_sending(self, record: MessageRecord, *, uncertain: bool, now: datetime) -> bool: ...
    def set_status(
        self,
        *,
        contact_id: str,
        campaign: str,
        occurrence_key: str,
        status: str,
        error: str | None = None,
        reason: str | None = None,
        reason_code: str | None = None,
        now: datetime,
    ) -> None: ...


class FeedbackStore(Protocol):
    """What reading bounces and returned letters needs: the messages they answer, and blocks."""

    def messages(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        since: date | None = None,
        statuses: Iterable[str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[MessageRecord]: ...
    def suppress(self, value: str, *, channel: str, source: str, now: datetime) -> bool: ...
    def find_email(
        self, *, message_id: str | None = None, id_prefix: str | None = None
    ) -> MessageRecord | None: ...
    def bounce_events(self, addresses: Iterable[str]) -> dict[str, list[BounceEvent]]: ...
    def blocks(
        self, *, contact_id: str | None = None, values: Iterable[str] | None = None
    ) -> list[Block]: ...
    def feedback_seen(self, fingerprints: Iterable[str]) -> dict[str, str]: ...
    def record_feedback(
        self,
        *,
        events: Sequence[BounceEvent] = (),
        blocks: Sequence[Block] = (),
        suppressions: Sequence[tuple[str, str, str]] = (),
        seen: Sequence[tuple[str, str, date]] = (),
        now: datetime,
    ) -> None: ...
    # replies and undo (outreach.feedback.replies)
    def record_replies(
        self,
        replies: Sequence[ReplyRecord],
        *,
        suppressions: Sequence[tuple[str, str, str]] = (),
        now: datetime,
    ) -> None: ...
    def replies(
        self, *, contact_id: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[ReplyRecord]: ...
    def close_reply(
        self, reply_id: int, *, status: str, note: str | None, now: datetime
    ) -> ReplyRecord | None: ...
    def suppression_rows(self) -> list[tuple[str, str, str, str]]: ...
    def remove_suppressions(
        self, values: Iterable[str], *, reason: str, today: date, now: datetime
    ) -> list[tuple[str, str, str]]: ...
    def remove_blocks(
        self,
        values: Iterable[str],
        *,
        channel: str | None,
        reason: str,
        today: date,
        now: datetime,
    ) -> list[Block]: ...
    def undone(self) -> list[tuple[str, str, str, str, str, date]]: ...
    def feedback_kinds(self, *, since: date) -> dict[str, int]: ...
    def emails_sent(self, *, since: date) -> int: ...


class LedgerReader(Protocol):
    """What `history` and the report read; they never write."""

    def messages(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        since: date | None = None,
        statuses: Iterable[str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[MessageRecord]: ...
    def count_messages(
        self,
        *,
        contact_id: str | None = None,
        campaign: str | None = None,
        since: date | None = None,
        statuses: Iterable[str] | None = None,
    ) -> dict[str, int]: ...
    def contact_pressure(self, *, since: date) -> dict[str, list[tuple[date, str, bool]]]: ...
    def runs(self, limit: int = 20) -> list[dict[str, object]]: ...
    def blocks(
        self, *, contact_id: str | None = None, values: Iterable[str] | None = None
    ) -> list[Block]: ...
    def suppressions(self) -> dict[str, frozenset[str]]: ...
    def replies(
        self, *, contact_id: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[ReplyRecord]: ...
    def suppression_rows(self) -> list[tuple[str, str, str, str]]: ...
    def undone(self) -> list[tuple[str, str, str, str, str, date]]: ...
    def feedback_kinds(self, *, since: date) -> dict[str, int]: ...
    def emails_sent(self, *, since: date) -> int: ...

    path: Path | str

    def connection(self) -> Any: ...
    @property
    def database_errors(self) -> tuple[type[Exception], ...]: ...


class LedgerStore(RunStore, SendQueue, FeedbackStore, LedgerReader, Protocol):
    """Every role at once: what `outreach.ledger.Ledger` is."""

    def close(self) -> None: ...
