"""Letters benchmark: N one-page letters through `outreach run`, the batch printer, a naive loop.

    .venv/bin/python benchmarks/letters.py [--n 2000] [--naive 100] [--mode run|batch|both]
                                           [--workers 2] [--date 2026-11-24]

`run`, the headline figure: a synthetic workspace in a temporary folder (N contacts with complete
Spanish addresses and varied postal codes, every birthday due on --date; a birthday campaign with
`channel: letter` and the sample birthday letter and signature; `letters.envelope: din5008-b`;
cadence that defers nothing), then the real CLI timed as a subprocess:

    python -m outreach run --all --date D --json        (cwd: the workspace)

That is start-up, reading the CSV, the decisions, WeasyPrint laying out the letters in worker
processes, the batch PDF and its manifest, and the ledger. The benchmark checks that the JSON
summary counts N letters and N pages, that the batch PDF read back has N pages, and that the
manifest and the ledger have N rows.

`batch`: the same kind of letters through the library in this process (LetterRenderer, then
write_batch with --workers processes), without the CLI, the CSV or the ledger.

Memory: a thread samples the process tree every 0.1 s from /proc (the CLI, or this process, and
all its descendants: the WeasyPrint workers forked from it) and reports the largest
sum of Pss (smaps_rollup: a page shared by k processes counts 1/k in each, so the sum is what the
tree really occupies) and, for reference, the largest sum of Rss (which counts each shared page
once per process). CPU time, and the time spent ready to run while both cores were busy, come
from /proc/PID/schedstat in the same samples (so slightly under the truth).

The naive loop, in this process: one WeasyPrint document per letter, stylesheets parsed each
time, as a straightforward script would do, on --naive letters; extrapolated to N.

Target (issue #3) on this 2-core machine for 2,000 one-page letters: >= 35 letters/s and peak
memory <= 1 GB in all processes together.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# These time `outreach run` itself: the report page each run writes is benchmarks/report.py's.
os.environ.setdefault("OUTREACH_REPORT", "0")
sys.path.insert(0, str(ROOT))

from benchmarks.synth import write_contacts  # noqa: E402
from outreach.contacts import Contact  # noqa: E402
from outreach.deliver.printing import (  # noqa: E402  # noqa: E402
    BatchOptions,
    harfbuzz_subset_available,
    write_batch,
)
from outreach.model.campaigns import Campaign, LetterSpec, Occurrence  # noqa: E402
from outreach.model.config import Settings, load_settings  # noqa: E402
from outreach.render.letter import LetterRenderer, RenderedLetter  # noqa: E402

TARGET_RATE = 35.0  # letters/s
TARGET_BYTES = 10**9  # 1 GB, all processes together
MIB = 2**20

CONFIG = """\
sender:
  name: "Casa Lucía"
  email: hola@casalucia.example
  address:
    street: Calle de la Cava Baja, 12
    postal_code: "28005"
    city: Madrid
    country: ES
  phone: "+34 913 000 000"
  website: https://casalucia.example
  signature: Lucía Fernández
  signature_image: signature.png
locale: es
contacts:
  date_format: DMY
  default_country: ES
cadence:
  min_gap_days: 0
  max_messages: 30
  per_days: 30
letters:
  envelope: din5008-b
  delivery_days: 0  # every birthday letter due today, as before arrival-in-time
  households: merge  # the default, said: one letter per address (no two contacts share one)
"""
# Every contact is due: birthdays 0-3 days after --date (benchmarks/synth.py draws them so).
CAMPAIGN = """\
name: birthday
kind: birthday
channel: letter
priority: 80
days_before: 3
days_after: 0
letter:
  template: birthday_letter.html.j2
  subject: "Feliz cumpleaños"
