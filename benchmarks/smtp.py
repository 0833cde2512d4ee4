"""SMTP benchmark: N messages to a local aiosmtpd sink, one reused connection vs one per message.

    .venv/bin/python benchmarks/smtp.py [--n 10000] [--per-message 1000] [--sink process|thread]

The sink accepts and discards every message. By default it runs in a separate process, so the
asyncio server (pure Python, usually the slower side) has the other core to itself; `--sink
thread` runs it in this process to show the difference. No rate limit. The per-message variant
opens, greets and closes a connection for every message, as simple mail-merge scripts do; it
runs `--per-message` messages and its time is extrapolated to N. Prints messages per second and
the peak resident memory of this (the sending) process. Target: >= 300 messages/s over one
connection on loopback.

DKIM: the CPU time of signing each message (RSA-2048, `dkim:` in config.yaml) as the send step
does, beside dkimpy's own pure-Python signing of the same messages (`--dkimpy-n` of them), and
the reused connection again with every message signed as it is handed over. Expected: about
1 ms of CPU per message (benchmarks/smtp_latency.py --dkim shows four connections at 20 ms
per round trip stay above 100 messages/s with it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from outreach.deliver.dkim import SIGNED_HEADERS, DkimKey, sign, signed  # noqa: E402
from outreach.deliver.smtp import SmtpDeliverer  # noqa: E402
from outreach.model.config import Delivery  # noqa: E402
from outreach.render.email import (  # noqa: E402  # noqa: E402
    Content,
    RenderedEmail,
    Sender,
    build_message,
    message_id_for,
)

HOST = "127.0.0.1"
FIRST = ["María", "José", "Lucía", "Carmen", "Javier", "Ana", "Pablo", "Elena", "Íñigo", "Nuria"]
TEXT = """Hola {name},

En Casa Lucía queremos desearte un feliz cumpleaños. Para celebrarlo, te invitamos al postre
en tu próxima visita: enseña este código al pedir la cuenta: {code}.

¡Te esperamos!
Lucía Fernández
Casa Lucía · Calle de la Cava Baja, 12 · 28005 Madrid
"""
HTML = """<html><body style="font-family: Georgia, serif; color: #222">
<p>Hola <b>{name}</b>,</p>
<p>En Casa Lucía queremos desearte un feliz cumpleaños. Para celebrarlo, te invitamos al
postre en tu próxima visita: enseña este código al pedir la cuenta:
<strong style="letter-spacing: 2px">{code}</strong>.</p>
<p>¡Te esperamos!<br>Lucía Fernández</p>
<p style="font-size: 12px; color: #777">Casa Lucía · Calle de la Cava Baja, 12 · 28005 Madrid</p>
</body></html>
"""


class _Sink:
    """Accepts every message and only counts it."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(conn: Connection) -> None:
    """The sink process: report the port, serve until told to stop, report the count."""
    sink = _Sink()
    controller = Controller(sink, hostname=HOST, port=_free_port())
    controller.start()
    conn.send(controller.port)
    conn.recv()  # any message means stop
    controller.stop()
    conn.send(sink.count)


@contextmanager
def sink_server(kind: str) -> Iterator[tuple[int, list[int]]]:
    """A running sink (in a process or a thread): (port, [messages accepted, once stopped])."""
    accepted: list[int] = []
    if kind == "thread":
        sink = _Sink()
        controller = Controller(sink, hostname=HOST, port=_free_port())
        controller.start()
        try:
            yield controller.port, accepted
        finally:
            controller.stop()
            accepted.append(sink.count)
        return
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,))
    process.start()
    try:
        yield parent.recv(), accepted
    finally:
        parent.send("stop")
        accepted.append(parent.recv())
        process.join()


def make_messages(n: int) -> list[RenderedEmail]:
    """N realistic multipart birthday emails (text + HTML, non-ASCII names), about 2.5 kB each."""
    date = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    messages = []
    for i in range(n):
        contact_id = f"c{i:06d}"
        name = FIRST[i % len(FIRST)]
        to_addr = f"cliente{i}@example.org"
        message_id = message_id_for(
            contact_id=contact_id,
            campaign="birthday",
            occurrence_key="birthday:2026",
            domain="casalucia.example",
        )
        code = f"CL{i:06d}"
        subject = f"¡Feliz cumpleaños, {name}!"
        data = build_message(
            sender=Sender("hola@casalucia.example", name="Casa Lucía"),
            to_name=f"{name} López",
            to_addr=to_addr,
            content=Content(
                subject=subject,
                text=TEXT.format(name=name, code=code),
                html=HTML.format(name=name, code=code),
            ),
            date=date,
            message_id=message_id,
            list_unsubscribe=(f"https://casalucia.example/baja?id={contact_id}",),
        )
        messages.append(
            RenderedEmail(
                contact_id=contact_id,
                campaign="birthday",
                occurrence_key="birthday:2026",
                message_id=message_id,
                from_addr="hola@casalucia.example",
                to_addrs=(to_addr,),
                subject=subject,
                data=data,
            )
        )
    return messages


