"""SmtpDeliverer against real aiosmtpd servers on 127.0.0.1 (no mocks of smtplib)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import smtp_server as servers
from smtp_server import RecordingHandler, SmtpServer

from outreach.deliver.base import DeliveryResult
from outreach.deliver.smtp import (
    SendingStoppedError,
    SmtpDeliverer,
    SmtpHooks,
    backoff_s,
    password_from_env,
)
from outreach.model.config import Delivery
from outreach.model.errors import DeliveryError
from outreach.render.email import (
    Content,
    RenderedEmail,
    Sender,
    build_message,
    message_id_for,
)

# The aiosmtpd fixtures, used by name.
smtp_server = servers.smtp_server
smtp_server_factory = servers.smtp_server_factory
closed_port = servers.closed_port

StartServer = Callable[..., SmtpServer]
SENDER = "tienda@example.com"


class FakeTime:
    """A clock that only moves when slept on, and remembers every pause."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_email(index: int, *, to: tuple[str, ...] | None = None) -> RenderedEmail:
    """A real multipart message (text + HTML, non-ASCII headers, a line starting with a dot)."""
    contact_id = f"c{index:04d}"
    to_addrs = to if to is not None else (f"cliente{index}@example.org",)
    message_id = message_id_for(
        contact_id=contact_id,
        campaign="birthday",
        occurrence_key="birthday:2026",
        domain="example.com",
    )
    data = build_message(
        sender=Sender(SENDER, name="Panadería Núñez"),
        to_name=f"José Pérez {index}",
        to_addr=to_addrs[0],
        content=Content(
            subject=f"¡Feliz cumpleaños, José {index}!",
            text=f"Hola José,\n.\n..un abrazo\n\nPanadería Núñez ({index})\n",
            html=f"<p>Hola <b>José</b> {index}</p>\n.\n<p>Un abrazo</p>",
        ),
        date=datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        message_id=message_id,
        list_unsubscribe=("https://example.com/u?id=" + contact_id,),
    )
    return RenderedEmail(
        contact_id=contact_id,
        campaign="birthday",
        occurrence_key="birthday:2026",
        message_id=message_id,
        from_addr=SENDER,
        to_addrs=to_addrs,
        subject=f"¡Feliz cumpleaños, José {index}!",
        data=data,
    )


def raw_email(data: bytes, *, to: tuple[str, ...] = ("ana@example.org",)) -> RenderedEmail:
    return RenderedEmail(
        contact_id="raw",
        campaign="test",
        occurrence_key="one_off",
        message_id="raw@example.com",
        from_addr=SENDER,
        to_addrs=to,
        subject="raw",
        data=data,
    )


def deliverer(
    delivery: Delivery,
    time: FakeTime,
    *,
    password: str | None = None,
    on_sending: Callable[[RenderedEmail], None] | None = None,
    **kwargs: Any,
) -> SmtpDeliverer:
    return SmtpDeliverer(
        delivery=delivery,
        password=password,
        hooks=SmtpHooks(on_sending=on_sending),
        clock=time.clock,
        sleep=time.sleep,
        **kwargs,
    )


def key(message: RenderedEmail) -> tuple[str, str, str]:
    return (message.contact_id, message.campaign, message.occurrence_key)


# -- the happy path -------------------------------------------------------------------------------


