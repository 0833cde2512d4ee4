"""Undo what a run killed midway (or stopped by a full disk) left behind.

A run claims a message's ledger row (its final row: `rendered`, with the path its file will
have) before it writes the file, so that no other run or machine makes it too. A dead run can
leave rows whose file never came: emails claimed in a chunk whose files were not all written,
letters claimed before their batch was printed (no artifact yet). Recovery turns each of the
dead run's rows that has no file into `failed` without artifact (reason `interrupted`), so the
next run makes it again; it never touches rows of other runs.

A dead run can also leave files the ledger does not know: a letter batch with its manifest, the
folder of one-letter PDFs of `--split` (complete or not), and temporaries of any writer
(`.<name>.tmp-<pid>`, outreach.files). Each would be printed twice, or would push the next
batch of the day to a new name (`birthday-2.pdf`) beside the old. Recovery removes every one
of them (and any outbox file the ledger does not know) before the next run begins, so a rerun
leaves each message exactly once on disk.

A sharded run (outreach.shards) holds only its shard's lock: other shards may be writing in
the same out folder at this moment. It undoes only its own shard's dead runs, and only their
files (each says its shard: out/outbox/<day>/shard-K-of-N/, <campaign>.shard-K-of-N.pdf).
"""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from outreach.files import TEMPORARY, clean_temporaries
from outreach.ledger import Ledger
from outreach.model.config import Settings
from outreach.model.reasons import Code, Reason

_MANIFEST = ".manifest.csv"
_POSTAGE = ".postage.csv"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # an out folder outside the workspace: artifacts are absolute
        return path.as_posix()


def _stray_letters(folder: Path, *, known: set[str], root: Path, label: str = "") -> int:
    """Remove the batches, manifests and split folders in `folder` the ledger does not know
    (only those of shard `label`, when given)."""
    removed = 0
    kept_stems = {
        path.name.removesuffix(".pdf")
        for path in folder.glob("*.pdf")
        if _relative(path, root) in known
    }
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if entry.is_dir():
            stem = name
        elif name.endswith(_MANIFEST):
            stem = name.removesuffix(_MANIFEST)
        elif name.endswith(_POSTAGE):
            stem = name.removesuffix(_POSTAGE)
        elif name.endswith(".pdf"):
            stem = name.removesuffix(".pdf")
        else:
            continue
        if stem in kept_stems or (label and f".{label}" not in stem):
            continue
        # Never recorded, so it will be made again: it goes rather than reach the printer twice.
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def recover_interrupted(ledger: Ledger, *, settings: Settings, now: datetime) -> int:
    """Undo what runs killed midway left behind; return how many stray files were removed.

    Call it only while holding the workspace lock, or (a sharded ledger) the shard's: then no
    live run is writing what it removes.
    """
    label = ledger.scope
    if label:
        removed = _shard_temporaries(settings.out_dir, label=label)
    else:
        removed = len(clean_temporaries(settings.out_dir))
    ledger.settle_interrupted(now=now)
    for run_id, run_date in ledger.interrupted_runs():
        if still_running(*ledger.run_process(run_id)):
            # Its lock went (its connection to the server was cut) but the run goes on: its
            # rows and files are its own, and it ends itself.
            continue
        _forget_unmade(ledger, run_id=run_id, root=settings.root, now=now)
        known = ledger.artifacts_of_run_date(run_date)
        day_dir = settings.out_dir / "outbox" / run_date.isoformat()
        if day_dir.is_dir():
            patterns = [f"{label}/*/*.eml"] if label else ["*/*.eml", "shard-*/*/*.eml"]
            for pattern in patterns:
                for path in day_dir.glob(pattern):
                    if _relative(path, settings.root) not in known:
                        path.unlink()
                        removed += 1
        letters_dir = settings.out_dir / "letters" / run_date.isoformat()
        if letters_dir.is_dir():
            removed += _stray_letters(letters_dir, known=known, root=settings.root, label=label)
        ledger.end_run(run_id, ended_at=now, counts={"interrupted": True})
    return removed


def _shard_temporaries(out_dir: Path, *, label: str) -> int:
    """Remove the temporary files a killed run of shard `label` left; leave other shards'."""
    removed = 0
    for folder, _dirs, files in os.walk(out_dir):
        mine = label in os.path.relpath(folder, out_dir)
        for name in files:
            if TEMPORARY.fullmatch(name) and (mine or f".{label}." in name):
                with suppress(FileNotFoundError):
                    Path(folder, name).unlink()
                    removed += 1
    return removed


def _forget_unmade(ledger: Ledger, *, run_id: int, root: Path, now: datetime) -> int:
    """The dead run's claimed rows whose file does not exist become `failed` (made again)."""
    unmade = [
        row.key
        for row in ledger.claimed_by_run(run_id)
        if row.artifact is None or not (root / row.artifact).is_file()
    ]
    if not unmade:
        return 0
    return ledger.forget_unmade(
        unmade, run_id=run_id, reason=Reason(Code.INTERRUPTED).record, now=now
    )


# A run records its start a moment after its process starts: seconds, not more.
_START_SLACK_S = 5.0


def still_running(host: str | None, pid: int, started_at: datetime) -> bool:
    """Whether the process that began a run at `started_at` is alive on this machine.

    A process id is used again once its process is gone (after a reboot, soon): a process
    with the id that started after the run did is another one, and the run is dead.
    """
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    began = _process_start(pid)
    return began is None or began <= started_at.timestamp() + _START_SLACK_S


def _process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from Linux's /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        boot = Path("/proc/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Field 22, starttime, in clock ticks since boot; the fields after the name's `)` start at 3.
    fields = stat.rpartition(")")[2].split()
    btime = next((line.split()[1] for line in boot.splitlines() if line.startswith("btime ")), None)
    if len(fields) < 20 or btime is None:
        return None
    return int(btime) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
