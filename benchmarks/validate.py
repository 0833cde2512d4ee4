"""Validate benchmark: `outreach validate` on 10,000 contacts of whom 2,000 get letters.

    .venv/bin/python benchmarks/validate.py [--n 10000] [--letters 2000] [--date 2026-11-24]

A synthetic workspace in a temporary folder: N contacts (benchmarks/synth.py; Spanish and
English, every birthday within a few days of --date), of whom LETTERS prefer letters (Spanish
addresses), and the sample birthday campaign with `channel: preferred`: text and HTML emails
(CSS inlined) for the others and the sample birthday letter for those. Then the real CLI:

    python -m outreach validate --date D --json        (cwd: the workspace)

which is the run itself over every occurrence due within a year with the render-only outlet:
every email rendered, every letter laid out by WeasyPrint in worker processes and checked
against the envelope's windows, nothing written. The benchmark checks that validate rendered
one message per contact and failed none, and prints the time, the rate, and the peak memory of
the CLI and its workers together (Pss, sampled from /proc as benchmarks/letters.py does).

Target (issue "One pipeline"): <= 90 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.letters import CONFIG, TreeMemory  # noqa: E402
from benchmarks.synth import COLUMNS, contact_rows, copy_templates  # noqa: E402

TARGET_SECONDS = 90.0
CAMPAIGN = """\
name: birthday
kind: birthday
channel: preferred
fallback: true
priority: 80
days_before: 3
email:
  subject:
    default: "¡Feliz cumpleaños, {{ contact.first_name }}!"
    en: "Happy birthday, {{ contact.first_name }}!"
  text: birthday.txt.j2
  html: birthday.html.j2
letter:
  template: birthday_letter.html.j2
"""
TEMPLATES = (
    "birthday.txt.j2",
    "birthday.html.j2",
    "birthday.en.txt.j2",
    "birthday.en.html.j2",
    "email_base.html.j2",
    "birthday_letter.html.j2",
    "signature.png",
)


def make_workspace(folder: Path, *, n: int, letters: int, day: date) -> None:
    """N contacts, the first LETTERS of the Spanish ones preferring letters."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(CONFIG, encoding="utf-8")
    copy_templates(folder / "templates", TEMPLATES)
    (folder / "campaigns").mkdir()
    (folder / "campaigns" / "birthday.yaml").write_text(CAMPAIGN, encoding="utf-8")
    left = letters
    with open(folder / "contacts.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in contact_rows(n, today=day, days_before=3):
            if left and row["country"] == "ES":
                row["preferred_channel"] = "letter"
                left -= 1
            writer.writerow(row)
    if left:
        raise SystemExit(f"only {letters - left} Spanish contacts for {letters} letters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--letters", type=int, default=2_000)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 24))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outreach-validate-bench-") as folder:
        workspace = Path(folder) / "ws"
        make_workspace(workspace, n=args.n, letters=args.letters, day=args.date)
        command = [sys.executable, "-m", "outreach", "validate", "--date", args.date.isoformat()]
        start = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--json"], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        with TreeMemory(process.pid) as memory:
            out, err = process.communicate()
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            raise SystemExit(f"validate exited with {process.returncode}:\n{err.decode()[-2000:]}")
        report = json.loads(out)
        line = next(s for s in report["summary"] if s.startswith("campaign birthday"))
        found = re.search(r"(\d+) in the audience, (\d+) rendered, (\d+) failed", line)
        assert found, line
        audience, rendered, failed = map(int, found.groups())
        # Every birthday falls within a year: one message each (two for a window at the edge).
        assert audience == args.n and rendered >= args.n and failed == 0, line
    print(
        f"outreach validate: {args.n} contacts ({args.letters} letters), {rendered} messages "
        f"rendered and laid out in {elapsed:.1f} s = {rendered / elapsed:.0f} messages/s",
        flush=True,
    )
    print(f"  {memory.cpu_report(elapsed, root='the CLI process')}", flush=True)
    print(f"  {memory.report()}", flush=True)
    verdict = "met" if elapsed <= TARGET_SECONDS else "NOT met"
    print(f"  target <= {TARGET_SECONDS:.0f} s: {verdict}", flush=True)


if __name__ == "__main__":
    main()
