"""The store a run reads and records through, and the in-memory store rehearsals use.

A run needs little of its ledger: the suppression list, what weighs on each contact's cadence,
which messages are done, a place to record outcomes (and to claim a message before its file is
written), and the windows that closed. The SQLite
`Ledger` is that store for real runs; `MemoryStore`, seeded from it, is the store of a dry run,
of `validate`, `plan` and `explain`: the same runner records into it, and nothing reaches the
disk. Its recording rules are the ledger's own, written once here for memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from outreach.ledger.sqlite import COUNTED_STATUSES, DONE_STATUSES, Ledger, MessageRecord
from outreach.rules.cadence import PastMessage

if TYPE_CHECKING:
    from outreach.model.campaigns import Campaign

_COUNTED = frozenset(COUNTED_STATUSES)


class RunStore(Protocol):
    """What a run reads and records."""

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


def is_done(record: MessageRecord) -> bool:
    """Whether a run must not make this message again (the rule of `Ledger.done_for`)."""
    return record.status in DONE_STATUSES or (
        record.status == "failed" and record.artifact is not None
    )


@dataclass
class MemoryStore:
    """A run store in memory, seeded from a ledger; what is recorded into it stays here."""

    suppressed: dict[str, frozenset[str]] = field(default_factory=dict)
    # contact_id → messages weighing on their cadence (the ledger's, then what runs add)
    past: dict[str, list[PastMessage]] = field(default_factory=dict)
    # campaign → (contact_id, occurrence_key) → status, for messages a run must not redo
    done: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    # deferred messages, by (contact_id, campaign, occurrence_key), until their window closes
    waiting: dict[tuple[str, str, str], MessageRecord] = field(default_factory=dict)
    # every record made into this store, in order (rehearsals read what a run did here)
    recorded: list[MessageRecord] = field(default_factory=list)
    runs: int = 0

    @classmethod
    def seeded(
        cls,
        ledger: Ledger,
        *,
        campaigns: Sequence[Campaign],
        since: date,
        contact_id: str | None = None,
        occurrence_keys: Mapping[str, Iterable[str]] | None = None,
    ) -> MemoryStore:
        """What the ledger knows that a run needs: all of it, or one contact's.

        `since` is the earliest effective date that can still weigh on cadence;
        `occurrence_keys` (campaign → keys) limits the done messages read to those that can
        come up (a decade of birthdays is not needed to plan a month).
        """
        store = cls(suppressed=ledger.suppressions())
        if contact_id is None:
            store.past = ledger.history(since=since)
            for campaign in campaigns:
                keys = None if occurrence_keys is None else occurrence_keys.get(campaign.name, ())
                store.done[campaign.name] = ledger.done_for(campaign.name, occurrence_keys=keys)
            deferred = ledger.messages(statuses=["deferred"])
        else:
            rows = ledger.messages(contact_id=contact_id)
            names = {c.name for c in campaigns}
            store.done = {name: {} for name in names}
            for row in rows:
                if row.campaign in names and is_done(row):
                    store.done[row.campaign][(row.contact_id, row.occurrence_key)] = row.status
            # From the contact's own rows, by the ledger's rule (counted statuses, effective
            # date from `since`): reading every contact's pressure for one would cost the
            # whole ledger.
            store.past = {
                contact_id: [
                    PastMessage(day, r.campaign, r.essential)
                    for r in sorted(rows, key=lambda r: r.effective_date or r.run_date)
                    if r.status in _COUNTED and (day := r.effective_date or r.run_date) >= since
                ]
            }
            deferred = [r for r in rows if r.status == "deferred"]
        store.waiting = {r.key: r for r in deferred if r.latest is not None}
        return store

    # -- the RunStore interface --------------------------------------------------------------

    def suppressions(self) -> dict[str, frozenset[str]]:
        """The suppression list, as `Ledger.suppressions` gives it."""
        return self.suppressed

    def history(self, *, since: date) -> Mapping[str, Sequence[PastMessage]]:
        """What weighs on each contact's cadence (older messages are harmless to `decide`)."""
        return self.past

    def done_for(
        self, campaign: str, *, occurrence_keys: Iterable[str] | None = None
    ) -> Mapping[tuple[str, str], str]:
        """The campaign's messages a run must not redo."""
        return self.done.setdefault(campaign, {})

    def begin_run(self, *, run_date: date, started_at: datetime, args: Sequence[str]) -> int:
        """A run id (nothing is kept of the run)."""
        self.runs += 1
        return self.runs

    def close_windows(self, *, today: date, now: datetime, run_id: int) -> list[MessageRecord]:
        """Deferred messages whose window closed before today become missed, as in the ledger."""
        closed = [
            key for key, r in self.waiting.items() if r.latest is not None and r.latest < today
        ]
        missed = []
        for key in closed:
            row = self.waiting.pop(key)
            record = replace(
                row,
                status="missed",
                run_date=today,
                updated_at=now,
                reason="window closed while deferred: " + (row.reason or ""),
            )
            self.done.setdefault(row.campaign, {})[(row.contact_id, row.occurrence_key)] = "missed"
            missed.append(record)
        self.recorded.extend(missed)
        return missed

    def record(self, records: Iterable[MessageRecord], *, run_id: int | None = None) -> None:
        """Keep each record's effect on what later runs see."""
        for r in records:
            self.recorded.append(r)
            key = r.key
            done = self.done.setdefault(r.campaign, {})
            if is_done(r):
                done[(r.contact_id, r.occurrence_key)] = r.status
            else:
                done.pop((r.contact_id, r.occurrence_key), None)
            if r.status == "deferred":
                self.waiting[key] = r
            else:
                self.waiting.pop(key, None)
            if r.status in _COUNTED:
                effective = r.effective_date or r.run_date
                self.past.setdefault(r.contact_id, []).append(
                    PastMessage(effective, r.campaign, r.essential)
                )

    def claim(self, records: Sequence[MessageRecord], *, run_id: int) -> set[tuple[str, str, str]]:
        """Record the messages that are not done, as `Ledger.claim` does; return their keys."""
        granted = [
            r
            for r in records
            if (r.contact_id, r.occurrence_key) not in self.done.get(r.campaign, {})
        ]
        self.record(granted, run_id=run_id)
        return {r.key for r in granted}

    def settle_claims(self, records: Iterable[MessageRecord], *, run_id: int) -> None:
        """What became of claimed messages."""
        self.record(records, run_id=run_id)

    def end_run(self, run_id: int, *, ended_at: datetime, counts: Mapping[str, object]) -> None:
        """Nothing to keep."""


if TYPE_CHECKING:

    def _implements_run_store(ledger: Ledger, memory: MemoryStore) -> tuple[RunStore, RunStore]:
        return ledger, memory  # mypy checks that both have everything RunStore promises
