"""Contacts straight from the spreadsheet: .xlsx and .ods workbooks written by real
spreadsheet libraries, Excel's `sep=` line, column names of the user's and of Google Contacts'
and Outlook's CSV exports, and postal codes checked against Google's address data."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from conftest import Workspace
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P

from outreach.contacts import Contact, ContactList, iter_contacts, load_contacts
from outreach.contacts.sheets import CELL_LIMIT, column_letters, read_sheet
from outreach.model.config import ContactsSettings
from outreach.model.errors import ContactsError
from outreach.rules.postal import address_gaps

ES = ContactsSettings(date_format="DMY", default_country="ES")
HEADER = ["id", "first_name", "last_name", "title", "email", "birthday", "postal_code", "city"]


def xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """A workbook written by openpyxl, one sheet per entry, in order."""
    book = openpyxl.Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def ods(path: Path, name: str, rows: list[list[object]]) -> Path:
    """An OpenDocument spreadsheet written by odfpy, with typed cells (dates, numbers)."""
    document = OpenDocumentSpreadsheet()
    table = Table(name=name)
    for row in rows:
        table_row = TableRow()
        for value in row:
            if isinstance(value, date):
                cell = TableCell(valuetype="date", datevalue=value.isoformat())
                text = value.isoformat()
            elif isinstance(value, int | float):
                cell = TableCell(valuetype="float", value=value)
                text = str(value)
            else:
                cell = TableCell(valuetype="string")
                text = str(value)
            cell.addElement(P(text=text))
            table_row.addElement(cell)
        table.addElement(table_row)
    document.spreadsheet.addElement(table)
    document.save(str(path))
    return path


def load(path: Path, settings: ContactsSettings = ES) -> ContactList:
    return load_contacts(path, settings=settings, default_locale="es")


def by_id(contacts: ContactList) -> dict[str, Contact]:
    return {contact.id: contact for contact in contacts.contacts}


def test_column_letters() -> None:
    assert [column_letters(n) for n in (0, 4, 25, 26, 27, 701, 702)] == [
        "A", "E", "Z", "AA", "AB", "ZZ", "AAA",
    ]  # fmt: skip


def test_an_xlsx_sheet_reads_dates_and_numbers_as_typed_and_names_sheet_and_column(
    tmp_path: Path,
) -> None:
    path = xlsx(
        tmp_path / "contacts.xlsx",
        {
            "Clientes": [
                HEADER,
                ["c1", "Ana", "Gómez", "", "ana@example.com", date(1990, 11, 24), 28001, "Madrid"],
                ["c2", "Bea", "Ruiz", "", "bea@@example.com", "03/04/1985", "08001", "Barcelona"],
                [3, "Carmen", "Ortiz", "", "carmen@example.com", None, 8001, "Barcelona"],
            ]
        },
    )
    contacts = load(path)
    people = by_id(contacts)
    assert people["c1"].birthday == date(1990, 11, 24)  # a date cell, whatever date_format says
    assert people["c1"].postal_code == "28001"  # a number cell, written without ".0"
    assert people["c2"].birthday == date(1985, 4, 3)  # a text cell, read as DMY
    assert people["c2"].postal_code == "08001"
    assert people["3"].id == "3"  # a number id is its digits
    problems = [str(p) for p in contacts.problems]
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}:Clientes:3: email (column E): 'bea@@example.com'")
    # 08001 typed as a number became 8001: said, not guessed; the email still goes.
    assert problems[1].startswith(f"{path}:Clientes:4: postal_code (column G): '8001'")
    assert "leading zeros" in problems[1]
    assert people["3"].email == "carmen@example.com"
    assert address_gaps(people["3"]) == ["postal_code"]


def test_the_sheet_can_be_chosen_and_a_missing_one_is_named(tmp_path: Path) -> None:
    path = xlsx(
        tmp_path / "libro.xlsm",
        {"Notas": [["nothing here"]], "Clientes": [HEADER, ["c1", "Ana"]]},
    )
    chosen = load(path, ContactsSettings(sheet="Clientes"))
    assert [c.id for c in chosen.contacts] == ["c1"]
    with pytest.raises(ContactsError) as caught:
        load(path, ContactsSettings(sheet="Hoja1"))
    assert "no sheet 'Hoja1' (its sheets: Notas, Clientes)" in str(caught.value)
    with pytest.raises(ContactsError, match="there is no id column"):
        load(path)  # the first sheet has no header with an id


def test_a_sheet_starting_below_and_right_of_a1_keeps_its_rows_and_columns(
    tmp_path: Path,
) -> None:
    path = xlsx(
        tmp_path / "contacts.xlsx",
        {"Hoja1": [[], [], [None, *HEADER], [None, "c1", "Ana", "", "", "no-at-sign"]]},
    )
    problem = load(path).problems[0]
    assert (problem.line, problem.column_label) == (4, "F")
    assert str(problem).startswith(f"{path}:Hoja1:4: email (column F)")


def test_an_ods_sheet_reads_typed_cells(tmp_path: Path) -> None:
    path = ods(
        tmp_path / "contacts.ods",
        "Clientes",
        [
            HEADER,
            ["c1", "Ana", "Gómez", "", "ana@example.com", date(1990, 11, 24), 28001, "Madrid"],
        ],
    )
    (contact,) = load(path).contacts
    assert (contact.birthday, contact.postal_code, contact.city) == (
        date(1990, 11, 24), "28001", "Madrid",
    )  # fmt: skip
    stream = iter_contacts(path, settings=ES, default_locale="es")
    assert [c.id for c in stream] == ["c1"]
    assert stream.rows == 1


def test_a_file_that_is_no_workbook_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "contacts.xlsx"
    path.write_text("id,email\nc1,a@example.com\n", encoding="utf-8")
    with pytest.raises(ContactsError) as caught:
        load(path)
    assert "cannot be read as a .xlsx workbook" in str(caught.value)
    assert caught.value.hint


def test_an_excel_sep_line_names_the_delimiter_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "sep=;\nid;first_name;email\nc1;Ana;ana@example.com\nc2;Bea;bea@@example.com\n",
        encoding="utf-8",
    )
    contacts = load(path)
    assert [c.first_name for c in contacts.contacts] == ["Ana", "Bea"]
    assert [p.line for p in contacts.problems] == [4]


def test_the_users_column_names_map_to_outreachs(tmp_path: Path) -> None:
    path = tmp_path / "clientes.csv"
    path.write_text(
        "Código;Nombre;Apellidos;Correo electrónico;Cumpleaños\n"
        "c1;Ana;Gómez;ana@example.com;24/11/1990\n",
        encoding="utf-8",
    )
    settings = ContactsSettings(
        columns={
            "Código": "id",
            "Nombre": "first_name",
            "Apellidos": "last_name",
            "Correo electrónico": "email",
            "Cumpleaños": "birthday",
        }
    )
    (contact,) = load(path, settings).contacts
    assert (contact.id, contact.last_name, contact.email, contact.birthday) == (
        "c1", "Gómez", "ana@example.com", date(1990, 11, 24),
    )  # fmt: skip


def test_a_mapping_to_an_unknown_column_is_refused() -> None:
    with pytest.raises(ValueError, match="'Correo' is mapped to 'mail'"):
        ContactsSettings(columns={"Correo": "mail"})


# The header of Google Contacts' "Google CSV" export (2024), as written.
GOOGLE_HEADER = (
    "First Name,Middle Name,Last Name,Phonetic First Name,Phonetic Middle Name,"
    "Phonetic Last Name,Name Prefix,Name Suffix,Nickname,File As,Organization Name,"
    "Organization Title,Organization Department,Birthday,Notes,Photo,Labels,"
    "E-mail 1 - Label,E-mail 1 - Value,Phone 1 - Label,Phone 1 - Value,Address 1 - Label,"
    "Address 1 - Formatted,Address 1 - Street,Address 1 - City,Address 1 - PO Box,"
    "Address 1 - Region,Address 1 - Postal Code,Address 1 - Country,"
    "Address 1 - Extended Address"
)
# Outlook's "Comma Separated Values" export (English Outlook), first columns as written.
OUTLOOK_HEADER = (
    "First Name,Middle Name,Last Name,Title,Suffix,Nickname,Given Yomi,Surname Yomi,"
    "E-mail Address,E-mail 2 Address,E-mail 3 Address,Home Phone,Home Phone 2,Business Phone,"
    "Business Phone 2,Mobile Phone,Car Phone,Other Phone,Primary Phone,Pager,Business Fax,"
    "Home Fax,Other Fax,Company Main Phone,Callback,Radio Phone,Telex,TTY/TDD Phone,IMAddress,"
    "Job Title,Department,Company,Office Location,Manager's Name,Assistant's Name,"
    "Assistant's Phone,Company Yomi,Business Street,Business City,Business State,"
    "Business Postal Code,Business Country/Region,Home Street,Home City,Home State,"
    "Home Postal Code,Home Country/Region,Other Street,Other City,Other State,"
    "Other Postal Code,Other Country/Region,Personal Web Page,Spouse,Schools,Hobby,Location,"
    "Web Page,Birthday,Anniversary,Notes"
)


def test_a_google_contacts_export_is_read_with_its_preset(tmp_path: Path) -> None:
    width = len(GOOGLE_HEADER.split(","))
    row = [""] * width
    at = {name: n for n, name in enumerate(GOOGLE_HEADER.split(","))}
    for name, value in {
        "First Name": "Ana",
        "Last Name": "Gómez",
        "Birthday": "1990-11-24",
        "Labels": "* myContacts ::: Clientes",
        "E-mail 1 - Value": "Ana@Example.com",
        "Address 1 - Street": "Calle Mayor 5",
        "Address 1 - City": "Madrid",
        "Address 1 - Postal Code": "28013",
        "Address 1 - Country": "Spain",
    }.items():
        row[at[name]] = value
    path = tmp_path / "contacts.csv"
    path.write_text(GOOGLE_HEADER + "\n" + ",".join(row) + "\n", encoding="utf-8")
    contacts = load(path, ContactsSettings(preset="google"))
    assert contacts.problems == ()
    (ana,) = contacts.contacts
    assert ana.id.startswith("e-")  # no id column: made from the email, stable across exports
    assert (ana.first_name, ana.email, ana.birthday, ana.country) == (
        "Ana", "Ana@example.com", date(1990, 11, 24), "ES",
    )  # fmt: skip
    assert (ana.street, ana.postal_code, ana.city) == ("Calle Mayor 5", "28013", "Madrid")
    assert ana.tags == {"mycontacts", "clientes"}
    again = load(path, ContactsSettings(preset="google"))
    assert again.contacts[0].id == ana.id


def test_an_outlook_export_is_read_with_its_preset(tmp_path: Path) -> None:
    names = OUTLOOK_HEADER.split(",")
    values = {
        "First Name": "Luis",
        "Last Name": "Ruiz",
        "E-mail Address": "luis@example.com",
        "Home Street": "Rue de Rivoli 10",
        "Home City": "Paris",
        "Home Postal Code": "75001",
        "Home Country/Region": "France",
        "Business City": "Lyon",  # the work address is not the letter's
    }
    row = [values.get(name, "") for name in names]
    path = tmp_path / "contacts.csv"
    path.write_text(OUTLOOK_HEADER + "\n" + ",".join(row) + "\n", encoding="utf-8")
    contacts = load(path, ContactsSettings(preset="outlook"))
    assert contacts.problems == ()
    (luis,) = contacts.contacts
    assert (luis.last_name, luis.city, luis.postal_code, luis.country) == (
        "Ruiz", "Paris", "75001", "FR",
    )  # fmt: skip
    assert luis.extra["business_city"] == "Lyon"


@pytest.mark.parametrize(
    ("cells", "field", "words"),
    [
        ("8001,Barcelona,ES,", "postal_code", "is not a postal code of ES"),
        ("28001,Madrid,ES,Barcelona", "postal_code", "is not in Barcelona (codes there start"),
        ("1234,Paris,FR,", "postal_code", "is not a postal code of FR"),
        ("90210,Beverly Hills,US,NY", "postal_code", "is not in NY"),
    ],
)
def test_a_postal_code_not_of_its_country_or_region_is_a_row_problem_for_letters_only(
    tmp_path: Path, cells: str, field: str, words: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "id,first_name,email,street,postal_code,city,country,region\n"
        f"c1,Ana,ana@example.com,Calle 1,{cells}\n",
        encoding="utf-8",
    )
    contacts = load(path)
    (problem,) = contacts.problems
    assert (problem.line, problem.field, problem.column) == (2, field, 5)
    assert words in problem.message
    (ana,) = contacts.contacts
    assert ana.email == "ana@example.com"  # the email is unaffected
    assert address_gaps(ana) == ["postal_code"]


def test_good_postal_codes_pass(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "id,street,postal_code,city,country,region\n"
        "c1,Calle 1,08001,Barcelona,ES,Barcelona\n"
        "c2,Calle 1,08001,Barcelona,ES,Provincia Inventada\n"  # an unknown region is not judged
        "c3,1 Main St,10118,New York,US,NY\n"
        "c4,10 Downing St,sw1a 2aa,London,GB,\n"
        "c5,Via 1,00184,Roma,IT,RM\n",
        encoding="utf-8",
    )
    contacts = load(path)
    assert contacts.problems == ()
    assert all(address_gaps(c) == [] for c in contacts.contacts)


def test_validate_reads_a_workbook_and_names_sheet_row_and_column(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace([], config_extra="paths: {contacts: clientes.xlsx}\n")
    header = ["id", "first_name", "last_name", "email", "birthday", "street", "postal_code"]
    xlsx(
        ws.root / "clientes.xlsx",
        {
            "Clientes": [
                [*header, "city", "country"],
                ["c1", "Ana", "Gómez", "ana@example.com", date(1990, 11, 26), "Calle 1", 28001],
                ["c2", "Bea", "Ruiz", "bea@@example.com", date(1985, 11, 27)],
            ]
        },
    )
    result = ws.run("validate", "--date", "2026-11-24")
    assert result.code == 0, result.err
    assert "clientes.xlsx:Clientes:3: email (column D): 'bea@@example.com'" in result.out
    assert "2 rows, 2 usable, 1 problem(s)" in result.out


STORED = Path(__file__).parent / "data" / "sheets"  # saved by LibreOffice Calc: see its README


def test_a_workbook_saved_by_a_spreadsheet_program_reads_as_typed() -> None:
    book = load(STORED / "clientes.xlsx")
    people = by_id(book)
    assert [c.id for c in book.contacts] == ["c001", "c002", "c003", "c004"]
    assert [str(p) for p in book.problems] == []
    assert people["c001"].birthday == date(1984, 3, 7)  # a date cell
    assert (people["c001"].last_name, people["c003"].first_name) == ("Fernández Ruiz", "Émilie")
    assert people["c002"].postal_code == "08013"  # a text column keeps its leading zero
    assert people["c004"].postal_code == "SW1A 2AA"
    assert people["c002"].preferred_channel == "letter"


def test_postal_codes_a_spreadsheet_program_made_numbers_are_said_not_guessed() -> None:
    path = STORED / "clientes.ods"
    book = load(path)
    people = by_id(book)
    assert people["c001"].postal_code == "28014"  # a number cell, written without ".0"
    assert people["c003"].postal_code == "75002"
    problems = [str(p) for p in book.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:clientes:3: postal_code (column H): '8013'")
    assert "leading zeros" in problems[0]
    assert people["c002"].email == "jordi.puig@example.com"  # the email is unaffected


# -- hostile workbooks: read with the CSV reader's limits, nothing silently misread ---------


def test_a_value_far_out_costs_what_its_cells_cost_never_the_claimed_size(
    tmp_path: Path,
) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    sheet.append(["c1", "Ana"])
    sheet["XFD1048576"] = "far"  # the sheet now claims A1:XFD1048576 (17 billion cells)
    sheet["Z1048575"] = "also far"
    path = tmp_path / "far.xlsx"
    book.save(path)
    assert path.stat().st_size < 10_000
    rows = read_sheet(path, sheet=None)
    assert [number for number, _ in rows.rows] == [1, 2, 1048575, 1048576]
    assert rows.rows[-1][1] == {16383: "far"}
    contacts = load(path)
    assert [c.id for c in contacts.contacts] == ["c1"]
    lines = sorted({p.line for p in contacts.problems})
    assert lines == [1048575, 1048576], [str(p) for p in contacts.problems]


def test_a_cell_over_128_kb_is_a_row_problem_naming_the_cell(tmp_path: Path) -> None:
    made = xlsx(
        tmp_path / "made.xlsx",
        {"Hoja1": [HEADER, ["c1", "Ana"], ["c2", "LONG"], ["c3", "Eva"]]},
    )
    # openpyxl cuts a value at Excel's 32,767 characters: the long cell is written into its XML.
    path = tmp_path / "big.xlsx"
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b">LONG<", b">" + b"x" * (CELL_LIMIT + 1) + b"<")
            out.writestr(item, data)
    assert path.stat().st_size < 10_000
    contacts = load(path)
    assert [c.id for c in contacts.contacts] == ["c1", "c3"]
    (problem,) = contacts.problems
    assert problem.line == 3 and "cell B3" in problem.message and "128 KB" in problem.message
    assert len(str(problem)) < 500  # the cell itself is not repeated


def test_past_the_row_cap_the_sheet_is_refused(tmp_path: Path) -> None:
    path = xlsx(tmp_path / "long.xlsx", {"Hoja1": [HEADER, *[[f"c{n}"] for n in range(5)]]})
    assert len(read_sheet(path, sheet=None, max_rows=6).rows) == 6
    with pytest.raises(ContactsError, match="more than 5 rows"):
        read_sheet(path, sheet=None, max_rows=5)


def test_the_first_visible_sheet_is_read_and_other_visible_ones_are_noticed(
    tmp_path: Path,
) -> None:
    book = openpyxl.Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    hidden = book.create_sheet("Viejos")
    hidden.append(HEADER)
    hidden.append(["old1", "Old"])
    hidden.sheet_state = "hidden"
    shown = book.create_sheet("Clientes")
    shown.append(HEADER)
    shown.append(["c1", "Ana"])
    book.create_sheet("Notas").append(["apuntes"])
    path = tmp_path / "libro.xlsx"
    book.save(path)
    contacts = load(path)
    assert [c.id for c in contacts.contacts] == ["c1"]  # never the hidden first sheet
    (notice,) = [str(p) for p in contacts.problems]
    assert "'Clientes' is read, the first visible one" in notice and "'Notas'" in notice
    assert "contacts.sheet" in notice
    named = load(path, ContactsSettings(sheet="Viejos"))  # named: read even when hidden
    assert [c.id for c in named.contacts] == ["old1"] and not named.problems
    hidden.sheet_state = "visible"
    shown.sheet_state = "hidden"
    book["Notas"].sheet_state = "hidden"
    book.save(path)
    alone = load(path)
    assert [c.id for c in alone.contacts] == ["old1"] and not alone.problems


def test_formula_errors_and_uncalculated_formulas_are_row_problems_naming_the_cell(
    tmp_path: Path,
) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    sheet.append(["c1", "Ana"])
    sheet.append(["c2", "#DIV/0!"])  # openpyxl writes an error cell (t="e")
    sheet.append(["c3", "Eva", "#N/A"])
    sheet.append(["c4", '=CONCAT("Lu","cía")'])  # a formula, never calculated: no value stored
    sheet.append(["c5", "Pia", "Sol", "", "pia@example.com", date(1990, 11, 24), 28001, True])
    sheet.append(["c6", "=1+1"])
    sheet.append(["c7", "=2*3"])
    made = tmp_path / "made.xlsx"
    book.save(made)
    # As a spreadsheet program saves it, c7's formula keeps its value: read as that value.
    path = tmp_path / "formulas.xlsx"
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(path, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<f>2*3</f><v />", b"<f>2*3</f><v>6</v>")
            out.writestr(item, data)
    contacts = load(path)
    assert [c.id for c in contacts.contacts] == ["c1", "c5", "c7"]
    assert by_id(contacts)["c7"].first_name == "6"
    pia = by_id(contacts)["c5"]  # read by this module's own reader: as calamine reads it
    assert (pia.birthday, pia.postal_code, pia.city) == (date(1990, 11, 24), "28001", "TRUE")
    problems = {p.line: p.message for p in contacts.problems}
    assert set(problems) == {3, 4, 5, 7}, problems
    assert "cell B3 holds the formula error #DIV/0!" in problems[3]
    assert "cell C4 holds the formula error #N/A" in problems[4]
    assert "cell B5 holds a formula whose value was never calculated" in problems[5]
    assert "cell B7 holds a formula whose value was never calculated" in problems[7]


def test_a_workbook_declaring_entities_is_refused(tmp_path: Path) -> None:
    made = xlsx(tmp_path / "made.xlsx", {"Hoja1": [HEADER, ["c1", "Ana"]]})
    path = tmp_path / "laughs.xlsx"
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>'
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(path, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = bomb + data.split(b"?>", 1)[-1]
            out.writestr(item, data)
    with pytest.raises(ContactsError, match="document type declaration"):
        load(path)
