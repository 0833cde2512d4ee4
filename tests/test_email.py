"""MIME messages built as bytes: parsed back with the stdlib, every header and part exact."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.render import email as email_module
from outreach.render.email import (
    Content,
    RenderedEmail,
    Sender,
    build_message,
    check_address,
    clean_display_name,
    message_id_for,
)

MADRID = timezone(timedelta(hours=1))
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=MADRID)
TEXT = "Hola, Ana:\n\nFeliz cumpleaños.\n"
HTML = "<!DOCTYPE html><html><body><p>Feliz cumpleaños</p></body></html>\n"


def build(**overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "from_name": "Casa Lucía",
        "from_addr": "hola@casalucia.example",
        "to_name": "Ana García",
        "to_addr": "ana@example.com",
        "subject": "¡Feliz cumpleaños, Ana!",
        "text": TEXT,
        "html": HTML,
        "date": NOW,
        "message_id": "0123abcd@casalucia.example",
        "reply_to": None,
        "list_unsubscribe": (),
    }
    assert set(overrides) <= set(arguments), "build() takes build_message's fields"
    arguments.update(overrides)
    return build_message(
        sender=Sender(
            arguments["from_addr"], name=arguments["from_name"], reply_to=arguments["reply_to"]
        ),
        to_name=arguments["to_name"],
        to_addr=arguments["to_addr"],
        content=Content(arguments["subject"], arguments["text"], arguments["html"]),
        date=arguments["date"],
        message_id=arguments["message_id"],
        list_unsubscribe=arguments["list_unsubscribe"],
    )


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_lines(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return head.split("\r\n")


def body_text(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def assert_well_formed(data: bytes) -> None:
    # Every line break is CRLF, no header line exceeds 78 characters, no encoded word 75.
    assert data.count(b"\n") == data.count(b"\r\n")
    assert b"\r\r" not in data
    for line in header_lines(data):
        # Longer only when nothing could be folded: one URL that is itself too long.
        assert len(line) <= 78 or len(line.split(": ", 1)[-1].split()) == 1, line
    for word in re.findall(rb"=\?utf-8\?b\?[A-Za-z0-9+/=]*\?=", data):
        assert len(word) <= 75
    for line in data.split(b"\r\n"):
        assert len(line) <= 998


# --- the whole message -------------------------------------------------------------------


def test_multipart_message_parses_back_exactly() -> None:
    data = build()
    assert_well_formed(data)
    message = parse(data)
    assert message["From"].addresses[0].display_name == "Casa Lucía"
    assert message["From"].addresses[0].addr_spec == "hola@casalucia.example"
    assert message["To"].addresses[0].display_name == "Ana García"
    assert message["Subject"] == "¡Feliz cumpleaños, Ana!"
    assert message["Message-ID"] == "<0123abcd@casalucia.example>"
    assert message["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert isinstance(text_part, EmailMessage) and isinstance(html_part, EmailMessage)
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert text_part.get_content_charset() == "utf-8"
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert body_text(text_part) == TEXT
    assert body_text(html_part) == HTML
    assert message.defects == []
    assert "Reply-To" not in message
    assert "List-Unsubscribe" not in message


def test_text_only_message_is_a_single_part() -> None:
    message = parse(build(html=None))
    assert message.get_content_type() == "text/plain"
    assert not message.is_multipart()
    assert body_text(message) == TEXT


def test_header_order_and_exact_bytes_of_simple_headers() -> None:
    lines = header_lines(build(reply_to="reservas@casalucia.example"))
    names = [line.split(":", 1)[0] for line in lines if not line.startswith(" ")]
    assert names == [
        "Date", "From", "To", "Reply-To", "Subject", "Message-ID", "MIME-Version",
        "Content-Type",
    ]  # fmt: skip
    assert lines[0] == "Date: Tue, 24 Nov 2026 09:30:00 +0100"
    assert "Reply-To: reservas@casalucia.example" in lines


def test_naive_date_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        build(date=datetime(2026, 11, 24, 9, 30))


def test_date_in_utc() -> None:
    message = parse(build(date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert message["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"


@pytest.mark.parametrize(
    "body",
    [
        "plain ascii\n",
        "línea con acentos y eñes\n",
        "emoji 🎂🎉 y más\n",
        "a line that is much longer than seventy-six characters, so quoted-printable "
        "must break it softly somewhere in the middle of all this text\n",
        "trailing spaces   \ntrailing tab\t\nend\n",
        "From the kitchen: a line that mbox would mangle\nFrom here too\n",
        "equals = signs =3D and =\n",
        ".\nsingle dot line above\n",
        "windows\r\nline\r\nendings\r\n",
        "old mac\rline endings\r",
        "no final newline",
        "--=_boundary-looking line\n--\n",
    ],
)
def test_bodies_decode_to_what_was_given(body: str) -> None:
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    if not expected.endswith("\n"):
        expected += "\n"
    message = parse(build(text=body, html=f"<p>{body}</p>"))
    text_part, html_part = message.iter_parts()
    assert isinstance(text_part, EmailMessage) and isinstance(html_part, EmailMessage)
    assert body_text(text_part) == expected
    html_expected = f"<p>{body}</p>".replace("\r\n", "\n").replace("\r", "\n")
    assert body_text(html_part) == html_expected + "\n"


def whole_body_qp(body: str) -> bytes:
    """The body encoded in one piece, as build_message did before it encoded line by line."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    encoded = binascii.b2a_qp(body.replace("\n", "\r\n").encode(), istext=True)
    if encoded.startswith(b"From "):
        encoded = b"=46" + encoded[1:]
    return encoded.replace(b"\r\nFrom ", b"\r\n=46rom ")


