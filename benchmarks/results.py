"""Outcomes benchmark: `outreach redeem`, `outreach visits --import` and `outreach results`.

    .venv/bin/python benchmarks/results.py [--n 100000] [--rows 1000000] [--work DIR]

Builds a synthetic workspace (benchmarks/synth.py) of N contacts and a ledger of ROWS message
rows (ten campaigns a contact, a fifth of each held out as its control group, spread over a
year), a till's export of N visits (comma decimals), then times each command as a user runs
it, in a process of its own: the import, `results` over the year, and `redeem` — the first
one after the ledger grew (it reads the new messages into the coupon index) and then the
steady state (median of 5). Prints wall time, peak memory (max RSS) and the machine's load.

Targets (issue "Did it bring them back?"): redeem <= 0.3 s as a command; importing 100,000
visits <= 10 s; results over 100,000 contacts and a million ledger rows <= 10 s.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.synth import write_workspace  # noqa: E402
from outreach.ledger import Ledger  # noqa: E402
from outreach.outcomes.coupons import coupon_code  # noqa: E402
from outreach.rules.control import in_control  # noqa: E402

TODAY = date(2026, 11, 24)
START = date(2025, 11, 25)
CAMPAIGNS = 10


def build_ledger(path: Path, ids: list[str], rows: int) -> None:
    """ROWS message rows over a year; a fifth of each campaign held out as control."""
    with Ledger.open(path):
        pass  # the schema
    rng = random.Random(3)
    per = max(1, rows // len(ids))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    batch = []
    for n, contact_id in enumerate(ids):
        for k in range(per):
            campaign = f"campaign-{k % CAMPAIGNS}"
            day = (START + timedelta(days=(n + 37 * k) % 360)).isoformat()
            held = in_control(campaign=campaign, contact_id=contact_id, percent=20)
            status, code = (
                ("skipped", "control") if held else (rng.choice(("rendered", "sent")), None)
            )
            batch.append((contact_id, campaign, f"one_off:{k}", status, day, code))
        if len(batch) >= 50_000:
            _insert(db, batch)
            batch = []
    _insert(db, batch)
    db.execute("COMMIT")
    db.close()


def _insert(db: sqlite3.Connection, batch: list[tuple[str, ...]]) -> None:
    db.executemany(
        "INSERT INTO messages (contact_id, campaign, occurrence_key, channel, status, run_date, "
        "earliest, latest, effective_date, reason_code, created_at, updated_at) "
        "VALUES (?1, ?2, ?3, 'email', ?4, ?5, ?5, ?5, ?5, ?6, '2026-01-01', '2026-01-01')",
        [(c, name, key, status, day, code) for c, name, key, status, day, code in batch],
    )


def write_visits(path: Path, ids: list[str], n: int) -> None:
    rng = random.Random(5)
    lines = ["fecha;cliente;importe"]
    for _ in range(n):
        day = START + timedelta(days=rng.randrange(400))
        lines.append(
            f"{day:%d/%m/%Y};{rng.choice(ids)};{rng.randrange(800, 9000) / 100:.2f}".replace(
                ".", ","
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(root: Path, *args: str) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS (KiB) and last line of output of
    one command in a fresh process (CPU too: on a shared machine the wall time is inflated)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read() if proc.stdout is not None else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        sys.exit(f"outreach {' '.join(args)} failed ({proc.returncode}): {out}")
    lines = out.strip().splitlines()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, lines[-1] if lines else ""


def show(what: str, measured: tuple[float, float, int, str]) -> None:
    wall, cpu, rss, last = measured
    print(f"{what}: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss / 1024:.0f} MB  [{last}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="contacts (and visits)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger rows")
    parser.add_argument("--work", type=Path, default=None, help="folder to build in")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="outreach-results-"))
    root = work / "ws"
    write_workspace(root, contacts=args.n, today=TODAY)
    ids = [f"c{i:06d}" for i in range(1, args.n + 1)]
    ledger = root / "state" / "ledger.sqlite"
    build_ledger(ledger, ids, args.rows)
    write_visits(root / "caja.csv", ids, args.n)
    print(
        f"load {os.getloadavg()[0]:.2f}; {args.n:,} contacts, {args.rows:,} ledger rows", flush=True
    )

    show(f"visits --import ({args.n:,} lines)", run(root, "visits", "--import", "caja.csv"))
    show(
        f"results over {args.rows:,} rows",
        run(root, "results", "--from", START.isoformat(), "--to", TODAY.isoformat()),
    )
    sent = [i for i in ids if not in_control(campaign="campaign-0", contact_id=i, percent=20)]
    codes = [
        coupon_code(
            secret="benchmark-secret",
            contact_id=contact_id,
            campaign="campaign-0",
            occurrence_key="one_off:0",
            prefix="CL-",
            length=8,
        )
        for contact_id in sent[-6:]  # the last rows of the contacts file: the longest look-up
    ]
    day = ["--date", TODAY.isoformat()]
    show(
        f"redeem, the first after {args.rows:,} new rows (fills the coupon index)",
        run(root, "redeem", codes[0], *day),
    )
    steady = [run(root, "redeem", code, *day) for code in codes[1:]]
    walls, cpus = [m[0] for m in steady], [m[1] for m in steady]
    print(
        f"redeem, steady (median of {len(steady)}): {statistics.median(walls):.3f} s wall, "
        f"{statistics.median(cpus):.3f} s CPU",
        flush=True,
    )
    show("for scale, `outreach --help`", run(root, "--help"))
    print(f"load {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