"""
TEMPLATES = ("birthday_letter.html.j2", "signature.png")
FIRST = ["María", "José", "Lucía", "Carmen", "Javier", "Ana", "Pablo", "Elena", "Íñigo", "Nuria"]
LAST = ["López García", "Martín", "Sánchez Ruiz", "Fernández", "Gómez de la Vega", "Díaz"]
STREETS = ["Calle de Alcalá", "Calle Mayor", "Paseo de la Castellana", "Calle de Toledo"]


# --- the process tree, from /proc -------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """The children of every process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                # After the command name in parentheses (which may hold spaces): state, ppid, …
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _schedstat_ns(pid: int) -> tuple[int, int]:
    """(time on a CPU, time runnable but waiting for one) of one process, in nanoseconds."""
    try:
        with open(f"/proc/{pid}/schedstat") as handle:
            running, waiting, _ = handle.read().split()
    except (OSError, ValueError):
        return 0, 0
    return int(running), int(waiting)


def _rollup_kib(pid: int) -> tuple[int, int] | None:
    """(Pss, Rss) of one process in KiB; None once it has gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        return None
    return pss, rss


class TreeMemory:
    """Samples a process and all its descendants: peak sums of Pss and Rss, and CPU time."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak_pss_kib = 0
        self.peak_rss_kib = 0
        self.peak_processes = 0
        self.samples = 0
        self.overhead_seconds = 0.0  # the sampler's own CPU time, taken from the machine
        self._cpu_ns: dict[int, tuple[int, int]] = {}  # pid: last (running, waiting)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        """Read the tree once and keep the largest sums seen."""
        children = _children()
        pss = rss = count = 0
        stack = [self.root]
        while stack:
            pid = stack.pop()
            stack.extend(children.get(pid, []))
            found = _rollup_kib(pid)
            if found is None:
                continue
            pss, rss, count = pss + found[0], rss + found[1], count + 1
            self._cpu_ns[pid] = max(self._cpu_ns.get(pid, (0, 0)), _schedstat_ns(pid))
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.peak_processes = max(self.peak_processes, count)
        self.samples += 1

    @property
    def cpu_seconds(self) -> float:
        """CPU time of every process seen in the tree, as last sampled."""
        return sum(running for running, _ in self._cpu_ns.values()) / 1e9

    @property
    def root_cpu_seconds(self) -> float:
        """CPU time of the root process alone (the rest went to its descendants)."""
        return self._cpu_ns.get(self.root, (0, 0))[0] / 1e9

    @property
    def waiting_seconds(self) -> float:
        """Time the tree's processes were ready to run but every core was busy (other work)."""
        return sum(waiting for _, waiting in self._cpu_ns.values()) / 1e9

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.thread_time()
            self.sample()
            self.overhead_seconds += time.thread_time() - started
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_report(self, elapsed: float, *, root: str) -> str:
        """CPU time of the tree over `elapsed` seconds, and the time it waited for a CPU."""
        return (
            f"CPU {self.cpu_seconds:.1f} s in all ({self.cpu_seconds / elapsed:.2f} cores busy): "
            f"{root} {self.root_cpu_seconds:.1f} s, its descendants "
            f"{self.cpu_seconds - self.root_cpu_seconds:.1f} s; ready to run but waiting for a "
            f"free core {self.waiting_seconds:.1f} s"
        )

    def report(self) -> str:
        """Peak Pss and Rss of all processes together, as one line."""
        return (
            f"peak memory, all processes together: Pss {self.peak_pss_kib / 1024:.0f} MiB "
            f"(Rss {self.peak_rss_kib / 1024:.0f} MiB), up to {self.peak_processes} processes, "
            f"{self.samples} samples (sampling used {self.overhead_seconds:.1f} s of CPU)"
        )


# --- workspaces and letters -------------------------------------------------------------------


def make_workspace(folder: Path) -> Path:
    """A workspace with the sample birthday letter and signature; returns its config.yaml."""
    (folder / "templates").mkdir(parents=True)
    for name in TEMPLATES:
        shutil.copy(ROOT / "templates" / name, folder / "templates" / name)
    (folder / "config.yaml").write_text(CONFIG, encoding="utf-8")
    return folder / "config.yaml"


def make_run_workspace(folder: Path, *, n: int, day: date) -> Path:
    """make_workspace plus N due contacts (Spanish addresses) and the letter campaign."""
    config = make_workspace(folder)
    write_contacts(folder / "contacts.csv", n, today=day, days_before=3, english_share=0.0)
    (folder / "campaigns").mkdir()
    (folder / "campaigns" / "birthday.yaml").write_text(CAMPAIGN, encoding="utf-8")
    return config


