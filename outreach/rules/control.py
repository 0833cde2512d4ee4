"""Who is held out of a campaign to measure it against: a stable share of its contacts.

The choice is a hash of (campaign, contact id), the same on every run and every machine, so
a contact in a campaign's control group stays there and the comparison stays fair.
"""

from __future__ import annotations

import hashlib


def in_control(*, campaign: str, contact_id: str, percent: float) -> bool:
    """Whether the contact is in the campaign's control group of `percent` percent."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"control\x00{campaign}\x00{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < percent / 100 * 2**64
