"""Shards on PostgreSQL beside one SQLite run: 100,000 emails, on a ledger of a million rows.

    .venv/bin/python benchmarks/shards.py [--contacts 100000] [--rows 1000000] [--shards 4]
                                          [--date 2026-11-24] [--work DIR]

It writes benchmarks/synth.py's workspace (every contact due for the birthday campaign on
`--date`), fills a SQLite ledger with `--rows` past messages (benchmarks/ledger.py's generator:
two years of birthdays, promotions and reminders), starts a local PostgreSQL server (initdb in a
temporary folder, the server's default durability: fsync and synchronous commits on) and copies
the ledger into it with `outreach ledger copy` (timed). Then, in the same sitting:

* one `outreach run --all` on the SQLite ledger;
* `--shards` processes `outreach run --all --shard K/N` started at once against the server.

For each: emails made, wall time, CPU time (user + sys of the run and its workers; the
server's backends apart), messages/s, peak RSS, and the ledger's share of the run's time: each
run is started through a small wrapper that times every call into `Ledger` (opening, reading the
history, recording, ending the run) and writes the sum at exit. Runs set OUTREACH_REPORT=0: the
report page has its own benchmark. The machine's load (uptime) is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["OUTREACH_REPORT"] = "0"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import PgServer  # noqa: E402

from benchmarks.ledger import fill_ledger  # noqa: E402
from benchmarks.synth import write_workspace  # noqa: E402

# Started as `python -c WRAPPER <timings file> <outreach args...>`: the CLI, with every public
# method of Ledger timed (calls nested in another Ledger call are counted once).
WRAPPER = """
import atexit, functools, sys, time
from outreach.ledger import backend, sql
out, args = sys.argv[1], sys.argv[2:]
spent = [0.0, 0]
depth = [0]
def timed(fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        if depth[0]:
            return fn(*a, **k)
        depth[0] += 1
        started = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            depth[0] -= 1
            spent[0] += time.perf_counter() - started
            spent[1] += 1
    return wrapper
for cls in (sql.SqlLedger, backend.Ledger):
    for name, value in list(vars(cls).items()):
        if name.startswith("_") and name not in ("__exit__",):
            continue
        if isinstance(value, classmethod):
            setattr(cls, name, classmethod(timed(value.__func__)))
        elif callable(value):
            setattr(cls, name, timed(value))
atexit.register(lambda: open(out, "w").write(f"{spent[0]} {spent[1]}"))
sys.argv = ["outreach", *args]
from outreach.cli import main
main()
"""


@dataclass
class Run:
    label: str
    emails: int
    seconds: float
    cpu: float
    rss_mb: float
    ledger_s: float
    code: int


def start(
    ws: Path, args: list[str], *, env: dict[str, str], timings: Path
) -> subprocess.Popen[bytes]:
    with open(timings.with_suffix(".json"), "wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(timings), *args],
            cwd=ws,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.PIPE,
        )


def finish(label: str, proc: subprocess.Popen[bytes], *, started: float, timings: Path) -> Run:
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    summary = json.loads(timings.with_suffix(".json").read_text() or "{}")
    if code != 0:
        print(f"{label}: exit {code}\n{err}", file=sys.stderr)
    emails = sum(c["emails"] for c in summary.get("campaigns", []))
    ledger_s = float(timings.read_text().split()[0]) if timings.exists() else float("nan")
    return Run(
        label,
        emails,
        seconds,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        ledger_s,
        code,
    )


def server_cpu(server: PgServer) -> float:
    """CPU seconds of the server and of the backends it has reaped (ended connections)."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime: fields 14-17 of stat(5), 12-15 after the name.
    return sum(int(value) for value in fields[11:15]) / ticks


def copy_workspace(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("out", "state"))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 24))
    parser.add_argument("--work", type=Path)
    opts = parser.parse_args()
    work = opts.work or Path(tempfile.mkdtemp(prefix="outreach-shards-"))
    day = opts.date
    base = work / "workspace"
    if not (base / "config.yaml").exists():
        write_workspace(base, contacts=opts.contacts, today=day)
    ids = [line.split(",", 1)[0] for line in (base / "contacts.csv").read_text().splitlines()[1:]]
    filled = work / f"filled-{opts.contacts}-{opts.rows}.sqlite"
    if not filled.exists():
        seconds = fill_ledger(filled, ids=ids, rows=opts.rows, seed=1, today=day)
        print(f"filled a SQLite ledger with {opts.rows:,} rows in {seconds:.1f} s")
    random.seed(1)

    server = PgServer(durable=True)
    try:
        server.start()
        url = server.empty_database()
        sqlite_ws = copy_workspace(base, work / "sqlite")
        (sqlite_ws / "state").mkdir()
        shutil.copyfile(filled, sqlite_ws / "state" / "ledger.sqlite")
        started = time.perf_counter()
        copied = subprocess.run(
            [sys.executable, "-m", "outreach", "ledger", "copy", "--to", url, "--json"],
            cwd=sqlite_ws, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if copied.returncode != 0:
            print(copied.stderr, file=sys.stderr)
            return 1
        rows = json.loads(copied.stdout)["tables"]["messages"]["target"]
        print(f"ledger copy SQLite → PostgreSQL: {rows:,} messages in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip

        args = ["run", "--all", "--date", day.isoformat(), "--json"]
        print(f"load before the runs: {os.getloadavg()[0]:.2f}")
        one = work / "t-sqlite"
        started = time.perf_counter()
        alone = finish(
            "SQLite, 1 run",
            start(sqlite_ws, args, env={}, timings=one),
            started=started,
            timings=one,
        )
        load_sqlite = os.getloadavg()[0]

        pg_ws = copy_workspace(base, work / "pg")
        before = server_cpu(server)
        started = time.perf_counter()
        procs = []
        for k in range(1, opts.shards + 1):
            timings = work / f"t-shard-{k}"
            proc = start(
                pg_ws,
                [*args, "--shard", f"{k}/{opts.shards}"],
                env={"OUTREACH_LEDGER_URL": url},
                timings=timings,
            )
            procs.append((k, proc, timings))
        shards = [
            finish(f"shard {k}/{opts.shards}", proc, started=started, timings=timings)
            for k, proc, timings in procs
        ]
        wall = max(run.seconds for run in shards)
        server_s = server_cpu(server) - before
        load_pg = os.getloadavg()[0]
        total = server.url(url.rsplit("/", 1)[1])
        import psycopg

        with psycopg.connect(total) as db:
            row = db.execute("SELECT count(*) FROM messages").fetchone()
            after_rows = int(row[0]) if row else 0
    finally:
        server.remove()

    print()
    print("| run | emails | wall s | CPU s | msgs/s | ledger s (share) | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for run in [alone, *shards]:
        share = run.ledger_s / run.seconds * 100
        print(
            f"| {run.label} | {run.emails:,} | {run.seconds:.1f} | {run.cpu:.1f} | "
            f"{run.emails / run.seconds:,.0f} | {run.ledger_s:.1f} ({share:.0f} %) | "
            f"{run.rss_mb:.0f} MB |"
        )
    emails = sum(run.emails for run in shards)
    ledger = sum(run.ledger_s for run in shards)
    cpu = sum(run.cpu for run in shards)
    print(
        f"| {opts.shards} shards together | {emails:,} | {wall:.1f} | {cpu:.1f} "
        f"+ server {server_s:.1f} | {emails / wall:,.0f} | {ledger:.1f} of "
        f"{sum(run.seconds for run in shards):.1f} process-s "
        f"({ledger / sum(run.seconds for run in shards) * 100:.0f} %) | — |"
    )
    print()
    print(f"ledger after the shards: {after_rows:,} messages on PostgreSQL")
    print(f"load (1 min) after the SQLite run {load_sqlite:.2f}, after the shards {load_pg:.2f}; "
          f"{os.cpu_count()} cores")  # fmt: skip
    failed = [run for run in [alone, *shards] if run.code != 0]
    if alone.emails != emails:
        print(f"MISMATCH: SQLite made {alone.emails}, the shards {emails}", file=sys.stderr)
        return 1
    if opts.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
