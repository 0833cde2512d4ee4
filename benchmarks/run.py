"""The rendering benchmark: `outreach run` on N synthetic contacts, all due, beside `mailmerge`.

    .venv/bin/python benchmarks/run.py [--sizes 10000,100000] [--repeat 3] [--mailmerge-max 10000]
                                       [--profile DIR] [--check]

For each size it writes a seeded synthetic workspace (benchmarks/synth.py: a birthday campaign
for which every contact is due on `--date`, the sample text + HTML templates with their <style>
block, cadence that defers nothing) and times the real CLI, `outreach run --all --date D`, as a
subprocess on a fresh copy of it each time: text + HTML with CSS inlined, one .eml per contact in
the outbox, the ledger written. It checks that every contact got its file and its ledger row.

Beside it, the `mailmerge` package (PyPI; `pip install -e '.[bench]'`) builds the same contacts'
messages from an equivalent template in its Markdown mode (text + HTML): `mailmerge --dry-run
--no-limit --output-format raw`, stdout to /dev/null. It runs on at most `--mailmerge-max`
contacts (`--limit`), and its rate is applied to larger sizes (its cost per message is flat).

Each command runs under a fresh helper process that reports the command's wall time, CPU time
and `ru_maxrss` of RUSAGE_CHILDREN: the peak resident memory of that one command alone. The
machine may be shared, so each figure is the best of `--repeat` runs, with the spread shown.
Targets (100,000 contacts): >= 2,000 messages/s, >= 5x mailmerge, peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# These time `outreach run` itself: the report page each run writes is benchmarks/report.py's.
os.environ.setdefault("OUTREACH_REPORT", "0")
sys.path.insert(0, str(ROOT))

from benchmarks.synth import write_mailmerge_inputs, write_workspace  # noqa: E402

BIN = Path(sys.executable).parent
TARGET_RATE = 2_000
TARGET_RATIO = 5.0
TARGET_RSS_MB = 300

# Runs one command and reports its own figures: a fresh process has no other children, so
# RUSAGE_CHILDREN's ru_maxrss is the peak of that command alone (Linux reports KiB).
HELPER = """\
import json, resource, subprocess, sys, time
out, cwd, command = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "wb") as stdout:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, stdout=stdout)
    seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "user": usage.ru_utime, "system": usage.ru_stime,
                  "rss_kib": usage.ru_maxrss, "returncode": done.returncode}))
"""


@dataclass(frozen=True)
class Measure:
    """One timed command."""

    seconds: float
    user: float  # CPU seconds in the program itself
    system: float  # CPU seconds in the kernel for it (file creation, mostly)
    rss_mb: float


@dataclass(frozen=True)
class Series:
    """Repeated runs of one command on one size."""

    messages: int
    runs: list[Measure]

    @property
    def rates(self) -> list[float]:
        """Messages per second of each run."""
        return [self.messages / m.seconds for m in self.runs]

    @property
    def best(self) -> float:
        """The best rate (the least disturbed by other work on the machine)."""
        return max(self.rates)

    @property
    def rss_mb(self) -> float:
        """The peak RSS: the same work every run, so the smallest is the least noisy."""
        return min(m.rss_mb for m in self.runs)

    def spread(self) -> str:
        """Worst to best rate, and the median."""
        rates = self.rates
        return f"{min(rates):,.0f}–{max(rates):,.0f} (median {statistics.median(rates):,.0f})"


def measure(command: list[str], *, cwd: Path, stdout: Path | None = None) -> Measure:
    """Run `command` in a fresh helper process; its wall time, CPU time and peak RSS."""
    target = str(stdout) if stdout is not None else os.devnull
    done = subprocess.run(
        [sys.executable, "-c", HELPER, target, str(cwd), *command],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    if report["returncode"] != 0:
        raise SystemExit(
            f"{' '.join(command)} exited with {report['returncode']} in {cwd}:\n"
            + done.stderr[-2000:]
        )
    return Measure(report["seconds"], report["user"], report["system"], report["rss_kib"] / 1024)


def fresh_copy(source: Path, target: Path) -> Path:
    """A copy of the workspace's inputs (no out/, no state/)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("out", "state"))
    return target


