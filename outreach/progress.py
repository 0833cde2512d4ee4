"""Progress bars for the terminal (cli.py's only): smooth, with an ETA that means something.

Work arrives in bursts: a run's contacts come back from the worker processes 500 at a time, a
letter batch reports a chunk of pages at once. A bar that draws what it is told jumps in big
steps and computes its ETA from the gaps between them (click's bar said "01:18:46" for a
4-second run). This one draws from a thread at a steady pace, ten times a second:

* the rate is a moving window: items over the last few seconds, so it follows the work and
  forgets the start-up (the first burst waits for the workers to start);
* between bursts the bar moves on at that rate, up to one burst ahead of what is done, and
  never back; a burst itself is eased in over a few ticks, so it moves in small steps;
* no ETA until the rate is known (about a second of work), then (left / rate).

A `status` line can stand beside the bar: "waiting 0:42 for the rate limit" counts down.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

TICK_S = 0.1  # how often the bar is drawn
WINDOW_S = 5.0  # the moving window of the rate
MIN_SPAN_S = 0.8  # the rate (and the ETA) wait for this much work to be seen
EASE = 0.35  # each tick the bar covers this share of the way to where it should be
FINAL_FRAMES, FINAL_FRAME_S = 3, 0.02


def clock_text(seconds: float) -> str:
    """0:07, 12:30, 1:02:03."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class ProgressBar:
    """A bar on a terminal stream, drawn by its own thread once work has started."""

    def __init__(
        self,
        *,
        label: str,
        total: int,
        stream: TextIO,
        unit: str = "",
        clock: Callable[[], float] = time.monotonic,
        width: int = 28,
    ) -> None:
        self.label = label
        self.total = max(0, total)
        self.unit = unit
        self.stream = stream
        self.clock = clock
        self.width = width
        self.done = 0
        self.shown = 0.0
        self._lead = 0  # the biggest burst seen: how far ahead of `done` the bar may run
        self._last_done = 0
        self._last_change = clock()
        self._samples: deque[tuple[float, int]] = deque()
        self._status: str | None = None
        self._until: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = clock()
        self._drawn = False

    # -- what the work calls ---------------------------------------------------------------

    def advance(self, count: int = 1) -> None:
        """`count` more items are done."""
        with self._lock:
            self.done = min(self.total, self.done + count) if self.total else self.done + count
        # Started on the first item, not before: a run forks its workers before the first
        # chunk comes back, and a fork should not copy a drawing thread.
        self._start()

    def status(self, text: str | None, *, until: float | None = None) -> None:
        """A note beside the bar (None: none); with `until` (a clock time) and `{left}` in
        the text, it counts down."""
        with self._lock:
            self._status, self._until = text, until
        if until is not None:
            self._start()
        elif self._thread is None:
            self._draw(self.clock())

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop drawing; leave the finished bar on its own line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # The last burst eases in too (a few frames, well under a tenth of a second).
        for _ in range(FINAL_FRAMES):
            if not self._drawn or self.done - self.shown < 2:
                break
            with self._lock:
                self.shown += (self.done - self.shown) / 2
            self._draw(self.clock(), final=False, move=False)
            time.sleep(FINAL_FRAME_S)
        with self._lock:
            self.shown = float(self.done)
            self._status = None
        if self._drawn or self.done:
            self._draw(self.clock(), final=True)
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- drawing ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            self._draw(self.clock())

    def rate(self, now: float) -> float | None:
        """Items per second over the moving window, or None while too little is known."""
        samples = self._samples
        while len(samples) > 2 and now - samples[0][0] > WINDOW_S:
            samples.popleft()
        if len(samples) < 2:
            return None
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        span = max(now, t1) - t0
        if span < MIN_SPAN_S or d1 <= d0:
            return None
        return (d1 - d0) / span

    def _step(self, now: float) -> float | None:
        """Move `shown` on; the current rate."""
        done = self.done
        if done != self._last_done:
            self._lead = max(self._lead, done - self._last_done)
            self._last_done = done
            self._last_change = now
            self._samples.append((now, done))
        elif not self._samples:
            self._samples.append((now, done))
        rate = self.rate(now)
        target = float(done)
        if rate is not None:
            target = min(done + rate * (now - self._last_change), done + self._lead)
        if self.total:
            target = min(target, float(self.total))
        # Ease toward the target: a burst is spread over a few ticks instead of one jump.
        self.shown = max(self.shown, self.shown + (target - self.shown) * EASE)
        return rate

    def line(self, now: float, *, final: bool = False, move: bool = True) -> str:
        """The bar as text, e.g. `contacts [#####.....] 48% 2,400/5,000 1,200/s ETA 0:02`."""
        with self._lock:
            rate = None
            if not final:
                rate = self._step(now) if move else self.rate(now)
            shown, total = self.shown, self.total
            status, until = self._status, self._until
        parts = [self.label]
        if total:
            fraction = min(1.0, shown / total)
            filled = int(fraction * self.width)
            parts.append("[" + "#" * filled + "." * (self.width - filled) + "]")
            parts.append(f"{fraction * 100:3.0f}%")
            parts.append(f"{round(shown):,}/{total:,}{self.unit}")
        else:
            parts.append(f"{round(shown):,}{self.unit}")
        if final:
            parts.append(f"in {clock_text(now - self._started)}")
        elif rate is not None:
            parts.append(f"{rate:,.0f}/s")
            if total:
                parts.append(f"ETA {clock_text((total - shown) / rate)}")
        elif total:
            parts.append("ETA --:--")
        if status:
            if until is not None:
                status = status.format(left=clock_text(until - now))
            parts.append(status)
        return " ".join(parts)

    def _draw(self, now: float, *, final: bool = False, move: bool = True) -> None:
        text = self.line(now, final=final, move=move)
        columns = shutil.get_terminal_size((100, 24)).columns
        self.stream.write("\r" + text[: max(10, columns - 1)] + "\x1b[K")
        self.stream.flush()
        self._drawn = True
