"""The ledger: what went to whom, the runs, the suppression list, and the workspace lock.

`sqlite` is the embedded ledger; `store` is the interface a run records through, with the
in-memory store that rehearsals (dry run, validate, plan, explain) use.
"""

from outreach.ledger.backend import (
    ledger_exists,
    ledger_location,
    open_ledger,
    read_ledger,
    workspace_lock,
)
from outreach.ledger.sqlite import (
    CHANNELS,
    COUNTED_STATUSES,
    DONE_STATUSES,
    LOCK_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    STATUSES,
    SUPPRESSION_CHANNELS,
    Block,
    BounceEvent,
    Ledger,
    LedgerStore,
    MessageRecord,
    ReplyRecord,
    WorkspaceLock,
    acquire_lock,
    apply_migrations,
    email_block_key,
    letter_block_key,
)

__all__ = [
    "CHANNELS",
    "COUNTED_STATUSES",
    "DONE_STATUSES",
    "LOCK_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATUSES",
    "SUPPRESSION_CHANNELS",
    "Block",
    "BounceEvent",
    "Ledger",
    "LedgerStore",
    "MessageRecord",
    "ReplyRecord",
    "WorkspaceLock",
    "acquire_lock",
    "apply_migrations",
    "email_block_key",
    "ledger_exists",
    "ledger_location",
    "letter_block_key",
    "open_ledger",
    "read_ledger",
    "workspace_lock",
]
