"""Letters: envelope windows read back from real PDFs, addresses, layout, and safety."""

from __future__ import annotations

import io
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pdfplumber
import pytest
from PIL import Image

from outreach.contacts import Contact
from outreach.model.campaigns import Campaign, LetterSpec, Occurrence
from outreach.model.config import Settings, load_settings
from outreach.model.errors import ConfigError, OutreachError, TemplateError
from outreach.render.letter import (
    ENVELOPES,
    AddressError,
    LetterRenderer,
    RenderedLetter,
    letter_pdf,
    standalone_html,
    typesetter,
)
from outreach.rules.postal import AddressParts, format_address, missing_address_fields

PT_PER_MM = 72 / 25.4
PT_PER_IN = 72.0
TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 9, 30)
OCCURRENCE = Occurrence(
    campaign="birthday",
    key="birthday:2026",
    date=date(2026, 11, 26),
    earliest=date(2026, 11, 23),
    latest=date(2026, 11, 26),
    age=41,
)

# The window rectangles as the issue gives them, in points from the sheet's top-left corner:
# (left, top, right, bottom). Kept apart from the code's ENVELOPES so a typo there shows.
DIN_B = (20 * PT_PER_MM, 45 * PT_PER_MM, 105 * PT_PER_MM, 90 * PT_PER_MM)
DIN_A = (20 * PT_PER_MM, 27 * PT_PER_MM, 105 * PT_PER_MM, 72 * PT_PER_MM)
US10_RECIPIENT = (0.625 * PT_PER_IN, 2.125 * PT_PER_IN, 4.625 * PT_PER_IN, 3.125 * PT_PER_IN)
US10_RETURN = (0.625 * PT_PER_IN, 0.875 * PT_PER_IN, 3.875 * PT_PER_IN, 1.75 * PT_PER_IN)
CUSTOM = {
    "page_width_mm": 229,
    "page_height_mm": 324,
    "window_left_mm": 120,
    "window_top_mm": 50,
    "window_width_mm": 95,
    "window_height_mm": 48,
}
CUSTOM_WINDOW = (120 * PT_PER_MM, 50 * PT_PER_MM, 215 * PT_PER_MM, 98 * PT_PER_MM)

BODY = """\
<p>¡Feliz cumpleaños, {{ contact.first_name }}!</p>
{% for i in range(paragraphs | default(2)) %}
<p>Párrafo {{ i }}: en Casa Lucía celebramos contigo; el postre corre de nuestra cuenta y
la mesa de siempre te espera en la Cava Baja, con el horno encendido.</p>
{% endfor %}
<p class="closing">Con cariño,</p>
"""


def write_workspace(
    root: Path,
    *,
    letters: dict[str, Any] | None = None,
    signature_image: str | None = "firma.png",
    sender_address: str = (
        '    street: "Calle de la Cava Baja, 12"\n    postal_code: "28005"\n    city: Madrid\n'
        "    country: ES\n"
    ),
    body: str = BODY,
) -> Settings:
    """A workspace in `root` with a letter template and a signature image; its settings."""
    templates = root / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "carta.html.j2").write_text(body, encoding="utf-8")
    Image.new("RGBA", (120, 40), (20, 40, 90, 255)).save(templates / "firma.png")
    config = [
        "sender:",
        '  name: "Casa Lucía"',
        "  email: hola@casalucia.example",
        "  phone: '+34 913 000 000'",
        "  signature: Lucía Fernández",
        "  address:",
        sender_address.rstrip("\n"),
    ]
    if signature_image:
        config.append(f"  signature_image: {signature_image}")
    config.append("locale: es")
    letters = letters or {}
    if letters:
        config.append("letters:")
        for key, value in letters.items():
            if isinstance(value, dict):
                config.append(f"  {key}:")
                config.extend(f"    {k}: {v}" for k, v in value.items())
            else:
                config.append(f"  {key}: {value}")
    (root / "config.yaml").write_text("\n".join(config) + "\n", encoding="utf-8")
    return load_settings(root / "config.yaml")


def campaign(
    root: Path, *, template: str = "carta.html.j2", subject: str | None = None
) -> Campaign:
    return Campaign(
        name="birthday",
        kind="birthday",
        path=root / "campaigns" / "birthday.yaml",
        channel="letter",
        letter=LetterSpec(template=template, subject=subject),
    )


