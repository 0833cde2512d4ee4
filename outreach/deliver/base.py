"""The one small interface every email deliverer implements (outbox files, SMTP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from outreach.render.email import RenderedEmail


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What became of one message: the ledger status to record, and where it is or what failed."""

    key: tuple[str, str, str]  # (contact_id, campaign, occurrence_key)
    status: str  # 'rendered' for the outbox; 'sent', 'failed', 'uncertain' for SMTP
    artifact: str | None = None  # path relative to the workspace root
    error: str | None = None
    transient: bool = False  # a failure that may succeed if tried again later


class Deliverer(Protocol):
    """Takes rendered emails one at a time; a dry run uses another deliverer, never a flag."""

    def push(self, message: RenderedEmail) -> DeliveryResult:
        """Deliver one message; per-message failures come back as a result, not an exception."""
        ...

    def close(self) -> None:
        """Release connections and files (idempotent)."""
        ...
