"""The smaller hostile inputs: a tampered ledger, a contacts path that is no file, a very wide
header, a lone quote in a quoted cell, loose config types, and a summary of one problem a
thousand times. Each is a clear message, never a traceback, a hang or a silent misreading."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from conftest import BASE_CONFIG, REPORT_ON, Workspace

from outreach.cli.views import print_summary
from outreach.contacts import iter_contacts, load_contacts
from outreach.ledger import Ledger
from outreach.logs import log_summary
from outreach.model.campaigns import load_campaign
from outreach.model.config import ContactsSettings, load_settings
from outreach.model.errors import CampaignError, ConfigError, ContactsError, LedgerError, Problem
from outreach.pipeline.summary import CampaignSummary, RunSummary

DAY = "2026-11-24"
ROW = "c001,Ana,A,ana@example.com,25/11/1980,,,,,email,es,customer,"
SETTINGS = ContactsSettings()


def load(path: Path) -> list[str]:
    """The problems of a contacts file, as printed."""
    return [str(p) for p in load_contacts(path, settings=SETTINGS, default_locale="es").problems]


# -- the ledger ----------------------------------------------------------------------------


def test_a_tampered_ledger_date_is_an_error_naming_the_row(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace([ROW])
    assert ws.run("run", "--all", "--date", DAY).code == 0
    path = ws.root / "state" / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE messages SET run_date = 'yesterday', effective_date = '2026-13-45'")
        db.execute("UPDATE runs SET started_at = 'noon'")
    for args in (("history",), ("history", "--json"), ("explain", "c001", "--date", DAY)):
        result = ws.run(*args)
        said = result.out + result.err  # --json says it on stdout
        assert result.code == 2, said
        assert "Traceback" not in said
        assert "messages row of 'c001', 'birthday', 'birthday:2026'" in said, said
        assert "'yesterday'" in said and "restore the ledger" in said
    with pytest.raises(LedgerError, match=r"the runs row 1 holds 'noon'"):
        Ledger.read(path, lambda ledger: ledger.runs())
    with pytest.raises(LedgerError, match="'2026-13-45'"):
        Ledger.read(path, lambda ledger: ledger.contact_pressure(since=date(2026, 1, 1)))


# -- the contacts file -----------------------------------------------------------------------


def test_a_contacts_path_that_is_no_regular_file_is_refused_without_waiting(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "contacts.csv"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    sheet = tmp_path / "pipe.xlsx"
    os.mkfifo(sheet)
    outcome: list[str] = []

    def read() -> None:  # in a thread: on a FIFO, an open() without a writer never returns
        for path in (fifo, folder, sheet):
            for reader in (load_contacts, iter_contacts):
                try:
                    reader(path, settings=SETTINGS, default_locale="es")
                except ContactsError as exc:
                    outcome.append(str(exc))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=60)
    if thread.is_alive():  # let the stuck open() return, so the test process can end
        for path in (fifo, sheet):
            with path.open("w"):
                pass
    assert len(outcome) == 6, outcome
    assert all("is not a regular file" in text and "paths.contacts" in text for text in outcome)


def test_a_wide_header_is_read_whole_and_misspellings_are_looked_for_in_the_first_columns(
    tmp_path: Path,
) -> None:
    """Linear in the columns (benchmarks/wide_header.py measures it): every unnamed column is
    still named by its own position, and misspellings are sought among the first 50 only."""
    width = 5000
    path = tmp_path / "wide.csv"
    # "emailaa", "emailab"…: each one a near miss of "email" (difflib says so, on main too).
    near = [f"email{a}{b}" for a in "abc" for b in "abcdefghijklmnopqrstuvwxyz"][:60]
    header = ["id", *(near[n] if n < 60 else "" for n in range(width))]
    row = ["c1", *("" if n < 60 else "v" for n in range(width))]
    path.write_text(",".join(header) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    problems = load_contacts(path, settings=SETTINGS, default_locale="es").problems
    unnamed = [p for p in problems if "column without a name" in p.message]
    assert [p.column for p in unnamed] == list(range(62, width + 2))
    misspelt = [p for p in problems if "did you mean 'email'?" in p.message]
    assert len(misspelt) == 50 and len(problems) == len(unnamed) + 50


def test_a_lone_quote_inside_a_quoted_cell_is_a_row_problem(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "id,first_name,last_name,email\n"
        'c1,Ana,"Lo"pez",ana@example.com\n'  # the lone quote: "Lopez\"" on main, silently
        'c2,Bea,"Ru""iz",bea@example.com\n'  # a doubled quote: one quote in the value
        'c3,"Eva ",  "Sol" ,eva@example.com\n'  # spaces around a quoted value
        'c4,Pia,"Calle\nMayor"x,pia@example.com\n'  # the lone quote on a value's second line
        'c5,Noa,O"Brien,noa@example.com\n',  # a quote inside an unquoted value
        encoding="utf-8",
    )
    contacts = load_contacts(path, settings=SETTINGS, default_locale="es")
    names = {c.id: c.last_name for c in contacts.contacts}
    assert names == {"c2": 'Ru"iz', "c3": "Sol", "c5": 'O"Brien'}
    assert [p.line for p in contacts.problems] == [2, 6]
    assert all("quote inside a quoted value" in p.message for p in contacts.problems)
    stream = iter_contacts(path, settings=SETTINGS, default_locale="es")
    assert [c.id for c in stream] == ["c2", "c3", "c5"]


# -- config types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("min_gap_days: 0", "min_gap_days: true", "cadence.min_gap_days: true/false is not"),
        ("max_messages: 10", "max_messages: false", "cadence.max_messages: true/false is not"),
        ("locale: es", "locale: zz_QQ", "locale: 'zz_QQ' is not a known locale"),
        ("locale: es", "locale: es\ncontacts: {default_locale: xx}", "'xx' is not a known"),
    ],
)
def test_config_types_are_strict(old: str, new: str, said: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE_CONFIG.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError, match=said):
        load_settings(config)


def test_a_locale_babel_knows_and_real_numbers_still_pass(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        BASE_CONFIG.replace("locale: es", "locale: es-MX\ncontacts: {default_locale: en_GB}"),
        encoding="utf-8",
    )
    settings = load_settings(config)
    assert (settings.locale, settings.default_locale) == ("es-MX", "en_GB")
    assert settings.cadence.max_messages == 10


def test_a_campaign_refuses_true_for_a_number_of_days(tmp_path: Path) -> None:
    path = tmp_path / "birthday.yaml"
    path.write_text(
        "kind: birthday\nchannel: email\ndays_before: true\n"
        "email: {subject: Hola, text: b.txt.j2}\n",
        encoding="utf-8",
    )
    (tmp_path / "b.txt.j2").write_text("Hola\n", encoding="utf-8")
    with pytest.raises(CampaignError, match="days_before: true/false is not a number"):
        load_campaign(path, templates_dir=tmp_path)


# -- summaries -------------------------------------------------------------------------------


def _full_disk_summary() -> RunSummary:
    full = Problem(
        "cannot write the email: [Errno 28] No space left on device",
        path="out/outbox/2026-11-24/promo",
        campaign="promo",
        hint="free some disk space; the next run makes the messages that failed",
    )
    other = Problem("'contact.x' is undefined", path="promo.txt.j2", line=1, campaign="promo")
    campaign = CampaignSummary(name="promo", kind="promotion", channel="email")
    campaign.problems.extend([full] * 2980 + [other, other])
    row = Problem("'x@@y' is not a valid email address", path="contacts.csv", line=3)
    return RunSummary(
        run_date=date(2026, 11, 24),
        dry_run=False,
        delivery="outbox",
        campaigns=[campaign],
        problems=[row, row],
    )


def test_one_problem_a_thousand_times_is_printed_once_with_its_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_summary(_full_disk_summary())
    out = capsys.readouterr().out
    assert out.count("No space left on device") == 1, out
    assert "No space left on device — free some disk space" in out
    assert "(2980 times)" in out and "'contact.x' is undefined (2 times)" in out
    assert out.count("x@@y") == 1 and "outreach validate" not in out, out


def test_the_log_of_a_full_disk_says_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_hostile_inputs")
    with caplog.at_level(logging.INFO, logger="test_hostile_inputs"):
        log_summary(logger, _full_disk_summary())
    text = caplog.text
    assert text.count("No space left on device") == 1 and "(2980 times)" in text
    assert text.count("x@@y") == 1 and "more problem" not in text, text


# -- the report ------------------------------------------------------------------------------


def test_the_report_goes_where_paths_out_points_even_outside_the_workspace(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere" / "out"
    ws = make_workspace([ROW], config_extra=f"paths:\n  out: {elsewhere}\n")
    result = ws.run("run", "--all", "--date", DAY, env=REPORT_ON)
    assert result.code == 0, result.out + result.err
    assert "could not be written" not in result.err, result.err
    page = elsewhere / "reports" / f"{DAY}.html"
    assert f"report: {page}" in result.out
    text = page.read_text(encoding="utf-8")
    assert f'href="../outbox/{DAY}/birthday/c001.eml"' in text  # a link that opens
    again = ws.run("report", "--to", DAY)
    assert again.code == 0 and "Traceback" not in again.err, again.err
    (ws.root / "blocked").write_text("a file, not a folder", encoding="utf-8")
    blocked = ws.run("report", "--to", DAY, "-o", "blocked/page.html")
    assert blocked.code == 2, blocked.out + blocked.err
    assert "the report page cannot be written" in blocked.err
    assert "Traceback" not in blocked.err
