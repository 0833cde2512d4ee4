"""Shared fixtures: workspaces written into tmp_path, and the real CLI run as a subprocess."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import locale
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
from pg_server import PgServer

REPO = Path(__file__).resolve().parent.parent


def _temporary_files_in_memory(folder: Path = Path("/dev/shm"), room: int = 4 << 30) -> None:
    """The suite's temporary files (tmp_path, the servers' folders, the CLI runs' own) in
    memory where the machine has a tmpfs with room: the suite writes and removes some hundred
    thousand small files (the kill tests' outboxes, PDFs, ledgers), a fifth of its CPU on a
    disk's journal and almost nothing in memory. TMPDIR set here is inherited by every process
    the suite starts; elsewhere (no /dev/shm, a small one) the system's temporary folder."""
    if "OUTREACH_TEST_TMPDIR" in os.environ or not folder.is_dir():
        return
    try:
        stats = os.statvfs(folder)
        if stats.f_bavail * stats.f_frsize < room:
            return
        ours = folder / f"outreach-tests-{os.getuid()}"
        ours.mkdir(exist_ok=True)
        ours.chmod(0o1777)  # as /tmp: the servers started as the postgres user make theirs too
    except OSError:
        return
    os.environ["OUTREACH_TEST_TMPDIR"] = os.environ["TMPDIR"] = str(ours)
    tempfile.tempdir = str(ours)


_temporary_files_in_memory()

# Every real run also writes its report page (a plan, three charts, thumbnails): a second or two
# per run, hundreds of runs here. Only the report's own tests turn it on (REPORT_ON).
os.environ.setdefault("OUTREACH_REPORT", "0")
# The tool speaks English unless a test asks for Spanish (config `language: es`, or LANGUAGE):
# gettext reads LANGUAGE first, so a Spanish LANG on the machine does not change the suite.
os.environ["LANGUAGE"] = "en"
REPORT_ON = {"OUTREACH_REPORT": "1"}

BASE_CONFIG = """\
sender:
  name: "Casa Lucía"
  email: hola@casalucia.example
  reply_to: reservas@casalucia.example
  address: {street: "Calle de la Cava Baja, 12", postal_code: "28005", city: Madrid, country: ES}
  signature: Lucía Fernández
locale: es
timezone: Europe/Madrid
unsubscribe:
  url: "https://casalucia.example/baja?id={id}&token={token}"
coupon: {secret: test-secret, prefix: "CL-"}
cadence:
  min_gap_days: 0
  max_messages: 10
  per_days: 30
"""

HEADER = "id,first_name,last_name,email,birthday,street,postal_code,city,country,preferred_channel,locale,tags,opt_out"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests first (in their order), then the rest: with two test processes, the
    long kill and server tests then overlap with each other and the short ones fill in at the
    end, instead of one long test holding one process while the other has nothing left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def unmeasured_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI process the test will SIGKILL: without coverage's start-up
    variable, since a killed process never writes its coverage data (measuring it only slows
    the kill tests down)."""
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"}
    return {**env, **extra}


FRESH_CLI = os.environ.get("OUTREACH_TEST_FRESH_CLI") == "1"


def _needs_fresh_interpreter(env: dict[str, str]) -> bool:
    """Variables read when an interpreter starts, which a forked child could not take on."""
    return any(key.startswith(("PYTHON", "LC_")) or key in ("LANG", "LANGUAGE") for key in env)


class CliServer:
    """This test process's tests/cli_server.py, started with the session."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel = ours
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_server.py")), str(theirs.fileno())],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self.ready = False
        self.ended: dict[int, int] = {}
        # CPU seconds of the children reaped so far: the suite's CPU report (tests/cpu_report.py)
        # counts them with the test that started them.
        self.children_cpu = 0.0

    def _reply(self, timeout: float | None) -> dict[str, object]:
        self.channel.settimeout(timeout)
        message = self.channel.recv(65536)
        if not message:
            raise RuntimeError(f"tests/cli_server.py ended (status {self.process.poll()})")
        reply: dict[str, object] = json.loads(message)
        if "status" in reply:  # some child's end: kept until its caller asks
            pid, status = reply["pid"], reply["status"]
            assert isinstance(pid, int) and isinstance(status, int)
            self.ended[pid] = status
            cpu = reply.get("cpu", 0.0)
            assert isinstance(cpu, float)
            self.children_cpu += cpu
        return reply

    def start(
        self,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        stdout: int,
        stderr: int,
        stdin: int | None = None,
    ) -> int:
        """Start a child on these descriptors (which are then closed here; stdin: /dev/null
        unless given); its pid."""
        if not self.ready:
            if self._reply(timeout=120) != {"ready": True}:
                raise RuntimeError("tests/cli_server.py did not start")
            self.ready = True
        request = json.dumps({"args": args, "cwd": str(cwd), "env": env}).encode()
        fds = [stdout, stderr] if stdin is None else [stdin, stdout, stderr]
        try:
            socket.send_fds(self.channel, [request], fds)
        finally:
            for fd in fds:
                os.close(fd)
        while True:
            reply = self._reply(timeout=30)
            if "started" in reply:
                pid = reply["started"]
                assert isinstance(pid, int)
                return pid

    def status(self, pid: int, timeout: float | None) -> int | None:
        """The child's exit status once it has ended, waiting up to `timeout` (None: no limit,
        0: not at all); None if it is still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.ended:
            # Past the deadline, 0: only what has already arrived (the socket does not block).
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._reply(timeout=left)
            except (TimeoutError, BlockingIOError):
                break
        return self.ended.pop(pid, None)

    def run(self, args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> Result:
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        pid = self.start(args, cwd=cwd, env=env, stdout=out_w, stderr=err_w)
        deadline = time.monotonic() + timeout
        try:
            out, err = _read_to_end(out_r, err_r, deadline)
            status = self.status(pid, timeout=max(1.0, deadline - time.monotonic()))
            if status is None:
                raise TimeoutError
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self.status(pid, timeout=30)
            raise subprocess.TimeoutExpired(["outreach", *args], timeout) from None
        return Result(status, _text(out), _text(err))

    def close(self) -> None:
        """End of the socket: the server saves its coverage data and exits."""
        self.channel.close()
        self.process.wait(timeout=60)


class ForkedRun:
    """A CLI run started in the background on the server, with what the tests use of a
    `subprocess.Popen`: pid, poll, wait, send_signal, kill, communicate, stderr, `with`."""

    def __init__(self, server: CliServer, args: list[str], *, cwd: Path, env: dict[str, str]):
        self.server = server
        err_r, err_w = os.pipe()
        devnull = os.open(os.devnull, os.O_WRONLY)
        self.pid = server.start(args, cwd=cwd, env=env, stdout=devnull, stderr=err_w)
        self.stderr: BinaryIO | None = open(err_r, "rb")  # noqa: SIM115 (closed with the run)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.status(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server.status(self.pid, timeout=timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(["outreach"], timeout or 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[None, bytes]:
        assert self.stderr is not None
        with self.stderr:
            err = self.stderr.read()
        self.wait(timeout)
        return None, err

    def __enter__(self) -> ForkedRun:
        return self

    def __exit__(self, *_: object) -> None:
        if self.stderr is not None and not self.stderr.closed:
            self.stderr.close()
        self.wait()


def _read_to_end(out: int, err: int, deadline: float) -> tuple[bytes, bytes]:
    """Both pipes to their end, as `subprocess.run` reads them; TimeoutError at the deadline."""
    chunks: dict[int, list[bytes]] = {out: [], err: []}
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        try:
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                for key, _ in selector.select(left):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
        finally:
            os.close(out)
            os.close(err)
    return b"".join(chunks[out]), b"".join(chunks[err])


def _text(data: bytes) -> str:
    """As `subprocess.run(text=True)` decodes: the locale's encoding, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


_SERVER: list[CliServer] = []


def cli_server() -> CliServer:
    if not _SERVER:
        _SERVER.append(CliServer())
    return _SERVER[0]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Each test process starts its server now, while its first tests are set up (the
    controller of a `-n` run runs no test, and starts none: it rewrites the test modules for
    them)."""
    distributing = session.config.getoption("numprocesses", None)
    worker = hasattr(session.config, "workerinput")
    if distributing and not worker:
        # pytest's own work (no package code to measure), through its private functions: if a
        # pytest release changes them, each test process rewrites for itself, as before.
        with unmeasured(), contextlib.suppress(ImportError, AttributeError, TypeError):
            rewrite_test_modules(session.config)
    if not FRESH_CLI and (worker or not distributing):
        cli_server()


def rewrite_test_modules(config: pytest.Config) -> None:
    """pytest's assertion rewriting of every test module, cached as it caches it, before the
    test processes start. Each of them otherwise rewrites all 80 modules itself wherever
    PYTHONDONTWRITEBYTECODE is set (CI), under coverage's tracer: 15 s of CPU per process,
    for the 3 s it costs here. pytest reads the cache whatever that variable says."""
    from _pytest.assertion import rewrite

    if rewrite.assertstate_key not in config.stash:  # --assert=plain
        return
    state = config.stash[rewrite.assertstate_key]
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if not (path.name.startswith("test_") or path.name == "conftest.py"):
            continue
        cache = rewrite.get_cache_dir(path)
        pyc = cache / (path.name[:-3] + rewrite.PYC_TAIL)
        if rewrite._read_pyc(path, pyc, state.trace) is not None:
            continue
        if not rewrite.try_makedirs(cache):
            return  # a read-only checkout: each process rewrites for itself
        source_hash, code = rewrite._rewrite_test(path, config)
        rewrite._write_pyc(state, code, source_hash, pyc)


def pytest_configure(config: pytest.Config) -> None:
    """OUTREACH_TEST_CPU=FILE: a line per test of the CPU it took (tests/cpu_report.py)."""
    if os.environ.get("OUTREACH_TEST_CPU"):
        from cpu_report import CpuReport

        worker = getattr(config, "workerinput", {}).get("workerid", "main")
        forked = lambda: _SERVER[0].children_cpu if _SERVER else 0.0  # noqa: E731
        config.pluginmanager.register(CpuReport(os.environ["OUTREACH_TEST_CPU"], worker, forked))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[object]:
    """The server closed as soon as the last test has run: it saves its coverage data (and
    every measured run's, handed to it) before pytest-cov combines and reports."""
    try:
        return (yield)
    finally:
        pytest_sessionfinish()


def pytest_sessionfinish() -> None:
    while _SERVER:
        _SERVER.pop().close()


@contextmanager
def unmeasured() -> Iterator[None]:
    """Coverage paused in this process: for a test's own checking of thousands of files,
    which runs none of the package's code but pays for the tracing all the same."""
    try:
        import coverage
    except ImportError:
        yield
        return
    current = coverage.Coverage.current()
    if current is None:
        yield
        return
    current.stop()
    try:
        yield
    finally:
        current.start()


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    out: str
    err: str


def _environment(
    extra: dict[str, str] | None, *, unset: tuple[str, ...], measured: bool
) -> dict[str, str]:
    """This process's environment for a CLI run: `extra` added, `unset` taken out, and
    coverage's start-up variable too when the run is not to be measured."""
    env = {k: v for k, v in os.environ.items() if k not in unset} | (extra or {})
    if not measured:
        env.pop("COVERAGE_PROCESS_CONFIG", None)
    return env


@dataclass
class Workspace:
    """A workspace folder written by a test."""

    root: Path

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def run(
        self,
        *args: str,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
        fresh: bool = False,
        measured: bool = True,
    ) -> Result:
        """Run the CLI with ARGS in the workspace, as a user would: a process of its own, forked
        from the process that has imported the package (tests/cli_server.py), or with `fresh`
        (or OUTREACH_TEST_FRESH_CLI=1) `python -m outreach` started from nothing. `env` is added
        to this process's environment, less the variables in `unset`. Not
        `measured`: coverage leaves it alone (a rerun of thousands of contacts, where tracing
        costs seconds and smaller runs measure the same code)."""
        full_env = _environment(env, unset=unset, measured=measured)
        if fresh or FRESH_CLI or _needs_fresh_interpreter(env or {}):
            proc = subprocess.run(
                [sys.executable, "-m", "outreach", *args],
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=full_env,
            )
            return Result(proc.returncode, proc.stdout, proc.stderr)
        return cli_server().run(list(args), cwd=self.root, env=full_env, timeout=timeout)

    def start(
        self, *args: str, env: dict[str, str] | None = None, measured: bool = True
    ) -> ForkedRun:
        """Start the CLI with ARGS in the background (forked as `run` does): stdout goes
        nowhere, stderr to a pipe; the test polls, signals and waits for it as for a Popen."""
        full_env = _environment(env, unset=(), measured=measured)
        return ForkedRun(cli_server(), list(args), cwd=self.root, env=full_env)

    def files(self, relative: str, pattern: str = "**/*.eml") -> list[Path]:
        base = self.root / relative
        return sorted(base.glob(pattern)) if base.exists() else []


@pytest.fixture
def sample_workspace(tmp_path: Path) -> Workspace:
    """A copy of the repository's sample workspace (config, contacts, campaigns, templates)."""
    return copy_sample(tmp_path / "ws")


def copy_sample(root: Path, *, language: str = "en") -> Workspace:
    """The repository's sample workspace copied into the new folder `root`, speaking `language`
    (the sample's config says `language: es`; the suite reads English unless it asks)."""
    root.mkdir()
    config = (REPO / "config.yaml").read_text(encoding="utf-8")
    assert "\nlanguage: es " in config, "the sample's config no longer names its language"
    config = config.replace("\nlanguage: es ", f"\nlanguage: {language} ", 1)
    (root / "config.yaml").write_text(config, encoding="utf-8")
    shutil.copy(REPO / "contacts.csv", root / "contacts.csv")
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    shutil.copytree(REPO / "templates", root / "templates")
    return Workspace(root)


# What Spanish law asks of a marketing email (outreach validate checks it): who sends it, and
# a way to opt out.
FOOTER = (
    "{% if sender.address.street %}-- \n{{ sender.name }}, {{ sender.address.street }}, "
    "{{ sender.address.postal_code }} {{ sender.address.city }}\n{% endif %}"
    "{% if unsubscribe_url %}Baja: {{ unsubscribe_url }}\n{% endif %}"
)

# The day every well-formed row of `make_workspace` consented to marketing email (the
# birthday campaign gives a coupon: marketing). Tests of the legal basis write their own.
CONSENT = "2025-01-15"


def with_consent(lines: list[str]) -> list[str]:
    """A contacts file's lines (header first) with an email_consent column: CONSENT in every
    row as wide as the header (rows of another width, as given)."""
    header, *rows = lines
    width = len(next(csv.reader([header])))
    out = [header + ",email_consent"]
    for row in rows:
        cells = next(csv.reader([row]), [])
        out.append(f"{row},{CONSENT}" if len(cells) == width else row)
    return out


def _consented(rows: list[str]) -> list[str]:
    return with_consent([HEADER, *rows])


@pytest.fixture
def make_workspace(tmp_path: Path) -> Callable[..., Workspace]:
    """A small workspace: config, contacts rows, and simple birthday/promotion campaigns."""

    def make(
        rows: list[str],
        *,
        config_extra: str = "",
        campaigns: dict[str, str] | None = None,
        templates: dict[str, str] | None = None,
    ) -> Workspace:
        ws = Workspace(tmp_path / "ws")
        ws.root.mkdir(exist_ok=True)
        ws.write("config.yaml", BASE_CONFIG + textwrap.dedent(config_extra))
        ws.write("contacts.csv", "\n".join(_consented(rows)) + "\n")
        default_templates = {
            "birthday.txt.j2": "Hola {{ contact.first_name }}, ¡feliz cumpleaños!\nTu regalo: {{ coupon }}\n"
            + FOOTER,
            "birthday.html.j2": "<style>p { color: #333; }</style><p>Hola {{ contact.first_name }}</p>\n",
            "promo.txt.j2": "Hola {{ contact.first_name | default('amigo') }}, menú de otoño.\n"
            + FOOTER,
        }
        for name, text in {**default_templates, **(templates or {})}.items():
            ws.write(f"templates/{name}", text)
        default_campaigns = {
            "birthday.yaml": """\
                kind: birthday
                channel: email
                days_before: 3
                priority: 80
                email:
                  subject: "¡Feliz cumpleaños, {{ contact.first_name }}!"
                  text: birthday.txt.j2
                  html: birthday.html.j2
                """,
        }
        for name, text in (campaigns if campaigns is not None else default_campaigns).items():
            ws.write(f"campaigns/{name}", text)
        return ws

    return make


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the session (tests/pg_server.py), removed at the end."""
    server = PgServer()
    try:
        server.start()
        server.prepare_template()
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh database with the ledger's schema, on the session's server."""
    if not pg_server.running():  # a test stopped it (the database going away mid-run)
        pg_server.start()
    yield pg_server.database()
