"""A real DNS server (Debian's dnsmasq) on 127.0.0.1 answering TXT records, for tests.

`running_dns_server({name: [text, ...]})` starts dnsmasq on a free UDP port with those TXT
records (each text one record, which dnsmasq cuts into 255-character strings) and
answers NXDOMAIN for every other name; it yields "127.0.0.1:PORT", the form
OUTREACH_DNS_SERVER takes. `dns_resolver(server)` is a dnspython resolver that asks it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import dns.resolver

HOST = "127.0.0.1"
DNSMASQ = "/usr/sbin/dnsmasq"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def dns_resolver(server: str) -> dns.resolver.Resolver:
    """A resolver asking only `server` ("HOST:PORT")."""
    host, _, port = server.rpartition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 5.0
    return resolver


def _txt_option(name: str, text: str) -> str:
    # On its command line dnsmasq takes the text as it is (no quotes; a comma would start a
    # second string) and cuts it into strings of 255 characters itself.
    if "," in text:
        raise ValueError(f"dnsmasq cannot serve a comma in a TXT record: {text!r}")
    return f"--txt-record={name},{text}"


@contextmanager
def running_dns_server(records: Mapping[str, Sequence[str]]) -> Iterator[str]:
    """dnsmasq serving these TXT records (and NXDOMAIN for the rest); yields HOST:PORT."""
    options = [_txt_option(name, text) for name, texts in records.items() for text in texts]
    for _ in range(5):  # another process may take the free port before dnsmasq binds it
        port = _free_udp_port()
        process = subprocess.Popen(
            [
                DNSMASQ,
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                f"--listen-address={HOST}",
                "--bind-interfaces",
                f"--port={port}",
                "--local=/#/",  # every name is ours: unknown ones are NXDOMAIN, not REFUSED
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = f"{HOST}:{port}"
        if _answers(server, process):
            break
        process.kill()
        process.wait()
    else:
        raise RuntimeError("dnsmasq did not start")
    try:
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(server: str, process: subprocess.Popen[bytes]) -> bool:
    """Whether the server answers a query (NXDOMAIN counts) before it exits."""
    resolver = dns_resolver(server)
    resolver.lifetime = 0.2
    for _ in range(100):
        if process.poll() is not None:
            return False
        try:
            resolver.resolve("ready.invalid", "TXT")
        except dns.resolver.NXDOMAIN:
            return True
        except dns.exception.DNSException:
            time.sleep(0.05)
    return False
