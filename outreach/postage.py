"""The postage list of a letter batch: its letters by destination zone and weight step, and
with prices in config, what the post will cost.

A letter weighs its sheets × `letters.postage.sheet_grams` plus the envelope; it goes in the
first weight step that holds it. Its zone is `domestic` (the sender's country), the zone of
`letters.postage.zones` that lists its country, or `international`.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from outreach.deliver.printing import PrintedLetter
from outreach.model.config import Postage

DOMESTIC = "domestic"
INTERNATIONAL = "international"
COLUMNS = ("zone", "up_to_grams", "letters", "price", "amount")


@dataclass(frozen=True, slots=True)
class PostageLine:
    """Letters of one zone and weight step, and their price (None: no price in config)."""

    zone: str
    up_to_grams: int | None  # None: heavier than the last step
    letters: int
    price: float | None

    @property
    def amount(self) -> float | None:
        """What these letters cost, or None without a price."""
        return None if self.price is None else round(self.price * self.letters, 2)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "zone": self.zone,
            "up_to_grams": self.up_to_grams,
            "letters": self.letters,
            "price": self.price,
            "amount": self.amount,
        }


def zone_of(country: str, *, home_country: str, postage: Postage) -> str:
    """The postage zone of a letter to `country`."""
    country = country.upper()
    if country == home_country.upper():
        return DOMESTIC
    for zone, countries in postage.zones.items():
        if country in countries:
            return zone
    return INTERNATIONAL


def weight_step(sheets: int, *, postage: Postage) -> int | None:
    """The first weight step (grams) that holds a letter of `sheets` sheets; None past all."""
    grams = sheets * postage.sheet_grams + postage.envelope_grams
    return next((step for step in sorted(postage.steps) if grams <= step), None)


def postage_lines(
    letters: Sequence[PrintedLetter], *, home_country: str, duplex: bool, postage: Postage
) -> list[PostageLine]:
    """The batch's letters counted by zone and weight step, domestic first."""
    counts: Counter[tuple[str, int | None]] = Counter()
    for letter in letters:
        sheets = math.ceil(letter.pages / 2) if duplex else letter.pages
        zone = zone_of(letter.country, home_country=home_country, postage=postage)
        counts[(zone, weight_step(sheets, postage=postage))] += 1
    zones = [DOMESTIC, *postage.zones, INTERNATIONAL]
    lines = []
    for (zone, step), count in sorted(
        counts.items(), key=lambda item: (zones.index(item[0][0]), item[0][1] or math.inf)
    ):
        price = postage.prices.get(zone, {}).get(step) if step is not None else None
        lines.append(PostageLine(zone, step, count, price))
    return lines


def postage_total(lines: Sequence[PostageLine]) -> float | None:
    """The whole batch's postage, or None when a line has no price."""
    amounts = [line.amount for line in lines]
    if not amounts or any(a is None for a in amounts):
        return None
    return round(sum(a for a in amounts if a is not None), 2)


def postage_csv(lines: Sequence[PostageLine]) -> bytes:
    """The postage list as CSV (UTF-8 with a BOM, for spreadsheets), a total row last."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)

    def money(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    for line in lines:
        step = "" if line.up_to_grams is None else str(line.up_to_grams)
        writer.writerow([line.zone, step, line.letters, money(line.price), money(line.amount)])
    total = postage_total(lines)
    writer.writerow(["total", "", sum(line.letters for line in lines), "", money(total)])
    return buffer.getvalue().encode("utf-8-sig")
