"""DKIM signatures (RFC 6376) on emails as they are handed to the SMTP server.

rsa-sha256 with relaxed/simple canonicalization, the header list RFC 8058 section 4 asks for:
From and both List-Unsubscribe headers are signed once more than they occur ("over-signed"),
so nobody on the way can add a second one. Receivers (Gmail, Yahoo) offer one-click
unsubscribe only when the signature covers List-Unsubscribe and List-Unsubscribe-Post.

The RSA operation is OpenSSL's (the `cryptography` package): dkimpy's pure-Python RSA costs
about 9 ms of CPU per message against 0.8 ms, which would hold four connections below 100
messages a second. dkimpy checks a probe signature with the public key when the signer is
made, so a signer a receiver would refuse never sends anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from outreach.i18n import N_, _
from outreach.model.config import Settings
from outreach.model.errors import ConfigError
from outreach.render.email import RenderedEmail

# RFC 8058 section 4 and issue 26: From and both List-Unsubscribe headers over-signed.
SIGNED_HEADERS: Final = (
    "from",
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-unsubscribe-post",
)
# Receivers ignore keys below 1024 bits (RFC 8301); 2048 is what every guide asks for.
MIN_BITS: Final = 1024
_CRLF: Final = b"\r\n"
_WSP = re.compile(rb"[ \t]+")
_HINT_NEW_KEY: Final = N_(
    "make a key with `openssl genrsa -out dkim.key 2048` (kept outside the workspace, "
    "chmod 600) and publish its public half: `outreach doctor` prints the DNS record"
)


@dataclass(frozen=True, slots=True)
class DkimKey:
    """The signing domain, the selector and the private key (RSA) read from `source`."""

    domain: str
    selector: str
    private_key: rsa.RSAPrivateKey
    source: str  # the key file, or $VARIABLE

    @property
    def record_name(self) -> str:
        """Where receivers look the public key up: `selector._domainkey.domain`."""
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def public_key(self) -> str:
        """The public key as the p= tag of the DNS record carries it (base64 DER)."""
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    @property
    def record(self) -> str:
        """The TXT record to publish at `record_name`."""
        return f"v=DKIM1; k=rsa; p={self.public_key}"


def load_dkim_key(settings: Settings, *, environ: Mapping[str, str]) -> DkimKey | None:
    """The config's DKIM key (None without `dkim:`); ConfigError naming the file if unusable."""
    dkim = settings.dkim
    if dkim is None:
        return None
    if dkim.key_env is not None:
        text = environ.get(dkim.key_env, "")
        source = f"${dkim.key_env}"
        if not text.strip():
            message = (
                _("the environment variable {name} (dkim.key_env) is empty")
                if dkim.key_env in environ
                else _("the environment variable {name} (dkim.key_env) is not set")
            )
            raise ConfigError(
                message.format(name=dkim.key_env),
                field="dkim.key_env",
                hint=_("put the PEM text of the DKIM private key in {name}").format(
                    name=dkim.key_env
                ),
            )
        pem = text.encode("utf-8")
    else:
        assert dkim.key_file is not None  # the config allows exactly one of the two
        path = settings.resolve(dkim.key_file)
        source = str(path)
        pem = _read_key_file(path, workspace=settings.root)
    key = DkimKey(dkim.domain, dkim.selector, _parse_key(pem, source=source), source)
    check_signer(key)
    return key


def _read_key_file(path: Path, *, workspace: Path) -> bytes:
    """The key file's bytes, once it is known to be private (owner only, outside the workspace)."""
    if path.resolve().is_relative_to(workspace.resolve()):
        raise ConfigError(
            _(
                "the DKIM private key is inside the workspace folder, with files that are copied, "
                "shared and committed"
            ),
            path=path,
            field="dkim.key_file",
            hint=_(
                "move it out (e.g. to /etc/outreach/dkim.key, or ~/.config/outreach/) and name "
                "that path in dkim.key_file, or use dkim.key_env"
            ),
        )
    try:
        info = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            _("cannot read the DKIM private key: {error}").format(error=exc.strerror or exc),
            path=path,
            field="dkim.key_file",
            hint=_(
                "check dkim.key_file in config.yaml names the key file, readable by the user "
                "that runs outreach"
            ),
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            _("the DKIM private key may be read by other users (mode {mode})").format(
                mode=stat.filemode(info.st_mode)[1:]
            ),
            path=path,
            field="dkim.key_file",
            hint=_("allow only its owner: chmod 600 {path}").format(path=path),
        )
    return data


