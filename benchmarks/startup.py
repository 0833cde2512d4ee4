"""Start-up benchmark: what `outreach --help` and `outreach redeem CODE` cost before they work.

    .venv/bin/python benchmarks/startup.py [--starts 20] [--work DIR]

Each command is started STARTS times as a user starts it (`outreach` from the virtualenv, in a
copy of the repository's sample workspace); the figure is the CPU (user + system) of one start,
the median, read from the children's resource usage (wall time on a shared machine says more
about the neighbours than about us). `--help` loads the catalogs and translates the help
texts (LANGUAGE=es); `redeem` checks a code on the sample's ledger after the sample's run of
2026-11-24: a code whose check character is wrong (exit 2: read, then looked up among the
codes one slip away), and a code that run printed in an email (its campaign's terms and the
contact's name are read; the first start records it, exit 0, the others are told it is used,
exit 1).

The package's bytecode is compiled first, as pip does when it installs a package: in an
editable checkout under PYTHONDONTWRITEBYTECODE every start would compile each module it
imports again (about 0.1 s of a `redeem`), which is not what a till pays.

Targets: `outreach --help` <= 0.4 s (issue "El idioma del dueño"); `redeem` <= 0.3 s as a
command (issue "Did it bring them back?").
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTREACH = Path(sys.executable).parent / "outreach"


def cpu_per_start(args: list[str], *, cwd: Path, env: dict[str, str], starts: int) -> float:
    """The median CPU seconds (user + system) of one start of `outreach ARGS`."""
    spent = []
    for _ in range(starts):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([str(OUTREACH), *args], cwd=cwd, env=env, capture_output=True, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(spent)


def sample_workspace(work: Path) -> Path:
    """The repository's sample workspace copied into `work` (config, contacts, campaigns)."""
    ws = work / "ws"
    ws.mkdir(parents=True)
    shutil.copy(ROOT / "config.yaml", ws / "config.yaml")
    shutil.copy(ROOT / "contacts.csv", ws / "contacts.csv")
    shutil.copytree(ROOT / "campaigns", ws / "campaigns")
    shutil.copytree(ROOT / "templates", ws / "templates")
    return ws


def issued_code(ws: Path, env: dict[str, str]) -> str:
    """A coupon code the sample's run of 2026-11-24 printed in one of its emails."""
    subprocess.run(
        [str(OUTREACH), "run", "--all", "--date", "2026-11-24"],
        cwd=ws,
        env=env,
        check=False,
        capture_output=True,
    )
    for email in sorted((ws / "out" / "outbox").rglob("*.eml")):
        found = re.search(rb"CL-[0-9A-Z]{4}-[0-9A-Z]{4}", email.read_bytes())
        if found is not None:
            return found.group(0).decode()
    raise SystemExit("the sample's run printed no coupon code")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None)
    options = parser.parse_args()
    compileall.compile_dir(ROOT / "outreach", quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        work = options.work or Path(tmp)
        ws = sample_workspace(work)
        env = {**os.environ, "LANGUAGE": "es", "OUTREACH_REPORT": "0"}
        code = issued_code(ws, env)
        # One redeem first: it reads the run's messages into the coupon index, which the timed
        # starts then only open.
        subprocess.run(
            [str(OUTREACH), "redeem", "CL-7KQ2-M9XD"],
            cwd=ws,
            env=env,
            check=False,
            capture_output=True,
        )
        helped = cpu_per_start(["--help"], cwd=ws, env=env, starts=options.starts)
        redeemed = cpu_per_start(
            ["redeem", "CL-7KQ2-M9XD", "--date", "2026-11-24"],
            cwd=ws,
            env=env,
            starts=options.starts,
        )
        real = cpu_per_start(
            ["redeem", code, "--date", "2026-11-25"], cwd=ws, env=env, starts=options.starts
        )
    print(f"outreach --help: {helped:.3f} s CPU per start (median of {options.starts}; target 0.4)")
    print(
        f"outreach redeem: {redeemed:.3f} s CPU per start (median of {options.starts}; target 0.3)"
    )
    print(
        f"outreach redeem, a code it gave out: {real:.3f} s CPU per start "
        f"(median of {options.starts}; target 0.3)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
