"""The letter printer: batch PDFs, manifests and split PDFs, read back and checked."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pdfplumber
import pytest
from pypdf import PdfReader

from outreach.contacts import Contact
from outreach.deliver.printing import (
    MANIFEST_COLUMNS,
    BatchOptions,
    BatchResult,
    harfbuzz_subset_available,
    postal_order,
    write_atomic,
    write_batch,
)
from outreach.model.campaigns import Campaign, LetterSpec, Occurrence
from outreach.model.config import Settings, load_settings
from outreach.model.errors import TemplateError
from outreach.render.letter import AddressError, LetterRenderer, RenderedLetter

RUN_DATE = TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 9, 30)
OCCURRENCE = Occurrence(
    campaign="birthday",
    key="birthday:2026",
    date=date(2026, 11, 26),
    earliest=date(2026, 11, 23),
    latest=date(2026, 11, 26),
    age=41,
)
# A contact with a `paragraphs` column gets a longer letter (14 paragraphs run to two pages).
BODY = """\
<p>¡Feliz cumpleaños, {{ contact.first_name }}!</p>
{% for i in range((contact.paragraphs | default('2')) | int) %}
<p>Párrafo {{ i }}: en Casa Lucía celebramos contigo; el postre corre de nuestra cuenta y
la mesa de siempre te espera en la Cava Baja, con el horno encendido.</p>
{% endfor %}
<p class="closing">Con cariño,</p>
"""
CONFIG = """\
sender:
  name: "Casa Lucía"
  email: hola@casalucia.example
  signature: Lucía Fernández
  address:
    street: "Calle de la Cava Baja, 12"
    postal_code: "28005"
    city: Madrid
    country: ES
locale: es
"""


def write_workspace(root: Path, *, body: str = BODY) -> Settings:
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "carta.html.j2").write_text(body, encoding="utf-8")
    (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
    return load_settings(root / "config.yaml")


def campaign(root: Path) -> Campaign:
    return Campaign(
        name="birthday",
        kind="birthday",
        path=root / "campaigns" / "birthday.yaml",
        channel="letter",
        letter=LetterSpec(template="carta.html.j2"),
    )


def person(**fields: Any) -> Contact:
    values: dict[str, Any] = {
        "id": "c1",
        "line": 2,
        "title": "Sra.",
        "first_name": "María",
        "last_name": "López García",
        "street": "Calle de Alcalá, 123",
        "postal_code": "28009",
        "city": "Madrid",
        "country": "ES",
        "locale": "es",
    }
    values.update(fields)
    return Contact(**values)


def render_all(tmp_path: Path, contacts: list[Contact]) -> list[RenderedLetter]:
    settings = write_workspace(tmp_path / "ws")
    renderer = LetterRenderer(
        settings=settings, campaign=campaign(settings.root), today=TODAY, now=NOW
    )
    return [renderer.render(contact, OCCURRENCE) for contact in contacts]


def someone(contact_id: str, postal_code: str, name: str, **fields: Any) -> Contact:
    return person(id=contact_id, postal_code=postal_code, first_name=name, **fields)


def batch(tmp_path: Path, letters: list[RenderedLetter], **options: Any) -> BatchResult:
    settings: dict[str, Any] = {
        "out_dir": tmp_path / "out",
        "run_date": RUN_DATE,
        "campaign": "birthday",
    }
    chosen: dict[str, Any] = {"workers": 1}
    for key, value in options.items():
        (settings if key in settings or key in ("progress", "postage") else chosen)[key] = value
    return write_batch(letters=letters, options=BatchOptions(**chosen), **settings)


def page_texts(path: Path) -> list[str]:
    with pdfplumber.open(path) as pdf:
        return [page.extract_text() or "" for page in pdf.pages]


def manifest(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def five(tmp_path: Path) -> list[RenderedLetter]:
    """Five letters in no postal order; Bea's runs to two pages."""
    return render_all(
        tmp_path,
        [
            someone("c3", "28013", "Carmen"),
            someone("c1", "08001", "Ana", city="Barcelona"),
            someone("c5", "28001", "Eva", extra={"paragraphs": "14"}),
            someone("c2", "10115", "Bea", city="Berlin", country="DE", extra={"paragraphs": "14"}),
            someone("c4", "41001", "Dora", city="Sevilla"),
        ],
    )


