"""Writing files safely: atomic writes and all-or-nothing appends.

- ``atomic_write_bytes`` / ``atomic_write_text``: the data goes to ``<name>.tmp`` beside the target, is flushed to
  disk (``fsync``) and renamed over the target (``os.replace``), then the folder is synced so that the rename
  survives a power cut. A failure at any point (a full disk, a quota, a read-only file system, a folder removed
  meanwhile) leaves the previous file as it was and removes the temporary one; the error is a ``FileWriteError``
  that names the target. Every file benchsuite rewrites (checkpoints, summaries, ``run.json``, ask/tell state,
  exported presets and weights) goes through here.
- ``append_bytes``: appends all of the data or none of it (a failed append is truncated away), for JSONL logs.

Tests inject write failures by replacing ``_write_all``, through which every byte written here passes.
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress
from pathlib import Path

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