def test_every_message_arrives_once_byte_for_byte_over_one_connection(
    smtp_server: SmtpServer,
) -> None:
    messages = [make_email(i) for i in range(20)]
    seen_before_data: list[int] = []
    time = FakeTime()

    def on_sending(message: RenderedEmail) -> None:
        # Called before DATA: the server must not have this message yet.
        seen_before_data.append(len(smtp_server.messages))
        assert message.message_id not in {
            m.data.split(b"Message-ID: <")[1].split(b">")[0].decode() for m in smtp_server.messages
        }

    with deliverer(smtp_server.delivery(), time, on_sending=on_sending) as smtp:
        results = [smtp.push(message) for message in messages]

    assert results == [DeliveryResult(key(m), "sent") for m in messages]
    assert seen_before_data == list(range(20))
    received = smtp_server.messages
    assert len(received) == 20
    for message, got in zip(messages, received, strict=True):
        assert got.mail_from == message.from_addr
        assert got.rcpt_tos == message.to_addrs
        assert got.data == message.data  # headers and both MIME parts, dots and all
    assert smtp_server.handler.connections == 1
    assert smtp_server.handler.quits == 1
    assert time.sleeps == []


def test_line_endings_normalised_and_lone_dots_survive(smtp_server: SmtpServer) -> None:
    data = b"Subject: dots\n\n.\r\n..two\r.three\nlast line without an ending"
    with deliverer(smtp_server.delivery(), FakeTime()) as smtp:
        assert smtp.push(raw_email(data)).status == "sent"
    expected = b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nlast line without an ending\r\n"
    assert [m.data for m in smtp_server.messages] == [expected]


def test_envelope_comes_from_the_message_not_its_headers(smtp_server: SmtpServer) -> None:
    data = b"From: someone@else.example\r\nTo: victim@else.example\r\nSubject: x\r\n\r\nhi\r\n"
    message = raw_email(data, to=("ana@example.org", "luis@example.org"))
    with deliverer(smtp_server.delivery(), FakeTime()) as smtp:
        assert smtp.push(message).status == "sent"
    (got,) = smtp_server.messages
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ("ana@example.org", "luis@example.org")


def test_close_says_quit_once_and_may_be_called_again(smtp_server: SmtpServer) -> None:
    smtp = deliverer(smtp_server.delivery(), FakeTime())
    smtp.close()  # nothing open yet: nothing to say
    smtp.push(make_email(1))
    smtp.close()
    smtp.close()
    assert smtp_server.handler.quits == 1


def test_mail_options_follow_what_the_server_offers(smtp_server: SmtpServer) -> None:
    ascii_message = make_email(1)
    eight_bit = raw_email("Subject: x\r\n\r\nPanadería\r\n".encode())
    utf8_address = raw_email(b"Subject: x\r\n\r\nhi\r\n", to=("josé@example.org",))
    with deliverer(smtp_server.delivery(), FakeTime()) as smtp:
        statuses = [smtp.push(m).status for m in (ascii_message, eight_bit, utf8_address)]
    assert statuses == ["sent"] * 3
    sizes = [len(m.data) for m in (ascii_message, eight_bit, utf8_address)]
    assert [m.mail_options for m in smtp_server.messages] == [
        (f"SIZE={sizes[0]}",),
        (f"SIZE={sizes[1]}", "BODY=8BITMIME"),
        (f"SIZE={sizes[2]}", "SMTPUTF8"),
    ]
    assert smtp_server.messages[2].rcpt_tos == ("josé@example.org",)


def test_a_message_without_recipients_fails_without_connecting(smtp_server: SmtpServer) -> None:
    with deliverer(smtp_server.delivery(), FakeTime()) as smtp:
        result = smtp.push(raw_email(b"Subject: x\r\n\r\nhi\r\n", to=()))
    assert (result.status, result.error) == ("failed", "the message has no recipients")
    assert smtp_server.handler.connections == 0


