"""The SQLite ledger, its migrations, the suppression list and the workspace lock."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import unmeasured_env
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.ledger import (
    DONE_STATUSES,
    MIGRATIONS,
    SCHEMA_VERSION,
    STATUSES,
    Ledger,
    MessageRecord,
    WorkspaceLock,
    acquire_lock,
    apply_migrations,
)
from outreach.model.errors import LedgerError, LockError
from outreach.shards import Shard, shard_of

RUN_DAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 9, 0, 1, tzinfo=UTC)


def message(
    contact_id: str = "c-001",
    campaign: str = "birthday",
    key: str = "birthday:2026",
    **fields: object,
) -> MessageRecord:
    """A rendered email for RUN_DAY, with any field overridden."""
    values: dict[str, object] = {
        "channel": "email",
        "status": "rendered",
        "run_date": RUN_DAY,
        "updated_at": NOW,
    }
    values.update(fields)
    return MessageRecord(contact_id=contact_id, campaign=campaign, occurrence_key=key, **values)  # type: ignore[arg-type]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, ledger_path: Path) -> Iterator[Ledger]:
    """The ledger on each store: a SQLite file, and a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        with Ledger.open(ledger_path) as led:
            yield led
    else:
        with Ledger.connect(request.getfixturevalue("pg_url")) as led:
            yield led


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection, to look at the file as another program would."""
    return sqlite3.connect(path)


# -- schema and migrations ---------------------------------------------------------------------


def test_open_creates_folders_and_versioned_schema(ledger_path: Path) -> None:
    with Ledger.open(ledger_path):
        pass
    conn = raw(ledger_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"messages", "runs", "suppressions", "blocks", "bounce_events"} <= tables
        assert {"replies", "undone", "visits", "address_confirmations"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"messages_by_contact", "messages_by_effective_date"} <= indexes
    finally:
        conn.close()


def test_reopening_keeps_rows_and_does_not_migrate_again(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as led:
        led.record([message()])
    with Ledger.open(ledger_path) as led:
        assert led.statuses_for("birthday") == {("c-001", "birthday:2026"): "rendered"}


def test_a_ledger_newer_than_the_code_is_refused_with_a_hint(ledger_path: Path) -> None:
    with Ledger.open(ledger_path):
        pass
    conn = raw(ledger_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for readonly in (False, True):
        with pytest.raises(LedgerError) as caught:
            Ledger.open(ledger_path, readonly=readonly)
        assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
        assert caught.value.hint is not None and "upgrade" in caught.value.hint
        assert caught.value.path == str(ledger_path)


def _add_note_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE messages ADD COLUMN note TEXT")
    conn.execute("UPDATE messages SET note = 'from v1'")


def test_migrations_bring_an_older_ledger_up_to_date_keeping_rows(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as led:  # a current ledger with a row in it
        led.record([message()])
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    try:
        version = apply_migrations(
            conn, path=ledger_path, migrations=(*MIGRATIONS, _add_note_column)
        )
        assert version == SCHEMA_VERSION + 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert conn.execute("SELECT contact_id, note FROM messages").fetchall() == [
            ("c-001", "from v1")
        ]
    finally:
        conn.close()


def test_a_version_1_ledger_gains_the_waiting_index_and_keeps_its_rows(ledger_path: Path) -> None:
    ledger_path.parent.mkdir()
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    apply_migrations(conn, path=ledger_path, migrations=MIGRATIONS[:1])
    conn.close()
    with Ledger.open(ledger_path) as led:
        led.record([message()])
    with Ledger.open(ledger_path) as led:
        assert len(led.messages()) == 1
    conn = raw(ledger_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE status = 'deferred' AND latest < '2027'"
        ).fetchall()
        assert "messages_waiting" in str(plan)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE status = 'uncertain' AND latest >= '2027'"
        ).fetchall()
        assert "messages_waiting" in str(plan)
    finally:
        conn.close()


def test_a_failing_migration_leaves_the_ledger_as_it_was(ledger_path: Path) -> None:
    with Ledger.open(ledger_path):
        pass

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("ALTER TABLE no_such_table ADD COLUMN y")

    conn = sqlite3.connect(ledger_path, isolation_level=None)
    try:
        with pytest.raises(LedgerError, match="no such table"):
            apply_migrations(conn, path=ledger_path, migrations=(*MIGRATIONS, broken))
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        assert "half_done" not in names
    finally:
        conn.close()


def test_rows_written_before_reason_codes_get_theirs_from_the_sentences(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, path=path, migrations=MIGRATIONS[:5])
    sentences = {
        "c1": ("deferred", "quiet day (sun)"),
        "c2": ("deferred", "promotion on 2026-11-20 is 1 day before; min_gap_days 7"),
        "c3": ("missed", "window closed while deferred: 4 messages; max_messages 4"),
        "c4": ("missed", "window closed before it was sent"),
        "c5": ("skipped", "opted out (email)"),
        "c6": ("failed", "permanent"),
    }
    for cid, (status, reason) in sentences.items():
        conn.execute(
            "INSERT INTO messages (contact_id, campaign, occurrence_key, channel, status, "
            "run_date, effective_date, reason, created_at, updated_at) "
            "VALUES (?, 'promo', 'promotion', 'email', ?, '2026-11-24', '2026-11-24', ?, "
            "'2026-11-24T09:00:00+00:00', '2026-11-24T09:00:00+00:00')",
            (cid, status, reason),
        )
    conn.close()
    with Ledger.open(path) as led:
        codes = {m.contact_id: m.reason_code for m in led.messages()}
        # c3 keeps the code of what deferred it; a failure's reason is not a hold-back
        assert codes == {
            "c1": "quiet_day",
            "c2": "min_gap",
            "c3": "max_messages",
            "c4": "window_closed",
            "c5": "opted_out",
            "c6": None,
        }
        assert [m.reason for m in led.messages() if m.contact_id == "c2"] == [sentences["c2"][1]]


def test_a_fresh_file_gets_every_migration_from_zero(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    try:
        migrations = (*MIGRATIONS, _add_note_column)
        assert apply_migrations(conn, path="x", migrations=migrations) == len(migrations)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
        assert "note" in columns
    finally:
        conn.close()


def test_another_programs_sqlite_file_is_not_taken_for_a_ledger(ledger_path: Path) -> None:
    ledger_path.parent.mkdir()
    conn = raw(ledger_path)
    conn.execute("CREATE TABLE contacts (id)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="not an outreach ledger"):
        Ledger.open(ledger_path)


def test_a_file_that_is_not_sqlite_is_a_ledger_error(ledger_path: Path) -> None:
    ledger_path.parent.mkdir()
    ledger_path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    for readonly in (False, True):
        with pytest.raises(LedgerError) as caught:
            Ledger.open(ledger_path, readonly=readonly)
        assert caught.value.hint is not None


# -- messages ----------------------------------------------------------------------------------


def test_one_row_per_message_and_upsert_keeps_created_at(ledger: Ledger) -> None:
    later = NOW + timedelta(days=1)
    ledger.record([message(status="failed", error="disk full")])
    ledger.record(
        [
            message(
                status="rendered",
                artifact="out/x.eml",
                run_date=RUN_DAY + timedelta(days=1),
                updated_at=later,
            )
        ]
    )
    rows = ledger._query(
        "SELECT status, error, artifact, run_date, created_at, updated_at FROM messages"
    )
    assert [tuple(row) for row in rows] == [
        (
            "rendered",
            None,  # the old error does not linger on a rendered message
            "out/x.eml",
            "2026-11-25",
            "2026-11-24T09:00:01+00:00",
            "2026-11-25T09:00:01+00:00",
        )
    ]


def test_the_same_occurrence_for_another_contact_or_campaign_is_another_row(ledger: Ledger) -> None:
    ledger.record(
        [
            message("c-001", "birthday", "birthday:2026"),
            message("c-002", "birthday", "birthday:2026"),
            message("c-001", "promo", "birthday:2026"),
            message("c-001", "birthday", "birthday:2027"),
        ]
    )
    assert len(ledger.messages()) == 4


def test_messages_round_trip_every_field(ledger: Ledger) -> None:
    full = MessageRecord(
        contact_id="c-009",
        campaign="reminder",
        occurrence_key="reminder:2026-12-01:-7",
        channel="letter",
        status="sent",
        run_date=RUN_DAY,
        event_date=date(2026, 12, 1),
        earliest=date(2026, 11, 24),
        latest=date(2026, 11, 26),
        artifact="out/letters/2026-11-24/reminder/batch.pdf",
        message_id="abc@casalucia.example",
        reason=None,
        error=None,
        essential=True,
        effective_date=date(2026, 11, 26),
        updated_at=NOW,
    )
    ledger.record([full])
    assert ledger.messages() == [full]


def test_effective_date_defaults_to_the_run_date(ledger: Ledger) -> None:
    ledger.record([message(effective_date=None)])
    assert ledger.messages()[0].effective_date == RUN_DAY


def test_records_without_a_time_take_their_runs_start(ledger: Ledger) -> None:
    started = datetime(2026, 11, 24, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    run_id = ledger.begin_run(run_date=RUN_DAY, started_at=started, args=["run", "--all"])
    ledger.record([message(updated_at=None)], run_id=run_id)
    assert ledger.messages()[0].updated_at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="updated_at or a run_id"):
        ledger.record([message("c-002", updated_at=None)])
    with pytest.raises(LedgerError, match="no run 99"):
        ledger.record([message("c-003", updated_at=None)], run_id=99)


def test_record_is_one_transaction(ledger: Ledger) -> None:
    batch = [message("c-001"), message("c-002", status="posted"), message("c-003")]
    with pytest.raises(LedgerError, match=r"(?i)CHECK constraint"):
        ledger.record(batch)
    assert ledger.messages() == []
    ledger.record([message("c-004")])  # the ledger is still usable
    assert [m.contact_id for m in ledger.messages()] == ["c-004"]


def test_statuses_for_one_campaign(ledger: Ledger) -> None:
    ledger.record(
        [
            message("c-001", "birthday", "birthday:2026", status="sent"),
            message("c-002", "birthday", "birthday:2026", status="deferred"),
            message("c-001", "birthday", "birthday:2025", status="missed"),
            message("c-001", "promo", "promotion", status="rendered"),
        ]
    )
    assert ledger.statuses_for("birthday") == {
        ("c-001", "birthday:2026"): "sent",
        ("c-002", "birthday:2026"): "deferred",
        ("c-001", "birthday:2025"): "missed",
    }
    assert ledger.statuses_for("nothing") == {}


def test_set_status_changes_one_message_and_clears_its_error(ledger: Ledger) -> None:
    ledger.record([message(status="sending"), message("c-002", status="sending")])
    later = NOW + timedelta(minutes=5)
    ledger.set_status(
        contact_id="c-001",
        campaign="birthday",
        occurrence_key="birthday:2026",
        status="failed",
        error="450 mailbox busy",
        now=later,
    )
    ledger.set_status(
        contact_id="c-001",
        campaign="birthday",
        occurrence_key="birthday:2026",
        status="sent",
        now=later,
    )
    first, second = ledger.messages()
    assert (first.status, first.error, first.updated_at) == ("sent", None, later)
    assert (second.status, second.updated_at) == ("sending", NOW)
    with pytest.raises(LedgerError, match="no message"):
        ledger.set_status(
            contact_id="c-404", campaign="birthday", occurrence_key="x", status="sent", now=NOW
        )
    with pytest.raises(ValueError, match="unknown status"):
        ledger.set_status(
            contact_id="c-001",
            campaign="birthday",
            occurrence_key="birthday:2026",
            status="posted",
            now=NOW,
        )


def test_settle_interrupted_turns_sending_into_uncertain(ledger: Ledger) -> None:
    ledger.record([message("c-001", status="sending"), message("c-002", status="sent")])
    assert ledger.settle_interrupted(now=NOW) == 1
    statuses = {m.contact_id: m.status for m in ledger.messages()}
    assert statuses == {"c-001": "uncertain", "c-002": "sent"}
    assert "uncertain" in DONE_STATUSES  # never resent automatically


def test_a_sharded_ledger_settles_closes_and_sends_only_its_own_shards_messages(
    ledger: Ledger,
) -> None:
    ids = [f"c-{i:03d}" for i in range(40)]
    mine = {cid for cid in ids if shard_of(cid, 2) == 1}
    assert 0 < len(mine) < len(ids)
    window = {"earliest": RUN_DAY, "latest": RUN_DAY + timedelta(days=3)}
    ledger.record(
        [message(cid, key="birthday:2026", status="sending", **window) for cid in ids]
        + [message(cid, key="promo", status="rendered", **window) for cid in ids]
        + [
            message(cid, key="old", status="deferred", latest=RUN_DAY - timedelta(days=1))
            for cid in ids
        ]
    )
    mine_run = ledger.begin_run(run_date=RUN_DAY, started_at=NOW, args=["run"])
    ledger.shard = Shard(1, 2)
    other_run = ledger.begin_run(run_date=RUN_DAY, started_at=NOW, args=["run", "--shard"])
    # Only its own shard's dead runs, and only its own contacts' messages.
    assert ledger.interrupted_runs() == [(other_run, RUN_DAY)]
    assert ledger.settle_interrupted(now=NOW) == len(mine)
    assert {m.contact_id for m in ledger.waiting_emails(today=RUN_DAY)} == mine
    closed = ledger.close_windows(today=RUN_DAY, now=NOW, run_id=other_run)
    assert {m.contact_id for m in closed} == mine and {m.status for m in closed} == {"missed"}
    ledger.shard = None
    counts = ledger.count_messages(statuses=["uncertain", "sending", "missed", "deferred"])
    others = len(ids) - len(mine)
    assert counts == {
        "uncertain": len(mine),
        "sending": others,
        "missed": len(mine),
        "deferred": others,
    }
    assert [run_id for run_id, _ in ledger.interrupted_runs()] == [mine_run, other_run]


def test_messages_filters(ledger: Ledger) -> None:
    ledger.record(
        [
            message("c-001", "birthday", status="sent", run_date=date(2026, 11, 1)),
            message("c-001", "promo", "promotion", status="skipped", reason="opted out"),
            message("c-002", "birthday", status="failed", error="boom"),
        ]
    )
    keys = lambda found: [(m.contact_id, m.campaign) for m in found]  # noqa: E731
    assert keys(ledger.messages(contact_id="c-001")) == [("c-001", "birthday"), ("c-001", "promo")]
    assert keys(ledger.messages(campaign="birthday")) == [
        ("c-001", "birthday"),
        ("c-002", "birthday"),
    ]
    assert keys(ledger.messages(since=RUN_DAY)) == [("c-001", "promo"), ("c-002", "birthday")]
    assert keys(ledger.messages(statuses=["failed", "skipped"])) == [
        ("c-001", "promo"),
        ("c-002", "birthday"),
    ]
    assert ledger.messages(statuses=[]) == []
    assert keys(ledger.messages(contact_id="c-001", campaign="promo")) == [("c-001", "promo")]
    assert ledger.messages(campaign="promo")[0].reason == "opted out"


def test_contact_pressure_counts_what_reached_the_contact_since_a_day(ledger: Ledger) -> None:
    ledger.record(
        [
            message("c-001", "old", "k", status="sent", effective_date=date(2026, 10, 1)),
            message("c-001", "birthday", "k", status="sent", effective_date=date(2026, 11, 20)),
            message(
                "c-001",
                "letter",
                "k",
                status="rendered",
                channel="letter",
                effective_date=date(2026, 11, 26),
            ),  # still in the post
            message(
                "c-001",
                "reminder",
                "k",
                status="uncertain",
                essential=True,
                effective_date=date(2026, 11, 10),
            ),
            message("c-001", "sending", "k", status="sending", effective_date=date(2026, 11, 22)),
            message("c-002", "promo", "k", status="deferred", effective_date=date(2026, 11, 20)),
            message("c-002", "birthday", "k", status="failed", effective_date=date(2026, 11, 20)),
            message("c-002", "x", "k", status="skipped", effective_date=date(2026, 11, 20)),
            message("c-002", "y", "k", status="missed", effective_date=date(2026, 11, 20)),
            message("c-003", "promo", "k", status="sent", effective_date=date(2026, 11, 1)),
        ]
    )
    assert ledger.contact_pressure(since=date(2026, 11, 1)) == {
        "c-001": [
            (date(2026, 11, 10), "reminder", True),
            (date(2026, 11, 20), "birthday", False),
            (date(2026, 11, 22), "sending", False),
            (date(2026, 11, 26), "letter", False),
        ],
        "c-003": [(date(2026, 11, 1), "promo", False)],
    }
    assert ledger.contact_pressure(since=date(2026, 12, 1)) == {}


# -- suppressions --------------------------------------------------------------------------


def test_suppressions_are_case_insensitive_and_not_duplicated(ledger: Ledger) -> None:
    assert ledger.suppress(" Ana@Example.COM ", channel="email", source="cli", now=NOW) is True
    assert ledger.suppress("ana@example.com", channel="email", source="link", now=NOW) is False
    assert ledger.suppress("ANA@example.com", channel="letter", source="cli", now=NOW) is True
    assert ledger.suppress("C-007", channel="all", source="cli", now=NOW) is True
    assert ledger.suppress("c-007", channel="email", source="cli", now=NOW) is False  # covered
    assert ledger.suppressions() == {
        "ana@example.com": frozenset({"email", "letter"}),
        "c-007": frozenset({"all"}),
    }


def test_suppress_rejects_bad_input(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="unknown channel"):
        ledger.suppress("a@b.example", channel="sms", source="cli", now=NOW)
    with pytest.raises(LedgerError, match="nothing to unsubscribe"):
        ledger.suppress("  ", channel="all", source="cli", now=NOW)
    assert ledger.suppressions() == {}


# -- runs ----------------------------------------------------------------------------------


def test_runs_are_recorded_newest_first(ledger: Ledger) -> None:
    first = ledger.begin_run(run_date=RUN_DAY, started_at=NOW, args=["run", "--all"])
    ledger.end_run(
        first, ended_at=NOW + timedelta(seconds=3), counts={"rendered": 2, "by": {"x": 1}}
    )
    second = ledger.begin_run(
        run_date=RUN_DAY + timedelta(days=1), started_at=NOW + timedelta(days=1), args=["run"]
    )
    runs = ledger.runs()
    assert [r["id"] for r in runs] == [second, first]
    assert runs[1] == {
        "id": first,
        "run_date": RUN_DAY,
        "started_at": NOW,
        "ended_at": NOW + timedelta(seconds=3),
        "args": ["run", "--all"],
        "counts": {"by": {"x": 1}, "rendered": 2},
        "pid": os.getpid(),
    }
    assert runs[0]["ended_at"] is None and runs[0]["counts"] is None  # still running (or died)
    assert [r["id"] for r in ledger.runs(limit=1)] == [second]
    with pytest.raises(LedgerError, match="no run 42"):
        ledger.end_run(42, ended_at=NOW, counts={})


def test_times_are_stored_as_utc_iso_strings(ledger: Ledger) -> None:
    madrid = timezone(timedelta(hours=1))
    run_id = ledger.begin_run(
        run_date=RUN_DAY, started_at=datetime(2026, 11, 24, 10, 0, 1, tzinfo=madrid), args=[]
    )
    stored = ledger._query("SELECT started_at FROM runs WHERE id = ?", (run_id,))
    assert [tuple(row) for row in stored] == [("2026-11-24T09:00:01+00:00",)]


# -- read-only (dry runs, plans) ------------------------------------------------------------


def test_readonly_on_a_missing_file_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    with Ledger.open(path, readonly=True) as led:
        assert led.statuses_for("birthday") == {}
        run_id = led.begin_run(run_date=RUN_DAY, started_at=NOW, args=["run", "--dry-run"])
        led.record([message()], run_id=run_id)  # a dry run goes through the same steps
        assert led.statuses_for("birthday") == {("c-001", "birthday:2026"): "rendered"}
        assert list(tmp_path.iterdir()) == []
    assert list(tmp_path.iterdir()) == []


def test_readonly_copies_an_existing_ledger_and_never_changes_it(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as led:
        led.record([message("c-001", status="sent")])
    before = {p.name: p.read_bytes() for p in ledger_path.parent.iterdir()}
    with Ledger.open(ledger_path, readonly=True) as led:
        assert led.statuses_for("birthday") == {("c-001", "birthday:2026"): "sent"}
        led.record([message("c-002")])
        led.suppress("c-001", channel="all", source="dry", now=NOW)
        assert len(led.messages()) == 2
    after = {p.name: p.read_bytes() for p in ledger_path.parent.iterdir()}
    assert after == before  # no -wal or -shm appeared, and the file is byte for byte the same
    with Ledger.open(ledger_path) as led:
        assert [m.contact_id for m in led.messages()] == ["c-001"]
        assert led.suppressions() == {}


def test_a_large_readonly_ledger_is_copied_to_a_private_temporary_file(
    ledger_path: Path,
) -> None:
    with Ledger.open(ledger_path) as led:
        led.record([message()])
    before = ledger_path.read_bytes()
    folder = sorted(p.name for p in ledger_path.parent.iterdir())
    with Ledger.open(ledger_path, readonly=True, memory_copy_limit=0) as led:
        # Not an in-memory database (journal "memory") but SQLite's private temporary file.
        assert led._conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [m.contact_id for m in led.messages()] == ["c-001"]
        led.record([message(contact_id="c-002")])
        assert len(led.messages()) == 2
        assert sorted(p.name for p in ledger_path.parent.iterdir()) == folder
    assert ledger_path.read_bytes() == before
    with Ledger.open(ledger_path) as led:
        assert [m.contact_id for m in led.messages()] == ["c-001"]


def test_a_small_readonly_ledger_is_copied_into_memory(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as led:
        led.record([message()])
    with Ledger.open(ledger_path, readonly=True) as led:
        assert led._conn.execute("PRAGMA journal_mode").fetchone()[0] == "memory"


def test_readonly_sees_commits_still_in_the_write_ahead_log(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as writer:
        writer.record([message("c-001")])
        assert ledger_path.with_name("ledger.sqlite-wal").exists()  # not checkpointed yet
        with Ledger.open(ledger_path, readonly=True) as reader:
            assert reader.statuses_for("birthday") == {("c-001", "birthday:2026"): "rendered"}


def test_reading_a_quiet_ledger_is_done_in_place_and_leaves_it_as_it_was(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as led:
        led.record([message("c-001", status="sent")])
    before = {p.name: p.read_bytes() for p in ledger_path.parent.iterdir()}
    journals: list[str] = []

    def read(led: Ledger) -> dict[tuple[str, str], str]:
        # In place: the file itself, not an in-memory or temporary copy.
        journals.append(led._conn.execute("PRAGMA database_list").fetchone()[2])
        return led.statuses_for("birthday")

    assert Ledger.read(ledger_path, read) == {("c-001", "birthday:2026"): "sent"}
    assert journals == [str(ledger_path.resolve())]
    assert {p.name: p.read_bytes() for p in ledger_path.parent.iterdir()} == before


def test_reading_while_a_run_writes_reads_its_commits_from_a_copy(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as writer:
        writer.record([message("c-001")])
        assert ledger_path.with_name("ledger.sqlite-wal").exists()  # not checkpointed yet
        seen = Ledger.read(ledger_path, lambda led: led.statuses_for("birthday"))
    assert seen == {("c-001", "birthday:2026"): "rendered"}


def test_a_ledger_changed_during_a_read_is_read_again(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as led:
        led.record([message("c-001")])
    reads: list[int] = []

    def read(led: Ledger) -> int:
        if not reads:
            # A run starts writing while the first read goes on.
            with Ledger.open(ledger_path) as writer:
                writer.record([message("c-002")])
        reads.append(len(led.messages()))
        return reads[-1]

    assert Ledger.read(ledger_path, read) == 2
    assert len(reads) == 2  # the first read was thrown away


def test_reading_an_older_ledger_migrates_a_copy_not_the_file(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    apply_migrations(conn, path=ledger_path, migrations=MIGRATIONS[:-1])
    conn.close()
    assert Ledger.read(ledger_path, lambda led: len(led.messages())) == 0
    conn = sqlite3.connect(ledger_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION - 1
    conn.close()


def test_a_second_connection_sees_committed_writes(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as one, Ledger.open(ledger_path) as two:
        one.record([message("c-001")])
        two.suppress("c-001", channel="email", source="cli", now=NOW)
        assert two.statuses_for("birthday") == {("c-001", "birthday:2026"): "rendered"}
        assert one.suppressions() == {"c-001": frozenset({"email"})}


# -- a property: whatever is recorded comes back ------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)
_days = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))
_records = st.builds(
    MessageRecord,
    contact_id=_text,
    campaign=_text,
    occurrence_key=_text,
    channel=st.sampled_from(["email", "letter"]),
    status=st.sampled_from(STATUSES),
    run_date=_days,
    event_date=st.none() | _days,
    earliest=st.none() | _days,
    latest=st.none() | _days,
    artifact=st.none() | _text,
    message_id=st.none() | _text,
    reason=st.none() | _text,
    error=st.none() | _text,
    essential=st.booleans(),
    effective_date=_days,
    updated_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(lambda moment: moment.replace(microsecond=0)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_records, max_size=6))
def test_recorded_messages_come_back_as_recorded_last_write_wins(
    records: list[MessageRecord],
) -> None:
    with Ledger.open(Path("/nonexistent/ledger.sqlite"), readonly=True) as led:
        led.record(records)
        latest = {r.key: r for r in records}
        assert sorted(led.messages(), key=lambda m: m.key) == sorted(
            latest.values(), key=lambda m: m.key
        )
        for campaign in {r.campaign for r in records}:
            assert led.statuses_for(campaign) == {
                (r.contact_id, r.occurrence_key): r.status
                for r in latest.values()
                if r.campaign == campaign
            }


def test_replace_keeps_key_property() -> None:
    record = message()
    assert replace(record, status="sent").key == ("c-001", "birthday", "birthday:2026")


# -- the workspace lock --------------------------------------------------------------------

HOLDER = """
import sys, time
from datetime import datetime
from pathlib import Path
from outreach.ledger import WorkspaceLock

