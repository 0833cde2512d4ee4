"""Real SMTP servers (aiosmtpd) on 127.0.0.1 for tests: recording, TLS, AUTH, misbehaving on cue.

Fixtures: `smtp_server` (a plain recording server), `smtp_server_factory` (any variant: TLS,
AUTH, refusals, dropped connections), `closed_port` (a port where nobody listens). Bind them
in a test module (`smtp_server = smtp_server_module.smtp_server`) or register this module in
conftest.py (`pytest_plugins = ["smtp_server"]`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from outreach.model.config import Delivery

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]  # e.g. SIZE=1234, BODY=8BITMIME, SMTPUTF8
    data: bytes  # the DATA bytes as stored: CRLF lines, transparent dots removed
    connection: int  # which connection carried it, 0-based in order of first MAIL
    login: str | None  # the user the connection had logged in as


class RecordingHandler:
    """Accepts and records every message; the keyword arguments make it misbehave on purpose.

    refuse_mail: replies given, in order, to the first MAIL commands (e.g. ["421 4.3.2 busy"]).
    refuse_rcpt: address → the reply that refuses it, every time.
    refuse_data: replies given, in order, to the first completed DATA (those are not recorded).
    drop_every: close the connection after this many messages on it (after the 250).
    vanish_at: the n-th accepted message (1-based) is recorded, then the connection is cut
        before the reply, so the client cannot know it was delivered.
    data_delay_s: wait this long before replying to each DATA (to make a client time out).
    require_login: refuse MAIL with 530 until the client has logged in.
    pipelining: offer PIPELINING (RFC 2920) in the EHLO reply (aiosmtpd reads commands one line
        at a time, so it serves pipelined commands as they come).
    refuse_mail_at / refuse_data_at: the n-th MAIL command / completed DATA (1-based) → a reply
        refusing it.
    """

    def __init__(
        self,
        *,
        refuse_mail: Sequence[str] = (),
        refuse_rcpt: Mapping[str, str] | None = None,
        refuse_data: Sequence[str] = (),
        drop_every: int | None = None,
        vanish_at: int | None = None,
        data_delay_s: float = 0.0,
        require_login: bool = False,
        pipelining: bool = False,
        refuse_mail_at: Mapping[int, str] | None = None,
        refuse_data_at: Mapping[int, str] | None = None,
    ) -> None:
        self.refuse_mail = list(refuse_mail)
        self.refuse_rcpt = dict(refuse_rcpt or {})
        self.refuse_data = list(refuse_data)
        self.drop_every = drop_every
        self.vanish_at = vanish_at
        self.data_delay_s = data_delay_s
        self.require_login = require_login
        self.pipelining = pipelining
        self.refuse_mail_at = dict(refuse_mail_at or {})
        self.refuse_data_at = dict(refuse_data_at or {})
        self.datas = 0  # completed DATA seen, refused ones included
        # Per MAIL command: had the client already sent the rest of the envelope (DATA) with it?
        self.pipelined: list[bool] = []
        self.messages: list[ReceivedMessage] = []
        self.mail_commands = 0  # MAIL FROM commands seen, refused ones included
        self.quits = 0  # QUIT commands seen
        self._sessions: list[Session] = []
        self._per_session: list[int] = []
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        """How many connections carried at least one MAIL command."""
        return len(self._sessions)

    def _connection(self, session: Session) -> int:
        for index, known in enumerate(self._sessions):
            if known is session:
                return index
        self._sessions.append(session)
        self._per_session.append(0)
        return len(self._sessions) - 1

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self._lock:
            self._connection(session)
            self.mail_commands += 1
            # What the server had read but not yet handled when MAIL came (a test's peek).
            waiting = bytes(getattr(server._reader, "_buffer", b""))
            self.pipelined.append(b"DATA\r\n" in waiting)
            if self.require_login and not session.authenticated:
                return "530 5.7.0 Authentication required"
            if self.refuse_mail:
                return self.refuse_mail.pop(0)
            if self.mail_commands in self.refuse_mail_at:
                return self.refuse_mail_at[self.mail_commands]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        with self._lock:
            self.datas += 1
            if self.refuse_data:
                return self.refuse_data.pop(0)
            if self.datas in self.refuse_data_at:
                return self.refuse_data_at[self.datas]
            connection = self._connection(session)
            auth = session.auth_data
            assert envelope.mail_from is not None
            assert isinstance(envelope.original_content, bytes)
            self.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    mail_options=tuple(envelope.mail_options),
                    data=envelope.original_content,
                    connection=connection,
                    login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                )
            )
            self._per_session[connection] += 1
            on_this_connection = self._per_session[connection]
            accepted = len(self.messages)
        transport = server.transport
        assert isinstance(transport, asyncio.Transport)
        if self.vanish_at is not None and accepted == self.vanish_at:
            transport.abort()  # the reply below goes nowhere
        elif self.drop_every is not None and on_this_connection % self.drop_every == 0:
            # After the 250 below has been written: close() flushes what is buffered first.
            asyncio.get_running_loop().call_soon(transport.close)
        return "250 2.0.0 OK queued"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.quits += 1
        return "221 Bye"


class SinkHandler:
    """Accepts every message and keeps only a count (for benchmarks)."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        return "250 OK"


