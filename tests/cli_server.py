"""The command line, imported once per test process and forked for every run.

`python -m outreach` spends 0.6 s importing before it does anything (1.1 s with coverage
measuring it, 2 s when a letter brings WeasyPrint in), and the suite runs the CLI some
hundreds of times. This server imports the whole package once; for each run it forks a child
that is then a separate process like any other: its own working folder, environment, standard
streams (pipes the test reads) and exit status, with `outreach/__main__.py` run as
`__main__` the way `python -m outreach` runs it. What the fork skips is only the imports.

Runs to kill are forked too (`Workspace.start`), and killed like any process; a run whose
environment names OUTREACH_TEST_KILLPOINT="KIND MATCH N" kills itself at that point of its
work (tests/killpoints.py), and one naming OUTREACH_TEST_PAUSEPOINT stops there (SIGSTOP)
until the test lets it go on. The tests that
need a process exactly as a user starts one (the daemon and its signals, a new user's `init`,
two runs racing for the lock) start `python -m outreach` themselves;
`Workspace.run(..., fresh=True)` does the same for any other, and OUTREACH_TEST_FRESH_CLI=1
makes every `Workspace.run` fresh.

Protocol, over the SOCK_SEQPACKET socket whose descriptor is the first argument: a request is
one JSON message {"args", "cwd", "env"} carrying the write ends of two pipes, the child's
stdout and stderr (or three descriptors: stdin, stdout and stderr, e.g. one pseudo-terminal's
follower three times, for the progress bars); the server answers {"started": pid} when the child has started, and
{"pid", "status", "cpu"} (the status as `subprocess` reports a return code; the CPU seconds
of the child and the processes it reaped) when it has ended. The caller reads
the pipes to their end, as `subprocess.run` does: a run is over when every process it started
has let go of them. Children may run side by side. The server exits at the end of its socket,
saving its own coverage data.

Under coverage, a child goes on with the server's tracer (emptied at the fork) and, at its
end, hands what it measured to the server in a file the server merges when it reaps the
child: one data file per server, not one per run, and no new `Coverage` in each child.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import marshal
import os
import pkgutil
import runpy
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

import killpoints

MAX_REQUEST = 1 << 20

# Imported lazily by the package where a command needs them; the children get them for free.
THIRD_PARTY = ("weasyprint", "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_svg")


def preload() -> None:
    import outreach

    for module in pkgutil.walk_packages(outreach.__path__, "outreach."):
        if module.name != "outreach.__main__":
            importlib.import_module(module.name)
    for name in THIRD_PARTY:
        importlib.import_module(name)
    # One small page typeset once: fontconfig's fonts found, cffi's C declarations parsed and
    # the text shaped here, not again in every forked run that prints a letter (a quarter of a
    # small run's CPU). Caches only: what a run makes is the same.
    weasyprint = sys.modules["weasyprint"]
    page = "<p style='font-family: serif'>Hola, <b>Begoña</b> <i>Núñez</i>.</p>"
    weasyprint.HTML(string=page).write_pdf()
    # Babel's territory data (which languages a country speaks), read on first use.
    importlib.import_module("babel.languages").get_official_languages("ES", de_facto=True)


def _current_coverage() -> Any:
    """This process's `coverage.Coverage`, or None when coverage is not measuring it."""
    try:
        import coverage
    except ImportError:
        return None
    return coverage.Coverage.current()


def _coverage_collector() -> Any:
    """The collector of this process's coverage (the tracers' data), or None."""
    current = _current_coverage()
    return None if current is None else current._collector


# The child's collector, kept from its start: coverage's exit handler, which stops it, also
# forgets it as the current one.
_CHILD_COLLECTOR: list[Any] = []


def _restart_coverage(measured: bool) -> None:
    """The child measures itself as a new process would, but hands its data to the server
    (`_hand_over_coverage`) instead of writing a data file of its own: the server saves the
    imports it measured, and every child's lines and branches with them, once. The child keeps
    the server's tracer, and its cache of which files to measure (a new `Coverage` would ask
    again for every module the run touches: a third of a small run's time under coverage)."""
    current = _current_coverage()
    if current is None:
        return
    current._auto_save = False  # the server's data: saved by the server
    collector = current._collector
    if not measured:
        current.stop()
        return
    collector.post_fork()
    _CHILD_COLLECTOR.append(collector)
    # The same dict the tracer writes into: emptied, not replaced. What was in it is the
    # server's, saved by the server.
    collector.data.clear()


