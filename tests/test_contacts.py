"""contacts.csv as spreadsheets really write it: encodings, delimiters, and rows with problems."""

from __future__ import annotations

import csv
import io
import pickle
import tracemalloc
import unicodedata
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from outreach.contacts import (
    Contact,
    ContactList,
    ContactStream,
    iter_contacts,
    load_contacts,
    normalize_email,
    normalize_locale,
    parse_date,
)
from outreach.model.config import ContactsSettings
from outreach.model.errors import ContactsError, Problem

REPO = Path(__file__).resolve().parent.parent
DMY = ContactsSettings(date_format="DMY", default_country="ES")
MDY = ContactsSettings(date_format="MDY", default_country="ES")


def write(tmp_path: Path, data: bytes | str, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def load(
    path: Path, contact_settings: ContactsSettings = DMY, default_locale: str = "es"
) -> ContactList:
    return load_contacts(path, settings=contact_settings, default_locale=default_locale)


def by_id(contacts: ContactList) -> dict[str, Contact]:
    return {contact.id: contact for contact in contacts.contacts}


def only_problem(contacts: ContactList) -> Problem:
    assert len(contacts.problems) == 1, [str(p) for p in contacts.problems]
    return contacts.problems[0]


# --- encodings and delimiters --------------------------------------------------------------


def test_windows_1252_semicolon_file_from_a_spreadsheet_keeps_its_accents(tmp_path: Path) -> None:
    text = (
        "id;First_Name;Last Name;EMAIL;birthday;tags;street\r\n"
        'c1;Begoña;Núñez Ibáñez;begona@example.com;24/11/1979;"customer;VIP";Calle Mayor, 5\r\n'
        "c2;Íñigo;Etxeberria;inigo@example.org;1991-11-25;customer;Plaza de España 1\r\n"
    )
    path = write(tmp_path, text.encode("cp1252"))
    contacts = load(path)
    assert contacts.problems == ()
    assert contacts.rows == 2
    begona, inigo = contacts.contacts
    assert (begona.first_name, begona.last_name) == ("Begoña", "Núñez Ibáñez")
    assert begona.email == "begona@example.com"
    assert begona.birthday == date(1979, 11, 24)
    assert begona.tags == frozenset({"customer", "vip"})
    assert begona.street == "Calle Mayor, 5"  # a comma is data in a semicolon file
    assert begona.line == 2
    assert (inigo.first_name, inigo.street, inigo.line) == ("Íñigo", "Plaza de España 1", 3)


def test_utf8_with_bom_reads_the_first_column_as_id(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffid,first_name\nc1,José\n".encode())
    assert [(c.id, c.first_name) for c in load(path).contacts] == [("c1", "José")]


def test_utf16_export_with_bom_is_read(tmp_path: Path) -> None:
    # What a spreadsheet's "Unicode text" export writes: UTF-16 with a BOM, tab-delimited.
    path = write(tmp_path, "id\tfirst_name\r\nc1\tRocío\r\n".encode("utf-16"))
    assert [(c.id, c.first_name) for c in load(path).contacts] == [("c1", "Rocío")]


def test_tab_delimited(tmp_path: Path) -> None:
    path = write(tmp_path, "id\tfirst_name\tcity\nc1\tAna, María\tMadrid\n")
    (contact,) = load(path).contacts
    assert (contact.first_name, contact.city) == ("Ana, María", "Madrid")


def test_blank_lines_and_stray_spaces(tmp_path: Path) -> None:
    text = (
        "\n"
        "  id , First Name ,  last_name  , email \n"
        "\n"
        ' c1 ,  Ana  , "Núñez, de la Peña" ,  ana@example.com  \n'
        "   \n"
        ",,,\n"
        "c2,Luis,,\n"
        "\n"
    )
    contacts = load(write(tmp_path, text))
    assert contacts.problems == ()
    assert contacts.rows == 2  # blank lines, and rows of empty cells, are not rows
    ana, luis = contacts.contacts
    assert (ana.id, ana.first_name, ana.last_name, ana.email) == (
        "c1",
        "Ana",
        "Núñez, de la Peña",
        "ana@example.com",
    )
    assert ana.line == 4  # the file's own line numbers, blank lines included
    assert (luis.id, luis.last_name, luis.email, luis.line) == ("c2", None, None, 7)


def test_line_numbers_in_problems_count_blank_lines(tmp_path: Path) -> None:
    text = "id,email\n\n\nc1,ok@example.com\n\nc2,bad@@example.com\n"
    problem = only_problem(load(write(tmp_path, text)))
    assert (problem.line, problem.field, problem.column, problem.contact_id) == (
        6,
        "email",
        2,
        "c2",
    )


def test_a_multi_line_quoted_cell_keeps_later_line_numbers_right(tmp_path: Path) -> None:
    text = 'id,first_name,notes\nc1,Ana,"two\nlines"\nc2,Luis,\nc3,Eva,x\n'
    contacts = load(write(tmp_path, text))
    assert [(c.id, c.line) for c in contacts.contacts] == [("c2", 4), ("c3", 5)]
    problem = only_problem(contacts)
    assert (problem.line, problem.field, problem.column) == (2, "notes", 3)
    assert "lines 2–3" in problem.message


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("ID,First_Name,LAST NAME,E-mail,Postal Code,opt-out", "first_name"),
        ("id,firstname,lastname,email,postalcode,optout", "last_name"),
    ],
)
def test_header_names_ignore_case_spaces_and_separators(
    tmp_path: Path, header: str, field: str
) -> None:
    path = write(tmp_path, f"{header}\nc1,Ana,Pérez,ana@example.com,28001,email\n")
    contacts = load(path)
    (contact,) = contacts.contacts
    assert contacts.problems == ()
    assert (contact.first_name, contact.last_name, contact.postal_code) == ("Ana", "Pérez", "28001")
    assert contact.opt_out == frozenset({"email"})
    assert getattr(contact, field) is not None