def renderer(settings: Settings, **kwargs: Any) -> LetterRenderer:
    return LetterRenderer(
        settings=settings, campaign=campaign(settings.root, **kwargs), today=TODAY, now=NOW
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


def pdf_pages(data: bytes) -> list[dict[str, Any]]:
    """Each page's characters and edges (points, from the top-left) and text."""
    pages = []
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            pages.append(
                {
                    "chars": [
                        (c["text"], c["x0"], c["top"], c["x1"], c["bottom"]) for c in page.chars
                    ],
                    "edges": [(e["x0"], e["top"], e["x1"], e["bottom"]) for e in page.edges],
                    "text": page.extract_text() or "",
                    "size": (float(page.width), float(page.height)),
                }
            )
    return pages


def inside(char: tuple[str, float, float, float, float], rect: tuple[float, ...]) -> bool:
    _, x0, top, x1, bottom = char
    left, rtop, right, rbottom = rect
    eps = 0.01
    return x0 >= left - eps and x1 <= right + eps and top >= rtop - eps and bottom <= rbottom + eps


def overlaps(char: tuple[str, float, float, float, float], rect: tuple[float, ...]) -> bool:
    _, x0, top, x1, bottom = char
    left, rtop, right, rbottom = rect
    return x0 < right and x1 > left and top < rbottom and bottom > rtop


def visible(lines: Any) -> str:
    return "".join("".join(lines).split())


def window_text(page: dict[str, Any], rect: tuple[float, ...]) -> str:
    """The characters inside the rectangle; fails if one is only partly inside."""
    partly = [c for c in page["chars"] if overlaps(c, rect) and not inside(c, rect)]
    assert not partly, f"characters cut by the window edge: {partly}"
    return "".join(c[0] for c in page["chars"] if inside(c, rect) and c[0].strip())


# --- the envelope windows, read back from the PDF --------------------------------------------


@pytest.mark.parametrize(
    ("envelope", "windows"),
    [
        ("din5008-b", {"all": DIN_B}),
        ("din5008-a", {"all": DIN_A}),
        ("us10", {"recipient": US10_RECIPIENT, "return": US10_RETURN}),
        ("custom", {"all": CUSTOM_WINDOW}),
    ],
)
@pytest.mark.parametrize("country", ["ES", "DE", "US"])
def test_address_and_return_lines_lie_inside_the_windows(
    tmp_path: Path, envelope: str, windows: dict[str, tuple[float, ...]], country: str
) -> None:
    letters: dict[str, Any] = {"envelope": envelope}
    if envelope == "custom":
        letters["custom"] = CUSTOM
    settings = write_workspace(tmp_path, letters=letters)
    contact = {
        "ES": person(),
        "DE": person(
            street="Hauptstraße 5",
            street2="Hinterhaus",
            postal_code="10115",
            city="Berlin",
            country="DE",
        ),
        "US": person(
            title=None,
            first_name="John",
            last_name="Smith",
            street="350 Fifth Avenue",
            street2="Apt 21B",
            city="New York",
            region="NY",
            postal_code="10118",
            country="US",
            locale="en_US",
        ),
    }[country]
    letter = renderer(settings).render(contact, OCCURRENCE)
    page = pdf_pages(letter_pdf(letter))[0]
    address = visible(letter.address_lines)
    sender = "CasaLucía"
    if "all" in windows:
        text = window_text(page, windows["all"])
        # The window shows the return line first, then the address, and nothing else.
        assert text.startswith(sender)
        assert text.endswith(address)
        return_line = text[: -len(address)]
        assert "CalledelaCavaBaja,12" in return_line
        assert "28005Madrid" in return_line
        assert ("ESPAÑA" in return_line) == (country != "ES")
    else:
        assert window_text(page, windows["recipient"]) == address
        returned = window_text(page, windows["return"])
        assert returned.startswith(sender + "CalledelaCavaBaja,1228005Madrid")
    # Every character of the address is on the page exactly once more than zero: in the window.
    assert address in visible(c[0] for c in page["chars"])
    if country == "DE":
        assert letter.address_lines[-1] == "ALEMANIA"
        assert letter.foreign
    if country == "US":
        assert "New York, NY 10118" in letter.address_lines
        assert letter.address_lines[-1] == "ESTADOS UNIDOS"


def test_nothing_else_shows_through_the_window_even_with_a_long_letter(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    body = BODY.replace("paragraphs | default(2)", "14")
    (tmp_path / "templates" / "carta.html.j2").write_text(body, encoding="utf-8")
    letter = renderer(settings, subject="Un regalo para ti").render(person(), OCCURRENCE)
    pages = pdf_pages(letter_pdf(letter))
    assert len(pages) == 2
    first, second = pages
    assert window_text(first, DIN_B) == visible(
        ["Casa Lucía · Calle de la Cava Baja, 12 · 28005 Madrid", *letter.address_lines]
    )
    # Page 2 continues the letter: numbered, naming the recipient and the date, and without
    # any address block.
    assert "2 / 2" in second["text"]
    assert "1 / 2" not in first["text"]
    footer = "Sra. María López García · 24 de noviembre de 2026"
    assert footer in second["text"]
    assert footer not in first["text"]
    assert "28009" not in second["text"]
    assert "Calle de Alcalá" not in second["text"]
    assert "Lucía Fernández" in second["text"]  # the signature closes the letter


def test_place_date_subject_and_signature(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    render = renderer(settings, subject="Feliz cumpleaños, {{ contact.first_name }}")
    text = pdf_pages(letter_pdf(render.render(person(), OCCURRENCE)))[0]["text"]
    assert "Madrid, 24 de noviembre de 2026" in text
    assert "Feliz cumpleaños, María" in text
    assert "Lucía Fernández" in text
    assert "+34 913 000 000" in text  # the letterhead
    ampersand = renderer(settings, subject="Para {{ contact.first_name }} & familia")
    text = pdf_pages(letter_pdf(ampersand.render(person(first_name="<Ana>"), OCCURRENCE)))[0]
    assert "Para <Ana> & familia" in text["text"]  # escaped once, printed as written
    # No English variant of the letter: one message, one language, its date in Spanish too.
    english = render.render(person(id="c2", locale="en_GB"), OCCURRENCE)
    assert "Madrid, 24 de noviembre de 2026" in pdf_pages(letter_pdf(english))[0]["text"]


@pytest.mark.parametrize(
    ("envelope", "marks_mm"),
    [("din5008-b", [105.0, 148.5, 210.0]), ("din5008-a", [87.0, 148.5, 192.0]), ("us10", [])],
)
def test_fold_and_punch_marks(tmp_path: Path, envelope: str, marks_mm: list[float]) -> None:
    settings = write_workspace(tmp_path, letters={"envelope": envelope})
    page = pdf_pages(letter_pdf(renderer(settings).render(person(), OCCURRENCE)))[0]
    # Marks are short rules at the left edge of the sheet.
    tops = sorted(
        {round(top / PT_PER_MM * 2) / 2 for _, top, x1, _ in page["edges"] if x1 < 15 * PT_PER_MM}
    )
    assert tops == marks_mm
    width, height = page["size"]
    expected = (210, 297) if envelope.startswith("din") else (215.9, 279.4)
    assert (round(width / PT_PER_MM, 1), round(height / PT_PER_MM, 1)) == expected


def test_the_sample_birthday_letter_renders(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, signature_image="signature.png")
    sample = Path(__file__).resolve().parent.parent / "templates"
    for name in ("birthday_letter.html.j2", "signature.png"):
        shutil.copy(sample / name, tmp_path / "templates" / name)
    assert (sample / "signature.png").stat().st_size < 20_000
    render = renderer(settings, template="birthday_letter.html.j2")
    pages = pdf_pages(letter_pdf(render.render(person(), OCCURRENCE)))
    assert len(pages) == 1
    text = pages[0]["text"]
    assert "¡Feliz cumpleaños, María!" in text
    assert " 41 " not in text  # the sample never prints an age (María turns 41)
    assert "noviembre" in text


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "fields", "expected"),
    [
        ("ES", {"postal_code": "28001", "city": "Madrid"}, ["28001 Madrid"]),
        ("DE", {"postal_code": "10115", "city": "Berlin"}, ["10115 Berlin", "ALEMANIA"]),
        ("FR", {"postal_code": "75001", "city": "Paris"}, ["75001 Paris", "FRANCIA"]),
        (
            "IT",
            {"postal_code": "00184", "city": "Roma", "region": "RM"},
            ["00184 Roma RM", "ITALIA"],
        ),
        (
            "GB",
            {"postal_code": "SW1A 1AA", "city": "London"},
            ["London", "SW1A 1AA", "REINO UNIDO"],
        ),
        (
            "US",
            {"postal_code": "10118", "city": "New York", "region": "NY"},
            ["New York, NY 10118", "ESTADOS UNIDOS"],
        ),
    ],
)
def test_address_lines_follow_the_country(
    country: str, fields: dict[str, str], expected: list[str]
) -> None:
    lines = format_address(
        name_lines=["Ana Gómez"],
        address=AddressParts(
            street="Street 1",
            street2=None,
            country=country,
            **{"postal_code": None, "city": None, "region": None, **fields},
        ),
        home_country="ES",
        locale="es",
    )
    assert list(lines) == ["Ana Gómez", "Street 1", *expected]


def test_the_country_line_is_in_the_senders_language(tmp_path: Path) -> None:
    lines = format_address(
        name_lines=["Ana"],
        address=AddressParts(
            street="Calle 1",
            street2=None,
            postal_code="28001",
            city="Madrid",
            region=None,
            country="ES",
        ),
        home_country="DE",
        locale="de",
    )
    assert lines[-1] == "SPANIEN"


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"postal_code": None}, "postal_code"),
        ({"street": None}, "street"),
        ({"city": "  "}, "city"),
        ({"country": "US", "region": None, "postal_code": "10118"}, "region"),
    ],
)
def test_an_incomplete_address_is_an_error_naming_the_field(
    tmp_path: Path, fields: dict[str, Any], missing: str
) -> None:
    render = renderer(write_workspace(tmp_path))
    with pytest.raises(AddressError) as caught:
        render.render(person(**fields), OCCURRENCE)
    error = caught.value
    assert error.field == missing
    assert "contact c1" in str(error)
    assert missing.replace("_", " ") in error.message
    assert error.line == 2
    assert isinstance(error, OutreachError)


