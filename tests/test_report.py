"""The report page: `outreach report`, the page every run writes, and what is in it.

The browser tests open the page in Debian's headless Chromium from a file:// URL (see
devtools.py), in English and in Spanish, at a desktop's width and a phone's; the others read the
HTML the real CLI wrote.
"""

from __future__ import annotations

import csv
import fcntl
import html
import json
import os
import re
import shutil
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from babel.numbers import format_decimal
from conftest import REPORT_ON, Workspace, copy_sample
from devtools import Browser, chromium

from outreach import i18n
from outreach.ledger import Block, MessageRecord
from outreach.model.reasons import Code, phrase
from outreach.report import owner, write_run_report
from outreach.report.data import DayCount, ReportData, RunView, held_code
from outreach.workspace import load_workspace

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
            before = datetime.now(UTC).isoformat()
            summaries = run_days(ws)
            # The real clock around the runs: each run's page says when it was made.
            clock = {"before": before, "after": datetime.now(UTC).isoformat()}
            (shared / "clock.json").write_text(json.dumps(clock), encoding="utf-8")
            made.write_text(json.dumps(summaries), encoding="utf-8")
    return shared / "ws", json.loads(made.read_text(encoding="utf-8"))


SPANISH_MADE = datetime(2026, 12, 7, 4, 5, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def pages(
    ran_once: tuple[Path, dict[str, dict[str, object]]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The page the English run of the 25th wrote, and the same run's page in Spanish (made
    in this process from its summary, in a copy of the workspace that says `language: es`)."""
    root, summaries = ran_once
    copy = tmp_path_factory.mktemp("spanish") / "ws"
    shutil.copytree(root, copy)
    config = copy / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "\nlanguage: en " in text
    config.write_text(text.replace("\nlanguage: en ", "\nlanguage: es ", 1), encoding="utf-8")
    try:
        workspace = load_workspace(config)  # speaks Spanish from here on
        assert i18n.language() == "es"
        path, error = write_run_report(workspace, summary=summaries["2026-11-25"], now=SPANISH_MADE)
    finally:
        i18n.use("en")
    assert error is None and path is not None
    return {"en": root / "out" / "reports" / "2026-11-25.html", "es": path}


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
    assert "Run of 25 Nov 2026" in text  # the workspace's language (en)
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
    assert "Run of 25 Nov 2026" in text
    assert "Run of 24 Nov 2026" not in text
    assert 'href="out/outbox/2026-11-25/' in text

    default = ws.run("report", "--to", "2026-11-25")
    assert default.code == 0, default.err
    period = (ws.root / "out" / "reports" / "2026-11-25.html").read_text(encoding="utf-8")
    assert 'href="../letters/2026-11-24/birthday.pdf"' in period
    # A period's page lists its runs from the ledger, newest first.
    assert re.findall(r'<table class="run" data-run-date="([\d-]+)"', period) == [
        "2026-11-25",
        "2026-11-24",
    ]

    wrong = ws.run("report", "--from", "2026-11-26", "--to", "2026-11-25")
    assert wrong.code == 2
    assert "--from 2026-11-26 is after --to 2026-11-25" in wrong.err


def test_the_page_in_a_real_browser(
    ran_once: tuple[Path, dict[str, dict[str, object]]], pages: dict[str, Path], tmp_path: Path
) -> None:
    """The page the run of the 25th wrote (in English), every figure against the ledger."""
    root, summaries = ran_once
    ws = Workspace(root)  # read only: the module's runs
    page = pages["en"]
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

        # The run's table says what its summary says (a run's page shows that run).
        runs = browser.evaluate(
            """[...document.querySelectorAll('table.run')].map(t => [t.dataset.runDate,
                 Object.fromEntries([...t.querySelectorAll('tr[data-campaign]')].map(tr =>
                   [tr.dataset.campaign, Object.fromEntries([...tr.querySelectorAll('td[data-field]')]
                     .map(td => [td.dataset.field, Number(td.textContent.replace(/\\D/g, ''))]))]))])"""
        )
        assert [day for day, _ in runs] == ["2026-11-25"]
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
            ("comeback-chart", "svg"),  # ¿Vuelven?: each campaign's visit rates
        ]
        series = {name: found for name, _, found in charts}
        assert {
            "email-birthday-prepared",
            "email-promotion-prepared",
            "email-reminder-prepared",
        } <= set(series["daily"])
        assert "letter-birthday-prepared" in series["daily"]
        assert any(s.endswith("-plan") for s in series["daily"])
        assert series["pressure"] == ["contacts"]
        assert browser.evaluate("!!document.getElementById('chart-pressure-cap')")
        assert "deferred-min_gap" in series["held"]
        # One bar per day with messages: the days of the two runs in the ledger.
        bars = browser.evaluate(
            "[...document.querySelectorAll('[id^=\"chart-daily-series-email-reminder-prepared-\"]')]"
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
            """[...document.querySelectorAll('.card.letter')].map(c => [c.dataset.campaign,
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

        top_in_english(browser, summaries["2026-11-25"], root=root, clock=made_between(root))
        charts_say_prepared_not_sent(browser)
        assert cards_spilling(browser) == []
        shot = browser.screenshot(tmp_path / "report.png")  # Page.captureScreenshot, whole
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# What the browser tests ask the page


def made_between(root: Path) -> tuple[datetime, datetime]:
    """The real clock just before and just after the module's runs."""
    clock = json.loads((root.parent / "clock.json").read_text(encoding="utf-8"))
    return datetime.fromisoformat(clock["before"]), datetime.fromisoformat(clock["after"])


def page_text(browser: Browser) -> str:
    """The page's own words: its text less the customers' messages shown on it."""
    text: str = browser.evaluate(
        """(() => { const body = document.body.cloneNode(true);
             body.querySelectorAll('pre, iframe').forEach(e => e.remove());
             return body.textContent; })()"""
    )
    return text


def top_lines(browser: Browser) -> dict[str, dict[str, Any]]:
    """Each line of "what went out": its sentence, its dots, its reasons and its notes."""
    found: dict[str, dict[str, Any]] = browser.evaluate(
        """Object.fromEntries([...document.querySelectorAll('#today [data-line]')].map(e =>
             [e.dataset.line, {sentence: e.querySelector('.sentence').textContent,
               count: Number(e.dataset.count), dots: e.querySelectorAll('.dots i').length,
               notes: [...e.querySelectorAll('p.muted')].map(p => p.textContent),
               reasons: Object.fromEntries([...e.querySelectorAll('[data-reason]')].map(li =>
                 [li.dataset.reason, [li.querySelector('strong').textContent, li.textContent]]))}]))"""
    )
    return found


def needs(browser: Browser) -> list[list[str]]:
    found: list[list[str]] = browser.evaluate(
        """[...document.querySelectorAll('#attention [data-need]')].map(e => [e.dataset.need,
             (e.querySelector('strong') || e).textContent])"""
    )
    return found


def ledger_rows(root: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(root / "state" / "ledger.sqlite") as conn:
        return conn.execute(sql, params).fetchall()


def contact_names(root: Path) -> dict[str, str]:
    with (root / "contacts.csv").open(encoding="utf-8") as handle:
        return {r["id"]: f"{r['first_name']} {r['last_name']}" for r in csv.DictReader(handle)}


def top_in_english(
    browser: Browser, summary: dict[str, Any], *, root: Path, clock: tuple[datetime, datetime]
) -> None:
    """The top of the run's page says, in plain words, what the run's summary and the ledger
    say: what needs the owner, then what went out."""
    campaigns = summary["campaigns"]
    emails = sum(c["emails"] for c in campaigns)
    letters = sum(c["letters"] for c in campaigns)
    skipped = sum(sum(c["skipped"].values()) for c in campaigns)
    deferred = sum(c["deferred"] for c in campaigns)
    # The sample's run of the 25th: the outbox only (nothing sent), one letter, rows with
    # problems, no reply, no bounce.
    assert emails > 1 and letters == 1 and skipped > 1 and deferred > 1
    assert sum(c["sent"] for c in campaigns) == 0
    problems = len(summary["problems"])
    assert needs(browser) == [
        ["rows", f"{problems} rows of the contacts file have a problem: the list is below."]
    ]
    lines = top_lines(browser)
    assert list(lines) == ["email", "letter", "held", "waiting"]
    assert lines["email"]["sentence"] == (
        f"{emails} emails were prepared in the outbox and not sent: outreach send sends them."
    )
    assert lines["email"]["dots"] == emails
    assert "The outbox folder: out/outbox/2026-11-25" in lines["email"]["notes"]
    assert lines["letter"]["sentence"] == "1 letter to print and post."
    ((postage,),) = [c["postage"]["lines"] for c in campaigns if c["letters"]]
    assert postage["price"] is None  # the sample's config has no prices
    assert (
        f"Postage: 1 letter ({postage['zone']} ≤ {postage['up_to_grams']} g) has no price: add it "
        "under letters.postage.prices in config.yaml." in lines["letter"]["notes"]
    )
    assert lines["held"]["sentence"] == f"{skipped} messages will not go, for these reasons:"
    assert lines["waiting"]["sentence"] == (
        f"{deferred} messages wait for a later day (the next runs send them when they may):"
    )
    # Each reason in words, counted as the ledger counts it, with names of those it kept back.
    names = contact_names(root)
    for key, status in (("held", "skipped"), ("waiting", "deferred")):
        rows = ledger_rows(
            root,
            "SELECT reason_code, contact_id FROM messages WHERE run_date = '2026-11-25' "
            "AND status = ?",
            status,
        )
        by_code: dict[str, list[str]] = {}
        for code, contact in rows:
            by_code.setdefault(code, []).append(names[contact])
        shown = lines[key]["reasons"]
        assert set(shown) == set(by_code)
        for code, (words, text) in shown.items():
            assert words == phrase(Code(code))
            count, _, listed = text.removeprefix(f"{words}: ").partition(" — ")
            assert int(count) == len(by_code[code])  # messages
            people = set(by_code[code])  # one held back in two campaigns is one person
            first, _, more = listed.partition(" and ")
            named = first.split(", ")
            assert len(set(named)) == len(named) and set(named) <= people, (named, people)
            assert int(more.removesuffix(" more") or 0) == len(people) - len(named)

    # The time the page was made (the real clock), and the run's date apart.
    made = browser.evaluate("document.getElementById('made').dataset.made")
    assert clock[0] <= datetime.fromisoformat(made) <= clock[1]
    assert browser.evaluate("document.getElementById('made').textContent").startswith(
        "Page made on "
    )
    assert browser.evaluate("document.getElementById('period').textContent") == (
        "For the day 25 Nov 2026: the past from 27 Oct 2026, the plan to 25 Dec 2026."
    )
    # What came back: nothing yet in the sample, said as figures; the complaint rate.
    figures = browser.evaluate(
        """Object.fromEntries([...document.querySelectorAll('[data-figure]')].map(e =>
             [e.dataset.figure, e.querySelector('dd').textContent]))"""
    )
    assert figures == {
        "bounces": "0",
        "complaints": "0",
        "unsubscribes": "0",
        "returned": "0",
        "replies": "0",
    }
    ((emailed,),) = ledger_rows(
        root,
        "SELECT count(*) FROM messages WHERE channel = 'email' AND effective_date >= "
        "'2026-10-27' AND status IN ('rendered', 'sent', 'sending', 'uncertain')",
    )
    assert browser.evaluate("document.getElementById('complaint-rate').textContent") == (
        # English as written in Spain (en_ES, the business's country): "0,0"
        f"Complaints: 0 in {emailed} emails over the last 30 days "
        f"({format_decimal(0, format='0.0', locale='en_ES')} per 1,000)."
    )
    text = page_text(browser)
    for spanish in SPANISH_WORDS:
        assert spanish not in text, spanish


def charts_say_prepared_not_sent(browser: Browser) -> None:
    """A run that only wrote the outbox sent nothing: the daily chart says prepared."""
    legend = browser.evaluate(
        "[...document.querySelectorAll('#daily svg text')].map(t => t.textContent)"
    )
    assert "reminder (prepared, not sent)" in legend
    assert not [t for t in legend if t.endswith("(sent)")], legend
    series = browser.evaluate(
        "[...document.querySelectorAll('#daily [id*=\"-series-\"]')].map(e => e.id)"
    )
    assert series and not [s for s in series if "-sent-" in s]


def cards_spilling(browser: Browser) -> list[str]:
    """Anything drawn outside its card's box (the reminder's plain text, a long path...)."""
    assert browser.evaluate(
        "!!document.querySelector('.card.email[data-campaign=\"reminder\"] pre')"
    ), "the reminder's card is its plain text"
    found: list[str] = browser.evaluate(
        """[...document.querySelectorAll('.card')].flatMap(card => {
             const box = card.getBoundingClientRect();
             return [...card.querySelectorAll('*')].filter(e => {
               const r = e.getBoundingClientRect();
               return r.width > 0 && (r.right > box.right + 0.5 || r.left < box.left - 0.5
                 || e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible'
                    && e.tagName === 'PRE');
             }).map(e => (card.dataset.campaign || card.dataset.line) + ': ' + e.tagName);
           })"""
    )
    return found


def outside_the_viewport(browser: Browser) -> list[str]:
    """Elements whose right edge is past the viewport (tables scroll in their own boxes)."""
    found: list[str] = browser.evaluate(
        """[...document.body.querySelectorAll('*')].filter(e => !e.closest('.scroll')
             && e.getBoundingClientRect().right > innerWidth + 0.5)
             .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.getAttribute('class'))"""
    )
    return found


# Words of the Spanish page that the English one must not have, and the reverse.
SPANISH_WORDS = (
    "Lo que",
    "correos",
    "Ejecución",
    "cartas",
    "Página hecha",
    "En imágenes",
    "enviados",
    "preparados",
    "Quejas",
)
ENGLISH_PHRASES = (
    "What needs you",
    "What went out",
    "Nothing needs you",
    "were prepared",
    "to print and post",
    "will not go",
    "wait for a later day",
    "Postage",
    "Page made on",
    "In pictures",
    "The details, in tables",
    "What came back",
    "bounced emails",
    "Messages per day",
    "prepared, not sent",
    "Run of",
    "Who was held back",
    "open the PDF",
    "Letter batches",
    "Complaints:",
    "contacts file",
)


def test_the_page_in_spanish_and_on_a_phone(
    ran_once: tuple[Path, dict[str, dict[str, object]]], pages: dict[str, Path]
) -> None:
    """The same run's page in Spanish: its headings and sentences, none of the English ones;
    then at a phone's width (390 px): nothing wider than the screen, nothing out of its box."""
    _, summaries = ran_once
    summary: dict[str, Any] = summaries["2026-11-25"]
    campaigns = summary["campaigns"]
    emails = sum(c["emails"] for c in campaigns)
    skipped = sum(sum(c["skipped"].values()) for c in campaigns)
    deferred = sum(c["deferred"] for c in campaigns)
    try:
        i18n.use("es")
        reasons = {code.value: phrase(code) for code in Code}
    finally:
        i18n.use("en")
    with chromium() as browser:
        load = browser.open(pages["es"].as_uri())
        assert load.errors == []
        assert browser.evaluate("document.documentElement.lang") == "es"
        headings = browser.evaluate(
            "[...document.querySelectorAll('h1, h2')].map(h => h.textContent)"
        )
        assert headings[:4] == [
            "Casa Lucía: informe del 25 nov 2026",
            "Lo que requiere su atención",
            "Lo que salió el 25 nov 2026",
            "Lo que llegó de vuelta, del 27 oct 2026 al 25 nov 2026",
        ]
        assert "Los detalles, en tablas" in headings and "En imágenes" in headings
        problems = len(summary["problems"])
        assert needs(browser) == [
            [
                "rows",
                f"{problems} filas del fichero de contactos tienen un problema: la lista está "
                "más abajo.",
            ]
        ]
        lines = top_lines(browser)
        assert [line["sentence"] for line in lines.values()] == [
            f"{emails} correos quedaron preparados en la bandeja de salida, sin enviar: "
            "outreach send los envía.",
            "1 carta que imprimir y echar al correo.",
            f"{skipped} mensajes no saldrán, por estos motivos:",
            f"{deferred} mensajes esperan a otro día (las próximas ejecuciones los envían "
            "cuando puedan):",
        ]
        assert {
            code: words for line in lines.values() for code, (words, _) in line["reasons"].items()
        } == {code: reasons[code] for line in lines.values() for code in line["reasons"]}
        text = page_text(browser)
        assert "Página hecha el 7 dic 2026" in text
        assert "Franqueo: 1 carta (domestic ≤ 20 g) no tiene precio" in text
        assert "correos rebotados" in text and "cartas devueltas por correo" in text
        assert "Mensajes por día: los 30 días pasados y el plan de los 30 siguientes" in text
        legend = browser.evaluate(
            "[...document.querySelectorAll('#daily svg text')].map(t => t.textContent)"
        )
        assert "reminder (preparados, sin enviar)" in legend
        for english in ENGLISH_PHRASES:
            assert english not in text and english not in legend, english
        assert cards_spilling(browser) == []

        browser.open(pages["es"].as_uri(), width=390)
        assert browser.evaluate("[document.documentElement.scrollWidth, innerWidth]") == [390, 390]
        assert outside_the_viewport(browser) == []
        assert cards_spilling(browser) == []


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


def test_outreach_report_0_turns_the_page_after_a_run_off(
    ran: tuple[Workspace, dict[str, dict[str, object]]],
) -> None:
    ws, _ = ran
    shutil.rmtree(ws.root / "out" / "reports")
    result = ws.run("run", "--all", "--date", "2026-11-25", env={"OUTREACH_REPORT": "0"})
    assert result.code == 0, result.err
    assert "report:" not in result.out
    assert not (ws.root / "out" / "reports").exists()


def test_chart_text_is_text_and_says_sent_only_of_what_was_sent(tmp_path: Path) -> None:
    from outreach.report.charts import daily_chart

    svg = daily_chart(
        [
            DayCount(date(2026, 11, 24), 'promo $5 <b>"', "email", 3, False),
            DayCount(date(2026, 11, 25), 'promo $5 <b>"', "email", 2, False, sent=True),
        ],
        campaigns=['promo $5 <b>"'],
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        split=date(2026, 11, 25),
        labels={
            "title": "t",
            "sent": "{campaign} (sent)",
            "prepared": "{campaign} (prepared)",
            "plan": "{campaign} (plan)",
            "email": "e",
            "letter": "l",
        },
    )
    assert "promo $5 &lt;b&gt;" in svg  # no TeX, no markup
    assert 'id="chart-daily-series-email-promo-5-b-prepared-23"' in svg
    assert 'id="chart-daily-series-email-promo-5-b-sent-24"' in svg
    assert "-sent-23" not in svg and "-prepared-24" not in svg
    assert "(prepared)</text>" in svg and "(sent)</text>" in svg


def test_no_ledger_yet_and_the_page_in_the_configs_language(tmp_path: Path) -> None:
    """No ledger yet and `language: es` (the sample's customers' `locale` plays no part): a
    Spanish page that says nothing has run. (The environment's part in choosing the language is
    outreach.i18n's, tested in test_catalogs.)"""
    ws = copy_sample(tmp_path / "ws", language="es")
    result = ws.run("report", "--to", "2026-11-24")
    assert result.code == 0, result.err
    page = (ws.root / "out" / "reports" / "2026-11-24.html").read_text("utf-8")
    assert '<html lang="es">' in page
    assert 'data-note="no_ledger"' in page
    assert "Aún no hay registro: no se ha ejecutado nada." in page
    assert "Ninguna ejecución en este periodo." in page
    assert "Hoy no hay nada que requiera su atención." in page
    assert "No run in this period." not in page and "What needs you" not in page


def owner_data(**changes: Any) -> ReportData:
    """A report's data with nothing in it but `changes` (no ledger, no plan)."""
    day = date(2026, 11, 25)
    values: dict[str, Any] = {
        "business": "Casa Lucía",
        "country": "ES",
        "generated_at": datetime(2026, 12, 7, 4, 0, tzinfo=UTC),
        "past_start": date(2026, 10, 27),
        "past_end": day,
        "plan_start": date(2026, 11, 26),
        "plan_end": date(2026, 12, 25),
        "campaigns": (),
        "daily": (),
        "totals": {},
        "per_contact": {},
        "cap": 4,
        "window_days": 30,
        "window_start": date(2026, 10, 27),
        "silent_contacts": 0,
        "held": (),
        "runs": (),
        "held_groups": (),
        "letters": (),
        "emails": (),
    }
    return ReportData(**(values | changes))


def test_what_needs_the_owner_and_what_went_out_in_both_languages() -> None:
    """Failed, uncertain, bounced, returned, complained, a complaint rate past 1 per 1,000;
    emails that were sent, letters with their postage: each a sentence, in either language."""
    blocks = (
        Block("email", "ana@example.com", "c1", "hard-bounce", date(2026, 11, 20)),
        Block("email", "bea@example.com", "c2", "soft-bounces", date(2026, 11, 21)),
        Block("letter", "c3", "c3", "returned-letter", date(2026, 11, 22), postal_key="k"),
        Block("all", "c4", "c4", "complaint", date(2026, 11, 23)),
    )
    run = RunView(
        run_id=1,
        run_date=date(2026, 11, 25),
        started_at=None,
        dry_run=False,
        campaigns=(
            {"name": "promo", "emails": 4, "sent": 4, "letters": 0},
            {
                "name": "birthday",
                "emails": 0,
                "sent": 0,
                "letters": 3,
                "postage": {
                    "lines": [
                        {"zone": "domestic", "up_to_grams": 20, "letters": 2, "amount": 1.56},
                        {"zone": "europe", "up_to_grams": 20, "letters": 1, "amount": 1.85},
                    ]
                },
            },
        ),
        problems=(),
    )
    data = owner_data(
        totals={"promo": {"failed": 2, "uncertain": 1, "sent": 4}},
        blocks=blocks,
        complaints=(3, 1000),
        runs=(run,),
    )
    said = {n.key: (n.text, n.items) for n in owner.needs(data)}
    assert list(said) == [
        "failed",
        "uncertain",
        "returned",
        "bounced",
        "complaints",
        "complaint_rate",
    ]
    assert said["failed"][0] == (
        "2 messages failed: the next run tries them again; the tables below say why."
    )
    assert said["bounced"][0] == (
        "2 email addresses are blocked after bounces: correct them in contacts.csv."
    )
    assert said["bounced"][1][0].startswith("ana@example.com is blocked for email")
    assert said["returned"][0].startswith("1 letter came back by post")
    assert (
        said["complaints"][0] == "1 person marked an email as spam: they get nothing more from you."
    )
    assert "3 complaints in 1000 emails" in said["complaint_rate"][0]
    today = owner.went_out(data, money=lambda amount: f"€{amount:.2f}")
    lines = {line.key: line for line in today.lines}
    assert lines["email"].text == "4 emails were sent."
    assert lines["email"].by_campaign == (("promo", 4),)
    assert lines["letter"].text == "3 letters to print and post."
    assert lines["letter"].notes == ("Postage: €3.41.",)
    try:
        i18n.use("es")
        spanish = {n.key: n.text for n in owner.needs(data)}
        lines = {line.key: line for line in owner.went_out(data, money=str).lines}
    finally:
        i18n.use("en")
    assert spanish["failed"] == (
        "2 mensajes fallaron: la próxima ejecución los vuelve a intentar; las tablas de abajo "
        "dicen por qué."
    )
    assert spanish["complaints"] == (
        "1 persona marcó un correo como spam: ya no recibe nada más de usted."
    )
    assert lines["email"].text == "Se enviaron 4 correos."
    assert lines["letter"].text == "3 cartas que imprimir y echar al correo."
    assert lines["letter"].notes == ("Franqueo: 3.41.",)
