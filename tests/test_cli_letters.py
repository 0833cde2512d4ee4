"""End to end: a run with email and letter contacts produces both, once."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable

import pdfplumber
from conftest import Workspace

DAY = "2026-11-24"
ROWS = [
    # Birthdays on 26/27 Nov: all due on the 24th (days_before 3); a letter posted on the 24th
    # arrives on the 26th (delivery_days 2), by the birthday.
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c2,José,Núñez,,26/11/1985,Calle Mayor 18,28013,Madrid,ES,letter,,customer,",
    "c3,Begoña,Ibáñez,begona@example.com,27/11/1970,Calle de Serrano 45,28001,Madrid,ES,letter,,customer,",
    # Prefers letters but has no street: falls back to email.
    "c4,Íñigo,Ortiz,inigo@example.com,26/11/2000,,28004,Madrid,ES,letter,,customer,",
    # No street and no email: nothing can reach them.
    "c5,Luis,Gil,,26/11/1980,,28004,Madrid,ES,letter,,customer,",
]
CAMPAIGN = """\
    kind: birthday
    channel: preferred
    fallback: true
    days_before: 3
    email:
      subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
      text: birthday.txt.j2
    letter:
      template: letter.html.j2
    """
LETTER = "<p>¡Feliz cumpleaños, {{ contact.first_name }}!</p>\n<p class='closing'>Un abrazo,</p>\n"


def make(make_workspace: Callable[..., Workspace]) -> Workspace:
    return make_workspace(
        ROWS,
        campaigns={"birthday.yaml": CAMPAIGN},
        templates={"letter.html.j2": LETTER},
    )


def test_a_run_makes_emails_and_a_letter_batch_once(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make(make_workspace)
    result = ws.run("run", "--all", "--date", DAY, "--json")
    assert result.code == 0, result.err
    birthday = json.loads(result.out)["campaigns"][0]
    # Emails: c1 (prefers nothing), c4 (letter unusable, falls back). Letters: c2, c3.
    assert (birthday["emails"], birthday["letters"], birthday["pages"]) == (2, 2, 2)
    assert birthday["skipped"] == {"incomplete postal address": 1}  # c5
    assert sorted(p.name for p in ws.files("out/outbox")) == ["c1.eml", "c4.eml"]
    batch = ws.root / "out" / "letters" / DAY / "birthday.pdf"
    assert birthday["batch"] == f"out/letters/{DAY}/birthday.pdf"
    with pdfplumber.open(batch) as pdf:
        texts = [page.extract_text() for page in pdf.pages]
    # Sorted by postal code: 28001 (Begoña) before 28013 (José).
    assert "Begoña Ibáñez" in texts[0] and "José Núñez" in texts[1]
    with (batch.parent / "birthday.manifest.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["contact_id"], r["first_page"], r["pages"]) for r in rows] == [
        ("c3", "1", "1"),
        ("c2", "2", "1"),
    ]
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        letters = db.execute(
            "SELECT contact_id, status, artifact FROM messages WHERE channel = 'letter' "
            "AND status = 'rendered' ORDER BY contact_id"
        ).fetchall()
    assert letters == [
        ("c2", "rendered", f"out/letters/{DAY}/birthday.pdf"),
        ("c3", "rendered", f"out/letters/{DAY}/birthday.pdf"),
    ]

    again = ws.run("run", "--all", "--date", DAY, "--json")
    birthday = json.loads(again.out)["campaigns"][0]
    assert (birthday["emails"], birthday["letters"], birthday["already_done"]) == (0, 0, 4)
    assert sorted(p.name for p in (batch.parent).iterdir()) == [
        "birthday.manifest.csv",
        "birthday.pdf",
        "birthday.postage.csv",
    ]


def test_preview_writes_one_letter_pdf(make_workspace: Callable[..., Workspace]) -> None:
    ws = make(make_workspace)
    result = ws.run("preview", "birthday", "--contact", "c2", "--format", "pdf", "--date", DAY)
    assert result.code == 0, result.err
    target = ws.root / "out" / "preview" / "birthday-c2.pdf"
    assert f"wrote {target.relative_to(ws.root)}" in result.out or str(target) in result.out
    with pdfplumber.open(target) as pdf:
        assert len(pdf.pages) == 1
        text = pdf.pages[0].extract_text()
    assert "¡Feliz cumpleaños, José!" in text and "28013 Madrid" in text
    assert not (ws.root / "state").exists()  # a preview records nothing


def test_a_letter_that_fetches_from_outside_is_reported_and_others_print(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        ROWS[1:3],
        campaigns={"birthday.yaml": CAMPAIGN},
        templates={
            "letter.html.j2": (
                "{% if contact.id == 'c2' %}<img src='file:///etc/passwd'>{% endif %}" + LETTER
            )
        },
    )
    result = ws.run("run", "--all", "--date", DAY, "--json")
    assert result.code == 1  # one letter failed; the other was printed
    birthday = json.loads(result.out)["campaigns"][0]
    assert (birthday["letters"], birthday["failed"]) == (1, 1)
    problem = birthday["problems"][0]
    assert problem["contact_id"] == "c2" and "file:///etc/passwd" in problem["message"]


def test_an_address_the_owner_confirmed_gets_its_letter_and_validate_and_the_manifest_say_so(
    make_workspace: Callable[..., Workspace],
) -> None:
    promo = """\
        kind: promotion
        channel: letter
        start: 2026-11-24
        end: 2026-11-30
        letter:
          template: letter.html.j2
        """
    ws = make_workspace([], campaigns={"promo.yaml": promo}, templates={"letter.html.j2": LETTER})
    # Texarkana, Arkansas: the real ZIP code 75502, which Google's address data puts in Texas.
    ws.write(
        "contacts.csv",
        "id,first_name,last_name,street,postal_code,city,region,country,address_confirmed\n"
        "t1,Ruth,Miller,100 N State Line Ave,75502,Texarkana,AR,US,2026-11-20\n"
        "t2,Sam,Cole,102 N State Line Ave,75502,Texarkana,AR,US,\n",
    )
    checked = ws.run("validate", "--date", DAY)
    assert checked.code == 0, checked.err
    assert (
        "contacts.csv:2: postal_code: the address data does not know 75502 in AR, but the "
        "owner confirmed the address on 2026-11-20 (address_confirmed), so letters go to it"
    ) in checked.out
    assert "contacts.csv:3: postal_code (column 5): the postal code 75502 is not in AR" in (
        checked.out
    )
    result = ws.run("run", "--all", "--date", DAY, "--json")
    assert result.code == 0, result.err
    (campaign,) = json.loads(result.out)["campaigns"]
    assert campaign["letters"] == 1  # Ruth's; Sam's address waits for the owner's word
    manifest = ws.root / "out" / "letters" / DAY / "promo.manifest.csv"
    with manifest.open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["contact_id"], r["postal_code"], r["note"]) for r in rows] == [
        ("t1", "75502", "address confirmed by the owner")
    ]
    assert rows[0]["address"].endswith("Texarkana, AR 75502; ESTADOS UNIDOS")


def test_a_letter_that_does_not_fit_its_window_is_said_in_the_owners_spanish(
    make_workspace: Callable[..., Workspace],
) -> None:
    wide = "Avenida de la Ilustrísima Señora Doña Bernardina de Todos los Santos 123"
    ws = make_workspace(
        [f"c2,José,Núñez,,26/11/1985,{wide},28013,Madrid,ES,letter,,customer,"],
        config_extra="language: es\n",
        campaigns={"birthday.yaml": CAMPAIGN},
        templates={"letter.html.j2": LETTER},
    )
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 1, result.err
    said = result.out + result.err
    assert f"contacto c2: la línea de la dirección '{wide}' mide " in said
    assert " mm de ancho; la ventana din5008-b deja " in said
    assert "acorte la dirección (abrevie la calle o el nombre)" in said
    for english in ("the address line", "mm wide", "shorten the address"):
        assert english not in said, english


def test_a_confirmation_lapses_when_the_address_changes_until_the_owner_confirms_again(
    make_workspace: Callable[..., Workspace],
) -> None:
    def promo(start: str, end: str) -> str:
        return (
            f"kind: promotion\nchannel: letter\nstart: {start}\nend: {end}\n"
            "letter:\n  template: letter.html.j2\n"
        )

    ws = make_workspace(
        [],
        campaigns={
            "promo.yaml": promo("2026-11-24", "2026-11-30"),
            "winter.yaml": promo("2026-12-10", "2026-12-16"),
        },
        templates={"letter.html.j2": LETTER},
    )
    header = "id,first_name,last_name,street,postal_code,city,region,country,address_confirmed\n"
    # 75502 in Arkansas: a real ZIP code that Google's address data puts in Texas only.
    ws.write(
        "contacts.csv",
        header + "t1,Ruth,Miller,100 N State Line Ave,75502,Texarkana,AR,US,2026-11-20\n",
    )
    ledger = ws.root / "state" / "ledger.sqlite"

    def confirmations() -> list[tuple[str, str]]:
        with sqlite3.connect(ledger) as db:
            return db.execute("SELECT contact_id, confirmed FROM address_confirmations").fetchall()

    def letters(*args: str) -> int:
        result = ws.run("run", *args, "--json")
        assert result.code == 0, result.err
        return sum(c["letters"] for c in json.loads(result.out)["campaigns"])

    assert letters("--all", "--date", DAY) == 1
    assert confirmations() == [("t1", "2026-11-20")]
    # Ruth moves along the street; the owner's date stays: it confirmed the old address.
    moved = "t1,Ruth,Miller,300 N State Line Ave,75502,Texarkana,AR,US,"
    ws.write("contacts.csv", header + moved + "2026-11-20\n")
    checked = ws.run("validate", "--date", "2026-12-10")
    assert checked.code == 0, checked.err
    assert (
        "contacts.csv:2: address_confirmed: the owner confirmed the address on 2026-11-20 "
        "(address_confirmed), but the address has changed since, so the confirmation no longer "
        "applies and the postal code is checked again: the postal code 75502 is not in AR"
    ) in checked.out
    assert "write the day you confirmed it in address_confirmed" in checked.out
    assert "so letters go to it" not in checked.out
    assert letters("--all", "--date", "2026-12-10", "--dry-run") == 0
    held = ws.run("run", "--all", "--date", "2026-12-10", "--json")
    assert held.code == 0, held.err
    (_, winter) = json.loads(held.out)["campaigns"]
    assert (winter["letters"], winter["skipped"]) == (0, {"incomplete postal address": 1})
    assert confirmations() == [("t1", "2026-11-20")]  # kept: the first address it covered
    # In the owner's language.
    config = (ws.root / "config.yaml").read_text(encoding="utf-8")
    ws.write("config.yaml", config + "language: es\n")
    spanish = ws.run("validate", "--date", "2026-12-10").out
    assert "pero la dirección ha cambiado desde entonces" in spanish
    assert "escriba en address_confirmed el día en que la confirmó" in spanish
    assert "the address has changed since" not in spanish
    ws.write("config.yaml", config)
    # A new date confirms the new address: a rehearsal agrees and writes nothing.
    ws.write("contacts.csv", header + moved + "2026-12-11\n")
    assert letters("--all", "--date", "2026-12-11", "--dry-run") == 1
    assert confirmations() == [("t1", "2026-11-20")]
    assert "so letters go to it" in ws.run("validate", "--date", "2026-12-11").out
    assert letters("--all", "--date", "2026-12-11") == 1
    assert confirmations() == [("t1", "2026-12-11")]