def test_missing_address_fields_depend_on_the_country() -> None:
    assert missing_address_fields(person()) == []
    assert missing_address_fields(person(postal_code=" ", city=None)) == ["city", "postal_code"]
    assert missing_address_fields(person(country="US", region=None)) == ["region"]
    # Hong Kong has no postal codes, and Google's data wants the area (Kowloon…) instead.
    assert missing_address_fields(person(country="HK", postal_code=None)) == ["region"]
    assert missing_address_fields(person(country="HK", postal_code=None, region="Kowloon")) == []


def test_no_name_is_an_error(tmp_path: Path) -> None:
    render = renderer(write_workspace(tmp_path))
    with pytest.raises(AddressError, match="no name"):
        render.render(person(title=None, first_name=None, last_name=None), OCCURRENCE)


def test_a_nine_line_address_is_an_error_not_a_clipped_address(tmp_path: Path) -> None:
    render = renderer(write_workspace(tmp_path))
    street = "\n".join(f"Línea {n}" for n in range(1, 7))  # cells may hold line breaks
    with pytest.raises(AddressError) as caught:
        render.render(person(street=street, street2="Escalera B"), OCCURRENCE)
    assert "9 lines" in caught.value.message
    assert "holds 6" in caught.value.message
    # Six lines still fit the DIN 5008 address zone.
    letter = render.render(
        person(street="Calle Mayor 1\nPortal 2\nEscalera A", street2="3º B"), OCCURRENCE
    )
    assert len(letter.address_lines) == 6
    assert window_text(pdf_pages(letter_pdf(letter))[0], DIN_B).endswith(
        visible(letter.address_lines)
    )


