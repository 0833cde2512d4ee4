"""End to end: `outreach validate` and `outreach preview`, and the docs of every command."""

from __future__ import annotations

import re
from collections.abc import Callable

from click.testing import CliRunner
from conftest import REPO, Workspace

from outreach.cli import cli
from outreach.cli.app import COMMANDS

BIRTHDAY = """\
kind: birthday
channel: email
days_before: 3
email: {subject: "¡Feliz cumpleaños, {{ contact.first_name }}!", text: birthday.txt.j2}
"""

ROWS = [
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c2,José,Núñez,jose@@example.com,28/11/1985,,,,,,,customer,",
    "c3,Begoña,Ibáñez,begona@example.com,31/02/1970,,,,,,,customer,",
    "c4,,Ortiz,inigo@example.com,24/11/2000,,,,,,,customer,",
]


def test_validate_lists_row_problems_and_render_failures(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS)
    result = ws.run("validate", "--date", "2026-11-24")
    assert result.code == 0, result.err  # row problems hold back rows; nothing blocks a run
    assert "contacts.csv:3: email (column 4)" in result.out  # c2's address
    assert "contacts.csv:4: birthday (column 5)" in result.out  # 31 February
    # c4 has no first name, which the subject needs: reported with the campaign file.
    assert re.search(r"birthday\.yaml.*contact c4.*first_name", result.out)
    assert "4 rows, 4 usable, 2 problems" in result.out


def test_validate_exits_2_on_a_broken_template(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS, templates={"birthday.txt.j2": "Hola {{ contact.first_name }\n"})
    result = ws.run("validate", "--date", "2026-11-24")
    assert result.code == 2
    assert "birthday.txt.j2:1" in result.out


def test_preview_prints_subject_and_text(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(ROWS)
    result = ws.run("preview", "birthday", "--contact", "c1", "--date", "2026-11-24")
    assert result.code == 0, result.err
    assert result.out.startswith("Subject: ¡Feliz cumpleaños, Ana!\n\nHola Ana, ¡feliz cumpleaños!")
    held = ws.run("preview", "birthday", "--contact", "c9", "--date", "2026-11-24")
    assert held.code == 2 and "no usable contact 'c9'" in held.err


PROMOTION = """\
kind: promotion
channel: email
start: 2026-11-20
end: 2026-11-30
audience: {tags_none: [staff]}
email: {subject: "Menú de otoño", text: promo.txt.j2}
"""


def test_preview_refuses_to_invent_a_date_or_a_recipient(
    make_workspace: Callable[..., Workspace],
) -> None:
    rows = [ROWS[0], "c5,Eva,Gil,eva@example.com,,,,,,,,staff,"]
    ws = make_workspace(rows, campaigns={"promo.yaml": PROMOTION, "birthday.yaml": BIRTHDAY})
    # No birthday in the file: no message to show, and no date made up for one.
    none = ws.run("preview", "birthday", "--contact", "c5", "--date", "2026-11-24")
    assert none.code == 1 and none.out == ""
    assert "contacts.csv:3: contact c5 has no birthday occurrence from 2026-11-24" in none.err
    # Tagged staff: outside the promotion's audience, so no preview of what nobody sends them.
    staff = ws.run("preview", "promo", "--contact", "c5", "--date", "2026-11-24")
    assert staff.code == 1 and staff.out == ""
    assert "contact c5 is not in the audience of promo" in staff.err
    # Nothing due today: the next real occurrence, said as such (stdout is the message alone).
    ahead = ws.run("preview", "birthday", "--contact", "c1", "--date", "2026-11-01")
    assert ahead.code == 0, ahead.err
    assert ahead.out.startswith("Subject: ¡Feliz cumpleaños, Ana!")
    assert "nothing of birthday is due for c1 on 2026-11-01" in ahead.err
    assert "the next one, for 2026-11-26 (made from 2026-11-23)" in ahead.err
    due = ws.run("preview", "birthday", "--contact", "c1", "--date", "2026-11-24")
    assert due.code == 0 and due.err == ""


LETTER_BIRTHDAY = """\
kind: birthday
channel: letter
days_before: 10
letter: {template: letter.html.j2}
"""


def test_validate_counts_what_it_lists_once_with_the_rows_and_the_config_it_read(
    make_workspace: Callable[..., Workspace],
) -> None:
    street = "Calle" + "x" * 70  # one word wider than the envelope's window
    rows = [
        f"c1,Ana,García,,26/11/1990,{street},28013,Madrid,ES,letter,,customer,",
        # No street: no letter, for this year's birthday and next year's — said once.
        "c2,Eva,Gil,,27/11/1980,,28013,Madrid,ES,letter,,customer,",
        "c3,Luis,Ruiz,luis@@example.com,,,,,,,,customer,",
    ]
    ws = make_workspace(
        rows,
        campaigns={"birthday.yaml": LETTER_BIRTHDAY},
        templates={"letter.html.j2": "<p>Hola {{ contact.first_name }}</p>\n"},
    )
    (ws.root / "config.yaml").rename(ws.root / "config_ods.yaml")
    result = ws.run("validate", "--date", "2026-11-24", "--config", "config_ods.yaml")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "config config_ods.yaml: ok"
    assert "contacts contacts.csv: 3 rows, 3 usable, 1 problem" in lines
    heading = next(i for i, line in enumerate(lines) if "hold back single contacts" in line)
    listed = [line for line in lines[heading + 1 :] if line.startswith("  ")]
    assert lines[heading] == f"{len(listed)} problems that hold back single contacts:"
    assert len(listed) == len(set(listed)) == 3, listed
    # The letter too wide for the window: at c1's row, where the street is put right.
    assert any(line.startswith("  contacts.csv:2: contact c1: the address line") for line in listed)
    assert any(line.startswith("  contacts.csv:3: street: no letter possible") for line in listed)
    assert any(line.startswith("  contacts.csv:4: email (column 4)") for line in listed)


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    runner = CliRunner()
    commands = cli.every_command()
    assert len(commands) == len(COMMANDS) > 20, "a command of COMMANDS is not where it says"
    for name, command in commands.items():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert (command.help or "").strip(), f"{name} has no help text"
        assert f"outreach {name}" in readme, f"README does not show `outreach {name}`"
