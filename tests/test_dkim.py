"""DKIM signing: real emails sent to a real SMTP server (aiosmtpd), each checked with dkimpy
against the public key served by a real DNS server (dnsmasq) on 127.0.0.1."""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
import smtp_server as servers
from conftest import BASE_CONFIG, Workspace
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dns_server import dns_resolver, running_dns_server
from smtp_server import SmtpServer
from test_send import ROWS, delivery_config, statuses

from outreach.deliver.dkim import DkimKey, load_dkim_key, sign
from outreach.deliver.doctor import txt_records
from outreach.model.config import Settings
from outreach.model.errors import ConfigError
from outreach.render.email import Content, Sender, build_message

smtp_server = servers.smtp_server

MakeWorkspace = Callable[..., Workspace]
DOMAIN = "casalucia.example"
NOW = "2026-11-24T10:00"


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@functools.cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A key made once per test process, when a test first needs it (not at collection)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _record(key: rsa.RSAPrivateKey) -> str:
    return DkimKey(DOMAIN, "s1", key, "test").record


@pytest.fixture(scope="module")
def dns_server() -> Iterator[str]:
    """Selector s1 publishes rsa_key(), selector old publishes another key."""
    with running_dns_server(
        {
            f"s1._domainkey.{DOMAIN}": [_record(rsa_key())],
            f"old._domainkey.{DOMAIN}": [_record(rsa_key(1024))],
        }
    ) as server:
        yield server


def _dns_lookup(server: str) -> Callable[..., bytes]:
    """dkimpy's key lookup, asking the test's DNS server."""
    resolver = dns_resolver(server)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return "".join(txt_records(resolver, name.decode().rstrip("."))).encode()

    return lookup


def _key_file(folder: Path, key: rsa.RSAPrivateKey, *, mode: int = 0o600) -> Path:
    path = folder / "dkim.key"
    path.write_bytes(_pem(key))
    path.chmod(mode)
    return path


def _settings(root: Path, dkim_block: str) -> Settings:
    root.mkdir(exist_ok=True)
    return Settings.model_validate(
        {
            "root": root,
            "sender": {"name": "Casa", "email": f"hola@{DOMAIN}"},
            **dkim_block_of(dkim_block),
        }
    )


def dkim_block_of(text: str) -> dict[str, object]:
    import yaml

    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


# -- end to end ----------------------------------------------------------------------------------


def test_every_email_sent_is_signed_and_verifies_with_the_published_key(
    make_workspace: MakeWorkspace, smtp_server: SmtpServer, dns_server: str, tmp_path: Path
) -> None:
    key_file = _key_file(tmp_path, rsa_key())
    ws = make_workspace(ROWS)
    ws.write(
        "config.yaml",
        BASE_CONFIG
        + delivery_config(smtp_server.port, connections=2)  # signed on two threads
        + f"dkim:\n  domain: {DOMAIN}\n  selector: s1\n  key_file: {key_file}\n",
    )
    result = ws.run("run", "--all", "--send", "--now", NOW, env={"OUTREACH_DNS_SERVER": dns_server})
    assert result.code == 0, result.err
    assert statuses(ws) == {"c1": "sent", "c4": "skipped", "c5": "sent", "c6": "sent"}
    assert len(smtp_server.messages) == 3
    # Signed on the way out: the outbox keeps the files as rendered.
    outbox = ws.files("out/outbox")
    assert len(outbox) == 3 and not any(b"DKIM-Signature" in p.read_bytes() for p in outbox)
    lookup = _dns_lookup(dns_server)
    for received in smtp_server.messages:
        data = received.data
        assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=")
        checker = dkim.DKIM(data)
        assert checker.verify(dnsfunc=lookup), received.rcpt_tos
        signed_names = list(checker.include_headers)
        # RFC 8058 section 4: both List-Unsubscribe headers covered, and over-signed with From.
        assert signed_names.count(b"list-unsubscribe") == 2
        assert signed_names.count(b"list-unsubscribe-post") == 2
        assert signed_names.count(b"from") == 2
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in data
        # The Date stamped at sending is the one signed: the outbox file still has its own.
        assert b"date" in signed_names
        # Altered on the way (one word of the body, or a second List-Unsubscribe): fails.
        assert not dkim.verify(data.replace(b"Hola", b"Hol\xc3\xa1", 1), dnsfunc=lookup)
        added = data.replace(
            b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example/x>\r\n\r\n", 1
        )
        assert not dkim.verify(added, dnsfunc=lookup)