def test_a_line_too_wide_for_the_window_is_an_error(tmp_path: Path) -> None:
    render = renderer(write_workspace(tmp_path))
    street = "Avenida de la Ilustrísima Señora Doña Bernardina de Todos los Santos 123"
    letter = render.render(person(street=street), OCCURRENCE)  # the line count is fine
    with pytest.raises(AddressError) as caught:
        letter_pdf(letter)
    assert "Avenida de la Ilustrísima" in caught.value.message
    assert "mm wide" in caught.value.message


def test_the_windows_are_checked_after_the_users_stylesheet(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, letters={"css": "mine.css"})
    css = tmp_path / "templates" / "mine.css"
    css.write_text(".recipient-address { font-size: 30pt; }", encoding="utf-8")
    with pytest.raises(AddressError, match="window"):
        letter_pdf(renderer(settings).render(person(), OCCURRENCE))
    css.write_text(".first-page-top { height: 40mm; }", encoding="utf-8")
    with pytest.raises(AddressError, match="would show through the envelope window"):
        letter_pdf(renderer(settings).render(person(), OCCURRENCE))
    css.write_text(".place-date { color: #7a2e1f; }", encoding="utf-8")
    assert letter_pdf(renderer(settings).render(person(), OCCURRENCE)).startswith(b"%PDF")


