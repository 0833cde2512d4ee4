"""One message of a mailbox → what it is: a bounce (hard or soft), a complaint, an
auto-reply, a person's reply (read further by `outreach.feedback.replies`), or unrecognised.

The standards first: RFC 3464 delivery status reports (Action/Status per recipient: 5.x.x is
permanent, 4.x.x transient), RFC 5965 feedback reports (complaints), RFC 3834 auto-replies
(`Auto-Submitted`, vacation notices), which never count as bounces. For the many servers
that send no standard report (qmail, older Exim, Yahoo...), Mailman's detectors
(`flufl.bounce`) find the addresses. Everything here takes untrusted bytes and never raises.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from zoneinfo import ZoneInfo

from outreach.feedback.replies import Reply, read_reply
from outreach.feedback.text import clean_text as clean_text  # others import it from here
from outreach.i18n import _

KINDS = ("hard", "soft", "complaint", "auto-reply", "reply", "unrecognised")

# Where the bounce was delivered: the VERP address shows up in one of these.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_MAX_SCAN = 256 * 1024  # of a body's text, only this much is searched for Message-IDs
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY = re.compile(r"(?<![\d.:])([45]\d\d)[ :-]")
_MESSAGE_ID_LINE = re.compile(rb"^\s*Message-ID:\s*<([^<>\s]{1,250})>", re.IGNORECASE | re.M)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon|mdaemon)\b", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status|failure|has failed|notification)|failure notice|"  # not translated: a pattern
    r"returned mail|mail delivery|could not be delivered|non[- ]?remis|unzustellbar|"
    r"no se ha podido entregar|nondeliverable",
    re.I,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|autoreply|out of (the )?office|"  # not translated: a pattern
    r"respuesta autom[aá]tica|fuera de la oficina|r[ée]ponse automatique|absence|"
    r"abwesenheit|vacation|on vacation|automatisch)",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One address a report says failed (or was delayed), with the server's words."""

    address: str  # lower-cased
    kind: str  # hard | soft
    status: str | None = None  # enhanced status code (5.1.1) or SMTP reply code (550)
    diagnostic: str | None = None


@dataclass(frozen=True, slots=True)
class Classified:
    """What one message is, and what it says."""

    kind: str  # one of KINDS
    recipients: tuple[Recipient, ...] = ()
    message_ids: tuple[str, ...] = ()  # of the original message(s) it quotes
    envelope: tuple[str, ...] = ()  # header values where the VERP token may be
    fingerprint: str = ""
    day: date | None = None  # from its Date header
    problem: str | None = None  # malformed, cut at the size limit...
    reply: Reply | None = None  # what a person wrote (kind `reply`)
    notice: bool = False  # a mail server says something failed, naming no readable address

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses it names, without repeats."""
        return tuple(dict.fromkeys(r.address for r in self.recipients))

    @property
    def status(self) -> str | None:
        """The first status code it gives."""
        return next((r.status for r in self.recipients if r.status), None)

    @property
    def diagnostic(self) -> str | None:
        """The first diagnostic it gives."""
        return next((r.diagnostic for r in self.recipients if r.diagnostic), None)


def _address(value: str) -> str | None:
    """`rfc822; a@b` or `<a@b>` → `a@b` (lower-cased), or None."""
    text = clean_text(value, 400)
    kind, sep, rest = text.partition(";")
    if sep and "@" not in kind:
        text = rest
    text = text.strip().strip("<>").strip()
    if "@" not in text or " " in text or len(text) > 254:
        return None
    return text.lower()


def _status(value: str | None, *, diagnostic: str | None) -> tuple[str | None, str | None]:
    """(status code, kind) from a Status field, else from the diagnostic's codes."""
    for text in (value, diagnostic):
        if not text:
            continue
        match = _ENHANCED.search(text)
        if match:
            code = match.group(0)
            return code, {"5": "hard", "4": "soft"}.get(match.group(1))
        reply = _SMTP_REPLY.search(text + " ")
        if reply:
            code = reply.group(1)
            return code, "hard" if code.startswith("5") else "soft"
    return None, None


def _walk(msg: Message) -> list[Message]:
    """Every part, once (several readers look at them)."""
    found: list[Message] = []
    with suppress(TypeError, AttributeError):  # a part whose payload is not what its type says
        found.extend(msg.walk())
    return found


