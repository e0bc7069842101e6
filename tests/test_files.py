"""benchsuite.files: atomic writes and appends under injected write failures, and the one-line description of a
failed write."""

import errno
import os

import pytest

from benchsuite import files
from benchsuite.files import (FileWriteError, append_bytes, atomic_write_bytes, atomic_write_text, describe_os_error,
                              is_write_failure)


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
