"""Cron-friendly output: --quiet prints only what needs a person; --log-file keeps a rotating log."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import smtp_server as smtp_server_module
from conftest import Workspace

from outreach.logs import LOG_MAX_BYTES

closed_port = smtp_server_module.closed_port

DAY = "2026-11-24"
# Birthdays on 25 and 26 Nov: both due on DAY (3 days before).
GOOD = [
    "c1,Ana,García,ana@example.com,26/11/1990,,,,,,,customer,",
    "c2,José,Núñez,jose@example.com,25/11/1985,,,,,,,customer,",
]
# No first name: the birthday template needs one, so this contact's message fails.
NO_NAME = "c3,,López,luis@example.com,26/11/1975,,,,,,,customer,"
# A broken address: the row is held back and reported.
BAD_ROW = "c4,Eva,Ruiz,eva@@example.com,26/11/1980,,,,,,,customer,"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (INFO|WARNING|ERROR) ")


def emails(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.files("out/outbox"))


def test_quiet_prints_nothing_when_all_went_well(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(GOOD)
    result = ws.run("run", "--all", "--date", DAY, "--quiet")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert emails(ws) == ["c1.eml", "c2.eml"]  # quiet, not idle
    # A second run has nothing to do, and says nothing either.
    again = ws.run("run", "--all", "--date", DAY, "-q")
    assert (again.code, again.out, again.err) == (0, "", "")


def test_quiet_speaks_when_a_message_failed(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace([*GOOD, NO_NAME])
    result = ws.run("run", "--all", "--date", DAY, "--quiet")
    assert result.code == 1  # some messages failed, the rest were done
    assert emails(ws) == ["c1.eml", "c2.eml"]
    # The whole summary, so the mail cron sends says what happened.
    assert "outreach run for 2026-11-24" in result.out
    assert "1 message could not be made" in result.out
    assert "c3" in result.out and "first_name" in result.out


def test_quiet_speaks_about_bad_rows(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace([*GOOD, BAD_ROW])
    result = ws.run("run", "--all", "--date", DAY, "--quiet")
    assert result.code == 0  # the other rows were done
    assert "in the contacts file (rows held back)" in result.out
    assert "eva@@example.com" in result.out


def test_quiet_still_reports_errors(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(GOOD, config_extra="letters: {delivery_days: -1}\n")
    result = ws.run("run", "--all", "--date", DAY, "--quiet")
    assert result.code == 2
    assert result.out == ""
    assert "error: " in result.err and "delivery_days" in result.err


def test_quiet_with_json_prints_the_json(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(GOOD)
    result = ws.run("run", "--all", "--date", DAY, "--quiet", "--json")
    assert result.code == 0
    assert json.loads(result.out)["campaigns"][0]["emails"] == 2


def test_log_file_appends_a_timestamped_summary(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = make_workspace([*GOOD, NO_NAME])
    log = tmp_path / "logs" / "outreach.log"  # the folder is created
    first = ws.run("run", "--all", "--date", DAY, "--quiet", "--log-file", str(log))
    assert first.code == 1
    contacts = ws.root / "contacts.csv"
    contacts.write_text(contacts.read_text().replace("c3,,", "c3,Luis,"), encoding="utf-8")
    second = ws.run("run", "--all", "--date", DAY, "--log-file", str(log))
    assert second.code == 0
    assert "outreach run for 2026-11-24" in second.out  # the log does not replace the output
    lines = log.read_text(encoding="utf-8").splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    heads = [line for line in lines if "run for 2026-11-24:" in line]
    assert len(heads) == 2
    # The first run failed one message: logged as a warning, with the problem.
    assert " WARNING outreach run --all" in heads[0]
    assert "2 emails, 0 letters, 0 deferred, 1 failed" in heads[0]
    assert any("WARNING   birthday: due 3, done before 0, emails 2" in line for line in lines)
    assert any("problem [birthday]" in line and "first_name" in line for line in lines)
    # The second, with the name filled in, made the missing message and all went well.
    assert " INFO outreach run --all" in heads[1]
    assert "1 email, 0 letters, 0 deferred, 0 failed" in heads[1]


def test_log_file_records_a_run_that_could_not_start(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = make_workspace(GOOD)
    (ws.root / "contacts.csv").unlink()
    log = tmp_path / "outreach.log"
    result = ws.run("run", "--all", "--date", DAY, "--quiet", "--log-file", str(log))
    assert result.code == 2
    assert "contacts.csv" in result.err
    (line,) = log.read_text(encoding="utf-8").splitlines()
    assert STAMP.match(line) and " ERROR outreach run --all" in line and "contacts.csv" in line


def test_log_file_rotates(make_workspace: Callable[..., Workspace], tmp_path: Path) -> None:
    ws = make_workspace(GOOD)
    log = tmp_path / "outreach.log"
    old = "x" * 99 + "\n"
    log.write_text(old * (LOG_MAX_BYTES // 100), encoding="utf-8")
    result = ws.run("run", "--all", "--date", DAY, "--quiet", "--log-file", str(log))
    assert result.code == 0
    rotated = tmp_path / "outreach.log.1"
    assert rotated.read_text(encoding="utf-8").startswith(old)
    assert "run for 2026-11-24" in log.read_text(encoding="utf-8")
    assert log.stat().st_size < 10_000


def test_log_file_that_cannot_be_written(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(GOOD)
    (ws.root / "taken").write_text("a file, not a folder\n")
    result = ws.run("run", "--all", "--date", DAY, "--log-file", "taken/outreach.log")
    assert result.code == 2
    assert "cannot open the log file" in result.err
    assert emails(ws) == []  # nothing was done


# A promotion open every day, whose template needs a first name: the daemon reads the real clock.
ALWAYS = {
    "promo.yaml": """\
        kind: promotion
        channel: email
        start: 2000-01-01
        end: 2099-12-31
        email:
          subject: "Novedades"
          text: strict.txt.j2
        """
}
STRICT = {"strict.txt.j2": "Hola {{ contact.first_name }}\n"}
SCHEDULE = 'schedule: [{campaigns: all, at: "00:00"}]\n'


def test_daemon_once_quiet_prints_nothing_when_all_went_well(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(GOOD, config_extra=SCHEDULE, campaigns=ALWAYS, templates=STRICT)
    result = ws.run("daemon", "--once", "--quiet")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert emails(ws) == ["c1.eml", "c2.eml"]


def test_daemon_once_quiet_speaks_when_a_message_failed(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace([*GOOD, NO_NAME], config_extra=SCHEDULE, campaigns=ALWAYS, templates=STRICT)
    result = ws.run("daemon", "--once", "--quiet")
    assert result.code == 1
    assert result.out == ""
    assert "WARNING job 00:00 all: run for" in result.err
    assert "1 failed" in result.err
    assert "c3" in result.err and "first_name" in result.err
    assert "INFO" not in result.err
    assert emails(ws) == ["c1.eml", "c2.eml"]


def test_send_quiet_says_nothing_when_nothing_waits(
    make_workspace: Callable[..., Workspace], closed_port: int
) -> None:
    smtp = f"delivery: {{method: smtp, host: 127.0.0.1, port: {closed_port}, security: none}}\n"
    ws = make_workspace(GOOD, config_extra=smtp)
    result = ws.run("send", "--quiet", "--now", "2026-11-24T10:00")
    assert (result.code, result.out, result.err) == (0, "", "")


def test_run_send_quiet_speaks_when_the_server_is_down(
    make_workspace: Callable[..., Workspace], closed_port: int, tmp_path: Path
) -> None:
    smtp = (
        f"delivery: {{method: smtp, host: 127.0.0.1, port: {closed_port}, security: none, "
        "max_retries: 0, timeout_s: 5}\n"
    )
    ws = make_workspace(GOOD, config_extra=smtp)
    log = tmp_path / "outreach.log"
    result = ws.run(
        "run", "--all", "--send", "--quiet", "--now", "2026-11-24T10:00", "--log-file", str(log)
    )
    assert result.code == 1
    assert (result.out + result.err).strip() != ""
    text = log.read_text(encoding="utf-8")
    assert "send: 0 sent of 2 waiting" in text
    assert " WARNING " in text
