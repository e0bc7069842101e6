"""One process at a time owns a run folder: a second one is refused in one line with exit code 2 before it writes
anything, a killed owner frees it at once, sweeps report the refusal and tuning workers wait for the owner; under a
distributed launch only rank 0 takes the lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from benchsuite import distributed, runner
from benchsuite.cli import main
from benchsuite.config import resolve
from benchsuite.errors import RunLockedError
from benchsuite.files import RunFolderLock
from benchsuite.runner import run, run_state

TASK = "toy-brightness-v0"


def _holder(run_dir):
    """Another process that owns ``run_dir`` until it is killed."""
    code = textwrap.dedent(f"""
        import time
        from benchsuite.files import RunFolderLock
        RunFolderLock({str(run_dir)!r}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_in_one_line_and_a_killed_owner_frees_the_folder(tmp_path, capsys):
    config = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    argv = ["run", "--task", TASK, "--method", "ddpo", "--budget", "64", "--output", str(tmp_path), "--no-mlflow",
            "--no-progress"]
    owner = _holder(config.run_dir)
    try:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            f"benchsuite: error: run {config.run_id} is being written by another process (pid {owner.pid} on ")
        assert not config.run_dir.exists()  # refused before anything was written
    finally:
        owner.kill()
        owner.wait()
    assert main(argv) == 0 and run_state(config.run_dir) == "finished"
    assert not (config.run_dir.parent / f".{config.run_id}.lock").exists()  # released and removed at the end


def test_the_lock_is_released_when_a_run_fails(tmp_path):
    config = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    run(config)
    with pytest.raises(Exception, match="already exists"):
        run(config)  # refused under the lock, which it releases
    assert not (tmp_path / "runs" / f".{config.run_id}.lock").exists()
    run(config, resume=True)


def test_a_sweep_reports_a_run_that_another_process_owns_and_runs_the_others(tmp_path):
    from benchsuite.sweep import run_many

    taken, free = (resolve(TASK, "ddpo", seed=s, budget=64, output_root=str(tmp_path)) for s in (0, 1))
    with RunFolderLock(taken.run_dir):  # in this process, as flock locks of two open files conflict
        outcomes = run_many([taken, free], "locked", workers=1)
    assert [o.status for o in outcomes] == ["FAILED", "FINISHED"]
    assert f"RunLockedError: run {taken.run_id} is being written by another process" in outcomes[0].error
    assert run_state(taken.run_dir) == "new"


def test_a_tuning_worker_waits_for_the_owner_then_reads_its_run(tmp_path, monkeypatch):
    """Two trials with the same parameters (one run id), or a retried trial while its slow worker still runs: the
    second waits for the lock, then resumes or reads back the run."""
    from benchsuite import tuning

    monkeypatch.setattr(tuning, "_LOCK_POLL_S", 0.05)
    config = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    lock = RunFolderLock(config.run_dir).acquire()
    threading.Timer(0.5, lock.release).start()
    started = time.perf_counter()

    class Trial:
        number = 7

    result = tuning._run_when_free(Trial(), config, None, None)
    assert time.perf_counter() - started >= 0.5 and result.final["queries"] == 64


def test_under_a_distributed_launch_only_rank_0_locks_and_every_rank_learns_the_outcome(tmp_path, monkeypatch):
    """Rank 0 takes the lock and broadcasts a refusal; the other ranks never touch the lock file (they share the
    run folder, which only rank 0 writes), so the ranks of one run are never refused by each other."""
    monkeypatch.setattr(distributed, "num_processes", lambda: 2)
    told = []
    monkeypatch.setattr(distributed, "broadcast_object", lambda obj: told.append(obj) or told[0])
    runner._take_run_lock(None)  # rank 1, rank 0 got the lock: nothing to do
    assert told == [None]
    told[:] = [(True, "run x is being written by another process (pid 1 on h)")]
    with pytest.raises(RunLockedError, match="pid 1 on h"):
        runner._take_run_lock(None)  # rank 1, rank 0 was refused: refused alike
    told.clear()
    config = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    with RunFolderLock(config.run_dir):
        with pytest.raises(RunLockedError):
            runner._take_run_lock(RunFolderLock(config.run_dir))  # rank 0, refused: tells the others
    assert told[0][0] is True and "being written by another process" in told[0][1]
    monkeypatch.setattr(distributed, "process_index", lambda: 1)
    calls = []
    monkeypatch.setattr(runner, "RunFolderLock", lambda *a: calls.append(a))
    monkeypatch.setattr(runner, "_take_run_lock", lambda lock: calls.append(lock))
    with pytest.raises(Exception):  # a rank other than 0 creates no lock (the run itself fails here: no launch)
        run(config)
    assert calls == [None]


@pytest.mark.slow
def test_two_processes_racing_on_one_run_id(tmp_path):
    """Two `benchsuite run` of one run id started together: one runs, the other is refused with exit code 2 (while
    the first runs: the lock; after it: the finished folder), and the folder holds one uninterrupted run."""
    argv = [sys.executable, "-m", "benchsuite", "run", "--task", TASK, "--method", "ddpo", "--budget", "1024",
            "--seed", "5", "--output", str(tmp_path / "out"), "--no-mlflow", "--no-progress"]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(), p.stderr.read()) for p in procs)
    assert [code for code, _ in results] == [0, 2], results
    err = results[1][1]
    assert err.count("\n") == 1 and ("is being written by another process" in err or "already exists" in err), err
    reference = run(resolve(TASK, "ddpo", seed=5, budget=1024, output_root=str(tmp_path / "ref")))
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "FINISHED"
    log = np.loadtxt(run_dir / "query_log.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(log[:, 2], reference.query_log.reward, rtol=1e-6)
