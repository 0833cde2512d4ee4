"""The letter printer: one batch PDF per campaign per run, a manifest beside it, split PDFs.

    out/letters/<date>/<campaign>.pdf            every letter on a new sheet, postal-code order
    out/letters/<date>/<campaign>.manifest.csv   one row per letter: where it is in the PDF
    out/letters/<date>/<campaign>/<contact>.pdf  one PDF per letter, with `split`

WeasyPrint keeps every laid-out page of a document in memory (about 0.8 MiB a letter), so a
batch is laid out in chunks of about a hundred letters, one PDF per chunk, in a pool of worker
processes (layout is CPU-bound Python: threads would not help), and the chunk PDFs are then
joined with pypdf. Each letter is laid out as its own document, so its page numbers ("2 / 2")
count its own pages, and a letter that cannot be printed right fails alone.
"""

from __future__ import annotations

import csv
import io
import math
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, cast
from xml.sax.saxutils import escape

from outreach import files
from outreach.i18n import _
from outreach.model.errors import DeliveryError, OutreachError, TemplateError
from outreach.pipeline.parallel import ordered_map
from outreach.render.letter import RenderedLetter, safe_file_name, typesetter

if TYPE_CHECKING:
    from pypdf import PdfReader, PdfWriter

CHUNK_SIZE = 100  # letters per WeasyPrint document: measured as fast as larger chunks
MIN_CHUNK = 25  # below this a worker process costs more than it saves
MANIFEST_COLUMNS = (
    "letter",
    "first_page",
    "pages",
    "blank_pages",
    "contact_id",
    "occurrence_key",
    "name",
    "postal_code",
    "country",
    "address",
    "file",
    "covers",  # a household's letter: the ids of everyone it goes to ("c1;c2")
    "note",  # what the mailing house should know, e.g. ADDRESS_CONFIRMED
)
# The address data rejects the letter's postal code; the owner vouched for the address.
ADDRESS_CONFIRMED = "address confirmed by the owner"  # not translated: a manifest.csv value, read by the mailing house and by programs
ADDRESS_SEPARATOR = "; "
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_DIGITS = re.compile(r"\d+")

Progress = Callable[[int, int], None]  # (letters done, letters in the batch)


@dataclass(frozen=True, slots=True)
class PrintedLetter:
    """One letter in a batch PDF: a row of the manifest."""

    number: int  # 1-based position in the batch
    first_page: int  # 1-based page of the batch PDF where the letter starts
    pages: int  # pages it takes in the batch PDF, a blank back page included
    blank_pages: int  # 1 when duplex printing padded an odd-length letter
    contact_id: str
    occurrence_key: str
    name: str
    address_lines: tuple[str, ...]
    postal_code: str
    country: str
    path: Path | None  # its own PDF, with split
    covers: tuple[str, ...] = ()  # a household's letter: every contact it goes to
    note: str = ""  # the manifest's note (ADDRESS_CONFIRMED)


@dataclass(frozen=True, slots=True)
class LetterFailure:
    """A letter that could not be printed right, and why; it is in no PDF."""

    contact_id: str
    occurrence_key: str
    error: OutreachError


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What `write_batch` wrote for one campaign (paths are None when no letter was printed)."""

    campaign: str
    pdf_path: Path | None
    manifest_path: Path | None
    split_dir: Path | None
    letters: tuple[PrintedLetter, ...]
    failures: tuple[LetterFailure, ...]
    pages: int  # pages in the batch PDF
    sheets: int  # sheets of paper it prints on


@dataclass(frozen=True, slots=True)
class _Chunk:
    letters: tuple[RenderedLetter, ...]
    split_paths: tuple[Path | None, ...]
    duplex: bool
    write: bool = True  # False: lay out and check only (a rehearsal), no PDF made


@dataclass(frozen=True, slots=True)
class _Outcome:
    pages: int
    blank_pages: int
    error: OutreachError | None


@dataclass(frozen=True, slots=True)
class _ChunkResult:
    pdf: bytes | None
    outcomes: tuple[_Outcome, ...]


def harfbuzz_subset_available() -> bool:
    """Whether WeasyPrint can subset fonts with HarfBuzz (without it letters are ~8x slower)."""
    with warnings.catch_warnings():
        # WeasyPrint warns at import when the library is missing: this function reports it.
        warnings.simplefilter("ignore", DeprecationWarning)
        from weasyprint.text import ffi
    if ffi.harfbuzz_subset is None:
        return False
    return bool(ffi.harfbuzz.hb_version_atleast(4, 1, 0))


def postal_order(letter: RenderedLetter) -> tuple[bool, str, str, str, str]:
    """Sort key: domestic letters first, then by country and postal code (digits as numbers)."""
    code = _DIGITS.sub(lambda m: m.group().zfill(12), letter.postal_code.upper().replace(" ", ""))
    return (letter.foreign, letter.country, code, letter.name.casefold(), letter.contact_id)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file with the one atomic writer (flushed to disk); DeliveryError if it cannot."""
    try:
        files.write_atomic(path, data)
    except OSError as exc:
        raise DeliveryError(
            _("cannot write: {error}").format(error=exc.strerror), path=path
        ) from None


