"""How a contacts file is decoded: its encoding decided per file and checked per line."""

from __future__ import annotations

import codecs
import itertools
import re
import unicodedata
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

from outreach.i18n import _, ngettext
from outreach.model.errors import ContactsError, Problem

# The file is checked and read a block or a line at a time, never held whole: a run keeps
# only the rows in hand (a 100,000-row file would otherwise cost tens of MB for a whole run).
_BLOCK = 1 << 20
# The five bytes Windows-1252 leaves undefined (Python's cp1252 codec rejects them).
_NOT_CP1252 = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")


def _unreadable(path: Path, exc: OSError) -> ContactsError:
    if isinstance(exc, FileNotFoundError):
        return ContactsError(
            _("contacts file not found"),
            path=path,
            hint=_("check paths.contacts in config.yaml, or create the file with a header row"),
        )
    if isinstance(exc, IsADirectoryError):
        return ContactsError(
            _("is a folder, not a CSV file"),
            path=path,
            hint=_("point paths.contacts at the CSV file"),
        )
    return ContactsError(
        _("cannot be read ({error})").format(error=exc.strerror or exc),
        path=path,
        hint=_("check the file's permissions"),
    )


def _blocks(path: Path) -> Generator[bytes, None, None]:
    try:
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                yield block
    except OSError as exc:
        raise _unreadable(path, exc) from None


@dataclass
class _Scan:
    """What one pass over the bytes found: where each encoding fails, and the line count."""

    newlines: int = 0
    breaks: int = 0  # \r\n, \r or \n, as the reader splits lines
    ends_a_line: bool = True  # the last byte is a line break (or the file is empty)
    ends_a_return: bool = False
    nul: int | None = None  # line of the first NUL byte
    not_utf8: int | None = None  # line of the first byte that is not UTF-8
    not_cp1252: tuple[int, int] | None = None  # line and value of the first non-cp1252 byte
    quotes: bool = False  # a quote character anywhere (else no quote can run away)

    @property
    def lines(self) -> int:
        return self.breaks + (not self.ends_a_line)


def _line_breaks(block: bytes, *, after_return: bool) -> int:
    """Line breaks in a block; \r\n counts once, even split between two blocks."""
    count = block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
    return count - (after_return and block.startswith(b"\n"))


def _scan(blocks: Iterable[bytes]) -> _Scan:
    scan = _Scan()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    for block in blocks:
        before = scan.newlines
        if scan.nul is None and (at := block.find(b"\x00")) >= 0:
            scan.nul = before + block.count(b"\n", 0, at) + 1
        if scan.not_utf8 is None:
            try:
                utf8.decode(block)
            except UnicodeDecodeError as exc:
                # exc.object is this block after the bytes of a character the previous
                # block began (no line break among them).
                at = len(block) - len(exc.object) + exc.start
                scan.not_utf8 = before + block.count(b"\n", 0, max(at, 0)) + 1
        if scan.not_cp1252 is None and (bad := _NOT_CP1252.search(block)):
            scan.not_cp1252 = (before + block.count(b"\n", 0, bad.start()) + 1, block[bad.start()])
        scan.quotes = scan.quotes or b'"' in block
        scan.newlines += block.count(b"\n")
        scan.breaks += _line_breaks(block, after_return=scan.ends_a_return)
        scan.ends_a_return = block.endswith(b"\r")
        scan.ends_a_line = block.endswith((b"\n", b"\r"))
    if scan.not_utf8 is None:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            scan.not_utf8 = scan.newlines + 1  # a character cut short by the end of the file
    return scan


@dataclass(frozen=True, slots=True)
class _Decoding:
    """How a file is decoded: its encoding, its line count, and the lines in another one."""

    encoding: str
    lines: int
    quotes: bool = True
    # A file that two people saved in two encodings: the lines (1-based) in the other one.
    # They are decoded with replacement characters and their rows are held back.
    foreign: tuple[int, ...] = ()

    @property
    def errors(self) -> str:
        return "replace" if self.foreign else "strict"


_ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252"}


def _lines_by_encoding(path: Path) -> tuple[list[int], list[int], tuple[int, int] | None]:
    """(lines valid as UTF-8 with accents, lines only Windows-1252 reads, first line and byte
    neither reads): a second pass for a file that is not UTF-8 throughout."""
    utf8: list[int] = []
    cp1252: list[int] = []
    # Latin-1 maps bytes to characters one to one: the lines split as the reader splits them.
    try:
        with path.open(encoding="latin-1", newline="") as handle:
            for number, line in enumerate(handle, start=1):
                if line.isascii():
                    continue
                raw = line.encode("latin-1")
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad = _NOT_CP1252.search(raw)
                    if bad is not None:
                        return utf8, cp1252, (number, raw[bad.start()])
                    cp1252.append(number)
                else:
                    utf8.append(number)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return utf8, cp1252, None


