"""A closed output pipe (``benchsuite list | head``) ends every printing command quietly with exit status 141, as a
process killed by SIGPIPE, instead of a BrokenPipeError traceback."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from benchsuite.cli import main


class ClosedPipe(io.TextIOBase):
    """A stdout whose reader has gone: every write (or the flush of what was buffered) fails as a pipe's does."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("argv", [["list"], ["list", "methods"], ["show", "ddpo"], ["show", "toy-brightness-v0"],
                                  ["weights", "list"], ["--version"], ["--help"], ["run", "--help"]])
def test_every_printing_command_ends_quietly_with_141(monkeypatch, capsys, argv):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(argv) == 141
    assert capsys.readouterr().err == ""


def test_a_run_whose_table_meets_a_closed_pipe_has_still_written_its_run(tmp_path, monkeypatch, capsys):
    argv = ["run", "--task", "toy-brightness-v0", "--method", "pretrained", "--budget", "32", "--output",
            str(tmp_path), "--no-mlflow", "--no-progress"]
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(argv) == 141 and capsys.readouterr().err == ""
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "summary.json").is_file()


def test_a_real_closed_pipe_in_another_process():
    """The reader closes its end before the command prints: no traceback, no 'Exception ignored' at exit, 141."""
    proc = subprocess.Popen([sys.executable, "-m", "benchsuite", "show", "toy-brightness-v0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141 and err == b""
