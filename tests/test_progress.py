"""The terminal's progress bar on a clock of the test's: bursts drawn in small steps, an ETA
that means something. (tests/test_terminal.py sees the real run draw it on a terminal.)"""

from __future__ import annotations

import io
import itertools
import re

from outreach.progress import TICK_S, ProgressBar


def _drawn(bursts_every: int, burst: int, total: int) -> tuple[list[float], list[int]]:
    """The bar's position and ETA (seconds) at each tick, while `burst` items are done every
    `bursts_every` ticks, then until it rests at `total`."""
    now = 0.0
    bar = ProgressBar(label="contacts", total=total, stream=io.StringIO(), clock=lambda: now)
    shown: list[float] = []
    etas: list[int] = []
    for tick in itertools.count(1):
        now = tick * TICK_S
        if tick % bursts_every == 0 and bar.done < total:
            bar.done += burst  # as `advance` does, without its drawing thread
        line = bar.line(now)
        shown.append(bar.shown)
        if found := re.search(r"ETA (\d+):(\d\d)", line):
            etas.append(int(found.group(1)) * 60 + int(found.group(2)))
        if round(bar.shown) >= total or tick > 200:
            return shown, etas
    raise AssertionError("unreachable")


def test_bursts_are_drawn_in_small_steps_with_an_eta_of_seconds() -> None:
    # Two workers hand back 500 contacts each every half second: 1,000 of 5,000 (20 %) at a
    # time, which made click's bar jump by a fifth with an ETA of hours.
    shown, etas = _drawn(bursts_every=5, burst=1000, total=5000)
    assert shown == sorted(shown), "the bar never goes back"
    distinct = sorted({round(s) for s in shown})
    assert len(distinct) >= 20, distinct  # 2.5 s of work, drawn ten times a second
    steps = [b - a for a, b in itertools.pairwise([0, *distinct])]
    assert max(steps) <= 0.15 * 5000, steps
    assert sorted(steps)[len(steps) // 2] <= 0.1 * 5000, steps
    # The rate is known after about a second of work; the time left was then 1.5 s.
    assert etas, "an ETA once the rate is known"
    assert max(etas) <= 3, etas


def test_the_bar_does_not_run_ahead_of_the_work_by_more_than_a_burst() -> None:
    now = 0.0
    bar = ProgressBar(label="x", total=10_000, stream=io.StringIO(), clock=lambda: now)
    for tick in range(1, 60):
        now = tick * TICK_S
        if tick in (5, 10, 15):  # three bursts, then the work stalls
            bar.done += 1000
        bar.line(now)
        assert bar.shown <= bar.done + 1000
    assert bar.shown > 2000  # it moved on at the rate while nothing came back
