"""`outreach export` and `outreach forget` (issue 23) on the sample workspace: what is held
about a person, erased from out/ and state/ down to the bytes, and never mailed again."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pdfplumber
import psycopg
import pytest
from conftest import Workspace

from outreach.ledger import open_ledger
from outreach.ledger.privacy import suppress_forgotten
from outreach.model.config import load_settings
from outreach.privacy import find_person
from outreach.rules.legal import forgotten_key

DAY = "2026-11-24"
# c002 Begoña Arrieta Goñi: a birthday email on 24 Nov; c005 Carmen Ruiz de la Peña: a birthday
# letter (26 Nov) in the batch with the other letters of the run.


def _everything(root: Path) -> bytes:
    return b"".join(
        path.read_bytes()
        for folder in ("out", "state")
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    )


def _ran(ws: Workspace) -> None:
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code in (0, 1), result.err


def test_export_shows_rows_messages_and_basis(sample_workspace: Workspace) -> None:
    ws = sample_workspace
    _ran(ws)
    result = ws.run("export", "c002", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert found["contact"] == "c002"
    assert [row["line"] for row in found["rows"]] == [3]
    assert found["rows"][0]["fields"]["email"] == "begona.arrieta@example.org"
    assert found["rows"][0]["fields"]["email_consent"] == "2025-03-01"
    birthday = [m for m in found["messages"] if m["campaign"] == "birthday"]
    assert len(birthday) == 1
    assert birthday[0]["basis"] == "consent 2025-03-01 formulario web"
    assert birthday[0]["artifact"].endswith(".eml")
    text = ws.run("export", "c002")
    assert text.code == 0, text.err
    assert "basis: consent 2025-03-01 formulario web" in text.out
    unknown = ws.run("export", "nobody")
    assert unknown.code == 2
    assert "no contact with id 'nobody'" in unknown.err


def test_forget_erases_to_the_bytes_and_the_row_is_never_mailed_again(
    sample_workspace: Workspace,
) -> None:
    ws = sample_workspace
    _ran(ws)
    root = ws.root
    before = _everything(root)
    assert b"begona.arrieta@example.org" in before
    letters = sorted((root / "out").rglob("*.pdf"))
    assert letters
    pages_before = {}
    for pdf in letters:
        with pdfplumber.open(pdf) as doc:
            pages_before[pdf] = len(doc.pages)

    unknown = ws.run("forget", "nobody", "--yes")
    assert unknown.code == 2 and "nothing was changed" in unknown.err
    refused = ws.run("forget", "c002")  # no --yes, no answer: nothing happens
    assert refused.code != 0
    assert _everything(root).count(b"begona.arrieta@example.org") > 0

    for contact in ("c002", "c005"):
        result = ws.run("forget", contact, "--yes", "--date", DAY)
        assert result.code == 0, result.err
        assert "delete their row from contacts.csv" in result.out
    assert "rewritten without their pages" in result.out  # c005's letter shared a batch
    everything = _everything(root)
    for needle in ("begona.arrieta@example.org", "Arrieta Goñi", "carmen.ruiz@example.com"):
        assert needle.encode() not in everything, needle
    for pdf in sorted((root / "out").rglob("*.pdf")):
        with pdfplumber.open(pdf) as doc:
            text = "".join(page.extract_text() or "" for page in doc.pages)
            assert "Ruiz de la Peña" not in text
            assert len(doc.pages) == pages_before[pdf] - 1
    audit = (root / "state" / "forgotten.log").read_text(encoding="utf-8").splitlines()
    assert len(audit) == 2 and all(line.startswith(DAY) for line in audit)
    assert "c002" not in "".join(audit) and "Arrieta" not in "".join(audit)

    # The rows are still in the CSV: the next runs make nothing for them.
    again = ws.run("run", "--all", "--date", "2026-11-25")
    assert again.code in (0, 1), again.err
    with closing(sqlite3.connect(root / "state" / "ledger.sqlite")) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM messages WHERE contact_id IN ('c002', 'c005')"
        ).fetchone()[0]
    assert rows == 0
    # validate names the rows that match a forgotten hash.
    checked = ws.run("validate", "--date", "2026-11-25")
    assert "contacts.csv:3" in checked.out + checked.err
    assert "asked to be forgotten" in checked.out + checked.err
    # Forgetting again finishes (or finds nothing left): the same answer, no second audit line.
    repeat = ws.run("forget", "c002", "--yes", "--date", DAY)
    assert repeat.code == 0, repeat.err
    assert len((root / "state" / "forgotten.log").read_text().splitlines()) == 2


def test_forget_cut_short_is_finished_by_running_it_again(sample_workspace: Workspace) -> None:
    ws = sample_workspace
    _ran(ws)
    settings = load_settings(ws.root / "config.yaml")
    person = find_person(settings, "c002")
    # A forget killed after its first step: the hashes are on the suppression list, the rows
    # and files are still there.
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=settings.tz)
    with open_ledger(settings) as ledger:
        keys = [forgotten_key(settings.coupon.secret, key) for key in person.keys]
        suppress_forgotten(ledger, keys, now=moment)
    # No run in between makes anything for them, even with the row in the CSV.
    between = ws.run("run", "--all", "--date", "2026-11-25")
    assert between.code in (0, 1), between.err
    history = json.loads(ws.run("history", "--json", "--contact", "c002").out)["messages"]
    assert history and {m["date"] for m in history} == {DAY}  # nothing on the 25th
    again = ws.run("forget", "c002", "--yes", "--date", DAY)
    assert again.code == 0, again.err
    assert b"begona.arrieta@example.org" not in _everything(ws.root)


def _server_text(url: str) -> dict[str, str]:
    """Every row of every table of the ledger's database, as text, by table."""
    with psycopg.connect(url) as db:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        return {
            table: "\n".join(
                str(row[0]) for row in db.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            )
            for table in tables
        }