def _original_headers(parts: list[Message]) -> list[Message]:
    """The header blocks of the quoted original message(s): message/rfc822, text/rfc822-headers."""
    found: list[Message] = []
    for part in parts:
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(payload[0])
        elif ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                found.append(HeaderParser().parsestr(raw.decode("utf-8", "surrogateescape")))
    return found


def _message_ids(parts: list[Message], originals: list[Message]) -> tuple[str, ...]:
    ids: dict[str, None] = {}
    for original in originals:
        value = original.get("Message-ID")
        if value:
            mid = clean_text(value, 400).strip().strip("<>").strip()
            if mid and " " not in mid:
                ids[mid] = None
    if not ids:
        # qmail and others quote the original inline, in the text.
        for part in parts:
            if part.get_content_maintype() != "text":
                continue
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                for match in _MESSAGE_ID_LINE.finditer(raw[:_MAX_SCAN]):
                    ids[match.group(1).decode("ascii", "replace")] = None
    return tuple(ids)


def _envelope(msg: Message, originals: Iterable[Message]) -> tuple[str, ...]:
    values = [clean_text(v, 1000) for name in ENVELOPE_HEADERS for v in msg.get_all(name, [])]
    # A complaint quotes the original, whose Return-Path is our VERP address.
    for original in originals:
        values.extend(clean_text(v, 1000) for v in original.get_all("Return-Path", []))
    return tuple(values)


def _dsn(parts: list[Message]) -> list[Recipient] | None:
    """The failed or delayed recipients of an RFC 3464 report; None if it is not one."""
    blocks: list[Message] = []
    for part in parts:
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks.extend(p for p in payload if isinstance(p, Message))
    if not blocks:
        return None
    recipients = []
    successes = 0
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        address = _address(block.get("Final-Recipient", "") or block.get("Original-Recipient", ""))
        if address is None:
            continue
        action = clean_text(block.get("Action", "")).lower()
        if action in ("delivered", "relayed", "expanded"):
            successes += 1  # not a failure
            continue
        if action not in ("failed", "delayed"):
            continue
        diagnostic = block.get("Diagnostic-Code")
        diag_text = clean_text(diagnostic).partition(";")[2].strip() if diagnostic else None
        status, kind = _status(clean_text(block.get("Status", "")), diagnostic=diag_text)
        if action == "delayed":
            kind = "soft"
        recipients.append(
            Recipient(address, kind or "hard", status=status, diagnostic=diag_text or None)
        )
    if not recipients and not successes:
        return None  # a report that names nobody it can be sure of: not taken as one
    return recipients


def _feedback_report(parts: list[Message], originals: list[Message]) -> list[Recipient] | None:
    """The complained-about recipients of an RFC 5965 feedback report; None if it is not one."""
    reports = [p for p in parts if p.get_content_type() == "message/feedback-report"]
    if not reports:
        return None
    fields: list[Message] = []
    for report in reports:
        payload = report.get_payload()
        if isinstance(payload, list):
            fields.extend(p for p in payload if isinstance(p, Message))
    addresses: dict[str, str | None] = {}
    for block in fields:
        feedback_type = clean_text(block.get("Feedback-Type", "abuse")) or "abuse"
        for value in block.get_all("Original-Rcpt-To", []):
            address = _address(value)
            if address:
                addresses[address] = feedback_type
    if not addresses:
        for original in originals:
            for _name, addr in getaddresses(
                [clean_text(v, 1000) for v in original.get_all("To", [])]
            ):
                address = _address(addr)
                if address:
                    addresses[address] = None
    return [Recipient(a, "hard", diagnostic=t) for a, t in addresses.items()]


def _is_auto_reply(msg: Message) -> bool:
    auto = clean_text(msg.get("Auto-Submitted", "")).lower()
    if auto and not auto.startswith("no"):
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if clean_text(msg.get("Precedence", "")).lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(clean_text(msg.get("Subject", ""))))


def _from_daemon(msg: Message) -> bool:
    """Whether a mail server (not a person) wrote it: its From or its Subject says so."""
    for _name, addr in getaddresses([clean_text(v, 1000) for v in msg.get_all("From", [])]):
        if _DAEMON.match(addr):
            return True
    return bool(_BOUNCE_SUBJECT.search(clean_text(msg.get("Subject", ""))))


def _null_sender(msg: Message) -> bool:
    # RFC 5321 4.5.5: bounces go out with an empty reverse-path (so do vacation replies).
    return clean_text(msg.get("Return-Path", "")).strip() == "<>"


