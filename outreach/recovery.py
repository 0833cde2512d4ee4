"""Undo what a run killed midway (or stopped by a full disk) left behind.

A run writes a message's file before its ledger row, so a dead run can leave files the ledger
does not know: emails in the outbox, a letter batch with its manifest, the folder of one-letter
PDFs of `--split` (complete or not), and temporaries of any writer (`.<name>.tmp-<pid>`,
outreach.files). Each would be printed or sent twice, or would push the next batch of the day
to a new name (`birthday-2.pdf`) beside the old. Recovery removes every one of them before
the next run begins, so a rerun leaves each message exactly once on disk.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from outreach.config import Settings
from outreach.files import clean_temporaries
from outreach.ledger import Ledger

_MANIFEST = ".manifest.csv"
_POSTAGE = ".postage.csv"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # an out folder outside the workspace: artifacts are absolute
        return path.as_posix()


def _stray_letters(folder: Path, *, known: set[str], root: Path) -> int:
    """Remove the batches, manifests and split folders in `folder` the ledger does not know."""
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
        if stem in kept_stems:
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

    Call it only while holding the workspace lock (then no live run is writing).
    """
    removed = len(clean_temporaries(settings.out_dir))
    ledger.settle_interrupted(now=now)
    for run_id, run_date in ledger.interrupted_runs():
        known = ledger.artifacts_of_run_date(run_date)
        day_dir = settings.out_dir / "outbox" / run_date.isoformat()
        if day_dir.is_dir():
            for path in day_dir.glob("*/*.eml"):
                if _relative(path, settings.root) not in known:
                    path.unlink()
                    removed += 1
        letters_dir = settings.out_dir / "letters" / run_date.isoformat()
        if letters_dir.is_dir():
            removed += _stray_letters(letters_dir, known=known, root=settings.root)
        ledger.end_run(run_id, ended_at=now, counts={"interrupted": True})
    return removed
