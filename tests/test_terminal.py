"""The terminal: progress bars in a real pty, silence without one, --help examples, JSON errors."""

from __future__ import annotations

import json
import math
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import click
import pytest
import smtp_server as servers
from conftest import REPO, REPORT_ON, Workspace, cli_server
from smtp_server import SmtpServer

from outreach.cli import cli
from outreach.cli.views import print_summary
from outreach.model.errors import Problem
from outreach.pipeline.summary import CampaignSummary, RunSummary

PROMO = """\
    kind: promotion
    channel: email
    start: 2000-01-01
    end: 2099-12-31
    email:
      subject: "Novedades"
      text: promo.txt.j2
    """
smtp_server = servers.smtp_server

BAR = re.compile(r"contacts \[[#.]+\]\s+(\d+)% ([\d,]+)/([\d,]+)(.*)")


def rows(n: int) -> list[str]:
    return [f"c{i},Ana,García,ana{i}@example.com,,,,,,,,customer," for i in range(n)]


def in_pty(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; (exit code, all output).

    Forked from the test process's CLI server with the terminal's follower as its three
    streams: to the run, a terminal as when a user types the command (click and the progress
    bars ask `isatty`, the width comes from COLUMNS), without the interpreter's start-up."""
    leader, follower = pty.openpty()
    started = time.monotonic()
    server = cli_server()
    pid = server.start(
        list(args),
        cwd=root,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        stdin=follower,
        stdout=os.dup(follower),
        stderr=os.dup(follower),
    )
    chunks = []
    code = None
    while True:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            code = server.status(pid, timeout=0)
            if code is not None:
                break
    if code is None:
        code = server.status(pid, timeout=120)
    assert code is not None, "the run did not end within 120 s"
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", errors="replace"), time.monotonic() - started


def frames(output: str) -> list[tuple[int, int, str]]:
    """Every drawing of the contacts bar: (shown, total, the rest of the line)."""
    found = []
    for piece in re.split(r"[\r\n]", output):
        match = BAR.search(piece.replace("\x1b[K", ""))
        if match:
            shown = int(match.group(2).replace(",", ""))
            total = int(match.group(3).replace(",", ""))
            found.append((shown, total, match.group(4)))
    return found


def eta_seconds(rest: str) -> int | None:
    match = re.search(r"ETA (?:(\d+):)?(\d+):(\d\d)", rest)
    if match is None:
        return None
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def test_the_run_draws_its_bar_on_the_terminal(
    make_workspace: Callable[..., Workspace],
) -> None:
    # 5,000 contacts in two worker processes: they come back in chunks of 500, two at a
    # time. How many frames the bar draws depends on how long the run takes (ten a second):
    # its small steps and its ETA are tested on a clock of the test's (tests/test_progress.py).
    ws = make_workspace(rows(5000), campaigns={"promo.yaml": PROMO})
    code, output, took = in_pty(
        ws.root, "run", "promo", "--date", "2026-11-24", env={"OUTREACH_WORKERS": "2"}
    )
    assert code == 0, output
    drawn = frames(output)
    assert drawn, output[-2000:]
    assert {total for _, total, _ in drawn} == {5000}
    shown = [s for s, _, _ in drawn]
    assert shown == sorted(shown), "the bar never goes back"
    assert drawn[-1][0] == 5000 and " in " in drawn[-1][2]
    etas = [e for e in (eta_seconds(rest) for _, _, rest in drawn) if e is not None]
    assert all(eta <= max(10, 3 * took) for eta in etas), (etas, took)
    assert "campaign" in output.split("contacts [")[-1]  # the summary follows the bar


@pytest.mark.parametrize("flag", ["--quiet", "--json"])
def test_no_bar_under_quiet_or_json(make_workspace: Callable[..., Workspace], flag: str) -> None:
    ws = make_workspace(rows(50), campaigns={"promo.yaml": PROMO})
    code, output, _ = in_pty(ws.root, "run", "promo", "--date", "2026-11-24", flag)
    assert code == 0, output
    assert "contacts [" not in output
    assert "\r" not in output.replace("\r\n", "\n")


def test_no_bar_without_a_terminal(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(rows(50), campaigns={"promo.yaml": PROMO})
    result = ws.run("run", "promo", "--date", "2026-11-24")
    assert result.code == 0, result.err
    assert result.err == ""
    assert "\r" not in result.out
    assert "contacts [" not in result.out


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    """The command at `path` and every command below it (a group's too), depth first."""
    found = [(path, command)]
    if isinstance(command, click.Group):
        subs = command.every_command() if command is cli else command.commands
        for name, sub in subs.items():
            found += _commands(sub, (*path, name))
    return found


def test_every_command_help_ends_with_examples() -> None:
    commands = _commands(cli)
    # The group itself, its groups (ledger, replies) and each of their commands.
    assert {(), ("ledger",), ("ledger", "rebuild"), ("replies", "done")} <= {p for p, _ in commands}
    for path, command in commands:
        epilog = command.epilog or ""
        examples = [line for line in epilog.splitlines() if line.strip().startswith("outreach ")]
        assert 2 <= len(examples) <= 3, (path, epilog)
        for line in examples:
            # An example of `ledger rebuild` starts `outreach ledger rebuild`; the group's may
            # show any command.
            assert tuple(line.split()[1 : 1 + len(path)]) == path, (path, line)


def test_help_shows_the_examples_at_the_end(sample_workspace: Workspace) -> None:
    result = sample_workspace.run("report", "--help")
    assert result.code == 0
    tail = result.out.rstrip().splitlines()[-1]
    assert tail.strip().startswith("outreach report")


def test_errors_in_json_mode_are_json(sample_workspace: Workspace) -> None:
    (sample_workspace.root / "config.yaml").write_text("cadence: [\n", encoding="utf-8")
    result = sample_workspace.run("run", "--all", "--json")
    assert result.code == 2
    error = json.loads(result.out)["error"]
    assert error["exit_code"] == 2
    assert "config.yaml" in error["message"]
    assert result.err == ""

    plain = sample_workspace.run("run", "--all")
    assert plain.code == 2
    assert plain.out == ""
    assert plain.err.startswith("error: ")


def test_usage_errors_in_json_mode_are_json_too(sample_workspace: Workspace) -> None:
    result = sample_workspace.run("run", "--json")
    assert result.code == 2
    error = json.loads(result.out)["error"]
    assert error["kind"] == "usage"
    assert "--all" in error["message"]


def test_shell_completion_works_as_the_readme_says(sample_workspace: Workspace) -> None:
    completion = subprocess.run(
        [sys.executable, "-m", "outreach"],
        cwd=sample_workspace.root,
        env={
            **os.environ,
            "_OUTREACH_COMPLETE": "bash_complete",
            "COMP_WORDS": "outreach repo",  # `rep` would also offer `replies`
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert completion.stdout.split() == ["plain,report"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "_OUTREACH_COMPLETE=bash_source outreach" in readme
    assert "_OUTREACH_COMPLETE=zsh_source outreach" in readme
    assert "_OUTREACH_COMPLETE=fish_source outreach" in readme


def test_the_send_bar_counts_emails_and_the_rate_limit_wait(
    make_workspace: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    ws = make_workspace(rows(3), campaigns={"promo.yaml": PROMO})
    config = (ws.root / "config.yaml").read_text(encoding="utf-8")
    ws.write(
        "config.yaml",
        config
        + "delivery:\n  method: smtp\n  host: 127.0.0.1\n"
        + f"  port: {smtp_server.port}\n  security: none\n  rate_per_minute: 5\n",
    )
    made = ws.run("run", "promo", "--date", "2026-11-24", "--now", "2026-11-24T10:00")
    assert made.code == 0, made.err
    # The last minute's budget spent 50 s ago: the first email waits up to 10 s, which is still
    # under way when the command has started, however slowly (4 s was not enough with the
    # machine's two cores shared by several test runs).
    state = ws.root / "state" / "smtp-rate.json"
    state.write_text(
        json.dumps({"sent_per_second": [[math.ceil(time.time()) - 50, 5]]}), encoding="utf-8"
    )
    code, output, _ = in_pty(ws.root, "send", "--date", "2026-11-24", "--now", "2026-11-24T10:00")
    assert code == 0, output
    assert len(smtp_server.handler.messages) == 3
    lines = [p.replace("\x1b[K", "") for p in re.split(r"[\r\n]", output)]
    bars = [line for line in lines if line.startswith("emails sent [")]
    assert any("waiting 0:0" in b and "for the rate limit" in b for b in bars)
    assert re.search(r"emails sent \[#+\] 100% 3/3 in \d:\d\d", output)
    assert "sent 3 emails" in output


def test_no_send_bar_without_a_terminal(
    make_workspace: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    ws = make_workspace(rows(2), campaigns={"promo.yaml": PROMO})
    config = (ws.root / "config.yaml").read_text(encoding="utf-8")
    ws.write(
        "config.yaml",
        config
        + "delivery:\n  method: smtp\n  host: 127.0.0.1\n"
        + f"  port: {smtp_server.port}\n  security: none\n",
    )
    result = ws.run("run", "promo", "--send", "--date", "2026-11-24", "--now", "2026-11-24T10:00")
    assert result.code == 0, result.err
    assert result.err == ""
    assert "emails sent [" not in result.out


def test_the_letters_bar(sample_workspace: Workspace) -> None:
    code, output, _ = in_pty(
        sample_workspace.root, "run", "--all", "--date", "2026-11-24", env={"OUTREACH_REPORT": "0"}
    )
    assert code == 0, output
    assert re.search(r"letters \(birthday\) \[#+\] 100% 2/2 in \d:\d\d", output), output[-3000:]


def test_the_validate_bars(sample_workspace: Workspace) -> None:
    code, output, _ = in_pty(sample_workspace.root, "validate", "--date", "2026-11-24")
    assert code == 0, output
    # validate is one run over every campaign: one bar over the contacts.
    assert re.search(r"checking \[#+\] 100% 30/30 in \d:\d\d", output), output
    assert "everything is in order" in output or "problems that hold back" in output
    plain = sample_workspace.run("validate", "--date", "2026-11-24")
    assert "checking " not in plain.out + plain.err


def test_the_run_says_it_is_writing_the_report_after_its_bar(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace(rows(5), campaigns={"promo.yaml": PROMO})
    code, output, _ = in_pty(ws.root, "run", "promo", "--date", "2026-11-24", env=REPORT_ON)
    assert code == 0, output
    bar = output.rindex("contacts [")
    writing = output.index("writing the report page…")
    assert bar < writing < output.index("report: out/reports/2026-11-24.html"), output
    # Not without a terminal: a cron job's mail has no use for it.
    plain = ws.run("run", "promo", "--date", "2026-11-25", env=REPORT_ON)
    assert plain.code == 0 and "writing the report" not in plain.out + plain.err


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, ["letters for birthday: 1 letter (covering 1 more at the same address), 1 page in ",
             "1 message could not be made:", "1 problem in the contacts file",
             "default language in birthday: 1 message in es:"]),
        (2, ["letters for birthday: 2 letters (covering 2 more at the same addresses), 2 pages",
             "2 messages could not be made:", "2 problems in the contacts file",
             "default language in birthday: 2 messages in es:"]),
    ],
)  # fmt: skip
def test_what_the_run_prints_counts_in_words_that_agree(
    capsys: pytest.CaptureFixture[str], count: int, expected: list[str]
) -> None:
    problems = [Problem(f"problem {i}", path="contacts.csv", line=i + 2) for i in range(count)]
    campaign = CampaignSummary(
        name="birthday",
        kind="birthday",
        channel="letter",
        due=count,
        letters=count,
        merged=count,
        pages=count,
        default_language=count,
        problems=[Problem(f"cannot make {i}") for i in range(count)],
        batch="out/letters/2026-11-24/birthday.pdf",
    )
    print_summary(
        RunSummary(
            run_date=date(2026, 11, 24),
            dry_run=False,
            delivery="outbox",
            campaigns=[campaign],
            problems=problems,
            default_locale="es",
        )
    )
    printed = capsys.readouterr().out
    for line in expected:
        assert line in printed, printed
    assert "(s)" not in printed and not re.search(r"\b1 (letters|pages|messages|problems)", printed)
