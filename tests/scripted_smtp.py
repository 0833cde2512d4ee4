"""A tiny SMTP server for tests that answers DATA with 354 even when every RCPT was refused.

RFC 2920 3.1 allows it, aiosmtpd and smtp-sink never do it (they refuse DATA with 503/554), so
a pipelining client's handling of it needs a server of its own. It offers PIPELINING, refuses
the addresses it is given with 550, and records each message whose data ended with "." —
with the recipients it had accepted — and each connection that ended in the middle of a data.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass
class Script:
    """What the server refuses and what it saw."""

    refuse: set[str]
    received: list[tuple[tuple[str, ...], bytes]] = field(default_factory=list)
    cut_mid_data: int = 0  # connections that closed before a data's final "."
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(socketserver.StreamRequestHandler):
    script: Script

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        script = self.script
        with script.lock:
            script.connections += 1
        self.reply("220 scripted ESMTP")
        rcpts: list[str] = []
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command[:4].upper()
            if verb == "EHLO":
                self.reply("250-scripted\r\n250-PIPELINING\r\n250 8BITMIME")
            elif verb == "MAIL":
                rcpts = []
                self.reply("250 OK")
            elif verb == "RCPT":
                address = command.partition("<")[2].partition(">")[0]
                if address in script.refuse:
                    self.reply("550 5.1.1 no such user")
                else:
                    rcpts.append(address)
                    self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 go ahead")  # whatever RCPT said: the point of this server
                data = self._data()
                if data is None:
                    with script.lock:
                        script.cut_mid_data += 1
                    return
                if rcpts:
                    with script.lock:
                        script.received.append((tuple(rcpts), data))
                    self.reply("250 OK queued")
                else:
                    self.reply("554 5.5.1 no valid recipients")
            elif verb == "RSET":
                rcpts = []
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _data(self) -> bytes | None:
        lines: list[bytes] = []
        while line := self.rfile.readline():
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)
        return None  # the client hung up


@contextmanager
def scripted_server(refuse: set[str]) -> Iterator[tuple[int, Script]]:
    """Serve on a free port of 127.0.0.1 until the block ends: (port, script)."""
    script = Script(refuse=refuse)
    handler = type("Handler", (_Handler,), {"script": script})
    server = socketserver.ThreadingTCPServer((HOST, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], script
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