@pytest.mark.parametrize(
    ("sender", "to", "error"),
    [
        (SENDER, ("ana@example.org\r\nRCPT TO:<x@y.z>",), "invalid recipient address"),
        (SENDER, ("Ana <ana@example.org>",), "invalid recipient address"),
        (SENDER, ("ana@example.org, luis@example.org",), "invalid recipient address"),
        ("tienda@example.com> BODY=8BITMIME", ("ana@example.org",), "invalid sender address"),
    ],
)
def test_a_malformed_envelope_address_never_reaches_the_server(
    smtp_server: SmtpServer, sender: str, to: tuple[str, ...], error: str
) -> None:
    evil = RenderedEmail(
        contact_id="evil",
        campaign="test",
        occurrence_key="one_off",
        message_id="e@example.com",
        from_addr=sender,
        to_addrs=to,
        subject="x",
        data=b"Subject: x\r\n\r\nhi\r\n",
    )
    with deliverer(smtp_server.delivery(), FakeTime()) as smtp:
        result = smtp.push(evil)
    assert (result.status, result.transient) == ("failed", False)
    assert result.error is not None
    assert result.error.startswith(error)
    assert smtp_server.handler.connections == 0


def test_closing_after_the_server_hung_up_is_quiet(smtp_server_factory: StartServer) -> None:
    server = smtp_server_factory(handler=RecordingHandler(drop_every=1))
    smtp = deliverer(server.delivery(), FakeTime())
    assert smtp.push(make_email(1)).status == "sent"
    smtp.close()
    assert server.handler.quits == 0
    assert len(server.messages) == 1


# -- transient failures and retries -----------------------------------------------------------


def test_421_to_the_first_attempts_is_retried_with_backoff_then_delivered_once(
    smtp_server_factory: StartServer,
) -> None:
    busy = "421 4.3.2 Service not available, closing channel"
    server = smtp_server_factory(handler=RecordingHandler(refuse_mail=[busy, busy]))
    time = FakeTime()
    message = make_email(1)
    with deliverer(server.delivery(max_retries=3), time) as smtp:
        result = smtp.push(message)
    assert result == DeliveryResult(key(message), "sent")
    assert [m.data for m in server.messages] == [message.data]
    assert time.sleeps == [1.0, 2.0]
    assert server.handler.connections == 3  # 421 means the server closes: a new one each time


def test_transient_failures_give_up_after_max_retries_and_the_next_message_goes_on(
    smtp_server_factory: StartServer,
) -> None:
    later = "451 4.7.1 Greylisted, try again later"
    server = smtp_server_factory(handler=RecordingHandler(refuse_mail=[later] * 3))
    time = FakeTime()
    first, second = make_email(1), make_email(2)
    with deliverer(server.delivery(max_retries=2), time) as smtp:
        failed = smtp.push(first)
        sent = smtp.push(second)
    assert failed.status == "failed"
    assert failed.transient is True
    assert failed.key == key(first)
    assert failed.error is not None
    assert "gave up after 3 attempts" in failed.error
    assert "451 4.7.1 Greylisted, try again later" in failed.error
    assert sent == DeliveryResult(key(second), "sent")
    assert [m.data for m in server.messages] == [second.data]
    assert time.sleeps == [1.0, 2.0]


def test_no_retries_when_max_retries_is_zero(smtp_server_factory: StartServer) -> None:
    server = smtp_server_factory(handler=RecordingHandler(refuse_mail=["452 4.3.1 full"]))
    time = FakeTime()
    with deliverer(server.delivery(max_retries=0), time) as smtp:
        result = smtp.push(make_email(1))
    assert (result.status, result.transient, result.error) == (
        "failed",
        True,
        "the server refused the sender tienda@example.com: 452 4.3.1 full",
    )
    assert time.sleeps == []