def check_output(workspace: Path, *, day: date, expected: int, summary: Path) -> None:
    """Every contact has its .eml file and its `rendered` ledger row, and the run said so."""
    report = json.loads(summary.read_text(encoding="utf-8"))
    emails = sum(c["emails"] for c in report["campaigns"])
    folder = workspace / "out" / "outbox" / day.isoformat() / "birthday"
    files = sum(1 for entry in os.scandir(folder) if entry.name.endswith(".eml"))
    with sqlite3.connect(workspace / "state" / "ledger.sqlite") as db:
        (rows,) = db.execute("SELECT count(*) FROM messages WHERE status = 'rendered'").fetchone()
    if not emails == files == rows == expected:
        raise SystemExit(
            f"{workspace}: expected {expected} messages; the run reported {emails}, "
            f"the outbox holds {files} files, the ledger {rows} rendered rows"
        )


def bench_outreach(source: Path, work: Path, *, n: int, day: date, repeat: int) -> Series:
    """`outreach run --all --date D` on fresh copies of the workspace."""
    runs = []
    for index in range(repeat):
        workspace = fresh_copy(source, work / f"run-{n}-{index}")
        summary = work / f"summary-{n}-{index}.json"
        command = [str(BIN / "outreach"), "run", "--all", "--date", day.isoformat(), "--json"]
        runs.append(measure(command, cwd=workspace, stdout=summary))
        check_output(workspace, day=day, expected=n, summary=summary)
        # The outboxes stay until every run is timed: on ext4 without a journal, creating files
        # in the 30 s after many were deleted is several times slower (the inode allocator skips
        # recently deleted inodes), so deleting here would slow the next run down.
        print(f"  outreach {n:>9,}  run {index + 1}: {_rate(n, runs[-1])}", flush=True)
    return Series(n, runs)


def _rate(n: int, run: Measure) -> str:
    return (
        f"{n / run.seconds:8,.0f} msgs/s  (CPU per message: {run.user / n * 1e6:4.0f} µs user, "
        f"{run.system / n * 1e6:4.0f} µs system; peak RSS {run.rss_mb:.0f} MB)"
    )


def bench_mailmerge(source: Path, work: Path, *, n: int, total: int, repeat: int) -> Series | None:
    """mailmerge's dry run (Markdown: text + HTML) on the first `n` of the `total` contacts."""
    program = BIN / "mailmerge"
    if not program.exists():
        print("  mailmerge is not installed: .venv/bin/pip install -e '.[bench]'", flush=True)
        return None
    template, server = write_mailmerge_inputs(work / "mailmerge")
    command = [
        str(program),
        "--dry-run",
        "--template",
        str(template),
        "--database",
        str(source / "contacts.csv"),
        "--config",
        str(server),
        "--output-format",
        "raw",
        *(["--no-limit"] if n >= total else ["--limit", str(n)]),
    ]
    runs = []
    for index in range(repeat):
        runs.append(measure(command, cwd=work))
        print(f"  mailmerge {n:>8,}  run {index + 1}: {_rate(n, runs[-1])}", flush=True)
    return Series(n, runs)


def profile(source: Path, work: Path, *, n: int, day: date, folder: Path) -> None:
    """One more run under cProfile; prints the top functions by cumulative and own time."""
    folder.mkdir(parents=True, exist_ok=True)
    workspace = fresh_copy(source, work / f"profile-{n}")
    output = folder / f"prof-{n}.out"
    command = [sys.executable, "-m", "cProfile", "-o", str(output)]
    command += ["-m", "outreach", "run", "--all", "--date", day.isoformat()]
    subprocess.run(command, cwd=workspace, check=True, stdout=subprocess.DEVNULL)
    stats = pstats.Stats(str(output))
    for key in ("cumulative", "tottime"):
        print(f"\nprofile of {n:,} contacts, top 25 by {key} ({output}):")
        stats.sort_stats(key).print_stats(25)


