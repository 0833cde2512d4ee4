"""Crash safety of letters: `run --split` killed with SIGKILL at many points, and a full disk.

The letters step runs in layout workers forked from the run. A kill of the run must take them
with it (no process of the run alive and no pipe of its caller held 2 s later, nothing written
after the kill),
recovery must remove what the dead run left unrecorded (a batch, its manifest, its split
folder, temporaries), and the run that finally completes must leave each letter exactly once:
one batch, one split PDF per letter, never a `birthday-2.pdf` beside the dead run's.

The kills are chained to keep the suite fast: each run is killed at its point, then the next
run starts (it recovers from the previous one) and is killed at the next point; after the
last one, a run completes. Kill points are drawn from a seeded generator, each one something
the run has done that the test sees: some as it starts or loads (started, contacts.csv open,
the lock taken), most while the letters are laid out (after the k-th split PDF exists, or
while the batch is written), and, with the report on, while the report is gathered.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from conftest import REPORT_ON, ForkedRun, Workspace, unmeasured_env
from processes import assert_run_gone, descendants, has_open

from outreach.files import TEMPORARY

DAY = "2026-11-24"
LETTERS = 26  # the fewest letters the printer lays out in two worker processes
KILLS = 10
SEED = 20261124
CAMPAIGN = """\
    kind: birthday
    channel: letter
    days_before: 3
    letter:
      template: letter.html.j2
    """
LETTER = "<p>¡Feliz cumpleaños, {{ contact.first_name }}!</p>\n"


def rows(n: int) -> list[str]:
    return [
        # Birthday on the 26th: a letter posted on the 24th arrives by it (delivery_days 2).
        f"c{i:03d},Ana{i},García,,26/11/1980,Calle Mayor {i},28{i:03d},Madrid,ES,letter,es,"
        "customer,"
        for i in range(n)
    ]


@pytest.fixture
def letters_workspace(make_workspace: Callable[..., Workspace]) -> Workspace:
    return make_workspace(
        rows(LETTERS), campaigns={"birthday.yaml": CAMPAIGN}, templates={"letter.html.j2": LETTER}
    )


def processes_in(root: Path) -> list[int]:
    """Processes (other than this one) whose working folder is the workspace: the run's."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == root:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_none_alive(root: Path, *, within: float = 5.0) -> float:
    started = time.monotonic()
    while alive := processes_in(root):
        if time.monotonic() - started > within:
            pytest.fail(f"processes of the killed run still alive after {within} s: {alive}")
        time.sleep(0.02)
    return time.monotonic() - started


def start_run(ws: Workspace, env: dict[str, str] | None = None) -> ForkedRun:
    """A run to kill: unmeasured, since a killed process never writes its coverage data."""
    return ws.start("run", "--all", "--date", DAY, "--split", env=env, measured=False)


def count_entries(folder: Path) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for _ in entries)
    except FileNotFoundError:
        return 0


def letters_dir(ws: Workspace) -> Path:
    return ws.root / "out" / "letters" / DAY


def kill_points(rng: random.Random, *, report: bool = False) -> Iterator[tuple[str, float]]:
    """(kind, value): as it starts or loads, after the k-th split PDF, while batching, and
    with `report` while the report is gathered."""
    while True:
        draw = rng.random()
        if draw < 0.25:
            yield rng.choice(("started", "opened", "lock")), 0
        elif report and draw < 0.45:
            yield "report", 0
        elif draw < 0.85:
            yield "split", rng.randint(1, LETTERS - 2)
        else:
            yield "batch", rng.uniform(0.0, 0.05)


def reached(ws: Workspace, kind: str, value: float, pid: int) -> bool:
    """Whether the run `pid` has done what the kill point waits for."""
    if kind == "started":
        return True
    if kind == "opened":
        return has_open(pid, ws.root / "contacts.csv")
    if kind == "lock":  # it holds the lock: its pid is in the lock file
        try:
            return f'"pid": {pid}' in (ws.root / "state" / "run.lock").read_text()
        except FileNotFoundError:
            return False
    if kind == "report":  # the batch is written; the report's process is gathering the past
        return (letters_dir(ws) / "birthday.manifest.csv").exists() and bool(descendants(pid))
    split = letters_dir(ws) / "birthday"
    if kind == "split":
        return count_entries(split) >= value
    # "batch": every letter is laid out; the batch PDF is being joined and written.
    return count_entries(split) >= LETTERS


