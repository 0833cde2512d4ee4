"""The one atomic writer, its one temporary pattern, and workers bound to their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import unmeasured_env

from outreach.deliver import printing
from outreach.errors import DeliveryError
from outreach.files import TEMPORARY, clean_temporaries, temporary_path, write_atomic


def test_every_writer_names_its_temporary_in_the_pattern_recovery_cleans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_open = open

    def spying_open(file: str, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode:
            seen.append(os.path.basename(file))
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", spying_open)
    write_atomic(tmp_path / "a.eml", b"x", durable=False)
    printing.write_atomic(tmp_path / "batch.pdf", b"%PDF")
    monkeypatch.undo()
    assert len(seen) == 2
    assert all(TEMPORARY.fullmatch(name) for name in seen), seen
    assert temporary_path(tmp_path / "b.pdf").name in {f".b.pdf.tmp-{os.getpid()}"}
    (tmp_path / seen[1]).write_bytes(b"half a PDF")  # as a killed writer leaves it
    assert clean_temporaries(tmp_path) == [tmp_path / seen[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.eml", "batch.pdf"]


def test_a_full_disk_is_a_delivery_error_and_leaves_no_temporary(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    with pytest.raises(DeliveryError, match="cannot write"):
        printing.write_atomic(folder / "batch.pdf", b"%PDF")
    assert not folder.exists()


CHILD = """
import os, sys, time
from outreach.files import bind_to_parent, check_parent, OrphanedError
pid = os.fork()
if pid == 0:
    bind_to_parent()
    print(os.getpid(), flush=True)
    time.sleep(30)
    os._exit(0)
time.sleep(30)
"""


def test_a_bound_worker_dies_with_its_parent_however_the_parent_dies() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=unmeasured_env()
    ) as parent:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        status = Path(f"/proc/{worker}/stat").read_text().split()[2]
        if status == "Z":  # dead, waiting for init to reap it
            return
        time.sleep(0.01)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its parent")
