"""Coupon codes a till can trust: one per message, keyed with the workspace secret, checked.

A code is `length - 1` symbols of Crockford's base32 (no I, L, O, U) taken from an HMAC-SHA256
of (campaign, contact, occurrence key) under `coupon.secret`, then one check symbol, shown in
groups of four after the prefix: `CL-7KQ2-M9XD`. The check is Damm's algorithm over the field
GF(32): with x∘y = αx + y (α a generator of the field, so α ≠ 0 and α ≠ 1) every row and column
of the table is a permutation, which catches any single wrong symbol, and (x∘a)∘b = (x∘b)∘a only
when a = b, which catches any two neighbours swapped — the check symbol included.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from outreach.i18n import _

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {symbol: index for index, symbol in enumerate(ALPHABET)}
# What people type for the symbols Crockford left out: read as the digits they look like.
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_POLY = 0b100101  # x^5 + x^2 + 1, primitive: x is a generator of GF(32)
GROUP = 4


def _times_alpha(value: int) -> int:
    value <<= 1
    return value ^ _POLY if value & 0b100000 else value


def _fold(values: list[int]) -> int:
    interim = 0
    for value in values:
        interim = _times_alpha(interim) ^ value
    return interim


def check_symbol(body: str) -> str:
    """The check symbol that makes `body` + it fold to zero."""
    return ALPHABET[_times_alpha(_fold([_VALUE[s] for s in body]))]


def is_consistent(symbols: str) -> bool:
    """Whether a code's symbols (body and check, normalised) pass the check."""
    return _fold([_VALUE[s] for s in symbols]) == 0


@lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), b"coupon\x00", hashlib.sha256)


def code_symbols(
    *, secret: str, contact_id: str, campaign: str, occurrence_key: str, length: int
) -> str:
    """The code's symbols (body and check, no prefix, no dashes) for one message."""
    if not 2 <= length <= 52:  # 256 bits give 51 symbols of body
        raise ValueError(_("coupon length must be 2 to 52, not {length}").format(length=length))
    mac = _keyed(secret).copy()
    mac.update(f"{campaign}\x00{contact_id}\x00{occurrence_key}".encode())
    number = int.from_bytes(mac.digest(), "big")
    body = []
    for _place in range(length - 1):
        number, index = divmod(number, 32)
        body.append(ALPHABET[index])
    text = "".join(body)
    return text + check_symbol(text)


def _clean_prefix(prefix: str) -> str:
    return "".join(prefix.split()).replace("-", "").upper()


def display(symbols: str, *, prefix: str) -> str:
    """The code as printed: the prefix, then the symbols in groups of four, joined by dashes."""
    groups = [symbols[i : i + GROUP] for i in range(0, len(symbols), GROUP)]
    head = _clean_prefix(prefix)
    return "-".join([head, *groups] if head else groups)


def coupon_code(
    *, secret: str, contact_id: str, campaign: str, occurrence_key: str, prefix: str, length: int
) -> str:
    """The printed code of one message (contact × campaign × occurrence): same input, same code."""
    symbols = code_symbols(
        secret=secret,
        contact_id=contact_id,
        campaign=campaign,
        occurrence_key=occurrence_key,
        length=length,
    )
    return display(symbols, prefix=prefix)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a typed code reads as: its symbols, or why it cannot be one of ours."""

    symbols: str | None
    problem: str | None = None
    position: int | None = None  # 1-based, among the code's symbols, when one looks wrong
    slipped: str | None = None  # the symbols that fail the check: a slip away from a real code


def read_code(typed: str, *, prefix: str, length: int) -> Reading:
    """Normalise what someone typed (case, spaces, dashes, O/I/L) and check it."""
    text = "".join(typed.split()).replace("-", "").upper()
    head = _clean_prefix(prefix)
    if head and text.startswith(head) and len(text) == len(head) + length:
        text = text[len(head) :]
    text = text.translate(_LOOK_ALIKES)
    if len(text) != length:
        problem = _("a code has {length} characters after its prefix, this has {typed}")
        return Reading(None, problem.format(length=length, typed=len(text)))
    for place, symbol in enumerate(text, start=1):
        if symbol not in _VALUE:
            problem = _("character {place} ({symbol}) is not used in codes")
            return Reading(None, problem.format(place=place, symbol=repr(symbol)), place)
    if not is_consistent(text):
        return Reading(
            None,
            _("the check character does not match: a character is wrong or two are swapped"),
            slipped=text,
        )
    return Reading(text)


def near_misses(symbols: str) -> list[str]:
    """Every code one substitution or one neighbour swap away from `symbols` that passes the
    check (a mistyped code's candidates: at most a few hundred)."""
    found: set[str] = set()
    for place in range(len(symbols)):
        for symbol in ALPHABET:
            if symbol != symbols[place]:
                candidate = symbols[:place] + symbol + symbols[place + 1 :]
                if is_consistent(candidate):
                    found.add(candidate)
        if place + 1 < len(symbols) and symbols[place] != symbols[place + 1]:
            swapped = symbols[:place] + symbols[place + 1] + symbols[place] + symbols[place + 2 :]
            if is_consistent(swapped):
                found.add(swapped)
    return sorted(found)
