"""Households: one letter per postal address and occurrence, to every member not opted out."""

from __future__ import annotations

import csv
import json
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_letter import (
    DIN_B,
    OCCURRENCE,
    pdf_pages,
    renderer,
    visible,
    window_text,
    write_workspace,
)
from test_letter import person as letter_person

from outreach.contacts import Contact, ContactList
from outreach.deliver.outlets import CountOnlyOutlet
from outreach.deliver.printing import lay_out
from outreach.ledger import Ledger
from outreach.model.campaigns import Campaign, LetterSpec
from outreach.model.config import CadencePolicy, Letters, Sender, Settings
from outreach.pipeline.decide import RunDates
from outreach.pipeline.run import execute_run
from outreach.render.letter import HouseholdError, RenderedLetter, letter_pdf
from outreach.rules.blocks import postal_key
from outreach.rules.households import Household, envelope_name, family_name, greeting
from outreach.workspace import Workspace as RunWorkspace

DAY = date(2026, 11, 24)


def person(contact_id: str, first: str, last: str, **fields: object) -> Contact:
    values: dict[str, object] = {
        "id": contact_id,
        "line": 2,
        "first_name": first,
        "last_name": last,
        "street": "Calle Mayor 5",
        "postal_code": "28013",
        "city": "Madrid",
        **fields,
    }
    return Contact(**values)  # type: ignore[arg-type]


CARMEN = person("c1", "Carmen", "Ruiz")
LUIS = person("c2", "Luis", "Ruiz")
ANA = person("c3", "Ana", "Gómez")


def test_the_greeting_lists_first_names_in_the_language() -> None:
    assert greeting([CARMEN, LUIS], locale="es") == "Carmen y Luis"
    assert greeting([CARMEN, LUIS], locale="en") == "Carmen and Luis"
    assert greeting([ANA, CARMEN, LUIS], locale="es") == "Ana, Carmen y Luis"
    assert greeting([CARMEN], locale="es") == "Carmen"


def test_one_surname_makes_a_family_and_two_a_list_of_names() -> None:
    assert family_name([CARMEN, LUIS], locale="es") == "Familia Ruiz"
    assert family_name([CARMEN, LUIS], locale="en_GB") == "The Ruiz family"
    assert family_name([CARMEN, ANA], locale="es") is None
    assert family_name([CARMEN], locale="es") is None
    assert envelope_name([CARMEN, LUIS], locale="es") == "Familia Ruiz"
    assert envelope_name([CARMEN, ANA], locale="es") == "Carmen Ruiz y Ana Gómez"


# --- the property: one letter per address, nobody dropped ------------------------------------

STREETS = ["Calle Mayor 5", "calle mayor, 5", "CALLE  MAYOR 5", "Calle Mayor 7", "Gran Vía 1"]
TOWNS = [("28013", "Madrid"), ("28013", "madrid"), ("08001", "Barcelona")]


@st.composite
def households(draw: st.DrawFn) -> list[Contact]:
    contacts = []
    for n in range(draw(st.integers(1, 12))):
        postal_code, city = draw(st.sampled_from(TOWNS))
        contacts.append(
            Contact(
                id=f"k{n:02d}",
                line=n + 2,
                first_name=f"N{n}",
                last_name=draw(st.sampled_from(["Ruiz", "Gómez"])),
                street=draw(st.sampled_from(STREETS)),
                postal_code=postal_code,
                city=city,
                opt_out=draw(st.sampled_from([frozenset(), frozenset(), frozenset({"letter"})])),
            )
        )
    return contacts


def run_letters(contacts: list[Contact], *, essential: bool = False) -> dict[str, object]:
    """One real run (real ledger) of a letter promotion: the summary and the ledger rows."""
    campaign = Campaign(
        name="promo",
        kind="promotion",
        path=Path("campaigns/promo.yaml"),
        channel="letter",
        start=DAY,
        end=date(2026, 11, 30),
        essential=essential,
        letter=LetterSpec(template="l.html.j2"),
    )
    workspace = RunWorkspace(
        settings=Settings(
            root=Path("/nonexistent"),
            sender=Sender(name="Casa Lucía", email="hola@casalucia.example"),
            cadence=CadencePolicy(min_gap_days=0, max_messages=10, per_days=30),
            letters=Letters(delivery_days=0),
        ),
        contacts=ContactList(
            path=Path("contacts.csv"), contacts=tuple(contacts), problems=(), rows=len(contacts)
        ),
        campaigns=(campaign,),
    )
    now = datetime.combine(DAY, time(9), tzinfo=ZoneInfo("Europe/Madrid"))
    with tempfile.TemporaryDirectory() as folder, Ledger.open(Path(folder) / "l.sqlite") as ledger:
        summary = execute_run(
            workspace=workspace,
            store=ledger,
            outlet=CountOnlyOutlet(),
            dates=RunDates(DAY),
            clock=lambda: now,
        )
        rows = ledger.messages()
    (promo,) = summary.campaigns
    return {"summary": promo, "rows": rows}


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(households())
def test_households_never_send_two_letters_to_one_address_nor_drop_a_member(
    contacts: list[Contact],
) -> None:
    result = run_letters(contacts)
    summary, rows = result["summary"], result["rows"]
    wanting = [c for c in contacts if "letter" not in c.opt_out]
    addresses = {postal_key(c) for c in wanting}
    assert summary.letters == len(addresses)  # type: ignore[attr-defined]
    assert summary.merged == len(wanting) - len(addresses)  # type: ignore[attr-defined]
    made = {row.contact_id for row in rows if row.status == "rendered"}  # type: ignore[attr-defined]
    assert made == {c.id for c in wanting}  # every member who wants letters, and no one else


