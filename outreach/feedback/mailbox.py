"""Where bounces are read: a Maildir folder (the default; any mail server, fetchmail or
getmail can deliver there) or an IMAP mailbox (TLS verified, password from the environment).

A mailbox hands out messages cut at a size limit (a 50 MB message never sits in memory
whole) and moves the ones it is told to into a folder of its own; it never deletes. Mail that
is not outreach's is set aside once (a `not-ours` folder; on IMAP a flag), so it is reported
once. A read-only mailbox (the owner's own inbox, as `replies:`) is never changed: nothing is
moved; on IMAP a keyword flag, invisible in mail clients, marks what was read.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from outreach.i18n import _
from outreach.model.config import Imap
from outreach.model.errors import FeedbackError

PROCESSED = "outreach-processed"
NOT_OURS = "not-ours"
# IMAP keywords (RFC 3501 flags without a backslash): mail clients do not show them.
READ_FLAG = "$OutreachRead"
NOT_OURS_FLAG = "$OutreachNotOurs"
_IMAP_BATCH = 50  # messages fetched in one command, when they are small
_SMALL = 256 * 1024


@dataclass(frozen=True, slots=True)
class MailItem:
    """One message of a mailbox, read up to the size limit."""

    source: str  # how the report names it: Maildir file name or imap:FOLDER/UID
    data: bytes
    size: int
    handle: str  # what `move` needs (a path, a UID)

    @property
    def truncated(self) -> bool:
        """Whether only the first part of it was read."""
        return len(self.data) < self.size


class Mailbox(Protocol):
    """A folder of mail to read, and a folder to move processed mail into."""

    def items(self) -> Iterator[MailItem]: ...
    def move(self, item: MailItem) -> None: ...
    def set_aside(self, item: MailItem) -> None: ...
    def close(self) -> None: ...


class MaildirBox:
    """A Maildir (new/, cur/, tmp/); processed mail goes to its `.outreach-processed`
    subfolder (Maildir++), so a mail client shows it as a folder."""

    def __init__(
        self, path: Path, *, limit: int, folder: str = PROCESSED, readonly: bool = False
    ) -> None:
        if not all((path / sub).is_dir() for sub in ("new", "cur")):
            raise FeedbackError(
                _("not a Maildir (it needs the folders new/ and cur/)"),
                path=path,
                field="bounces.maildir",
                hint=_(
                    "point bounces.maildir (or --maildir) at the folder your mail server "
                    "delivers bounces to"
                ),
            )
        self.path = path
        self.limit = limit
        self.readonly = readonly
        self.done = path / f".{folder}"
        self.aside = path / f".{NOT_OURS}"
        self._prepared: set[Path] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def items(self) -> Iterator[MailItem]:
        """Every message in new/ and cur/, in name order (Maildir names start with the time)."""
        for sub in ("new", "cur"):
            folder = self.path / sub
            try:
                names = sorted(e.name for e in os.scandir(folder) if not e.name.startswith("."))
            except OSError as exc:
                raise FeedbackError(
                    _("cannot read the folder: {error}").format(error=exc.strerror), path=folder
                ) from None
            for name in names:
                path = folder / name
                try:
                    with open(path, "rb") as handle:
                        size = os.fstat(handle.fileno()).st_size
                        data = handle.read(self.limit)
                except FileNotFoundError:
                    continue  # moved meanwhile by a mail client
                except IsADirectoryError:
                    continue
                except OSError as exc:
                    raise FeedbackError(
                        _("cannot read: {error}").format(error=exc.strerror), path=path
                    ) from None
                yield MailItem(source=f"{sub}/{name}", data=data, size=size, handle=str(path))

    def move(self, item: MailItem) -> None:
        """Move one message into the processed folder (as seen: Maildir flag S)."""
        self._move(item, self.done)

    def set_aside(self, item: MailItem) -> None:
        """Move mail that is not outreach's into the `.not-ours` folder (flags kept)."""
        self._move(item, self.aside, seen=False)

    def _move(self, item: MailItem, folder: Path, *, seen: bool = True) -> None:
        if self.readonly:
            return  # the owner's inbox: what was read is remembered in the ledger
        if folder not in self._prepared:
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / "maildirfolder").touch()
            self._prepared.add(folder)
        name = item.handle.rpartition("/")[2]
        if ":2," not in name and seen:
            name += ":2,S"
        sub = "cur" if ":2," in name else "new"
        with suppress(FileNotFoundError):  # another reader moved it first
            # Plain os calls: pathlib costs more than the rename itself here.
            os.replace(item.handle, f"{folder}/{sub}/{name}")  # noqa: PTH105

    def close(self) -> None:
        """Nothing to release."""