def _hand_over_coverage(folder: str) -> None:
    """The child's measurements, written for the server to merge when it reaps the child."""
    if not _CHILD_COLLECTOR or not _CHILD_COLLECTOR[0].data:
        return
    collector = _CHILD_COLLECTOR[0]
    with contextlib.suppress(Exception):
        collector.pause()
    path = os.path.join(folder, f"{os.getpid()}.marshal")
    with open(path + ".tmp", "wb") as out:
        # Copies first (each one atomic): a daemon thread of the run may still be measured.
        marshal.dump({name: set(arcs) for name, arcs in dict(collector.data).items()}, out)
    os.rename(path + ".tmp", path)


def _take_over_coverage(folder: str, pid: int) -> None:
    """A reaped child's measurements added to this server's, which it saves at its end."""
    path = os.path.join(folder, f"{pid}.marshal")
    try:
        with open(path, "rb") as handle:
            data = marshal.load(handle)
    except FileNotFoundError:
        return  # not measured, killed, or nothing run
    os.remove(path)
    collector = _coverage_collector()
    if collector is None:
        return
    for name, arcs in data.items():
        collector.data.setdefault(name, set()).update(arcs)


def _child(
    request: dict[str, object], stdin: int | None, stdout: int, stderr: int, coverage_folder: str
) -> int:
    env = request["env"]
    assert isinstance(env, dict)
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    _restart_coverage("COVERAGE_PROCESS_CONFIG" in env)
    # "KIND MATCH N": tests/killpoints.py, in this run (SIGKILL, or SIGSTOP to pause it).
    for name, signum in (
        ("OUTREACH_TEST_KILLPOINT", signal.SIGKILL),
        ("OUTREACH_TEST_PAUSEPOINT", signal.SIGSTOP),
    ):
        if name in env:
            kind, point = str(env[name]).split(" ", 1)
            match, count = point.rsplit(" ", 1)  # MATCH may hold spaces: "sql DELETE FROM x 1"
            killpoints.install(kind, match, int(count), signum)
    if stdin is None:
        stdin = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    args = request["args"]
    assert isinstance(args, list)
    sys.argv = [str(sys.modules["outreach"].__path__[0]) + "/__main__.py", *map(str, args)]
    sys.path[0] = os.getcwd()  # where `python -m` looks first, instead of this file's folder
    code = 0
    try:
        runpy.run_module("outreach", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        # As the interpreter turns sys.exit's argument into a status.
        if exit.code is None:
            code = 0
        elif isinstance(exit.code, int):
            code = exit.code
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # The interpreter's own shutdown: wait for threads, run the exit handlers, flush.
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if "COVERAGE_PROCESS_CONFIG" in env:
        try:
            _hand_over_coverage(coverage_folder)
        except Exception:  # the run's own status stands; the lost measurement is said
            traceback.print_exc()
            sys.stderr.flush()
    return code


def serve(channel: socket.socket, coverage_folder: str) -> None:
    """Children run side by side (a test may start a run and kill it while another goes);
    each one's status is sent, with its pid, as soon as it is reaped (and its coverage data
    taken over)."""
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD wakes select
    children: set[int] = set()
    with selectors.DefaultSelector() as selector:
        selector.register(channel, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is channel:
                    message, fds, _, _ = socket.recv_fds(channel, MAX_REQUEST, 3)
                    if not message:
                        return
                    request = json.loads(message)
                    wake = (wake_r, wake_w)
                    children.add(_start(request, fds, channel, wake, coverage_folder))
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
            while children:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
                if pid == 0:
                    break
                children.discard(pid)
                _take_over_coverage(coverage_folder, pid)
                reply = {
                    "pid": pid,
                    "status": os.waitstatus_to_exitcode(status),
                    "cpu": usage.ru_utime + usage.ru_stime,
                }
                channel.send(json.dumps(reply).encode())


def _start(
    request: dict[str, object],
    fds: list[int],
    channel: socket.socket,
    wake: tuple[int, int],
    coverage_folder: str,
) -> int:
    stdin, stdout, stderr = fds if len(fds) == 3 else (None, *fds)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in wake:
                os.close(fd)
            channel.close()
            code = _child(request, stdin, stdout, stderr, coverage_folder)
        finally:
            os._exit(code & 0xFF)
    for fd in fds:
        os.close(fd)
    channel.send(json.dumps({"started": pid}).encode())
    return pid


def main() -> None:
    preload()
    channel = socket.socket(fileno=int(sys.argv[1]))
    try:
        channel.send(b'{"ready": true}')
    except BrokenPipeError:
        return  # the test session ended before it needed the server (a short one)
    coverage_folder = tempfile.mkdtemp(prefix="cli-server-coverage-")
    try:
        serve(channel, coverage_folder)
    finally:
        shutil.rmtree(coverage_folder, ignore_errors=True)


if __name__ == "__main__":
    main()