def send_reused(delivery: Delivery, messages: list[RenderedEmail]) -> float:
    """Seconds to send every message over one connection."""
    start = time.perf_counter()
    with SmtpDeliverer(delivery=delivery, password=None) as smtp:
        for message in messages:
            if smtp.push(message).status != "sent":
                raise RuntimeError("a message was not sent")
    return time.perf_counter() - start


def send_reused_signed(delivery: Delivery, messages: list[RenderedEmail], key: DkimKey) -> float:
    """Seconds to send every message over one connection, each signed as it is handed over."""
    start = time.perf_counter()
    with SmtpDeliverer(delivery=delivery, password=None) as smtp:
        for result in smtp.push_all(signed(m, key) for m in messages):
            if result.status != "sent":
                raise RuntimeError("a message was not sent")
    return time.perf_counter() - start


def signing_cpu_ms(messages: list[RenderedEmail], key: DkimKey) -> float:
    """CPU milliseconds per message of outreach's DKIM signing."""
    start = time.process_time()
    for message in messages:
        sign(message.data, key)
    return 1000 * (time.process_time() - start) / len(messages)


def dkimpy_cpu_ms(messages: list[RenderedEmail], key: DkimKey) -> float:
    """CPU milliseconds per message of dkimpy signing the same way (pure-Python RSA)."""
    import dkim

    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    names = [name.encode() for name in SIGNED_HEADERS]
    start = time.process_time()
    for message in messages:
        dkim.sign(
            message.data, key.selector.encode(), key.domain.encode(), pem, include_headers=names
        )
    return 1000 * (time.process_time() - start) / len(messages)


def send_one_connection_each(delivery: Delivery, messages: list[RenderedEmail]) -> float:
    """Seconds to send every message, connecting (and saying QUIT) for each one."""
    start = time.perf_counter()
    for message in messages:
        with SmtpDeliverer(delivery=delivery, password=None) as smtp:
            if smtp.push(message).status != "sent":
                raise RuntimeError("a message was not sent")
    return time.perf_counter() - start


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--per-message", type=int, default=1_000)
    parser.add_argument("--sink", choices=["process", "thread"], default="process")
    parser.add_argument("--dkimpy-n", type=int, default=100)
    args = parser.parse_args()

    messages = make_messages(args.n)
    key = DkimKey(
        "casalucia.example",
        "bench",
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "benchmark",
    )
    ours_ms = signing_cpu_ms(messages, key)
    theirs_ms = dkimpy_cpu_ms(messages[: args.dkimpy_n], key)
    size = sum(len(m.data) for m in messages) / len(messages)
    rss_before = _rss_mib()
    with sink_server(args.sink) as (port, accepted):
        delivery = Delivery(method="smtp", host=HOST, port=port, security="none")
        reused = send_reused(delivery, messages)
        reused_signed = send_reused_signed(delivery, messages, key)
        each_n = min(args.per_message, args.n)
        each = send_one_connection_each(delivery, messages[:each_n])
    if accepted != [2 * args.n + each_n]:
        raise RuntimeError(f"the sink accepted {accepted} messages, expected {2 * args.n + each_n}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reused_rate = args.n / reused
    each_rate = each_n / each
    print(f"sink: aiosmtpd in a {args.sink}; {args.n} messages of {size / 1024:.1f} kB on average")
    print(f"one reused connection:      {reused:7.2f} s  {reused_rate:7.0f} messages/s")
    print(
        f"a connection per message:   {args.n / each_rate:7.2f} s  {each_rate:7.0f} messages/s"
        f"  (measured on {each_n}, extrapolated to {args.n})"
    )
    print(f"speed-up from reusing the connection: {reused_rate / each_rate:.1f}x")
    print(
        f"one reused connection, DKIM-signed: {reused_signed:7.2f} s  "
        f"{args.n / reused_signed:7.0f} messages/s"
    )
    print(
        f"DKIM signing (RSA-2048): {ours_ms:.2f} ms CPU per message (OpenSSL's RSA); "
        f"dkimpy's pure-Python RSA: {theirs_ms:.2f} ms (measured on {min(args.dkimpy_n, args.n)})"
    )
    print(f"peak RSS of the sender: {peak:.0f} MiB ({rss_before:.0f} MiB holding the messages)")
    verdict = "met" if reused_rate >= 300 else "MISSED"
    print(f"target >= 300 messages/s over one connection: {verdict}")


if __name__ == "__main__":
    main()
