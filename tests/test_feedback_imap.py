"""`outreach bounces` on a real IMAP mailbox (dovecot on 127.0.0.1, TLS verified): recognised
mail is moved to the processed folder, everything else stays in INBOX; reading again changes
nothing; a bad password or an unverified certificate stops with a clear error."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable

import imap_server as imap_server_module
from conftest import Result, Workspace
from feedback_helpers import DATA, SAMPLES, ledger_rows, promo_workspace, snapshot
from imap_server import ImapServer
from imapclient import IMAPClient

imap_server = imap_server_module.imap_server
MakeWorkspace = Callable[..., Workspace]
PASSWORD_ENV = "OUTREACH_TEST_IMAP_PASSWORD"
PERSON = b"From: Ana <ana@example.com>\r\nSubject: Re: Menu\r\n\r\nMesa para dos?\r\n"
BIG = b"From: Ana <ana@example.com>\r\nSubject: fotos\r\n\r\n" + b"x" * 998 * 3000 + b"\r\n"


def imap_config(server: ImapServer, *, ca: bool = True) -> str:
    text = (
        "bounces:\n  imap:\n    host: 127.0.0.1\n"
        f"    port: {server.port}\n    username: {server.user}\n"
        f"    password_env: {PASSWORD_ENV}\n    timeout_s: 5\n"
    )
    return text + (f"    ca_file: {server.ca_file}\n" if ca else "")


def client(server: ImapServer) -> IMAPClient:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    imap = IMAPClient(server.host, port=server.port, ssl=True, ssl_context=context, timeout=5)
    imap.login(server.user, server.password)
    return imap


def folder_subjects(server: ImapServer, folder: str) -> list[str]:
    imap = client(server)
    try:
        if not imap.folder_exists(folder):
            return []
        imap.select_folder(folder, readonly=True)
        uids = imap.search("ALL")
        found = imap.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]) if uids else {}
        return sorted(
            next(v for k, v in data.items() if k.startswith(b"BODY")).decode().strip()
            for data in found.values()
        )
    finally:
        imap.logout()


def bounces(ws: Workspace, *args: str, password: str | None) -> Result:
    return ws.run(
        "bounces",
        "--date",
        "2026-11-24",
        *args,
        env={PASSWORD_ENV: password} if password is not None else None,
        unset=(PASSWORD_ENV,),
    )


def test_imap_mail_is_read_and_only_recognised_mail_is_moved(
    make_workspace: MakeWorkspace, imap_server: ImapServer
) -> None:
    ws = promo_workspace(make_workspace, config_extra=imap_config(imap_server))
    imap = client(imap_server)
    try:
        for name in sorted(SAMPLES):
            imap.append("INBOX", (DATA / name).read_bytes().replace(b"\n", b"\r\n"))
        imap.append("INBOX", PERSON)
        imap.append("INBOX", BIG)
    finally:
        imap.logout()
    result = bounces(ws, "--json", password=imap_server.password)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["mailbox"] == f"imap://{imap_server.user}@127.0.0.1/INBOX"
    kinds = sorted(m["kind"] for m in report["messages"])
    # Ana's two mails to the bounce address are replies: they wait for the owner.
    assert kinds == sorted([k for k, _, _ in SAMPLES.values()] + ["other", "question"])
    big = next(m for m in report["messages"] if m["problem"] == "cut at the size limit")
    assert big["action"] == "waits for the owner"  # read only up to 1 MiB (a partial FETCH)
    assert len(report["blocked"]) == 5 and len(report["suppressed"]) == 1
    assert folder_subjects(imap_server, "INBOX") == []
    assert len(folder_subjects(imap_server, "outreach-processed")) == len(SAMPLES) + 2
    # Again, with the same bounces back in INBOX: nothing changes but the move.
    before = snapshot(ws)
    imap = client(imap_server)
    try:
        imap.append("INBOX", (DATA / "postfix-hard.eml").read_bytes().replace(b"\n", b"\r\n"))
    finally:
        imap.logout()
    again = bounces(ws, "--json", password=imap_server.password)
    assert again.code == 0, again.err
    actions = sorted(m["action"] for m in json.loads(again.out)["messages"])
    assert actions == ["already read"]
    assert snapshot(ws) == before
    assert folder_subjects(imap_server, "INBOX") == []


def test_the_owners_inbox_as_replies_mailbox_is_only_flagged(
    make_workspace: MakeWorkspace, imap_server: ImapServer
) -> None:
    config = imap_config(imap_server).replace("bounces:", "replies:", 1)
    ws = promo_workspace(make_workspace, config_extra=config)
    (mid,) = ledger_rows(ws, "SELECT message_id FROM messages WHERE contact_id = 'c-002'")[0]
    stop = (
        f"From: <bruno@example.net>\r\nSubject: Re: Menu\r\nIn-Reply-To: <{mid}>\r\n\r\n"
        "Por favor, dadme de baja.\r\n"
    ).encode()
    imap = client(imap_server)
    try:
        imap.append("INBOX", stop)
        imap.append("INBOX", b"From: <proveedor@example.com>\r\nSubject: Factura\r\n\r\nHola\r\n")
    finally:
        imap.logout()
    first = bounces(ws, "--json", password=imap_server.password)
    assert first.code == 0, first.err
    assert json.loads(first.out)["suppressed"] == [
        {"contact_id": "c-002", "channel": "email", "source": "reply"}
    ]
    # Nothing moved, nothing marked as read for the owner: only outreach's own keyword.
    assert folder_subjects(imap_server, "INBOX") == ["Subject: Factura", "Subject: Re: Menu"]
    imap = client(imap_server)
    try:
        imap.select_folder("INBOX", readonly=True)
        flags = imap.get_flags(imap.search("ALL"))
    finally:
        imap.logout()
    assert all(b"$OutreachRead" in f and b"\\Seen" not in f for f in flags.values())
    again = bounces(ws, "--json", password=imap_server.password)
    assert again.code == 0 and json.loads(again.out)["messages"] == []


def test_imap_problems_stop_with_a_clear_error_and_touch_nothing(
    make_workspace: MakeWorkspace, imap_server: ImapServer
) -> None:
    ws = promo_workspace(make_workspace, config_extra=imap_config(imap_server))
    imap = client(imap_server)
    try:
        imap.append("INBOX", (DATA / "qmail-hard.eml").read_bytes().replace(b"\n", b"\r\n"))
    finally:
        imap.logout()
    missing = bounces(ws, password=None)
    assert missing.code == 2
    assert f"the environment variable {PASSWORD_ENV} is not set" in missing.err
    wrong = bounces(ws, password="wrong")
    assert wrong.code == 2
    assert f"the IMAP server 127.0.0.1:{imap_server.port} refused" in wrong.err
    ws.write(
        "config.yaml",
        (ws.root / "config.yaml").read_text().replace(f"    ca_file: {imap_server.ca_file}\n", ""),
    )
    untrusted = bounces(ws, password=imap_server.password)
    assert untrusted.code == 2
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.err
    assert "Traceback" not in missing.err + wrong.err + untrusted.err
    assert folder_subjects(imap_server, "INBOX") == ["Subject: failure notice"]
    assert folder_subjects(imap_server, "outreach-processed") == []
