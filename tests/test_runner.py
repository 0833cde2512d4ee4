"""The runner as a library: parallel workers give the same result as one process."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import Workspace

from outreach.runner import perform_run
from outreach.workspace import load_workspace

DAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))


def rows(n: int) -> list[str]:
    # Every third contact prefers letters and has an address; every seventh opted out of email;
    # birthdays spread over 23..28 November, so some are due (24..27) and some are not.
    out = []
    for i in range(n):
        letter = i % 3 == 0
        address = f"Calle {i},280{i % 50:02d},Madrid,ES" if letter else ",,,"
        opt = "email" if i % 7 == 0 else ""
        out.append(
            f"c{i:03d},Nombre{i},Apellido,n{i}@example.com,{23 + i % 6}/11/1980,{address},"
            f"{'letter' if letter else ''},,customer,{opt}"
        )
    return out


def outcome(root: Path) -> tuple[dict[str, bytes], list[tuple[object, ...]]]:
    files = {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "out" / "outbox").rglob("*.eml"))
    }
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        ledger = sorted(
            db.execute(
                "SELECT contact_id, campaign, occurrence_key, channel, status, reason, artifact, "
                "message_id FROM messages"
            )
        )
    return files, ledger


def test_parallel_workers_give_the_same_outbox_and_ledger(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = make_workspace(
        rows(120),
        campaigns={
            "birthday.yaml": """\
                kind: birthday
                channel: preferred
                fallback: true
                days_before: 3
                email:
                  subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
                  text: birthday.txt.j2
                  html: birthday.html.j2
                letter:
                  template: letter.html.j2
                """,
        },
        templates={"letter.html.j2": "<p>Hola {{ contact.first_name }}</p>\n"},
    )
    twin = tmp_path / "twin"
    shutil.copytree(ws.root, twin)
    results = {}
    for root, workers in ((ws.root, 1), (twin, 2)):
        workspace = load_workspace(root / "config.yaml")
        summary = perform_run(workspace=workspace, today=DAY, now=NOW, workers=workers)
        results[workers] = (summary.as_dict(), outcome(root))
    one, two = results[1], results[2]
    assert one[0]["campaigns"] == two[0]["campaigns"]
    assert one[1] == two[1]
    birthday = one[0]["campaigns"][0]
    # Due: birthdays 24..27 (i % 6 in 1..4) = 80 of 120. Of those, opted out of email
    # (i % 7 == 0) and not letter-preferring are skipped; the rest get an email or a letter.
    due = [i for i in range(120) if i % 6 in (1, 2, 3, 4)]
    skipped = [i for i in due if i % 7 == 0 and i % 3 != 0]
    letters = [i for i in due if i % 3 == 0]
    assert birthday["due"] == len(due) == 80
    assert birthday["letters"] == len(letters)
    assert birthday["emails"] == len(due) - len(skipped) - len(letters)
    assert len(one[1][0]) == birthday["emails"]
