"""What a person wrote back: their own words out of a reply, and what those words ask for.

A reply is read down to what its writer added (quoted originals, "On … wrote:" lines and
signatures cut off; HTML-only mail turned into text), then judged by a small rule set, in
Spanish and English, sentence by sentence:

- `stop`: a clear request to stop ("dadme de baja", "no quiero recibir más correos", "BAJA",
  "unsubscribe", "please remove me"): the contact is suppressed for email at once, with the
  sentence kept as evidence;
- `unclear_stop`: a stop phrase that is negated, asked about, or conditional ("no me deis de
  baja", "¿cómo me doy de baja?", "if this goes on I will unsubscribe"): waits for the owner;
- `complaint`, `question`, `thanks`, `other`: wait for the owner, never suppress;
- `automatic`: an out-of-office answer without the standard headers: recorded, nothing else.

Everything here takes untrusted text and never raises.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from outreach.feedback.text import clean_text
from outreach.i18n import _

if TYPE_CHECKING:
    from outreach.ledger import ReplyRecord

KINDS = ("stop", "unclear_stop", "complaint", "question", "thanks", "other", "automatic")
# The kinds that wait for the owner in `outreach replies`.
WAITING = frozenset({"unclear_stop", "complaint", "question", "thanks", "other"})

_MAX_TEXT = 64 * 1024  # of a reply's text, only this much is read
_EXCERPT = 200

# Where the writer's own words end: a quoted original or a signature begins.
_CUT = re.compile(
    r"^\s*(?:"  # not translated: a pattern for customers' words
    r"-- ?$|__{4,}|-{4,}\s*(?:original message|mensaje original|forwarded message|"
    r"mensaje reenviado)|"
    r"(?:on|el)\s.{0,200}\s(?:wrote|escribi[oó]|a escrit)\s*:\s*$|"
    r"(?:from|de)\s*:\s.*@|"
    r"(?:sent from my|enviado desde mi|get outlook for|obtener outlook para)\b"
    r")",
    re.IGNORECASE,
)
_WROTE_CONTINUED = re.compile(r"(?:wrote|escribi[oó])\s*:\s*$", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?¡¿;\n])\s+|\n+")
_SPACES = re.compile(r"\s+")

# Stop phrases (on text without accents, lower-cased). `no quiero recibir` carries its own "no".
_STOP = re.compile(
    r"\b(?:"
    r"(?:da|dad|den|dame|dadme|denme|darme|darnos|doy|dar|deis|des|demos|dare|daria|daremos)"
    r"\s*(?:me\s+|nos\s+)?de\s+baja|"
    r"(?:me\s+)?(?:quiero|deseo|quisiera|solicito|pido)\s+(?:la\s+|mi\s+|darme\s+de\s+)?baja|"
    r"no\s+(?:quiero|deseo)\s+(?:recibir|que\s+me\s+(?:envie|mande|escriba)|"
    r"mas\s+(?:correos|emails|e-mails|mails|mensajes|publicidad|comunicaciones|ofertas))|"
    r"(?:ya\s+)?no\s+me\s+interesan?\s+(?:recibir|(?:estos|vuestros|sus|los|tus)\s+"
    r"(?:correos|emails|e-mails|mails|mensajes))|"
    r"no\s+(?:me|le|les|nos)\s+(?:envieis|envien|mandeis|manden|escribais|escriban|enviis)\s+mas|"
    r"(?:me\s+|nos\s+)(?:quit|elimin|borr|sac)(?:arais|aseis|aran|asen|eis|en)\s+de|"
    r"dej(?:ad|en|a)\s+de\s+(?:enviarme|mandarme|escribirme|enviar|mandar)|"
    r"(?:borrad|eliminad|quitad|sacad|borren|eliminen|quiten|saquen)(?:me|nos)\s+de|"
    r"cancel(?:ar|ad|en|o)\s+(?:la\s+|mi\s+)?suscripcion|darme\s+de\s+baja|"
    r"unsubscribe|unsubscribed|remove\s+me|take\s+me\s+off|opt\s+(?:me\s+)?out|"
    r"stop\s+(?:sending|emailing|mailing|writing|contacting)|"
    r"(?:do\s+not|don'?t|dont)\s+(?:email|e-mail|mail|contact|send|write\s+to)\s+me|"
    r"no\s+more\s+(?:emails|e-mails|mails|messages|newsletters)"
    r")\b"
)
# A whole message (or subject) of one word: "BAJA", "STOP", "Unsubscribe".
_BARE = re.compile(
    r"^(?:baja|stop|unsubscribe|darme de baja|de baja|remove|eliminar)"  # not translated: a pattern for customers' words
    r"(?:\s+(?:por favor|please|gracias|thanks))?$"
)
_NEGATION = re.compile(
    r"\b(?:no|nunca|jamas|ni|not|never|don'?t|dont|do not|no quiero que)\b"  # not translated: a pattern
)
_HEDGE = re.compile(
    r"\b(?:si|if|unless|como (?:me|puedo|se|hago)|how|puedo|can i|should i|deberia|igual|"
    r"quizas|quiza|maybe|perhaps|a lo mejor|estoy pensando|thinking|a menos que)\b"
)
# "le deis de baja a él": a request for someone else, whom the sender may not speak for.
_SOMEONE_ELSE = re.compile(r"\b(?:le|les|him|her|them)\s+(?:\w+\s+)?$")
_POLITE = re.compile(
    r"\b(?:podeis|podrian|podrias|puedes|pueden|podriais|could you|can you|would you|"
    r"will you|please|por favor)\b"
)
_AUTOMATIC = re.compile(
    r"\b(?:respuesta automatica|fuera de (?:la )?oficina|out of (?:the )?office|"  # not translated: a pattern for customers' words
    r"auto(?:matic)?[ -]?reply|autorespuesta|estoy de vacaciones|vacaciones hasta|"
    r"ausente hasta|no estare disponible hasta|i am (?:currently )?(?:away|out)|"
    r"on (?:annual |parental )?leave until|away from my desk until|"
    r"this is an automatic|este es un mensaje automatico|mensaje automatico|"
    r"su mensaje ha sido recibido|le responderemos lo antes posible|buzon (?:es )?automatico|"
    r"buzon no (?:es )?(?:atendido|monitorizado)|(?:this )?mailbox is not monitored|"
    r"we have received your (?:message|email) and will)\b"
)
_COMPLAINT = re.compile(
    r"\b(?:queja|reclamacion|fatal|horrible|pesimo|verguenza|indignad|harto|harta|molest|"  # not translated: a pattern for customers' words
    r"spam|decepcion|decepcionad|nunca mas|mal servicio|mala experiencia|frio|fria|cruda|"
    r"tarde|esperamos|equivocad|error|cobrad|cobrasteis|cobraron|dos veces|complain|complaint|disappoint|terrible|awful|"
    r"rude|annoy|unacceptable|never again|cold|overcharg|wrong|worst|fed up|too many|"
    r"never signed up|did ?n[o']?t sign up|how did you get my|no me he suscrito|"
    r"no recuerdo haberme|de donde habeis sacado)\w*"
)
_QUESTION = re.compile(
    r"[?¿]|\b(?:cuando|cuanto|donde|puedo|podemos|hay|teneis|tienen|can i|can we|do you|"
    r"is it|are you|when|where|how much|what time)\b"
)
_THANKS = re.compile(
    r"\b(?:gracias|agradec|encant|genial|estupend|maravill|thank|thanks|thx|lovely|great|"
    r"wonderful|appreciate|love)\w*"
)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a person's message says, as read from it."""

    sender: str | None  # lower-cased From address
    answers: tuple[str, ...]  # Message-IDs it answers: In-Reply-To first, then References
    recipients: tuple[str, ...]  # lower-cased addresses it was sent or delivered to
    subject: str
    text: str  # the writer's own words (quotes and signature cut), bounded
    message_id: str | None = None  # its own


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a reply asks for, and the sentence that says so."""

    kind: str  # one of KINDS
    evidence: str | None = None


class _Text(HTMLParser):
    """An HTML body as text: block elements end lines, scripts and styles say nothing, and a
    quoted original (`blockquote`, Gmail's `gmail_quote`) is left out."""

    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "table", "hr"})
    _SKIP = frozenset({"script", "style", "head", "title", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = " ".join(v or "" for k, v in attrs if k == "class")
        if tag in self._SKIP or "gmail_quote" in classes or "moz-cite-prefix" in classes:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and tag in (*self._SKIP, "div"):
            # A `div class=gmail_quote` ends at some `</div>`: the rest of the page is the quote.
            self._skipping -= 1 if tag != "div" else 0
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, without its quoted original."""
    parser = _Text()
    try:
        parser.feed(html[:_MAX_TEXT])
        parser.close()
    except (ValueError, AssertionError):  # untrusted markup
        pass
    return "".join(parser.parts)


def _decoded(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw[:_MAX_TEXT].decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return raw[:_MAX_TEXT].decode("utf-8", "replace")


def body_text(parts: list[Message]) -> str:
    """The text of a message: its first text/plain part, else its first HTML part as text."""
    html: str | None = None
    for part in parts:
        if part.get_content_maintype() != "text" or part.get_filename():
            continue
        subtype = part.get_content_subtype()
        if subtype == "plain":
            return _decoded(part)
        if subtype == "html" and html is None:
            html = _decoded(part)
    return html_to_text(html) if html is not None else ""


def own_words(text: str) -> str:
    """The lines its writer added: up to a quoted original or a signature, '>' lines left out."""
    kept: list[str] = []
    lines = text.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            continue
        follow = lines[index + 1] if index + 1 < len(lines) else ""
        # Gmail wraps "El lun, 23 nov 2026, Casa Lucía <hola@…>\nescribió:" over two lines.
        if _CUT.match(line) or (line.strip() and _WROTE_CONTINUED.match(follow.strip())):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def _part_text(data: bytes | str, charset: str | None) -> str:
    if isinstance(data, str):
        return data
    for name in (charset, "utf-8", "latin-1"):
        if name and name != "unknown-8bit":
            try:
                return data.decode(name)
            except (LookupError, UnicodeDecodeError):
                continue
    return data.decode("utf-8", "replace")


def header_text(msg: Message, name: str, limit: int = 300) -> str:
    """A header as text: RFC 2047 words decoded, raw UTF-8 (RFC 6532) or Latin-1 read."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        parts = decode_header(value)
    except (ValueError, LookupError, TypeError):  # a malformed encoded word
        return clean_text(value, limit)
    return clean_text("".join(_part_text(data, charset) for data, charset in parts), limit)


def _ids(value: str) -> list[str]:
    return [m.strip() for m in re.findall(r"<([^<>\s]{1,250})>", value)]


def read_reply(msg: Message, parts: list[Message]) -> Reply:
    """The sender, what it answers, where it went and the writer's own words."""
    senders = getaddresses([clean_text(v, 1000) for v in msg.get_all("From", [])])
    sender = next((a.lower() for _, a in senders if "@" in a), None)
    answers: dict[str, None] = {}
    for name in ("In-Reply-To", "References"):
        for value in msg.get_all(name, []):
            answers.update(dict.fromkeys(_ids(clean_text(value, 4000))))
    headers = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
    values = [clean_text(v, 1000) for h in headers for v in msg.get_all(h, [])]
    recipients = tuple(dict.fromkeys(a.lower() for _, a in getaddresses(values) if "@" in a))
    own = _ids(clean_text(msg.get("Message-ID", ""), 400))
    return Reply(
        sender=sender,
        answers=tuple(answers),
        recipients=recipients,
        subject=header_text(msg, "Subject"),
        text=own_words(body_text(parts)),
        message_id=own[0] if own else None,
    )


class _Fold(dict[int, str]):
    """Character → itself without accents, worked out once per character (str.translate)."""

    def __missing__(self, code: int) -> str:
        decomposed = unicodedata.normalize("NFKD", chr(code))
        folded = self[code] = "".join(c for c in decomposed if not unicodedata.combining(c))
        return folded


_FOLD = _Fold()


def _plain(text: str) -> str:
    """Lower-cased, without accents, one space between words: what the rules read."""
    text = text.casefold()
    if not text.isascii():
        text = text.translate(_FOLD)
    return _SPACES.sub(" ", text).strip()


def _subject(subject: str) -> str:
    return re.sub(r"^(?:\s*(?:re|rv|fw|fwd|aw|sv)\s*:\s*)+", "", subject, flags=re.I).strip()


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _stop_in(sentence: str) -> str | None:
    """`stop`, `unclear_stop` or None for one sentence (already plain)."""
    match = _STOP.search(sentence)
    if match is None:
        return None
    before = sentence[: match.start()]
    # "no me deis de baja", "I don't want to unsubscribe": the request is negated.
    if _NEGATION.search(before[-40:]) and not match.group(0).startswith("no "):
        return "unclear_stop"
    questioning = "?" in sentence or "¿" in sentence
    if _HEDGE.search(before) or _SOMEONE_ELSE.search(before):
        return "unclear_stop"
    if questioning and not _POLITE.search(sentence):
        return "unclear_stop"
    return "stop"


def judge(reply: Reply) -> Judgement:
    """What the reply asks for (see the module doc), and the sentence that decided it."""
    subject = _subject(reply.subject)
    head = _plain(" ".join([subject, *reply.text.splitlines()[:6]]))
    if _AUTOMATIC.search(head):
        return Judgement("automatic", clean_text(subject or reply.text.splitlines()[0]))
    words = _plain(reply.text.strip(" .!¡\n"))
    if _BARE.match(words) or (not words and _BARE.match(_plain(subject.strip(" .!")))):
        return Judgement("stop", clean_text(reply.text.strip() or subject))
    unclear: str | None = None
    sentences = [(s, _plain(s)) for s in _sentences(reply.text)]
    for sentence, plain in sentences:
        found = _stop_in(plain)
        if found == "stop":
            return Judgement("stop", clean_text(sentence))
        if found == "unclear_stop" and unclear is None:
            unclear = sentence
    if unclear is not None:
        return Judgement("unclear_stop", clean_text(unclear))
    if not reply.text.strip() and _STOP.search(_plain(subject)):
        return Judgement("stop", clean_text(subject))
    return _mood(sentences or [(subject, _plain(subject))])


def _mood(sentences: list[tuple[str, str]]) -> Judgement:
    """complaint, question, thanks or other, with the sentence (as written, and plain) that
    shows it."""
    for kind, pattern in (("complaint", _COMPLAINT), ("question", _QUESTION), ("thanks", _THANKS)):
        for sentence, plain in sentences:
            if pattern.search(plain):
                return Judgement(kind, clean_text(sentence))
    first = sentences[0][0]
    return Judgement("other", clean_text(first) if first else None)


def excerpt(reply: Reply) -> str:
    """The first lines of what the writer wrote, on one line, bounded."""
    return clean_text(reply.text or reply.subject, _EXCERPT)


def describe_reply(reply: ReplyRecord) -> str:
    """One line: when a reply was read, what it is, where the owner left it, what it says."""
    text = _("reply #{id} read {day} ({campaign}): {kind}, {status} — {subject}: {excerpt}").format(
        id=reply.id,
        day=reply.received.isoformat(),
        campaign=reply.campaign or _("no campaign"),
        kind=reply.kind,
        status=reply.status,
        subject=reply.subject,
        excerpt=reply.excerpt,
    )
    if reply.kind == "stop" and reply.evidence:
        text += " " + _("[the request: {evidence}]").format(evidence=reply.evidence)
    if reply.note:
        text += " " + _("[note: {note}]").format(note=reply.note)
    return text
