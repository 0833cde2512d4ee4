"""Text from untrusted mail, made safe to show and store."""

from __future__ import annotations

import re

_MAX_TEXT = 300  # a diagnostic longer than this is cut
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")


def clean_text(value: object, limit: int = _MAX_TEXT) -> str:
    """Header or body text made safe to show and store: valid UTF-8, one line, bounded."""
    text = str(value)
    # The parser keeps undecodable bytes as surrogates: show them as U+FFFD.
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
