"""The one-click unsubscribe receiver (RFC 8058): a small WSGI application.

It answers at the path of config `unsubscribe.url` and trusts nothing it is sent: the URL's
token must be the one outreach made for that contact id, bodies are capped, and every value
shown is escaped. A POST with `List-Unsubscribe=One-Click` puts the contact on the
suppression list at once (a short SQLite transaction: safe while a run holds the workspace)
and answers 200; a GET only shows a confirmation page with a button, in the contact's
language, because link scanners follow links. A bad or missing token: 400, nothing written.

Mount it behind the business's web server with any WSGI server
(`outreach.feedback.receiver:application` reads OUTREACH_CONFIG), or run `outreach serve`.
"""

from __future__ import annotations

import hmac
import html
import logging
import math
import os
import re
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from outreach.contacts import iter_contacts
from outreach.i18n import _
from outreach.ledger import open_ledger
from outreach.model.config import Settings, find_config, load_settings
from outreach.model.errors import ConfigError, OutreachError
from outreach.render.templates import unsubscribe_token

logger = logging.getLogger("outreach.serve")

MAX_BODY = 8 * 1024  # a one-click body is 26 bytes; a form a few hundred
SOURCE = "one-click"
StartResponse = Callable[..., Any]

# The pages a customer reads follow the customer (the contact's locale, else config
# `locale`), never the owner's `language:` or catalog: a table per language, more languages
# than the tool itself speaks. Spanish says "usted", as the sample's emails do.
_TEXTS = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Do you want to stop receiving messages from {sender}?",  # not translated: customer page, in the contact's language
        "button": "Unsubscribe",
        "done": "Done: you will receive no more messages from {sender}.",  # not translated: customer page, in the contact's language
        "bad": "This unsubscribe link is not valid. Please use the link in the latest message.",  # not translated: customer page, in the contact's language
    },
    "es": {
        "title": "Darse de baja",
        "ask": "¿Desea dejar de recibir mensajes de {sender}?",  # not translated: customer page, in the contact's language
        "button": "Darme de baja",
        "done": "Hecho: no recibirá más mensajes de {sender}.",  # not translated: customer page, in the contact's language
        "bad": "Este enlace de baja no es válido. Use el enlace del último mensaje.",  # not translated: customer page, in the contact's language
    },
    "fr": {
        "title": "Se désabonner",
        "ask": "Voulez-vous ne plus recevoir de messages de {sender} ?",  # not translated: customer page, in the contact's language
        "button": "Me désabonner",
        "done": "C'est fait : vous ne recevrez plus de messages de {sender}.",  # not translated: customer page, in the contact's language
        "bad": "Ce lien de désabonnement n'est pas valide. Utilisez celui du dernier message.",  # not translated: customer page, in the contact's language
    },
    "de": {
        "title": "Abmelden",
        "ask": "Möchten Sie keine Nachrichten mehr von {sender} erhalten?",
        "button": "Abmelden",
        "done": "Erledigt: Sie erhalten keine Nachrichten mehr von {sender}.",
        "bad": "Dieser Abmeldelink ist ungültig. Bitte nutzen Sie den Link der letzten Nachricht.",
    },
}
_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # the URL holds the token
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    ),
]
_EXAMPLE_URL = '"https://example.com/baja?id={id}&token={token}"'
_PLACEHOLDER = re.compile(r"\{(id|token)\}")
# Tokens are 16 hex digits; in a path that is not the route's, any such run is masked.
_TOKEN_LIKE = re.compile(r"[0-9A-Fa-f]{12,}")
_SHOWN_PATH = 200  # characters of a path a log line shows
MAX_REQUEST_LINE = 8 * 1024  # a longer request line is answered 414
# Per client address: a burst of this many requests, then one per RATE_SECONDS.
RATE_BURST = 30
RATE_SECONDS = 2.0


