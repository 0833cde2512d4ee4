"""Where the suite's CPU goes: with OUTREACH_TEST_CPU=FILE, each test process appends one line
per test to FILE.<worker> — node id, CPU seconds of the test process itself, of the processes it
started and reaped, of the CLI runs its cli_server forked (reaped there), and wall seconds.
`python tests/cpu_report.py FILE` sums them per test file. Measuring only: no test reads it."""

from __future__ import annotations

import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CpuReport:
    """Registered by conftest.py when OUTREACH_TEST_CPU names a file."""

    def __init__(self, path: str, worker: str, forked_cpu: Callable[[], float]) -> None:
        self.out = Path(f"{path}.{worker}").open("a", encoding="utf-8")  # noqa: SIM115
        self.forked_cpu = forked_cpu

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        before = (
            _cpu(resource.RUSAGE_SELF),
            _cpu(resource.RUSAGE_CHILDREN),
            self.forked_cpu(),
            time.monotonic(),
        )
        yield
        after = (
            _cpu(resource.RUSAGE_SELF),
            _cpu(resource.RUSAGE_CHILDREN),
            self.forked_cpu(),
            time.monotonic(),
        )
        figures = "\t".join(f"{b - a:.3f}" for a, b in zip(before, after, strict=True))
        self.out.write(f"{item.nodeid}\t{figures}\n")
        self.out.flush()


def summarise(path: str, top: int = 30) -> None:
    files: dict[str, list[float]] = defaultdict(lambda: [0.0] * 5)
    for report in Path(path).parent.glob(Path(path).name + ".*"):
        for line in report.read_text(encoding="utf-8").splitlines():
            node, *figures = line.split("\t")
            row = files[node.split("::")[0]]
            for i, value in enumerate(map(float, figures)):
                row[i] += value
            row[4] += 1
    rows = sorted(files.items(), key=lambda kv: -(kv[1][0] + kv[1][1] + kv[1][2]))
    total = [sum(r[i] for _, r in rows) for i in range(5)]
    print(f"{'file':34} {'cpu':>7} {'self':>7} {'child':>7} {'forked':>7} {'wall':>7} {'tests':>5}")
    for name, (own, children, forked, wall, count) in [*rows[:top], ("TOTAL", total)]:
        cpu = own + children + forked
        line = f"{name:34} {cpu:7.1f} {own:7.1f} {children:7.1f} {forked:7.1f} {wall:7.1f} {count:5.0f}"
        print(line)


if __name__ == "__main__":
    summarise(sys.argv[1], *(int(a) for a in sys.argv[2:]))