def test_a_4xx_reply_to_the_data_is_retried_and_delivered_once(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(handler=RecordingHandler(refuse_data=["451 4.3.0 try later"]))
    time = FakeTime()
    calls: list[str] = []
    message = make_email(1)
    with deliverer(
        server.delivery(), time, on_sending=lambda m: calls.append(m.message_id)
    ) as smtp:
        assert smtp.push(message).status == "sent"
    assert [m.data for m in server.messages] == [message.data]
    assert calls == [message.message_id] * 2  # once per attempt that reached DATA
    assert time.sleeps == [1.0]


def test_421_to_a_recipient_closes_the_connection_and_retries(
    smtp_server_factory: StartServer,
) -> None:
    handler = RecordingHandler()
    server = smtp_server_factory(handler=handler)
    handler.refuse_rcpt["cliente1@example.org"] = "421 4.7.0 too many connections"
    time = FakeTime()

    def on_sending(message: RenderedEmail) -> None:
        raise AssertionError("a refused recipient must not reach DATA")

    with deliverer(server.delivery(max_retries=1), time, on_sending=on_sending) as smtp:
        result = smtp.push(make_email(1))
    assert (result.status, result.transient) == ("failed", True)
    assert result.error == (
        "gave up after 2 attempts: the server refused the recipient cliente1@example.org: "
        "421 4.7.0 too many connections"
    )
    assert server.handler.connections == 2
    assert time.sleeps == [1.0]


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    assert [backoff_s(n) for n in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


# -- permanent failures -----------------------------------------------------------------------


def test_550_for_one_recipient_fails_that_message_and_the_others_go_on(
    smtp_server_factory: StartServer,
) -> None:
    reply = "550 5.1.1 <cliente2@example.org>: Recipient address rejected: User unknown"
    server = smtp_server_factory(
        handler=RecordingHandler(refuse_rcpt={"cliente2@example.org": reply})
    )
    time = FakeTime()
    sending: list[str] = []
    messages = [make_email(i) for i in range(1, 5)]
    with deliverer(
        server.delivery(), time, on_sending=lambda m: sending.append(m.contact_id)
    ) as smtp:
        results = [smtp.push(m) for m in messages]
    assert [r.status for r in results] == ["sent", "failed", "sent", "sent"]
    assert results[1] == DeliveryResult(
        key(messages[1]),
        "failed",
        error=f"the server refused the recipient cliente2@example.org: {reply}",
        transient=False,
    )
    assert sending == ["c0001", "c0003", "c0004"]  # never marked sending: DATA never started
    assert [m.data for m in server.messages] == [messages[i].data for i in (0, 2, 3)]
    assert server.handler.connections == 1
    assert time.sleeps == []


def test_a_refused_recipient_fails_the_whole_message_for_every_recipient(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(
        handler=RecordingHandler(refuse_rcpt={"bad@example.org": "550 5.1.1 no such user"})
    )
    message = make_email(1, to=("good@example.org", "bad@example.org"))
    with deliverer(server.delivery(), FakeTime()) as smtp:
        result = smtp.push(message)
        after = smtp.push(make_email(2))
    assert result.status == "failed"
    assert result.error == (
        "the server refused the recipient bad@example.org: 550 5.1.1 no such user"
    )
    assert after.status == "sent"  # the transaction was reset; the connection goes on
    assert [m.rcpt_tos for m in server.messages] == [("cliente2@example.org",)]


def test_a_5xx_reply_to_the_data_fails_the_message_with_the_reply(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(
        handler=RecordingHandler(refuse_data=["554 5.7.1 Message rejected as spam"])
    )
    time = FakeTime()
    with deliverer(server.delivery(), time) as smtp:
        rejected = smtp.push(make_email(1))
        sent = smtp.push(make_email(2))
    assert (rejected.status, rejected.transient) == ("failed", False)
    assert rejected.error == "the server refused the message: 554 5.7.1 Message rejected as spam"
    assert sent.status == "sent"
    assert len(server.messages) == 1
    assert time.sleeps == []


def test_on_sending_failure_propagates_and_leaves_the_connection_usable(
    smtp_server: SmtpServer,
) -> None:
    def on_sending(message: RenderedEmail) -> None:
        if message.contact_id == "c0001":
            raise RuntimeError("ledger is read-only")

    with deliverer(smtp_server.delivery(), FakeTime(), on_sending=on_sending) as smtp:
        with pytest.raises(RuntimeError, match="read-only"):
            smtp.push(make_email(1))
        assert smtp.push(make_email(2)).status == "sent"
    assert [m.rcpt_tos for m in smtp_server.messages] == [("cliente2@example.org",)]
    assert smtp_server.handler.connections == 1


# -- dropped connections and exactly once ---------------------------------------------------------


def test_a_dropped_connection_is_reopened_and_every_message_arrives_exactly_once(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(handler=RecordingHandler(drop_every=3))
    time = FakeTime()
    messages = [make_email(i) for i in range(10)]
    with deliverer(server.delivery(max_retries=0), time) as smtp:
        results = [smtp.push(m) for m in messages]
    assert [r.status for r in results] == ["sent"] * 10
    assert [m.data for m in server.messages] == [m.data for m in messages]
    assert server.handler.connections == 4
    assert [m.connection for m in server.messages] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert time.sleeps == []  # a stale connection is reopened at once, not backed off


def test_a_connection_lost_after_the_data_is_uncertain_and_never_resent(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(handler=RecordingHandler(vanish_at=2))
    time = FakeTime()
    messages = [make_email(i) for i in range(1, 4)]
    with deliverer(server.delivery(), time) as smtp:
        results = [smtp.push(m) for m in messages]
    assert [r.status for r in results] == ["sent", "uncertain", "sent"]
    uncertain = results[1]
    assert uncertain.key == key(messages[1])
    assert uncertain.error is not None
    assert "may have been delivered" in uncertain.error
    # The server did get it, exactly once: a retry would have been a second copy.
    assert [m.data for m in server.messages] == [m.data for m in messages]
    assert server.handler.mail_commands == 3
    assert time.sleeps == []


def test_a_timeout_waiting_for_the_final_reply_is_uncertain(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(handler=RecordingHandler(data_delay_s=1.0))
    time = FakeTime()
    with deliverer(server.delivery(timeout_s=0.2), time) as smtp:
        result = smtp.push(make_email(1))
    assert result.status == "uncertain"
    assert result.error is not None
    assert "timed out" in result.error
    assert server.handler.mail_commands == 1
    assert time.sleeps == []


# -- the server is down: stop the run -------------------------------------------------------------


def test_connection_refused_is_transient_then_stops_after_consecutive_failures(
    closed_port: int,
) -> None:
    delivery = Delivery(
        method="smtp",
        host="127.0.0.1",
        port=closed_port,
        security="none",
        max_retries=1,
        max_consecutive_failures=3,
        timeout_s=2,
    )
    time = FakeTime()
    smtp = deliverer(delivery, time)
    first = smtp.push(make_email(1))
    assert first == DeliveryResult(
        key(make_email(1)),
        "failed",
        error=f"gave up after 2 attempts: the server at 127.0.0.1:{closed_port} "
        "refused the connection",
        transient=True,
    )
    assert smtp.push(make_email(2)).status == "failed"
    with pytest.raises(SendingStoppedError) as stopped:
        smtp.push(make_email(3))
    assert str(stopped.value).startswith(
        f"stopped sending after 3 consecutive failures: the server at 127.0.0.1:{closed_port} "
        "refused the connection — check that the SMTP server is up"
    )
    assert isinstance(stopped.value, DeliveryError)
    assert stopped.value.result is not None
    assert stopped.value.result.key == key(make_email(3))
    assert stopped.value.result.status == "failed"
    assert time.sleeps == [1.0, 1.0, 1.0]
    with pytest.raises(SendingStoppedError) as again:  # no more knocking on a closed door
        smtp.push(make_email(4))
    assert again.value.result is None
    assert time.sleeps == [1.0, 1.0, 1.0]
    smtp.close()


def test_a_success_resets_the_count_of_consecutive_failures(
    smtp_server_factory: StartServer,
) -> None:
    bad = {f"cliente{i}@example.org": "550 5.1.1 unknown" for i in range(0, 10, 2)}
    server = smtp_server_factory(handler=RecordingHandler(refuse_rcpt=bad))
    with deliverer(server.delivery(max_consecutive_failures=2), FakeTime()) as smtp:
        statuses = [smtp.push(make_email(i)).status for i in range(10)]
    assert statuses == ["failed", "sent"] * 5


def test_permanent_rejections_in_a_row_also_stop_the_run(smtp_server_factory: StartServer) -> None:
    server = smtp_server_factory(
        handler=RecordingHandler(refuse_mail=["550 5.7.1 Relaying denied"] * 5)
    )
    with deliverer(server.delivery(max_consecutive_failures=2), FakeTime()) as smtp:
        assert smtp.push(make_email(1)).status == "failed"
        with pytest.raises(
            SendingStoppedError,
            match=re.escape("refused the sender tienda@example.com: 550 5.7.1 Relaying denied"),
        ):
            smtp.push(make_email(2))


# -- login --------------------------------------------------------------------------------------


def test_login_then_send(smtp_server_factory: StartServer) -> None:
    server = smtp_server_factory(users={"mailer": "s3cret"})
    message = make_email(1)
    with deliverer(server.delivery(username="mailer"), FakeTime(), password="s3cret") as smtp:
        assert smtp.push(message).status == "sent"
    assert [(m.login, m.data) for m in server.messages] == [("mailer", message.data)]


def test_a_wrong_password_is_one_clear_error_at_once(smtp_server_factory: StartServer) -> None:
    server = smtp_server_factory(users={"mailer": "s3cret"})
    time = FakeTime()
    sending: list[str] = []
    smtp = deliverer(
        server.delivery(username="mailer", password_env="SMTP_PASSWORD"),
        time,
        password="wrong",
        on_sending=lambda m: sending.append(m.contact_id),
    )
    with pytest.raises(DeliveryError) as error:
        smtp.push(make_email(1))
    assert not isinstance(error.value, SendingStoppedError)
    assert error.value.message == (
        "the server rejected the login for 'mailer': 535 5.7.8 Authentication credentials "
        f"invalid (127.0.0.1:{server.port})"
    )
    assert error.value.field == "delivery.username"
    assert error.value.hint == "check delivery.username and the password in $SMTP_PASSWORD"
    assert error.value.__cause__ is None and error.value.__suppress_context__
    with pytest.raises(DeliveryError, match="rejected the login"):
        smtp.push(make_email(2))  # stays stopped; does not try the login again
    assert server.handler.mail_commands == 0
    assert sending == []
    assert time.sleeps == []
    smtp.close()


def test_a_server_that_wants_a_login_refuses_mail_without_one(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(users={"mailer": "s3cret"})
    with deliverer(server.delivery(), FakeTime()) as smtp:
        result = smtp.push(make_email(1))
    assert (result.status, result.transient) == ("failed", False)
    assert result.error == (
        "the server refused the sender tienda@example.com: 530 5.7.0 Authentication required"
    )


def test_a_server_without_login_is_a_clear_error(smtp_server: SmtpServer) -> None:
    smtp = deliverer(smtp_server.delivery(username="mailer"), FakeTime(), password="x")
    with pytest.raises(DeliveryError, match="does not offer a login") as error:
        smtp.push(make_email(1))
    assert error.value.hint is not None and "STARTTLS" in error.value.hint


def test_a_username_without_a_password_is_refused_before_connecting(
    smtp_server: SmtpServer,
) -> None:
    with pytest.raises(DeliveryError, match="no password") as error:
        deliverer(smtp_server.delivery(username="mailer"), FakeTime(), password=None)
    assert error.value.field == "delivery.password_env"


def test_password_from_env() -> None:
    named = Delivery(method="smtp", host="mail.example.com", password_env="OUTREACH_SMTP")
    assert password_from_env(named, {"OUTREACH_SMTP": "pa ss"}) == "pa ss"
    assert password_from_env(Delivery(), {"OUTREACH_SMTP": "x"}) is None
    with pytest.raises(DeliveryError) as unset:
        password_from_env(named, {})
    assert (
        unset.value.message == "the environment variable OUTREACH_SMTP (delivery.password_env) "
        "is not set"
    )
    assert unset.value.field == "delivery.password_env"
    assert unset.value.hint is not None and "set OUTREACH_SMTP" in unset.value.hint
    with pytest.raises(DeliveryError, match=r"OUTREACH_SMTP .* is empty"):
        password_from_env(named, {"OUTREACH_SMTP": ""})


# -- TLS ----------------------------------------------------------------------------------------


def test_starttls_verified_against_the_configured_ca_then_login(
    smtp_server_factory: StartServer,
) -> None:
    server = smtp_server_factory(security="starttls", users={"mailer": "s3cret"})
    messages = [make_email(1), make_email(2)]
    with deliverer(server.delivery(username="mailer"), FakeTime(), password="s3cret") as smtp:
        assert [smtp.push(m).status for m in messages] == ["sent", "sent"]
    assert [(m.login, m.data) for m in server.messages] == [("mailer", m.data) for m in messages]
    assert server.handler.connections == 1


def test_implicit_tls(smtp_server_factory: StartServer) -> None:
    server = smtp_server_factory(security="ssl")
    message = make_email(1)
    with deliverer(server.delivery(), FakeTime()) as smtp:
        assert smtp.push(message).status == "sent"
    assert [m.data for m in server.messages] == [message.data]


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_an_unverifiable_certificate_is_one_clear_error(
    smtp_server_factory: StartServer, security: str
) -> None:
    server = smtp_server_factory(security=security)
    time = FakeTime()
    smtp = deliverer(server.delivery(ca_file=None), time)
    with pytest.raises(DeliveryError) as error:
        smtp.push(make_email(1))
    assert error.value.message.startswith(
        "the server's certificate could not be verified: unable to get local issuer certificate"
    )
    assert error.value.field == "delivery.ca_file"
    assert time.sleeps == []
    assert server.handler.mail_commands == 0
    smtp.close()


def test_a_certificate_for_another_name_is_refused(smtp_server_factory: StartServer) -> None:
    server = smtp_server_factory(security="starttls", cert_names=["mail.example.com"])
    smtp = deliverer(server.delivery(), FakeTime())  # the CA is trusted; the name is wrong
    with pytest.raises(DeliveryError, match="could not be verified: IP address mismatch"):
        smtp.push(make_email(1))
    assert server.handler.mail_commands == 0


def test_implicit_tls_against_a_plain_server_is_a_clear_error(smtp_server: SmtpServer) -> None:
    time = FakeTime()
    smtp = deliverer(smtp_server.delivery(security="ssl"), time)
    with pytest.raises(DeliveryError, match="the TLS handshake failed") as error:
        smtp.push(make_email(1))
    assert error.value.field == "delivery.security"
    assert time.sleeps == []


def test_starttls_required_but_not_offered(smtp_server: SmtpServer) -> None:
    smtp = deliverer(smtp_server.delivery(security="starttls"), FakeTime())
    with pytest.raises(DeliveryError, match="does not offer STARTTLS") as error:
        smtp.push(make_email(1))
    assert error.value.field == "delivery.security"
    assert smtp_server.handler.mail_commands == 0


def test_a_missing_ca_file_is_a_clear_error(
    smtp_server_factory: StartServer, tmp_path: Path
) -> None:
    server = smtp_server_factory(security="starttls")
    smtp = deliverer(server.delivery(ca_file=tmp_path / "nope.pem"), FakeTime())
    with pytest.raises(DeliveryError, match="cannot read the CA certificate") as error:
        smtp.push(make_email(1))
    assert error.value.field == "delivery.ca_file"


# -- the rate limit -------------------------------------------------------------------------------


def test_the_rate_limit_waits_when_the_minute_budget_is_used(smtp_server: SmtpServer) -> None:
    time = FakeTime(start=1_000_000.0)
    sent_at: list[float] = []
    with deliverer(
        smtp_server.delivery(rate_per_minute=3), time, on_sending=lambda m: sent_at.append(time.now)
    ) as smtp:
        for i in range(7):
            assert smtp.push(make_email(i)).status == "sent"
    assert time.sleeps == [60.0, 60.0]
    assert [t - 1_000_000 for t in sent_at] == [0, 0, 0, 60, 60, 60, 120]
    assert len(smtp_server.messages) == 7


def test_the_rate_limit_is_remembered_across_runs(smtp_server: SmtpServer, tmp_path: Path) -> None:
    state = tmp_path / "state" / "smtp-rate.json"
    delivery = smtp_server.delivery(rate_per_minute=3)
    time = FakeTime(start=1_000_000.0)
    with deliverer(delivery, time, rate_state_path=state) as first_run:
        first_run.push(make_email(1))
        first_run.push(make_email(2))
    assert json.loads(state.read_text()) == {"per_minute": 3, "sent_per_second": [[1_000_000, 2]]}
    time.now += 10
    with deliverer(delivery, time, rate_state_path=state) as second_run:
        second_run.push(make_email(3))  # the third of this minute: no wait
        assert time.sleeps == []
        second_run.push(make_email(4))  # the fourth waits for the first run's sends to age out
    assert time.sleeps == [50.0]
    assert json.loads(state.read_text()) == {
        "per_minute": 3,
        "sent_per_second": [[1_000_010, 1], [1_000_060, 1]],
    }
    assert sorted(p.name for p in state.parent.iterdir()) == ["smtp-rate.json"]  # no temp left


def test_a_send_counts_for_a_whole_minute_even_at_a_fraction_of_a_second(
    smtp_server: SmtpServer,
) -> None:
    time = FakeTime(start=1_000_000.25)
    with deliverer(smtp_server.delivery(rate_per_minute=1), time) as smtp:
        smtp.push(make_email(1))
        smtp.push(make_email(2))
    # Rounded up to the whole second: never sooner than 60 s after the first send.
    assert time.sleeps == [60.75]


@pytest.mark.parametrize(
    "content", ["not json{", '{"sent_per_second": "x"}', "[1, 2]", '{"sent_per_second": [[1]]}']
)
def test_a_damaged_rate_file_is_ignored_and_rewritten(
    smtp_server: SmtpServer, tmp_path: Path, content: str
) -> None:
    state = tmp_path / "smtp-rate.json"
    state.write_text(content)
    time = FakeTime(start=2_000_000.0)
    with deliverer(smtp_server.delivery(rate_per_minute=5), time, rate_state_path=state) as smtp:
        assert smtp.push(make_email(1)).status == "sent"
    assert time.sleeps == []
    assert json.loads(state.read_text())["sent_per_second"] == [[2_000_000, 1]]


def test_sends_stamped_far_in_the_future_are_forgotten(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    state = tmp_path / "smtp-rate.json"
    # Written before the clock was set back an hour: waiting for them would stall the run.
    state.write_text(json.dumps({"per_minute": 1, "sent_per_second": [[2_003_600, 1]]}))
    time = FakeTime(start=2_000_000.0)
    with deliverer(smtp_server.delivery(rate_per_minute=1), time, rate_state_path=state) as smtp:
        assert smtp.push(make_email(1)).status == "sent"
    assert time.sleeps == []


def test_an_unwritable_rate_file_is_a_clear_error(smtp_server: SmtpServer, tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    smtp = deliverer(
        smtp_server.delivery(rate_per_minute=5),
        FakeTime(),
        rate_state_path=blocker / "smtp-rate.json",
    )
    with pytest.raises(DeliveryError, match="cannot write the send-rate state"):
        smtp.push(make_email(1))
    smtp.close()