def escaped(text: str) -> str:
    """Text safe for one log line: a line break, an escape sequence or any other character
    that is not printable is written as its escape (\\n, \\x1b), so no request forges a line."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode()
        for char in text
    )


class ContactLocales:
    """Each contact's locale by id: the contacts file read once, and again when it changes
    (its size, time or inode), so a request never reads the whole file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._locales: dict[str, str] = {}
        self.loads = 0  # how many times the file was read

    def get(self, contact_id: str) -> str | None:
        """The contact's locale; None for an unknown id or an unreadable file."""
        path = self.settings.contacts_path
        try:
            info = path.stat()
            stamp: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            stamp = None
        with self._lock:  # one thread reads the file; the others wait for its result
            if stamp != self._seen:
                self._locales = self._load() if stamp is not None else {}
                self._seen = stamp
            return self._locales.get(contact_id)

    def _load(self) -> dict[str, str]:
        settings = self.settings
        self.loads += 1
        locales: dict[str, str] = {}
        try:
            stream = iter_contacts(
                settings.contacts_path,
                settings=settings.contacts,
                default_locale=settings.default_locale,
            )
            try:
                for contact in stream:
                    locales[contact.id] = contact.locale
            finally:
                stream.close()
        except OutreachError:
            pass  # pages are shown in the business's language instead
        return locales


@dataclass(frozen=True, slots=True)
class Route:
    """Where the unsubscribe URL puts the contact id and the token."""

    path: re.Pattern[str]
    id_param: str | None
    token_param: str | None

    def values(self, path: str, query: str) -> tuple[str, str] | None:
        """(contact id, token) from a request, or None when it is not for this route."""
        match = self.path.fullmatch(path)
        if match is None:
            return None
        found = parse_qs(query, max_num_fields=20)
        groups = match.groupdict()
        contact_id = (
            unquote(groups["id"]) if groups.get("id") else found.get(self.id_param or "", [""])[0]
        )
        token = groups.get("token") or found.get(self.token_param or "", [""])[0]
        return contact_id, token

    def shown(self, path: str) -> str:
        """A request's path as the log shows it: the token masked, every character escaped."""
        match = self.path.fullmatch(path)
        if match is not None and match.groupdict().get("token"):
            start, end = match.span("token")
            path = path[:start] + "***" + path[end:]
        else:
            # Not this route (a path cut short, one segment more): a token may still be in it.
            path = _TOKEN_LIKE.sub("***", path)
        return escaped(path[:_SHOWN_PATH])


def route_for(settings: Settings) -> Route:
    """The route of config `unsubscribe.url`; ConfigError when it cannot be verified."""
    url = settings.unsubscribe.url
    where = settings.root / "config.yaml"
    if not url:
        raise ConfigError(
            _("there is no unsubscribe URL to serve"),
            path=where,
            field="unsubscribe.url",
            hint=_("set e.g. unsubscribe.url: {example}").format(example=_EXAMPLE_URL),
        )
    if "{token}" not in url or "{id}" not in url:
        raise ConfigError(
            _(
                "unsubscribe.url needs both {{id}} and {{token}}: without the token anyone could "
                "unsubscribe anyone"
            ).format(),
            path=where,
            field="unsubscribe.url",
            hint=_("e.g. {example}").format(example=_EXAMPLE_URL),
        )
    parts = urlsplit(url)
    pattern = ""
    last = 0
    for match in _PLACEHOLDER.finditer(parts.path):
        pattern += re.escape(parts.path[last : match.start()])
        pattern += f"(?P<{match.group(1)}>[^/]+)"
        last = match.end()
    pattern += re.escape(parts.path[last:])
    id_param = token_param = None
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if value == "{id}":
            id_param = name
        elif value == "{token}":
            token_param = name
    return Route(path=re.compile(pattern or "/"), id_param=id_param, token_param=token_param)


def _language(locale: str | None) -> str:
    language = (locale or "").replace("-", "_").partition("_")[0].lower()
    return language if language in _TEXTS else "en"


