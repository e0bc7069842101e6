"""benchsuite.files: atomic writes and appends under injected write failures, the one-line description of a failed
write, and the run-folder lock (atomic, refused in one line, dropped with its process)."""

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from benchsuite import files
from benchsuite.errors import RunLockedError
from benchsuite.files import (FileWriteError, RunFolderLock, append_bytes, atomic_write_bytes, atomic_write_text,
                              describe_os_error, is_write_failure)


def _fail_writes(monkeypatch, code=errno.ENOSPC, after_bytes=0):
    """Every write of benchsuite.files fails with ``code`` once ``after_bytes`` bytes of it went through (a disk that
    fills up in the middle of a write)."""
    original = files._write_all

    def write_all(fd, data, path):
        if after_bytes:
            original(fd, data[:after_bytes], path)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files, "_write_all", write_all)
    return original


@pytest.mark.parametrize("after_bytes", [0, 3])
def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, after_bytes):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")
    _fail_writes(monkeypatch, after_bytes=after_bytes)
    with pytest.raises(FileWriteError) as caught:
        atomic_write_text(target, "new contents")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)  # the target, not the .tmp
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    order = []
    monkeypatch.setattr(files.os, "fsync", lambda fd: order.append("fsync"))
    real_replace = os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b)))
    atomic_write_bytes(tmp_path / "x", b"data")
    assert order[:2] == ["fsync", "replace"] and (tmp_path / "x").read_bytes() == b"data"


def test_a_failed_append_is_truncated_away(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    append_bytes(log, b'{"step": 0}\n')
    _fail_writes(monkeypatch, after_bytes=5)  # half a line reaches the file, then the disk is full
    with pytest.raises(FileWriteError, match="No space left"):
        append_bytes(log, b'{"step": 32}\n')
    assert log.read_bytes() == b'{"step": 0}\n'


def test_a_folder_removed_meanwhile_is_a_write_failure_naming_the_file(tmp_path):
    with pytest.raises(FileWriteError) as caught:
        atomic_write_text(tmp_path / "gone" / "run.json", "{}")
    assert caught.value.errno == errno.ENOENT and is_write_failure(caught.value)
    assert describe_os_error(caught.value).startswith(f"cannot write {tmp_path / 'gone' / 'run.json'}: ")


@pytest.mark.parametrize("code, name, hint", [
    (errno.ENOSPC, "ENOSPC", "free space"), (errno.EDQUOT, "EDQUOT", "quota"),
    (errno.EROFS, "EROFS", "writable file system"), (errno.ENOENT, "ENOENT", "removed"),
])
def test_describe_os_error_says_what_where_and_what_to_do(code, name, hint):
    text = describe_os_error(FileWriteError(code, os.strerror(code), "/data/runs/x/checkpoint.pt"))
    assert text.startswith(f"cannot write /data/runs/x/checkpoint.pt: {os.strerror(code)} ({name}); ") and hint in text
    assert "\n" not in text
    # an OSError from elsewhere (e.g. an MLflow artifact copy): a full disk is a write failure, a missing file is not
    assert is_write_failure(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_write_failure(FileNotFoundError(errno.ENOENT, "No such file or directory", "x"))
    assert len(describe_os_error(OSError(errno.ENOSPC, "No space left on device", "p" * 100_000))) < 1300


def test_the_run_lock_is_exclusive_and_released(tmp_path):
    run_dir = tmp_path / "out" / "runs" / "task__m__seed0__abc"
    first = RunFolderLock(run_dir).acquire()
    assert first.path == run_dir.parent / ".task__m__seed0__abc.lock" and f"pid {os.getpid()}" in first.path.read_text()
    with pytest.raises(RunLockedError, match=rf"run task__m__seed0__abc is being written by another process \(pid "
                                             rf"{os.getpid()} on .*\); wait for it to end"):
        RunFolderLock(run_dir).acquire()  # flock conflicts between two open files, within one process too
    first.release()
    assert not first.path.exists() and not (tmp_path / "out").exists()  # nothing written: its folders go too
    with RunFolderLock(run_dir) as again:
        run_dir.mkdir()
        (run_dir / "run.json").write_text("{}")
    assert not again.path.exists() and run_dir.is_dir()  # a folder that holds a run stays


def test_a_lock_file_removed_by_its_holder_is_not_shared(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder removed it must not hold the removed file while a
    third process locks the new one: it checks, once locked, that its file is still the one at the path."""
    run_dir = tmp_path / "runs" / "r"
    holder = RunFolderLock(run_dir).acquire()
    late = RunFolderLock(run_dir)
    real_flock, calls = files.fcntl.flock, []

    def flock(fd, op):
        calls.append(op)
        if len(calls) == 1:  # the holder releases (removing the file) between our open and our lock
            holder.release()
            third.append(RunFolderLock(run_dir).acquire())  # a third process takes the new file
        return real_flock(fd, op)

    third = []

    monkeypatch.setattr(files.fcntl, "flock", flock)
    with pytest.raises(RunLockedError):
        late.acquire()  # locked the removed file first, saw it was not the path's file, retried: the third holds it
    assert len(calls) == 3  # ours on the removed file, the third's, ours on the new file (refused)
    third[0].release()


def test_a_killed_holder_releases_the_lock(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    code = textwrap.dedent(f"""
        import sys, time
        from benchsuite.files import RunFolderLock
        RunFolderLock({str(run_dir)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} "):
            RunFolderLock(run_dir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunFolderLock(run_dir).acquire()  # the stale file is still there: the kernel dropped its lock
    lock.release()
