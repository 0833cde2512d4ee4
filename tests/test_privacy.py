"""`outreach export` and `outreach forget` (issue 23) on the sample workspace: what is held
about a person, erased from out/ and state/ down to the bytes, and never mailed again."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pdfplumber
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
