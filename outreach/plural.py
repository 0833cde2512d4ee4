"""Counted words: "1 letter", "2 letters" — one literal per form, as gettext's `ngettext` reads.

Until the message catalogs come (issue 25, points 1–4), the English choice; the catalogs'
`ngettext` takes this one's place with the same calls: `ngettext("{n} letter", "{n} letters", n)`.
"""

from __future__ import annotations


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular for one, the plural otherwise (English's rule), not yet formatted."""
    return singular if n == 1 else plural
