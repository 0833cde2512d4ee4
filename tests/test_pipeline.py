"""One pipeline: validate, the dry run and explain say what the run then does.

Each test here is one of the divergences the rehearsals used to have: the run refusing a
letter that validate, the dry run and explain had passed; a refusal recorded as a skip; the
run not saying whom it held back; explain promising a retry that never comes; times made of
`--date` and the clock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from conftest import Workspace

from outreach.ledger import Ledger, MessageRecord

DAY = "2026-11-24"  # birthdays on the 26th: letters posted today arrive by then
LONG_STREET = "Calle de " + "la Muy Larga y Ancha Avenida " * 4 + "12"
ROWS = [
    "c1,Ana,García,ana@example.com,26/11/1980,Calle Mayor 1,28013,Madrid,ES,letter,es,customer,",
    f"c2,Luis,Pérez,luis@example.com,26/11/1980,{LONG_STREET},28013,Madrid,ES,letter,es,customer,",
    "c3,Eva,Ruiz,eva@example.com,26/11/1980,,,,ES,letter,es,customer,",
]
LETTER_CAMPAIGN = {
    "birthday.yaml": """\
        kind: birthday
        channel: letter
        days_before: 3
        letter:
          template: letter.html.j2
        """,
}
LETTER_TEMPLATES = {"letter.html.j2": "<p>Feliz cumpleaños, {{ contact.first_name }}</p>\n"}


def letters_workspace(make_workspace: Callable[..., Workspace]) -> Workspace:
    return make_workspace(ROWS, campaigns=LETTER_CAMPAIGN, templates=LETTER_TEMPLATES)


@pytest.mark.slow
def test_a_letter_the_window_refuses_is_refused_by_every_rehearsal_and_recorded_failed(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = letters_workspace(make_workspace)
    # validate lays every letter due within a year out for real (this year's birthday and
    # next year's): c2's street does not fit the window, c3 has no address.
    checked = ws.run("validate", "--date", DAY, "--json")
    report = json.loads(checked.out)
    assert (
        "campaign birthday (birthday, letter): 3 in the audience, 2 rendered, 2 failed"
        in (report["summary"])
    )
    refused = [w for w in report["warnings"] if w.get("contact_id") == "c2"]
    assert refused and "mm" in refused[0]["message"], report["warnings"]
    # The dry run says the same, and writes nothing.
    dry = ws.run("run", "--all", "--date", DAY, "--dry-run", "--json")
    assert dry.code == 1, dry.err
    (dry_birthday,) = json.loads(dry.out)["campaigns"]
    assert (dry_birthday["letters"], dry_birthday["failed"]) == (1, 1)
    assert not (ws.root / "out").exists()
    # explain says it would fail, not "would go today by letter".
    told = ws.run("explain", "c2", "--date", DAY)
    assert told.code == 0, told.err
    assert "birthday: would fail today by letter: the letter does not fit its envelope" in told.out
    assert "would go today by letter" in ws.run("explain", "c1", "--date", DAY).out
    # The run does what they said, records the refusal as failed, and names both held back.
    real = ws.run("run", "--all", "--date", DAY)
    assert real.code == 1, real.err
    assert "failed in birthday: 1 letter does not fit its envelope: c2 (contacts.csv line 3)" in (
        real.out
    )
    assert "skipped in birthday: 1 incomplete postal address: c3 (contacts.csv line 4)" in real.out
    history = ws.run("history", "--status", "failed", "--json")
    rows = json.loads(history.out)
    rows = rows["messages"] if isinstance(rows, dict) else rows
    assert [(r["contact"], r["status"]) for r in rows] == [("c2", "failed")], history.out
    # A letter that failed before it was made is made again by the next run (once fixed).
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        (artifact,) = db.execute("SELECT artifact FROM messages WHERE contact_id = 'c2'").fetchone()
    assert artifact is None


def test_explain_of_a_permanent_refusal_does_not_promise_a_retry(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(
        ["c1,Ana,García,ana@example.com,26/11/1980,,,,,,es,customer,"],
    )
    assert ws.run("run", "--all", "--date", DAY).code == 0
    with Ledger.open(ws.root / "state" / "ledger.sqlite") as ledger:
        ledger.set_status(
            contact_id="c1",
            campaign="birthday",
            occurrence_key="birthday:2026",
            status="failed",
            error="550 5.1.1 no such user",
            reason="permanent",
            now=datetime(2026, 11, 24, 10, tzinfo=UTC),
        )
    told = ws.run("explain", "c1", "--date", DAY)
    assert "failed for good on 2026-11-24: the mail server refused it: 550 5.1.1" in told.out
    assert "tries it again" not in told.out
    # And indeed `send` leaves it alone: nothing waits to be sent.
    with Ledger.open(ws.root / "state" / "ledger.sqlite") as ledger:
        assert ledger.waiting_emails(today=date(2026, 11, 24)) == []


def test_a_run_is_stamped_with_real_times_not_its_date(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(["c1,Ana,García,ana@example.com,26/11/1980,,,,,,es,customer,"])
    before = datetime.now(UTC)
    result = ws.run("run", "--all", "--date", DAY, "--json")
    after = datetime.now(UTC)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    started = datetime.fromisoformat(summary["started_at"])
    ended = datetime.fromisoformat(summary["ended_at"])
    assert summary["date"] == DAY
    # The wall clock, not --date at the time of day: this run happened between these two.
    assert before <= started <= ended <= after
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as db:
        run_date, start_text, end_text = db.execute(
            "SELECT run_date, started_at, ended_at FROM runs"
        ).fetchone()
    assert run_date == DAY
    # The ledger keeps whole seconds.
    assert abs((datetime.fromisoformat(start_text) - started).total_seconds()) < 1
    assert abs((datetime.fromisoformat(end_text) - ended).total_seconds()) < 1


def test_messages_carry_their_records_in_the_store() -> None:
    """A rehearsal's in-memory ledger records by the ledger's rules: done, waiting, counted."""
    store = Ledger.in_memory()
    day = date(2026, 11, 24)
    moment = datetime(2026, 11, 24, 9, tzinfo=UTC)

    def row(status: str, *, artifact: str | None = None, latest: date = day) -> MessageRecord:
        return MessageRecord(
            contact_id="c1",
            campaign="birthday",
            occurrence_key="birthday:2026",
            channel="email",
            status=status,
            run_date=day,
            latest=latest,
            artifact=artifact,
            updated_at=moment,
        )

    store.record([row("deferred")])
    assert store.done_for("birthday") == {}
    assert [r.status for r in store.close_windows(today=day, now=moment, run_id=1)] == []
    missed = store.close_windows(today=date(2026, 11, 25), now=moment, run_id=2)
    assert [(r.status, r.run_date) for r in missed] == [("missed", date(2026, 11, 25))]
    assert store.done_for("birthday") == {("c1", "birthday:2026"): "missed"}
    # A failure before the message existed is not done; one with its file is (send retries).
    store.record([row("failed")])
    assert store.done_for("birthday") == {}
    store.record([row("failed", artifact="out/x.eml")])
    assert store.done_for("birthday") == {("c1", "birthday:2026"): "failed"}
    store.record([row("rendered", artifact="out/x.eml")])
    assert [m.campaign for m in store.history(since=day)["c1"]] == ["birthday"]


@pytest.mark.slow
def test_a_letter_abroad_whose_return_line_overflows_is_caught_before_the_run(
    sample_workspace: Workspace,
) -> None:
    """A sender's return line that fits at home but not with the country added for a letter
    to Britain: validate and explain say so before the run, and the run agrees."""
    ws = sample_workspace
    config = (ws.root / "config.yaml").read_text(encoding="utf-8")
    longer = config.replace(
        "street: Calle de la Cava Baja, 12", "street: Calle de la Cava Baja, 12, bajo izquierda"
    )
    assert longer != config
    (ws.root / "config.yaml").write_text(longer, encoding="utf-8")
    with open(ws.root / "contacts.csv", "a", encoding="utf-8") as handle:
        handle.write(
            "c900,Oliver,Hughes,Mr,,26/11/1970,12 Baker Street,,NW1 6XE,London,GB,letter,en,"
            "customer,,,\n"
        )
    checked = json.loads(ws.run("validate", "--date", DAY, "--json").out)
    refused = [w for w in checked["warnings"] if w.get("contact_id") == "c900"]
    assert refused and "return address" in refused[0]["message"], checked["warnings"]
    told = ws.run("explain", "c900", "--date", DAY).out
    assert "birthday: would fail today by letter" in told, told
    real = ws.run("run", "--all", "--date", DAY, "--json")
    assert real.code == 1
    (birthday,) = [c for c in json.loads(real.out)["campaigns"] if c["name"] == "birthday"]
    assert [(h["outcome"], h["contact"], h["reason"]["code"]) for h in birthday["held_back"]] == [
        ("skipped", "c016", "opted_out"),
        ("skipped", "c023", "opted_out"),
        ("failed", "c900", "layout_failed"),
    ]
