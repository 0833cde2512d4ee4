"""SMTP pipelining (RFC 2920) and parallel connections, against real servers on 127.0.0.1.

smtp-sink (Postfix) is the real server that offers PIPELINING; aiosmtpd told to offer it
(`RecordingHandler(pipelining=True)`) is the one that refuses and hangs up on cue.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import smtp_server as servers
import smtp_sink as sinks
from pydantic import ValidationError
from scripted_smtp import scripted_server
from smtp_server import RecordingHandler, SmtpServer
from smtp_sink import SinkServer
from test_smtp import FakeTime, deliverer, key, make_email

from outreach.deliver.base import DeliveryResult
from outreach.deliver.smtp import SendRate, SmtpDeliverer
from outreach.model.config import Delivery
from outreach.render.email import RenderedEmail

smtp_server_factory = servers.smtp_server_factory
smtp_sink_server = sinks.smtp_sink_server
smtp_sink = sinks.smtp_sink

StartServer = Callable[..., SmtpServer]


def pipelining_server(start: StartServer, **misbehave: object) -> SmtpServer:
    return start(handler=RecordingHandler(pipelining=True, **misbehave))  # type: ignore[arg-type]


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


# -- smtp-sink: the real thing ----------------------------------------------------------------


def test_pipelined_over_smtp_sink_every_message_arrives_once_byte_for_byte(
    smtp_sink: SinkServer,
) -> None:
    messages = [make_email(i) for i in range(30)]
    with SmtpDeliverer(delivery=smtp_sink.delivery(), password=None) as smtp:
        results = list(smtp.push_all(iter(messages)))
    assert results == [DeliveryResult(key(m), "sent") for m in messages]
    got = {m.rcpt_tos: m for m in smtp_sink.messages()}
    assert len(got) == 30
    for message in messages:
        sunk = got[message.to_addrs]
        assert sunk.mail_from == message.from_addr
        # Dots unstuffed again, headers and parts intact (smtp-sink ends its file with a blank line).
        assert sunk.data.rstrip(b"\n") == lf(message.data).rstrip(b"\n")


def test_four_connections_to_smtp_sink_send_each_message_once(smtp_sink: SinkServer) -> None:
    messages = [make_email(i) for i in range(40)]
    results = send_in_parallel(smtp_sink.delivery(connections=4), messages, connections=4)
    assert sorted(r.key for r in results) == sorted(key(m) for m in messages)
    assert {r.status for r in results} == {"sent"}
    counts = Counter(m.rcpt_tos for m in smtp_sink.messages())
    assert counts == Counter(m.to_addrs for m in messages)  # each once, none twice


# -- aiosmtpd offering PIPELINING: what pipelining changes --------------------------------------


def test_one_write_per_message_and_sending_is_recorded_before_the_data(
    smtp_server_factory: StartServer,
) -> None:
    server = pipelining_server(smtp_server_factory)
    messages = [make_email(i) for i in range(12)]
    at_server_when_sending: list[int] = []

    def on_sending(message: RenderedEmail) -> None:
        at_server_when_sending.append(len(server.messages))

    time = FakeTime()
    with deliverer(server.delivery(), time, on_sending=on_sending) as smtp:
        results = list(smtp.push_all(iter(messages)))
    assert [r.status for r in results] == ["sent"] * 12
    # Each message's `sending` came after the one before it was confirmed, before its own data.
    assert at_server_when_sending == list(range(12))
    assert [m.data for m in server.messages] == [m.data for m in messages]
    # The first envelope goes as plain commands (the EHLO reply is read on it); every later MAIL
    # arrived together with its RCPT and DATA, behind the data of the message before.
    assert server.handler.pipelined == [False] + [True] * 11
    assert server.handler.connections == 1
    assert time.sleeps == []


def test_without_pipelining_in_the_config_every_command_waits_for_its_reply(
    smtp_server_factory: StartServer,
) -> None:
    server = pipelining_server(smtp_server_factory)
    with deliverer(server.delivery(pipelining=False), FakeTime()) as smtp:
        results = list(smtp.push_all(iter([make_email(i) for i in range(4)])))
    assert [r.status for r in results] == ["sent"] * 4
    assert server.handler.pipelined == [False] * 4


def test_refusals_mid_pipeline_are_told_apart_and_the_others_go_on(
    smtp_server_factory: StartServer,
) -> None:
    server = pipelining_server(
        smtp_server_factory,
        refuse_mail_at={3: "550 5.7.1 sender refused"},
        refuse_rcpt={"cliente5@example.org": "550 5.1.1 no such user"},
        refuse_data_at={5: "554 5.6.0 message refused"},
    )
    messages = [make_email(i) for i in range(1, 9)]
    time = FakeTime()
    with deliverer(server.delivery(max_retries=0), time) as smtp:
        results = {r.key: r for r in smtp.push_all(iter(messages))}
    status = {k[0]: (r.status, r.error) for k, r in results.items()}
    assert status["c0003"] == (
        "failed",
        "the server refused the sender tienda@example.com: 550 5.7.1 sender refused",
    )
    assert status["c0005"] == (
        "failed",
        "the server refused the recipient cliente5@example.org: 550 5.1.1 no such user",
    )
    # MAIL 6 is c0006's; completed DATA 5 is c0007's (c0003 and c0005 sent no data).
    assert status["c0007"] == (
        "failed",
        "the server refused the message: 554 5.6.0 message refused",
    )
    assert all(not results[key(m)].transient for m in messages if m.contact_id != "c0001")
    sent = [m for m in messages if m.contact_id not in ("c0003", "c0005", "c0007")]
    assert {k[0] for k, r in results.items() if r.status == "sent"} == {m.contact_id for m in sent}
    assert [m.data for m in server.messages] == [m.data for m in sent]
    assert server.handler.connections == 1  # RSET after each refusal kept the connection usable


def test_a_4xx_mid_pipeline_is_tried_again_after_a_pause(smtp_server_factory: StartServer) -> None:
    server = pipelining_server(smtp_server_factory, refuse_mail_at={2: "451 4.3.0 try later"})
    messages = [make_email(i) for i in range(1, 5)]
    time = FakeTime()
    with deliverer(server.delivery(max_retries=2), time) as smtp:
        results = list(smtp.push_all(iter(messages)))
    assert {r.status for r in results} == {"sent"}
    assert [r.key[0] for r in results] == ["c0001", "c0003", "c0004", "c0002"]
    assert time.sleeps == [1.0]
    assert Counter(m.rcpt_tos for m in server.messages) == Counter(m.to_addrs for m in messages)


def test_a_reply_lost_mid_pipeline_leaves_that_message_uncertain_and_never_resent(
    smtp_server_factory: StartServer,
) -> None:
    server = pipelining_server(smtp_server_factory, vanish_at=3)
    messages = [make_email(i) for i in range(1, 7)]
    handed: list[str] = []
    time = FakeTime()
    with deliverer(
        server.delivery(), time, on_sending=lambda m: handed.append(m.contact_id)
    ) as smtp:
        results = {r.key[0]: r for r in smtp.push_all(iter(messages))}
    assert results["c0003"].status == "uncertain"
    assert "may have been delivered" in (results["c0003"].error or "")
    assert {c: r.status for c, r in results.items() if c != "c0003"} == dict.fromkeys(
        ["c0001", "c0002", "c0004", "c0005", "c0006"], "sent"
    )
    # c0004's envelope was on the wire when the connection went: only its envelope, so it went
    # again on a new connection; c0003 reached the server once and was never sent again.
    assert Counter(m.rcpt_tos for m in server.messages) == Counter(m.to_addrs for m in messages)
    assert handed.count("c0003") == 1
    assert server.handler.connections == 2
    assert time.sleeps == []


def test_a_timeout_mid_pipeline_is_uncertain(smtp_server_factory: StartServer) -> None:
    handler = RecordingHandler(pipelining=True)
    server = smtp_server_factory(handler=handler)
    messages = [make_email(i) for i in range(1, 4)]

    def on_sending(message: RenderedEmail) -> None:
        # The server sits on c0002's data past the timeout, then is quick again.
        handler.data_delay_s = 1.0 if message.contact_id == "c0002" else 0.0

    with deliverer(server.delivery(timeout_s=0.3), FakeTime(), on_sending=on_sending) as smtp:
        results = {r.key[0]: r.status for r in smtp.push_all(iter(messages))}
    assert results == {"c0001": "sent", "c0002": "uncertain", "c0003": "sent"}
    # c0003's envelope was on the wire with c0002's data: it went again, on a new connection,
    # once (the server is still sitting on c0002 as the test ends).
    received = [m.rcpt_tos for m in server.messages if m.rcpt_tos != messages[1].to_addrs]
    assert received == [messages[0].to_addrs, messages[2].to_addrs]
    assert server.handler.connections == 2


# -- several connections ----------------------------------------------------------------------


class Shared:
    """One iterator several threads take from (each item once).

    No thread gets its first item before every one of the `takers` has asked for one: on a busy
    machine the first threads could otherwise send every message before the last one starts,
    and a test of four connections would be a test of three.
    """

    def __init__(self, items: list[RenderedEmail], takers: int) -> None:
        self._items = iter(items)
        self._lock = threading.Lock()
        self._everyone_asked = threading.Barrier(takers)
        self._asked = threading.local()

    def __iter__(self) -> Iterator[RenderedEmail]:
        return self

    def __next__(self) -> RenderedEmail:
        if not getattr(self._asked, "before", False):
            self._asked.before = True
            self._everyone_asked.wait(timeout=30)
        with self._lock:
            return next(self._items)


def send_in_parallel(
    delivery: object,
    messages: list[RenderedEmail],
    *,
    connections: int,
    rate: SendRate | None = None,
) -> list[DeliveryResult]:
    source = Shared(messages, takers=connections)
    results: list[DeliveryResult] = []
    lock = threading.Lock()

    def work() -> None:
        with SmtpDeliverer(delivery=delivery, password=None, rate=rate) as smtp:  # type: ignore[arg-type]
            for result in smtp.push_all(source):
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=work) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_connections_are_bounded_and_the_older_name_still_works() -> None:
    assert Delivery(method="smtp", host="h").connections == 1
    assert Delivery(method="smtp", host="h", max_connections=3).connections == 3
    with pytest.raises(ValidationError, match="less than or equal to 16"):
        Delivery(method="smtp", host="h", connections=17)


def test_four_connections_share_one_rate_limit(smtp_server_factory: StartServer) -> None:
    server = pipelining_server(smtp_server_factory)
    time = FakeTime()
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            time.sleep(seconds)

    rate = SendRate(per_minute=5, path=None, clock=time.clock, sleep=sleep)
    messages = [make_email(i) for i in range(12)]
    results = send_in_parallel(server.delivery(), messages, connections=4, rate=rate)
    assert sorted(r.key for r in results) == sorted(key(m) for m in messages)
    assert {r.status for r in results} == {"sent"}
    assert time.sleeps == [60.0, 60.0]  # 12 at 5 a minute across all four: two waits
    assert Counter(m.rcpt_tos for m in server.messages) == Counter(m.to_addrs for m in messages)
    assert server.handler.connections == 4


# -- a server that says 354 after refusing every recipient -------------------------------------


def test_354_after_a_refused_recipient_gets_a_lone_dot_then_rset_never_the_data() -> None:
    refused = make_email(2)
    messages = [make_email(1), refused, make_email(3), make_email(4)]
    with scripted_server(refuse={refused.to_addrs[0]}) as (port, script):
        delivery = Delivery(method="smtp", host="127.0.0.1", port=port, security="none")
        handed: list[str] = []
        with deliverer(
            delivery, FakeTime(), on_sending=lambda m: handed.append(m.contact_id)
        ) as smtp:
            results = {r.key[0]: r for r in smtp.push_all(iter(messages))}
    assert results["c0002"].status == "failed"
    assert results["c0002"].error == (
        "the server refused the recipient cliente2@example.org: 550 5.1.1 no such user"
    )
    assert {c: r.status for c, r in results.items() if c != "c0002"} == dict.fromkeys(
        ["c0001", "c0003", "c0004"], "sent"
    )
    assert "c0002" not in handed  # never marked sending: its data never went
    assert [rcpts for rcpts, _ in script.received] == [
        m.to_addrs for m in messages if m is not refused
    ]
    assert script.connections == 1 and script.cut_mid_data == 0


def test_354_after_some_recipients_were_refused_hangs_up_rather_than_send() -> None:
    both = make_email(2, to=("ok@example.org", "gone@example.org"))
    messages = [make_email(1), both, make_email(3)]
    with scripted_server(refuse={"gone@example.org"}) as (port, script):
        delivery = Delivery(
            method="smtp", host="127.0.0.1", port=port, security="none", max_retries=0
        )
        with deliverer(delivery, FakeTime()) as smtp:
            results = {r.key[0]: r.status for r in smtp.push_all(iter(messages))}
    # An empty message to ok@ would have been a message: the connection was cut instead.
    assert results == {"c0001": "sent", "c0002": "failed", "c0003": "sent"}
    assert [rcpts for rcpts, _ in script.received] == [messages[0].to_addrs, messages[2].to_addrs]
    assert script.cut_mid_data == 1
    assert script.connections == 2


def test_the_rate_limit_holds_the_next_envelope_not_an_open_transaction(
    smtp_server_factory: StartServer,
) -> None:
    server = pipelining_server(smtp_server_factory)
    time = FakeTime(start=1_000_000.0)
    sent_at: list[float] = []
    delivery = server.delivery(rate_per_minute=3)
    with deliverer(delivery, time, on_sending=lambda m: sent_at.append(time.now)) as smtp:
        results = list(smtp.push_all(iter([make_email(i) for i in range(7)])))
    assert [r.status for r in results] == ["sent"] * 7
    assert time.sleeps == [60.0, 60.0]
    # The third email's data went before the wait for the fourth's envelope, not after it.
    assert [t - 1_000_000 for t in sent_at] == [0, 0, 0, 60, 60, 60, 120]
    assert len(server.messages) == 7
    assert server.handler.connections == 1
