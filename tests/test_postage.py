"""The postage list: letters by zone and weight step, priced from config."""

from __future__ import annotations

from outreach.deliver.printing import PrintedLetter
from outreach.model.config import Postage
from outreach.postage import postage_csv, postage_lines, postage_total, weight_step, zone_of

POSTAGE = Postage(
    sheet_grams=5,
    envelope_grams=6,
    steps=(20, 50),
    zones={"europe": ("fr", "DE")},
    prices={"domestic": {20: 0.78, 50: 1.25}, "europe": {20: 1.85}},
)


def printed(country: str, pages: int) -> PrintedLetter:
    return PrintedLetter(
        number=1,
        first_page=1,
        pages=pages,
        blank_pages=0,
        contact_id="c1",
        occurrence_key="k",
        name="Ana",
        address_lines=("Ana",),
        postal_code="",
        country=country,
        path=None,
    )


def test_zones_and_weight_steps() -> None:
    assert zone_of("es", home_country="ES", postage=POSTAGE) == "domestic"
    assert zone_of("FR", home_country="ES", postage=POSTAGE) == "europe"
    assert zone_of("US", home_country="ES", postage=POSTAGE) == "international"
    assert weight_step(2, postage=POSTAGE) == 20  # 16 g
    assert weight_step(3, postage=POSTAGE) == 50  # 21 g
    assert weight_step(9, postage=POSTAGE) is None  # 51 g: past the last step


def test_the_list_counts_prices_and_totals() -> None:
    letters = [printed("ES", 1), printed("ES", 1), printed("ES", 4), printed("DE", 2)]
    lines = postage_lines(letters, home_country="ES", duplex=False, postage=POSTAGE)
    assert [(x.zone, x.up_to_grams, x.letters, x.amount) for x in lines] == [
        ("domestic", 20, 2, 1.56),
        ("domestic", 50, 1, 1.25),
        ("europe", 20, 1, 1.85),
    ]
    assert postage_total(lines) == 4.66
    # Duplex: four pages are two sheets, the lighter step.
    duplex = postage_lines([printed("ES", 4)], home_country="ES", duplex=True, postage=POSTAGE)
    assert duplex[0].up_to_grams == 20
    text = postage_csv(lines).decode("utf-8-sig").splitlines()
    assert text[0] == "zone,up_to_grams,letters,price,amount"
    assert text[-1] == "total,,4,,4.66"


def test_without_a_price_there_is_no_total() -> None:
    lines = postage_lines([printed("US", 1)], home_country="ES", duplex=False, postage=POSTAGE)
    assert (lines[0].zone, lines[0].price, postage_total(lines)) == ("international", None, None)