def make_contacts(count: int) -> list[Contact]:
    """Contacts with plausible Spanish addresses, in no particular postal order."""
    return [
        Contact(
            id=f"c{i:06d}",
            line=i + 2,
            first_name=FIRST[i % len(FIRST)],
            last_name=LAST[i % len(LAST)],
            street=f"{STREETS[i % len(STREETS)]}, {i % 200 + 1}",
            postal_code=f"{28001 + (i * 7919) % 80:05d}",
            city="Madrid",
            country="ES",
            locale="es",
        )
        for i in range(count)
    ]


def render_letters(settings: Settings, *, count: int, day: date) -> list[RenderedLetter]:
    """`count` birthday letters rendered to HTML (not yet laid out)."""
    campaign = Campaign(
        name="birthday",
        kind="birthday",
        path=settings.root / "campaigns" / "birthday.yaml",
        channel="letter",
        letter=LetterSpec(template="birthday_letter.html.j2", subject="Feliz cumpleaños"),
    )
    occurrence = Occurrence(
        campaign="birthday",
        key=f"birthday:{day.year}",
        date=day,
        earliest=day,
        latest=day,
        age=40,
    )
    renderer = LetterRenderer(
        settings=settings,
        campaign=campaign,
        today=day,
        now=datetime(day.year, day.month, day.day, 9),
    )
    return [renderer.render(c, occurrence) for c in make_contacts(count)]


# --- the measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One measured batch of letters."""

    letters: int
    seconds: float
    memory: TreeMemory

    @property
    def rate(self) -> float:
        """Letters per second."""
        return self.letters / self.seconds

    def verdict(self) -> str:
        """The issue's targets, met or missed."""
        rate_ok = self.rate >= TARGET_RATE
        memory_ok = self.memory.peak_pss_kib * 1024 <= TARGET_BYTES
        return (
            f"targets: >= {TARGET_RATE:.0f} letters/s {'met' if rate_ok else 'MISSED'}; "
            f"peak Pss <= 1 GB ({TARGET_BYTES / MIB:.0f} MiB) {'met' if memory_ok else 'MISSED'}"
        )


def bench_run(work: Path, *, n: int, day: date) -> Figures:
    """`python -m outreach run --all --date D --json` on a fresh synthetic workspace."""
    workspace = work / "run"
    make_run_workspace(workspace, n=n, day=day)
    summary_path, errors_path = work / "run-summary.json", work / "run-stderr.txt"
    command = [sys.executable, "-m", "outreach", "run", "--all", "--date", day.isoformat()]
    with open(summary_path, "wb") as stdout, open(errors_path, "wb") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--json"], cwd=workspace, stdout=stdout, stderr=stderr
        )
        with TreeMemory(process.pid) as memory:
            code = process.wait()
        elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(
            f"outreach run exited with {code} in {workspace}:\n"
            + errors_path.read_text(encoding="utf-8")[-2000:]
        )
    pages = check_run(workspace, summary_path=summary_path, n=n)
    pdf = workspace / "out" / "letters" / day.isoformat() / "birthday.pdf"
    print(
        f"outreach run: {n} letters in {elapsed:.1f} s = {n / elapsed:.1f} letters/s, "
        f"{pages} pages, {pdf.stat().st_size / MIB:.1f} MiB PDF",
        flush=True,
    )
    print(f"  {memory.cpu_report(elapsed, root='the CLI process')}", flush=True)
    print(f"  {memory.report()}", flush=True)
    figures = Figures(n, elapsed, memory)
    print(f"  {figures.verdict()}", flush=True)
    return figures


