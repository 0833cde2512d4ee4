"""The return line: `letters.return_address` (a short line of the user's) with the country
added abroad, read back from the envelope window of a real PDF; an overflow is refused."""

from __future__ import annotations

from pathlib import Path

from test_letter import DIN_B, OCCURRENCE, pdf_pages, person, renderer, window_text, write_workspace

from outreach.deliver.printing import lay_out
from outreach.render.letter import letter_pdf

LONG_ADDRESS = (
    '    street: "Calle de la Cava Baja, 12, bajo izquierda, local 3"\n'
    '    postal_code: "28005"\n    city: Madrid\n    country: ES\n'
)
BRITAIN = {"street": "12 Baker Street", "postal_code": "NW1 6XE", "city": "London", "country": "GB"}


def test_the_sender_lines_overflow_abroad_and_a_short_return_address_fits(tmp_path: Path) -> None:
    long = write_workspace(tmp_path / "long", sender_address=LONG_ADDRESS)
    letter = renderer(long).render(person(**BRITAIN), OCCURRENCE)
    (error,) = lay_out([letter], duplex=False, workers=1)
    assert error is not None and "return address" in str(error)

    short = write_workspace(
        tmp_path / "short",
        sender_address=LONG_ADDRESS,
        letters={"return_address": "'Casa Lucía · Apdo. 12 · 28005 Madrid'"},
    )
    abroad = renderer(short).render(person(**BRITAIN), OCCURRENCE)
    assert lay_out([abroad], duplex=False, workers=1) == [None]
    window = window_text(pdf_pages(letter_pdf(abroad))[0], DIN_B)
    # The chosen line, then the sender's country (the letter must be able to come back).
    assert window.startswith("CasaLucía·Apdo.12·28005Madrid·ESPAÑA")
    home = renderer(short).render(person(), OCCURRENCE)
    assert "ESPAÑA" not in window_text(pdf_pages(letter_pdf(home))[0], DIN_B)
