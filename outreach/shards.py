"""Shards: a workspace's contacts split into N parts by a stable hash of their id.

Cadence is per contact, so a shard never needs another's decisions: N machines (or processes)
each run `outreach run --shard K/N` against one shared ledger and together send what one run
would. The hash is the first 8 bytes of SHA-256 of the contact id, the same on every machine
and every Python (no per-process hash seed).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from outreach.i18n import _
from outreach.model.errors import ConfigError

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
# More shards than this is surely a typo (and each holds a database connection).
MAX_SHARDS = 1024


def shard_of(contact_id: str, count: int) -> int:
    """The shard (1 to `count`) a contact id belongs to."""
    digest = hashlib.sha256(contact_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (both from 1): the contacts whose hash falls in it."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """`shard-2-of-4`: in lock names, letter batch names and the outbox folder."""
        return f"shard-{self.index}-of-{self.count}"

    def contains(self, contact_id: str) -> bool:
        """Whether this shard takes the contact."""
        return shard_of(contact_id, self.count) == self.index


def parse_shard(spec: str, *, source: str = "--shard") -> Shard:
    """`K/N` as a Shard; ConfigError saying what is wrong otherwise."""
    match = _SPEC.fullmatch(spec)
    hint = _("write it as K/N, e.g. 2/4 for the second of four shards")
    where = f"{source}: " if source else ""
    if match is None:
        raise ConfigError(
            _("{where}{spec} is not a shard").format(where=where, spec=repr(spec)), hint=hint
        )
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise ConfigError(
            _("{where}{count} shards; use 1 to {most}").format(
                where=where, count=count, most=MAX_SHARDS
            ),
            hint=hint,
        )
    if not 1 <= index <= count:
        raise ConfigError(
            _("{where}shard {index} of {count} does not exist").format(
                where=where, index=index, count=count
            ),
            hint=hint,
        )
    return Shard(index, count)