def _typeset_chunk(chunk: _Chunk) -> _ChunkResult:
    """Lay out a chunk of letters and write them as one PDF (runs in a worker process)."""
    setter = typesetter()
    documents = []
    pages = []
    outcomes = []
    variant = chunk.letters[0].layout.pdf_variant if chunk.letters else None
    for letter, split_path in zip(chunk.letters, chunk.split_paths, strict=True):
        try:
            document = setter.typeset(letter)
            if split_path is not None:
                write_atomic(split_path, setter.write_pdf([document], document.pages, variant))
        except OutreachError as exc:
            outcomes.append(_Outcome(pages=0, blank_pages=0, error=exc))
            continue
        except Exception as exc:  # one odd letter must not sink the whole batch
            outcomes.append(_Outcome(pages=0, blank_pages=0, error=_odd_failure(letter, exc)))
            continue
        documents.append(document)
        pages.extend(document.pages)
        blank = 1 if chunk.duplex and len(document.pages) % 2 else 0
        if blank:
            pages.append(setter.blank_page(letter.layout))
        outcomes.append(_Outcome(pages=len(document.pages) + blank, blank_pages=blank, error=None))
    pdf = setter.write_pdf(documents, pages, variant) if documents and chunk.write else None
    return _ChunkResult(pdf=pdf, outcomes=tuple(outcomes))


def _odd_failure(letter: RenderedLetter, exc: Exception) -> TemplateError:
    return TemplateError(
        _("contact {id}: the letter cannot be laid out: {kind}: {error}").format(
            id=letter.contact_id, kind=type(exc).__name__, error=exc
        ),
        hint=_("check the letter's template and stylesheet"),
    )


def _plan(count: int, *, workers: int, chunk_size: int) -> list[range]:
    # Enough chunks to keep every worker busy, none larger than chunk_size.
    size = min(chunk_size, max(MIN_CHUNK, math.ceil(count / max(1, workers))))
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _run(chunks: list[_Chunk], *, workers: int, progress: Progress | None) -> list[_ChunkResult]:
    total = sum(len(c.letters) for c in chunks)
    done = 0
    if workers <= 1 or len(chunks) <= 1:
        results = []
        for chunk in chunks:
            results.append(_typeset_chunk(chunk))
            done += len(chunk.letters)
            if progress is not None:
                progress(done, total)
        return results
    # Forked from the run once it has imported WeasyPrint, which then each worker need not
    # import again; they die with the run (outreach.pipeline.parallel).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # see harfbuzz_subset_available
        import weasyprint  # noqa: F401
    results = []
    with ordered_map(_typeset_chunk, chunks, processes=min(workers, len(chunks))) as laid_out:
        for chunk, result in laid_out:  # in order, so the count only grows
            results.append(result)
            done += len(chunk.letters)
            if progress is not None:
                progress(done, total)
    return results


def _free_stem(folder: Path, stem: str) -> str:
    # A second run on the same day must not overwrite the first run's batch.
    candidate, number = stem, 1
    while (
        (folder / f"{candidate}.pdf").exists()
        or (folder / f"{candidate}.manifest.csv").exists()
        or (folder / f"{candidate}.postage.csv").exists()
        or (folder / candidate).exists()
    ):
        number += 1
        candidate = f"{stem}-{number}"
    return candidate


