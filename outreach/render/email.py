"""RFC 5322 / MIME email messages, built directly as bytes (the stdlib builder is too slow)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from functools import lru_cache

from outreach.i18n import _

# RFC 5322 recommends lines of at most 78 characters; RFC 2047 caps an encoded word at 75.
_MAX_LINE = 78
_MAX_ENCODED_WORD = 75
_ENCODED_WORD_OVERHEAD = len("=?utf-8?b??=")

# A deliberately narrow address syntax: dot-atom local part and an ASCII (IDNA) domain. Nothing
# that could end a header, start another address or open a comment or a quoted string passes.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_MESSAGE_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
# Characters that would end or corrupt a header line, or hide text from readers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# RFC 5322 "specials": a display name holding one of these must be a quoted-string.
_SPECIALS = frozenset('()<>[]:;@\\,."')
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"]")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One complete email for one contact and occurrence, ready for the outbox or SMTP."""

    contact_id: str
    campaign: str
    occurrence_key: str
    message_id: str  # without angle brackets
    from_addr: str
    to_addrs: tuple[str, ...]
    subject: str  # decoded, as the recipient will read it
    data: bytes  # the whole RFC 5322 message, CRLF line endings


def message_id_for(*, contact_id: str, campaign: str, occurrence_key: str, domain: str) -> str:
    """A deterministic Message-ID (no angle brackets) for one occurrence of one campaign."""
    digest = hashlib.sha256(f"{campaign}\x00{contact_id}\x00{occurrence_key}".encode()).hexdigest()
    return f"{digest[:32]}@{_ascii_domain(domain)}"


def check_address(addr: str) -> str:
    """The address with its domain in ASCII (IDNA); ValueError unless it is one plain address."""
    local, at, domain = addr.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        raise ValueError(_("{address} is not a plain email address").format(address=repr(addr)))
    ascii_domain = _ascii_domain(domain)
    if len(local) > 64 or len(ascii_domain) > 253:
        raise ValueError(_("{address} is too long for an email address").format(address=repr(addr)))
    return f"{local}@{ascii_domain}"


def _ascii_domain(domain: str) -> str:
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(
                _("{domain} is not a valid domain name").format(domain=repr(domain))
            ) from None
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(_("{domain} is not a valid domain name").format(domain=repr(domain)))
    return domain


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a message is from: the From address and display name, and a Reply-To if any."""

    addr: str
    name: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Content:
    """What a message says: its subject and text, and the text's HTML version if any."""

    subject: str
    text: str
    html: str | None = None


