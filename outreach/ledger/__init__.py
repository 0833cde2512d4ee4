"""The ledger: what went to whom, the runs, the suppression list, and the workspace lock.

`schema` holds its tables and migrations; `store` its records and the roles it plays;
`sql` the one ledger and its statements; `sqlite` and `postgres` each store's dialect and
lock; `backend` chooses between them and makes the rehearsals' in-memory ledgers.
"""

from outreach.ledger.backend import (
    Ledger,
    ledger_exists,
    ledger_location,
    open_ledger,
    read_ledger,
    rehearsal,
    workspace_lock,
)
from outreach.ledger.schema import (
    BLOCK_REASONS,
    CHANNELS,
    COUNTED_STATUSES,
    DONE_STATUSES,
    MIGRATIONS,
    SCHEMA_VERSION,
    STATUSES,
    SUPPRESSION_CHANNELS,
)
from outreach.ledger.sql import Seed
from outreach.ledger.sqlite import (
    LEDGER_DAMAGED_HINT,
    LOCK_NAME,
    WorkspaceLock,
    acquire_lock,
    apply_migrations,
)
from outreach.ledger.store import (
    Block,
    BounceEvent,
    FeedbackStore,
    LedgerReader,
    LedgerStore,
    MessageRecord,
    ReplyRecord,
    RunStore,
    SendQueue,
    email_block_key,
    letter_block_key,
)

__all__ = [
    "BLOCK_REASONS",
    "CHANNELS",
    "COUNTED_STATUSES",
    "DONE_STATUSES",
    "LEDGER_DAMAGED_HINT",
    "LOCK_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATUSES",
    "SUPPRESSION_CHANNELS",
    "Block",
    "BounceEvent",
    "FeedbackStore",
    "Ledger",
    "LedgerReader",
    "LedgerStore",
    "MessageRecord",
    "ReplyRecord",
    "RunStore",
    "Seed",
    "SendQueue",
    "WorkspaceLock",
    "acquire_lock",
    "apply_migrations",
    "email_block_key",
    "ledger_exists",
    "ledger_location",
    "letter_block_key",
    "open_ledger",
    "read_ledger",
    "rehearsal",
    "workspace_lock",
]