def _split_paths(letters: Sequence[RenderedLetter], folder: Path) -> list[Path]:
    used: set[str] = set()
    paths = []
    for letter in letters:
        base = safe_file_name(letter.contact_id)
        name, number = base, 1
        while name.casefold() in used:  # two occurrences of one contact, or ids alike once safe
            number += 1
            name = f"{base}-{number}"
        used.add(name.casefold())
        paths.append(folder / f"{name}.pdf")
    return paths


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def manifest_csv(letters: Sequence[PrintedLetter], *, relative_to: Path) -> bytes:
    """The manifest as CSV bytes (UTF-8 with a BOM, so spreadsheets read the accents)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(_manifest_row(item, relative_to=relative_to) for item in letters)
    return buffer.getvalue().encode("utf-8-sig")


def _manifest_row(item: PrintedLetter, *, relative_to: Path) -> list[object]:
    return [
        item.number,
        item.first_page,
        item.pages,
        item.blank_pages,
        _cell(item.contact_id),
        _cell(item.occurrence_key),
        _cell(item.name),
        _cell(item.postal_code),
        item.country,
        _cell(ADDRESS_SEPARATOR.join(item.address_lines)),
        item.path.relative_to(relative_to).as_posix() if item.path else "",
        _cell(";".join(item.covers)),
        item.note,
    ]


def _merge(parts: list[bytes], *, title: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for part in parts:
        writer.append(PdfReader(io.BytesIO(part)))
    _keep_conformance(PdfReader(io.BytesIO(parts[0])), writer, title=title)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _keep_conformance(first: PdfReader, writer: PdfWriter, *, title: str) -> None:
    """Carry a PDF/A part's output intent and XMP metadata (its pdfaid) over to the joined
    batch, which appending pages alone would drop; the XMP and the document information
    then say the same title and producer, and the file has an identifier."""
    from pypdf.generic import NameObject, StreamObject

    root = first.root_object
    info: dict[str, object] = dict(first.metadata or {})
    if "/OutputIntents" not in root or "/Metadata" not in root:
        writer.add_metadata({"/Title": title, "/Creator": "outreach"})
        return
    writer.root_object[NameObject("/OutputIntents")] = root["/OutputIntents"].clone(writer)
    metadata = root["/Metadata"].clone(writer)
    stream = cast(StreamObject, metadata.get_object())
    old, new = (escape(str(t)).encode() for t in (info.get("/Title", ""), title))
    stream.set_data(stream.get_data().replace(b">" + old + b"</rdf:li>", b">" + new + b"</rdf:li>"))
    writer.root_object[NameObject("/Metadata")] = metadata
    # No /Creator: the XMP names no creator tool to match it.
    writer.add_metadata({"/Title": title, "/Producer": str(info.get("/Producer", "outreach"))})
    writer.generate_file_identifiers()


def lay_out(
    letters: Sequence[RenderedLetter],
    *,
    duplex: bool,
    workers: int = 2,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
) -> list[OutreachError | None]:
    """Lay every letter out as `write_batch` would and check its windows; write nothing.

    One entry per letter, in order: None when it would print right, else why not.
    """
    chunks = [
        _Chunk(
            letters=tuple(letters[i] for i in part),
            split_paths=(None,) * len(part),
            duplex=duplex,
            write=False,
        )
        for part in _plan(len(letters), workers=workers, chunk_size=chunk_size)
    ]
    try:
        results = _run(chunks, workers=workers, progress=progress)
    except OutreachError:
        raise
    except Exception as exc:  # a worker killed (out of memory?) or unable to start
        raise DeliveryError(
            _("the letter layout failed: {kind}: {error}").format(
                kind=type(exc).__name__, error=exc
            ),
            transient=True,
            hint=_("run again; if it keeps failing, try letters in a smaller batch"),
        ) from exc
    return [outcome.error for result in results for outcome in result.outcomes]


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How a campaign's batch is printed (config `letters`, the run's workers)."""

    duplex: bool = False
    sort_by_postal_code: bool = True
    split: bool = False  # one PDF per letter as well
    workers: int = 2
    chunk_size: int = CHUNK_SIZE
    name_suffix: str = ""  # follows the campaign in the batch's file names (`.shard-2-of-4`)


@dataclass(frozen=True, slots=True)
class _Batch:
    folder: Path
    stem: str
    run_date: date
    campaign: str
    options: BatchOptions


Postage = Callable[[Sequence[PrintedLetter]], bytes]


def write_batch(
    *,
    letters: Sequence[RenderedLetter],
    out_dir: Path,
    run_date: date,
    campaign: str,
    options: BatchOptions,
    progress: Progress | None = None,
    postage: Postage | None = None,
) -> BatchResult:
    """Print one campaign's letters into out_dir/letters/<date>/; failed letters are returned.
    With `postage`, the postage list it makes of the printed letters goes beside the manifest.

    If it cannot finish (a full disk, a worker killed), it removes what it wrote of the batch
    before raising: a batch is on disk whole, with its manifest, or not at all.
    """
    ordered = sorted(letters, key=postal_order) if options.sort_by_postal_code else list(letters)
    folder = out_dir / "letters" / run_date.isoformat()
    stem = _free_stem(folder, safe_file_name(campaign) + options.name_suffix)
    try:
        return _print_batch(
            ordered,
            _Batch(folder, stem, run_date, campaign, options),
            progress=progress,
            postage=postage,
        )
    except BaseException:
        _discard(folder, stem)
        raise


def _discard(folder: Path, stem: str) -> None:
    """Remove a batch that was not finished: its PDF, manifest and split folder."""
    shutil.rmtree(folder / stem, ignore_errors=True)
    for name in (f"{stem}.pdf", f"{stem}.manifest.csv", f"{stem}.postage.csv"):
        with suppress(OSError):
            (folder / name).unlink()