def test_essential_letters_go_one_per_contact() -> None:
    result = run_letters([CARMEN, LUIS], essential=True)
    assert (result["summary"].letters, result["summary"].merged) == (2, 0)  # type: ignore[attr-defined]


# --- end to end: one letter, a real PDF, the manifest and the ledger -------------------------

CAMPAIGN = """\
    kind: promotion
    channel: letter
    start: 2026-11-24
    end: 2026-11-30
    letter:
      template: letter.html.j2
    """
LETTER = "<p>Queridos {{ household.greeting }}:</p><p>Os esperamos en Casa Lucía.</p>\n"
ROWS = [
    "c1,Carmen,Ruiz,,,Calle Mayor 5,28013,Madrid,ES,letter,,customer,",
    'c2,Luis,Ruiz,,,"calle mayor, 5",28013,madrid,ES,letter,,customer,',
    "c3,Ana,Ruiz,,,Calle Mayor 5,28013,Madrid,ES,letter,,customer,letter",  # opted out
    "c4,Eva,Gil,,,Gran Vía 1,28013,Madrid,ES,letter,,customer,",
]


def test_one_letter_greets_the_household_in_the_window_and_the_ledger_points_every_member_to_it(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        ROWS,
        campaigns={"promo.yaml": CAMPAIGN},
        templates={"letter.html.j2": LETTER},
        config_extra="letters:\n  postage:\n    prices: {domestic: {20: 0.78}}\n",
    )
    result = ws.run("run", "--all", "--date", DAY.isoformat(), "--json")
    assert result.code == 0, result.err
    (promo,) = json.loads(result.out)["campaigns"]
    assert (promo["letters"], promo["merged"], promo["pages"]) == (2, 1, 2)
    batch = ws.root / promo["batch"]
    pages = pdf_pages(batch.read_bytes())
    household = next(p for p in pages if "Carmen y Luis" in p["text"])
    assert "Queridos Carmen y Luis:" in household["text"]
    assert "Ana" not in household["text"]  # opted out: not greeted, not addressed
    window = window_text(household, DIN_B)
    assert "FamiliaRuiz" in window and "CalleMayor5" in window and "28013Madrid" in window
    with (batch.parent / "promo.manifest.csv").open(encoding="utf-8-sig") as handle:
        covers = {row["contact_id"]: row["covers"] for row in csv.DictReader(handle)}
    assert covers == {"c1": "c1;c2", "c4": "c4"}
    # The postage list: two domestic one-sheet letters (the household's and Eva's).
    assert promo["postage"] == {
        "lines": [
            {"zone": "domestic", "up_to_grams": 20, "letters": 2, "price": 0.78, "amount": 1.56}
        ],
        "total": 1.56,
    }
    postage = (batch.parent / "promo.postage.csv").read_text(encoding="utf-8-sig")
    assert postage.splitlines() == [
        "zone,up_to_grams,letters,price,amount",
        "domestic,20,2,0.78,1.56",
        "total,,2,,1.56",
    ]
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        made = db.execute(
            "SELECT contact_id, status, artifact FROM messages ORDER BY contact_id"
        ).fetchall()
    artifact = promo["batch"]
    assert [row for row in made if row[1] == "rendered"] == [
        ("c1", "rendered", artifact),
        ("c2", "rendered", artifact),
        ("c4", "rendered", artifact),
    ]


def test_validate_says_letters_saved_letters_too_late_and_bad_postal_codes(
    make_workspace: Callable[..., Workspace],
) -> None:
    birthday = """\
        kind: birthday
        channel: letter
        days_before: 3
        letter:
          template: letter.html.j2
        """
    ws = make_workspace(
        [
            # Twins at one address: one letter. A birthday tomorrow: too late for the post.
            "c1,Carmen,Ruiz,,26/11/1990,Calle Mayor 5,28013,Madrid,ES,letter,,customer,",
            "c2,Luis,Ruiz,,26/11/1990,Calle Mayor 5,28013,Madrid,ES,letter,,customer,",
            "c3,Eva,Gil,,25/11/1980,Gran Vía 1,28013,Madrid,ES,letter,,customer,",
            "c4,Ana,Sanz,ana@example.com,27/11/1980,Calle Pez 2,8001,Barcelona,ES,letter,,customer,",
        ],
        campaigns={"birthday.yaml": birthday},
        templates={"letter.html.j2": LETTER},
    )
    result = ws.run("validate", "--date", DAY.isoformat())
    assert result.code == 0, result.err
    out = result.out
    assert "contacts.csv:5: postal_code (column 7): '8001' is not a postal code of ES" in out
    # validate covers a year: this birthday and next year's, one letter saved each time.
    assert "households: 2 letter(s) saved" in out, out
    assert "1 letter(s) could not arrive in time (letters.delivery_days 2): 0 go by email" in out