# Lines made of what quoted-printable treats specially: white space at a line's end, a lone
# dot, "=", controls, bytes past ASCII, "From " at a line's start, and lengths around 76.
_QP_PIECES = st.sampled_from(
    [" ", "\t", ".", "=", "\x01", "\x7f", "é", "🎂", "From ", "a", "x" * 37, "\n", "\r", "\r\n"]
)


@settings(max_examples=300)
@given(st.lists(_QP_PIECES, max_size=40).map("".join), st.integers(0, 3))
def test_bodies_encoded_line_by_line_are_the_bytes_of_one_whole_encoding(
    body: str, repeats: int
) -> None:
    # Encoded again (from the line cache, maybe among other bodies' lines): the same bytes.
    for _ in range(repeats + 1):
        assert email_module._quoted_printable(body) == whole_body_qp(body)


def test_the_line_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(email_module, "_QP_LINES", {})
    monkeypatch.setattr(email_module, "_QP_LINES_MAX", 50)
    for number in range(200):
        body = f"Hola, contacto {number}:\nuna línea igual para todos\n"
        assert email_module._quoted_printable(body) == whole_body_qp(body)
        assert len(email_module._QP_LINES) <= 50
    assert "una línea igual para todos" in email_module._QP_LINES


def test_lines_starting_with_from_are_protected_from_mbox_mangling() -> None:
    data = build(text="From me\nFrom you\n", html=None)
    body = data.split(b"\r\n\r\n", 1)[1]
    assert b"\r\nFrom " not in body and not body.startswith(b"From ")
    assert body_text(parse(data)) == "From me\nFrom you\n"


def test_the_boundary_cannot_occur_in_a_body() -> None:
    message_id = "0123abcd@casalucia.example"
    boundary = "=_" + hashlib.sha256(message_id.encode()).hexdigest()[:32]
    hostile = f"--{boundary}\nContent-Type: text/plain\n\nsurprise\n--{boundary}--\n"
    data = build(text=hostile, html=hostile, message_id=message_id)
    assert data.count(f"--{boundary}".encode()) == 3  # two delimiters and the close
    message = parse(data)
    parts = list(message.iter_parts())
    assert len(parts) == 2
    assert all(isinstance(p, EmailMessage) and body_text(p) == hostile for p in parts)