def test_export_and_forget_on_postgresql_erase_every_row_on_the_server(
    sample_workspace: Workspace, pg_url: str
) -> None:
    ws = sample_workspace
    env = {"OUTREACH_LEDGER_URL": pg_url}
    # c002's address confirmed by the owner: the run keeps its fingerprint on the server.
    header, *lines = (ws.root / "contacts.csv").read_text(encoding="utf-8").splitlines()
    confirmed = [f"{line},2026-11-20" if line.startswith("c002,") else f"{line}," for line in lines]
    ws.write("contacts.csv", "\n".join([f"{header},address_confirmed", *confirmed]) + "\n")
    result = ws.run("run", "--all", "--date", DAY, env=env)
    assert result.code in (0, 1), result.err
    ws.write("caja.csv", "date,contact_id,amount\n2026-11-28,c002,31\n2026-11-28,c001,12\n")
    assert ws.run("visits", "--import", "caja.csv", env=env).code == 0
    exported = ws.run("export", "c002", "--json", env=env)
    assert exported.code == 0, exported.err
    messages = json.loads(exported.out)["messages"]
    assert [(m["campaign"], m["basis"]) for m in messages if m["campaign"] == "birthday"] == [
        ("birthday", "consent 2025-03-01 formulario web")
    ]
    before = _server_text(pg_url)
    for table in ("messages", "visits", "address_confirmations"):
        assert "c002" in before[table], table

    forgot = ws.run("forget", "c002", "--yes", "--date", DAY, env=env)
    assert forgot.code == 0, forgot.err
    after = _server_text(pg_url)
    for table, text in after.items():
        for needle in ("c002", "begona.arrieta@example.org", "Arrieta"):
            assert needle not in text, (table, needle)
    assert "c001" in after["visits"]  # only theirs went
    assert after["suppressions"].count("forgotten:") == 2  # their id and their address, hashed
    assert b"begona.arrieta@example.org" not in _everything(ws.root)
    # The row is still in the CSV: the next run makes nothing for them on the server.
    again = ws.run("run", "--all", "--date", "2026-11-25", env=env)
    assert again.code in (0, 1), again.err
    assert "c002" not in _server_text(pg_url)["messages"]
    gone = ws.run("export", "c002", "--json", env=env)
    assert gone.code == 0, gone.err  # the row is still in the CSV; the ledger has nothing
    assert json.loads(gone.out)["messages"] == []


# The steps of `outreach forget`, in order, each a point to kill it at (tests/killpoints.py,
# in the forked CLI run: OUTREACH_TEST_KILLPOINT):
# what it is about to do, and so what it has done by then.
# Each with what is done when it dies: (hashes on the list, their email file, their rows).
FORGET_STEPS = [
    ("sql", "INSERT INTO suppressions", 1, (False, True, True)),  # nothing yet
    ("unlink", "out/", 1, (True, True, True)),  # the hashes are on the list, no file erased
    ("sql", "DELETE FROM messages", 1, (True, False, True)),  # their files erased, not rows
    ("sql", "VACUUM", 1, (True, False, False)),  # rows deleted, bytes still in free pages
    ("write", "forgotten.log", 1, (True, False, False)),  # compacted; no audit line yet
]
FORGET = ("forget", "c002", "--yes", "--date", DAY)


def _their_rows(root: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(root / "state" / "ledger.sqlite")) as conn:
        return conn.execute(
            "SELECT campaign, occurrence_key, status, artifact FROM messages "
            "WHERE contact_id = 'c002' ORDER BY 1, 2"
        ).fetchall()


