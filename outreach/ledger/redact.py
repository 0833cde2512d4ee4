"""One rule hides the password of every connection string before any message is built.

A password reaches a connection string in three shapes: a URL's userinfo
(`postgresql://u:SECRET@host/db`), a URL's query (`?password=SECRET`) and libpq's key=value
form (`host=db password=SECRET`). `redact_url` masks all three in a string given as a
connection string; `redact_text` masks them in a sentence that may quote one (a library's
error message), and with `source` also every password that source holds, wherever it stands.
Neither ever raises: the strings they are given are the malformed ones too.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from outreach.i18n import _

MASK = "***"

# A URL's userinfo with a password: everything from the first ':' after the user name to the
# last '@' is masked (a password may hold '/', '?' or '@' unescaped; masking more is safe).
_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#\s'\"]*:)(?P<secret>.*)(?P<tail>@)", re.S
)
# The same inside a sentence, where the URL ends at a space or a quote.
_USERINFO_IN_TEXT = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#\s'\"]*:)(?P<secret>[^\s'\"]*)(?P<tail>@)"
)
# `password=` in a query (up to the next `&key=`, so a stray '&' inside it stays hidden) and
# in libpq's key=value form (a value quoted with '...' and backslash escapes, or up to a space).
_QUERY = re.compile(
    r"(?P<head>[?&;]\s*(?:ssl)?password\s*=)(?P<secret>[^&#]*(?:&(?![\w.-]+=)[^&#]*)*)",
    re.I,
)
_KEY_VALUE = re.compile(
    r"(?P<head>(?<![\w.?&;-])(?:ssl)?password\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'?|\S*)",
    re.I | re.S,
)
_DELIMITERS = re.compile(r"[&/?#@:;=\s']")


def _masked(pattern: re.Pattern[str], text: str, found: list[str]) -> str:
    def mask(match: re.Match[str]) -> str:
        secret = match.group("secret")
        if secret and secret != MASK:
            found.append(secret)
        tail = match.group("tail") if "tail" in pattern.groupindex else ""
        return match.group("head") + MASK + tail

    return pattern.sub(mask, text)


def _apply(text: str, *, url_pattern: re.Pattern[str]) -> tuple[str, list[str]]:
    found: list[str] = []
    for pattern in (url_pattern, _QUERY, _KEY_VALUE):
        text = _masked(pattern, text, found)
    return text, found


def redact_url(url: str) -> str:
    """The connection string with every password in it replaced by ***."""
    return _apply(url, url_pattern=_USERINFO)[0]


def passwords(url: str) -> tuple[str, ...]:
    """The passwords a connection string holds, as written and as a library decodes them."""
    found = _apply(url, url_pattern=_USERINFO)[1]
    decoded = [unquote(secret) for secret in found]
    unquoted = [s[1:-1].replace("\\'", "'") for s in found if len(s) > 1 and s[0] == s[-1] == "'"]
    # A library may split a password at a delimiter it holds and quote one piece back.
    pieces = [piece for s in found for piece in _DELIMITERS.split(s) if len(piece) >= 3]
    every = {s for s in (*found, *decoded, *unquoted, *pieces) if s}
    return tuple(sorted(every, key=len, reverse=True))


def has_password(url: str) -> bool:
    """Whether a connection string holds a password in any of its shapes."""
    return bool(_apply(url, url_pattern=_USERINFO)[1])


def redact_text(text: str, *, source: str | None = None) -> str:
    """A sentence with the passwords of any connection string it quotes masked; with `source`
    (the connection string the sentence is about) also each of that string's passwords."""
    if source is not None:
        for secret in passwords(source):
            text = text.replace(secret, MASK)
    return _apply(text, url_pattern=_USERINFO_IN_TEXT)[0]


def url_problem(url: str) -> str | None:
    """What keeps a postgresql:// URL from being parsed (a port that is not a number, an open
    '['), said without quoting the URL; None when it parses."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsed on access: a bad port raises here)
    except ValueError:
        return _("the host part cannot be read (is a port not a number, or a '[' left open?)")
    if parts.scheme not in {"postgresql", "postgres"}:
        return _("it is not a PostgreSQL URL")
    return None