def test_same_input_same_bytes() -> None:
    assert build() == build()
    assert build(message_id="a@b.example") != build(message_id="c@b.example")


# --- names and addresses ----------------------------------------------------------------


_ENCODED_WORD = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=")


def rfc2047_display_name(data: bytes, field: str) -> str | None:
    """The display name as an RFC 2047 reader sees it; None for a quoted-string.

    The stdlib keeps the white space between adjacent encoded words of a phrase, which
    RFC 2047 section 6.2 says to drop; this reader drops it.
    """
    lines = header_lines(data)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{field}: "))
    value = lines[start][len(field) + 2 :]
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        value += line  # unfold: drop the CRLF, keep the space
    phrase = value.rsplit(" <", 1)[0]
    if '"' in phrase:
        return None  # quoted strings are left to the stdlib
    out = b""
    position = 0
    previous_encoded = False
    for match in _ENCODED_WORD.finditer(phrase):
        between = phrase[position : match.start()]
        if not (previous_encoded and between.strip() == ""):
            out += between.encode("ascii")
        out += base64.b64decode(match.group(1))
        position = match.end()
        previous_encoded = True
    out += phrase[position:].encode("ascii")
    return out.decode("utf-8")


SHORT_NAMES = [
    "Ana",
    "Ana García",
    "José María Núñez-Ortega",
    'Ana "la Jefa" Pérez',
    "García, Ana",
    "O'Brien; Dr. (PhD) <x>",
    "back\\slash",
    "Zoë 🎂 Smith",
    "山田 太郎",
    "=?utf-8?b?QUJD?=",
    "María del Carmen Fernández de Córdoba y Figueroa de la Cerda",
    "Very Long Name, With Commas, " * 4,
    "Bartholomew " * 12,
]
LONG_NAMES = [
    "A" * 120,
    "Añ" * 60,
    "Ñúñez Ibáñez Muñoz Gutiérrez Sánchez Pérez Martínez López",
    "山田太郎" * 10,
    "ñ" * 40,
]


@pytest.mark.parametrize("name", SHORT_NAMES + LONG_NAMES)
def test_display_names_round_trip(name: str) -> None:
    name = name.strip()
    data = build(to_name=name, from_name=name)
    assert_well_formed(data)
    message = parse(data)
    for field, addr in (("To", "ana@example.com"), ("From", "hola@casalucia.example")):
        addresses = message[field].addresses
        assert len(addresses) == 1
        assert addresses[0].addr_spec == addr
        if name in SHORT_NAMES or name.strip() in SHORT_NAMES:
            assert addresses[0].display_name == name
        else:
            # Split encoded words: exact for RFC 2047 readers; the stdlib adds spaces.
            assert addresses[0].display_name.replace(" ", "") == name.replace(" ", "")
        assert rfc2047_display_name(data, field) in (name, None)
    if any(ord(char) > 127 for char in name) or len(name) > 60:
        assert rfc2047_display_name(data, "To") == name


def test_no_display_name_gives_a_bare_address() -> None:
    data = build(to_name=None)
    assert "To: ana@example.com" in header_lines(data)
    data = build(to_name="  \r\n ")
    assert "To: ana@example.com" in header_lines(data)


@pytest.mark.parametrize(
    "name",
    [
        "Ana\r\nBcc: evil@attacker.example",
        "Ana\nBcc: evil@attacker.example",
        "Ana\rBcc: evil@attacker.example",
        "Ana\r\n\r\nbody injection",
        "Ana <evil@attacker.example>, Bob",
        'Ana" <evil@attacker.example>, "x',
        "Ana\x00\x0b\x0c\x85\u2028Bcc: evil@attacker.example",
    ],
)
def test_a_display_name_cannot_add_a_header_or_a_recipient(name: str) -> None:
    data = build(to_name=name)
    assert_well_formed(data)
    message = parse(data)
    assert "Bcc" not in message
    assert "Cc" not in message
    assert len(message["To"].addresses) == 1
    assert message["To"].addresses[0].addr_spec == "ana@example.com"
    assert message["To"].addresses[0].display_name == clean_display_name(name)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