def parse_sizes(text: str) -> list[int]:
    """'10000,100_000' → [10000, 100000]."""
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main() -> int:
    """Parse the options, run the benchmark, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (best is reported)")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 24))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mailmerge-max", type=int, default=10_000, help="0: skip mailmerge")
    parser.add_argument("--profile", type=Path, help="also profile the largest size into DIR")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="outreach-bench-", dir=args.work))
    print(f"scratch folder {work}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")
    outreach: dict[int, Series] = {}
    mailmerge: dict[int, Series | None] = {}
    try:
        for n in args.sizes:
            source = work / f"workspace-{n}"
            write_workspace(source, contacts=n, seed=args.seed, today=args.date)
            outreach[n] = bench_outreach(source, work, n=n, day=args.date, repeat=args.repeat)
            subset = min(n, args.mailmerge_max)
            if subset and subset not in mailmerge:
                mailmerge[subset] = bench_mailmerge(
                    source, work, n=subset, total=n, repeat=args.repeat
                )
        if args.profile:
            largest = max(args.sizes)
            source = work / f"workspace-{largest}"
            profile(source, work, n=largest, day=args.date, folder=args.profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(outreach, mailmerge, args=args)


def _row(n: int, series: Series) -> str:
    best = max(series.runs, key=lambda m: n / m.seconds)
    return (
        f"{n:>9,}  {series.best:>11,.0f}  {series.spread():<30} {best.user / n * 1e6:>7.0f} "
        f"{best.system / n * 1e6:>7.0f} {series.rss_mb:>6.0f} MB"
    )


def report(
    outreach: dict[int, Series], mailmerge: dict[int, Series | None], *, args: argparse.Namespace
) -> int:
    """Print the results and the targets; the exit status for --check."""
    header = (
        f"{'contacts':>9}  {'best msgs/s':>11}  {'all runs, msgs/s':<30} "
        f"{'user µs':>7} {'sys µs':>7} {'peak RSS':>9}"
    )
    print(f"\noutreach run --all --date {args.date} (text + HTML, CSS inlined, outbox, ledger)")
    print(header)
    for n, series in outreach.items():
        print(_row(n, series))
    print("\nmailmerge --dry-run --output-format raw (Markdown → text + HTML), stdout to /dev/null")
    print(header)
    for n, other in mailmerge.items():
        if other is not None:
            print(_row(n, other))

    missed = []
    print("(user/sys µs: CPU time per message of the fastest run; peak RSS: the smallest)")
    print("\ntargets")
    for n, series in outreach.items():
        subset = min(n, args.mailmerge_max)
        other = mailmerge.get(subset)
        ratio = series.best / other.best if other is not None else None
        note = "" if subset == n else f" (mailmerge timed on {subset:,}, rate applied to {n:,})"
        rate_ok = series.best >= TARGET_RATE
        rss_ok = series.rss_mb <= TARGET_RSS_MB
        ratio_ok = ratio is None or ratio >= TARGET_RATIO
        shown = f"{ratio:.1f}x mailmerge{note}" if ratio is not None else "mailmerge not run"
        print(
            f"{n:>9,}  {series.best:,.0f} msgs/s {'ok' if rate_ok else 'MISSED'}; "
            f"{shown} {'ok' if ratio_ok else 'MISSED'}; "
            f"peak RSS {series.rss_mb:.0f} MB {'ok' if rss_ok else 'MISSED'}"
        )
        if n == max(outreach) and not (rate_ok and rss_ok and ratio_ok):
            missed.append(n)
    sizes = sorted(outreach)
    if len(sizes) >= 2:
        low, high = sizes[0], sizes[-1]
        growth = (outreach[high].rss_mb - outreach[low].rss_mb) / (high - low) * 1024 * 1024
        print(
            f"memory: {outreach[low].rss_mb:.0f} MB at {low:,}, {outreach[high].rss_mb:.0f} MB "
            f"at {high:,}: {growth:,.0f} bytes per extra contact"
        )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
