"""`outreach returned`: a letter the post returned blocks letters to that postal address (email
takes over with `fallback`) until the address in contacts.csv changes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conftest import HEADER, Workspace, with_consent
from feedback_helpers import ROWS, ledger_rows, promo_workspace, snapshot
from test_feedback_maildir import WINTER

MakeWorkspace = Callable[..., Workspace]
LETTER_ROWS = [
    ROWS[0].replace(",email,es,", ",letter,es,"),
    ROWS[1].replace(",email,es,", ",letter,es,"),
    *ROWS[2:4],
]


def winter(ws: Workspace, contact_id: str) -> tuple[object, ...]:
    rows = ledger_rows(
        ws,
        f"SELECT channel, status FROM messages WHERE campaign = 'winter' AND contact_id = '{contact_id}'",
    )
    return rows[0]


@pytest.mark.slow
def test_a_returned_letter_lets_email_take_over_until_the_address_changes(
    make_workspace: MakeWorkspace,
) -> None:
    ws = promo_workspace(make_workspace, rows=LETTER_ROWS)
    assert ledger_rows(ws, "SELECT channel FROM messages WHERE contact_id = 'c-001'") == [
        ("letter",)
    ]
    result = ws.run("returned", "c-001", "--date", "2026-11-26")
    assert result.code == 0, result.err
    assert "c-001: no more letters to this postal address" in result.out
    again = ws.run("returned", "c-001", "--date", "2026-11-27")
    assert again.code == 0 and "blocked already" in again.out
    ws.write("campaigns/winter.yaml", WINTER)
    explained = ws.run("explain", "c-001", "--date", "2026-11-27")
    assert (
        "blocked: letters to c-001's postal address are blocked since 2026-11-26" in explained.out
    )
    assert ws.run("run", "--all", "--date", "2026-11-27").code == 0
    assert winter(ws, "c-001") == ("email", "rendered")
    assert winter(ws, "c-002") == ("letter", "rendered")  # not returned: letters as before
    history = json.loads(ws.run("history", "--contact", "c-001", "--json").out)
    assert [(b["channel"], b["reason"]) for b in history["blocked"]] == [
        ("letter", "returned-letter")
    ]


@pytest.mark.slow
def test_a_corrected_address_starts_clean(make_workspace: MakeWorkspace) -> None:
    ws = promo_workspace(make_workspace, rows=LETTER_ROWS)
    assert ws.run("returned", "c-001", "--date", "2026-11-26").code == 0
    # Written differently (case, spaces, punctuation): still the same address, still blocked.
    same = [LETTER_ROWS[0].replace("Calle Mayor 1", "calle  MAYOR. 1"), *LETTER_ROWS[1:]]
    ws.write("contacts.csv", "\n".join(with_consent([HEADER, *same])) + "\n")
    ws.write("campaigns/winter.yaml", WINTER)
    assert "blocked: letters" in ws.run("explain", "c-001", "--date", "2026-11-27").out
    moved = [LETTER_ROWS[0].replace("Calle Mayor 1", "Calle Mayor 15"), *LETTER_ROWS[1:]]
    ws.write("contacts.csv", "\n".join(with_consent([HEADER, *moved])) + "\n")
    assert "blocked:" not in ws.run("explain", "c-001", "--date", "2026-11-27").out
    assert ws.run("run", "--all", "--date", "2026-11-27").code == 0
    assert winter(ws, "c-001") == ("letter", "rendered")


def test_the_posts_list_is_imported_and_bad_lines_are_reported(
    make_workspace: MakeWorkspace,
) -> None:
    ws = promo_workspace(make_workspace, rows=LETTER_ROWS)
    ws.write(
        "returned.csv",
        "fecha;referencia;motivo\n2026-11-25;c-001;desconocido\n2026-11-25;c-999;ausente\n"
        "2026-11-25;;dirección incorrecta\n",
    )
    result = ws.run("returned", "--import", "returned.csv", "--date", "2026-11-26")
    assert result.code == 1  # some done, some not
    assert "c-001: no more letters" in result.out
    assert "returned.csv:3: there is no contact 'c-999' in contacts.csv" in result.err
    assert "returned.csv:4: referencia: no contact id on this line" in result.err
    assert ledger_rows(ws, "SELECT contact_id, reason FROM blocks") == [
        ("c-001", "returned-letter")
    ]


def test_unknown_ids_only_do_nothing(make_workspace: MakeWorkspace) -> None:
    ws = promo_workspace(make_workspace, rows=LETTER_ROWS)
    before = snapshot(ws)
    result = ws.run("returned", "c-999", "--json")
    assert result.code == 2
    assert json.loads(result.out)["problems"][0]["contact_id"] == "c-999"
    assert snapshot(ws) == before
    usage = ws.run("returned")
    assert usage.code == 2 and "give contact ids, or --import FILE" in usage.err