def test_a_name_typed_on_a_mac_compares_like_any_other(tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "José Núñez")
    path = write(tmp_path, f"id,first_name,tags\nc1,{decomposed},niño\n")
    (contact,) = load(path).contacts
    assert contact.first_name == "José Núñez"
    assert contact.tags == frozenset({"niño"})


# --- files that cannot be read -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ContactsError) as raised:
        load(tmp_path / "nope.csv")
    assert "nope.csv" in str(raised.value)
    assert raised.value.hint is not None and "paths.contacts" in raised.value.hint


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_an_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ContactsError, match="empty") as raised:
        load(write(tmp_path, data))
    assert raised.value.line == 1
    assert raised.value.hint is not None


def test_a_header_without_rows_is_a_problem_not_an_error(tmp_path: Path) -> None:
    contacts = load(write(tmp_path, "\nid,first_name,email\n\n"))
    assert contacts.contacts == ()
    assert contacts.rows == 0
    problem = only_problem(contacts)
    assert "no contacts" in problem.message
    assert (problem.line, problem.blocking) == (2, False)


def test_no_id_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    path = write(tmp_path, "first_name,email\nAna,ana@example.com\n")
    with pytest.raises(ContactsError) as raised:
        load(path)
    error = raised.value
    assert (error.path, error.line, error.field) == (str(path), 1, "id")
    assert str(path) in str(error)
    assert error.hint is not None and "id" in error.hint


def test_two_columns_with_one_name_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match="email") as raised:
        load(write(tmp_path, "id,Email,E-mail\nc1,a@example.com,b@example.com\n"))
    assert raised.value.field == "email"


def test_a_workbook_is_not_read_as_text(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match="workbook"):
        load(write(tmp_path, b"PK\x03\x04\x14\x00\x06\x00rest of a zip"))


def test_a_file_mixing_two_encodings_is_an_error_with_its_line(tmp_path: Path) -> None:
    data = "\ufeffid,first_name\nc1,José\n".encode() + "c2,Begoña\n".encode("cp1252")
    with pytest.raises(ContactsError, match="UTF-8") as raised:
        load(write(tmp_path, data))
    assert raised.value.line == 3


def test_nul_bytes_are_an_error(tmp_path: Path) -> None:
    # UTF-16 without its mark, or not a text file at all: every other byte is 0.
    with pytest.raises(ContactsError, match="NUL") as raised:
        load(write(tmp_path, "id,first_name\nc1,Ana\n".encode("utf-16-le")))
    assert raised.value.line == 1


def test_bytes_that_are_no_known_encoding_are_an_error(tmp_path: Path) -> None:
    # 0x81 is unassigned in Windows-1252 and invalid on its own in UTF-8.
    with pytest.raises(ContactsError, match="Windows-1252") as raised:
        load(write(tmp_path, b"id,first_name\nc1,Jos\x81\n"))
    assert raised.value.line == 2


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "date_format", "expected"),
    [
        ("1990-11-24", "DMY", date(1990, 11, 24)),
        ("1990-11-24", "MDY", date(1990, 11, 24)),
        ("1990-1-5", "DMY", date(1990, 1, 5)),
        ("24/11/1990", "DMY", date(1990, 11, 24)),
        ("11/24/1990", "MDY", date(1990, 11, 24)),
        ("03/04/1990", "DMY", date(1990, 4, 3)),
        ("03/04/1990", "MDY", date(1990, 3, 4)),
        ("3.4.1990", "DMY", date(1990, 4, 3)),
        ("03-04-1990", "MDY", date(1990, 3, 4)),
        ("29/02/1992", "DMY", date(1992, 2, 29)),
        (" 24/11/1990 ", "DMY", date(1990, 11, 24)),
    ],
)
def test_parse_date(value: str, date_format: str, expected: date) -> None:
    assert parse_date(value, date_format=date_format) == expected


@pytest.mark.parametrize(
    ("value", "date_format", "says"),
    [
        ("31/02/1990", "DMY", "February 1990 has no day 31"),
        ("29/02/1991", "DMY", "February 1991 has no day 29"),
        ("1990-02-30", "DMY", "no day 30"),
        ("11/24/1990", "DMY", "no month 24"),
        ("24/11/1990", "MDY", "no month 24"),
        ("1990-13-01", "MDY", "no month 13"),
        ("24/11/90", "DMY", "four-digit year"),
        ("24/11-1990", "DMY", "DD/MM/YYYY"),
        ("24 Nov 1990", "DMY", "DD/MM/YYYY"),
        ("1990-11-24T10:00", "MDY", "MM/DD/YYYY"),
        ("24/11", "DMY", "not a date"),
        ("", "DMY", "not a date"),
    ],
)
def test_parse_date_rejects(value: str, date_format: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_date(value, date_format=date_format)


def test_parse_date_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="DMY or MDY"):
        parse_date("1990-11-24", date_format="YMD")


def test_day_first_and_month_first_files(tmp_path: Path) -> None:
    path = write(tmp_path, "id,birthday\nc1,03/04/1990\nc2,1990-04-03\n")
    assert [c.birthday for c in load(path, DMY).contacts] == [date(1990, 4, 3)] * 2
    assert [c.birthday for c in load(path, MDY).contacts] == [date(1990, 3, 4), date(1990, 4, 3)]


def test_a_bad_date_holds_back_only_the_birthday(tmp_path: Path) -> None:
    path = write(tmp_path, "id,first_name,birthday\nc1,Ana,31/02/1985\n")
    contacts = load(path)
    (contact,) = contacts.contacts
    assert (contact.first_name, contact.birthday) == ("Ana", None)
    assert contact.held_back == frozenset({"birthday"})
    problem = only_problem(contacts)
    assert (problem.path, problem.line, problem.field, problem.column) == (
        str(path),
        2,
        "birthday",
        3,
    )
    assert problem.contact_id == "c1"
    assert "31/02/1985" in problem.message
    assert problem.hint == "write the date as 24/11/1990 or 1990-11-24"
    assert load(path, MDY).problems[0].hint == "write the date as 11/24/1990 or 1990-11-24"


# --- emails --------------------------------------------------------------------------------


def test_an_invalid_email_holds_back_only_the_email(tmp_path: Path) -> None:
    path = write(
        tmp_path, "id,first_name,email,street,city\nc1,María,maria@@example.com,Mayor 1,Madrid\n"
    )
    contacts = load(path)
    (contact,) = contacts.contacts
    assert (contact.first_name, contact.email, contact.street) == ("María", None, "Mayor 1")
    assert contact.held_back == frozenset({"email"})
    problem = only_problem(contacts)
    assert (problem.line, problem.field, problem.column, problem.contact_id) == (
        2,
        "email",
        3,
        "c1",
    )
    assert "maria@@example.com" in problem.message


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("Ana.Perez@Example.COM", "Ana.Perez@example.com"),
        ("ana@EXÁMPLE.com", "ana@exámple.com"),
        ("o'connor@example.org", "o'connor@example.org"),
    ],
)
def test_emails_keep_the_normalized_form(address: str, normalized: str) -> None:
    assert normalize_email(address) == normalized


@pytest.mark.parametrize(
    "address",
    ["maria@@example.com", "ana@example", "ana@localhost", "a..b@example.com", "ana@x.test",
     "Ana <ana@example.com>", "ana@example.com, bob@example.com", "ana@-example.com",
     "josé@example.com"],
)  # fmt: skip
def test_invalid_emails(address: str) -> None:
    with pytest.raises(ValueError):
        normalize_email(address)


_LOCAL = st.text(alphabet="aZ09._+-!#'~=é\u212a", min_size=1, max_size=70)
_LABEL = st.text(alphabet="aZx09-", min_size=1, max_size=66)
_TLD = st.sampled_from(["com", "ORG", "es", "x", "c0m", "123", "test", "localhost", "xn--p1ai"])


@settings(max_examples=100, deadline=None)
@given(local=_LOCAL, labels=st.lists(_LABEL, min_size=0, max_size=3), tld=_TLD)
def test_the_email_shortcut_agrees_with_email_validator(
    local: str, labels: list[str], tld: str
) -> None:
    address = f"{local}@{'.'.join([*labels, tld])}"
    try:
        expected: str | None = validate_email(
            address, check_deliverability=False, allow_smtputf8=False
        ).normalized
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = normalize_email(address)
    except ValueError:
        got = None
    assert got == expected


# --- rows that are left out ----------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    ['"Ana\r\nBcc: evil@example.com"', '"Ana\nBcc: evil@example.com"', '"Ana\rX"',
     "A\x1bna", "Ana\x7f", '"Ana\u2028Bcc: x@example.com"', "Ana\x85"],
)  # fmt: skip
def test_a_line_break_or_control_character_leaves_the_contact_out(
    tmp_path: Path, cell: str
) -> None:
    text = f"id,first_name,email\nc1,{cell},ana@example.com\nc2,Luis,luis@example.com\n"
    contacts = load(write(tmp_path, text))
    assert [c.id for c in contacts.contacts] == ["c2"]
    assert contacts.rows == 2
    problem = only_problem(contacts)
    assert (problem.line, problem.field, problem.column, problem.contact_id) == (
        2,
        "first_name",
        2,
        "c1",
    )
    assert "line break" in problem.message


def test_unsafe_characters_in_any_column_leave_the_contact_out(tmp_path: Path) -> None:
    text = 'id,city,favourite_dish\nc1,Madrid,"Cocido\nmadrileño"\n'
    contacts = load(write(tmp_path, text))
    assert contacts.contacts == ()
    assert only_problem(contacts).field == "favourite_dish"


def test_tabs_around_a_cell_are_stray_whitespace(tmp_path: Path) -> None:
    (contact,) = load(write(tmp_path, "id,first_name\nc1,\tAna\t\n")).contacts
    assert contact.first_name == "Ana"


def test_a_duplicate_id_drops_the_later_row(tmp_path: Path) -> None:
    text = "id,first_name\nc1,Ana\nc2,Luis\nc1,Otra Ana\nC2,Otro Luis\n"
    contacts = load(write(tmp_path, text))
    assert [(c.id, c.first_name) for c in contacts.contacts] == [("c1", "Ana"), ("c2", "Luis")]
    assert contacts.rows == 4
    first, second = contacts.problems
    assert (first.line, first.field, first.column, first.contact_id) == (4, "id", 1, "c1")
    assert "line 2" in first.message
    # Ids name files; C2 and c2 are one file on some file systems.
    assert (second.line, second.contact_id) == (5, "C2")
    assert "line 3" in second.message


@pytest.mark.parametrize("bad_id", ["", "../etc", ".hidden", "c 1", "c/1", "ñ1", "x" * 101])
def test_ids_must_be_safe_file_names(tmp_path: Path, bad_id: str) -> None:
    contacts = load(write(tmp_path, f'id,first_name\n"{bad_id}",Ana\nc2,Luis\n'))
    assert [c.id for c in contacts.contacts] == ["c2"]
    problem = only_problem(contacts)
    assert (problem.line, problem.field) == (2, "id")


def test_ids_may_use_letters_digits_dots_dashes_and_underscores(tmp_path: Path) -> None:
    contacts = load(write(tmp_path, "id\nA-1\nb_2.x\n0042\n"))
    assert [c.id for c in contacts.contacts] == ["A-1", "b_2.x", "0042"]


def test_a_row_with_more_cells_than_the_header_is_left_out(tmp_path: Path) -> None:
    # An unquoted comma shifts every later cell: nothing in the row can be trusted.
    text = "id,street,city\nc1,Calle Mayor, 5,Madrid\nc2,Calle Mayor 5,Madrid,,\n"
    contacts = load(write(tmp_path, text))
    assert [c.id for c in contacts.contacts] == ["c2"]  # empty trailing cells are harmless
    problem = only_problem(contacts)
    assert (problem.line, problem.contact_id) == (2, "c1")
    assert "4 cells" in problem.message


def test_a_repeated_header_row_is_not_a_contact(tmp_path: Path) -> None:
    text = "id,first_name\nc1,Ana\nID, First_Name \nc2,Luis\n"
    contacts = load(write(tmp_path, text))
    assert [c.id for c in contacts.contacts] == ["c1", "c2"]
    assert only_problem(contacts).line == 3


def test_an_unreadable_row_costs_only_itself(tmp_path: Path) -> None:
    # A cell over the csv module's field limit (128 KiB) cannot be read.
    huge = "x" * 140_000
    text = f'id,first_name\nc1,Ana\nc2,"{huge}"\nc3,Luis\n'
    contacts = load(write(tmp_path, text))
    assert [c.id for c in contacts.contacts] == ["c1", "c3"]
    assert contacts.rows == 3
    problem = only_problem(contacts)
    assert problem.line == 3
    assert "cannot be read" in problem.message


def test_a_quote_left_open_reports_the_lines_it_swallowed(tmp_path: Path) -> None:
    text = 'id,first_name\nc1,"Ana\nc2,Luis\nc3,Eva\n'
    contacts = load(write(tmp_path, text))
    assert contacts.contacts == ()
    problem = only_problem(contacts)
    assert problem.line == 2
    assert "lines 2–4" in problem.message


# --- fields --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("", frozenset()),
        ("email", frozenset({"email"})),
        (" Letter ", frozenset({"letter"})),
        ("ALL", frozenset({"email", "letter"})),
        ('"email;letter"', frozenset({"email", "letter"})),
    ],
)
def test_opt_out_values(tmp_path: Path, cell: str, expected: frozenset[str]) -> None:
    contacts = load(write(tmp_path, f"id,opt_out\nc1,{cell}\n"))
    assert contacts.problems == ()
    assert contacts.contacts[0].opt_out == expected


@pytest.mark.parametrize("cell", ["yes", "1", "true", "x", "sí", "no", "none", "email;maybe"])
def test_an_unknown_opt_out_counts_as_all_and_is_reported(tmp_path: Path, cell: str) -> None:
    contacts = load(write(tmp_path, f"id,email,opt_out\nc1,ana@example.com,{cell}\n"))
    assert contacts.contacts[0].opt_out == frozenset({"email", "letter"})
    problem = only_problem(contacts)
    assert (problem.field, problem.column, problem.contact_id) == ("opt_out", 3, "c1")


def test_tags_are_split_stripped_and_lower_cased(tmp_path: Path) -> None:
    contacts = load(write(tmp_path, 'id,tags\nc1," Customer ; VIP;;newsletter ;"\nc2,\n'))
    one, two = contacts.contacts
    assert one.tags == frozenset({"customer", "vip", "newsletter"})
    assert two.tags == frozenset()


@pytest.mark.parametrize(
    ("cell", "expected", "problems"),
    [("email", "email", 0), ("LETTER", "letter", 0), ("", None, 0), ("post", None, 1)],
)
def test_preferred_channel(tmp_path: Path, cell: str, expected: str | None, problems: int) -> None:
    contacts = load(write(tmp_path, f"id,preferred_channel\nc1,{cell}\n"))
    assert contacts.contacts[0].preferred_channel == expected
    assert len(contacts.problems) == problems


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("es", "es"), ("es_MX", "es_MX"), ("en-GB", "en_GB"), ("en-us", "en_US"), ("", "ca")],
)
def test_locale(tmp_path: Path, cell: str, expected: str) -> None:
    contacts = load(write(tmp_path, f"id,locale\nc1,{cell}\n"), default_locale="ca")
    assert contacts.problems == ()
    assert contacts.contacts[0].locale == expected


def test_an_unknown_locale_falls_back_and_is_reported(tmp_path: Path) -> None:
    contacts = load(write(tmp_path, "id,locale\nc1,klingon\n"), default_locale="es")
    assert contacts.contacts[0].locale == "es"
    assert contacts.contacts[0].held_back == frozenset({"locale"})
    assert only_problem(contacts).field == "locale"
    with pytest.raises(ValueError, match="klingon"):
        normalize_locale("klingon")


def test_country_defaults_and_is_upper_cased(tmp_path: Path) -> None:
    settings_pt = ContactsSettings(default_country="PT")
    contacts = load(write(tmp_path, "id,city,country\nc1,Lisboa,\nc2,Madrid,es\n"), settings_pt)
    assert [c.country for c in contacts.contacts] == ["PT", "ES"]
    assert contacts.problems == ()


def test_an_invalid_country_holds_back_the_address(tmp_path: Path) -> None:
    text = "id,street,postal_code,city,country\nc1,1 High St,SW1A 1AA,London,UK\n"
    contacts = load(write(tmp_path, text))
    (contact,) = contacts.contacts
    assert {"address", "country"} <= contact.held_back
    # Nothing may print this address with a guessed country.
    assert (contact.street, contact.postal_code, contact.city) == (None, None, None)
    problem = only_problem(contacts)
    assert (problem.field, problem.column) == ("country", 5)
    assert problem.hint == "use GB for the United Kingdom"


def test_address_confirmed_turns_off_the_postal_code_check_for_that_row(tmp_path: Path) -> None:
    # Texarkana, Arkansas has the real ZIP code 75502, which Google's address data places in
    # Texas (Arkansas codes start with 71[6-9] or 72 there): the owner confirms it once.
    text = (
        "id,street,postal_code,city,region,country,address_confirmed\n"
        "c1,100 N State Line Ave,75502,Texarkana,AR,US,\n"
        "c2,100 N State Line Ave,75502,Texarkana,AR,US,20/11/2026\n"
        "c3,100 N State Line Ave,75502,Texarkana,AR,US,someday\n"
    )
    contacts = load(write(tmp_path, text))
    people = by_id(contacts)
    assert "postal_code" in people["c1"].held_back
    assert people["c2"].held_back == frozenset()
    assert people["c2"].address_confirmed == date(2026, 11, 20)
    assert "postal_code" in people["c3"].held_back  # an unreadable date confirms nothing
    problems = {(p.contact_id, p.field) for p in contacts.problems}
    assert problems == {
        ("c1", "postal_code"),
        ("c3", "address_confirmed"),
        ("c3", "postal_code"),
    }


def test_extra_columns_reach_templates(tmp_path: Path) -> None:
    text = "id,Favourite Dish,next_appointment,x y z,Notes\nc1,Cocido,2026-11-25,1,\n"
    (contact,) = load(write(tmp_path, text)).contacts
    assert dict(contact.extra) == {
        "favourite_dish": "Cocido",
        "next_appointment": "2026-11-25",
        "x_y_z": "1",
    }
    fields = contact.template_fields()
    assert fields["favourite_dish"] == "Cocido"
    assert "notes" not in fields  # empty cells are not fields


def test_a_misspelt_column_is_pointed_out(tmp_path: Path) -> None:
    contacts = load(write(tmp_path, "id,birthdate,street3\nc1,24/11/1990,Escalera B\n"))
    (contact,) = contacts.contacts
    assert contact.birthday is None
    assert dict(contact.extra) == {"birthdate": "24/11/1990", "street3": "Escalera B"}
    problem = only_problem(contacts)  # street3 is a column of its own, not a typo
    assert (problem.line, problem.field, problem.column) == (1, "birthdate", 2)
    assert "birthday" in problem.message


def test_a_value_under_a_column_without_a_name_is_reported(tmp_path: Path) -> None:
    contacts = load(write(tmp_path, "id,first_name,\nc1,Ana,\nc2,Luis,extra\n"))
    assert [c.id for c in contacts.contacts] == ["c1", "c2"]
    problem = only_problem(contacts)
    assert (problem.line, problem.column, problem.contact_id) == (3, 3, "c2")


def test_empty_cells_are_none(tmp_path: Path) -> None:
    (contact,) = load(write(tmp_path, "id,first_name,last_name,title,email\nc1,  ,,\n")).contacts
    assert (contact.first_name, contact.last_name, contact.title, contact.email) == (None,) * 4
    assert contact.held_back == frozenset()


# --- property: what csv.writer writes comes back ----------------------------------------------

_CP1252_TEXT = "".join(
    char
    for byte in range(0x20, 0x100)
    if byte != 0x7F and not 0x80 <= byte <= 0x9F
    for char in [bytes([byte]).decode("cp1252")]
) + "€‘’“”…–—"  # fmt: skip
_TRICKY = "\"',; ñáéíóúüÑ€"
_UNICODE = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")) | st.sampled_from(_TRICKY)


