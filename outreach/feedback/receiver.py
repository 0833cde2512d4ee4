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
import os
import re
import socketserver
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from outreach.contacts import iter_contacts
from outreach.ledger import open_ledger
from outreach.model.config import Settings, find_config, load_settings
from outreach.model.errors import ConfigError, OutreachError
from outreach.render.templates import unsubscribe_token

logger = logging.getLogger("outreach.serve")

MAX_BODY = 8 * 1024  # a one-click body is 26 bytes; a form a few hundred
SOURCE = "one-click"
StartResponse = Callable[..., Any]

_TEXTS = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Do you want to stop receiving messages from {sender}?",
        "button": "Unsubscribe",
        "done": "Done: you will receive no more messages from {sender}.",
        "bad": "This unsubscribe link is not valid. Please use the link in the latest message.",
    },
    "es": {
        "title": "Darse de baja",
        "ask": "¿Quieres dejar de recibir mensajes de {sender}?",
        "button": "Darme de baja",
        "done": "Hecho: no recibirás más mensajes de {sender}.",
        "bad": "Este enlace de baja no es válido. Usa el enlace del último mensaje.",
    },
    "fr": {
        "title": "Se désabonner",
        "ask": "Voulez-vous ne plus recevoir de messages de {sender} ?",
        "button": "Me désabonner",
        "done": "C'est fait : vous ne recevrez plus de messages de {sender}.",
        "bad": "Ce lien de désabonnement n'est pas valide. Utilisez celui du dernier message.",
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
_PLACEHOLDER = re.compile(r"\{(id|token)\}")


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


def route_for(settings: Settings) -> Route:
    """The route of config `unsubscribe.url`; ConfigError when it cannot be verified."""
    url = settings.unsubscribe.url
    where = settings.root / "config.yaml"
    if not url:
        raise ConfigError(
            "there is no unsubscribe URL to serve",
            path=where,
            field="unsubscribe.url",
            hint='set e.g. unsubscribe.url: "https://example.com/baja?id={id}&token={token}"',
        )
    if "{token}" not in url or "{id}" not in url:
        raise ConfigError(
            "unsubscribe.url needs both {id} and {token}: without the token anyone could "
            "unsubscribe anyone",
            path=where,
            field="unsubscribe.url",
            hint='e.g. "https://example.com/baja?id={id}&token={token}"',
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

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
        found = self.route.values(path, str(environ.get("QUERY_STRING", "")))
        if found is None:
            return self._plain(start_response, "404 Not Found", "not found")
        contact_id, token = found
        if not self._verified(contact_id, token):
            logger.warning("%s %s: a token that does not verify (nothing written)", method, path)
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
        settings = self.settings
        try:
            stream = iter_contacts(
                settings.contacts_path,
                settings=settings.contacts,
                default_locale=settings.default_locale,
            )
            try:
                for contact in stream:
                    if contact.id == contact_id:
                        return contact.locale
            finally:
                stream.close()
        except OutreachError:
            pass  # the page is shown in the business's language instead
        return settings.default_locale

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
            return self._plain(start_response, "413 Content Too Large", "the body is too large")
        body = environ["wsgi.input"].read(length) if length else b""
        if not _one_click(body, str(environ.get("CONTENT_TYPE", ""))):
            return self._plain(
                start_response, "400 Bad Request", "the body must be List-Unsubscribe=One-Click"
            )
        try:
            with open_ledger(self.settings) as ledger:
                added = ledger.suppress(contact_id, channel="all", source=SOURCE, now=self.clock())
        except OutreachError as exc:
            logger.error("cannot record the unsubscribe of %s: %s", contact_id, exc)
            return self._plain(start_response, "503 Service Unavailable", "try again later")
        logger.info("%s unsubscribed (%s)", contact_id, "added" if added else "already on the list")
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


class _Handler(WSGIRequestHandler):
    timeout = 10  # a client that stalls is dropped, so it cannot hold a thread for ever

    def log_message(self, format: str, *args: Any) -> None:
        # The path only: the query string holds the contact id and token.
        logger.info("%s %s", self.command, urlsplit(self.path).path)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.info("%s %s %s", self.command, urlsplit(self.path).path, code)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def make_receiver(settings: Settings, *, host: str, port: int) -> WSGIServer:
    """A threaded HTTP server with the app, bound (port 0: any free one) and ready to serve."""
    app = UnsubscribeApp(settings)
    return make_server(host, port, app, server_class=_Server, handler_class=_Handler)


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
