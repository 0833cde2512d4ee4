"""`outreach visits --import`: a till's export into the ledger, each visit once, bad lines named."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import openpyxl
import pytest
from conftest import Workspace

from outreach.ledger import Ledger
from outreach.ledger.outcomes import Visit, add_visits, visits_between
from outreach.outcomes.coupons import coupon_code
from outreach.outcomes.money import parse_cents

ROWS = [
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c2,José,Núñez,jose@example.com,1985-11-28,,,,,,,customer,",
    "c5,Mary,Smith,mary@example.org,25/11/1980,,,,,,en,customer,",
]


def stored(ws: Workspace) -> list[tuple[str, str, int | None, str | None]]:
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        return sorted(db.execute("SELECT contact_id, day, amount_cents, code FROM visits"))


@pytest.mark.parametrize(
    ("text", "cents"),
    [("12,50", 1250), ("12.5", 1250), ("1.234,56", 123456), ("€ 7", 700), ("0,05", 5)],
)
def test_amounts_read_with_either_decimal_mark(text: str, cents: int) -> None:
    assert parse_cents(text) == cents


def test_an_export_is_imported_once_and_its_bad_lines_named(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS)
    assert ws.run("run", "--all", "--date", "2026-11-24").code == 0  # c1, c5 get a code
    code = coupon_code(
        secret="test-secret",
        contact_id="c5",
        campaign="birthday",
        occurrence_key="birthday:2026",
        prefix="CL-",
        length=8,
    )
    ws.write(
        "caja.csv",
        f"""\
        Fecha;Correo;Importe;Cliente;Código
        28/11/2026;ana@example.com;42,50;;
        2026-11-29;;;c2;
        30/11/2026;;18,00;;{code.lower()}
        31/11/2026;ana@example.com;10;;
        01/12/2026;nadie@example.com;10;;
        28/11/2026;ana@example.com;42,50;;
        02/12/2026;jose@example.com;12,3,4;;

        03/12/2026;;;;
        """,
    )
    first = ws.run("visits", "--import", "caja.csv")
    assert first.code == 1
    assert first.out.strip() == "3 visits added, 0 already in the ledger, 5 lines left out"
    err = first.err.splitlines()
    assert err[0].startswith("caja.csv:5: date: '31/11/2026' is not a date")
    assert err[1].startswith("caja.csv:6: email: 'nadie@example.com' is no contact")
    assert err[2].startswith("caja.csv:7: the same visit as line 2")
    assert err[3].startswith("caja.csv:8: amount: '12,3,4' is not an amount")
    assert err[4].startswith("caja.csv:10: contact_id: no contact_id, email, phone or code")
    assert stored(ws) == [
        ("c1", "2026-11-28", 4250, None),
        ("c2", "2026-11-29", None, None),
        ("c5", "2026-11-30", 1800, code.lower()),
    ]
    again = ws.run("visits", "--import", "caja.csv", "--json")
    assert again.code == 1
    assert json.loads(again.out)["added"] == 0 and json.loads(again.out)["known"] == 3
    assert len(stored(ws)) == 3


def test_a_workbook_export_reads_like_a_csv(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = make_workspace(ROWS)
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (
        ["date", "id", "amount"],
        [datetime(2026, 12, 1), "c1", 12.5],
        ["2026-12-02", "C2", ""],
    ):
        sheet.append(row)
    book.save(ws.root / "caja.xlsx")
    result = ws.run("visits", "--import", "caja.xlsx")
    assert result.code == 0, result.err
    assert stored(ws) == [("c1", "2026-12-01", 1250, None), ("c2", "2026-12-02", None, None)]


def test_a_header_without_a_date_or_a_contact_is_refused_whole(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(ROWS)
    ws.write("caja.csv", "ticket,total\n1,12\n")
    result = ws.run("visits", "--import", "caja.csv")
    assert result.code == 2
    assert "caja.csv:1: the header needs a `date` column" in result.err
    assert not (ws.root / "state" / "ledger.sqlite").exists() or stored(ws) == []


def test_an_import_that_fails_halfway_leaves_nothing(tmp_path: Path) -> None:
    # The last row breaks a NOT NULL: the rows before it, already inserted, go too.
    now = datetime(2026, 12, 1, tzinfo=UTC)
    good = [Visit(contact_id=f"c{i}", day=date(2026, 11, 1 + i % 28)) for i in range(500)]
    broken = Visit(contact_id=None, day=date(2026, 11, 2))  # type: ignore[arg-type]
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        conn = ledger.connection()
        with pytest.raises(sqlite3.IntegrityError):
            add_visits(conn, [*good, broken], source="caja.csv", now=now)
        assert visits_between(conn, start=date(2026, 1, 1), end=date(2026, 12, 31)) == []
        assert add_visits(conn, good, source="caja.csv", now=now) == 500
        assert add_visits(conn, good, source="caja.csv", now=now) == 0


THANKS = """\
    kind: reminder
    channel: email
    date_field: last_visit
    offsets: [2]
    grace_days: 2
    priority: 40
    email:
      subject: "Gracias por venir"
      text: promo.txt.j2
    """
WINBACK = """\
    kind: reminder
    channel: email
    date_field: last_visit
    every_days: 120
    grace_days: 7
    priority: 30
    email:
      subject: "Le echamos de menos"
      text: promo.txt.j2
    """


def test_last_visit_campaigns_read_the_latest_visit_from_the_ledger_when_the_cell_is_older(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace([], campaigns={"thanks.yaml": THANKS, "winback.yaml": WINBACK})
    ws.write(
        "contacts.csv",
        """\
        id,first_name,email,last_visit
        v1,Ana,ana@example.com,
        v2,Berta,berta@example.com,
        v3,Carlos,carlos@example.com,03/08/2026
        v4,Diana,diana@example.com,29/11/2026
        v5,Elena,elena@example.com,
        """,
    )
    # The till's export: v1 and v3 came on Sunday 29 November (v3's cell is older), v2 last
    # came 120 days before Tuesday 1 December; v4's own cell is later than the till's line.
    ws.write(
        "caja.csv",
        """\
        date,contact_id,amount
        2026-07-10,v2,20
        2026-08-03,v2,31
        2026-11-29,v1,25
        2026-11-29,v3,40
        2026-08-03,v4,12
        """,
    )
    imported = ws.run("visits", "--import", "caja.csv")
    assert imported.code == 0, imported.err
    expected = [("v1", "thanks"), ("v2", "winback"), ("v3", "thanks"), ("v4", "thanks")]
    plan = ws.run("plan", "--from", "2026-12-01", "--days", "1", "--json")
    assert plan.code == 0, plan.err
    totals = json.loads(plan.out)["totals"]
    assert (totals["thanks"]["emails"], totals["winback"]["emails"]) == (3, 1)
    # v3: the till's later visit wins over the cell's (which would make the win-back due).
    story = json.loads(
        ws.run("plan", "--from", "2026-12-01", "--days", "1", "--contact", "v3", "--json").out
    )["story"]
    assert [(s["campaign"], s["outcome"]) for s in story] == [("thanks", "send")]
    explained = ws.run("explain", "v2", "--date", "2026-12-01")
    assert explained.code == 0, explained.err
    assert "winback: would go today by email" in explained.out
    run = ws.run("run", "--all", "--date", "2026-12-01")
    assert run.code == 0, run.err
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        made = db.execute(
            "SELECT contact_id, campaign FROM messages WHERE status = 'rendered' ORDER BY 1, 2"
        ).fetchall()
    assert made == expected
