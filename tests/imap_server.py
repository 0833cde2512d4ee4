"""A real IMAP server for tests: Debian's dovecot-imapd with its own config in a temporary
folder, on a free 127.0.0.1 port, TLS with a throwaway CA (trustme), one static user.

Fixture: `imap_server` (bind it in a test module: `imap_server = imap_server_module.imap_server`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from smtp_server import HOST, free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "imap-test-password"


@dataclass(frozen=True, slots=True)
class ImapServer:
    """A running dovecot: where it listens, who logs in, and the CA that signed it."""

    host: str
    port: int
    user: str
    password: str
    ca_file: Path
    maildir: Path  # the user's mailbox on disk (for looking, not for writing)


CONFIG = """\
protocols = imap
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {internal}
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = {host}
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def _accounts() -> tuple[int, int, str, str]:
    """(uid, gid, internal user, its group) that dovecot may run the mailbox as."""
    if os.getuid() != 0:
        me = pwd.getpwuid(os.getuid())
        return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name
    for name in ("dovecot", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        import grp

        return entry.pw_uid, entry.pw_gid, name, grp.getgrgid(entry.pw_gid).gr_name
    raise RuntimeError("no unprivileged user for dovecot")


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("dovecot did not start listening in 15 s")


@pytest.fixture
def imap_server() -> Iterator[ImapServer]:
    """dovecot on 127.0.0.1 (IMAPS), stopped and removed after the test."""
    if not Path(DOVECOT).exists():
        raise RuntimeError("dovecot is not installed: run `make system-deps` (dovecot-imapd)")
    # Not tmp_path: dovecot's unprivileged processes must be able to reach these folders.
    root = Path(tempfile.mkdtemp(prefix="outreach-dovecot-"))
    root.chmod(0o755)
    uid, gid, internal, group = _accounts()
    try:
        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        (root / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        home = root / "home" / USER
        for sub in ("new", "cur", "tmp"):
            (home / "Maildir" / sub).mkdir(parents=True)
        for path in [root / "home", home, *home.rglob("*")]:
            os.chown(path, uid, gid)
        port = free_port()
        config = root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                host=HOST,
                root=root,
                port=port,
                uid=uid,
                gid=gid,
                internal=internal,
                internal_group=group,
                password=PASSWORD,
            )
        )
        log = root / "dovecot.log"
        proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_for(port, proc, log)
            yield ImapServer(HOST, port, USER, PASSWORD, root / "ca.pem", home / "Maildir")
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    finally:
        shutil.rmtree(root, ignore_errors=True)