def _encoding(path: Path) -> _Decoding:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252, checked over the whole
    file before any row is used (a file mixing UTF-8 and Windows-1252 lines is read in the
    encoding of most of them, the others marked); and how many lines the file has."""
    blocks = _blocks(path)
    first = next(blocks, b"")
    whole = itertools.chain([first], blocks)
    if first.startswith(b"PK\x03\x04"):
        blocks.close()
        raise ContactsError(
            _("this is a spreadsheet workbook, not a CSV file"),
            path=path,
            hint=_(
                "give it its own ending (.xlsx, .xlsm or .ods) in paths.contacts to read "
                "it as a workbook, or in the spreadsheet use File → Save as / Download → "
                "CSV"
            ),
        )
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        utf16 = codecs.getincrementaldecoder("utf-16")()
        lines, after_return = 1, False
        try:
            for block in whole:
                text = utf16.decode(block).encode("utf-8")
                lines += _line_breaks(text, after_return=after_return)
                after_return = text.endswith(b"\r") or (after_return and not text)
            utf16.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ContactsError(
                _("starts as UTF-16 but is not valid UTF-16"),
                path=path,
                hint=_("save the file again as CSV UTF-8"),
            ) from None
        return _Decoding("utf-16", lines)
    scan = _scan(whole)
    if first.startswith(codecs.BOM_UTF8):
        if scan.not_utf8 is not None:
            # A UTF-8 mark followed by other bytes is a file pasted together from two
            # encodings: any single guess would garble some names.
            raise ContactsError(
                _("starts with a UTF-8 mark but is not UTF-8 here"),
                path=path,
                line=scan.not_utf8,
                hint=_("save the file again as CSV UTF-8"),
            )
        return _Decoding("utf-8-sig", scan.lines, scan.quotes)
    if scan.nul is not None:
        raise ContactsError(
            _("contains NUL bytes, so it is not a text file (or is UTF-16 without its mark)"),
            path=path,
            line=scan.nul,
            hint=_("save the file again as CSV UTF-8"),
        )
    if scan.not_utf8 is None:
        return _Decoding("utf-8", scan.lines, scan.quotes)
    utf8, cp1252, neither = _lines_by_encoding(path)
    if neither is not None:
        line, byte = neither
        raise ContactsError(
            _("is neither UTF-8 nor Windows-1252 (byte 0x{byte:02X})").format(byte=byte),
            path=path,
            line=line,
            hint=_("save the file again as CSV UTF-8"),
        )
    if not utf8 or not cp1252:
        return _Decoding("cp1252", scan.lines, scan.quotes)
    # Two encodings in one file: most lines decide; no line is ever read in the wrong one.
    if len(utf8) >= len(cp1252):
        return _Decoding("utf-8", scan.lines, scan.quotes, foreign=tuple(cp1252))
    return _Decoding("cp1252", scan.lines, scan.quotes, foreign=tuple(utf8))


def _mixed_problem(decoding: _Decoding, path: Path) -> Problem:
    """The file-level report of a file in two encodings, naming the lines that differ."""
    main = _ENCODING_NAMES[decoding.encoding]
    other = "Windows-1252" if decoding.encoding == "utf-8" else "UTF-8"
    shown = ", ".join(str(n) for n in decoding.foreign[:10])
    more = len(decoding.foreign) - 10
    if more > 0:
        message = _(
            "the file mixes two encodings: most lines are {main}, but lines {shown} and "
            "{more} more are {other}; their rows are left out rather than printed garbled"
        )
    else:
        message = ngettext(
            "the file mixes two encodings: most lines are {main}, but line {shown} is "
            "{other}; its row is left out rather than printed garbled",
            "the file mixes two encodings: most lines are {main}, but lines {shown} are "
            "{other}; their rows are left out rather than printed garbled",
            len(decoding.foreign),
        )
    return Problem(
        message.format(main=main, shown=shown, more=more, other=other),
        path=str(path),
        line=decoding.foreign[0],
        hint=_("save the whole file again as CSV UTF-8 (in the spreadsheet: Save as → CSV UTF-8)"),
    )


def _text_lines(
    path: Path, encoding: str, errors: str = "strict", *, normalize: bool = True
) -> Generator[str, None, None]:
    """The file's lines with their endings (\\r\\n, \\r or \\n), one at a time."""
    try:
        with path.open(encoding=encoding, errors=errors, newline="") as handle:
            if not normalize:  # only the quotes and delimiters matter to the reader
                yield from handle
                return
            for line in handle:
                # Canonical composition, so a name typed on a Mac ("José" as e + ◌́) compares,
                # filters and prints like the same name typed elsewhere. Nothing visible
                # changes, and no character composes across a line break.
                yield unicodedata.normalize("NFC", line)
    except UnicodeDecodeError:
        raise ContactsError(
            _("changed while it was being read (it is no longer in one encoding)"),
            path=path,
            hint=_("run the command again once the file is saved"),
        ) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None


def read_text(path: Path) -> str:
    """A whole text file decoded as contacts.csv is (UTF-8 with or without its mark, UTF-16
    with its mark, else Windows-1252); lines in a second encoding keep replacement marks."""
    decoding = _encoding(path)
    lines = _text_lines(path, decoding.encoding, decoding.errors)
    try:
        return "".join(lines)
    finally:
        lines.close()
