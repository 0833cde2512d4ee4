"""One parallel map: a function over items in worker processes, the results in order.

    for chunk, result in ordered_map(render, chunks, processes=2):
        record(chunk, result)

The run, the plan, the letter printer and the report all spread their work this way:

- **Ordered.** Results come back in the order of the items, whichever worker finishes first.
- **Back-pressured.** At most `ahead` items per worker are taken from `items` and not yet
  handed back, so a stream of contacts is read as fast as it is worked, never ahead of it.
  Each worker holds up to two items: the next one waits in its queue while it works on the
  first, so a worker never idles while the caller is busy with results (recording a chunk).
  A thread in the worker reads its socket into that queue at once, so the caller never waits
  to write while the worker waits to write its answer.
- **Bound to the caller's life.** Workers are forked from the caller itself (no forkserver or
  other helper in between, which a SIGKILL of the caller would leave behind), so they inherit
  the function and what it closes over instead of receiving it pickled. First thing after the
  fork each asks the kernel to SIGKILL it when the caller dies (PR_SET_PDEATHSIG), then checks
  that its parent is still the caller (a kill that came before the request), and writes
  nothing once the caller is gone (outreach.files). Without that kernel request (not Linux),
  its socket to the caller reads as ended once the caller dies and it exits at its next item.
  Its standard streams are /dev/null: a worker holds no pipe of the caller's, so whoever reads
  the run's output to its end (cron, systemd, a test) sees the end when the run dies.
"""

from __future__ import annotations

import os
import pickle
import queue
import selectors
import signal
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

from outreach.files import bind_to_parent
from outreach.i18n import _

T = TypeVar("T")
R = TypeVar("R")

# Items a worker holds at most: the one in hand and the next, queued.
_HELD = 2
_HEADER = struct.Struct("!Q")  # each message: its length, then its pickle
_DONE, _ERROR, _NOTE = "done", "error", "note"

# The caller's ends of the sockets of every map in progress: a worker forked later closes them,
# so that only the caller holds them and a worker's socket ends when the caller does.
_CALLER_ENDS: set[socket.socket] = set()
# In a worker: its socket to the caller and the item in hand (for `tell`).
_IN_WORKER: list[tuple[socket.socket, int]] = []


class WorkerDiedError(RuntimeError):
    """A worker process ended without answering (killed, out of memory)."""


def tell(note: object) -> None:
    """From a worker: send `note` to the caller's `on_note` now (a no-op outside a worker)."""
    if _IN_WORKER:
        channel, number = _IN_WORKER[0]
        _send(channel, (_NOTE, number, note))


def ordered_map(
    function: Callable[[T], R],
    items: Iterable[T],
    *,
    processes: int,
    ahead: int = 2,
    on_note: Callable[[T, object], None] | None = None,
) -> ParallelMap[T, R]:
    """`function` over `items` in `processes` forked workers: (item, result) pairs in order.

    Work starts at once (the first items are sent before this returns). `on_note` hears what
    a worker `tell`s while on an item. An exception of `function` is raised where
    its item's result would come; iterate in a `with`, or `close`, to end the workers early.
    """
    return ParallelMap(function, items, processes=processes, ahead=ahead, on_note=on_note)


@dataclass(eq=False)
class _Worker:
    pid: int
    channel: socket.socket
    holding: deque[int] = field(default_factory=deque)  # the items sent, not yet answered
    status: int | None = field(default=None)  # once reaped


