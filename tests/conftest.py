"""Shared fixtures: workspaces written into tmp_path, and the real CLI run as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pg_server import PgServer

REPO = Path(__file__).resolve().parent.parent

# Every real run also writes its report page (a plan, three charts, thumbnails): a second or two
# per run, hundreds of runs here. Only the report's own tests turn it on (REPORT_ON).
os.environ.setdefault("OUTREACH_REPORT", "0")
REPORT_ON = {"OUTREACH_REPORT": "1"}

BASE_CONFIG = """\
sender:
  name: "Casa Lucía"
  email: hola@casalucia.example
  reply_to: reservas@casalucia.example
  address: {street: "Calle de la Cava Baja, 12", postal_code: "28005", city: Madrid, country: ES}
  signature: Lucía Fernández
locale: es
timezone: Europe/Madrid
unsubscribe:
  url: "https://casalucia.example/baja?id={id}&token={token}"
coupon: {secret: test-secret, prefix: "CL-"}
cadence:
  min_gap_days: 0
  max_messages: 10
  per_days: 30
"""

HEADER = "id,first_name,last_name,email,birthday,street,postal_code,city,country,preferred_channel,locale,tags,opt_out"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests first (in their order), then the rest: with two test processes, the
    long kill and server tests then overlap with each other and the short ones fill in at the
    end, instead of one long test holding one process while the other has nothing left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def unmeasured_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI process the test will SIGKILL: without coverage's start-up
    variable, since a killed process never writes its coverage data (measuring it only slows
    the kill tests down)."""
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"}
    return {**env, **extra}


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    out: str
    err: str


@dataclass
class Workspace:
    """A workspace folder written by a test."""

    root: Path

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def run(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        """Run `python -m outreach ARGS` in the workspace, as a user would."""
        proc = subprocess.run(
            [sys.executable, "-m", "outreach", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **env} if env is not None else None,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def files(self, relative: str, pattern: str = "**/*.eml") -> list[Path]:
        base = self.root / relative
        return sorted(base.glob(pattern)) if base.exists() else []


@pytest.fixture
def sample_workspace(tmp_path: Path) -> Workspace:
    """A copy of the repository's sample workspace (config, contacts, campaigns, templates)."""
    return copy_sample(tmp_path / "ws")


def copy_sample(root: Path) -> Workspace:
    """The repository's sample workspace copied into the new folder `root`."""
    root.mkdir()
    shutil.copy(REPO / "config.yaml", root / "config.yaml")
    shutil.copy(REPO / "contacts.csv", root / "contacts.csv")
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    shutil.copytree(REPO / "templates", root / "templates")
    return Workspace(root)


@pytest.fixture
def make_workspace(tmp_path: Path) -> Callable[..., Workspace]:
    """A small workspace: config, contacts rows, and simple birthday/promotion campaigns."""

    def make(
        rows: list[str],
        *,
        config_extra: str = "",
        campaigns: dict[str, str] | None = None,
        templates: dict[str, str] | None = None,
    ) -> Workspace:
        ws = Workspace(tmp_path / "ws")
        ws.root.mkdir(exist_ok=True)
        ws.write("config.yaml", BASE_CONFIG + textwrap.dedent(config_extra))
        ws.write("contacts.csv", "\n".join([HEADER, *rows]) + "\n")
        default_templates = {
            "birthday.txt.j2": "Hola {{ contact.first_name }}, ¡feliz cumpleaños!\nTu regalo: {{ coupon }}\n",
            "birthday.html.j2": "<style>p { color: #333; }</style><p>Hola {{ contact.first_name }}</p>\n",
            "promo.txt.j2": "Hola {{ contact.first_name | default('amigo') }}, menú de otoño.\n",
        }
        for name, text in {**default_templates, **(templates or {})}.items():
            ws.write(f"templates/{name}", text)
        default_campaigns = {
            "birthday.yaml": """\
                kind: birthday
                channel: email
                days_before: 3
                priority: 80
                email:
                  subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
                  text: birthday.txt.j2
                  html: birthday.html.j2
                """,
        }
        for name, text in (campaigns if campaigns is not None else default_campaigns).items():
            ws.write(f"campaigns/{name}", text)
        return ws

    return make


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the session (tests/pg_server.py), removed at the end."""
    server = PgServer()
    try:
        server.start()
        server.prepare_template()
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh database with the ledger's schema, on the session's server."""
    if not pg_server.running():  # a test stopped it (the database going away mid-run)
        pg_server.start()
    yield pg_server.database()
