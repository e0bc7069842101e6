"""Write failures (a full disk, a quota, a read-only file system, a folder removed mid-run) end a run, a sweep's run,
a tuning trial or an ask/tell command with one line naming the path and what to do; the last checkpoint stays intact,
and a resume after the space is freed ends exactly like an uninterrupted run.

The disk is simulated: ``DiskFull`` replaces ``benchsuite.files._write_all``, through which every file benchsuite
writes passes, so no test needs a small mount (.ci/run runs as root, a developer may not)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchsuite import files
from benchsuite.cli import main
from benchsuite.config import resolve
from benchsuite.errors import WriteFailedError
from benchsuite.runner import CHECKPOINT, run, run_state
from benchsuite.testing import deterministic
from benchsuite.tracking import read_metrics

TASK = "toy-brightness-v0"


class DiskFull:
    """The file system fills up at the ``nth`` write of a file named ``name`` under a folder whose path contains
    ``under``: that write and every later one under it fail with ``code`` until ``free()``."""

    def __init__(self, monkeypatch, name: str = CHECKPOINT, nth: int = 1, code: int = errno.ENOSPC, under: str = ""):
        self.name, self.nth, self.code, self.under = name, nth, code, under
        self.seen, self.full, self.failed = 0, False, []
        self._original = files._write_all
        monkeypatch.setattr(files, "_write_all", self._write_all)

    def _write_all(self, fd, data, path: Path) -> None:
        if self.under in str(path):
            if path.name == self.name:
                self.seen += 1
                self.full = self.full or self.seen >= self.nth
            if self.full:
                self.failed.append(path.name)
                raise OSError(self.code, os.strerror(self.code))
        self._original(fd, data, path)

    def free(self) -> None:
        self.full = False
        self.nth = float("inf")


def _cli_run(out: Path, *extra: str) -> list[str]:
    return ["run", "--task", TASK, "--method", "ddpo", "--budget", "224", "--seed", "2", "--output", str(out),
            "--no-mlflow", "--no-progress", *extra]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("benchsuite: error: "), err
    return err.strip()


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], "a temporary file was left behind"


@pytest.mark.parametrize("name, nth", [(CHECKPOINT, 3), ("metrics.jsonl", 2), ("run.json", 2)])
def test_full_disk_ends_the_run_in_one_line_and_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys,
                                                                                    name, nth):
    """Checkpoints after every step: the disk fills at the 3rd checkpoint (at 64 queries), at the 2nd metrics flush
    (just after the checkpoint at 32 queries) or at the 2nd run.json (the end of the run)."""
    reference = run(resolve(TASK, "ddpo", seed=2, budget=224, output_root=str(tmp_path / "ref")),
                    checkpoint_every=0.0)
    out = tmp_path / "out"
    disk = DiskFull(monkeypatch, name, nth)
    assert main(_cli_run(out, "--checkpoint-every", "0")) == 1
    err = _one_line_error(capsys)
    (run_dir,) = (out / "runs").iterdir()
    assert err.startswith(f"benchsuite: error: run {run_dir.name} stopped: cannot write {run_dir / name}: "
                          "No space left on device (ENOSPC); free space on that file system")
    assert err.endswith(f"then continue the run with --resume: its last checkpoint ({run_dir / CHECKPOINT}) is intact")
    # the last completed checkpoint is whole and loadable, no temporary is left, no log ends in half a line
    state = torch.load(run_dir / CHECKPOINT, weights_only=True)
    assert state["oracle"]["used"] == {CHECKPOINT: 32, "metrics.jsonl": 32, "run.json": 224}[name]
    _no_temporaries(run_dir)
    if (run_dir / "metrics.jsonl").exists():
        read_metrics(run_dir)
    assert run_state(run_dir) == "checkpointed"

    disk.free()
    assert main(_cli_run(out, "--checkpoint-every", "0", "--resume")) == 0
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert resumed["status"] == "FINISHED" and deterministic(resumed["final"]) == deterministic(reference.final)
    log = np.loadtxt(run_dir / "query_log.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(log[:, 2], reference.query_log.reward, rtol=1e-6)
    assert list(read_metrics(run_dir)["step"]) == list(read_metrics(reference.run_dir)["step"]), "no lost log line"
    _no_temporaries(run_dir)


@pytest.mark.parametrize("code, name, hint", [(errno.EDQUOT, "EDQUOT", "quota"),
                                              (errno.EROFS, "EROFS", "writable file system")])
def test_quota_and_read_only_file_system_at_the_end_of_a_run(tmp_path, monkeypatch, code, name, hint):
    """The final summary cannot be written: the run trained to the end, its last checkpoint (the final evaluation)
    is intact, and a resume only writes the files of the end again."""
    config = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    disk = DiskFull(monkeypatch, "summary.json", 1, code)
    with pytest.raises(WriteFailedError) as caught:
        run(config)
    message = str(caught.value)
    assert f"cannot write {config.run_dir / 'summary.json'}: {os.strerror(code)} ({name}); " in message
    assert hint in message and "--resume" in message and caught.value.exit_code == 1
    assert torch.load(config.run_dir / CHECKPOINT, weights_only=True)["oracle"]["used"] == 64
    disk.free()
    assert run(config, resume=True).final["queries"] == 64 and run_state(config.run_dir) == "finished"


def test_a_run_folder_removed_mid_run(tmp_path):
    import shutil

    config = resolve(TASK, "ddpo", seed=0, budget=128, eval_fractions=(0.0, 0.5, 1.0), output_root=str(tmp_path))

    def remove(queries, metrics):
        if queries == 64:
            shutil.rmtree(config.run_dir)  # someone cleans up results/ while the run is at half its budget

    with pytest.raises(WriteFailedError, match=rf"run {config.run_id} stopped: cannot write .*: No such file or "
                                               r"directory \(ENOENT\); a folder on its path was removed .*; then start "
                                               r"the run over \(with --restart where its folder is left\)"):
        run(config, on_eval=remove)
    run(config, restart=True)
    assert run_state(config.run_dir) == "finished"


def test_a_full_mlflow_store_is_one_line_naming_the_store(tmp_path):
    """sqlite's "database or disk is full" comes back from MLflow as an MlflowException: said as the store's."""
    from mlflow.exceptions import MlflowException

    from benchsuite.tracking import NullTracker

    class FullStore(NullTracker):
        tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

        def log_metric_rows(self, rows):
            raise MlflowException("(sqlite3.OperationalError) database or disk is full")

    config = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    with pytest.raises(WriteFailedError, match=rf"cannot write to the MLflow store sqlite:///{tmp_path}/mlflow.db: "
                                               r"database or disk is full; .*--no-mlflow.*--resume"):
        run(config, tracker=FullStore())
    assert torch.load(config.run_dir / CHECKPOINT, weights_only=True)["oracle"]["used"] == 0


def test_other_failures_keep_their_own_error(tmp_path, monkeypatch):
    """A run that fails for another reason while the disk is full too: the first error is the one raised (the
    bookkeeping of the failed run fails quietly), not a chain of write errors."""
    from benchsuite.methods.ddpo import DDPO

    def broken(self, oracle):
        DiskFull(monkeypatch)  # the disk fills up, then the method fails
        raise ZeroDivisionError("the method's own bug")

    monkeypatch.setattr(DDPO, "step", broken)
    config = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    with pytest.raises(ZeroDivisionError) as caught:
        run(config)
    assert caught.value.__context__ is None


def test_a_sweep_reports_the_failed_run_and_runs_the_others(tmp_path, monkeypatch):
    from benchsuite.sweep import run_many

    configs = [resolve(TASK, "ddpo", seed=s, budget=64, output_root=str(tmp_path)) for s in (0, 1)]
    DiskFull(monkeypatch, CHECKPOINT, 1, under=configs[0].run_id)  # only the first run's disk (a quota) is full
    failed, finished = run_many(configs, "edge", workers=1)
    assert (failed.status, finished.status) == ("FAILED", "FINISHED")
    assert failed.error.startswith(f"benchsuite.errors.WriteFailedError: run {configs[0].run_id} stopped: cannot "
                                   f"write {configs[0].run_dir / CHECKPOINT}: No space left on device (ENOSPC)")
    assert run_state(configs[1].run_dir) == "finished"


def test_a_tuning_trial_whose_run_cannot_write_fails_and_the_study_goes_on(tmp_path, monkeypatch):
    import optuna
    from optuna.trial import TrialState

    from benchsuite.tuning import Tuner, TuneSpec

    first = {}
    original = files._write_all

    def write_all(fd, data, path):  # the first trial's run folder sits on a full disk
        folder = path.parent.name if path.parent.parent.name == "runs" else None
        first.setdefault("folder", folder)
        if folder is not None and folder == first["folder"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(fd, data, path)

    monkeypatch.setattr(files, "_write_all", write_all)
    tuner = Tuner(TuneSpec(task=TASK, method="ddpo", n_trials=2, params=("lr",), budget=64, prune=False,
                           output_root=str(tmp_path)))
    report = tuner.tune(1)
    trials = optuna.load_study(study_name=tuner.study_name, storage=tuner.storage()).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE] and report.done == 2


def _session(tmp_path, capsys):
    state = tmp_path / "lab"
    assert main(["ask", "--state", str(state), "--task", "toy-online-v0", "--method", "ddpo", "--budget", "64"]) == 0
    capsys.readouterr()
    ask = state / "asks" / "ask-0001.csv"
    rows = ask.read_text().splitlines()
    ask.write_text("\n".join([rows[0]] + [row + "0.5" for row in rows[1:]]) + "\n")
    return state, ask


def test_ask_tell_on_a_full_disk_leaves_the_session_as_it_was(tmp_path, monkeypatch, capsys):
    state, ask = _session(tmp_path, capsys)
    before = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    disk = DiskFull(monkeypatch, "state.pt")
    assert main(["tell", "--state", str(state), str(ask)]) == 1
    err = _one_line_error(capsys)
    assert err == (f"benchsuite: error: cannot write {state / 'state.pt'}: No space left on device (ENOSPC); free space "
                   "on that file system (or write to a folder on another one); then run the command again")
    assert {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()} == before  # not half-written, unchanged
    disk.free()
    assert main(["tell", "--state", str(state), str(ask)]) == 0  # the same tell again, now that there is space


def test_a_tell_whose_told_csv_cannot_be_written_has_happened_and_the_next_ask_writes_it(tmp_path, monkeypatch,
                                                                                         capsys):
    state, ask = _session(tmp_path, capsys)
    disk = DiskFull(monkeypatch, "told.csv")
    assert main(["tell", "--state", str(state), str(ask)]) == 1
    assert "the scores of ask 1 were taken" in _one_line_error(capsys) and not (state / "told.csv").exists()
    disk.free()
    assert main(["ask", "--state", str(state)]) == 0
    assert len((state / "told.csv").read_text().splitlines()) == 1 + 16  # the header, the told batch
