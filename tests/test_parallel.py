"""The one parallel map: ordered, back-pressured, its workers bound to the caller's life."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach.pipeline.parallel import WorkerDiedError, ordered_map, tell


def _slow_square(n: int) -> int:
    # Later items finish first, so order is the map's doing, not the workers'.
    time.sleep(0.002 * (10 - n % 10))
    return n * n


def test_results_come_in_the_order_of_the_items() -> None:
    with ordered_map(_slow_square, range(30), processes=3) as results:
        assert list(results) == [(n, n * n) for n in range(30)]


def test_no_more_items_are_taken_than_the_workers_have_room_for() -> None:
    taken: list[int] = []
    given_back: list[int] = []

    def items() -> Iterator[int]:
        for n in range(40):
            taken.append(n)
            yield n

    ahead = []
    for n, _ in ordered_map(_slow_square, items(), processes=2, ahead=3):
        given_back.append(n)
        ahead.append(len(taken) - len(given_back))
    # Two workers, three items each: what is taken and not handed back never exceeds six.
    assert given_back == list(range(40))
    assert max(ahead) == 6
    assert ahead[0] == 6


def _fails_at_five(n: int) -> int:
    if n == 5:
        raise ValueError(f"item {n} is bad")
    return n


def test_an_error_is_raised_where_its_item_comes_and_the_workers_end() -> None:
    before = _children()
    got = []
    results = ordered_map(_fails_at_five, range(20), processes=2)
    with pytest.raises(ValueError, match="item 5 is bad"):
        for n, _ in results:
            got.append(n)
    assert got == [0, 1, 2, 3, 4]
    assert _children() <= before


def _dies_at_three(n: int) -> int:
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return n


def test_a_worker_killed_midway_is_an_error_not_a_hang() -> None:
    before = _children()
    descriptors = len(os.listdir("/proc/self/fd"))
    with pytest.raises(WorkerDiedError, match="SIGKILL"):
        list(ordered_map(_dies_at_three, range(10), processes=2))
    assert _children() <= before
    assert len(os.listdir("/proc/self/fd")) == descriptors  # both sockets closed


def test_a_worker_dead_before_its_next_item_is_sent_is_an_error_not_a_broken_pipe(
    tmp_path: Path,
) -> None:
    # One worker holds items 0 and 1: it answers 0, then dies on 1. The map is read only once
    # the worker is dead, so taking answer 0 makes room for item 2, sent to a closed socket.
    told = tmp_path / "pid"

    def answers_then_dies(n: int) -> int:
        if n == 1:
            (tmp_path / "pid.new").write_text(str(os.getpid()))
            (tmp_path / "pid.new").rename(told)  # whole, never half-written
            os.kill(os.getpid(), signal.SIGKILL)
        return n

    before = _children()
    results = ordered_map(answers_then_dies, range(10), processes=1, ahead=3)
    _wait_until_dead(told)
    with pytest.raises(WorkerDiedError, match="SIGKILL"):
        list(results)
    assert _children() <= before


def _wait_until_dead(told: Path) -> None:
    """Until the process whose pid is in `told` has ended (a zombie: its parent reaps it)."""
    deadline = time.monotonic() + 60  # a bound for a stuck test, not a measure of speed
    while time.monotonic() < deadline:
        if told.exists():
            stat = Path(f"/proc/{told.read_text()}/stat").read_text()
            if stat.rpartition(")")[2].split()[0] == "Z":
                return
        time.sleep(0.01)
    raise AssertionError("the worker did not die")


def test_workers_hold_none_of_the_callers_standard_streams() -> None:
    def streams(_: None) -> list[str]:
        return [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)]

    ((_, found),) = list(ordered_map(streams, [None], processes=1))
    assert found == [os.devnull] * 3


def test_notes_reach_the_caller_while_the_item_is_worked() -> None:
    def count_down(n: int) -> str:
        for left in range(n, 0, -1):
            tell(left)
        return "done"

    heard: list[tuple[int, object]] = []
    results = list(
        ordered_map(
            count_down, [3, 2], processes=2, on_note=lambda n, note: heard.append((n, note))
        )
    )
    assert results == [(3, "done"), (2, "done")]
    assert sorted(heard) == [(2, 1), (2, 2), (3, 1), (3, 2), (3, 3)]


def test_leaving_the_loop_early_ends_the_workers() -> None:
    before = _children()
    with ordered_map(_slow_square, range(1000), processes=2) as results:
        for n, _ in results:
            if n == 3:
                break
    assert _children() <= before


CALLER = textwrap.dedent(
    """
    import os, sys, time
    from outreach.pipeline.parallel import ordered_map

    def forever(n):
        time.sleep(3600)

    results = ordered_map(forever, range(10), processes=2)
    print(" ".join(str(w.pid) for w in results._workers), flush=True)
    next(results)
    """
)


def test_workers_die_with_a_caller_killed_by_sigkill_and_let_go_of_its_pipes(
    tmp_path: Path,
) -> None:
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert caller.stdout is not None and caller.stderr is not None
    with caller:
        workers = [int(pid) for pid in caller.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        caller.kill()
        caller.wait()
        # Both pipes end within 2 s: no worker holds them.
        deadline = time.monotonic() + 2.0
        for stream in (caller.stdout, caller.stderr):
            while time.monotonic() < deadline:
                ready, _, _ = select.select([stream], [], [], deadline - time.monotonic())
                if ready and not os.read(stream.fileno(), 65536):
                    break
            else:
                pytest.fail("a worker of the killed caller still holds its pipe")
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [pid for pid in workers if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children() -> set[int]:
    """This process's living children (the CLI server among them)."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry))
    return found