def test_a_duplex_batch_starts_every_letter_on_a_new_sheet(
    tmp_path: Path, five: list[RenderedLetter]
) -> None:
    result = batch(tmp_path, five, duplex=True)
    assert result.pdf_path == tmp_path / "out" / "letters" / "2026-11-24" / "birthday.pdf"
    assert result.manifest_path == result.pdf_path.with_name("birthday.manifest.csv")
    texts = page_texts(result.pdf_path)
    rows = manifest(result.manifest_path)
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    # The manifest accounts for every page of the PDF, and every letter starts on a front side.
    assert len(texts) == sum(int(row["pages"]) for row in rows) == result.pages == 10
    assert result.sheets == 5
    for row in rows:
        first = int(row["first_page"])
        assert first % 2 == 1
        assert int(row["pages"]) % 2 == 0
        assert row["name"] in texts[first - 1]
        assert f"{row['postal_code']} " in texts[first - 1]
        if row["blank_pages"] == "1":
            assert texts[first + int(row["pages"]) - 2].strip() == ""  # a truly blank back
    # Postal-code order, domestic letters first; the letter going abroad comes last.
    assert [row["contact_id"] for row in rows] == ["c1", "c5", "c3", "c4", "c2"]
    assert [row["letter"] for row in rows] == ["1", "2", "3", "4", "5"]
    eva = rows[1]
    assert (eva["pages"], eva["blank_pages"]) == ("2", "0")
    assert "2 / 2" in texts[int(eva["first_page"])]
    assert rows[4]["address"].endswith("; 10115 Berlin; ALEMANIA")
    assert rows[0]["address"] == "Sra. Ana López García; Calle de Alcalá, 123; 08001 Barcelona"


def test_a_simplex_batch_has_no_blank_pages(tmp_path: Path, five: list[RenderedLetter]) -> None:
    result = batch(tmp_path, five)
    rows = manifest(result.manifest_path)  # type: ignore[arg-type]
    texts = page_texts(result.pdf_path)  # type: ignore[arg-type]
    assert len(texts) == sum(int(row["pages"]) for row in rows) == 7 == result.sheets
    assert all(text.strip() for text in texts)
    assert [int(row["first_page"]) for row in rows] == [1, 2, 4, 5, 6]
    for row in rows:
        assert row["name"] in texts[int(row["first_page"]) - 1]


def test_sorting_can_be_turned_off(tmp_path: Path, five: list[RenderedLetter]) -> None:
    result = batch(tmp_path, five, sort_by_postal_code=False)
    rows = manifest(result.manifest_path)  # type: ignore[arg-type]
    assert [row["contact_id"] for row in rows] == ["c3", "c1", "c5", "c2", "c4"]


def test_split_writes_one_pdf_per_letter(tmp_path: Path) -> None:
    letters = render_all(
        tmp_path,
        [
            someone("a/1", "28002", "Ana", extra={"paragraphs": "14"}),
            someone("a_1", "28001", "Bea"),
        ],
    )
    result = batch(tmp_path, letters, split=True, duplex=True)
    folder = tmp_path / "out" / "letters" / "2026-11-24" / "birthday"
    assert result.split_dir == folder
    assert sorted(p.name for p in folder.iterdir()) == ["a_1-2.pdf", "a_1.pdf"]
    rows = manifest(result.manifest_path)  # type: ignore[arg-type]
    for row in rows:
        path = result.pdf_path.parent / row["file"]  # type: ignore[union-attr]
        texts = page_texts(path)
        assert row["name"] in texts[0]
        # The letter's own PDF has its pages without the duplex padding.
        assert len(texts) == int(row["pages"]) - int(row["blank_pages"])
    assert [len(page_texts(p)) for p in (folder / "a_1.pdf", folder / "a_1-2.pdf")] == [1, 2]
    assert not list(result.pdf_path.parent.rglob("*.tmp"))  # type: ignore[union-attr]


