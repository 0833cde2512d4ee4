"""SMTP delivery: one reused connection, retries with backoff, a rate limit kept across runs.

Exactly-once rests on the order of events around DATA. `on_sending` runs after the server has
accepted the envelope and right before DATA, so the runner can mark the message `sending`; the
result says `sent` only after the server's 250 to the end of the data. A failure before the
last byte of the message is written leaves nothing at the server, so the message may be tried
again; a connection lost after it (no reply, or a timeout waiting for one) is `uncertain` and is
never retried here, because the server may have queued it.

Over a server that offers PIPELINING (RFC 2920) `push_all` spends one round trip per message:
each write carries the data of the message whose envelope was just accepted and the envelope
(MAIL, RCPT, DATA) of the next one, and the replies are read and matched after. `on_sending`
still runs before the data of its message is written, so the ledger says `sending` before the
server can have it. Several connections (`delivery.connections`) are several deliverers, one per
thread, sharing one `SendRate`.
"""

from __future__ import annotations

import json
import math
import os
import re
import smtplib
import socket
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Final

from outreach.deliver.base import DeliveryResult
from outreach.i18n import N_, _, ngettext
from outreach.model.config import Delivery
from outreach.model.errors import DeliveryError
from outreach.render.email import RenderedEmail

DEFAULT_PORTS: Final = {"ssl": 465, "starttls": 587, "none": 25}
BACKOFF_BASE_S: Final = 1.0
BACKOFF_FACTOR: Final = 2.0
BACKOFF_CAP_S: Final = 60.0
RATE_WINDOW_S: Final = 60

_CRLF: Final = b"\r\n"
# One plain address: no spaces, controls or characters that would end or add an envelope field.
_NOT_IN_ADDRESS = '\x00-\x20\x7f-\x9f<>()\\[\\],;:"\\\\@\u2028\u2029'
_ENVELOPE_ADDRESS: Final = re.compile(f"[^{_NOT_IN_ADDRESS}]+@[^{_NOT_IN_ADDRESS}]+")


def password_from_env(delivery: Delivery, environ: Mapping[str, str]) -> str | None:
    """The SMTP password from the variable named by `delivery.password_env` (None if unnamed)."""
    name = delivery.password_env
    if not name:
        return None
    value = environ.get(name)
    if not value:
        message = (
            _("the environment variable {name} (delivery.password_env) is empty")
            if value is not None
            else _("the environment variable {name} (delivery.password_env) is not set")
        )
        raise DeliveryError(
            message.format(name=name),
            field="delivery.password_env",
            hint=_(
                "set {name} to the SMTP password in the environment that runs outreach "
                "(for cron, in the crontab or the script it calls)"
            ).format(name=name),
        )
    return value


def backoff_s(retry: int) -> float:
    """The pause before retry number `retry` (0-based): 1 s, 2 s, 4 s ... capped at a minute."""
    return float(min(BACKOFF_BASE_S * BACKOFF_FACTOR**retry, BACKOFF_CAP_S))


