"""`outreach serve` against hostile clients, in-process on a real socket: no token in the log
in any URL style, no forged log line, one line per stalled or bad request and never a
traceback, 414 for a long request line, HTTP/0.9, 429 past the per-address rate, and contacts
looked up without reading the file per request."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
from conftest import BASE_CONFIG, HEADER, Workspace, with_consent

from outreach.feedback.receiver import RateLimit, UnsubscribeApp, escaped, make_receiver
from outreach.model.config import load_settings
from outreach.render.templates import unsubscribe_token

PATH_STYLE = BASE_CONFIG.replace(
    "https://casalucia.example/baja?id={id}&token={token}",
    "https://casalucia.example/u/{id}/{token}",
)
ROWS = ["c1,Ana,A,ana@example.com,,,,,,email,en,,", "c2,Bea,B,bea@example.com,,,,,,email,es,,"]
TOKEN = unsubscribe_token(secret="test-secret", contact_id="c1")


class Lines(logging.Handler):
    """Every line the receiver logs, as written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def workspace(root: Path, config: str = PATH_STYLE) -> Workspace:
    ws = Workspace(root)
    ws.write("config.yaml", config)
    ws.write("contacts.csv", "\n".join(with_consent([HEADER, *ROWS])) + "\n")
    return ws


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[tuple[str, int], Lines]]:
    """The receiver on 127.0.0.1 (path-style URL; a client may stall 0.3 s; two requests per
    address, then one an hour): its address and its log."""
    ws = workspace(tmp_path / "ws")
    server = make_receiver(
        load_settings(ws.root / "config.yaml"),
        host="127.0.0.1",
        port=0,
        rate=RateLimit(burst=4, seconds=3600),
        timeout=0.3,
    )
    log = logging.getLogger("outreach.serve")
    lines = Lines()
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", server.server_port), lines
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
        log.removeHandler(lines)


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send `request` as is; everything the server answers until it closes."""
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def get(address: tuple[str, int], path: str) -> bytes:
    return exchange(address, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def test_no_token_reaches_the_log_in_any_url_style(
    served: tuple[tuple[str, int], Lines], capfd: pytest.CaptureFixture[str]
) -> None:
    address, log = served
    assert get(address, f"/u/c1/{TOKEN}").startswith(b"HTTP/1.0 200")
    assert get(address, f"/u/c1/{TOKEN[:-1]}0").startswith(b"HTTP/1.0 400")
    assert get(address, f"/u/c1/{TOKEN}/more").startswith(b"HTTP/1.0 404")
    assert get(address, f"/u/c1/{TOKEN.upper()}?x=1").startswith(b"HTTP/1.0 200")
    written = "\n".join(log.lines) + capfd.readouterr().err
    assert TOKEN not in written.lower() and TOKEN[:-1] not in written.lower(), written
    assert "/u/c1/***" in written  # still says which contact's link it was


def test_a_request_cannot_forge_log_lines(
    served: tuple[tuple[str, int], Lines], capfd: pytest.CaptureFixture[str]
) -> None:
    address, log = served
    forged = "/u/c1%0a2026-12-01T00:00:00%20INFO%20c9%20unsubscribed%1b[2J/bad"
    assert get(address, forged).startswith(b"HTTP/1.0 400")
    assert get(address, "/x%0d%0aINFO%e2%80%a8forged").startswith(b"HTTP/1.0 404")
    for line in log.lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
        assert "\u2028" not in line, line
    assert any("\\n2026-12-01" in line and "\\x1b[2J" in line for line in log.lines), log.lines
    assert "Traceback" not in capfd.readouterr().err


def test_a_stalled_client_and_bad_requests_are_one_line_each_never_a_traceback(
    served: tuple[tuple[str, int], Lines], capfd: pytest.CaptureFixture[str]
) -> None:
    address, log = served
    assert exchange(address, b"") == b""  # sends nothing: dropped after the timeout
    assert exchange(address, b"GET /u/c1/x HTTP/1.1\r\nHost") == b""  # stalls mid-header
    long_line = exchange(address, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
    assert long_line.startswith(b"HTTP/1.0 414"), long_line[:100]
    nine = exchange(address, f"GET /u/c1/{TOKEN}\r\n".encode())  # HTTP/0.9: no status line
    assert b"505" in nine and not nine.startswith(b"HTTP/"), nine
    assert b"Error code: 400" in exchange(address, b"BREW\r\n")  # one word: answered as 0.9
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and stderr.count("\n") <= 1, stderr
    stalls = [line for line in log.lines if "stalled" in line]
    assert len(stalls) == 2, log.lines
    assert [line.rsplit(" ", 1)[1] for line in log.lines if "stalled" not in line] == [
        "414", "505", "400",
    ], log.lines  # fmt: skip
    assert all(TOKEN not in line for line in log.lines)


def test_past_its_burst_an_address_is_answered_429(
    served: tuple[tuple[str, int], Lines],
) -> None:
    address, _ = served
    answers = [get(address, "/nothing") for _ in range(5)]
    assert [a.split(b" ", 2)[1] for a in answers] == [b"404"] * 4 + [b"429"]
    assert b"Retry-After: 3600" in answers[-1]


def test_the_rate_limit_refills_one_request_per_period() -> None:
    now = [0.0]
    limit = RateLimit(burst=2, seconds=10, clock=lambda: now[0])
    assert [limit.allow("a"), limit.allow("a"), limit.allow("a"), limit.allow("b")] == [
        True, True, False, True,
    ]  # fmt: skip
    now[0] = 9.9
    assert not limit.allow("a")
    now[0] = 10.0
    assert limit.allow("a") and not limit.allow("a")


def test_contacts_are_read_once_and_again_only_when_the_file_changes(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws")
    app = UnsubscribeApp(load_settings(ws.root / "config.yaml"))

    def page(contact_id: str) -> str:
        environ: dict[str, object] = {
            "PATH_INFO": f"/u/{contact_id}/"
            + unsubscribe_token(secret="test-secret", contact_id=contact_id)
        }
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(app(environ, lambda s, h: status.append(s)))
        assert status == ["200 OK"]
        return body.decode()

    assert 'lang="en"' in page("c1") and 'lang="es"' in page("c2") and 'lang="es"' in page("c9")
    assert app.locales.loads == 1
    ws.write(
        "contacts.csv", "\n".join(with_consent([HEADER, ROWS[0].replace(",en,", ",de,")])) + "\n"
    )
    assert 'lang="de"' in page("c1")
    assert app.locales.loads == 2


def test_escaped_keeps_printable_text_and_escapes_the_rest() -> None:
    assert escaped("/baja/Núñez") == "/baja/Núñez"
    assert escaped("a\nb\x1b[31m\\c\u202e") == "a\\nb\\x1b[31m\\\\c\\u202e"
