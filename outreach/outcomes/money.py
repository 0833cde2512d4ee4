"""Amounts of money as people type them: `12,50`, `12.50`, `1.234,50`, `€ 12`."""

from __future__ import annotations

import re

from outreach.i18n import _

_AMOUNT = re.compile(r"^(?P<whole>\d{1,3}(?:[.,\s]\d{3})*|\d+)(?:[.,](?P<cents>\d{1,2}))?$")


def parse_cents(text: str) -> int:
    """The amount in cents; ValueError with a readable reason when it is not one."""
    cleaned = text.strip().replace("€", "").replace("EUR", "").strip()
    match = _AMOUNT.match(cleaned)
    if match is None:
        raise ValueError(
            _("{text} is not an amount (write it like 12,50 or 12.50)").format(text=repr(text))
        )
    whole = re.sub(r"[.,\s]", "", match.group("whole"))
    cents = (match.group("cents") or "0").ljust(2, "0")
    return int(whole) * 100 + int(cents)


def euros(cents: int) -> str:
    """`1234.50` for 123450 cents: plain, for JSON and tables."""
    return f"{cents // 100}.{cents % 100:02d}"
