"""The one way outreach writes a file: a temporary name, then a rename; and who may write.

Every writer (letter batches, split letters, manifests, previews) goes through `write_atomic`,
so a reader sees a file complete or not at all, and a process killed halfway leaves only a
temporary `.<name>.tmp-<pid>`, which `clean_temporaries` (one pattern for all) removes on the
next run. The outbox, which writes one small file per email, uses `AtomicFolder`: on Linux
each file is written unnamed (O_TMPFILE) and linked into place complete, so there is no
temporary name at all, and a killed process leaves nothing; elsewhere, or where the name is
taken already, it falls back to `write_atomic`.

Worker processes write on behalf of a run: `bind_to_parent` makes such a worker die with its
parent (PR_SET_PDEATHSIG on Linux, whatever kills the parent) and makes `write_atomic` refuse
to write once the parent is gone, so a dead run's workers leave nothing behind.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import sys
from contextlib import suppress
from pathlib import Path

# `.<name>.tmp-<pid>`: hidden, so nothing picks up a half-written file, and the pid says whose.
TEMPORARY = re.compile(r"\..+\.tmp-\d+")
_PR_SET_PDEATHSIG = 1

# In a worker process: the pid of the process it works for (None in a run's own process).
_parent: int | None = None


class OrphanedError(RuntimeError):
    """A worker's parent died: the worker must not write anything more."""


def temporary_path(path: Path) -> Path:
    """The name `path` is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); True if it will."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def bind_to_parent(parent: int | None = None) -> None:
    """Make this (worker) process die with its parent and write nothing after it.

    `parent` is the pid the worker was started by (default: its parent now). If the parent
    died before the kernel was asked, the worker exits at once.
    """
    global _parent
    expected = os.getppid() if parent is None else parent
    die_with_parent()
    _parent = expected
    if os.getppid() != expected:  # it died between fork and prctl
        os._exit(1)


def check_parent() -> None:
    """Raise OrphanedError in a worker whose parent is gone (a no-op in a run's process)."""
    if _parent is not None and os.getppid() != _parent:
        raise OrphanedError("the run this worker wrote for has ended")  # not translated: internal


def write_atomic(path: Path | str, data: bytes, *, durable: bool = True) -> None:
    """Write a file that readers see either complete or not at all (temporary name, rename).

    `durable` flushes the data to disk before the rename (fsync). The outbox passes False: an
    fsync per email would cost more than rendering it, and the ledger row that follows is not
    fsynced either (see outreach.deliver.outbox).
    """
    check_parent()
    # Plain strings and os calls: pathlib's parsing cost more than the rest of this function.
    final = os.fspath(path)
    folder, name = os.path.split(final)
    temporary = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        check_parent()  # a worker orphaned meanwhile leaves its temporary for recovery
        os.replace(temporary, final)  # atomic within one folder
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


# 0 where the platform has no O_TMPFILE; set to 0 when the kernel or filesystem refuses it.
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
# What open(O_TMPFILE) and linkat answer where unnamed files cannot be used.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})


class AtomicFolder:
    """A folder that many files are written into whole, each seen complete or not at all.

    A file is created unnamed in the folder (O_TMPFILE), written, and linked to its name
    (linkat through /proc/self/fd) only once complete: two system calls fewer per file than a
    temporary name and a rename, and no temporary for a killed process to leave behind. Where
    unnamed files are not supported, or the name exists already (linkat never replaces), the
    file goes through `write_atomic`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def write(self, name: str, data: bytes) -> None:
        """Write `name` in the folder: complete once this returns, not there if it raises."""
        global _O_TMPFILE
        check_parent()
        if not _O_TMPFILE:
            write_atomic(os.path.join(self.path, name), data, durable=False)
            return
        try:
            # 0o666: the same mode, less the umask, as open() gives the other writers' files.
            fd = os.open(".", os.O_WRONLY | _O_TMPFILE | os.O_CLOEXEC, 0o666, dir_fd=self._fd)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise
            _O_TMPFILE = 0
            write_atomic(os.path.join(self.path, name), data, durable=False)
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            check_parent()  # an orphaned worker's unnamed file vanishes when it is closed
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=self._fd)
        except FileExistsError:
            write_atomic(os.path.join(self.path, name), data, durable=False)
        except FileNotFoundError:  # no /proc: unnamed files cannot be linked here
            _O_TMPFILE = 0
            write_atomic(os.path.join(self.path, name), data, durable=False)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the folder's descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def clean_temporaries(out_dir: Path) -> list[Path]:
    """Remove the temporary files a killed run left anywhere under `out_dir`; return them."""
    removed: list[Path] = []
    for folder, _dirs, files in os.walk(out_dir):
        for name in files:
            if TEMPORARY.fullmatch(name):
                path = Path(folder, name)
                with suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed
