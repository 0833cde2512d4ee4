"""Damaged contacts files: nothing garbled, nothing silently lost, every refusal placed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import HEADER, Workspace, with_consent

from outreach.contacts import load_contacts
from outreach.history import read_unsubscribe_file
from outreach.model.config import ContactsSettings

DAY = "2026-11-24"


def row(cid: str, first: str, email: str) -> str:
    return f"{cid},{first},Núñez,{email},25/11/1980,,,,,email,es,customer,"


def eml_texts(ws: Workspace) -> str:
    return "\n".join(p.read_text("utf-8", "replace") for p in ws.files("out"))


def test_a_file_mixing_utf8_and_windows_1252_renders_nothing_garbled(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace([])
    header, *rows = with_consent(
        [HEADER, *(row(f"c{i}", "José", f"p{i}@example.com") for i in range(6))]
    )
    lines = [header.encode()]
    for i, text in enumerate(rows):
        # Rows 1 and 4 saved by someone whose spreadsheet writes UTF-8, the others cp1252.
        lines.append(text.encode("utf-8" if i in (1, 4) else "cp1252"))
    (ws.root / "contacts.csv").write_bytes(b"\n".join(lines) + b"\n")

    result = ws.run("run", "--all", "--date", DAY, "--json")
    summary = json.loads(result.out)
    texts = eml_texts(ws)
    assert "Ã" not in texts  # no UTF-8 bytes read as Windows-1252
    assert len(ws.files("out")) == 4
    problems = summary["problems"]
    assert problems[0]["line"] == 3
    assert "mixes two encodings" in problems[0]["message"]
    assert "3, 6" in problems[0]["message"]
    held = [(p["line"], p["contact_id"]) for p in problems[1:]]
    assert held == [(3, "c1"), (6, "c4")]
    validate = ws.run("validate", "--date", DAY)
    assert "mixes two encodings" in validate.out


def test_a_runaway_quote_holds_the_run_back_and_names_the_span(
    make_workspace: Callable[..., Workspace],
) -> None:
    good = [row(f"c{i:05d}", "Ana", f"p{i}@example.com") for i in range(10_000)]
    ws = make_workspace(['x0,"Ana,Lopez,ana@example.com', *good])
    for command in (["run", "--all", "--date", DAY], ["validate", "--date", DAY]):
        result = ws.run(*command)
        assert result.code == 2, result.out + result.err
        text = result.out + result.err
        assert "contacts.csv:2: a quote opened on line 2 is not closed until line" in text
        assert "Traceback" not in text
    assert ws.files("out") == []


def test_a_short_runaway_is_one_reported_row_and_the_run_goes_on(
    make_workspace: Callable[..., Workspace],
) -> None:
    good = [row(f"c{i}", "Ana", f"p{i}@example.com") for i in range(4)]
    ws = make_workspace(['x0,"Ana,Lopez,ana@example.com', good[0], good[1], 'x",', *good[2:]])
    result = ws.run("run", "--all", "--date", DAY, "--json")
    summary = json.loads(result.out)
    assert len(ws.files("out")) == 2
    assert any("runs over lines 2–5 (4 lines" in p["message"] for p in summary["problems"])


def test_an_address_smtp_cannot_send_is_refused_by_the_reader_with_its_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("id,email\nc1,ana@example.com\nc2,josé@example.com\n", encoding="utf-8")
    contacts = load_contacts(path, settings=ContactsSettings(), default_locale="es")
    assert [c.email for c in contacts.contacts] == ["ana@example.com", None]
    (problem,) = contacts.problems
    assert (problem.line, problem.field, problem.contact_id) == (3, "email", "c2")
    assert "josé@example.com" in problem.message


def test_unsubscribe_import_reads_utf16_boms_and_long_cells(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = make_workspace([row("c1", "Ana", "ana@example.com")])
    # What Excel's "Unicode Text" export writes: UTF-16 with its mark, tabs between cells.
    utf16 = tmp_path / "unicode.txt"
    utf16.write_bytes("email\tname\r\nana@example.com\tAna Núñez\r\n".encode("utf-16"))
    entries, problems = read_unsubscribe_file(utf16)
    assert ([e.value for e in entries], problems) == (["ana@example.com"], [])
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffemail\nluis@example.com\n".encode())
    assert [e.value for e in read_unsubscribe_file(bom)[0]] == ["luis@example.com"]
    long_cell = tmp_path / "long.csv"
    long_cell.write_text(
        'email,note\neva@example.com,"' + "x" * 131_073 + '"\nmar@example.com,ok\n',
        encoding="utf-8",
    )
    result = ws.run("unsubscribe", "--import", str(long_cell))
    assert "Traceback" not in result.err
    assert result.code == 1, result.out + result.err
    assert "long.csv:2: the row cannot be read" in result.out
    result = ws.run("unsubscribe", "--import", str(utf16))
    assert result.code == 0, result.out + result.err
    assert "1 added" in result.out
