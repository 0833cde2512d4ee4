"""The Makefile: `make run` installs what running needs and deletes only the sample's output."""

from __future__ import annotations

import re
import subprocess
import tomllib

from conftest import REPO

TEST_SERVERS = (
    "chromium",
    "postgresql",
    "postfix",
    "dovecot-imapd",
    "dnsmasq-base",
    "spamassassin",
)


def _planned(*args: str) -> str:
    """What `make` would run for these targets (-n: printed, nothing run or installed)."""
    result = subprocess.run(
        ["make", "-n", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_make_run_installs_what_running_needs_and_no_test_server() -> None:
    planned = _planned("run")
    for package in ("libpango-1.0-0", "libharfbuzz-subset0", "fonts-dejavu-core", "poppler-utils"):
        assert package in planned
    for server in TEST_SERVERS:
        assert server not in planned


def test_make_test_installs_the_test_servers() -> None:
    planned = _planned("test")
    for package in (*TEST_SERVERS, "libpango-1.0-0"):
        assert package in planned


def test_make_run_deletes_out_and_state_of_the_sample_only() -> None:
    sample = _planned("run")
    assert "rm -rf out state" in sample
    assert "validate --date 2026-11-24" in sample

    mine = _planned("run", "WORKSPACE=/srv/casa")
    assert "rm " not in mine
    assert 'cd "/srv/casa"' in mine
    assert 'outreach" validate' in mine and 'outreach" run --all' in mine
    assert "--date" not in mine  # a workspace of one's own runs for today


def test_make_test_floor_installs_the_lowest_weasyprint_pyproject_allows() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    (bound,) = [d for d in project["project"]["dependencies"] if d.startswith("weasyprint")]
    lowest = re.search(r">=([\d.]+)", bound)
    assert lowest is not None, bound
    planned = _planned("test-floor")
    # 68 and 68.0 name one release; pip is given the full number.
    floor = re.search(r"weasyprint==([\d.]+)", planned)
    assert floor is not None, planned
    assert floor.group(1).removesuffix(".0") == lowest.group(1).removesuffix(".0")
    assert "tests/test_letter.py" in planned and "tests/test_printing.py" in planned
    assert "make test-floor" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
