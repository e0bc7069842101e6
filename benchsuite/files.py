"""Writing files safely: atomic writes, all-or-nothing appends, write failures said in one line, and the lock that
lets one process at a time own a run folder.

- ``atomic_write_bytes`` / ``atomic_write_text``: the data goes to ``<name>.tmp`` beside the target, is flushed to
  disk (``fsync``) and renamed over the target (``os.replace``), then the folder is synced so that the rename
  survives a power cut. A failure at any point (a full disk, a quota, a read-only file system, a folder removed
  meanwhile) leaves the previous file as it was and removes the temporary one; the error is a ``FileWriteError``
  that names the target. Every file benchsuite rewrites (checkpoints, summaries, ``run.json``, ask/tell state,
  exported presets and weights) goes through here.
- ``append_bytes``: appends all of the data or none of it (a failed append is truncated away), for JSONL logs.
- ``describe_os_error``: an ``OSError`` of the file system as one line with what to do.
- ``RunFolderLock``: ``flock`` on ``<runs>/.<run id>.lock``, taken before a run writes anything and released when it
  ends; the operating system drops it with the process, so a killed run never leaves a stale lock.

Tests inject write failures by replacing ``_write_all``, through which every byte written here passes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from contextlib import suppress
from pathlib import Path

from .errors import RunLockedError, clip

_TMP_SUFFIX = ".tmp"


class FileWriteError(OSError):
    """Writing ``filename`` failed (``errno``, ``strerror`` as the operating system said); the file is unchanged."""


def _write_all(fd: int, data: memoryview, path: Path) -> None:
    """Write all of ``data`` to ``fd`` (``path`` is the file it belongs to: fault injection in tests keys on it)."""
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _fail(exc: OSError, path: Path) -> FileWriteError:
    code = exc.errno if exc.errno is not None else errno.EIO
    return FileWriteError(code, exc.strerror or os.strerror(code), str(path))


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; file systems that cannot sync a folder are left alone."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Replace the file at ``path`` with ``data`` atomically and durably (see the module docstring).

    Raises:
        FileWriteError: the write failed; ``path`` holds what it held before and no temporary file is left.
    """
    path = Path(path)
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            _write_all(fd, memoryview(data).cast("B"), path)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink()  # a partial temporary would hold on to the space that ran out
        raise _fail(exc, path) from exc
    _sync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``atomic_write_bytes`` of ``text`` encoded as ``encoding``."""
    return atomic_write_bytes(path, text.encode(encoding))


def append_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Append ``data`` to the file at ``path`` (created if absent) and sync it: all of it or, when the write fails,
    none of it (the file is truncated back to its former length), so a log never ends in half a line.

    Raises:
        FileWriteError: the append failed; the file is as it was.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise _fail(exc, path) from exc
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, memoryview(data).cast("B"), path)
            os.fsync(fd)
        except OSError as exc:
            with suppress(OSError):
                os.ftruncate(fd, size)  # shrinking needs no space
            raise _fail(exc, path) from exc
    finally:
        os.close(fd)


# ---- one line for a failed write ---------------------------------------------------------------------------------

WRITE_ERRNOS = {
    errno.ENOSPC: "free space on that file system (or write to a folder on another one)",
    errno.EDQUOT: "free space within your disk quota (or write to a folder outside it)",
    errno.EFBIG: "free space or raise the file-size limit (ulimit -f)",
    errno.EROFS: "write to a folder on a writable file system, or remount this one read-write",
    errno.EIO: "check the disk (an input/output error is a hardware or network file-system fault)",
    errno.ENOENT: "a folder on its path was removed while benchsuite was writing; let nothing delete it meanwhile",
    errno.EACCES: "make the folder writable for you, or write to another one",
    errno.EPERM: "make the folder writable for you, or write to another one",
}
"""Errors of the file system that end a write, with what the user can do about each."""


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed for a reason of the file system (``WRITE_ERRNOS``): always for a
    ``FileWriteError``; for another ``OSError`` only where its errno cannot come from a read (no space, a quota,
    a file-size limit, a read-only file system)."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return False
    return isinstance(exc, FileWriteError) or exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def describe_os_error(exc: OSError) -> str:
    """``exc`` in one line: what failed on which path, the error's name, and (for ``WRITE_ERRNOS``) what to do."""
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else type(exc).__name__
    reason = (exc.strerror or str(exc) or type(exc).__name__).rstrip(".")
    where = "" if exc.filename is None else clip(os.fsdecode(exc.filename), 1000)  # a path: at most 4096 anyway
    if isinstance(exc, FileWriteError):
        head = f"cannot write {where}: {reason} ({name})"
    else:
        head = f"{where}: {reason} ({name})" if where else f"{reason} ({name})"
    hint = WRITE_ERRNOS.get(code)
    return head if hint is None else f"{head}; {hint}"


# ---- the run-folder lock -----------------------------------------------------------------------------------------


def _makedirs(folder: Path) -> list[Path]:
    """``folder.mkdir(parents=True, exist_ok=True)``; returns the folders it created, outermost first."""
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


class RunFolderLock:
    """Exclusive ownership of one run folder by one process, through ``flock`` on ``<runs>/.<run id>.lock``.

    The lock file sits beside the run folder (not in it: ``--restart`` deletes the folder, and a lock must exist
    before anything is written) and records ``pid host start time`` for the refusal message. ``acquire`` never
    waits: a second process gets ``RunLockedError`` at once. The operating system releases an ``flock`` when its
    process ends, however it ends, so a killed run is taken over by the next one without any clean-up. ``release``
    removes the lock file, and the folders ``acquire`` created for it when they are still empty (a run refused for
    bad input leaves no output folder behind). Removing a lock file is safe because ``acquire`` checks, once
    locked, that the file it holds is still the one at the path (else it locks the new one).
    """

    def __init__(self, run_dir: str | os.PathLike, run_id: str | None = None):
        run_dir = Path(run_dir)
        self.run_dir, self.run_id = run_dir, run_id or run_dir.name
        self.path = run_dir.parent / f".{run_dir.name}.lock"
        self._fd: int | None = None
        self._made: list[Path] = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunFolderLock:
        """Take the lock or raise ``RunLockedError`` (``OSError`` when the lock file cannot be created)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        for _ in range(100):  # a holder that removes the file, or its folder, between our open and our lock: retry
            self._made += _makedirs(self.path.parent)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                self._remove_made_folders()
                raise RunLockedError(
                    f"run {self.run_id} is being written by another process ({holder}; lock {self.path}); wait for "
                    "it to end (a killed process releases it at once) or pass another --output") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(self.path)
                mine = os.fstat(fd)
                same = (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                with suppress(OSError):  # who holds it, for the message of a second process; best effort
                    os.ftruncate(fd, 0)
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
                return self
            os.close(fd)
        raise RuntimeError(f"could not take {self.path}: it keeps being removed")

    def release(self) -> None:
        """Remove the lock file, then release the lock (in that order: see the class docstring). Idempotent."""
        if self._fd is None:
            return
        with suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)  # closing drops the flock
        self._fd = None
        self._remove_made_folders()

    def _remove_made_folders(self) -> None:
        for folder in reversed(self._made):
            try:
                folder.rmdir()  # only when empty: anything a run wrote keeps its folders
            except OSError:
                break
        self._made = []

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    with suppress(OSError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return text
    return "holder unknown"