@st.composite
def _files(draw: st.DrawFn) -> tuple[str, str, list[dict[str, str]]]:
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    chars = st.sampled_from(_CP1252_TEXT + _TRICKY) if encoding == "cp1252" else _UNICODE
    text = st.text(alphabet=chars, max_size=12)
    tag = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=6)
    rows = []
    for number in range(draw(st.integers(min_value=1, max_value=6))):
        rows.append(
            {
                "id": f"c{number:03d}",
                "first_name": draw(text),
                "last_name": draw(text),
                "title": draw(text),
                "city": draw(text),
                "favourite_dish": draw(text),
                "tags": ";".join(draw(st.lists(tag, max_size=3))),
            }
        )
    return encoding, delimiter, rows


def _expected(value: str) -> str | None:
    return unicodedata.normalize("NFC", value).strip() or None


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(generated=_files())
def test_what_a_csv_writer_writes_reads_back(
    tmp_path: Path, generated: tuple[str, str, list[dict[str, str]]]
) -> None:
    encoding, delimiter, rows = generated
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    data = out.getvalue().encode(encoding)
    if encoding == "cp1252" and not data.isascii():
        # Bytes that are also valid UTF-8 are read as UTF-8: a cp1252 file can only come
        # back when no line with accents is (as is the case for real text: é is 0xE9 then
        # a letter); a line that is would be taken for a second encoding in the file.
        for line in data.splitlines():
            if not line.isascii():
                try:
                    line.decode("utf-8")
                    assume(False)
                except UnicodeDecodeError:
                    pass
    path = tmp_path / "roundtrip.csv"
    path.write_bytes(data)
    contacts = load(path)
    assert contacts.problems == ()
    assert contacts.rows == len(rows)
    assert len(contacts.contacts) == len(rows)
    for row, contact in zip(rows, contacts.contacts, strict=True):
        assert contact.id == row["id"]
        assert contact.first_name == _expected(row["first_name"])
        assert contact.last_name == _expected(row["last_name"])
        assert contact.title == _expected(row["title"])
        assert contact.city == _expected(row["city"])
        dish = _expected(row["favourite_dish"])
        assert dict(contact.extra) == ({"favourite_dish": dish} if dish else {})
        assert contact.tags == frozenset(row["tags"].lower().split(";")) - {""}


# --- the sample workspace's contacts.csv ------------------------------------------------------


def test_the_sample_contacts_load_with_exactly_the_planted_problems() -> None:
    contacts = load(REPO / "contacts.csv", DMY, "es")
    assert Counter(p.field for p in contacts.problems) == {
        "email": 1,  # maria@@example.com
        "birthday": 1,  # 31/02/1985
        "id": 1,  # c006 twice
        "opt_out": 1,  # "sí"
    }
    assert contacts.rows == 31
    assert len(contacts.contacts) == 30
    people = by_id(contacts)
    assert people["c013"].email is None and "email" in people["c013"].held_back
    assert people["c017"].birthday is None
    assert people["c024"].opt_out == frozenset({"email", "letter"})
    assert people["c006"].email == "pablo.herrera@example.com"  # the first c006 stays
    assert people["c020"].birthday == date(1992, 2, 29)
    assert people["c016"].opt_out == frozenset({"email"})
    assert people["c023"].opt_out == frozenset({"email", "letter"})
    # Useful on the sample run date, 2026-11-24: birthdays on 24–27 Nov and appointments.
    birthdays = {c.id for c in contacts.contacts if c.birthday and c.birthday.month == 11
                 and 24 <= c.birthday.day <= 27}  # fmt: skip
    assert len(birthdays) >= 5
    appointments = {c.extra.get("next_appointment") for c in contacts.contacts} - {None}
    assert appointments == {"2026-11-25", "2026-11-26"}
    assert sum(c.locale.startswith("en") for c in contacts.contacts) >= 4
    letters = [c for c in contacts.contacts if c.preferred_channel == "letter"]
    assert len(letters) >= 3
    assert all(c.street and c.postal_code and c.city for c in letters)
    assert sum("staff" in c.tags for c in contacts.contacts) == 1
    assert all(
        c.email is None or c.email.endswith(("@example.com", "@example.org"))
        for c in contacts.contacts
    )


# --- reading as a stream -------------------------------------------------------------------


def stream(path: Path) -> ContactStream:
    return iter_contacts(path, settings=DMY, default_locale="es")


