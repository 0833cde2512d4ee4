"""The one-click unsubscribe receiver run as a real server (`outreach serve`), called with a
real HTTP client: a POST unsubscribes at once, a GET only asks, a bad token writes nothing."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from conftest import BASE_CONFIG, HEADER, Workspace, with_consent
from feedback_helpers import LETTER, PROMO, ROWS, ledger_rows

from outreach.ledger import acquire_lock
from outreach.render.templates import unsubscribe_token

MakeWorkspace = Callable[..., Workspace]
ONE_CLICK = b"List-Unsubscribe=One-Click"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str]]:
    """A workspace with `outreach serve --port 0` running on it, for the whole module (each
    test unsubscribes contacts of its own); (ws, base URL)."""
    ws = Workspace(tmp_path_factory.mktemp("served"))
    ws.write("config.yaml", BASE_CONFIG)
    ws.write("contacts.csv", "\n".join(with_consent([HEADER, *ROWS])) + "\n")
    ws.write("campaigns/promo.yaml", PROMO)
    ws.write("templates/promo.txt.j2", "Hola.\n")
    ws.write("templates/promo_letter.html.j2", LETTER)
    log = ws.root / "serve.log"
    with (
        log.open("w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "outreach", "serve", "--port", "0"],
            cwd=ws.root,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:"), line + log.read_text()
            yield ws, line.split()[2]
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, log.read_text()
    # The log names requests by path only: the query holds the contact id and the token.
    assert "token=" not in log.read_text()


def url(base: str, contact_id: str, token: str | None = None) -> str:
    token = (
        token
        if token is not None
        else unsubscribe_token(secret="test-secret", contact_id=contact_id)
    )
    return f"{base}/baja?{urlencode({'id': contact_id, 'token': token})}"


def call(
    address: str, *, data: bytes | None = None, content_type: str | None = None
) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(
        address, data=data, method="POST" if data is not None else "GET"
    )
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def suppressed(ws: Workspace, contact_id: str) -> list[tuple[object, ...]]:
    path = ws.root / "state" / "ledger.sqlite"
    if not path.exists():
        return []
    rows = ledger_rows(ws, "SELECT value, channel, source FROM suppressions")
    return [row for row in rows if row[0] == contact_id.lower()]


def test_a_one_click_post_unsubscribes_at_once(served: tuple[Workspace, str]) -> None:
    ws, base = served
    status, body, headers = call(
        url(base, "c-001"), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )
    assert status == 200
    assert "Hecho: no recibirá más mensajes de Casa Lucía." in body
    assert headers["Cache-Control"] == "no-store"
    assert suppressed(ws, "c-001") == [("c-001", "all", "one-click")]
    # Again: still 200, nothing new.
    assert call(url(base, "c-001"), data=ONE_CLICK)[0] == 200
    assert suppressed(ws, "c-001") == [("c-001", "all", "one-click")]
    # The next run leaves the contact out.
    explained = ws.run("explain", "c-001", "--date", "2026-11-24")
    assert "on the suppression list: c-001 (all)" in explained.out


def test_a_multipart_one_click_post_works_too(served: tuple[Workspace, str]) -> None:
    ws, base = served
    body = (
        b'--x\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--x--\r\n"
    )
    status, _, _ = call(
        url(base, "c-002"), data=body, content_type="multipart/form-data; boundary=x"
    )
    assert status == 200
    assert suppressed(ws, "c-002") == [("c-002", "all", "one-click")]


def test_a_get_only_asks_in_the_contacts_language(served: tuple[Workspace, str]) -> None:
    ws, base = served
    status, body, headers = call(url(base, "c-007"))  # Gema reads English
    assert status == 200
    assert '<html lang="en">' in body
    assert "Do you want to stop receiving messages from Casa Lucía?" in body
    assert '<form method="post">' in body
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in body
    assert headers["Referrer-Policy"] == "no-referrer"
    status, body, _ = call(url(base, "c-008"))
    assert "¿Desea dejar de recibir mensajes de Casa Lucía?" in body
    # Link scanners follow links: a GET never unsubscribes.
    assert suppressed(ws, "c-007") == suppressed(ws, "c-008") == []


@pytest.mark.parametrize(
    ("contact_id", "token"),
    [
        ("c-003", "0000000000000000"),  # wrong
        ("c-003", ""),  # missing
        ("c-004", unsubscribe_token(secret="test-secret", contact_id="c-003")),  # another's
        ("c-005", unsubscribe_token(secret="other-secret", contact_id="c-005")),
        ("<script>alert(1)</script>", "x" * 16),
    ],
)
def test_a_bad_or_missing_token_is_400_and_writes_nothing(
    served: tuple[Workspace, str], contact_id: str, token: str
) -> None:
    ws, base = served
    for data in (ONE_CLICK, None):
        status, body, _ = call(url(base, contact_id, token), data=data)
        assert status == 400
        assert "<script>" not in body
    assert suppressed(ws, contact_id) == []


def test_what_the_receiver_refuses(served: tuple[Workspace, str]) -> None:
    ws, base = served
    assert call(url(base, "c-006"), data=b"unsubscribe=yes")[0] == 400  # not a one-click body
    assert (
        call(url(base, "c-001"), data=b"List-Unsubscribe=One-Click" + b"&x=" + b"y" * 9000)[0]
        == 413
    )
    assert call(url(base, "c-006").replace("/baja", "/other"), data=ONE_CLICK)[0] == 404
    assert call(f"{base}/baja")[0] == 400  # no id, no token
    assert suppressed(ws, "c-006") == []


def test_serve_needs_a_verifiable_url(make_workspace: MakeWorkspace) -> None:
    ws = make_workspace(ROWS)
    config = (ws.root / "config.yaml").read_text().replace("&token={token}", "")
    ws.write("config.yaml", config)
    result = ws.run("serve", "--port", "0")
    assert result.code == 2
    assert "unsubscribe.url needs both {id} and {token}" in result.err


def test_a_one_click_post_is_recorded_while_a_run_holds_the_workspace(
    served: tuple[Workspace, str],
) -> None:
    ws, base = served
    with acquire_lock(ws.root / "state", now=datetime(2026, 11, 24, 9, 0, tzinfo=UTC)):
        status, _, _ = call(url(base, "c-100"), data=ONE_CLICK)  # a contact since removed
        assert status == 200
        assert suppressed(ws, "c-100") == [("c-100", "all", "one-click")]


def test_the_wsgi_application_mounts_under_another_server(
    served: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from outreach.feedback import receiver

    ws, _ = served
    monkeypatch.setenv("OUTREACH_CONFIG", str(ws.root / "config.yaml"))
    monkeypatch.setattr(receiver, "_apps", {})

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    # Mounted at /baja, as a web server's WSGI module does: the path arrives as SCRIPT_NAME.
    def mounted(environ: dict[str, object], start_response: Callable[..., object]) -> object:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/baja"):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/baja", path.removeprefix("/baja")
        return receiver.application(environ, start_response)

    server = make_server("127.0.0.1", 0, mounted, handler_class=Quiet)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        status, _, _ = call(url(f"http://127.0.0.1:{server.server_port}", "c-101"), data=ONE_CLICK)
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert status == 200
    assert suppressed(ws, "c-101") == [("c-101", "all", "one-click")]


def test_the_page_follows_the_customer_and_the_log_the_owner(
    make_workspace: MakeWorkspace, caplog: pytest.LogCaptureFixture
) -> None:
    """An owner who reads Spanish (`language: es`) still serves Gema her page in English; the
    log line meant for the owner is Spanish."""
    from outreach import i18n
    from outreach.feedback.receiver import UnsubscribeApp
    from outreach.model.config import load_settings

    ws = make_workspace(ROWS, config_extra="language: es\n")
    try:
        app = UnsubscribeApp(load_settings(ws.root / "config.yaml"))

        def get(contact_id: str, token: str | None = None) -> tuple[str, str]:
            answered: list[str] = []
            query = url("", contact_id, token).partition("?")[2]
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/baja", "QUERY_STRING": query}
            body = b"".join(app(environ, lambda status, headers: answered.append(status)))
            return answered[0], body.decode()

        status, english = get("c-007")  # Gema reads English
        assert status == "200 OK" and '<html lang="en">' in english
        assert "Do you want to stop receiving messages from Casa Lucía?" in english
        assert "¿Desea" not in english
        status, spanish = get("c-008")
        assert "¿Desea dejar de recibir mensajes de Casa Lucía?" in spanish
        with caplog.at_level("WARNING", logger="outreach.serve"):
            status, bad = get("c-008", "0000000000000000")
        assert status == "400 Bad Request"
        assert "Este enlace de baja no es válido. Use el enlace del último mensaje." in bad
        assert "GET /baja: un token que no se verifica (no se escribe nada)" in caplog.text
        assert "does not verify" not in caplog.text
    finally:
        i18n.use("en")