def build_message(
    *,
    sender: Sender,
    to_name: str | None,
    to_addr: str,
    content: Content,
    date: datetime,
    message_id: str,
    list_unsubscribe: tuple[str, ...],
) -> bytes:
    """The complete message as bytes: text/plain, or multipart/alternative with an HTML part."""
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(_("{id} is not a valid Message-ID").format(id=repr(message_id)))
    parts = [
        _date_header(date),
        _address_header("From", sender.name, sender.addr),
        _address_header("To", to_name, to_addr),
    ]
    if sender.reply_to:
        parts.append(f"Reply-To: {check_address(sender.reply_to)}\r\n")
    parts.append(_subject_header(content.subject))
    parts.append(f"Message-ID: <{message_id}>\r\n")
    if list_unsubscribe:
        parts.append(_list_unsubscribe_headers(list_unsubscribe))
    parts.append("MIME-Version: 1.0\r\n")
    text_body = _quoted_printable(content.text)
    if content.html is None:
        parts.append(_TEXT_PART_HEADERS)
        return "".join(parts).encode("ascii") + text_body
    html_body = _quoted_printable(content.html)
    # "=_" never occurs in quoted-printable output ("=" is always "=3D" or a soft break), so no
    # body can contain the boundary; deriving it from the Message-ID keeps messages reproducible.
    boundary = "=_" + hashlib.sha256(message_id.encode()).hexdigest()[:32]
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    parts.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n')
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1), so each body keeps
    # its own final line break.
    return b"".join(
        (
            "".join(parts).encode("ascii"),
            delimiter[2:],
            _TEXT_PART_HEADERS.encode("ascii"),
            text_body,
            delimiter,
            _HTML_PART_HEADERS,
            html_body,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )


_TEXT_PART_HEADERS = (
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_HTML_PART_HEADERS = (
    b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
)


# Encoded lines by their text. Quoted-printable encodes each line on its own (soft breaks and
# the escaping of trailing white space only look within the line), and most lines of a
# campaign's messages are the same for every contact: encoding each once saves most of the
# encoder's time. Bounded: emptied when full, so lines that differ per contact cannot grow it.
_QP_LINES: dict[str, bytes] = {}
_QP_LINES_MAX = 4096


def _quoted_printable(body: str) -> bytes:
    """The body with CRLF line endings, ending in one, as quoted-printable."""
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    lines = body.split("\n")
    lines.pop()  # the empty string after the final line break
    cache = _QP_LINES
    if len(cache) + len(lines) > _QP_LINES_MAX:
        cache.clear()
    encoded_lines = []
    for line in lines:
        done = cache.get(line)
        if done is None:
            # b2a_qp keeps CRLF for every line (soft breaks too) when the line ends in CRLF.
            done = cache[line] = binascii.b2a_qp(f"{line}\r\n".encode(), istext=True)
        encoded_lines.append(done)
    encoded = b"".join(encoded_lines)
    # Some mail stores still mangle a line starting "From " (mbox); encoding the F avoids it.
    if encoded.startswith(b"From ") or b"\r\nFrom " in encoded:
        if encoded.startswith(b"From "):
            encoded = b"=46" + encoded[1:]
        encoded = encoded.replace(b"\r\nFrom ", b"\r\n=46rom ")
    return encoded


@lru_cache(maxsize=16)
def _date_header(date: datetime) -> str:
    if date.tzinfo is None:
        problem = "the Date header needs a time zone-aware datetime"  # not translated: a bug
        raise ValueError(problem)
    return f"Date: {format_datetime(date)}\r\n"


def clean_display_name(name: str | None) -> str:
    """A display name on one line: control characters become spaces, runs of spaces one."""
    if not name:
        return ""
    return " ".join(_CONTROL.sub(" ", name).split())


@lru_cache(maxsize=64)
def _cached_address_header(field: str, name: str | None, addr: str) -> str:
    return _format_address_header(field, name, addr)


def _address_header(field: str, name: str | None, addr: str) -> str:
    # The From header is the same for every message of a run: caching it saves the encoding.
    if field == "From":
        return _cached_address_header(field, name, addr)
    return _format_address_header(field, name, addr)


def _format_address_header(field: str, name: str | None, addr: str) -> str:
    angle = f"<{check_address(addr)}>"
    name = clean_display_name(name)
    lead = f"{field}: "
    if not name:
        return f"{lead}{angle[1:-1]}\r\n"
    if name.isascii() and "=?" not in name:
        phrase = _quoted(name) if any(char in _SPECIALS for char in name) else name
        if len(lead) + len(phrase) + 1 + len(angle) <= _MAX_LINE:
            return f"{lead}{phrase} {angle}\r\n"
    return _fold_tokens(lead, [*_phrase_tokens(name), angle])


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Longer atoms are encoded so that every token fits on a folded line.
_MAX_ATOM = 70
# 45 bytes make 60 base64 characters: a 72-character encoded word that fits after "From: ".
_PHRASE_CHUNK = 45


def _is_atom(word: str) -> bool:
    # An ASCII word that looks like an encoded word would be decoded by the reader: encode it.
    return (
        word.isascii()
        and len(word) <= _MAX_ATOM
        and "=?" not in word
        and not any(char in _SPECIALS for char in word)
    )


def _phrase_tokens(name: str) -> list[str]:
    """A display name as plain atoms and encoded words, each short enough to fold between."""
    tokens: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if _is_atom(word):
            if run:
                tokens.extend(_encoded_run(" ".join(run)))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens.extend(_encoded_run(" ".join(run)))
    return tokens


def _encoded_run(text: str) -> list[str]:
    """Encoded words for text that has no plain atom to fold at.

    RFC 2047 readers drop the white space between adjacent encoded words, so where the text
    must be cut, the cut falls just after a space (kept inside the first word) when there is one.
    """
    data = text.encode("utf-8")
    words: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + _PHRASE_CHUNK, len(data))
        if end < len(data):
            space = data.rfind(b" ", start, end)
            if space > start:
                end = space + 1
            else:
                # Never split a UTF-8 sequence: back off over continuation bytes (10xxxxxx).
                while data[end] & 0xC0 == 0x80:
                    end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return words


def _fold_tokens(lead: str, tokens: list[str]) -> str:
    """The lead and the tokens separated by spaces, folded before a token that would not fit."""
    lines: list[str] = []
    current = lead + tokens[0]
    for token in tokens[1:]:
        if len(current) + 1 + len(token) <= _MAX_LINE:
            current += " " + token
        else:
            lines.append(current)
            current = " " + token
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"


def _subject_header(subject: str) -> str:
    lead = "Subject: "
    if _CONTROL.search(subject):
        raise ValueError(_("the subject contains a line break or a control character"))
    # Unfolding keeps single spaces between words only: other white space goes encoded.
    plain = "  " not in subject and not subject.startswith(" ") and not subject.endswith(" ")
    if plain and subject.isascii() and "=?" not in subject:
        if len(lead) + len(subject) <= _MAX_LINE:
            return f"{lead}{subject}\r\n"
        folded = _fold_words(subject, first_room=_MAX_LINE - len(lead))
        if folded is not None:
            return f"{lead}{folded}\r\n"
    return lead + "\r\n ".join(_encoded_words(subject, first_room=_MAX_LINE - len(lead))) + "\r\n"


def _fold_words(text: str, *, first_room: int) -> str | None:
    """ASCII text folded at single spaces into lines that fit; None if a word is too long."""
    lines: list[str] = []
    current = ""
    room = first_room
    for word in text.split(" "):
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= room:
            current += " " + word
        else:
            lines.append(current)
            room = _MAX_LINE - 1
            current = word
        if len(current) > room:
            return None
    lines.append(current)
    return "\r\n ".join(lines)


def _encoded_words(text: str, *, first_room: int) -> list[str]:
    """RFC 2047 base64 encoded words, each within its line and 75 characters, whole characters."""
    data = text.encode("utf-8")
    words: list[str] = []
    room = min(first_room, _MAX_ENCODED_WORD)
    start = 0
    while start < len(data):
        # Base64 turns 3 bytes into 4 characters.
        size = (room - _ENCODED_WORD_OVERHEAD) // 4 * 3
        end = min(start + size, len(data))
        # Never split a UTF-8 sequence: back off over continuation bytes (10xxxxxx).
        while end < len(data) and end > start and data[end] & 0xC0 == 0x80:
            end -= 1
        chunk = base64.b64encode(data[start:end]).decode("ascii")
        words.append(f"=?utf-8?b?{chunk}?=")
        start = end
        room = min(_MAX_LINE - 1, _MAX_ENCODED_WORD)
    return words


def check_unsubscribe_targets(targets: tuple[str, ...]) -> None:
    """ValueError unless each target is an ASCII http(s) or mailto: URL fit for a header."""
    for target in targets:
        if _URL_FORBIDDEN.search(target) or _CONTROL.search(target) or not target.isascii():
            raise ValueError(
                _("{target} cannot go in List-Unsubscribe (quote it as a URL)").format(
                    target=repr(target)
                )
            )
        if not target.lower().startswith(("https://", "http://", "mailto:")):
            raise ValueError(
                _("{target} is neither an http(s) URL nor a mailto: address").format(
                    target=repr(target)
                )
            )


def _list_unsubscribe_headers(targets: tuple[str, ...]) -> str:
    check_unsubscribe_targets(targets)
    items = [f"<{target}>" for target in targets]
    lines = ["List-Unsubscribe: " + items[0]]
    for item in items[1:]:
        if len(lines[-1]) + 2 + len(item) <= _MAX_LINE:
            lines[-1] += ", " + item
        else:
            lines[-1] += ","
            lines.append(" " + item)
    header = "\r\n".join(lines) + "\r\n"
    # RFC 8058: one-click unsubscription is only defined for an HTTPS URI.
    if any(target.lower().startswith("https://") for target in targets):
        header += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    return header