def is_stray(ws: Workspace, path: Path) -> bool:
    """A file no complete run leaves: a temporary, a second batch of the day, a foreign file."""
    if TEMPORARY.fullmatch(path.name) or path.name.startswith("."):
        return True
    if path.parent == letters_dir(ws):
        return path.name.startswith("birthday-")
    return path.parent.name == "birthday" and not path.name.startswith("c")


def stray_names(ws: Workspace) -> list[str]:
    out = ws.root / "out"
    paths = out.rglob("*") if out.exists() else iter(())
    return [p.relative_to(ws.root).as_posix() for p in paths if is_stray(ws, p)]


def check_letters_once(ws: Workspace) -> None:
    """Each due letter once: in the ledger, the one batch's manifest and the split folder."""
    with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as db:
        letters = db.execute(
            "SELECT contact_id, status, artifact FROM messages WHERE channel = 'letter'"
        ).fetchall()
        unfinished = db.execute("SELECT count(*) FROM runs WHERE ended_at IS NULL").fetchone()[0]
    assert unfinished == 0
    assert sorted(cid for cid, _, _ in letters) == [f"c{i:03d}" for i in range(LETTERS)]
    assert {(status, artifact) for _, status, artifact in letters} == {
        ("rendered", f"out/letters/{DAY}/birthday.pdf")
    }
    folder = letters_dir(ws)
    assert sorted(p.name for p in folder.iterdir()) == [
        "birthday",
        "birthday.manifest.csv",
        "birthday.pdf",
        "birthday.postage.csv",
    ]
    with (folder / "birthday.manifest.csv").open(encoding="utf-8-sig") as handle:
        manifest = list(csv.DictReader(handle))
    assert sorted(row["contact_id"] for row in manifest) == [f"c{i:03d}" for i in range(LETTERS)]
    split = sorted(p.name for p in (folder / "birthday").iterdir())
    assert split == [f"c{i:03d}.pdf" for i in range(LETTERS)]
    assert stray_names(ws) == []


def kill_chain(
    ws: Workspace, points: Iterator[tuple[str, float]], *, kills: int, env: dict[str, str]
) -> None:
    """Runs killed one after the other at `points`; after each kill, within 2 s, no process
    of the run is alive and no one holds the pipe its caller reads; nothing is written after."""
    tried = completed = leftovers = 0
    while tried < kills:
        assert completed < 10, "the runs keep finishing before their kill point"
        kind, value = next(points)
        with start_run(ws, env) as proc:
            assert proc.stderr is not None
            started = time.monotonic()
            while not reached(ws, kind, value, proc.pid) and proc.poll() is None:
                if time.monotonic() - started > 60:
                    pytest.fail(f"kill point {kind} {value} never came")
                time.sleep(0.002)
            if kind == "batch":
                time.sleep(value)
            known = descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert_run_gone(stderr=proc.stderr, root=ws.root, known=known)
        if proc.returncode != -signal.SIGKILL:
            # It finished first: a fine outcome, but no kill. Start the chain again.
            assert proc.returncode == 0
            completed += 1
            check_letters_once(ws)
            subprocess.run(["rm", "-rf", str(ws.root / "out"), str(ws.root / "state")], check=True)
            continue
        tried += 1
        leftovers += len(list((ws.root / "out").rglob("*.*"))) if (ws.root / "out").exists() else 0
        # Nothing is written after the kill; nothing of a second batch was ever begun.
        before = sorted(p.as_posix() for p in (ws.root / "out").rglob("*"))
        time.sleep(0.05)
        assert sorted(p.as_posix() for p in (ws.root / "out").rglob("*")) == before
        assert [n for n in stray_names(ws) if "birthday-" in n] == []
    print(
        f"kills: {tried} tried, {completed} run(s) finished before their kill point; "
        f"{leftovers} unrecorded files left by the dead runs for recovery to remove"
    )
    result = ws.run("run", "--all", "--date", DAY, "--split", env=env)
    assert result.code == 0, result.out + result.err
    check_letters_once(ws)
    assert processes_in(ws.root) == []


@pytest.mark.slow
def test_killed_split_runs_leave_no_process_no_duplicate_and_complete_once(
    letters_workspace: Workspace,
) -> None:
    kill_chain(letters_workspace, kill_points(random.Random(SEED)), kills=KILLS, env={})