def check_run(workspace: Path, *, summary_path: Path, n: int) -> int:
    """The summary, the batch PDF, its manifest and the ledger all count N; returns the pages."""
    from pypdf import PdfReader

    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    (campaign,) = summary["campaigns"]
    counts = {key: campaign[key] for key in ("letters", "pages", "failed", "deferred", "emails")}
    if counts != {"letters": n, "pages": n, "failed": 0, "deferred": 0, "emails": 0}:
        raise SystemExit(f"expected {n} one-page letters, the run reported {counts}")
    if summary["problems"] or campaign["problems"]:
        raise SystemExit(f"the run reported problems: {campaign['problems'][:3]}")
    pdf = workspace / campaign["batch"]
    pages = len(PdfReader(pdf).pages)
    with open(pdf.with_suffix(".manifest.csv"), encoding="utf-8", newline="") as handle:
        rows = sum(1 for _ in csv.DictReader(handle))
    with sqlite3.connect(workspace / "state" / "ledger.sqlite") as db:
        (recorded,) = db.execute(
            "SELECT count(*) FROM messages WHERE channel = 'letter' AND status = 'rendered'"
        ).fetchone()
    if not pages == rows == recorded == n:
        raise SystemExit(
            f"expected {n} letters: {pdf} has {pages} pages, its manifest {rows} rows, "
            f"the ledger {recorded} rendered letters"
        )
    return pages


def bench_batch(work: Path, *, n: int, day: date, workers: int) -> Figures:
    """LetterRenderer + write_batch in this process (and its workers), without the CLI."""
    settings = load_settings(make_workspace(work / "batch"))
    with TreeMemory(os.getpid()) as memory:
        start = time.perf_counter()
        letters = render_letters(settings, count=n, day=day)
        rendered = time.perf_counter()
        result = write_batch(
            letters=letters,
            out_dir=work / "batch" / "out",
            run_date=day,
            campaign="birthday",
            options=BatchOptions(workers=workers),
        )
        elapsed = time.perf_counter() - start
    if result.failures:
        raise SystemExit(f"letters failed: {result.failures[:3]}")
    if result.pages != n:
        raise SystemExit(f"expected {n} pages, the batch has {result.pages}")
    size = result.pdf_path.stat().st_size if result.pdf_path else 0
    print(
        f"batch API ({workers} workers): {n} letters in {elapsed:.1f} s = {n / elapsed:.1f} "
        f"letters/s (templates {rendered - start:.1f} s), {result.pages} pages, "
        f"{size / MIB:.1f} MiB PDF",
        flush=True,
    )
    print(f"  {memory.cpu_report(elapsed, root='this process')}", flush=True)
    print(f"  {memory.report()}", flush=True)
    return Figures(n, elapsed, memory)


def bench_naive(work: Path, *, count: int, n: int, day: date) -> float:
    """One WeasyPrint document per letter, stylesheets parsed each time; returns letters/s."""
    from weasyprint import CSS, HTML

    settings = load_settings(make_workspace(work / "naive"))
    letters = render_letters(settings, count=count, day=day)
    folder = work / "naive" / "out"
    folder.mkdir()
    start = time.perf_counter()
    for letter in letters:
        layout = letter.layout
        HTML(string=letter.html, base_url=layout.base_dir.as_uri() + "/").write_pdf(
            folder / f"{letter.contact_id}.pdf",
            stylesheets=[CSS(string=text) for text in layout.stylesheets],
        )
    rate = count / (time.perf_counter() - start)
    print(
        f"naive loop (one document per letter, one process): {rate:.1f} letters/s on "
        f"{count} letters, so about {n / rate:.0f} s for {n}",
        flush=True,
    )
    return rate


def _load() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="letters to print")
    parser.add_argument("--naive", type=int, default=100, help="letters for the naive loop")
    parser.add_argument("--mode", choices=["run", "batch", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (batch mode)")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 24))
    args = parser.parse_args()

    import weasyprint

    print(
        f"{os.cpu_count()} CPUs, load average {_load()}; Python {platform.python_version()}, "
        f"WeasyPrint {weasyprint.__version__}; "
        f"HarfBuzz subsetter: {'yes' if harfbuzz_subset_available() else 'MISSING'}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="outreach-letters-") as tmp:
        work = Path(tmp)
        if args.mode in ("run", "both"):
            bench_run(work, n=args.n, day=args.date)
        if args.mode in ("batch", "both"):
            bench_batch(work, n=args.n, day=args.date, workers=args.workers)
        if args.naive:
            bench_naive(work, count=args.naive, n=args.n, day=args.date)
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