class SendingStoppedError(DeliveryError):
    """Too many messages in a row failed; `result` is the last one's (None if none was tried)."""

    def __init__(self, message: str, *, result: DeliveryResult | None, hint: str) -> None:
        super().__init__(message, transient=True, hint=hint)
        self.result = result


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failed attempt at one message."""

    error: str  # recorded with the message
    cause: str  # what the server did, for the message that stops the run
    transient: bool
    # The server closed a connection that had already carried mail (idle timeout, a limit of
    # messages per connection): reconnect and try again at once, without counting a retry.
    stale: bool = False


class _Fatal(Exception):
    """A problem no retry can fix (TLS, login): stop at once with this error."""

    def __init__(self, error: DeliveryError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class SmtpHooks:
    """What a connection calls out to: before each message's data, for each envelope sender,
    and at each pause."""

    # Called right before the data goes: from then on the message may have arrived.
    on_sending: Callable[[RenderedEmail], None] | None = None
    # The MAIL FROM address for a message (None: its From).
    envelope_sender: Callable[[RenderedEmail], str | None] | None = None
    # `on_wait(seconds, why)` hears of each pause first (why: rate_limit or retry).
    on_wait: Callable[[float, str], None] | None = None


_NO_HOOKS: Final = SmtpHooks()


class SmtpDeliverer:
    """Sends RenderedEmails over one SMTP connection."""

    def __init__(
        self,
        *,
        delivery: Delivery,
        password: str | None,
        hooks: SmtpHooks = _NO_HOOKS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rate_state_path: Path | None = None,
        rate: SendRate | None = None,
    ) -> None:
        """`hooks` are called as each message goes; `rate` is a limit shared with other
        connections (else one is made from the settings)."""
        if not delivery.host:
            raise DeliveryError(
                _("SMTP delivery needs a server"),
                field="delivery.host",
                hint=_("set delivery.host (and delivery.port) in config.yaml"),
            )
        if delivery.username and not password:
            raise DeliveryError(
                _("delivery.username is {username} but there is no password").format(
                    username=repr(delivery.username)
                ),
                field="delivery.password_env",
                hint=_(
                    "name the environment variable holding the password in delivery.password_env"
                ),
            )
        self._delivery = delivery
        self._host = delivery.host
        self._port = delivery.port or DEFAULT_PORTS[delivery.security]
        self._where = f"{self._host}:{self._port}"
        self._password = password
        self._on_sending = hooks.on_sending
        # hook: the VERP return path (config bounces.return_path) as MAIL FROM, else From
        self._envelope_sender = hooks.envelope_sender
        # hook: a progress bar shows the pauses (issue 13)
        self._sleep = _announced(sleep, hooks.on_wait, "retry")
        self._clock = clock
        self._rate = rate
        if rate is None and delivery.rate_per_minute:
            self._rate = SendRate(
                per_minute=delivery.rate_per_minute,
                path=rate_state_path,
                clock=clock,
                sleep=_announced(sleep, hooks.on_wait, "rate_limit"),
            )
        self._smtp: smtplib.SMTP | None = None
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None  # found once, not once per connection
        self._mails_on_connection = 0
        # Mid-transaction (an exception from on_sending, an interrupt): QUIT would be read as
        # part of the message, so close() just hangs up.
        self._busy = False
        self._consecutive_failures = 0
        self._fatal: DeliveryError | None = None  # a TLS or login problem: every push fails
        self._stopped: str | None = None  # too many failures in a row

    def __enter__(self) -> SmtpDeliverer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def push(self, message: RenderedEmail) -> DeliveryResult:
        """Send one message (retrying transient failures); raise DeliveryError to stop the run."""
        return self._push(message, retries=0)

    def _push(self, message: RenderedEmail, *, retries: int) -> DeliveryResult:
        """push(), `retries` attempts having failed transiently already (the pause comes first)."""
        if self._fatal is not None:
            raise self._fatal
        if self._stopped is not None:
            raise SendingStoppedError(self._stopped, result=None, hint=_(_STOPPED_HINT))
        key = (message.contact_id, message.campaign, message.occurrence_key)
        problem = _envelope_problem(message)
        if problem is not None:
            return self._count(
                DeliveryResult(key, "failed", error=problem),
                cause=_not_tried(problem),
            )
        body = _data_body(message.data)
        if retries:
            self._sleep(backoff_s(retries - 1))
        reconnected = False
        while True:
            try:
                outcome = self._attempt(message, body)
            except _Fatal as fatal:
                self._fatal = fatal.error
                raise fatal.error from None
            if isinstance(outcome, DeliveryResult):
                return self._count(outcome)
            if outcome.stale and not reconnected:
                reconnected = True
                continue
            if outcome.transient and retries < self._delivery.max_retries:
                self._sleep(backoff_s(retries))
                retries += 1
                continue
            attempts = retries + 1
            error = outcome.error
            if outcome.transient and attempts > 1:
                error = _("gave up after {n} attempts: {error}").format(n=attempts, error=error)
            result = DeliveryResult(key, "failed", error=error, transient=outcome.transient)
            return self._count(result, cause=outcome.cause)

    def close(self) -> None:
        """Say QUIT and close the connection (if one is open)."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if self._busy:
            self._busy = False
            smtp.close()
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the server went away first: nothing is lost by not saying goodbye
        finally:
            smtp.close()

    def push_all(self, messages: Iterator[RenderedEmail]) -> Iterator[DeliveryResult]:
        """Send every message `messages` yields, yielding each one's result once it is known.

        Messages are pulled one at a time, when the connection has room for one more, so
        several deliverers may share one iterator (each message goes by one connection only).
        Over a server offering PIPELINING each message costs one round trip; otherwise, and for
        the first message on each connection, this is push() in a loop.
        """
        again: deque[RenderedEmail] = deque()  # lost with a connection before their data
        later: deque[RenderedEmail] = deque()  # refused for now: tried again after a pause
        exhausted = False
        while True:
            if again:
                yield self.push(again.popleft())  # reconnects; nothing of it reached the server
            elif exhausted:
                break
            elif self._pipelining():
                exhausted = yield from self._pipeline(messages, again=again, later=later)
            else:
                message = next(messages, None)
                if message is None:
                    exhausted = True
                else:
                    yield self.push(message)
        while later:
            yield self._push(later.popleft(), retries=1)

    def _pipelining(self) -> bool:
        smtp = self._smtp
        return self._delivery.pipelining and smtp is not None and smtp.has_extn("pipelining")

    def _pipeline(
        self,
        messages: Iterator[RenderedEmail],
        *,
        again: deque[RenderedEmail],
        later: deque[RenderedEmail],
    ) -> Generator[DeliveryResult, None, bool]:
        """RFC 2920 on the open connection until `messages` ends (True) or the connection is
        lost (False). Each turn writes [RSET] [data of the accepted message] [next envelope]
        and reads the replies in the same order."""
        smtp = self._smtp
        assert smtp is not None and smtp.sock is not None
        ready: _Envelope | None = None  # envelope accepted with 354: its data goes next
        held: _Envelope | None = None  # taken, waiting for the rate limit
        rset = False  # a refused transaction is still open at the server
        exhausted = False
        while True:
            nxt, held = held, None
            while nxt is None and not exhausted:
                message = next(messages, None)
                if message is None:
                    exhausted = True
                    break
                envelope = self._envelope(smtp, message)
                if isinstance(envelope, DeliveryResult):
                    yield self._count(envelope, cause=_not_tried(envelope.error))
                else:
                    nxt = envelope
            if nxt is not None and self._rate is not None:
                # With data to send, send it now rather than hold its open transaction while
                # the budget refills (servers time out an idle DATA).
                if ready is not None and self._rate.wait_s() > 0:
                    nxt, held = None, nxt
                else:
                    self._rate.acquire()
            if ready is None and nxt is None and not rset:
                if held is not None:
                    continue
                self._busy = False
                return True
            parts: list[bytes] = []
            if rset:
                parts.append(b"RSET\r\n")
            sent_data, ready = ready, None  # its data goes in this write
            body_end = 0
            self._busy = True
            if sent_data is not None:
                if self._on_sending is not None:
                    self._on_sending(sent_data.message)  # if it raises, close() hangs up
                parts.append(sent_data.body)
                body_end = sum(map(len, parts))
            if nxt is not None:
                self._mails_on_connection += 1
                parts.append(nxt.commands)
            written, write_error = _write(smtp.sock, b"".join(parts))
            results: list[tuple[DeliveryResult, str | None]] = []
            data_settled = sent_data is None
            hang_up = False
            try:
                if write_error is not None:
                    raise write_error
                if rset:
                    rset = False
                    code, reply = _reply(smtp)
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, reply)
                if sent_data is not None:
                    code, reply = _reply(smtp)
                    data_settled = True
                    if code == 250:
                        results.append((DeliveryResult(_key(sent_data.message), "sent"), None))
                    else:
                        # The server refused the data itself: nothing was queued.
                        self._settle(
                            sent_data, _refusal(code, reply, _("the message")), results, later
                        )
                        if code == 421:
                            raise smtplib.SMTPServerDisconnected(
                                "closing"
                            )  # not translated: never shown, stands for the 421
                if nxt is not None:
                    ready, rset, hang_up = self._envelope_replies(smtp, nxt, results, later)
                    nxt = None
            except (smtplib.SMTPException, OSError) as exc:
                hang_up = True
                if not data_settled and sent_data is not None:
                    if written >= body_end:  # all of it went: the server may have queued it
                        results.append((self._uncertain(_key(sent_data.message), exc), None))
                    else:
                        again.append(sent_data.message)  # cut short: nothing was queued
                for pending in (nxt, held):
                    if pending is not None:
                        again.append(pending.message)  # only its envelope went, if anything
            if hang_up:
                self._busy = False
                self._drop()
            for result, cause in results:
                yield self._count(result, cause=cause)
            if hang_up:
                return False

    def _envelope(self, smtp: smtplib.SMTP, message: RenderedEmail) -> _Envelope | DeliveryResult:
        """The pipelined commands and the data of one message, or why it cannot be sent."""
        problem = _envelope_problem(message)
        if problem is not None:
            return DeliveryResult(_key(message), "failed", error=problem)
        options = _mail_options(smtp, message)
        if isinstance(options, _Failure):
            return DeliveryResult(_key(message), "failed", error=options.error)
        # hook: bounces go to the VERP address when there is one
        sender = (self._envelope_sender and self._envelope_sender(message)) or message.from_addr
        lines = [f"MAIL FROM:<{sender}>{options}"]
        lines += [f"RCPT TO:<{rcpt}>" for rcpt in message.to_addrs]
        lines.append("DATA")
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        commands = "".join(f"{line}\r\n" for line in lines).encode(encoding)
        return _Envelope(message, sender, commands, _data_body(message.data))

    def _envelope_replies(
        self,
        smtp: smtplib.SMTP,
        envelope: _Envelope,
        results: list[tuple[DeliveryResult, str | None]],
        later: deque[RenderedEmail],
    ) -> tuple[_Envelope | None, bool, bool]:
        """Read the replies to MAIL, each RCPT and DATA: (the envelope if its data may follow,
        whether a transaction is left open that needs RSET, whether to hang up)."""
        # RFC 2920 3.1: every reply is read and checked, whatever the ones before said.
        mail = _reply(smtp)
        rcpts = [(rcpt, *_reply(smtp)) for rcpt in envelope.message.to_addrs]
        data_code, data_reply = _reply(smtp)
        refused = [(rcpt, code, reply) for rcpt, code, reply in rcpts if code not in (250, 251)]
        closing = 421 in (mail[0], data_code, *(code for _, code, _ in refused))
        if data_code == 354 and mail[0] == 250 and not refused:
            return envelope, False, False
        failure: _Failure
        if mail[0] != 250:
            failure = _refusal(*mail, _("the sender {address}").format(address=envelope.sender))
        elif refused:
            failure = _recipients_refusal(refused)
        else:
            failure = _refusal(data_code, data_reply, "DATA")
        if closing:
            # The server is closing the channel (RFC 5321 3.8): nothing of this message was
            # queued, so it goes again on a new connection like any stale one.
            raise smtplib.SMTPServerDisconnected(failure.cause)
        self._settle(envelope, failure, results, later)
        if data_code == 354:
            if len(refused) < len(rcpts):
                # Some recipients were accepted and the server waits for the data: hanging up
                # is the only way to send nothing (a lone "." would deliver an empty message).
                return None, False, True
            # RFC 2920 3.1: DATA accepted although no recipient was: send a single dot (an
            # empty message to nobody, which the server refuses), then RSET.
            _write_or_raise(smtp, b".\r\n")
            _reply(smtp)
        return None, mail[0] == 250, False

    def _settle(
        self,
        envelope: _Envelope,
        failure: _Failure,
        results: list[tuple[DeliveryResult, str | None]],
        later: deque[RenderedEmail],
    ) -> None:
        """A refusal: tried again after the pause if it may pass, else failed now."""
        if failure.transient and self._delivery.max_retries > 0:
            later.append(envelope.message)
            return
        result = DeliveryResult(
            _key(envelope.message), "failed", error=failure.error, transient=failure.transient
        )
        results.append((result, failure.cause))

    # -- one attempt ------------------------------------------------------------------------

    def _attempt(self, message: RenderedEmail, body: bytes) -> DeliveryResult | _Failure:
        reused = self._smtp is not None and self._mails_on_connection > 0
        try:
            smtp = self._connection()
            if self._rate is not None:
                self._rate.acquire()
            self._busy = True
            outcome = self._transaction(smtp, message, body)
            self._busy = False
            return outcome
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            failure = self._failure_from(exc)
            stale = reused and failure.transient and isinstance(exc, smtplib.SMTPServerDisconnected)
            return _Failure(failure.error, failure.cause, failure.transient, stale=stale)

    def _transaction(
        self, smtp: smtplib.SMTP, message: RenderedEmail, body: bytes
    ) -> DeliveryResult | _Failure:
        key = (message.contact_id, message.campaign, message.occurrence_key)
        reused = self._mails_on_connection > 0
        self._mails_on_connection += 1
        options = _mail_options(smtp, message)
        if isinstance(options, _Failure):
            return options
        # The envelope is written here, not by smtplib.mail/rcpt: they re-parse each address
        # (email.utils.parseaddr) and could turn a malformed one into some other address.
        # hook: bounces go to the VERP address when there is one
        sender = (self._envelope_sender and self._envelope_sender(message)) or message.from_addr
        code, reply = smtp.docmd("MAIL", f"FROM:<{sender}>{options}")
        if code != 250:
            return self._refused(
                smtp, code, reply, _("the sender {address}").format(address=sender), reused=reused
            )
        refused: list[tuple[str, int, bytes]] = []
        for rcpt in message.to_addrs:
            code, reply = smtp.docmd("RCPT", f"TO:<{rcpt}>")
            if code not in (250, 251):
                refused.append((rcpt, code, reply))
                if code == 421:
                    break
        if refused:
            return self._refused_recipients(smtp, refused)
        if self._on_sending is not None:
            try:
                self._on_sending(message)
            except BaseException:
                self._reset(smtp)  # leave the connection usable for whoever handles this
                self._busy = False
                raise
        code, reply = smtp.docmd("DATA")
        if code != 354:
            return self._refused(smtp, code, reply, "DATA", reused=False)
        # If writing fails part-way the server never saw the final "." line, so nothing was
        # queued and SMTPServerDisconnected (caught by _attempt) makes it a transient failure.
        smtp.send(body)
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return self._uncertain(key, exc)
        if code == 250:
            return DeliveryResult(key, "sent")
        if code < 0:
            self._drop()
            return self._uncertain(key, smtplib.SMTPResponseException(code, reply))
        # The server refused the data itself: the transaction is over and nothing was queued.
        return self._refused(smtp, code, reply, _("the message"), reused=False, reset=False)

    def _uncertain(self, key: tuple[str, str, str], exc: BaseException) -> DeliveryResult:
        return DeliveryResult(
            key,
            "uncertain",
            error=_(
                "the connection to {server} was lost after the message was handed over "
                "and before the server confirmed it ({cause}); it may have been "
                "delivered, so it is not sent again automatically"
            ).format(server=self._where, cause=_describe_exception(exc)),
        )

    def _refused(
        self,
        smtp: smtplib.SMTP,
        code: int,
        reply: bytes,
        what: str,
        *,
        reused: bool,
        reset: bool = True,
    ) -> _Failure:
        if code == 421:
            self._drop()  # RFC 5321 3.8: the server is closing the channel
        elif reset:
            self._reset(smtp)
        failure = _refusal(code, reply, what)
        return replace(failure, stale=reused and code == 421)

    def _refused_recipients(
        self, smtp: smtplib.SMTP, refused: list[tuple[str, int, bytes]]
    ) -> _Failure:
        if any(code == 421 for _, code, _ in refused):
            self._drop()
        else:
            self._reset(smtp)
        return _recipients_refusal(refused)

    def _count(self, result: DeliveryResult, *, cause: str | None = None) -> DeliveryResult:
        if result.status == "sent":
            self._consecutive_failures = 0
            return result
        self._consecutive_failures += 1
        if self._consecutive_failures < self._delivery.max_consecutive_failures:
            return result
        n = self._consecutive_failures
        reason = cause or _("lost the connection before confirming a message")
        self._stopped = ngettext(
            "stopped sending after {n} consecutive failure: the server at {server} {reason}",
            "stopped sending after {n} consecutive failures: the server at {server} {reason}",
            n,
        ).format(n=n, server=self._where, reason=reason)
        self.close()
        raise SendingStoppedError(self._stopped, result=result, hint=_(_STOPPED_HINT))

    # -- the connection ---------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._connect()
            self._mails_on_connection = 0
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        delivery = self._delivery
        # The constructor connects (and reads the greeting): TLS needs the host name it was
        # given there for certificate checks. On failure smtplib closes the socket itself.
        smtp: smtplib.SMTP
        if delivery.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                self._host,
                self._port,
                local_hostname=self._local_hostname,
                timeout=delivery.timeout_s,
                context=self._tls_context(),
            )
        else:
            smtp = smtplib.SMTP(
                self._host,
                self._port,
                local_hostname=self._local_hostname,
                timeout=delivery.timeout_s,
            )
        try:
            self._local_hostname = smtp.local_hostname
            smtp.ehlo_or_helo_if_needed()
            if delivery.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise _Fatal(
                        self._error(
                            _("the server does not offer STARTTLS"),
                            field="delivery.security",
                            hint=_(
                                "use port 587 with security: starttls or port 465 with security: "
                                "ssl; security: none only on a trusted network"
                            ),
                        )
                    )
                smtp.starttls(context=self._tls_context())
                smtp.ehlo_or_helo_if_needed()  # RFC 3207: forget what was said before TLS
            if delivery.username:
                self._login(smtp, delivery.username)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _login(self, smtp: smtplib.SMTP, username: str) -> None:
        assert self._password is not None  # checked in __init__
        hint = (
            _("check delivery.username and the password in ${variable}").format(
                variable=self._delivery.password_env
            )
            if self._delivery.password_env
            else _("check delivery.username and the password")
        )
        try:
            smtp.login(username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise  # "454 temporary authentication failure": worth another try
            text = _reply_text(exc.smtp_code, exc.smtp_error)
            raise _Fatal(
                self._error(
                    _("the server rejected the login for {username}: {reply}").format(
                        username=repr(username), reply=text
                    ),
                    field="delivery.username",
                    hint=hint,
                )
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise _Fatal(
                self._error(
                    _("the server does not offer a login (AUTH) on this connection"),
                    field="delivery.username",
                    hint=_(
                        "most servers offer it only after STARTTLS: use security: starttls or "
                        "ssl, or remove delivery.username if the server needs no login"
                    ),
                )
            ) from None
        except smtplib.SMTPResponseException:
            raise
        except smtplib.SMTPException as exc:  # "No suitable authentication method found."
            raise _Fatal(
                self._error(
                    _("cannot log in: {error}").format(error=exc),
                    field="delivery.username",
                    hint=_(
                        "the server offers no login method outreach knows (PLAIN, LOGIN, CRAM-MD5)"
                    ),
                )
            ) from None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            ca_file = self._delivery.ca_file
            try:
                self._tls = ssl.create_default_context(
                    cafile=str(ca_file) if ca_file is not None else None
                )
            except (OSError, ssl.SSLError) as exc:
                raise _Fatal(
                    self._error(
                        _("cannot read the CA certificate {path}: {error}").format(
                            path=ca_file, error=_describe_exception(exc)
                        ),
                        field="delivery.ca_file",
                        hint=_(
                            "name a PEM file holding the certificate of the CA that signed the "
                            "server's certificate"
                        ),
                    )
                ) from None
        return self._tls

    def _error(self, message: str, *, field: str, hint: str) -> DeliveryError:
        return DeliveryError(f"{message} ({self._where})", field=field, hint=hint)

    def _failure_from(self, exc: BaseException) -> _Failure:
        """What an exception while connecting or talking to the server means for this message."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise _Fatal(
                self._error(
                    _("the server's certificate could not be verified: {error}").format(
                        error=exc.verify_message
                    ),
                    field="delivery.ca_file",
                    hint=_(
                        "if the server's certificate is signed by a private CA, name that CA's "
                        "certificate in delivery.ca_file; check delivery.host is the name on the "
                        "certificate"
                    ),
                )
            ) from None
        if isinstance(exc, ssl.SSLError) and not isinstance(
            exc, ssl.SSLEOFError | ssl.SSLZeroReturnError
        ):
            raise _Fatal(
                self._error(
                    _("the TLS handshake failed: {error}").format(error=_describe_exception(exc)),
                    field="delivery.security",
                    hint=_("port 465 usually wants security: ssl and port 587 security: starttls"),
                )
            ) from None
        if isinstance(exc, smtplib.SMTPResponseException):
            text = _reply_text(exc.smtp_code, exc.smtp_error)
            cause = _("answered {reply}").format(reply=text)
            return _Failure(_server_did(self._where, cause), cause, transient=exc.smtp_code < 500)
        if isinstance(exc, ConnectionRefusedError):
            cause = _("refused the connection")
        elif _is_timeout(exc):
            cause = _("did not answer within {seconds} s").format(
                seconds=f"{self._delivery.timeout_s:g}"
            )
        elif isinstance(exc, smtplib.SMTPServerDisconnected):
            cause = _("closed the connection")
        else:
            cause = _("could not be reached ({error})").format(error=_describe_exception(exc))
        return _Failure(_server_did(self._where, cause), cause, transient=True)

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        """Forget the connection without a goodbye (it is broken or the server is closing it)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


@dataclass(frozen=True, slots=True)
class _Envelope:
    """One message ready to pipeline: its commands up to DATA, and its data."""

    message: RenderedEmail
    sender: str
    commands: bytes
    body: bytes


def _key(message: RenderedEmail) -> tuple[str, str, str]:
    return (message.contact_id, message.campaign, message.occurrence_key)


def _not_tried(problem: str | None) -> str:
    """Why a message was not tried at all, as the cause that may stop the sending."""
    return _("was not tried: {problem}").format(problem=problem)


def _server_did(where: str, cause: str) -> str:
    """ "the server at HOST:PORT <cause>", the cause a clause of its own ("refused the connection")."""
    return _("the server at {server} {cause}").format(server=where, cause=cause)


def _refusal(code: int, reply: bytes, what: str) -> _Failure:
    """The server refused `what` ("the message", "the sender ADDRESS", "DATA")."""
    text = _reply_text(code, reply)
    return _Failure(
        _("the server refused {what}: {reply}").format(what=what, reply=text),
        _("refused {what}: {reply}").format(what=what, reply=text),
        transient=code < 500,
    )


def _recipients_refusal(refused: list[tuple[str, int, bytes]]) -> _Failure:
    # All or nothing: sending to the accepted recipients only would make a retry (for the
    # others) a second copy for them.
    texts = "; ".join(f"{rcpt}: {_reply_text(code, reply)}" for rcpt, code, reply in refused)
    n = len(refused)
    return _Failure(
        refused_recipients_message(n).format(refused=texts),
        ngettext("refused the recipient {refused}", "refused the recipients {refused}", n).format(
            refused=texts
        ),
        transient=all(400 <= code < 500 for _, code, _ in refused),
    )


def _write(sock: socket.socket, data: bytes) -> tuple[int, OSError | None]:
    """Write all of `data`: (bytes written, the error that stopped it or None)."""
    view = memoryview(data)
    written = 0
    try:
        while written < len(data):
            written += sock.send(view[written:])
    except OSError as exc:
        return written, exc
    return written, None


def _write_or_raise(smtp: smtplib.SMTP, data: bytes) -> None:
    assert smtp.sock is not None
    _written, error = _write(smtp.sock, data)
    if error is not None:
        raise error


def _reply(smtp: smtplib.SMTP) -> tuple[int, bytes]:
    """The next reply; a garbled one means the stream cannot be trusted any more."""
    code, reply = smtp.getreply()
    if code < 0:
        raise smtplib.SMTPResponseException(code, reply)
    return code, reply


def refused_recipients_message(n: int) -> str:
    """The sentence for `n` refused recipients, "{refused}" still in it (feedback.refusals reads
    the one-recipient form back, in the language it was said in)."""
    return ngettext(
        "the server refused the recipient {refused}",
        "the server refused the recipients {refused}",
        n,
    )


_STOPPED_HINT = N_(
    "check that the SMTP server is up and the delivery settings are right; the failed messages "
    "are tried again on the next run inside their window"
)


def _data_body(data: bytes) -> bytes:
    """The message as it goes on the wire after DATA: CRLF lines, dots doubled, the final '.'."""
    # RenderedEmail promises CRLF already; the counts confirm it cheaply before any rewrite.
    if not data.count(b"\n") == data.count(b"\r") == data.count(_CRLF):
        data = data.replace(_CRLF, b"\n").replace(b"\r", b"\n").replace(b"\n", _CRLF)
    # RFC 5321 4.5.2: a line starting with "." gets another one, which the server removes.
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(_CRLF):
        data += _CRLF
    return data + b".\r\n"


def _envelope_problem(message: RenderedEmail) -> str | None:
    """Why the envelope cannot be sent as it is, or None."""
    if not message.to_addrs:
        return _("the message has no recipients")
    if not _ENVELOPE_ADDRESS.fullmatch(message.from_addr):
        return _("invalid sender address {address}").format(address=repr(message.from_addr))
    for rcpt in message.to_addrs:
        if not _ENVELOPE_ADDRESS.fullmatch(rcpt):
            return _("invalid recipient address {address}").format(address=repr(rcpt))
    return None


def _mail_options(smtp: smtplib.SMTP, message: RenderedEmail) -> str | _Failure:
    """The MAIL FROM parameters (with a leading space each) the server understands."""
    options = ""
    if smtp.has_extn("size"):
        options += f" SIZE={len(message.data)}"  # RFC 1870: lets the server refuse at once
    if not message.data.isascii() and smtp.has_extn("8bitmime"):
        options += " BODY=8BITMIME"
    if not all(addr.isascii() for addr in (message.from_addr, *message.to_addrs)):
        if not smtp.has_extn("smtputf8"):
            return _Failure(
                _("the server does not accept addresses with non-ASCII characters (no SMTPUTF8)"),
                _("does not accept non-ASCII addresses"),
                transient=False,
            )
        options += " SMTPUTF8"
        smtp.command_encoding = "utf-8"  # RFC 6531: the commands themselves carry UTF-8
    return options


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}".strip()


def _is_timeout(exc: BaseException) -> bool:
    # smtplib turns a read timeout into SMTPServerDisconnected raised inside the except block.
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_text(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _announced(
    sleep: Callable[[float], None], on_wait: Callable[[float, str], None] | None, why: str
) -> Callable[[float], None]:
    """`sleep`, telling `on_wait` first how long and why (or `sleep` itself without one)."""
    if on_wait is None:
        return sleep

    def pause(seconds: float) -> None:
        on_wait(seconds, why)
        sleep(seconds)

    return pause


class SendRate:
    """At most `per_minute` messages in any 60 s, remembered across runs in a small JSON file.

    Send times are kept as counts per whole second, rounded up, so the file stays small at any
    rate and a message counts for at least the full minute after it was sent. One instance may
    be shared by several connections (threads): a lock makes each acquire whole, and a thread
    waiting for the budget holds it, so the others wait behind it in turn.
    """

    def __init__(
        self,
        *,
        per_minute: int,
        path: Path | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._per_minute = per_minute
        self._path = path
        self._clock = clock
        self._sleep = sleep
        self._seconds: deque[list[int]] = deque(self._load())  # [second, count], oldest first
        self._total = sum(count for _, count in self._seconds)
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        """How long acquire() would wait now (0.0: one more message fits at once)."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            if self._total < self._per_minute:
                return 0.0
            return max(self._seconds[0][0] + RATE_WINDOW_S - now, 0.0)

    def acquire(self) -> None:
        """Wait until one more message fits in the budget, then count it."""
        with self._lock:
            self._acquire()

    def _acquire(self) -> None:
        now = self._clock()
        self._forget(now)
        while self._total >= self._per_minute:
            wait = self._seconds[0][0] + RATE_WINDOW_S - now
            self._sleep(wait)
            # Trust the pause even if the clock did not move (a test's clock, a coarse clock).
            now = max(self._clock(), now + wait)
            self._forget(now)
        second = math.ceil(now)
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += 1
        else:
            self._seconds.append([second, 1])
        self._total += 1
        self._save()

    def _forget(self, now: float) -> None:
        # A send counts while now < second + window. One stamped far ahead of now means the
        # clock was set back: that memory is useless, so forget it rather than wait for it.
        if self._seconds and self._seconds[-1][0] > now + RATE_WINDOW_S:
            self._seconds.clear()
            self._total = 0
        while self._seconds and self._seconds[0][0] + RATE_WINDOW_S <= now:
            self._total -= self._seconds.popleft()[1]

    def _load(self) -> list[list[int]]:
        if self._path is None:
            return []
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # a damaged file only loses the memory of the last minute's sends
        pairs = raw.get("sent_per_second") if isinstance(raw, dict) else None
        if not isinstance(pairs, list):
            return []
        valid = [
            [pair[0], pair[1]]
            for pair in pairs
            if isinstance(pair, list)
            and len(pair) == 2
            and all(type(n) is int for n in pair)
            and pair[1] > 0
        ]
        return sorted(valid)

    def _save(self) -> None:
        if self._path is None:
            return
        text = json.dumps({"per_minute": self._per_minute, "sent_per_second": list(self._seconds)})
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(text)
                Path(tmp).replace(self._path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryError(
                _("cannot write the send-rate state: {error}").format(
                    error=_describe_exception(exc)
                ),
                path=self._path,
                hint=_("check that the state folder is writable"),
            ) from None