class UnsubscribeApp:
    """The WSGI application."""

    def __init__(
        self, settings: Settings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.settings = settings
        self.route = route_for(settings)
        self.clock = clock
        self.locales = ContactLocales(settings)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
        found = self.route.values(path, str(environ.get("QUERY_STRING", "")))
        if found is None:
            return self._plain(start_response, "404 Not Found", "not found")
        contact_id, token = found
        if not self._verified(contact_id, token):
            logger.warning(
                "%s",
                _("{method} {path}: a token that does not verify (nothing written)").format(
                    method=escaped(method[:16]), path=self.route.shown(path)
                ),
            )
            text = _TEXTS[_language(self.settings.default_locale)]["bad"]
            return self._page(start_response, "400 Bad Request", text, language=None)
        if method in ("GET", "HEAD"):
            return self._confirm(start_response, contact_id, head=method == "HEAD")
        if method == "POST":
            return self._post(environ, start_response, contact_id)
        return self._plain(
            start_response, "405 Method Not Allowed", "use GET or POST", [("Allow", "GET, POST")]
        )

    def _verified(self, contact_id: str, token: str) -> bool:
        if not contact_id or not token or len(contact_id) > 200 or len(token) > 64:
            return False
        expected = unsubscribe_token(secret=self.settings.coupon.secret, contact_id=contact_id)
        return hmac.compare_digest(token.lower().encode(), expected.encode())

    def _locale(self, contact_id: str) -> str:
        return self.locales.get(contact_id) or self.settings.default_locale

    def _confirm(
        self, start_response: StartResponse, contact_id: str, *, head: bool
    ) -> list[bytes]:
        language = _language(self._locale(contact_id))
        texts = _TEXTS[language]
        sender = html.escape(self.settings.sender.name)
        body = (
            f"<p>{texts['ask'].format(sender=sender)}</p>"
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{html.escape(texts["button"])}</button></form>'
        )
        page = self._page(start_response, "200 OK", body, language=language, raw=True)
        return [] if head else page

    def _post(
        self, environ: dict[str, Any], start_response: StartResponse, contact_id: str
    ) -> list[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return self._plain(
                start_response,
                "413 Content Too Large",
                "the body is too large",  # not translated: HTTP answer to a mail provider's client
            )
        body = environ["wsgi.input"].read(length) if length else b""
        if not _one_click(body, str(environ.get("CONTENT_TYPE", ""))):
            return self._plain(
                start_response,
                "400 Bad Request",
                "the body must be List-Unsubscribe=One-Click",  # not translated: HTTP, RFC 8058
            )
        try:
            with open_ledger(self.settings) as ledger:
                added = ledger.suppress(contact_id, channel="all", source=SOURCE, now=self.clock())
        except OutreachError as exc:
            logger.error(
                "%s",
                _("cannot record the unsubscribe of {id}: {error}").format(
                    id=escaped(contact_id), error=exc
                ),
            )
            return self._plain(
                start_response,
                "503 Service Unavailable",
                "try again later",  # not translated: HTTP answer to a mail provider's client
            )
        unsubscribed = (
            _("{id} unsubscribed (added)")
            if added
            else _("{id} unsubscribed (already on the list)")
        )
        logger.info("%s", unsubscribed.format(id=escaped(contact_id)))
        language = _language(self._locale(contact_id))
        text = _TEXTS[language]["done"].format(sender=self.settings.sender.name)
        return self._page(start_response, "200 OK", text, language=language)

    def _page(
        self,
        start_response: StartResponse,
        status: str,
        text: str,
        *,
        language: str | None,
        raw: bool = False,
    ) -> list[bytes]:
        lang = language or _language(self.settings.default_locale)
        title = html.escape(_TEXTS[lang]["title"])
        content = text if raw else f"<p>{html.escape(text)}</p>"
        page = (
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title></head>"
            '<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">'
            f"<h1>{title}</h1>{content}</body></html>"
        ).encode()
        start_response(status, [*_HEADERS, ("Content-Length", str(len(page)))])
        return [page]

    @staticmethod
    def _plain(
        start_response: StartResponse,
        status: str,
        text: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        data = (text + "\n").encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *(extra or []),
        ]
        start_response(status, headers)
        return [data]


def _one_click(body: bytes, content_type: str) -> bool:
    """Whether a POST body says List-Unsubscribe=One-Click (RFC 8058: urlencoded or multipart)."""
    text = body.decode("utf-8", "replace")
    if content_type.lower().startswith("multipart/form-data"):
        return bool(
            re.search(r'name="List-Unsubscribe"\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n', text)
        )
    return "One-Click" in parse_qs(text, max_num_fields=20).get("List-Unsubscribe", [])


class RateLimit:
    """A token bucket per client address: `burst` requests at once, then one per `seconds`."""

    def __init__(
        self,
        *,
        burst: int = RATE_BURST,
        seconds: float = RATE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # address → (tokens, when)

    def allow(self, address: str) -> bool:
        """Whether a request from `address` may go on now (it takes one token if so)."""
        now = self.clock()
        with self._lock:
            if len(self._buckets) > 10_000:  # many addresses: forget the ones that are full
                self._buckets = {
                    key: (tokens, when)
                    for key, (tokens, when) in self._buckets.items()
                    if tokens + (now - when) / self.seconds < self.burst
                }
            tokens, when = self._buckets.get(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) / self.seconds)
            allowed = tokens >= 1
            self._buckets[address] = (tokens - 1 if allowed else tokens, now)
            return allowed


class _Handler(WSGIRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Seconds a client may stall: then it is dropped, so it cannot hold a thread for ever.
        self.connection.settimeout(self.server.request_timeout)

    def handle(self) -> None:
        """One request, as WSGIRequestHandler.handle, with a shorter request line, a rate
        limit, and a client that stalls or goes away logged in one line."""
        client = self.client_address[0]
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if len(self.raw_requestline.split()) == 2:
                # HTTP/0.9 ("GET /path"): http.server would wait for headers that never come.
                self.command, self.path = self.raw_requestline.decode("latin-1").split()
                self.request_version, self.close_connection = "HTTP/0.9", True
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "use HTTP/1.0 or later")
                return
            if not self.parse_request():
                return  # answered (400, 505...) and logged by log_request
            if not self.server.rate.allow(client):
                self.send_response(HTTPStatus.TOO_MANY_REQUESTS)
                self.send_header("Retry-After", str(math.ceil(self.server.rate.seconds)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            app = self.server.get_app()
            assert app is not None  # set by make_server
            handler = _ServerHandler(
                self.rfile,
                cast("IO[bytes]", self.wfile),
                self.get_stderr(),
                self.get_environ(),
                multithread=False,
            )
            handler.request_handler = self
            handler.run(app)
        except TimeoutError:
            logger.info(
                "%s",
                _("{client}: the client stalled for {seconds} s; connection closed").format(
                    client=client, seconds=self.server.request_timeout
                ),
            )
        except OSError as exc:
            broke = _("{client}: the connection broke ({error})")
            logger.info("%s", broke.format(client=client, error=escaped(exc.strerror or str(exc))))

    def _shown(self) -> str:
        path = getattr(self, "path", None)
        if not isinstance(path, str):
            return "-"
        return self.server.route.shown(urlsplit(path).path)

    def log_message(self, format: str, *args: Any) -> None:
        # Never `format % args`: http.server's messages quote the request line (the token).
        command = escaped(str(getattr(self, "command", None) or "-")[:16])
        logger.info("%s %s", command, self._shown())

    def log_error(self, format: str, *args: Any) -> None:
        # send_error's, which quotes the request line (and so the token); its log_request
        # writes the one line an error gets.
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        command = escaped(str(getattr(self, "command", None) or "-")[:16])
        logger.info("%s %s %s", command, self._shown(), escaped(str(code)))


class _ServerHandler(ServerHandler):
    request_handler: WSGIRequestHandler  # for its log_request, as wsgiref's handler sets it

    def log_exception(self, exc_info: Any) -> None:
        # One line for the log, not a traceback on stderr.
        failed = _("the request failed: {error}")
        logger.error("%s", failed.format(error=escaped(repr(exc_info[1]))[:300]))


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    rate: RateLimit
    route: Route
    request_timeout: float

    def handle_error(self, request: Any, client_address: Any) -> None:
        # What the handler did not catch: one line, never socketserver's traceback.
        error = sys.exc_info()[1]
        failed = _("{client}: the request failed: {error}")
        logger.error(
            "%s", failed.format(client=client_address[0], error=escaped(repr(error))[:300])
        )


def make_receiver(
    settings: Settings,
    *,
    host: str,
    port: int,
    rate: RateLimit | None = None,
    timeout: float = 10.0,
) -> WSGIServer:
    """A threaded HTTP server with the app, bound (port 0: any free one) and ready to serve;
    `rate` limits each client address, `timeout` drops a client that stalls."""
    app = UnsubscribeApp(settings)
    server = make_server(host, port, app, server_class=_Server, handler_class=_Handler)
    assert isinstance(server, _Server)
    server.rate = rate or RateLimit()
    server.route = app.route
    server.request_timeout = timeout
    return server


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """For mounting under another WSGI server: the workspace from OUTREACH_CONFIG (a path to
    config.yaml), else config.yaml in the current folder."""
    config = os.environ.get("OUTREACH_CONFIG")
    app = _apps.get(config)
    if app is None:
        app = _apps[config] = UnsubscribeApp(
            load_settings(find_config(Path(config) if config else None))
        )
    yield from app(environ, start_response)


_apps: dict[str | None, UnsubscribeApp] = {}
