"""What became of one delivered email: the record the outbox and SMTP deliverers return."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What became of one message: the ledger status to record, and where it is or what failed."""

    key: tuple[str, str, str]  # (contact_id, campaign, occurrence_key)
    status: str  # 'rendered' for the outbox; 'sent', 'failed', 'uncertain' for SMTP
    artifact: str | None = None  # path relative to the workspace root
    error: str | None = None
    transient: bool = False  # a failure that may succeed if tried again later
