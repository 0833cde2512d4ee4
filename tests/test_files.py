"""The one atomic writer, its one temporary pattern, and workers bound to their parent."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import unmeasured_env

from outreach import files
from outreach.deliver import printing
from outreach.files import (
    TEMPORARY,
    AtomicFolder,
    clean_temporaries,
    temporary_path,
    write_atomic,
)
from outreach.model.errors import DeliveryError


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


def test_a_folder_writes_each_file_whole_and_never_under_another_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names: list[str] = []
    real_open = os.open

    def spying_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        names.append(os.fspath(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    folder = AtomicFolder(str(tmp_path))
    monkeypatch.setattr(os, "open", spying_open)
    folder.write("a.eml", b"first")
    folder.write("b.eml", b"x" * 300_000)
    monkeypatch.undo()
    folder.close()
    assert names == [".", "."]  # unnamed files in the folder: no temporary name at all
    assert (tmp_path / "a.eml").read_bytes() == b"first"
    assert (tmp_path / "b.eml").read_bytes() == b"x" * 300_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.eml", "b.eml"]
    # The same mode as open() gives (0o666 less the umask), like every other writer's files.
    write_atomic(tmp_path / "c.eml", b"c", durable=False)
    assert (tmp_path / "a.eml").stat().st_mode == (tmp_path / "c.eml").stat().st_mode


def test_a_folder_replaces_a_file_that_exists_already(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(b"from an earlier run")
    folder = AtomicFolder(str(tmp_path))
    folder.write("a.eml", b"again")
    folder.close()
    assert (tmp_path / "a.eml").read_bytes() == b"again"
    assert [p.name for p in tmp_path.iterdir()] == ["a.eml"]


def test_a_folder_without_unnamed_files_writes_through_a_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refusing_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if flags & files._O_TMPFILE == files._O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    assert files._O_TMPFILE  # Linux: the fast path is the one the other tests cover
    monkeypatch.setattr(files, "_O_TMPFILE", files._O_TMPFILE)  # restored afterwards
    monkeypatch.setattr(os, "open", refusing_open)
    folder = AtomicFolder(str(tmp_path))
    folder.write("a.eml", b"one")
    assert files._O_TMPFILE == 0  # asked once, then not again
    folder.write("b.eml", b"two")
    folder.close()
    assert (tmp_path / "a.eml").read_bytes() == b"one"
    assert (tmp_path / "b.eml").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.eml", "b.eml"]


def test_an_orphaned_worker_s_file_never_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = AtomicFolder(str(tmp_path))
    # The parent dies while the worker writes: after the data, before the file is linked.
    monkeypatch.setattr(files, "_parent", os.getppid())
    real_write = os.write

    def write_then_orphan(fd: int, data: bytes) -> int:
        monkeypatch.setattr(files, "_parent", -1)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_then_orphan)
    with pytest.raises(files.OrphanedError):
        folder.write("a.eml", b"half a run")
    monkeypatch.undo()
    folder.close()
    assert list(tmp_path.iterdir()) == []