def _print_batch(
    ordered: list[RenderedLetter],
    batch: _Batch,
    *,
    progress: Progress | None,
    postage: Postage | None,
) -> BatchResult:
    split_paths = _make_folders(ordered, batch)
    results = _typeset_batch(ordered, split_paths, batch, progress=progress)
    outcomes = [o for result in results for o in result.outcomes]
    printed, failures = _printed(ordered, split_paths, outcomes)
    pages = sum(item.pages for item in printed)
    split_dir = batch.folder / batch.stem if batch.options.split else None
    if not printed:
        if split_dir is not None and split_dir.exists():
            split_dir.rmdir()
        return BatchResult(
            campaign=batch.campaign,
            pdf_path=None,
            manifest_path=None,
            split_dir=None,
            letters=(),
            failures=tuple(failures),
            pages=0,
            sheets=0,
        )
    parts = [result.pdf for result in results if result.pdf is not None]
    title = f"{batch.campaign} — {batch.run_date.isoformat()}"
    pdf = parts[0] if len(parts) == 1 else _merge(parts, title=title)
    pdf_path = batch.folder / f"{batch.stem}.pdf"
    manifest_path = batch.folder / f"{batch.stem}.manifest.csv"
    write_atomic(pdf_path, pdf)
    write_atomic(manifest_path, manifest_csv(printed, relative_to=batch.folder))
    if postage is not None:
        write_atomic(batch.folder / f"{batch.stem}.postage.csv", postage(printed))
    return BatchResult(
        campaign=batch.campaign,
        pdf_path=pdf_path,
        manifest_path=manifest_path,
        split_dir=split_dir,
        letters=tuple(printed),
        failures=tuple(failures),
        pages=pages,
        sheets=math.ceil(pages / 2) if batch.options.duplex else pages,
    )


def _make_folders(ordered: Sequence[RenderedLetter], batch: _Batch) -> list[Path | None]:
    """Create the batch's folder (and its split folder); each letter's own PDF path."""
    split_dir = batch.folder / batch.stem if batch.options.split else None
    try:
        batch.folder.mkdir(parents=True, exist_ok=True)
        if split_dir is not None and ordered:
            split_dir.mkdir()
    except OSError as exc:
        raise DeliveryError(
            _("cannot create the folder: {error}").format(error=exc.strerror), path=batch.folder
        ) from None
    if split_dir is None:
        return [None] * len(ordered)
    return list(_split_paths(ordered, split_dir))


def _typeset_batch(
    ordered: Sequence[RenderedLetter],
    split_paths: Sequence[Path | None],
    batch: _Batch,
    *,
    progress: Progress | None,
) -> list[_ChunkResult]:
    options = batch.options
    chunks = [
        _Chunk(
            letters=tuple(ordered[i] for i in part),
            split_paths=tuple(split_paths[i] for i in part),
            duplex=options.duplex,
        )
        for part in _plan(len(ordered), workers=options.workers, chunk_size=options.chunk_size)
    ]
    try:
        return _run(chunks, workers=options.workers, progress=progress)
    except OutreachError:
        raise
    except Exception as exc:  # a worker killed (out of memory?) or unable to start
        raise DeliveryError(
            _("the letter printer failed: {kind}: {error}").format(
                kind=type(exc).__name__, error=exc
            ),
            transient=True,
            path=batch.folder,
            hint=_("run again; if it keeps failing, try letters in a smaller batch"),
        ) from exc


def _printed(
    ordered: Sequence[RenderedLetter],
    split_paths: Sequence[Path | None],
    outcomes: Sequence[_Outcome],
) -> tuple[list[PrintedLetter], list[LetterFailure]]:
    """The manifest's rows of the letters that printed, and the letters that failed."""
    printed: list[PrintedLetter] = []
    failures: list[LetterFailure] = []
    page = 1
    for letter, split_path, outcome in zip(ordered, split_paths, outcomes, strict=True):
        if outcome.error is not None:
            failures.append(LetterFailure(letter.contact_id, letter.occurrence_key, outcome.error))
            continue
        printed.append(
            PrintedLetter(
                number=len(printed) + 1,
                first_page=page,
                pages=outcome.pages,
                blank_pages=outcome.blank_pages,
                contact_id=letter.contact_id,
                occurrence_key=letter.occurrence_key,
                name=letter.name,
                address_lines=letter.address_lines,
                postal_code=letter.postal_code,
                country=letter.country,
                path=split_path,
                covers=letter.covers,
                note=ADDRESS_CONFIRMED if letter.address_confirmed else "",
            )
        )
        page += outcome.pages
    return printed, failures