@pytest.mark.slow
def test_forget_killed_at_each_of_its_steps_is_finished_by_running_it_again(
    sample_workspace: Workspace,
) -> None:
    ws = sample_workspace
    _ran(ws)
    email = ws.root / "out" / "outbox" / DAY / "birthday" / "c002.eml"
    for kind, match, nth, done in FORGET_STEPS:
        killed = ws.run(
            *FORGET, env={"OUTREACH_TEST_KILLPOINT": f"{kind} {match} {nth}"}, measured=False
        )
        assert killed.code == -signal.SIGKILL, (kind, match, killed.err)
        with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as conn:
            hashed = conn.execute(
                "SELECT count(*) FROM suppressions WHERE source = 'forget'"
            ).fetchone()[0]
        assert (hashed > 0, email.exists(), bool(_their_rows(ws.root))) == done, (kind, match)
        assert not (ws.root / "state" / "forgotten.log").exists()
        # A run in between (the birthday's window is still open) makes nothing for them: once
        # the hashes are on the list it sees the row as forgotten, before it as already done.
        held = _their_rows(ws.root)
        between = ws.run("run", "--all", "--date", DAY)
        assert between.code in (0, 1), between.err
        assert _their_rows(ws.root) == held, (kind, match)
    assert not _their_rows(ws.root)  # the last kill came after the rows went
    finished = ws.run("forget", "c002", "--yes", "--date", DAY)
    assert finished.code == 0, finished.err
    everything = _everything(ws.root)
    for needle in ("begona.arrieta@example.org", "Arrieta"):
        assert needle.encode() not in everything, needle
    audit = (ws.root / "state" / "forgotten.log").read_text(encoding="utf-8").splitlines()
    assert len(audit) == 1 and audit[0].startswith(DAY)
    assert not list(ws.root.rglob("*.forget-tmp"))


def test_forget_removes_every_page_of_their_letter_by_the_manifest_and_renumbers_it(
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
    ws = make_workspace(
        [
            "c1,Ana,García,,,Calle Mayor 18,28013,Madrid,ES,letter,,customer,",
            "c2,José,Núñez,,,Calle de Serrano 45,28001,Madrid,ES,letter,,customer,",
            "c3,Begoña,Ibáñez,,,Calle de Atocha 3,28012,Madrid,ES,letter,,customer,",
        ],
        config_extra="letters: {duplex: true}\n",
        campaigns={"promo.yaml": promo},
        templates={"letter.html.j2": "<p>Menú de otoño, {{ contact.first_name }}.</p>\n"},
    )
    assert ws.run("run", "--all", "--date", DAY).code == 0
    folder = ws.root / "out" / "letters" / DAY
    # Duplex: each one-page letter has a blank back page, which names nobody.
    with pdfplumber.open(folder / "promo.pdf") as pdf:
        assert len(pdf.pages) == 6
    with (folder / "promo.manifest.csv").open(encoding="utf-8-sig") as handle:
        printed = list(csv.DictReader(handle))
    assert sorted(r["contact_id"] for r in printed) == ["c1", "c2", "c3"]
    # Killed before the new batch is moved into place, then between the batch and its
    # manifest: the old manifest's pages then no longer add up to the batch's, and the next
    # forget finishes the manifest alone (dropping its pages again would cut another letter).
    for point, pages in ((".promo.pdf.tmp", 6), (".promo.manifest.csv.tmp", 4)):
        killed = ws.run(
            "forget",
            "c2",
            "--yes",
            env={"OUTREACH_TEST_KILLPOINT": f"rename {point} 1"},
            measured=False,
        )
        assert killed.code == -signal.SIGKILL, killed.err
        with pdfplumber.open(folder / "promo.pdf") as pdf:
            assert len(pdf.pages) == pages
        with (folder / "promo.manifest.csv").open(encoding="utf-8-sig") as handle:
            assert list(csv.DictReader(handle)) == printed
    result = ws.run("forget", "c2", "--yes", "--date", DAY)
    assert result.code == 0, result.err
    assert "rewritten without their pages" in result.out
    with pdfplumber.open(folder / "promo.pdf") as pdf:
        texts = [page.extract_text() or "" for page in pdf.pages]
    # Their letter and its blank back page went: every letter still starts on a front page.
    assert len(texts) == 4
    assert not texts[1].strip() and not texts[3].strip()
    names = {"c1": "Ana García", "c3": "Begoña Ibáñez"}
    with (folder / "promo.manifest.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["letter"], r["first_page"], r["pages"]) for r in rows] == [
        ("1", "1", "2"),
        ("2", "3", "2"),
    ]
    assert [r["contact_id"] for r in rows] == [
        r["contact_id"] for r in printed if r["contact_id"] != "c2"
    ]
    for row in rows:  # each row points at its own letter in the new batch
        assert names[row["contact_id"]] in texts[int(row["first_page"]) - 1]
    postage = (folder / "promo.postage.csv").read_text(encoding="utf-8-sig")
    assert postage.splitlines()[-1].startswith("total,,2,")
    everything = _everything(ws.root)
    for needle in ("Núñez", "Calle de Serrano"):
        assert needle.encode() not in everything, needle
    # Again: nothing more to do, and the batch is left as it is.
    before = (folder / "promo.pdf").read_bytes()
    assert ws.run("forget", "c2", "--yes", "--date", DAY).code == 0
    assert (folder / "promo.pdf").read_bytes() == before