# --- households of any size: the name forms, read back from real PDFs -------------------------

LONG_NAMES = [
    ("Carmen", "Ruiz de la Peña"),
    ("Luis", "Gómez Prieto"),
    ("Ana", "Sanz Moreno"),
    ("Pedro", "Martín Vidal"),
    ("Lucía", "Navarro Gil"),
    ("Jorge", "Torres Ramos"),
    ("Marta", "Iglesias Rey"),
    ("Pablo", "Castro León"),
]
SIZES = {
    # Two short names: the merged line fits.
    2: [("Carmen", "Ruiz"), ("Ana", "Gómez")],
    # The household: 114.9 mm merged; two of three are Ruiz de la Peña.
    3: [("Carmen", "Ruiz de la Peña"), ("Luis", "Ruiz de la Peña"), ("Ana", "Gómez Prieto")],
    # No surname most share, and too long for one line: two lines.
    5: [("Eva", "Ruiz"), ("Pau", "Ruiz"), ("Ana", "Gómez"), ("Leo", "Gómez"), ("Sol", "Sanz")],
    # Eight surnames: no form fits the window, so eight letters.
    8: LONG_NAMES,
}
NAME_LINES = {
    ("es", 2): ["Carmen Ruiz y Ana Gómez"],
    ("es", 3): ["Familia Ruiz de la Peña"],
    ("es", 5): ["Eva Ruiz, Pau Ruiz, Ana Gómez", "Leo Gómez y Sol Sanz"],
    ("en", 2): ["Carmen Ruiz and Ana Gómez"],
    ("en", 3): ["The Ruiz de la Peña family"],
    ("en", 5): ["Eva Ruiz, Pau Ruiz, Ana Gómez", "Leo Gómez, and Sol Sanz"],
}


@pytest.mark.parametrize("language", ["es", "en"])
def test_households_of_2_3_5_and_8_at_one_address_always_get_letters_that_print(
    tmp_path: Path, language: str
) -> None:
    settings = write_workspace(tmp_path, body="<p>{{ household.greeting }}: hola.</p>")
    english = tmp_path / "templates" / "carta.en.html.j2"
    english.write_text("<p>Dear {{ household.greeting }}, hello.</p>", encoding="utf-8")
    render = renderer(settings)
    printed: list[RenderedLetter] = []
    for size, names in SIZES.items():
        members = tuple(
            letter_person(
                id=f"h{size}-{n}", title=None, first_name=first, last_name=last, locale=language
            )
            for n, (first, last) in enumerate(names)
        )
        household = Household(members)
        if size == 8:
            with pytest.raises(HouseholdError, match="8 people"):
                render.render(members[0], OCCURRENCE, household=household)
            # What the run does then: a letter each (test_a_household_too_large_...).
            printed += [render.render(member, OCCURRENCE) for member in members]
            continue
        letter = render.render(members[0], OCCURRENCE, household=household)
        expected = NAME_LINES[(language, size)]
        assert list(letter.address_lines[: len(expected)]) == expected
        assert letter.covers == household.ids
        printed.append(letter)
    # Every letter lays out with its names inside the window (letter_pdf raises if not): the
    # three households' letters, read back, and the eight letters of the largest one.
    assert lay_out(printed[3:], duplex=False, workers=1) == [None] * 8
    pages = [pdf_pages(letter_pdf(letter))[0] for letter in printed[:3]]
    for page, letter in zip(pages, printed[:3], strict=True):
        assert window_text(page, DIN_B).endswith(visible(letter.address_lines))
    # The greeting still names everyone, in the letter's language.
    assert (
        "Eva, Pau, Ana, Leo y Sol: hola."
        if language == "es"
        else "Dear Eva, Pau, Ana, Leo, and Sol, hello."
    ) in " ".join(pages[2]["text"].split())


def test_a_household_too_large_for_the_window_gets_one_letter_each_on_a_run(
    make_workspace: Callable[..., Workspace],
) -> None:
    rows = [
        f"p{n},{first},{last},,,Calle Mayor 5,28013,Madrid,ES,letter,,customer,"
        for n, (first, last) in enumerate(LONG_NAMES)
    ]
    ws = make_workspace(
        rows,
        campaigns={"promo.yaml": CAMPAIGN},
        templates={"letter.html.j2": LETTER},
    )
    result = ws.run("run", "--all", "--date", DAY.isoformat(), "--json")
    assert result.code == 0, result.err
    (promo,) = json.loads(result.out)["campaigns"]
    assert (promo["letters"], promo["merged"], promo["failed"]) == (8, 0, 0)
    pages = pdf_pages((ws.root / promo["batch"]).read_bytes())
    windows = [window_text(page, DIN_B) for page in pages]
    for first, last in LONG_NAMES:
        address = f"{first}{''.join(last.split())}CalleMayor528013Madrid"
        assert sum(window.endswith(address) for window in windows) == 1