def test_clean_display_name() -> None:
    assert clean_display_name("  Ana \r\n  García\t") == "Ana García"
    assert clean_display_name(None) == ""
    assert clean_display_name("") == ""


@pytest.mark.parametrize(
    "addr",
    [
        "ana@example.com\r\nBcc: evil@attacker.example",
        "ana@example.com\n",
        "ana@example.com, evil@attacker.example",
        "<ana@example.com>",
        "Ana <ana@example.com>",
        "ana@example.com>",
        "ana example@example.com",
        "ana",
        "@example.com",
        "ana@",
        "ana@@example.com",
        '"ana"@example.com',
        "ana..x@example.com",
        "ana@-example.com",
        "ana@[127.0.0.1]",
        "añá@example.com",
        "ana@ñ..es",
        "a" * 65 + "@example.com",
    ],
)
def test_bad_addresses_are_refused(addr: str) -> None:
    with pytest.raises(ValueError):
        build(to_addr=addr)
    with pytest.raises(ValueError):
        check_address(addr)


def test_bad_reply_to_is_refused() -> None:
    with pytest.raises(ValueError):
        build(reply_to="x@example.com\r\nBcc: y@example.com")


def test_international_domain_is_encoded_with_idna() -> None:
    assert check_address("ana@ejémplo.es") == "ana@xn--ejmplo-cva.es"
    message = parse(build(to_addr="ana@ejémplo.es"))
    assert message["To"].addresses[0].addr_spec == "ana@xn--ejmplo-cva.es"


def test_plain_addresses_pass_unchanged() -> None:
    for addr in ("ana@example.com", "ana.maria+promo@mail.example.co.uk", "o'brien@x.ie"):
        assert check_address(addr) == addr


# --- subjects -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Hello",
        "¡Feliz cumpleaños, Ana!",
        "Your table 🍷 awaits",
        "Recordatorio: su reserva del 25 de noviembre de 2026",
        "A long ASCII subject that certainly needs folding because it goes on and on "
        "well past the seventy-eight character line limit of RFC 5322, twice over, really",
        "Un asunto largo con acentos, eñes y más cosas que obligan a partirlo en varias "
        "palabras codificadas según la RFC 2047, sin pasarse de setenta y cinco caracteres",
        "x" * 200,
        "=?utf-8?b?QUJD?= looks encoded",
        "🎂" * 50,
        'Quotes "and" commas, (parens) <angles> and: colons',
    ],
)
def test_subjects_round_trip(subject: str) -> None:
    data = build(subject=subject)
    assert_well_formed(data)
    assert parse(data)["Subject"] == subject


def test_long_subject_is_folded_over_several_lines() -> None:
    subject = "Un asunto largo con acentos " * 8
    data = build(subject=subject.strip())
    lines = header_lines(data)
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject: "))
    assert lines[start + 1].startswith(" ")
    assert parse(data)["Subject"] == subject.strip()


def test_short_ascii_subject_is_not_encoded() -> None:
    assert "Subject: Hello there" in header_lines(build(subject="Hello there"))


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: evil@attacker.example", "Hi\nthere", "a\x00b"])
def test_subject_with_a_line_break_is_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        build(subject=subject)


_printable = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))


@settings(max_examples=80, deadline=None)
@given(subject=st.text(alphabet=_printable, min_size=1, max_size=300))
def test_any_printable_subject_round_trips(subject: str) -> None:
    data = build(subject=subject, html=None)
    assert_well_formed(data)
    assert parse(data)["Subject"] == subject