def test_a_layout_without_the_address_block_is_refused(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    (tmp_path / "templates" / "letter_base.html.j2").write_text(
        '<html><body><div style="height: 100mm"></div>{{ letter.body }}</body></html>',
        encoding="utf-8",
    )
    letter = renderer(settings).render(person(), OCCURRENCE)
    with pytest.raises(AddressError, match="address block is missing"):
        letter_pdf(letter)


def test_an_incomplete_sender_address_is_a_config_error(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, sender_address="    city: Madrid\n    country: ES\n")
    with pytest.raises(ConfigError) as caught:
        renderer(settings)
    assert caught.value.field == "sender.address.street"


# --- safety: what WeasyPrint may fetch -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x.png",
        "https://example.com/x.png",
        "file:///etc/passwd",
        "../outside.png",
    ],
)
def test_fetching_outside_the_templates_folder_is_refused_and_reported(
    tmp_path: Path, url: str
) -> None:
    settings = write_workspace(tmp_path, body=f'<p>Hola</p><img src="{url}">')
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    letter = renderer(settings).render(person(), OCCURRENCE)
    with pytest.raises(TemplateError) as caught:
        letter_pdf(letter)
    message = caught.value.message
    assert "contact c1" in message
    assert "refused" in message
    assert ("outside.png" if url.startswith("..") else url) in message