def test_a_stream_reads_what_the_list_reads_and_reports_its_problems_at_the_end(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "id,first_name,email,birthday\r\n"
        "C1,Ana,ana@example.com,24/11/1990\r\n"
        "\r\n"
        "c2,Luis,not-an-email,31/02/1990\r\n"
        "c1,Ana again,ana2@example.com,\r\n"
        'c3,"Eva\r\nMaría",eva@example.com,\r\n'
        "c4,Bo,bo@example.com,1990-11-24,surplus\r\n"
        "C2,Luis again,,\r\n",
    )
    contacts = stream(path)
    first = next(contacts)
    assert (first.id, first.line) == ("C1", 2)
    with pytest.raises(RuntimeError, match="not all read"):
        _ = contacts.problems
    assert not contacts.done
    rest = list(contacts)
    assert contacts.done
    assert [(c.id, c.line, c.held_back) for c in rest] == [
        ("c2", 4, frozenset({"email", "birthday"})),
    ]
    listed = load(path)
    assert (first, *rest) == listed.contacts
    assert contacts.problems == listed.problems
    assert contacts.rows == listed.rows == 6
    # A repeated id names where the id was first used, as the list does, though the stream
    # keeps only the ids it has seen: the first rows are found by reading the file again.
    messages = [(p.line, p.message) for p in contacts.problems if p.field == "id"]
    assert messages == [
        (
            5,
            "id 'c1' is already used on line 2 (as 'C1'; case does not count), so this row is "
            "left out",
        ),
        (
            9,
            "id 'C2' is already used on line 4 (as 'c2'; case does not count), so this row is "
            "left out",
        ),
    ]
    assert [p.line for p in contacts.problems] == [4, 4, 5, 6, 8, 9]
    # The lines of the file after the header: at least as many as there are contacts.
    assert contacts.size_hint == 8


def test_a_stream_checks_the_whole_file_before_the_first_row(tmp_path: Path) -> None:
    # A byte that is not UTF-8 far down the file (past the first block read) makes the whole
    # file Windows-1252: the first rows must not have been read as UTF-8 by then.
    # 1,200 rows of a kilobyte: past the reader's first block of a megabyte.
    rows = "".join(f"c{i},Ana{i},{'n' * 1000}\n" for i in range(1_200))
    header = b"id,first_name,note\n"
    path = write(tmp_path, header + rows.encode() + "c-last,Jos\u00e9,\n".encode("cp1252"))
    assert path.stat().st_size > 1 << 20
    contacts = stream(path)
    assert sum(1 for _ in contacts) == 1_201
    assert contacts.problems == ()
    assert load(path).contacts[-1].first_name == "José"
    bad = write(tmp_path, header + rows.encode() + b"c-last,\x81,\n", "bad.csv")
    with pytest.raises(ContactsError) as caught:
        stream(bad)
    assert caught.value.line == 1_202
    assert "neither UTF-8 nor Windows-1252 (byte 0x81)" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "the file is empty"),
        (b"name,email\nAna,ana@example.com\n", "there is no id column"),
        (b"PK\x03\x04", "spreadsheet workbook"),
    ],
)
def test_a_stream_raises_the_header_errors_at_once(tmp_path: Path, data: bytes, says: str) -> None:
    with pytest.raises(ContactsError, match=says):
        stream(write(tmp_path, data))


def peak_bytes(read: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_stream_holds_only_the_rows_in_hand(tmp_path: Path) -> None:
    def contacts_file(rows: int) -> Path:
        lines = "".join(f"c{i},Ana,García,ana{i}@example.com,24/11/1990,\n" for i in range(rows))
        header = "id,first_name,last_name,email,birthday,tags\n"
        return write(tmp_path, header + lines, f"contacts{rows}.csv")

    small, large = contacts_file(1_000), contacts_file(6_000)

    def streamed(path: Path) -> int:
        return peak_bytes(lambda: sum(1 for _ in stream(path)))

    def listed(path: Path) -> int:
        return peak_bytes(lambda: load(path))

    # Per extra row, a stream keeps only the row's id (in the set of ids seen, for repeated
    # ids), about 100 bytes; the list keeps the whole contact.
    per_row_streamed = (streamed(large) - streamed(small)) / 5_000
    per_row_listed = (listed(large) - listed(small)) / 5_000
    assert per_row_streamed < 200, per_row_streamed
    assert per_row_listed > 400, per_row_listed


def test_a_contact_travels_to_a_worker_process_whole(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "id,first_name,birthday,tags,favourite_dish\nc1,Ana,24/11/1990,vip;local,Cocido\nc2,Bo,,,\n",
    )
    contacts = load(path).contacts
    back = pickle.loads(pickle.dumps(contacts))
    assert back == contacts
    assert back[0].extra == {"favourite_dish": "Cocido"}
    assert back[1].extra == {}
    with pytest.raises(TypeError):
        back[0].extra["favourite_dish"] = "Paella"
