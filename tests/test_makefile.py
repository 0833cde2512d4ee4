"""The Makefile: `make run` installs what running needs and deletes only the sample's output."""

from __future__ import annotations

import subprocess

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
