"""The runner as a library: parallel workers give the same result as one process."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import Workspace

from outreach.pipeline.run import RunOptions, RunRequest, perform_run
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
        summary = perform_run(
            workspace, RunRequest(today=DAY, now=NOW, options=RunOptions(workers=workers))
        )
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


def test_a_run_streaming_the_contacts_matches_a_run_on_the_whole_list(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    problem_rows = [
        "C005,Again,Apellido,again@example.com,24/11/1980,,,,,,,,",  # c005's id, other case
        "c200,Mala,Apellido,not-an-email,25/11/1980,,,,,,,,",  # no email: skipped
        "c201,Fecha,Apellido,f@example.com,31/02/1980,,,,,,,,",  # no birthday
        "c202,Larga,Apellido,l@example.com,24/11/1980,,,,,,,,,,,surplus",  # shifted cells
        "bad id!,Mal,Apellido,m@example.com,24/11/1980,,,,,,,,",
    ]
    ws = make_workspace(
        [*rows(60), *problem_rows, *rows(120)[60:]],
        campaigns={
            "birthday.yaml": """\
                kind: birthday
                channel: preferred
                fallback: true
                days_before: 3
                email:
                  subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
                  text: birthday.txt.j2
                letter:
                  template: letter.html.j2
                """,
        },
        templates={"letter.html.j2": "<p>Hola {{ contact.first_name }}</p>\n"},
    )
    results = {}
    for name, workers in (("streamed", 1), ("streamed-parallel", 2), ("listed", 1)):
        root = tmp_path / name
        shutil.copytree(ws.root, root)
        workspace = load_workspace(root / "config.yaml")
        if name == "listed":
            # As runs read contacts before: the whole list first (the run then takes it).
            assert len(workspace.contacts.contacts) == 120 + 2
        summary = perform_run(
            workspace, RunRequest(today=DAY, now=NOW, options=RunOptions(workers=workers))
        )
        report = summary.as_dict()
        # Wall-clock times differ from run to run; everything else must not.
        assert report.pop("started_at") <= report.pop("ended_at")
        problems = [p.as_dict() for p in summary.problems]
        for problem in problems:
            assert problem.pop("path") == str(root / "contacts.csv")
        report["problems"] = problems
        results[name] = (report, outcome(root))
    streamed = results["streamed"]
    assert results["streamed-parallel"] == streamed
    listed_summary, listed_outcome = results["listed"]
    assert streamed[1] == listed_outcome
    for key in ("campaigns", "problems"):
        assert streamed[0][key] == listed_summary[key], key
    reported = {(p.line, p.field, p.message) for p in summary.problems}  # the last, "listed"
    assert (
        62,
        "id",
        "id 'C005' is already used on line 7 (as 'c005'; case does not count), so this row "
        "is left out",
    ) in reported
    assert {line for line, _, _ in reported} == {62, 63, 64, 65, 66}
    ids = {row[0] for row in streamed[1][1]}
    assert {"c200", "c201", "c202"} & ids == {"c200"}  # skipped for its email; the rest not due
