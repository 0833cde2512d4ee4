"""The report page: `outreach report`, the page every run writes, and what is in it.

The browser test opens the page in Debian's headless Chromium from a file:// URL (see
devtools.py); the others read the HTML the real CLI wrote.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from conftest import REPORT_ON, Workspace, copy_sample
from devtools import chromium

from outreach.ledger import MessageRecord
from outreach.report.data import DayCount, held_code

RUN_DAYS = ("2026-11-24", "2026-11-25")
# A contact whose name is markup: it must reach the page as text, never as markup.
HOSTILE = (
    'c099,<script>alert(1)</script>,"O\'Hara & <b>Co</b>",,hostile@example.com,25/11/1990,'
    ",,,Madrid,ES,email,es,customer;newsletter,all,,"
)


def with_hostile_contact(ws: Workspace) -> Workspace:
    contacts = ws.root / "contacts.csv"
    contacts.write_text(contacts.read_text(encoding="utf-8") + HOSTILE + "\n", encoding="utf-8")
    return ws


def ledger_totals(ws: Workspace, start: str, end: str) -> dict[str, dict[str, int]]:
    with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as conn:
        rows = conn.execute(
            "SELECT campaign, status, count(*) FROM messages "
            "WHERE run_date BETWEEN ? AND ? GROUP BY campaign, status",
            (start, end),
        ).fetchall()
    found: dict[str, dict[str, int]] = {}
    for campaign, status, n in rows:
        found.setdefault(campaign, {})[status] = n
    return found


def run_days(ws: Workspace) -> dict[str, dict[str, object]]:
    """Run the sample campaigns on two days; each run's JSON summary."""
    summaries = {}
    for day in RUN_DAYS:
        result = ws.run("run", "--all", "--date", day, "--json", env=REPORT_ON)
        assert result.code == 0, result.err
        summaries[day] = json.loads(result.out)
    return summaries


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, object]]]:
    """The sample runs of both days, made once for the module's tests (each gets a copy).

    Once for the whole session, too: xdist's test processes share the parent of their
    temporary folders, and the first to get here makes the runs under a lock while the others
    wait for them (in a folder named for this session's id)."""
    session = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if session is None:  # one test process
        shared = tmp_path_factory.mktemp("ran")
    else:
        shared = tmp_path_factory.getbasetemp().parent / f"report-ran-{session}"
        shared.mkdir(exist_ok=True)
    made = shared / "summaries.json"
    with (shared / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            shutil.rmtree(shared / "ws", ignore_errors=True)  # a process that failed midway
            ws = with_hostile_contact(copy_sample(shared / "ws"))
            made.write_text(json.dumps(run_days(ws)), encoding="utf-8")
    return shared / "ws", json.loads(made.read_text(encoding="utf-8"))


@pytest.fixture
def ran(
    ran_once: tuple[Path, dict[str, dict[str, object]]], tmp_path: Path
) -> tuple[Workspace, dict[str, dict[str, object]]]:
    root, summaries = ran_once
    shutil.copytree(root, tmp_path / "ws")
    return Workspace(tmp_path / "ws"), summaries


@pytest.mark.slow
def test_every_real_run_writes_its_page_and_prints_the_path(
    ran: tuple[Workspace, dict[str, dict[str, object]]],
) -> None:
    # On a copy of the module's runs: the run of the 25th again (the page is made anew), then
    # the 26th, dry and real.
    ws, _ = ran
    shutil.rmtree(ws.root / "out" / "reports")
    result = ws.run("run", "--all", "--date", "2026-11-25", env=REPORT_ON)
    assert result.code == 0, result.err
    page = ws.root / "out" / "reports" / "2026-11-25.html"
    assert result.out.rstrip().endswith(f"report: {Path('out/reports/2026-11-25.html')}")
    text = page.read_text(encoding="utf-8")
    assert "Ejecución del 25 nov 2026" in text  # the workspace's language (es)
    assert not list(page.parent.glob(".*tmp*")), "the page is written atomically"

    dry = ws.run("run", "--all", "--date", "2026-11-26", "--dry-run", env=REPORT_ON)
    assert dry.code == 0, dry.err
    assert "report:" not in dry.out
    assert not (page.parent / "2026-11-26.html").exists()

    quiet = ws.run("run", "--all", "--date", "2026-11-26", "--quiet", env=REPORT_ON)
    assert quiet.code == 0, quiet.err
    assert "report:" not in quiet.out
    assert (page.parent / "2026-11-26.html").exists()


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failed_run(
    sample_workspace: Workspace,
) -> None:
    (sample_workspace.root / "out").mkdir()
    (sample_workspace.root / "out" / "reports").write_text("not a folder", encoding="utf-8")
    result = sample_workspace.run("run", "--all", "--date", "2026-11-24", env=REPORT_ON)
    assert result.code == 0, result.err
    assert "warning: the run's report page could not be written" in result.err
    assert "Traceback" not in result.err
    assert len(sample_workspace.files("out/outbox")) > 0


def test_the_page_escapes_contact_data(
    ran: tuple[Workspace, dict[str, dict[str, object]]],
) -> None:
    ws, _ = ran
    text = (ws.root / "out" / "reports" / "2026-11-25.html").read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; O&#39;Hara &amp; &lt;b&gt;Co&lt;/b&gt;" in text
    # The email previews: the HTML part in srcdoc, escaped as an attribute, sandboxed.
    frames = re.findall(r"<iframe ([^>]*)>", text)
    assert frames
    for attributes in frames:
        assert 'sandbox=""' in attributes
        assert "allow-scripts" not in attributes
        srcdoc = re.search(r'srcdoc="([^"]*)"', attributes)
        assert srcdoc is not None
        assert "<" not in srcdoc.group(1)
        document = html.unescape(srcdoc.group(1))
        assert document.startswith("<!DOCTYPE html>")
        assert '<head><meta http-equiv="Content-Security-Policy"' in document


def test_report_command_period_output_and_usage(
    ran: tuple[Workspace, dict[str, dict[str, object]]],
) -> None:
    ws, _ = ran
    result = ws.run("report", "--from", "2026-11-25", "--to", "2026-11-25", "-o", "mine.html")
    assert result.code == 0, result.err
    assert result.out.strip() == "wrote mine.html"
    text = (ws.root / "mine.html").read_text(encoding="utf-8")
    # Only the run of the 25th is in that period; links are relative to the page.
    assert "Ejecución del 25 nov 2026" in text
    assert "Ejecución del 24 nov 2026" not in text
    assert 'href="out/outbox/2026-11-25/' in text

    default = ws.run("report", "--to", "2026-11-25")
    assert default.code == 0, default.err
    assert (ws.root / "out" / "reports" / "2026-11-25.html").exists()
    assert 'href="../letters/2026-11-24/birthday.pdf"' in (
        ws.root / "out" / "reports" / "2026-11-25.html"
    ).read_text(encoding="utf-8")

    wrong = ws.run("report", "--from", "2026-11-26", "--to", "2026-11-25")
    assert wrong.code == 2
    assert "--from 2026-11-26 is after --to 2026-11-25" in wrong.err


def test_the_page_in_a_real_browser(
    ran: tuple[Workspace, dict[str, dict[str, object]]], tmp_path: Path
) -> None:
    ws, summaries = ran
    page = ws.root / "out" / "reports" / "2026-11-25.html"
    report = ws.run("report", "--to", "2026-11-25")
    assert report.code == 0, report.err
    with chromium() as browser:
        load = browser.open(page.as_uri())
        outside = [u for u in load.requests if not u.startswith(("file://", "data:"))]
        assert outside == [], "the page fetched something from outside"
        assert load.requests[0] == page.as_uri()
        assert load.errors == []
        assert browser.evaluate("document.scripts.length") == 0
        assert "<script>alert(1)</script> O'Hara & <b>Co</b>" in browser.evaluate(
            "document.body.innerText"
        )

        # The totals table says what the ledger says, status by status.
        shown = browser.evaluate(
            """Object.fromEntries([...document.querySelectorAll('table.totals tr[data-campaign]')]
                .map(tr => [tr.dataset.campaign, Object.fromEntries([...tr.querySelectorAll(
                  'td[data-status]')].map(td => [td.dataset.status, Number(td.dataset.value)]))]))"""
        )
        ledger = ledger_totals(ws, "2026-10-27", "2026-11-25")
        assert set(shown) == {"birthday", "promotion", "reminder"}
        for campaign, counts in shown.items():
            expected = ledger.get(campaign, {})
            assert counts.pop("total") == sum(expected.values())
            assert {s: n for s, n in counts.items() if n} == expected

        # Each run's table says what its summary says (the page lists both runs, newest first).
        runs = browser.evaluate(
            """[...document.querySelectorAll('table.run')].map(t => [t.dataset.runDate,
                 Object.fromEntries([...t.querySelectorAll('tr[data-campaign]')].map(tr =>
                   [tr.dataset.campaign, Object.fromEntries([...tr.querySelectorAll('td[data-field]')]
                     .map(td => [td.dataset.field, Number(td.textContent.replace(/\\D/g, ''))]))]))])"""
        )
        assert [day for day, _ in runs] == ["2026-11-25", "2026-11-24"]
        for day, table in runs:
            for c in summaries[day]["campaigns"]:  # type: ignore[attr-defined]
                row = table[c["name"]]
                assert row["due"] == c["due"]
                assert row["emails"] == c["emails"]
                assert row["letters"] == c["letters"]
                assert row["deferred"] == c["deferred"]
                assert row["skipped"] == sum(c["skipped"].values())
                assert row["failed"] == c["failed"]

        # Who was held back on the 25th: the ledger's rows of that day, with their lines.
        groups = browser.evaluate(
            """[...document.querySelectorAll('.group')].map(g => [g.dataset.campaign,
                 g.dataset.status, Number(g.dataset.total),
                 [...g.querySelectorAll('tr[data-contact]')].map(tr =>
                   [tr.dataset.contact, tr.children[2].textContent])])"""
        )
        with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as conn:
            held = conn.execute(
                "SELECT campaign, status, count(*) FROM messages WHERE run_date = '2026-11-25' "
                "AND status IN ('deferred', 'skipped', 'failed', 'missed', 'uncertain') "
                "GROUP BY campaign, status"
            ).fetchall()
        by_status: dict[tuple[str, str], int] = {}
        for campaign, status, total, _ in groups:
            by_status[(campaign, status)] = by_status.get((campaign, status), 0) + total
        assert by_status == {(c, s): n for c, s, n in held}
        listed = {cid: line for *_, contacts in groups for cid, line in contacts}
        assert listed["c099"] == "33"  # the hostile row, the file's last line

        # Every chart is an SVG, its series named by campaign and channel or by reason.
        charts = browser.evaluate(
            """[...document.querySelectorAll('figure.chart')].map(f => [f.id,
                 f.firstElementChild.tagName,
                 [...new Set([...f.querySelectorAll('[id*="-series-"]')].map(e =>
                   e.id.replace(/^chart-[a-z]+-series-/, '').replace(/-\\d+$/, '')))].sort()])"""
        )
        assert [(name, tag) for name, tag, _ in charts] == [
            ("daily", "svg"),
            ("pressure", "svg"),
            ("held", "svg"),
        ]
        series = {name: found for name, _, found in charts}
        assert {"email-birthday-past", "email-promotion-past", "email-reminder-past"} <= set(
            series["daily"]
        )
        assert "letter-birthday-past" in series["daily"]
        assert any(s.endswith("-plan") for s in series["daily"])
        assert series["pressure"] == ["contacts"]
        assert browser.evaluate("!!document.getElementById('chart-pressure-cap')")
        assert "deferred-min_gap" in series["held"]
        # One bar per day with messages: the days of the two runs in the ledger.
        bars = browser.evaluate(
            "[...document.querySelectorAll('[id^=\"chart-daily-series-email-reminder-past-\"]')]"
            ".length"
        )
        with sqlite3.connect(ws.root / "state" / "ledger.sqlite") as conn:
            (days,) = conn.execute(
                "SELECT count(DISTINCT run_date) FROM messages WHERE campaign = 'reminder' "
                "AND channel = 'email' AND status IN ('rendered', 'sent', 'sending', 'uncertain')"
            ).fetchone()
        assert bars == days

        # What goes out: the letter thumbnail links to its PDF, each email sits in a frame.
        letters = browser.evaluate(
            """[...document.querySelectorAll('.letter')].map(c => [c.dataset.campaign,
                 c.querySelector('img').naturalWidth, c.querySelector('a').getAttribute('href')])"""
        )
        # c026's birthday is on the 30th: its letter is posted on the 25th, to arrive in the
        # window (letters.delivery_days), so both days have a batch.
        assert letters == [
            ["birthday", letters[0][1], "../letters/2026-11-25/birthday.pdf"],
            ["birthday", letters[1][1], "../letters/2026-11-24/birthday.pdf"],
        ]
        assert letters[0][1] > 50
        frames = browser.evaluate(
            "[...document.querySelectorAll('iframe')].map(f => [f.closest('.email')"
            ".dataset.campaign, f.getAttribute('sandbox')])"
        )
        assert sorted(frames) == [["birthday", ""], ["promotion", ""]]

        shot = browser.screenshot(tmp_path / "report.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        keep = os.environ.get("OUTREACH_SCREENSHOT")
        if keep:  # `OUTREACH_SCREENSHOT=docs/report.png pytest ...` refreshes the README's
            shutil.copy(shot, keep)


def test_the_daemon_writes_the_page_of_each_run(make_workspace: object) -> None:
    make = make_workspace
    ws = make(  # type: ignore[operator]
        ["c1,Ana,García,ana@example.com,,,,,,,,customer,"],
        config_extra='schedule:\n  - {campaigns: all, at: "00:00"}\n',
        campaigns={
            "promo.yaml": """\
                kind: promotion
                channel: email
                start: 2000-01-01
                end: 2099-12-31
                email:
                  subject: "Novedades"
                  text: promo.txt.j2
                """
        },
    )
    result = ws.run("daemon", "--once", env=REPORT_ON)
    assert result.code == 0, result.err
    assert re.search(r"report \S+/out/reports/\d{4}-\d\d-\d\d\.html", result.err)
    assert len(list((ws.root / "out" / "reports").glob("*.html"))) == 1


@pytest.mark.parametrize(
    ("status", "stored", "code"),
    [
        ("deferred", "quiet_day", "quiet_day"),
        ("deferred", "min_gap", "min_gap"),
        ("missed", "max_messages", "max_messages"),  # what deferred it until too late
        ("missed", "window_closed", "window_closed"),
        ("deferred", None, "other"),  # a row of an older outreach the migration could not read
        ("deferred", "essential_override", "other"),  # not a reason the charts draw
    ],
)
def test_held_codes_come_from_the_ledger_column(status: str, stored: str | None, code: str) -> None:
    record = MessageRecord(
        contact_id="c1",
        campaign="promo",
        occurrence_key="promotion",
        channel="email",
        status=status,
        run_date=date(2026, 11, 24),
        reason="some sentence with min_gap_days in it",  # never read
        reason_code=stored,
    )
    assert held_code(record) == code


def test_no_ledger_yet(sample_workspace: Workspace) -> None:
    result = sample_workspace.run("report", "--to", date(2026, 11, 24).isoformat())
    assert result.code == 0, result.err
    text = (sample_workspace.root / "out" / "reports" / "2026-11-24.html").read_text("utf-8")
    assert 'data-note="no_ledger"' in text
    assert "Ninguna ejecución en este periodo." in text


def test_outreach_report_0_turns_the_page_after_a_run_off(
    ran: tuple[Workspace, dict[str, dict[str, object]]],
) -> None:
    ws, _ = ran
    shutil.rmtree(ws.root / "out" / "reports")
    result = ws.run("run", "--all", "--date", "2026-11-25", env={"OUTREACH_REPORT": "0"})
    assert result.code == 0, result.err
    assert "report:" not in result.out
    assert not (ws.root / "out" / "reports").exists()


def test_chart_text_is_text(tmp_path: Path) -> None:
    from outreach.report.charts import daily_chart

    svg = daily_chart(
        [DayCount(date(2026, 11, 24), 'promo $5 <b>"', "email", 3, False)],
        campaigns=['promo $5 <b>"'],
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        split=date(2026, 11, 25),
        labels={"title": "t", "ledger": "sent", "plan": "plan", "email": "e", "letter": "l"},
    )
    assert "promo $5 &lt;b&gt;" in svg  # no TeX, no markup
    assert 'id="chart-daily-series-email-promo-5-b-past-23"' in svg


def test_the_page_speaks_the_workspace_language(sample_workspace: Workspace) -> None:
    config = sample_workspace.root / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("locale: es ", "locale: en "), encoding="utf-8"
    )
    result = sample_workspace.run("report", "--to", "2026-11-24")
    assert result.code == 0, result.err
    text = (sample_workspace.root / "out" / "reports" / "2026-11-24.html").read_text("utf-8")
    assert '<html lang="en">' in text
    assert "<h2>The runs</h2>" in text
    assert "Messages per day: the past 30 days, then the plan for the next 30" in text