class ParallelMap(Generic[T, R]):
    """The iterator `ordered_map` returns; closing it ends its workers."""

    def __init__(
        self,
        function: Callable[[T], R],
        items: Iterable[T],
        *,
        processes: int,
        ahead: int,
        on_note: Callable[[T, object], None] | None,
    ) -> None:
        self._owner = os.getpid()
        self._items: Iterator[T] | None = iter(items)
        self._limit = max(1, ahead) * max(1, processes)
        self._on_note = on_note
        self._taken: dict[int, T] = {}  # taken and not yet handed back, by number
        self._unsent: deque[int] = deque()
        self._results: dict[int, tuple[bool, Any]] = {}
        self._next = 0  # the number of the next item taken
        self._due = 0  # the number of the next result handed back
        self._workers: list[_Worker] = []
        self._selector = selectors.DefaultSelector()
        try:
            for _ in range(max(1, processes)):
                self._workers.append(_start(function, owner=self._owner))
            for worker in self._workers:
                self._selector.register(worker.channel, selectors.EVENT_READ, worker)
            self._fill()
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> ParallelMap[T, R]:
        return self

    def __next__(self) -> tuple[T, R]:
        try:
            while self._due not in self._results:
                if self._due == self._next:  # nothing taken is left: the items have ended
                    self.close()
                    raise StopIteration
                self._receive()
            ok, value = self._results.pop(self._due)
            item = self._taken.pop(self._due)
            self._due += 1
            if not ok:
                raise value
            self._fill()
        except BaseException:
            self.close()
            raise
        return item, value

    def __enter__(self) -> ParallelMap[T, R]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __del__(self) -> None:
        with suppress(Exception):  # at interpreter exit, what it needs may be gone already
            self.close()

    def close(self) -> None:
        """End the workers: idle ones at the end of their socket, busy ones killed; reap them."""
        if os.getpid() != getattr(self, "_owner", None):
            return  # a copy of this object in a worker forked while it was open
        self._items = None
        for worker in getattr(self, "_workers", ()):
            if worker.status is None and worker.holding:
                # An abandoned item: its result is not wanted.
                with suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            _CALLER_ENDS.discard(worker.channel)
            with suppress(KeyError, ValueError, RuntimeError):
                self._selector.unregister(worker.channel)
            worker.channel.close()
            if worker.status is None:
                worker.status = _reap(worker.pid)
        self._selector.close()

    def _fill(self) -> None:
        """Take items while there is room, and hand them to idle workers."""
        while self._items is not None and self._next - self._due < self._limit:
            try:
                item = next(self._items)
            except StopIteration:
                self._items = None
                break
            self._taken[self._next] = item
            self._unsent.append(self._next)
            self._next += 1
        for held in range(_HELD):
            for worker in self._workers:
                if not self._unsent:
                    return
                if len(worker.holding) <= held:
                    number = self._unsent.popleft()
                    worker.holding.append(number)
                    try:
                        _send(worker.channel, (number, self._taken[number]))
                    except (BrokenPipeError, ConnectionResetError):
                        # It died after its last answer, before this item reached it.
                        raise self._died(worker) from None

    def _receive(self) -> None:
        """Wait for a worker's next message and act on it."""
        for key, _events in self._selector.select():
            worker: _Worker = key.data
            message = _receive(worker.channel)
            if message is None:
                raise self._died(worker)
            kind, number, payload = message
            if kind == _NOTE:
                if self._on_note is not None:
                    self._on_note(self._taken[number], payload)
                continue
            self._results[number] = (kind == _DONE, payload)
            worker.holding.popleft()  # a worker answers its items in the order it got them
            self._fill()

    @staticmethod
    def _died(worker: _Worker) -> WorkerDiedError:
        """The error for a worker whose socket ended: it is reaped, its status said."""
        worker.status = _reap(worker.pid)
        return WorkerDiedError(
            _("a worker process ended ({status})").format(status=_describe(worker.status))
        )


def _start(function: Callable[[T], R], *, owner: int) -> _Worker:
    """Fork a worker for `function`; the caller keeps one end of its socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
    except BaseException:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        _CALLER_ENDS.add(ours)  # closed in the worker with the others' ends
        _worker_main(theirs, function, owner=owner)
    theirs.close()
    _CALLER_ENDS.add(ours)
    return _Worker(pid=pid, channel=ours)


def _worker_main(channel: socket.socket, function: Callable[[Any], Any], *, owner: int) -> NoReturn:
    code = 1
    try:
        bind_to_parent(owner)  # before anything else: dies with the caller from here on
        # Ctrl-C reaches the whole process group: the caller decides, and ends the workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for end in _CALLER_ENDS:
            end.close()
        _CALLER_ENDS.clear()
        _quiet_stdio()
        _serve(channel, function)
        code = 0
    finally:
        os._exit(code)  # no exit handlers, no flush of the caller's buffers: they are its own


def _quiet_stdio() -> None:
    """Standard streams on /dev/null: the worker lets go of the caller's pipes and terminal."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    # New objects: the caller's may hold a lock another of its threads took before the fork.
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (for the worker's life)
    sys.stdout = sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


def _serve(channel: socket.socket, function: Callable[[Any], Any]) -> None:
    """Items in, results out, until the caller's end of the socket closes."""
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:  # drains the socket at once: the caller never blocks sending
        while (message := _receive(channel)) is not None:
            inbox.put(message)
        inbox.put(None)

    threading.Thread(target=read, daemon=True).start()
    while (message := inbox.get()) is not None:
        number, item = message
        _IN_WORKER[:] = [(channel, number)]
        try:
            answer: tuple[str, int, object] = (_DONE, number, function(item))
        except BaseException as exc:  # told to the caller, which raises it
            answer = (_ERROR, number, exc)
        try:
            _send(channel, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            # Not picklable as it is: its type and text still say what went wrong.
            text = f"{type(answer[2]).__name__}: {answer[2]}"
            _send(channel, (_ERROR, number, RuntimeError(f"{text} ({exc})")))


def _send(channel: socket.socket, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    channel.sendall(_HEADER.pack(len(data)) + data)


def _receive(channel: socket.socket) -> Any:
    """The next message, or None at the end of the socket (the other side ended)."""
    header = _read_exactly(channel, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    data = _read_exactly(channel, size)
    # Only from our own process or its worker, over a socket pair no one else holds.
    return None if data is None else pickle.loads(data)  # noqa: S301


def _read_exactly(channel: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        try:
            got = channel.recv_into(view)
        except ConnectionResetError:
            return None
        if not got:
            return None
        view = view[got:]
    return bytes(buffer)


def _reap(pid: int) -> int:
    """Wait for a worker to end; its exit status as `subprocess` gives it."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler of the caller's)
        return 0
    return os.waitstatus_to_exitcode(status)


def _describe(status: int | None) -> str:
    if status is not None and status < 0:
        with suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"