def _text_status(parts: list[Message], address: str) -> tuple[str | None, str | None]:
    """(status, diagnostic) from the text of a non-standard bounce: the line that names the
    address or a reply code."""
    for part in parts:
        if part.get_content_type() != "text/plain":
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        text = raw[:_MAX_SCAN].decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        for index, line in enumerate(lines):
            if _ENHANCED.search(line) or _SMTP_REPLY.search(line + " "):
                status, _text = _status(line, diagnostic=None)
                return status, clean_text(line)
            if address in line.lower() and index + 1 < len(lines):
                follow = lines[index + 1]
                if _ENHANCED.search(follow) or _SMTP_REPLY.search(follow + " "):
                    status, _text = _status(follow, diagnostic=None)
                    return status, clean_text(follow)
        break
    return None, None


def _flufl(msg: Message, parts: list[Message]) -> list[Recipient]:
    # Imported here: a quarter of a second that `run` and `send` need not pay.
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping over odd input is "not a bounce"
        return []
    found: list[Recipient] = []
    for kind, addresses in (("hard", permanent), ("soft", temporary)):
        for raw in sorted(addresses):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            address = _address(text)
            if address and all(r.address != address for r in found):
                status, diagnostic = _text_status(parts, address)
                found.append(Recipient(address, kind, status=status, diagnostic=diagnostic))
    return found


def fingerprint(data: bytes) -> str:
    """What identifies the message across readings: a digest of its bytes (as read). A copy
    delivered twice with other trace headers counts again, but at most once a day."""
    return hashlib.sha256(data).hexdigest()[:32]


def _day(msg: Message, tz: ZoneInfo) -> date | None:
    try:
        moment = parsedate_to_datetime(clean_text(msg.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(tz).date()


def classify(data: bytes, *, tz: ZoneInfo, truncated: bool = False) -> Classified:
    """What this message is. Never raises: unparseable input is `unrecognised`, with why."""
    cut = _("cut at the size limit") if truncated else None
    try:
        msg = message_from_bytes(data)
    except Exception as exc:  # untrusted input: whatever the parser trips on
        return Classified(
            "unrecognised",
            fingerprint=fingerprint(data),
            problem=_("cannot parse: {error}").format(error=exc),
        )
    try:
        return _classify(msg, data, tz=tz, problem=cut)
    except Exception as exc:  # untrusted input: never stop the whole mailbox
        return Classified(
            "unrecognised",
            fingerprint=fingerprint(data),
            problem=clean_text(
                _("cannot read: {error}").format(error=f"{type(exc).__name__}: {exc}")
            ),
        )


def _classify(msg: Message, data: bytes, *, tz: ZoneInfo, problem: str | None) -> Classified:
    parts = _walk(msg)
    originals = _original_headers(parts)
    if msg.defects and problem is None and msg.get_content_maintype() == "multipart":
        problem = _("malformed MIME: {defect}").format(
            defect=clean_text(type(msg.defects[0]).__name__)
        )

    def result(
        kind: str,
        recipients: Iterable[Recipient] = (),
        reply: Reply | None = None,
        notice: bool = False,
    ) -> Classified:
        return Classified(
            kind,
            tuple(recipients),
            message_ids=_message_ids(parts, originals),
            envelope=_envelope(msg, originals),
            fingerprint=fingerprint(data),
            day=_day(msg, tz),
            problem=problem,
            reply=reply,
            notice=notice,
        )

    report_type = clean_text(msg.get_param("report-type", "") or "").lower()
    if msg.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return result("complaint", _feedback_report(parts, originals) or [])
    dsn = _dsn(parts)
    if dsn is not None:
        if not dsn:
            # A report that everything went well (or was relayed): automatic, not a bounce.
            return result("auto-reply")
        return result("hard" if any(r.kind == "hard" for r in dsn) else "soft", dsn)
    daemon = _from_daemon(msg)
    failed_header = bool(msg.get("X-Failed-Recipients"))  # Exim's plain-text bounces
    if _is_auto_reply(msg) and not daemon and not failed_header:
        return result("auto-reply")
    if daemon or failed_header or _null_sender(msg):
        found = _flufl(msg, parts)
        if found:
            return result("hard" if any(r.kind == "hard" for r in found) else "soft", found)
        return result("unrecognised", notice=daemon or failed_header)
    reply = read_reply(msg, parts)
    if reply.sender is None:
        return result("unrecognised")
    return result("reply", reply=reply)
