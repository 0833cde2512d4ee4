"""SMTP at real-world latency: `outreach send` through a delaying proxy, beside mailmerge.

    .venv/bin/python benchmarks/smtp_latency.py [--n 400] [--n-slow 100] [--mailmerge-n 50]
        [--delays 0,20] [--servers smtp-sink,aiosmtpd]

The servers: Postfix's smtp-sink (Debian's `postfix` package; it offers PIPELINING) and an
aiosmtpd sink (which does not), each in its own process. Between outreach and the server sits a
TCP proxy on 127.0.0.1 (asyncio, its own process) that holds every chunk 10 ms in each
direction, so any round trip costs 20 ms (and a new connection 20 ms more, for the handshake a
real network would cost); at 0 ms there is no proxy. For each server and delay it times
outreach's send step (`perform_send` in this process: the outbox files read, the ledger
written before and after each email) for 1 and 4 connections (`delivery.connections`), with
and without pipelining (`delivery.pipelining`), then mailmerge (`pip install -e '.[bench]'`)
sending the same contacts to the same server: it opens a connection for every message, as its
code does (`mailmerge --no-dry-run`, timed as a subprocess, start-up included).

The emails are rendered once by `outreach run` (not timed). The slow cells (one connection
without pipelining at a delay, mailmerge at a delay) send fewer emails (--n-slow,
--mailmerge-n) so the whole benchmark takes about two minutes. Prints messages/s, CPU time per
message (user + sys: this process for outreach, the child for mailmerge), the load average, and
the peak RSS of this process. Targets at 20 ms against smtp-sink: >= 100 messages/s with four
connections and pipelining, >= 15x mailmerge.

`--dkim` signs every email (`dkim:` with an RSA-2048 key, as issue 26 asks): the target holds
with signing on. The key is published by a real DNS server on 127.0.0.1 (Debian's dnsmasq, as
the tests start it), which the send step asks (OUTREACH_DNS_SERVER) before it starts, as it
would ask the domain's servers.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock_time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from dns_server import running_dns_server  # noqa: E402

from benchmarks.smtp import sink_server  # noqa: E402
from benchmarks.synth import write_workspace  # noqa: E402
from outreach.deliver.dkim import DkimKey  # noqa: E402
from outreach.deliver.send import perform_send  # noqa: E402
from outreach.model.config import load_settings  # noqa: E402

HOST = "127.0.0.1"
DAY = date(2026, 11, 24)
BIN = Path(sys.executable).parent
SMTP_SINK = "/usr/sbin/smtp-sink"
CONFIGS = [(1, False), (1, True), (4, False), (4, True)]  # (connections, pipelining)


# -- the delaying proxy ------------------------------------------------------------------------


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy one direction, each chunk delivered `delay` seconds after it was read, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await delivering
    except (ConnectionError, OSError):
        delivering.cancel()
        writer.close()


async def _proxy(upstream: int, delay: float, conn: Connection) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2 * delay)  # the TCP handshake's round trip
        try:
            server_r, server_w = await asyncio.open_connection(HOST, upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump(client_r, server_w, delay), _pump(server_r, client_w, delay))

    server = await asyncio.start_server(handle, HOST, 0)
    conn.send(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def _serve_proxy(upstream: int, delay: float, conn: Connection) -> None:
    asyncio.run(_proxy(upstream, delay, conn))


@contextmanager
def delaying_proxy(upstream: int, delay_ms: float) -> Iterator[int]:
    """A proxy to `upstream` adding `delay_ms` to every round trip; yields its port."""
    if not delay_ms:
        yield upstream
        return
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_proxy, args=(upstream, delay_ms / 2000, child))
    process.start()
    try:
        yield parent.recv()
    finally:
        process.terminate()
        process.join()


# -- the servers -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def smtp_sink() -> Iterator[int]:
    """Postfix's smtp-sink on a free port (as root it runs as nobody); yields the port."""
    port = _free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [SMTP_SINK, *user, f"{HOST}:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("smtp-sink did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait()


@contextmanager
def server(name: str) -> Iterator[int]:
    if name == "smtp-sink":
        with smtp_sink() as port:
            yield port
    else:
        with sink_server("process") as (port, _):
            yield port


# -- what is timed -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    label: str
    n: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.n / self.wall

    def line(self) -> str:
        return (
            f"    {self.label:<40} {self.n:>5} msgs  {self.wall:7.2f} s  {self.rate:8.1f} msgs/s"
            f"  CPU {1000 * self.cpu / self.n:6.2f} ms/msg"
        )


def render(folder: Path, contacts: int) -> Path:
    """A workspace whose `contacts` birthday emails wait rendered in the outbox."""
    config = write_workspace(folder, contacts=contacts, today=DAY)
    subprocess.run(
        [str(BIN / "outreach"), "run", "--all", "--date", DAY.isoformat(), "--quiet"],
        cwd=folder,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return config


def dkim_key(folder: Path) -> Path:
    """A 2048-bit RSA key for `dkim:`, outside every workspace, readable by its owner only."""
    key = folder / "dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    key.chmod(0o600)
    return key


@contextmanager
def publishing(key: Path | None) -> Iterator[str]:
    """A DNS server publishing the key at bench._domainkey.casalucia.example (HOST:PORT)."""
    if key is None:
        yield ""
        return
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    record = DkimKey("casalucia.example", "bench", private, str(key))
    with running_dns_server({record.record_name: [record.record]}) as server:
        yield server


def time_outreach(
    rendered: Path,
    work: Path,
    *,
    port: int,
    connections: int,
    pipelining: bool,
    n: int,
    key: Path | None = None,
    dns_server: str = "",
) -> Cell:
    """`outreach send` of the rendered workspace (a fresh copy) to 127.0.0.1:port."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(rendered, work)
    config = work / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("delivery:\n  method: outbox\n", "")
        + "delivery:\n  method: smtp\n  host: 127.0.0.1\n"
        f"  port: {port}\n  security: none\n  connections: {connections}\n"
        f"  pipelining: {'true' if pipelining else 'false'}\n"
        + (
            f"dkim: {{domain: casalucia.example, selector: bench, key_file: {key}}}\n"
            if key
            else ""
        ),
        encoding="utf-8",
    )
    settings = load_settings(config)
    now = datetime.combine(DAY, clock_time(10, 0), tzinfo=settings.tz)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    environ = {"OUTREACH_DNS_SERVER": dns_server} if dns_server else {}
    summary = perform_send(settings=settings, environ=environ, today=DAY, now=now)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    if summary.sent != n:
        raise RuntimeError(f"sent {summary.sent} of {n}: {summary.stopped or summary.failed[:1]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    mode = "pipelining" if pipelining else "no pipelining"
    label = f"outreach, {connections} connection{'s' if connections > 1 else ''}, {mode}"
    label += ", DKIM" if key else ""
    return Cell(label, n, wall, cpu)


def time_mailmerge(rendered: Path, work: Path, *, port: int, n: int) -> Cell | None:
    """mailmerge sending the first `n` contacts' emails to 127.0.0.1:port."""
    program = BIN / "mailmerge"
    if not program.exists():
        return None
    from benchmarks.synth import write_mailmerge_inputs

    template, config = write_mailmerge_inputs(work)
    config.write_text(f"[smtp_server]\nhost = {HOST}\nport = {port}\n", encoding="utf-8")
    command = [
        str(program),
        "--no-dry-run",
        "--template",
        str(template),
        "--database",
        str(rendered / "contacts.csv"),
        "--config",
        str(config),
        "--output-format",
        "raw",
        "--limit",
        str(n),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Cell("mailmerge (a connection per message)", n, wall, cpu)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="emails per fast cell")
    parser.add_argument("--n-slow", type=int, default=100, help="1 connection, no pipelining")
    parser.add_argument("--mailmerge-n", type=int, default=50, help="mailmerge at a delay")
    parser.add_argument("--delays", default="0,20", help="ms per round trip, comma-separated")
    parser.add_argument("--servers", default="smtp-sink,aiosmtpd")
    parser.add_argument("--dkim", action="store_true", help="sign every email (RSA-2048)")
    args = parser.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    servers = args.servers.split(",")
    if "smtp-sink" in servers and not Path(SMTP_SINK).exists():
        sys.exit(f"{SMTP_SINK} is missing: `make system-deps` installs Debian's postfix")

    began = time.perf_counter()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="outreach-smtp-latency-") as tmp,
        ExitStack() as stack,
    ):
        folder = Path(tmp)
        rendered = {n: folder / f"rendered-{n}" for n in {args.n, args.n_slow, args.mailmerge_n}}
        for n, path in rendered.items():
            render(path, n)
        key = dkim_key(folder) if args.dkim else None
        dns_server = stack.enter_context(publishing(key))
        best: dict[tuple[str, float], Cell] = {}
        mailmerge: dict[tuple[str, float], Cell] = {}
        for name in servers:
            offers = "offers PIPELINING" if name == "smtp-sink" else "no PIPELINING"
            with server(name) as upstream:
                for delay in delays:
                    print(f"\n{name} ({offers}), {delay:g} ms per round trip:", flush=True)
                    with delaying_proxy(upstream, delay) as port:
                        for connections, pipelining in CONFIGS:
                            if pipelining and name != "smtp-sink":
                                continue  # not offered: the same as without
                            slow = delay and connections == 1 and not pipelining
                            n = args.n_slow if slow else args.n
                            cell = time_outreach(
                                rendered[n],
                                folder / "work",
                                port=port,
                                connections=connections,
                                pipelining=pipelining,
                                n=n,
                                key=key,
                                dns_server=dns_server,
                            )
                            print(cell.line(), flush=True)
                            best[(name, delay)] = cell
                        n = args.mailmerge_n if delay else args.n
                        other = time_mailmerge(rendered[n], folder / "mm", port=port, n=n)
                        if other is None:
                            print("    mailmerge is not installed: pip install -e '.[bench]'")
                        else:
                            print(other.line(), flush=True)
                            mailmerge[(name, delay)] = other
                            top = best[(name, delay)]
                            print(f"    {top.label}: {top.rate / other.rate:.1f}x mailmerge")
    print(
        f"\nload average after: {os.getloadavg()[0]:.2f}; took {time.perf_counter() - began:.0f} s"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (outreach's send step): {peak:.0f} MiB")
    key = ("smtp-sink", 20.0)
    if key in best and key in mailmerge:
        rate, ratio = best[key].rate, best[key].rate / mailmerge[key].rate
        print(
            f"targets at 20 ms (smtp-sink, 4 connections + pipelining): >= 100 msgs/s "
            f"{'met' if rate >= 100 else 'MISSED'} ({rate:.0f}); >= 15x mailmerge "
            f"{'met' if ratio >= 15 else 'MISSED'} ({ratio:.1f}x)"
        )


if __name__ == "__main__":
    main()