@settings(max_examples=80, deadline=None)
@given(name=st.text(max_size=150))
def test_any_display_name_round_trips_or_is_cleaned(name: str) -> None:
    data = build(to_name=name, html=None)
    assert_well_formed(data)
    message = parse(data)
    assert "Bcc" not in message
    addresses = message["To"].addresses
    assert len(addresses) == 1
    assert addresses[0].addr_spec == "ana@example.com"
    cleaned = clean_display_name(name)
    assert addresses[0].display_name.replace(" ", "") == cleaned.replace(" ", "")
    if cleaned:
        assert rfc2047_display_name(data, "To") in (cleaned, None)


# --- List-Unsubscribe ---------------------------------------------------------------------


def test_list_unsubscribe_with_https_url_and_mailto() -> None:
    url = "https://casalucia.example/baja?id=c001&token=0123456789abcdef"
    data = build(list_unsubscribe=(url, "mailto:baja@casalucia.example"))
    assert_well_formed(data)
    message = parse(data)
    value = " ".join(str(message["List-Unsubscribe"]).split())
    assert value == f"<{url}>, <mailto:baja@casalucia.example>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_short_list_unsubscribe_targets_share_a_line() -> None:
    data = build(list_unsubscribe=("https://x.example/u", "mailto:u@x.example"))
    assert "List-Unsubscribe: <https://x.example/u>, <mailto:u@x.example>" in header_lines(data)


def test_list_unsubscribe_mailto_only_has_no_one_click_post() -> None:
    message = parse(build(list_unsubscribe=("mailto:baja@casalucia.example",)))
    assert message["List-Unsubscribe"] == "<mailto:baja@casalucia.example>"
    assert "List-Unsubscribe-Post" not in message


def test_list_unsubscribe_plain_http_has_no_one_click_post() -> None:
    message = parse(build(list_unsubscribe=("http://casalucia.example/baja",)))
    assert message["List-Unsubscribe"] == "<http://casalucia.example/baja>"
    assert "List-Unsubscribe-Post" not in message


@pytest.mark.parametrize(
    "target",
    [
        "https://x.example/a b",
        "https://x.example/a>\r\nBcc: evil@attacker.example",
        "https://x.example/<a>",
        "ftp://x.example/",
        "https://x.example/ñ",
    ],
)
def test_bad_list_unsubscribe_targets_are_refused(target: str) -> None:
    with pytest.raises(ValueError):
        build(list_unsubscribe=(target,))


# --- Message-ID and the record ------------------------------------------------------------


def test_message_id_is_deterministic_and_distinct() -> None:
    def make(**kw: str) -> str:
        args = {
            "contact_id": "c001",
            "campaign": "birthday",
            "occurrence_key": "birthday:2026",
            "domain": "casalucia.example",
        }
        return message_id_for(**(args | kw))

    first = make()
    assert first == make()
    assert re.fullmatch(r"[0-9a-f]{32}@casalucia\.example", first)
    others = {
        make(contact_id="c002"),
        make(campaign="promotion"),
        make(occurrence_key="birthday:2027"),
    }
    assert first not in others and len(others) == 3
    assert make(domain="ejémplo.es").endswith("@xn--ejmplo-cva.es")


def test_bad_message_id_is_refused() -> None:
    with pytest.raises(ValueError):
        build(message_id="abc>\r\nBcc: x@y.example")
    with pytest.raises(ValueError):
        build(message_id="no-at-sign")


def test_rendered_email_is_frozen() -> None:
    record = RenderedEmail(
        contact_id="c001",
        campaign="birthday",
        occurrence_key="birthday:2026",
        message_id="a@b.example",
        from_addr="hola@casalucia.example",
        to_addrs=("ana@example.com",),
        subject="Hola",
        data=b"",
    )
    with pytest.raises(AttributeError):
        record.subject = "x"  # type: ignore[misc]