def test_bad_letters_fail_alone_and_are_reported(tmp_path: Path) -> None:
    good = render_all(
        tmp_path / "a", [someone("ok1", "28001", "Ana"), someone("ok2", "28002", "Bea")]
    )
    wide = render_all(
        tmp_path / "b",
        [
            someone(
                "wide",
                "28003",
                "Eva",
                street="Avenida de la Ilustrísima Señora Doña Bernardina de Todos los Santos 123",
            )
        ],
    )
    settings = write_workspace(tmp_path / "c", body='<p>Hola</p><img src="file:///etc/passwd">')
    renderer = LetterRenderer(
        settings=settings, campaign=campaign(settings.root), today=TODAY, now=NOW
    )
    fetching = [renderer.render(someone("evil", "28004", "Flor"), OCCURRENCE)]
    result = batch(tmp_path, [good[0], *wide, *fetching, good[1]])
    assert [letter.contact_id for letter in result.letters] == ["ok1", "ok2"]
    failures = {failure.contact_id: failure.error for failure in result.failures}
    assert set(failures) == {"wide", "evil"}
    assert isinstance(failures["wide"], AddressError)
    assert "mm wide" in failures["wide"].message
    assert isinstance(failures["evil"], TemplateError)
    assert "file:///etc/passwd" in failures["evil"].message
    rows = manifest(result.manifest_path)  # type: ignore[arg-type]
    assert [row["contact_id"] for row in rows] == ["ok1", "ok2"]
    assert len(page_texts(result.pdf_path)) == 2  # type: ignore[arg-type]


def test_nothing_printable_writes_nothing(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path / "ws", body='<img src="http://example.com/x.png">')
    renderer = LetterRenderer(
        settings=settings, campaign=campaign(settings.root), today=TODAY, now=NOW
    )
    letter = renderer.render(person(), OCCURRENCE)
    result = batch(tmp_path, [letter], split=True)
    assert result.pdf_path is None and result.manifest_path is None
    assert [f.contact_id for f in result.failures] == ["c1"]
    assert not list((tmp_path / "out").rglob("*.*"))


def test_a_second_batch_on_the_same_day_does_not_overwrite_the_first(tmp_path: Path) -> None:
    letters = render_all(tmp_path, [someone("c1", "28001", "Ana"), someone("c2", "28002", "Bea")])
    first = batch(tmp_path, letters[:1])
    second = batch(tmp_path, letters[1:], split=True)
    assert first.pdf_path is not None and second.pdf_path is not None
    assert second.pdf_path.name == "birthday-2.pdf"
    assert second.manifest_path is not None
    assert second.manifest_path.name == "birthday-2.manifest.csv"
    assert second.split_dir is not None and second.split_dir.name == "birthday-2"
    assert "Ana" in page_texts(first.pdf_path)[0]
    assert "Bea" in page_texts(second.pdf_path)[0]


