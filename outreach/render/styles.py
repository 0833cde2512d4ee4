"""CSS inlining with the selectors matched once per shape of a template's output.

Every contact's HTML comes out of the same template: the markup and the stylesheet are the
template's own text, and only the values it prints ({{ … }}, autoescaped into `Markup`) differ.
`StyleInliner` takes the rendered parts as Jinja yields them, puts a numbered placeholder where
each printed value was, inlines that once with css-inline, and for each later message of the
same shape (the same template text around the values) puts the message's values back into the
cached result, written as css-inline writes text and attribute values.

That is right only where a value cannot change how the HTML parses or which selectors match, so
a shape is cached only when a strict reading of it shows every placeholder either in text (not
in <style>, <script>, a comment, …) or inside the quoted value of href, src, alt or title (and
the stylesheet has no attribute selector), with no character reference left open around it.
A value is put in a placeholder only when it holds no markup (`<`, quotes, CR, NUL), does not
start or end with white space or `&` (white space decides where text goes in <head> and
<table>), and its character references are complete; otherwise it stays part of the shape.
Each shape is checked once more when it is first seen: the cached result with this message's
values must equal css-inline's own output for the message, or the shape is never cached.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from html.entities import html5
from typing import Protocol

from markupsafe import Markup

# Private-use characters mark a placeholder; a document holding them is inlined directly.
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile("\ue000([0-9]+)\ue001")
# What no value in a placeholder may hold, nor start or end with (HTML's white space, `&`).
_UNSAFE = re.compile("[<\"'\r\x00\ue000\ue001]|\\A[ \t\n\f&]|[ \t\n\f&]\\Z")
_REFERENCE = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9A-Fa-f]{1,6})|([A-Za-z][A-Za-z0-9]*));")
_ESCAPED_IN_TEXT = re.compile("[&<>\xa0]")
_ESCAPED_IN_VALUE = re.compile('[&"\xa0]')

# Elements whose content is not plain text (raw text, script, foreign content) or that change
# what is inlined (<link> stylesheets, <base>): a placeholder near them is not trusted.
_OPAQUE = (
    "style|script|xmp|iframe|noembed|noframes|noscript|plaintext|template|svg|math|frameset"
    "|link|base"
)
_ATTRIBUTE = r"""\s+[^\s/>"'=<`]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
# The units the HTML tokenizer reads as markup; the text between them is text.
_UNITS = re.compile(
    r"(<!--(?!-?>)(?:(?!--!?>)[\s\S])*--!?>"  # a comment, ended as HTML ends one
    r"|<!doctype[^<>]*>"
    r"|<style(?:" + _ATTRIBUTE + r")*\s*>[^<]*</style\s*>"  # its CSS: one unit
    r"|<(?!(?:" + _OPAQUE + r")(?![^\s/>]))[a-z][^\s/>]*(?:" + _ATTRIBUTE + r")*\s*/?>"
    r"|</(?!(?:" + _OPAQUE + r")(?![^\s/>]))[a-z][^\s/>]*\s*>)",
    re.IGNORECASE,
)
_START_TAG = re.compile(r"<[a-z][^\s/>]*", re.IGNORECASE)
_ANY_ATTRIBUTE = re.compile(_ATTRIBUTE)
_VARIED_VALUE = re.compile(r"""\s+(?:href|src|alt|title)\s*=\s*(?:"[^"]*"|'[^']*')""", re.I)

# A template whose shapes keep changing (a printed value in a class, say) is not worth the
# work: after this many messages with fewer hits than misses, every message is inlined directly.
_TRIAL = 32
_SHAPES = 64


class Inliner(Protocol):
    """What css-inline's CSSInliner offers and this module uses."""

    def inline(self, html: str, /) -> str: ...


class _Shape:
    """A cached shape: the inlined output split at its placeholders, and which are values."""

    __slots__ = ("in_value", "pieces")

    def __init__(self, pieces: list[str], in_value: dict[int, bool]) -> None:
        self.pieces = pieces  # odd items: placeholder numbers
        self.in_value = in_value  # placeholder number → inside an attribute value


def _decode(value: str) -> str | None:
    """The value's character references decoded as HTML does; None if one is not plain."""
    if "&" not in value:
        return value
    references = _REFERENCE.findall(value)
    if value.count("&") != len(references):
        return None  # a bare `&` or a reference without `;`: HTML's rules there are subtle
    for decimal, hexadecimal, name in references:
        if name:
            if name + ";" not in html5:
                return None
            continue
        code = int(decimal) if decimal else int(hexadecimal, 16)
        # Controls, surrogates and noncharacters are decoded differently by Python and HTML.
        if (
            code < 0x20
            or 0x7F <= code <= 0x9F
            or 0xD800 <= code <= 0xDFFF
            or 0xFDD0 <= code <= 0xFDEF
            or code & 0xFFFE == 0xFFFE
            or code > 0x10FFFF
        ):
            return None
    return html.unescape(value)


def _written(value: str, *, in_value: bool) -> str:
    """The decoded value as css-inline writes it back: in text, or in an attribute value."""
    if in_value:
        if not _ESCAPED_IN_VALUE.search(value):
            return value
        return value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace('"', "&quot;")
    if not _ESCAPED_IN_TEXT.search(value):
        return value
    value = value.replace("&", "&amp;").replace("\xa0", "&nbsp;")
    return value.replace("<", "&lt;").replace(">", "&gt;")


def _closed(literal: str) -> bool:
    """Whether text ending in `literal` leaves no character reference open at its end."""
    amp = literal.rfind("&")
    return amp < 0 or ";" in literal[amp:]


def placeholders(document: str) -> dict[int, bool] | None:
    """Where each placeholder of a shape is: number → inside an attribute value (else text);
    None if one is anywhere else, or next to an open character reference."""
    parts = _UNITS.split(document)
    found: dict[int, bool] = {}
    units = parts[1::2]
    attribute_selectors = any("[" in unit for unit in units if unit[:6].lower() == "<style")
    for index, part in enumerate(parts):
        if _OPEN not in part:
            continue
        if index % 2 == 0:  # text
            if "<" in part:
                return None  # markup the strict reading does not know
            if not _texts_closed(part, found, in_value=False):
                return None
            continue
        tag = _START_TAG.match(part)
        if attribute_selectors or tag is None or _OPEN in tag.group():
            return None  # a placeholder in a comment, an end tag, a tag's name or <style>
        end = tag.end()
        for attribute in _ANY_ATTRIBUTE.finditer(part, end):
            if attribute.start() != end:
                break
            end = attribute.end()
            text = attribute.group()
            if _OPEN not in text:
                continue
            if not _VARIED_VALUE.fullmatch(text):
                return None
            value = text[text.index("=") + 1 :].strip()[1:-1]
            if not _texts_closed(value, found, in_value=True):
                return None
        if _OPEN in part[end:]:
            return None
    return found


def _texts_closed(text: str, found: dict[int, bool], *, in_value: bool) -> bool:
    start = 0
    for match in _PLACEHOLDER.finditer(text):
        if not _closed(text[start : match.start()]):
            return False
        found[int(match.group(1))] = in_value
        start = match.end()
    return True


class StyleInliner:
    """Inlines a rendered document's CSS, matching selectors once per shape (see above)."""

    def __init__(self, inliner: Inliner) -> None:
        self._inliner = inliner
        # shape → its cached form, or None for a shape that is inlined directly
        self._shapes: dict[tuple[str, ...], _Shape | None] = {}
        self.hits = 0
        self.misses = 0

    def inline(self, parts: Sequence[str], document: str) -> str:
        """What `inliner.inline(document)` returns, byte for byte; `document` is the parts
        joined, as the template yielded them."""
        if self.misses > _TRIAL and self.hits < self.misses:
            return self._inliner.inline(document)
        if _OPEN in document or _CLOSE in document:
            return self._inliner.inline(document)
        values: list[str] = []
        shape = []
        for part in parts:
            if type(part) is Markup:
                text = str(part)  # a plain str: Markup's methods escape their arguments
                if text and not _UNSAFE.search(text):
                    decoded = _decode(text)
                    if decoded is not None:
                        shape.append(_OPEN)
                        values.append(decoded)
                        continue
            shape.append(part)
        key = tuple(shape)
        if key not in self._shapes:
            self.misses += 1
            return self._learn(key, values, document)
        cached = self._shapes[key]
        if cached is None:
            self.misses += 1
            return self._inliner.inline(document)
        self.hits += 1
        return self._fill(cached, values)

    def _fill(self, shape: _Shape, values: list[str]) -> str:
        out = shape.pieces.copy()
        in_value = shape.in_value
        for index in range(1, len(out), 2):
            number = int(out[index])
            out[index] = _written(values[number], in_value=in_value[number])
        return "".join(out)

    def _learn(self, key: tuple[str, ...], values: list[str], document: str) -> str:
        """Inline a new shape; cache it if it passes the checks (see the module's doc)."""
        expected = self._inliner.inline(document)
        numbered = []
        count = 0
        for part in key:
            if part is _OPEN:
                numbered.append(f"{_OPEN}{count}{_CLOSE}")
                count += 1
            else:
                numbered.append(part)
        skeleton = "".join(numbered)
        where = placeholders(skeleton)
        shape: _Shape | None = None
        if where is not None and len(where) == count:
            shape = _Shape(_PLACEHOLDER.split(self._inliner.inline(skeleton)), where)
            if self._fill(shape, values) != expected:
                shape = None
        if len(self._shapes) >= _SHAPES:
            del self._shapes[next(iter(self._shapes))]
        self._shapes[key] = shape
        return expected