def test_a_symlink_out_of_the_templates_folder_is_refused(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, body='<p>Hola</p><img src="sneaky.png">')
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    (tmp_path / "templates" / "sneaky.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(TemplateError, match=r"sneaky\.png.*refused"):
        letter_pdf(renderer(settings).render(person(), OCCURRENCE))


def test_a_stylesheet_that_fetches_from_the_web_fails_the_campaign(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, letters={"css": "mine.css"})
    (tmp_path / "templates" / "mine.css").write_text(
        '@import url("http://example.com/evil.css");\n.subject { color: red }', encoding="utf-8"
    )
    with pytest.raises(TemplateError, match="refused"):
        renderer(settings)


def test_files_in_the_templates_folder_and_data_uris_are_served(tmp_path: Path) -> None:
    pixel = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
        "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    body = f'<p>Hola</p><img src="firma.png" style="width:20mm"><img src="{pixel}">'
    settings = write_workspace(tmp_path, body=body)
    assert letter_pdf(renderer(settings).render(person(), OCCURRENCE)).startswith(b"%PDF")


def test_a_missing_image_is_an_error_for_the_contact(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, body='<p>Hola</p><img src="logo.png">')
    letter = renderer(settings).render(person(), OCCURRENCE)
    with pytest.raises(TemplateError, match=r"cannot load logo\.png: file not found"):
        letter_pdf(letter)


def test_an_unreadable_image_is_an_error_for_the_contact(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, body='<p>Hola</p><img src="broken.png">')
    (tmp_path / "templates" / "broken.png").write_bytes(b"not a picture")
    with pytest.raises(TemplateError, match="contact c1"):
        letter_pdf(renderer(settings).render(person(), OCCURRENCE))


def test_a_missing_signature_image_is_an_error_for_each_contact(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, signature_image="no-such-file.png")
    render = renderer(settings)  # the campaign itself is fine
    with pytest.raises(TemplateError) as caught:
        render.render(person(), OCCURRENCE)
    assert "contact c1" in caught.value.message
    assert "no-such-file.png" in caught.value.message
    assert caught.value.field == "sender.signature_image"


def test_bad_contacts_fail_alone(tmp_path: Path) -> None:
    render = renderer(write_workspace(tmp_path))
    contacts = [
        person(id="ok1"),
        person(id="no-code", postal_code=None),
        person(id="nine", street="\n".join("abcdefghi")),
        person(id="ok2", first_name="Pilar"),
    ]
    rendered: list[RenderedLetter] = []
    errors: dict[str, OutreachError] = {}
    for contact in contacts:
        try:
            rendered.append(render.render(contact, OCCURRENCE))
        except OutreachError as exc:
            errors[contact.id] = exc
    assert [letter.contact_id for letter in rendered] == ["ok1", "ok2"]
    assert set(errors) == {"no-code", "nine"}
    assert "Pilar" in pdf_pages(letter_pdf(rendered[1]))[0]["text"]


def test_template_errors_name_the_contact_and_field(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, body="<p>{{ contact.nickname }}</p>")
    with pytest.raises(TemplateError) as caught:
        renderer(settings).render(person(), OCCURRENCE)
    assert "contact c1" in caught.value.message
    assert "contact.nickname" in caught.value.message


def test_contact_data_cannot_inject_markup(tmp_path: Path) -> None:
    render = renderer(write_workspace(tmp_path))
    letter = render.render(person(first_name="<b>Ana</b>", last_name="Gil"), OCCURRENCE)
    assert "<b>Ana" not in letter.html
    assert "&lt;b&gt;Ana" in letter.html
    text = pdf_pages(letter_pdf(letter))[0]["text"]
    assert "Sra. <b>Ana</b> Gil" in text  # printed as written, not interpreted


def test_standalone_html_carries_its_stylesheets(tmp_path: Path) -> None:
    letter = renderer(write_workspace(tmp_path)).render(person(), OCCURRENCE)
    html = standalone_html(letter)
    assert html.index("<style>") < html.index("</head>")
    assert "size: 210mm 297mm" in html
    assert "recipient-address" in html


def test_profiles_have_the_published_figures() -> None:
    din_b = ENVELOPES["din5008-b"]
    assert (din_b.return_zone.height, din_b.address_zone.height) == (17.7, 27.3)
    assert din_b.address_capacity == 6
    assert din_b.return_capacity == 1
    assert ENVELOPES["din5008-a"].windows[0].top == 27.0
    assert ENVELOPES["us10"].address_capacity == 5
    assert typesetter() is typesetter()


# --- the safe zones of each envelope, measured on the PDF -------------------------------------

IN = PT_PER_IN
MM = PT_PER_MM
US_SENDER = (
    "    street: 350 Fifth Avenue\n    postal_code: '10118'\n    city: New York\n"
    "    region: NY\n    country: US\n"
)
# Where every character of each block must lie, in points from the sheet's top-left corner,
# from the published figures (not from the code's profiles). #10: PostalMethods' safe zones,
# and the recipient ⅛ in inside its window (USPS); DIN 5008: the zones of the address field.
SAFE_ZONES = {
    "us10": {
        "return": (0.625 * IN, 0.875 * IN, 3.875 * IN, 1.292 * IN),
        "recipient": (0.75 * IN, 2.25 * IN, 4.0 * IN, 2.917 * IN),
    },
    "din5008-b": {
        "return": (20 * MM, 45 * MM, 105 * MM, 62.7 * MM),
        "recipient": (20 * MM, 62.7 * MM, 105 * MM, 90 * MM),
    },
    "din5008-a": {
        "return": (20 * MM, 27 * MM, 105 * MM, 44.7 * MM),
        "recipient": (20 * MM, 44.7 * MM, 105 * MM, 72 * MM),
    },
}


@pytest.mark.parametrize("envelope", sorted(SAFE_ZONES))
def test_the_fullest_foreign_address_and_return_block_stay_inside_the_safe_zones(
    tmp_path: Path, envelope: str
) -> None:
    us = envelope == "us10"
    settings = write_workspace(
        tmp_path, letters={"envelope": envelope}, **({"sender_address": US_SENDER} if us else {})
    )
    # Abroad from the sender, with as many lines as the window holds (5 on a #10, 6 on DIN).
    abroad = (
        person(street="Calle de Alcalá, 123\nEscalera B")
        if us
        else person(
            street="Hauptstraße 5\nHinterhaus",
            street2="3. OG",
            postal_code="10115",
            city="Berlin",
            country="DE",
        )
    )
    letter = renderer(settings).render(abroad, OCCURRENCE)
    assert len(letter.address_lines) == (5 if us else 6)
    page = pdf_pages(letter_pdf(letter))[0]
    zones = SAFE_ZONES[envelope]
    recipient = window_text(page, zones["recipient"])
    assert recipient == visible(letter.address_lines)
    returned = window_text(page, zones["return"])
    assert returned.startswith("CasaLucía")
    if us:  # the return block names the sender's country on its last line, and fits
        assert returned.endswith("NewYork,NY10118·ESTADOSUNIDOS")
    # Nothing of either block outside its zone: every character of the page that belongs
    # to them was counted above.
    shown = visible(c[0] for c in page["chars"])
    assert shown.count(visible(letter.address_lines)) == 1