def password_authenticator(users: Mapping[str, str]) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator accepting exactly these user → password pairs."""

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        ok = users.get(user) == auth_data.password.decode("utf-8", "replace")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    """A running server, what it recorded, and a Delivery config that reaches it."""

    host: str
    port: int
    handler: RecordingHandler
    security: Literal["starttls", "ssl", "none"]
    ca_file: Path | None
    controller: Controller = field(repr=False)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every message accepted so far, in order."""
        return self.handler.messages

    def delivery(self, **overrides: Any) -> Delivery:
        """A `delivery: smtp` config for this server (small timeout), with overrides."""
        values: dict[str, Any] = {
            "method": "smtp",
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "ca_file": self.ca_file,
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return Delivery(**values)


@contextmanager
def running_smtp_server(
    *,
    handler: RecordingHandler | None = None,
    security: Literal["starttls", "ssl", "none"] = "none",
    ca: trustme.CA | None = None,
    ca_file: Path | None = None,
    users: Mapping[str, str] | None = None,
    cert_names: Sequence[str] = (HOST, "localhost"),
) -> Iterator[SmtpServer]:
    """Start an aiosmtpd server on 127.0.0.1 (TLS needs `ca`; AUTH when `users` is given)."""
    handler = handler if handler is not None else RecordingHandler()
    kwargs: dict[str, Any] = {}
    if security != "none":
        if ca is None:
            raise ValueError("a TLS server needs a CA to issue its certificate")
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*cert_names).configure_cert(server_context)
        if security == "ssl":
            kwargs["ssl_context"] = server_context
        else:
            kwargs["tls_context"] = server_context
            kwargs["require_starttls"] = True
    if users is not None:
        kwargs["authenticator"] = password_authenticator(users)
        if security == "none":
            # aiosmtpd warns about AUTH required without TLS; the handler enforces it instead.
            kwargs["auth_require_tls"] = False
            handler.require_login = True
        else:
            kwargs["auth_required"] = True
    controller: Controller | None = None
    for _ in range(5):  # another test may grab the free port before the server binds it
        candidate = Controller(handler, hostname=HOST, port=free_port(), **kwargs)
        try:
            candidate.start()
        except OSError:
            continue
        controller = candidate
        break
    if controller is None:
        raise RuntimeError("could not start the test SMTP server")
    try:
        yield SmtpServer(
            host=HOST,
            port=controller.port,
            handler=handler,
            security=security,
            ca_file=ca_file,
            controller=controller,
        )
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain (no TLS, no AUTH) server recording every message."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def smtp_server_factory(tmp_path: Path) -> Iterator[Callable[..., SmtpServer]]:
    """start(handler=, security=, users=, cert_names=) → a running server, stopped after the test.

    TLS servers share one throwaway CA per test; `server.ca_file` is its certificate (PEM).
    """
    ca_file = tmp_path / "smtp-ca.pem"
    cas: list[trustme.CA] = []

    def start(
        *,
        handler: RecordingHandler | None = None,
        security: Literal["starttls", "ssl", "none"] = "none",
        users: Mapping[str, str] | None = None,
        cert_names: Sequence[str] = (HOST, "localhost"),
    ) -> SmtpServer:
        if security != "none" and not cas:
            cas.append(trustme.CA())
            cas[0].cert_pem.write_to_path(str(ca_file))
        return stack.enter_context(
            running_smtp_server(
                handler=handler,
                security=security,
                ca=cas[0] if cas else None,
                ca_file=ca_file if security != "none" else None,
                users=users,
                cert_names=cert_names,
            )
        )

    with ExitStack() as stack:
        yield start


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where no server listens (connections are refused)."""
    return free_port()