def _parse_key(pem: bytes, *, source: str) -> rsa.RSAPrivateKey:
    field = "dkim.key_env" if source.startswith("$") else "dkim.key_file"
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(
            _("the DKIM private key is protected by a passphrase"),
            path=source,
            field=field,
            hint=_(
                "outreach signs unattended: keep the key without a passphrase "
                "(`openssl rsa -in KEY -out dkim.key`) and protect the file instead (chmod 600)"
            ),
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            _(
                "this is not a PEM private key (it should begin with -----BEGIN PRIVATE KEY----- "
                "or -----BEGIN RSA PRIVATE KEY-----)"
            ),
            path=source,
            field=field,
            hint=_(_HINT_NEW_KEY),
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            _(
                "the DKIM private key is not an RSA key (outreach signs with rsa-sha256, which "
                "every receiver checks)"
            ),
            path=source,
            field=field,
            hint=_(_HINT_NEW_KEY),
        )
    if key.key_size < MIN_BITS:
        raise ConfigError(
            _("the DKIM key has {bits} bits: receivers ignore keys below {minimum}").format(
                bits=key.key_size, minimum=MIN_BITS
            ),
            path=source,
            field=field,
            hint=_(_HINT_NEW_KEY),
        )
    return key


def sign(data: bytes, key: DkimKey, *, timestamp: int | None = None) -> bytes:
    """The message with a DKIM-Signature header in front (t= the current time by default)."""
    if not data.count(b"\n") == data.count(b"\r") == data.count(_CRLF):
        # As the SMTP step sends it (outreach.deliver.smtp): the signature must cover that.
        data = data.replace(_CRLF, b"\n").replace(b"\r", b"\n").replace(b"\n", _CRLF)
    end = data.find(b"\r\n\r\n")
    head, body = (data[: end + 2], data[end + 4 :]) if end >= 0 else (data, b"")
    # Simple body canonicalization: no empty lines at the end, one CRLF at least.
    body_hash = base64.b64encode(hashlib.sha256(body.rstrip(b"\r\n") + _CRLF).digest())
    fields = _header_fields(head)
    when = int(time.time()) if timestamp is None else timestamp
    value = (
        f" v=1; a=rsa-sha256; c=relaxed/simple; d={key.domain};\r\n s={key.selector};"
        f" t={when};\r\n h={_folded_names()};\r\n bh={body_hash.decode('ascii')};\r\n b="
    ).encode("ascii")
    hashed = b"".join(_relaxed(name, field) for name, field in _selected(fields))
    hashed += _relaxed(b"DKIM-Signature", value).removesuffix(_CRLF)
    signature = key.private_key.sign(hashed, padding.PKCS1v15(), hashes.SHA256())
    encoded = base64.b64encode(signature)
    folded = b"\r\n ".join(encoded[i : i + 72] for i in range(0, len(encoded), 72))
    return b"DKIM-Signature:" + value + folded + _CRLF + data


def signed(message: RenderedEmail, key: DkimKey) -> RenderedEmail:
    """The email with its DKIM signature."""
    return replace(message, data=sign(message.data, key))


def _folded_names() -> str:
    """The h= list, folded (FWS around ':' is allowed) so no line passes 78 characters."""
    lines = [""]
    for name in SIGNED_HEADERS:
        piece = name if not lines[-1] else f":{name}"
        if len(lines[-1]) + len(piece) > 72:
            lines.append(f":{name}")
        else:
            lines[-1] += piece
    return "\r\n ".join(lines)


def _header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value as written, folds included) for each header field, in order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(_CRLF)[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + _CRLF + line)
        else:
            name, _colon, value = line.partition(b":")
            fields.append((name, value))
    return fields


def _selected(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields SIGNED_HEADERS names, each occurrence taken from the bottom up (RFC 6376
    5.4.2); a name listed more often than it occurs adds nothing (that is the over-signing)."""
    chosen: list[tuple[bytes, bytes]] = []
    below: dict[bytes, int] = {}
    for wanted in SIGNED_HEADERS:
        name = wanted.encode("ascii")
        index = below.get(name, len(fields))
        while index > 0:
            index -= 1
            if fields[index][0].strip().lower() == name:
                chosen.append(fields[index])
                break
        below[name] = index
    return chosen


def _relaxed(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, value unfolded, runs of white space made one space."""
    unfolded = _WSP.sub(b" ", value.replace(_CRLF, b"")).strip(b" ")
    return name.strip().lower() + b":" + unfolded + _CRLF


def check_signer(key: DkimKey) -> None:
    """Sign a probe and verify it with dkimpy and the public key; ConfigError if it fails."""
    import dkim

    probe = sign(
        b"From: probe@" + key.domain.encode("ascii") + b"\r\nTo: x@example.org\r\nSubject: probe"
        b"\r\nList-Unsubscribe: <mailto:x@example.org>\r\n\r\nprobe\r\n",
        key,
    )
    record = key.record.encode("ascii")

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return record if name.decode("ascii").rstrip(".") == key.record_name else b""

    if not dkim.verify(probe, dnsfunc=lookup):
        raise ConfigError(
            _("a message signed with this DKIM key does not verify with its own public key"),
            path=key.source,
            field="dkim",
            hint=_(_HINT_NEW_KEY),
        )