lock = WorkspaceLock(Path(sys.argv[1]))
lock.acquire(now=datetime(2026, 11, 24, 9, 0, 1))
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@contextmanager
def hold_lock(state_dir: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the workspace lock for a while."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state_dir), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=unmeasured_env(),
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "locked"
            yield child
        finally:
            child.kill()


def test_a_second_run_is_refused_while_another_holds_the_lock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with hold_lock(state, 60) as child:
        with pytest.raises(LockError) as caught, acquire_lock(state, now=NOW):
            pass
        assert caught.value.message == (
            f"another run is in progress (pid {child.pid}, since 2026-11-24 09:00:01)"
        )
        assert caught.value.hint is not None and "wait" in caught.value.hint
        assert caught.value.path == str(state / "run.lock")


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with hold_lock(state, 60) as child:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    lock_file = state / "run.lock"
    assert str(child.pid) in lock_file.read_text()  # the dead holder's details are still there
    with acquire_lock(state, now=NOW) as lock:
        assert lock.held
        assert json.loads(lock_file.read_text()) == {
            "pid": os.getpid(),
            "since": "2026-11-24T09:00:01+00:00",
        }
    assert lock_file.exists()  # kept, never unlinked
    assert lock_file.read_text() == ""


def test_wait_blocks_until_the_holder_ends(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with hold_lock(state, 0.5) as child:
        started = time.monotonic()
        with acquire_lock(state, now=NOW, wait=True) as lock:
            assert lock.held
            assert child.wait(timeout=5) == 0  # the holder ended normally...
        assert time.monotonic() - started > 0.2  # ...and we waited for it


def test_the_lock_is_released_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), acquire_lock(tmp_path, now=NOW):
        # Two acquirers in one process conflict too: flock belongs to the open file.
        with pytest.raises(LockError):
            WorkspaceLock(tmp_path).acquire(now=NOW)
        raise RuntimeError("the run failed")
    with acquire_lock(tmp_path, now=NOW) as lock:
        assert lock.held
    assert not lock.held


def test_acquiring_twice_with_one_object_is_an_error(tmp_path: Path) -> None:
    lock = WorkspaceLock(tmp_path)
    lock.acquire(now=NOW)
    try:
        with pytest.raises(LockError, match="already held"):
            lock.acquire(now=NOW)
    finally:
        lock.release()
    lock.release()  # idempotent


def test_the_ledger_file_is_not_the_lock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with acquire_lock(state, now=NOW), Ledger.open(state / "ledger.sqlite") as led:
        led.record([message()])  # a reader or a short writer is never shut out by the lock
        assert led.statuses_for("birthday")


def test_a_lock_taken_but_not_yet_described_still_refuses(tmp_path: Path) -> None:
    # The moment between another process's flock and its writing the details.
    tmp_path.joinpath("run.lock").write_text("")
    fd = os.open(tmp_path / "run.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LockError) as caught:
            WorkspaceLock(tmp_path).acquire(now=NOW)
        assert caught.value.message == "another run is in progress"
    finally:
        os.close(fd)


def test_an_unusable_state_folder_is_a_ledger_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state folder should be")
    with pytest.raises(LedgerError) as caught:
        WorkspaceLock(tmp_path / "state").acquire(now=NOW)
    assert not isinstance(caught.value, LockError)  # not "another run": a different fix
    assert caught.value.hint is not None


# -- odds and ends -------------------------------------------------------------------------


def test_runs_begun_by_another_connection_stamp_records_too(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as runner:
        run_id = runner.begin_run(run_date=RUN_DAY, started_at=NOW, args=[])
    with Ledger.open(ledger_path) as other:
        other.record([message(updated_at=None)], run_id=run_id)
        assert other.messages()[0].updated_at == NOW


def test_naive_times_are_taken_as_utc(ledger: Ledger) -> None:
    ledger.record([message(updated_at=datetime(2026, 11, 24, 9, 0, 1))])
    assert ledger.messages()[0].updated_at == NOW


def test_close_is_idempotent_and_a_closed_ledger_says_so(ledger_path: Path) -> None:
    led = Ledger.open(ledger_path)
    led.close()
    led.close()
    with pytest.raises(LedgerError):
        led.messages()
    with pytest.raises(LedgerError):
        led.record([message()])


def test_readonly_takes_a_relative_path_with_odd_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = Path("my state #1?") / "ledger.sqlite"
    with Ledger.open(path) as led:
        led.record([message()])
    with Ledger.open(path, readonly=True) as led:
        assert led.statuses_for("birthday") == {("c-001", "birthday:2026"): "rendered"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.sqlite"]


# -- claims (claim before write) ---------------------------------------------------------------


def test_a_claim_takes_only_what_no_run_has_made_and_keeps_the_others_rows(
    ledger: Ledger,
) -> None:
    run = ledger.begin_run(run_date=date(2026, 11, 24), started_at=NOW, args=[])
    # Another machine's rendered email, a deferred one and a failed-before-made one are there.
    ledger.record(
        [
            message("c1", artifact="out/outbox/2026-11-24/shard-2-of-3/birthday/c1.eml"),
            message("c2", status="deferred"),
            message("c3", status="failed"),
        ],
        run_id=run,
    )
    mine = [
        message(cid, artifact=f"out/outbox/2026-11-24/shard-1-of-2/birthday/{cid}.eml")
        for cid in ("c1", "c2", "c3", "c4")
    ]
    granted = ledger.claim(mine, run_id=run)
    assert granted == {(cid, "birthday", "birthday:2026") for cid in ("c2", "c3", "c4")}
    rows = {m.contact_id: m for m in ledger.messages()}
    assert rows["c1"].artifact == "out/outbox/2026-11-24/shard-2-of-3/birthday/c1.eml"
    assert {rows[c].status for c in ("c2", "c3", "c4")} == {"rendered"}
    assert rows["c4"].artifact == "out/outbox/2026-11-24/shard-1-of-2/birthday/c4.eml"
    # A second claim of the same rows gets nothing: they are done.
    assert ledger.claim(mine, run_id=run) == set()
    # A write that failed afterwards: the row becomes failed without artifact, made again.
    ledger.settle_claims([replace(mine[3], status="failed", artifact=None)], run_id=run)
    assert ledger.done_for("birthday") == {
        (c, "birthday:2026"): "rendered" for c in ("c1", "c2", "c3")
    }


def test_a_large_claim_grants_row_by_row_as_claims_of_one_would(ledger: Ledger) -> None:
    # 701 rows go in statements of several rows (of every size up to the largest); every
    # seventh message was made by another run, and one is asked for twice.
    run = ledger.begin_run(run_date=date(2026, 11, 24), started_at=NOW, args=[])
    ids = [f"c{n:04d}" for n in range(700)]
    made = {cid for n, cid in enumerate(ids) if n % 7 == 3}
    ledger.record(
        [message(cid, artifact=f"other/{cid}.eml") for cid in sorted(made)]
        + [message("c0001", status="deferred")],
        run_id=run,
    )
    mine = [message(cid, artifact=f"mine/{cid}.eml") for cid in ids]
    mine.insert(100, message("c0050", artifact="mine/again.eml"))
    granted = ledger.claim(mine, run_id=run)
    assert granted == {(cid, "birthday", "birthday:2026") for cid in ids if cid not in made}
    rows = {m.contact_id: m for m in ledger.messages()}
    assert len(rows) == 700
    assert {cid for cid, row in rows.items() if row.artifact == f"other/{cid}.eml"} == made
    assert rows["c0001"].status == "rendered"  # the deferred row taken over
    # The first claim of c0050 holds it; the second finds it done and changes nothing.
    assert rows["c0050"].artifact == "mine/c0050.eml"


def test_what_a_run_records_never_replaces_a_done_row_of_another_run(ledger: Ledger) -> None:
    # Two runs the locks did not keep apart: the first made c1's email and c2's failed one
    # (its file exists, the send step retries it); the second, which read the ledger before
    # either, decides to defer or skip them. The one that made them keeps them.
    day = date(2026, 11, 24)
    first = ledger.begin_run(run_date=day, started_at=NOW, args=[])
    second = ledger.begin_run(run_date=day, started_at=NOW, args=[])
    made = message("c1", artifact="out/outbox/2026-11-24/birthday/c1.eml")
    sent_once = message("c2", status="failed", artifact="out/outbox/2026-11-24/birthday/c2.eml")
    assert ledger.claim([made, sent_once], run_id=first) == {
        ("c1", "birthday", "birthday:2026"),
        ("c2", "birthday", "birthday:2026"),
    }
    ledger.record(
        [
            message("c1", status="deferred", reason="min_gap_days 7"),
            message("c2", status="skipped", reason="opted out (email)"),
            message("c3", status="deferred", reason="min_gap_days 7"),
        ],
        run_id=second,
    )
    rows = {m.contact_id: m for m in ledger.messages()}
    assert (rows["c1"].status, rows["c1"].artifact) == ("rendered", made.artifact)
    assert (rows["c2"].status, rows["c2"].artifact) == ("failed", sent_once.artifact)
    assert rows["c3"].status == "deferred"
    # A run's own rows it may change: the first one settles its letter, say.
    ledger.record([message("c1", status="failed", error="layout")], run_id=first)
    assert {m.contact_id: m.status for m in ledger.messages()}["c1"] == "failed"
