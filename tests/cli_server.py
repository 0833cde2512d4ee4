"""The command line, imported once per test process and forked for every run.

`python -m outreach` spends 0.6 s importing before it does anything (1.1 s with coverage
measuring it, 2 s when a letter brings WeasyPrint in), and the suite runs the CLI some
hundreds of times. This server imports the whole package once; for each run it forks a child
that is then a separate process like any other: its own working folder, environment, standard
streams (pipes the test reads) and exit status, with `outreach/__main__.py` run as
`__main__` the way `python -m outreach` runs it. What the fork skips is only the imports.

Runs to kill are forked too (`Workspace.start`), and killed like any process. The tests that
need a process exactly as a user starts one (the daemon and its signals, the terminal, a new
user's `init`, two runs racing for the lock) start `python -m outreach` themselves;
`Workspace.run(..., fresh=True)` does the same for any other, and OUTREACH_TEST_FRESH_CLI=1
makes every `Workspace.run` fresh.

Protocol, over the SOCK_SEQPACKET socket whose descriptor is the first argument: a request is
one JSON message {"args", "cwd", "env"} carrying the write ends of two pipes, the child's
stdout and stderr; the server answers {"started": pid} when the child has started, and
{"pid", "status"} (as `subprocess` reports a return code) when it has ended. The caller reads
the pipes to their end, as `subprocess.run` does: a run is over when every process it started
has let go of them. Children may run side by side. The server exits at the end of its socket,
saving its own coverage data.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import traceback

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


def _restart_coverage(measured: bool) -> None:
    """The child measures itself into its own data file, as a new process would; the imports
    the server measured are saved once, by the server."""
    try:
        import coverage
        from coverage.control import _after_fork_in_child
    except ImportError:
        return
    current = coverage.Coverage.current()
    if current is None:
        return
    if measured:
        _after_fork_in_child()
    else:
        current._auto_save = False
        current.stop()


def _child(request: dict[str, object], stdout: int, stderr: int) -> int:
    env = request["env"]
    assert isinstance(env, dict)
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    _restart_coverage("COVERAGE_PROCESS_CONFIG" in env)
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
    return code


def serve(channel: socket.socket) -> None:
    """Children run side by side (a test may start a run and kill it while another goes);
    each one's status is sent, with its pid, as soon as it is reaped."""
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
                    message, fds, _, _ = socket.recv_fds(channel, MAX_REQUEST, 2)
                    if not message:
                        return
                    children.add(_start(json.loads(message), fds, channel, (wake_r, wake_w)))
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                children.discard(pid)
                reply = {"pid": pid, "status": os.waitstatus_to_exitcode(status)}
                channel.send(json.dumps(reply).encode())


def _start(
    request: dict[str, object], fds: list[int], channel: socket.socket, wake: tuple[int, int]
) -> int:
    stdout, stderr = fds
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in wake:
                os.close(fd)
            channel.close()
            code = _child(request, stdout, stderr)
        finally:
            os._exit(code & 0xFF)
    os.close(stdout)
    os.close(stderr)
    channel.send(json.dumps({"started": pid}).encode())
    return pid


def main() -> None:
    preload()
    channel = socket.socket(fileno=int(sys.argv[1]))
    channel.send(b'{"ready": true}')
    serve(channel)


if __name__ == "__main__":
    main()
