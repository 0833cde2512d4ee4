"""What the kill tests see of a run's processes in /proc: its children, its open files, and
who still holds the pipe its caller reads."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path
from typing import BinaryIO

import pytest


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(pid: int) -> set[int]:
    """The living processes whose parent chain leads to `pid`."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        stat = _stat(child)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _descriptors(pid: int) -> list[str]:
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        try:
            found.append(os.readlink(f"{folder}/{name}"))
        except OSError:
            continue
    return found


def has_open(pid: int, path: Path) -> bool:
    """Whether the process has `path` open."""
    return str(path.resolve()) in _descriptors(pid)


def holders(target: str) -> set[int]:
    """Processes other than this one with a descriptor on `target` ("pipe:[123]", a path)."""
    me = os.getpid()
    return {pid for pid in _pids() if pid != me and target in _descriptors(pid)}


def with_cwd(root: Path) -> set[int]:
    """Processes other than this one whose working folder is `root`."""
    me = os.getpid()
    found = set()
    for pid in _pids():
        try:
            if pid != me and Path(os.readlink(f"/proc/{pid}/cwd")) == root:
                found.add(pid)
        except OSError:
            continue
    return found


def _describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        command = "?"
    stat = _stat(pid)
    return f"{pid} (parent {stat[1] if stat else '?'}): {command.strip()}"


def assert_run_gone(*, stderr: BinaryIO, root: Path, known: set[int], within: float = 2.0) -> float:
    """Within `within` seconds of a run's kill: its stderr pipe reads to its end (no process
    holds it any more) and none of its processes is alive, be it one of `known` (its
    descendants just before the kill), one working in `root` or one holding the pipe.
    Returns the seconds it took."""
    started = time.monotonic()
    deadline = started + within
    pipe = os.readlink(f"/proc/self/fd/{stderr.fileno()}")
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([stderr], [], [], max(0.0, left))
        if ready and not os.read(stderr.fileno(), 65536):
            break
        if left <= 0:
            held = ", ".join(_describe(pid) for pid in sorted(holders(pipe)))
            pytest.fail(f"the killed run's stderr pipe is still held after {within} s: {held}")
    while True:
        left_alive = {pid for pid in known | with_cwd(root) | holders(pipe) if alive(pid)}
        if not left_alive:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            described = "; ".join(_describe(pid) for pid in sorted(left_alive))
            pytest.fail(f"processes of the killed run alive after {within} s: {described}")
        time.sleep(0.01)