def test_send_refuses_to_start_when_dns_publishes_another_key(
    make_workspace: MakeWorkspace, smtp_server: SmtpServer, dns_server: str, tmp_path: Path
) -> None:
    key_file = _key_file(tmp_path, rsa_key())
    ws = make_workspace(ROWS)
    ws.write(
        "config.yaml",
        BASE_CONFIG
        + delivery_config(smtp_server.port)
        + f"dkim:\n  domain: {DOMAIN}\n  selector: old\n  key_file: {key_file}\n",
    )
    assert ws.run("run", "--all", "--now", NOW).code == 0
    result = ws.run("send", "--now", NOW, env={"OUTREACH_DNS_SERVER": dns_server})
    assert result.code == 2
    assert f"old._domainkey.{DOMAIN}" in result.err
    assert str(key_file) in result.err
    assert "outreach doctor" in result.err
    assert smtp_server.messages == []
    assert set(statuses(ws).values()) == {"rendered", "skipped"}


# -- the signature itself ------------------------------------------------------------------------


def _message(*, unsubscribe: tuple[str, ...]) -> bytes:
    return build_message(
        sender=Sender(addr=f"hola@{DOMAIN}", name="Casa Lucía", reply_to=None),
        to_name="Ana García",
        to_addr="ana@example.com",
        content=Content(
            subject="¡Feliz cumpleaños, Ana!",
            text="Hola Ana,\n\n. una línea con punto\n\n\n",
            html="<p>Hola <b>Ana</b></p>",
        ),
        date=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        message_id=f"abc@{DOMAIN}",
        list_unsubscribe=unsubscribe,
    )


@pytest.mark.parametrize(
    "unsubscribe", [(), ("https://casalucia.example/baja?id=1", "mailto:baja@casalucia.example")]
)
def test_signature_verifies_with_dkimpy_and_names_the_headers_of_the_issue(
    unsubscribe: tuple[str, ...],
) -> None:
    key = DkimKey(DOMAIN, "s1", rsa_key(), "test")
    data = sign(_message(unsubscribe=unsubscribe), key, timestamp=1_795_000_000)
    record = key.record.encode()
    checker = dkim.DKIM(data)
    assert checker.verify(dnsfunc=lambda name, timeout=5: record)
    assert [h.decode() for h in checker.include_headers] == [
        "from", "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "list-unsubscribe", "list-unsubscribe", "list-unsubscribe-post", "list-unsubscribe-post",
    ]  # fmt: skip
    assert b" t=1795000000;" in data
    assert all(len(line) <= 78 for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"))
    # Without the unsubscribe headers the list still names them: adding one later breaks it.
    if not unsubscribe:
        forged = data.replace(
            b"\r\nMIME-Version", b"\r\nList-Unsubscribe: <https://x.example/>\r\nMIME-Version"
        )
        assert not dkim.verify(forged, dnsfunc=lambda name, timeout=5: record)


def test_signature_of_a_message_with_bare_newlines_covers_what_smtp_sends() -> None:
    key = DkimKey(DOMAIN, "s1", rsa_key(), "test")
    lf = _message(unsubscribe=()).replace(b"\r\n", b"\n")
    data = sign(lf, key)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert dkim.verify(data, dnsfunc=lambda name, timeout=5: key.record.encode())


# -- the key -------------------------------------------------------------------------------------


def _load(root: Path, block: str, environ: dict[str, str] | None = None) -> DkimKey | None:
    return load_dkim_key(_settings(root, block), environ=environ or {})


def test_a_good_key_file_and_a_key_in_the_environment_load(tmp_path: Path) -> None:
    path = _key_file(tmp_path, rsa_key())
    from_file = _load(
        tmp_path / "ws", f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: {path}}}"
    )
    from_env = _load(
        tmp_path / "ws",
        f"dkim: {{domain: {DOMAIN.upper()}, selector: s1, key_env: DKIM_PEM}}",
        {"DKIM_PEM": _pem(rsa_key()).decode()},
    )
    assert from_file is not None and from_env is not None
    assert from_file.public_key == from_env.public_key
    assert from_env.domain == DOMAIN and from_env.record_name == f"s1._domainkey.{DOMAIN}"
    assert from_file.record.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert _load(tmp_path / "ws", "{}") is None