@pytest.mark.slow
def test_runs_killed_anywhere_with_workers_and_the_report_leave_no_process_or_pipe(
    letters_workspace: Workspace,
) -> None:
    # Every kind of worker a run starts: the render workers (OUTREACH_WORKERS), the letter
    # layout workers, and the report's process, which gathers the past during the report.
    env = {"OUTREACH_WORKERS": "2", **REPORT_ON}
    rng = random.Random(SEED + 1)
    # Each kind of point once at least, in a random order; drawn ones after a run that ends
    # before its point.
    each = [("started", 0.0), ("opened", 0.0), ("lock", 0.0), ("report", 0.0), ("report", 0.0)]
    each += [("split", rng.randint(1, LETTERS - 2)), ("batch", rng.uniform(0.0, 0.05))]
    rng.shuffle(each)
    points = itertools.chain(each, kill_points(rng, report=True))
    kill_chain(letters_workspace, points, kills=len(each), env=env)


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (the test runs as root), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_leaves_no_partial_batch_and_the_rerun_prints_each_letter_once(
    letters_workspace: Workspace,
) -> None:
    ws = letters_workspace
    out = ws.root / "out"
    with small_disk(out, "160k"):
        full = ws.run("run", "--all", "--date", DAY, "--split")
        print(f"full disk: exit {full.code}")
        assert full.code in (1, 2), full.out + full.err
        assert "Traceback" not in full.err
        assert "No space left on device" in full.out + full.err
        wait_until_none_alive(ws.root)
        # What a full disk interrupted is not left half-done: no batch without its manifest,
        # no split folder without its batch, no temporary.
        assert stray_names(ws) == []
        folder = letters_dir(ws)
        on_disk = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as db:
            recorded = {
                Path(artifact).name
                for (artifact,) in db.execute(
                    "SELECT DISTINCT artifact FROM messages WHERE channel = 'letter' "
                    "AND artifact IS NOT NULL"
                )
            }
        batches = {name for name in on_disk if name.endswith(".pdf")}
        assert batches == recorded
        for name in on_disk:
            stem = name.removesuffix(".manifest.csv").removesuffix(".pdf")
            assert f"{stem}.pdf" in batches, on_disk

        subprocess.run(["mount", "-o", "remount,size=20m", str(out)], check=True)
        rerun = ws.run("run", "--all", "--date", DAY, "--split")
        assert rerun.code == 0, rerun.out + rerun.err
        # Each letter exactly once across the day's batches, in the ledger as on disk.
        with closing(sqlite3.connect(ws.root / "state" / "ledger.sqlite")) as db:
            letters = db.execute(
                "SELECT contact_id, status, artifact FROM messages WHERE channel = 'letter'"
            ).fetchall()
        assert sorted(cid for cid, _, _ in letters) == [f"c{i:03d}" for i in range(LETTERS)]
        assert {status for _, status, _ in letters} == {"rendered"}
        listed: list[str] = []
        for manifest in sorted(letters_dir(ws).glob("*.manifest.csv")):
            with manifest.open(encoding="utf-8-sig") as handle:
                listed += [row["contact_id"] for row in csv.DictReader(handle)]
            stem = manifest.name.removesuffix(".manifest.csv")
            assert (letters_dir(ws) / f"{stem}.pdf").is_file()
        assert sorted(listed) == [f"c{i:03d}" for i in range(LETTERS)]
        split = sorted(p.name for p in letters_dir(ws).glob("*/*.pdf"))
        assert split == [f"c{i:03d}.pdf" for i in range(LETTERS)]
        assert [n for n in stray_names(ws) if "birthday-" not in n] == []


@pytest.mark.slow
def test_the_render_workers_of_a_killed_run_die_with_it_and_write_nothing_after(
    make_workspace: Callable[..., Workspace],
) -> None:
    contacts = [
        f"c{i:05d},Ana{i},García,p{i}@example.com,25/11/1980,,,,,email,es,customer,"
        for i in range(3000)
    ]
    ws = make_workspace(contacts)
    folder = ws.root / "out" / "outbox" / DAY / "birthday"
    env = unmeasured_env(OUTREACH_WORKERS="2")
    with subprocess.Popen(
        [sys.executable, "-m", "outreach", "run", "--all", "--date", DAY],
        cwd=ws.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        started = time.monotonic()
        while count_entries(folder) < 300 and proc.poll() is None:
            assert time.monotonic() - started < 60
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    at_kill = count_entries(folder)
    assert proc.returncode == -signal.SIGKILL
    wait_until_none_alive(ws.root, within=2.0)
    written = count_entries(folder)
    # At most the file each worker was renaming into place as the kill came; a worker that
    # lived on would finish its chunk of 500.
    assert written - at_kill <= 2, (at_kill, written)
    time.sleep(0.3)
    assert count_entries(folder) == written < 3000
    result = ws.run("run", "--all", "--date", DAY)
    assert result.code == 0, result.out + result.err
    assert count_entries(folder) == 3000
    assert not [p for p in folder.iterdir() if TEMPORARY.fullmatch(p.name)]
