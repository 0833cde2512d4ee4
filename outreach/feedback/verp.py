"""VERP envelope senders: a short token in the return path names the message a bounce is for.

The token is the first 12 hex digits of the message's Message-ID digest (which the ledger
indexes) and 8 hex digits of an HMAC over them, keyed with config `coupon.secret`: a bounce
can name only a message outreach sent, and nobody can forge one for another contact. Hex
only, so a mail server that lower-cases local parts does not break it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from outreach.model.config import Settings

_DIGITS = 12
_MAC = 8
_HEX = re.compile(r"[0-9a-f]+")
TOKEN_LENGTH = _DIGITS + _MAC


def _mac(secret: str, digits: str) -> str:
    return hmac.new(secret.encode(), b"verp\x00" + digits.encode(), hashlib.sha256).hexdigest()[
        :_MAC
    ]


def verp_token(*, secret: str, message_id: str) -> str | None:
    """The token for an email with this Message-ID, or None for one outreach did not make."""
    digits = message_id.strip("<>").partition("@")[0][:_DIGITS].lower()
    if len(digits) != _DIGITS or not _HEX.fullmatch(digits):
        return None
    return digits + _mac(secret, digits)


def verify_token(token: str, *, secret: str) -> str | None:
    """The Message-ID digits a token carries, or None when it does not verify."""
    token = token.lower()
    if len(token) != TOKEN_LENGTH or not _HEX.fullmatch(token):
        return None
    digits, mac = token[:_DIGITS], token[_DIGITS:]
    return digits if hmac.compare_digest(mac, _mac(secret, digits)) else None


def return_path(settings: Settings, message_id: str) -> str | None:
    """The envelope sender (SMTP MAIL FROM) for an email, from config `bounces.return_path`."""
    template = settings.bounces.return_path
    if template is None:
        return None
    token = verp_token(secret=settings.coupon.secret, message_id=message_id)
    return template.replace("{token}", token) if token is not None else None


def token_pattern(template: str) -> re.Pattern[str]:
    """A pattern that finds the token of `template` in an address (any case)."""
    before, _sep, after = template.partition("{token}")
    return re.compile(
        re.escape(before) + r"(?P<token>[0-9A-Za-z]{1,64})" + re.escape(after), re.IGNORECASE
    )


def tokens_in(values: Iterable[str], pattern: re.Pattern[str]) -> list[str]:
    """Every candidate token found in these header values, in order, without repeats."""
    found: dict[str, None] = {}
    for value in values:
        for match in pattern.finditer(value):
            found[match.group("token").lower()] = None
    return list(found)