def test_worker_processes_merge_chunks_in_order(tmp_path: Path) -> None:
    codes = ["28005", "28001", "28004", "28002", "28003"]
    letters = render_all(
        tmp_path,
        [
            someone(
                f"c{code}", code, f"N{code}", extra={"paragraphs": "14"} if code == "28002" else {}
            )
            for code in codes
        ],
    )
    progress: list[tuple[int, int]] = []
    result = batch(
        tmp_path,
        letters,
        workers=2,
        chunk_size=2,
        duplex=True,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert progress == [(2, 5), (4, 5), (5, 5)]  # three chunks, two worker processes
    texts = page_texts(result.pdf_path)  # type: ignore[arg-type]
    assert len(texts) == 10
    rows = manifest(result.manifest_path)  # type: ignore[arg-type]
    assert [row["postal_code"] for row in rows] == sorted(codes)
    for row in rows:
        assert row["name"] in texts[int(row["first_page"]) - 1]


def test_manifest_cells_cannot_become_spreadsheet_formulas(tmp_path: Path) -> None:
    letters = render_all(tmp_path, [someone("c1", "28001", "Ana", title="=HYPERLINK(1)")])
    rows = manifest(batch(tmp_path, letters).manifest_path)  # type: ignore[arg-type]
    assert rows[0]["name"] == "'=HYPERLINK(1) Ana López García"


def test_postal_order_compares_numbers_as_numbers(tmp_path: Path) -> None:
    letters = render_all(
        tmp_path,
        [
            someone("gb", "SW1A 1AA", "Gil", country="GB", city="London"),
            someone("b", "9000", "Bo", country="ES"),
            someone("a", "10000", "Al", country="ES"),
        ],
    )
    assert [letter.contact_id for letter in sorted(letters, key=postal_order)] == ["b", "a", "gb"]


def test_write_atomic_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "x.pdf"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.pdf"]


def test_the_harfbuzz_subsetter_is_installed() -> None:
    # The Makefile installs libharfbuzz-subset0; without it letters are several times slower.
    assert harfbuzz_subset_available() is True


def test_pdf_metadata_names_the_batch(tmp_path: Path) -> None:
    letters = render_all(tmp_path, [someone("c1", "28001", "Ana"), someone("c2", "28002", "Bo")])
    result = batch(tmp_path, letters, workers=2, chunk_size=1)
    with pdfplumber.open(io.BytesIO(result.pdf_path.read_bytes())) as pdf:  # type: ignore[union-attr]
        assert pdf.metadata["Title"] == "birthday — 2026-11-24"


@pytest.mark.parametrize(("variant", "part"), [("pdf/a-2b", "2"), ("pdf/a-3b", "3")])
def test_a_pdfa_batch_joined_from_chunks_keeps_its_pdfaid_output_intent_and_identifier(
    tmp_path: Path, variant: str, part: str
) -> None:
    settings = write_workspace(tmp_path / "ws")
    (settings.root / "config.yaml").write_text(
        CONFIG + f"letters:\n  pdf_variant: {variant}\n", encoding="utf-8"
    )
    settings = load_settings(settings.root / "config.yaml")
    renderer = LetterRenderer(
        settings=settings, campaign=campaign(settings.root), today=TODAY, now=NOW
    )
    letters = [renderer.render(someone(f"c{n}", f"2800{n}", "Ana"), OCCURRENCE) for n in (1, 2)]
    result = batch(tmp_path, letters, chunk_size=1)  # two chunks, joined with pypdf
    assert result.pdf_path is not None
    reader = PdfReader(io.BytesIO(result.pdf_path.read_bytes()))
    xmp = reader.xmp_metadata
    assert xmp is not None
    assert (xmp.pdfaid_part, xmp.pdfaid_conformance) == (part, "B")
    # What a PDF/A checker compares: the XMP and the document information agree.
    info = reader.metadata
    assert info is not None
    assert xmp.dc_title == {"x-default": "birthday — 2026-11-24"} == {"x-default": info.title}
    assert xmp.pdf_producer == info.producer
    (intent,) = reader.root_object["/OutputIntents"]
    intent = intent.get_object()
    assert intent["/S"] == "/GTS_PDFA1"
    assert intent["/DestOutputProfile"].get_object()["/N"] == 3  # an RGB ICC profile (sRGB)
    assert reader.trailer["/ID"]
    assert len(reader.pages) == 2
    assert reader.pdf_header == "%PDF-1.7"
