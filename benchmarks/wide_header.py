"""Wide-header benchmark: a one-row contacts.csv with 20,000 and 100,000 columns.

    .venv/bin/python benchmarks/wide_header.py [--columns 20000 100000]

Each width is read with `load_contacts` in a fresh process, three kinds of header: extra
columns, columns without a name (one problem each) and near-misspellings of known columns
("emial7"). Prints wall time, columns per second and peak memory (max RSS) of each reading.
Column handling must be linear: 100,000 columns cost about five times 20,000 (issue 27 measured
3.8 s and 61 s before).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

READ = """
import resource, sys, time
from pathlib import Path
from outreach.model.config import ContactsSettings
from outreach.contacts import load_contacts
start = time.perf_counter()
found = load_contacts(Path(sys.argv[1]), settings=ContactsSettings(), default_locale="es")
seconds = time.perf_counter() - start
print(seconds, len(found.problems), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""

KINDS = {
    "extra": lambda n: f"extra_{n}",
    "unnamed": lambda n: "",
    "misspelt": lambda n: f"emial{n}",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--columns", type=int, nargs="+", default=[20_000, 100_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for width in args.columns:
            for kind, name in KINDS.items():
                path = Path(work) / f"{kind}-{width}.csv"
                header = ",".join(["id", *(name(n) for n in range(width))])
                row = ",".join(["c1", *("v" for _ in range(width))])
                path.write_text(header + "\n" + row + "\n", encoding="utf-8")
                out = subprocess.run(
                    [sys.executable, "-c", READ, str(path)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                seconds, problems, rss = float(out[0]), int(out[1]), int(out[2])
                print(
                    f"{kind:<9} {width:>7} columns in {seconds:6.2f} s: "
                    f"{width / seconds:>9,.0f} columns/s, {problems} problem(s), "
                    f"peak RSS {rss} MB"
                )


if __name__ == "__main__":
    main()
