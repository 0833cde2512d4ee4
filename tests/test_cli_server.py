"""The suite's forked CLI runs (tests/cli_server.py) are what `python -m outreach` does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import copy_sample

COMMANDS = [
    ("validate", "--date", "2026-11-24"),
    ("run", "--all", "--date", "2026-11-24"),
    ("run", "--all", "--date", "2026-11-24"),  # the second time: all done before
    ("explain", "c012", "--date", "2026-11-24"),
    ("history", "--status", "skipped"),
    ("no-such-command",),
    ("run", "--date", "not-a-date", "--all"),
]


def made_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "out").rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_forked_run_prints_exits_and_writes_what_a_fresh_process_does(tmp_path: Path) -> None:
    fresh, forked = copy_sample(tmp_path / "fresh"), copy_sample(tmp_path / "forked")
    for args in COMMANDS:
        # Unmeasured both: what is compared is the process, not the package's lines.
        want = fresh.run(*args, fresh=True, measured=False)
        got = forked.run(*args, measured=False)
        assert (got.code, got.out, got.err) == (want.code, want.out, want.err), args
    assert made_files(forked.root) == made_files(fresh.root)
    assert any(name.endswith(".pdf") for name in made_files(forked.root))  # letters too


def test_a_forked_run_has_the_environment_and_folder_it_was_given(tmp_path: Path) -> None:
    ws = copy_sample(tmp_path / "ws")
    result = ws.run("run", "--all", "--date", "2026-11-24", env={"OUTREACH_REPORT": "1"})
    assert result.code == 0, result.err
    assert (ws.root / "out" / "reports" / "2026-11-24.html").is_file()  # the variable reached it
    assert os.environ["OUTREACH_REPORT"] == "0"  # and went no further than that run


def test_a_forked_run_past_its_timeout_is_killed(tmp_path: Path) -> None:
    ws = copy_sample(tmp_path / "ws")
    with pytest.raises(subprocess.TimeoutExpired):
        ws.run("daemon", timeout=2)