def _password(settings: Imap, *, environ: Mapping[str, str], config_key: str) -> str:
    password = environ.get(settings.password_env)
    if not password:
        raise FeedbackError(
            _("the environment variable {name} is not set").format(name=settings.password_env),
            field=f"{config_key}.password_env",
            hint=_("export {name}=... with the mailbox password").format(
                name=settings.password_env
            ),
        )
    return password


class ImapBox:
    """An IMAP folder; processed mail is moved (IMAP MOVE, else COPY and \\Deleted) to
    `processed_folder`, created when missing."""

    def __init__(
        self,
        settings: Imap,
        *,
        environ: Mapping[str, str],
        limit: int,
        readonly: bool = False,
        config_key: str = "bounces.imap",
    ) -> None:
        from imapclient import IMAPClient
        from imapclient.exceptions import IMAPClientError

        self.settings = settings
        self.limit = limit
        self.readonly = readonly
        password = _password(settings, environ=environ, config_key=config_key)
        port = settings.port or (993 if settings.security == "ssl" else 143)
        where = f"{settings.host}:{port}"
        self.where = where
        try:
            context = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise FeedbackError(
                _("cannot read the CA file: {error}").format(error=exc),
                field=f"{config_key}.ca_file",
            ) from None
        try:
            client = IMAPClient(
                settings.host,
                port=port,
                ssl=settings.security == "ssl",
                ssl_context=context,
                timeout=settings.timeout_s,
            )
        except (OSError, ssl.SSLError, IMAPClientError) as exc:
            raise FeedbackError(
                _("cannot connect to the IMAP server {server}: {error}").format(
                    server=where, error=exc
                ),
                field=f"{config_key}.host",
                hint=_("check {key}.host, port and security (and the certificate)").format(
                    key=config_key
                ),
            ) from None
        try:
            if settings.security == "starttls":
                client.starttls(context)
            client.login(settings.username, password)
            selected = client.select_folder(settings.folder)
        except (OSError, ssl.SSLError, IMAPClientError) as exc:
            try:
                client.logout()
            except (OSError, IMAPClientError):
                client.shutdown()
            raise FeedbackError(
                _("the IMAP server {server} refused: {error}").format(server=where, error=exc),
                field=config_key,
                hint=_("check the username, the password variable and the folder"),
            ) from None
        self._client = client
        # A server that takes no keywords of ours (no \\* in PERMANENTFLAGS): what was read is
        # remembered by the ledger alone (each reading fetches it again, and changes nothing).
        self._keywords = b"\\*" in selected.get(b"PERMANENTFLAGS", ())
        self._moves: list[int] = []
        self._flags: dict[str, list[int]] = {READ_FLAG: [], NOT_OURS_FLAG: []}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def items(self) -> Iterator[MailItem]:
        """Every message of the folder not marked deleted, in UID order."""
        from imapclient.exceptions import IMAPClientError

        client = self._client
        folder = self.settings.folder
        try:
            # Mail read before in a read-only box, and mail set aside, carries our keyword.
            criteria = ["NOT", "DELETED", "NOT", "KEYWORD", NOT_OURS_FLAG]
            if self.readonly:
                criteria += ["NOT", "KEYWORD", READ_FLAG]
            uids = sorted(client.search(criteria))
            sizes: dict[int, int] = {}
            for start in range(0, len(uids), 500):
                for uid, data in client.fetch(uids[start : start + 500], ["RFC822.SIZE"]).items():
                    sizes[uid] = int(data.get(b"RFC822.SIZE", 0))
            batch: list[int] = []
            for uid in uids:
                if uid not in sizes:
                    continue
                batch.append(uid)
                # A big message is fetched alone, and only up to the limit.
                if len(batch) >= _IMAP_BATCH or sizes[uid] > _SMALL:
                    yield from self._fetch(batch, sizes, folder)
                    batch = []
            if batch:
                yield from self._fetch(batch, sizes, folder)
        except (OSError, IMAPClientError) as exc:
            raise FeedbackError(f"reading {folder} on {self.where} failed: {exc}") from None

    def _fetch(self, uids: list[int], sizes: dict[int, int], folder: str) -> Iterator[MailItem]:
        part = f"BODY.PEEK[]<0.{self.limit}>"
        fetched = self._client.fetch(uids, [part])
        for uid in uids:
            found = fetched.get(uid, {})
            data = next((v for k, v in found.items() if k.startswith(b"BODY[]")), b"")
            if not isinstance(data, bytes):
                data = b""
            yield MailItem(
                source=f"imap:{folder}/{uid}",
                data=data,
                size=sizes.get(uid, len(data)),
                handle=str(uid),
            )

    def move(self, item: MailItem) -> None:
        """Move one message to the processed folder (batched: done at `close` or every 100);
        in a read-only box, only flag it as read by outreach."""
        if self.readonly:
            self._flag(item, READ_FLAG)
            return
        self._moves.append(int(item.handle))
        if len(self._moves) >= 100:
            self._flush()

    def set_aside(self, item: MailItem) -> None:
        """Flag mail that is not outreach's, so that later readings pass it by."""
        self._flag(item, READ_FLAG if self.readonly else NOT_OURS_FLAG)

    def _flag(self, item: MailItem, flag: str) -> None:
        if not self._keywords:
            return
        self._flags[flag].append(int(item.handle))
        if len(self._flags[flag]) >= 100:
            self._flush()

    def _flush(self) -> None:
        from imapclient.exceptions import IMAPClientError

        for flag, flagged in self._flags.items():
            if flagged:
                self._flags[flag] = []
                try:
                    self._client.add_flags(flagged, [flag.encode()])
                except (OSError, IMAPClientError) as exc:
                    raise FeedbackError(
                        _("cannot flag mail on {server}: {error}").format(
                            server=self.where, error=exc
                        ),
                        hint=_("nothing is lost: the next reading finds them again"),
                    ) from None
        uids, self._moves = self._moves, []
        if not uids:
            return
        client = self._client
        target = self.settings.processed_folder
        try:
            if not client.folder_exists(target):
                client.create_folder(target)
            if client.has_capability("MOVE"):
                client.move(uids, target)
            else:
                client.copy(uids, target)
                client.add_flags(uids, [b"\\Deleted"])
                if client.has_capability("UIDPLUS"):
                    client.uid_expunge(uids)  # only ours: never another \\Deleted message
        except (OSError, IMAPClientError) as exc:
            raise FeedbackError(
                _("cannot move processed mail to {folder} on {server}: {error}").format(
                    folder=target, server=self.where, error=exc
                ),
                field="bounces.imap.processed_folder",
                hint=_("nothing is lost: the next reading finds them again and only moves them"),
            ) from None

    def close(self) -> None:
        """Move what waits to be moved, and log out."""
        from imapclient.exceptions import IMAPClientError

        try:
            self._flush()
        finally:
            try:
                self._client.logout()
            except (OSError, IMAPClientError):
                self._client.shutdown()
