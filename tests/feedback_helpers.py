"""Shared pieces of the feedback tests: a workspace whose promo went to eight contacts, and
Maildir folders on disk."""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from conftest import Workspace

DATA = Path(__file__).parent / "data" / "bounces"
RUN_DATE = "2026-11-23"
BOUNCE_DATE = "2026-11-24"

ROWS = [
    "c-001,Ana,López,ana@example.com,,Calle Mayor 1,28013,Madrid,ES,email,es,,",
    "c-002,Bruno,Gil,bruno@example.net,,Calle Luna 2,28004,Madrid,ES,email,es,,",
    "c-003,Carla,Vidal,carla@example.org,,Calle Sol 3,28005,Madrid,ES,email,es,,",
    "c-004,Darío,Marín,dario@contoso.example,,Calle Pez 4,28004,Madrid,ES,email,es,,",
    "c-005,Elena,Prieto,elena@yahoo.com,,Calle Prado 5,28014,Madrid,ES,email,es,,",
    "c-006,Federico,Ruiz,fede@example.com,,Calle Olmo 6,28012,Madrid,ES,email,es,,",
    "c-007,Gema,Ortiz,gema@example.com,,Calle Pino 7,28015,Madrid,ES,email,en,,",
    "c-008,Hugo,Sanz,hugo@example.org,,Calle Roble 8,28010,Madrid,ES,email,es,,",
]
PROMO = """\
    name: promo
    kind: promotion
    channel: preferred
    fallback: true
    start: 2026-11-01
    end: 2026-12-31
    email:
      subject: "Menú de otoño"
      text: promo.txt.j2
    letter:
      template: promo_letter.html.j2
    """
LETTER = "<p>Hola {{ contact.first_name }}, menú de otoño.</p>\n"
SAMPLES = {
    "postfix-hard.eml": ("hard", "c-001", "ana@example.com"),
    "exim-hard.eml": ("hard", "c-002", "bruno@example.net"),
    "qmail-hard.eml": ("hard", "c-003", "carla@example.org"),
    "exchange-hard.eml": ("hard", "c-004", "dario@contoso.example"),
    "yahoo-hard.eml": ("hard", "c-005", "elena@yahoo.com"),
    "vacation.eml": ("auto-reply", None, None),
    "arf-complaint.eml": ("complaint", "c-007", "gema@example.com"),
    "postfix-delayed.eml": ("soft", "c-008", "hugo@example.org"),
}


# rows → a folder holding the `out/` and `state/` of the promo run on those rows: the run is
# the slow part of these tests, and its result does not depend on what a test adds later.
_RUNS: dict[tuple[str, ...], Path] = {}
_CACHE = Path(tempfile.mkdtemp(prefix="outreach-feedback-runs-"))
atexit.register(shutil.rmtree, _CACHE, True)


def promo_workspace(
    make_workspace: Callable[..., Workspace], *, config_extra: str = "", rows: list[str] = ROWS
) -> Workspace:
    """The workspace, with the promo's emails (and letters) rendered, in the ledger, on RUN_DATE.

    `config_extra` is added to config.yaml after the run (it only matters to what follows).
    """
    ws: Workspace = make_workspace(
        rows, campaigns={"promo.yaml": PROMO}, templates={"promo_letter.html.j2": LETTER}
    )
    key = tuple(rows)
    done = _RUNS.get(key)
    if done is None:
        result = ws.run("run", "--all", "--date", RUN_DATE)
        assert result.code == 0, result.err
        done = _CACHE / str(len(_RUNS))
        for name in ("out", "state"):
            shutil.copytree(ws.root / name, done / name)
        _RUNS[key] = done
    else:
        for name in ("out", "state"):
            shutil.copytree(done / name, ws.root / name)
    config = ws.root / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + config_extra, encoding="utf-8")
    return ws


def make_maildir(path: Path) -> Path:
    """An empty Maildir (new/, cur/, tmp/)."""
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(maildir: Path, name: str, data: bytes | None = None) -> Path:
    """Put a message in the Maildir's new/ as a mail server does (tmp/, then rename)."""
    payload = data if data is not None else (DATA / name).read_bytes()
    unique = f"1795511703.M{len(list((maildir / 'new').iterdir()))}P1.test,S={len(payload)}"
    tmp = maildir / "tmp" / unique
    tmp.write_bytes(payload)
    target = maildir / "new" / unique
    tmp.rename(target)
    return target


def copy_samples(maildir: Path, names: list[str] | None = None) -> None:
    """Deliver the named samples (default: all of them) into the Maildir."""
    for name in names or sorted(SAMPLES):
        deliver(maildir, name)


def ledger_rows(ws: Workspace, sql: str) -> list[tuple[object, ...]]:
    """Rows of a query on the workspace's ledger, read with plain sqlite3."""
    conn = sqlite3.connect(ws.root / "state" / "ledger.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def snapshot(ws: Workspace) -> list[list[tuple[object, ...]]]:
    """Everything the feedback commands may write: to compare before and after."""
    return [
        ledger_rows(ws, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("bounce_events", "blocks", "feedback_seen", "suppressions", "messages")
    ]


def tree(path: Path) -> list[str]:
    """Every file under a folder, relative."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