def _error(root: Path, block: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _load(root, block, environ)
    return caught.value


def test_bad_keys_are_clear_errors_naming_the_file(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    error = _error(ws, f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: {garbage}}}")
    assert error.path == str(garbage) and error.field == "dkim.key_file"
    assert "not a PEM private key" in error.message and "openssl genrsa" in (error.hint or "")

    shared = _key_file(tmp_path, rsa_key(), mode=0o644)
    error = _error(ws, f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: {shared}}}")
    assert error.path == str(shared) and "other users" in error.message
    assert f"chmod 600 {shared}" in (error.hint or "")

    missing = tmp_path / "nowhere.key"
    error = _error(ws, f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: {missing}}}")
    assert error.path == str(missing) and "cannot read" in error.message

    ws.mkdir(exist_ok=True)
    inside = _key_file(ws, rsa_key())
    error = _error(ws, f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: dkim.key}}")
    assert error.path == str(inside) and "inside the workspace" in error.message

    ed = tmp_path / "ed.key"
    ed.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    ed.chmod(0o600)
    error = _error(ws, f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: {ed}}}")
    assert "not an RSA key" in error.message

    locked = tmp_path / "locked.key"
    locked.write_bytes(
        rsa_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    locked.chmod(0o600)
    error = _error(ws, f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: {locked}}}")
    assert "passphrase" in error.message

    error = _error(ws, f"dkim: {{domain: {DOMAIN}, selector: s1, key_env: NO_SUCH_VAR}}")
    assert error.field == "dkim.key_env" and "NO_SUCH_VAR" in error.message


def test_config_wants_exactly_one_key_source_and_dns_names(make_workspace: MakeWorkspace) -> None:
    ws = make_workspace(ROWS)
    ws.write("config.yaml", BASE_CONFIG + "dkim:\n  domain: casa lucia\n  selector: s1\n")
    result = ws.run("validate")
    assert result.code == 2
    assert re.search(r"config\.yaml:\d+: dkim(\.domain)?: ", result.err), result.err
    assert "is not a DNS name" in result.err
    ws.write("config.yaml", BASE_CONFIG + f"dkim: {{domain: {DOMAIN}, selector: s1}}\n")
    result = ws.run("validate")
    assert result.code == 2
    assert "dkim: give dkim.key_file or dkim.key_env" in result.err


def test_openssl_made_keys_load(tmp_path: Path) -> None:
    """The key the README tells people to make, in both PEM forms OpenSSL writes."""
    path = tmp_path / "dkim.key"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True
    )
    traditional = tmp_path / "rsa.key"
    subprocess.run(
        ["openssl", "rsa", "-in", str(path), "-out", str(traditional), "-traditional"],
        check=True,
        capture_output=True,
    )
    for key_path in (path, traditional):
        key_path.chmod(0o600)
        key = _load(
            tmp_path / "ws", f"dkim: {{domain: {DOMAIN}, selector: s1, key_file: {key_path}}}"
        )
        assert key is not None and key.private_key.key_size == 2048
