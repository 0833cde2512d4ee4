"""Postfix's smtp-sink on 127.0.0.1: a real SMTP server that offers PIPELINING (RFC 2920).

`smtp_sink_server` (session scope) starts one for the test process and kills it at the end;
`smtp_sink` (per test) empties what it has received so far. The server writes every message it
accepts to a file of its own (`-d`), which `SinkServer.messages()` reads back. Debian's
`postfix` package has it (`make system-deps`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from smtp_server import HOST, free_port

from outreach.model.config import Delivery

SMTP_SINK = "/usr/sbin/smtp-sink"


@dataclass(frozen=True, slots=True)
class SunkMessage:
    """One message smtp-sink accepted: its envelope and its data (LF line ends, as it dumps)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


@dataclass
class SinkServer:
    """A running smtp-sink and the folder it dumps messages into."""

    port: int
    dumps: Path
    process: subprocess.Popen[bytes]

    def delivery(self, **overrides: Any) -> Delivery:
        """A `delivery: smtp` config for this server (small timeout), with overrides."""
        values: dict[str, Any] = {
            "method": "smtp",
            "host": HOST,
            "port": self.port,
            "security": "none",
            "timeout_s": 5.0,
            **overrides,
        }
        return Delivery(**values)

    def messages(self) -> list[SunkMessage]:
        """Every message accepted since the last clear(), in no particular order."""
        return [_parse_dump(path.read_bytes()) for path in sorted(self.dumps.iterdir())]

    def clear(self) -> None:
        """Forget the messages received so far."""
        for path in self.dumps.iterdir():
            path.unlink()


def _parse_dump(raw: bytes) -> SunkMessage:
    # smtp-sink writes X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args, one
    # X-Rcpt-Args per recipient and a folded Received header, then the data.
    lines = raw.split(b"\n")
    mail_from = ""
    rcpts: list[str] = []
    index = 0
    while lines[index].startswith(b"X-"):
        name, _, value = lines[index].partition(b": ")
        address = value.split(b" ")[0].decode().strip("<>")
        if name == b"X-Mail-Args":
            mail_from = address
        elif name == b"X-Rcpt-Args":
            rcpts.append(address)
        index += 1
    assert lines[index].startswith(b"Received:")
    index += 1
    while lines[index][:1] in (b" ", b"\t"):
        index += 1
    return SunkMessage(mail_from, tuple(rcpts), b"\n".join(lines[index:]))


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"smtp-sink exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as probe:
                probe.recv(100)  # the greeting
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("smtp-sink did not start listening")


@pytest.fixture(scope="session")
def smtp_sink_server() -> Iterator[SinkServer]:
    """One smtp-sink for the test process, killed at the end."""
    if not Path(SMTP_SINK).exists():
        pytest.fail(f"{SMTP_SINK} is missing: `make system-deps` installs Debian's postfix")
    # As root smtp-sink drops its privileges to a user, who must be able to write the dumps:
    # not under pytest's own (private) temporary folder, then.
    dumps = Path(tempfile.mkdtemp(prefix="outreach-smtp-sink-"))
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    if user:
        dumps.chmod(0o777)
    process: subprocess.Popen[bytes] | None = None
    for _ in range(5):  # another test may take the free port first
        port = free_port()
        process = subprocess.Popen(
            [SMTP_SINK, *user, "-d", f"{dumps}/m.", f"{HOST}:{port}", "256"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_listening(port, process)
        except RuntimeError:
            process.kill()
            process.wait()
            process = None
            continue
        break
    if process is None:
        raise RuntimeError("could not start smtp-sink")
    try:
        yield SinkServer(port=port, dumps=dumps, process=process)
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(dumps, ignore_errors=True)


@pytest.fixture
def smtp_sink(smtp_sink_server: SinkServer) -> SinkServer:
    """The session's smtp-sink, with nothing received yet."""
    smtp_sink_server.clear()
    return smtp_sink_server
