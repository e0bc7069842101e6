"""Checkpoint and resume: a run that dies at any point and is resumed ends exactly like an uninterrupted one."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from benchsuite.testing import deterministic

from benchsuite.config import resolve
from benchsuite.errors import ConfigError, OracleError
from benchsuite.methods.ddpo import DDPO
from benchsuite.runner import CHECKPOINT, run, run_state
from benchsuite.tracking import read_metrics

TASK = "toy-brightness-v0"


class Crash(Exception):
    pass


def _crash_after(monkeypatch, n_steps):
    original, calls = DDPO.step, {"n": 0}

    def step(self, oracle):
        calls["n"] += 1
        if calls["n"] > n_steps:
            raise Crash
        return original(self, oracle)

    monkeypatch.setattr(DDPO, "step", step)


@pytest.mark.parametrize("crash_after", [0, 2, 5])
def test_resume_after_crash_matches_uninterrupted(tmp_path, monkeypatch, crash_after):
    cfg = resolve(TASK, "ddpo", seed=2, budget=224, output_root=str(tmp_path / "a"))
    reference = run(cfg)
    cfg_b = resolve(TASK, "ddpo", seed=2, budget=224, output_root=str(tmp_path / "b"))
    with monkeypatch.context() as m:
        _crash_after(m, crash_after)
        with pytest.raises(Crash):
            run(cfg_b)
    assert run_state(cfg_b.run_dir) == "checkpointed"
    resumed = run(cfg_b, resume=True)
    np.testing.assert_array_equal(resumed.query_log.reward, reference.query_log.reward)
    assert deterministic(resumed.final) == deterministic(reference.final)
    assert [deterministic(c) for c in resumed.curve] == [deterministic(c) for c in reference.curve]
    a, b = read_metrics(cfg.run_dir), read_metrics(cfg_b.run_dir)
    assert list(a["step"]) == list(b["step"]), "no duplicated or missing log lines"
    assert json.loads((cfg_b.run_dir / "summary.json").read_text())["status"] == "FINISHED"


def test_existing_run_needs_resume_or_restart_and_finished_runs_are_not_resumed(tmp_path):
    cfg = resolve(TASK, "ddpo", seed=0, budget=64, output_root=str(tmp_path))
    run(cfg)
    before = (cfg.run_dir / "summary.json").read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        run(cfg)
    assert (cfg.run_dir / "summary.json").read_bytes() == before  # nothing lost
    again = run(cfg, resume=True)  # resuming a finished run only repeats the (idempotent) finalisation
    assert deterministic(again.final) == deterministic(json.loads(before)["final"])
    assert list(read_metrics(cfg.run_dir)["step"]).count(64) == 3  # train, eval, wall time: not duplicated
    run(cfg, restart=True)
    assert run_state(cfg.run_dir) == "finished"


def test_corrupt_or_foreign_checkpoint_is_refused(tmp_path, monkeypatch):
    cfg = resolve(TASK, "ddpo", seed=0, budget=96, output_root=str(tmp_path))
    with monkeypatch.context() as m:
        _crash_after(m, 1)
        with pytest.raises(Crash):
            run(cfg)
    path = cfg.run_dir / CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="unreadable"):
        run(cfg, resume=True)
    torch.save({"format": 1, "run_id": "someone-else"}, path)
    with pytest.raises(ConfigError, match="does not belong"):
        run(cfg, resume=True)


def test_persistent_oracle_failure_ends_with_checkpoint_then_resumes(tmp_path, monkeypatch):
    from benchsuite.budget import BudgetedOracle
    from benchsuite.runner import OracleOptions

    cfg = resolve(TASK, "ddpo", seed=1, budget=128, output_root=str(tmp_path / "a"))
    reference = run(cfg)
    calls = {"n": 0}
    original = BudgetedOracle._call_once

    def flaky(self, samples, conditions):  # the oracle fails from its 3rd call on; judges are untouched
        calls["n"] += 1
        if calls["n"] >= 3:
            raise ConnectionError("lab offline")
        return original(self, samples, conditions)

    cfg_b = resolve(TASK, "ddpo", seed=1, budget=128, output_root=str(tmp_path / "b"))
    with monkeypatch.context() as m:
        m.setattr(BudgetedOracle, "_call_once", flaky)
        with pytest.raises(OracleError, match="lab offline"):
            run(cfg_b, oracle_options=OracleOptions(retries=1, backoff_s=0.0))
    assert calls["n"] == 4  # 2 good calls, then the failing call and its retry
    assert json.loads((cfg_b.run_dir / "summary.json").read_text())["status"] == "FAILED"
    resumed = run(cfg_b, resume=True)
    assert deterministic(resumed.final) == deterministic(reference.final)
    np.testing.assert_array_equal(resumed.query_log.reward, reference.query_log.reward)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_at_random_points_then_resume(tmp_path):
    """Kill the real CLI with SIGKILL at random times, resume until done; compare with an uninterrupted run."""
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    base = [sys.executable, "-m", "benchsuite.cli", "run", "--task", TASK, "--method", "ddpo", "--budget", "6400",
            "--seed", "4", "--no-progress"]
    subprocess.run([*base, "--output", str(out_a)], check=True, capture_output=True)
    rng = random.Random(0)
    kills, finished = 0, False
    cmd = [*base, "--output", str(out_b)]
    for attempt in range(60):
        started = time.time()
        proc = subprocess.Popen(cmd + (["--resume"] if attempt else []), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        # wait until this attempt has written a checkpoint (real progress), then kill at a random moment
        while proc.poll() is None and time.time() - started < 120:
            ckpts = list((out_b / "runs").glob(f"*/{CHECKPOINT}")) if (out_b / "runs").exists() else []
            if ckpts and ckpts[0].stat().st_mtime > started:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))  # the toy run is fast: longer waits let it finish before a second kill
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read().decode()
        finished = True
        break
    assert finished and kills >= 2, (finished, kills)
    (run_a,), (run_b,) = (out_a / "runs").iterdir(), (out_b / "runs").iterdir()
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (run_a, run_b))
    assert deterministic(sa["final"]) == deterministic(sb["final"]) and sa["queries_used"] == sb["queries_used"] == 6400
    assert (run_a / "query_log.csv").read_text() == (run_b / "query_log.csv").read_text()
    assert list(read_metrics(run_a)["step"]) == list(read_metrics(run_b)["step"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out_b / 'mlflow' / 'mlflow.db'}")
    (mrun,) = client.search_runs([client.get_experiment_by_name(TASK).experiment_id])  # one run, not one per try
    history = client.get_metric_history(mrun.info.run_id, "train/reward_mean")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)) == 200, "each step logged exactly once"
    print(f"kills survived: {kills}")


def test_on_eval_callback_sees_every_evaluation_and_can_stop_the_run(tmp_path):
    from benchsuite.errors import StopRun

    seen = []

    def callback(queries, metrics):
        seen.append(queries)
        if queries >= 64:
            raise StopRun

    cfg = resolve(TASK, "ddpo", seed=0, budget=320, output_root=str(tmp_path))
    with pytest.raises(StopRun):
        run(cfg, on_eval=callback)
    assert seen == [0, 32, 64]
    assert json.loads((cfg.run_dir / "summary.json").read_text())["status"] == "KILLED"
    assert run_state(cfg.run_dir) == "checkpointed"


def _count_checkpoints(monkeypatch) -> list[int]:
    from benchsuite import runner

    saved, original = [], runner._save_checkpoint
    monkeypatch.setattr(runner, "_save_checkpoint",
                        lambda path, state: (saved.append(state["oracle"]["used"]), original(path, state)))
    return saved


def test_checkpoints_at_evaluation_points_and_on_the_time_cadence(tmp_path, monkeypatch):
    saved = _count_checkpoints(monkeypatch)
    cfg = resolve(TASK, "ddpo", seed=0, budget=320, eval_fractions=(0.0, 0.5, 1.0), output_root=str(tmp_path))
    batch = dict(cfg.method_config)["batch_size"]
    run(cfg, checkpoint_every=float("inf"))
    assert saved == [0, 160, 320]
    saved.clear()
    run(cfg, restart=True, checkpoint_every=0.0)
    assert saved == list(range(0, 321, batch))


@pytest.mark.slow  # about 12 s: a run, a stop and a resume with MLflow
def test_resume_replays_the_steps_after_the_last_checkpoint_and_logs_each_once(tmp_path, monkeypatch):
    """Checkpoints only at evaluation points: a crash 3 steps after one replays those steps exactly, and neither
    the JSONL file nor MLflow ends up with a step twice (the failed run flushed its buffered logs of them)."""
    from mlflow.tracking import MlflowClient

    from benchsuite.tracking import MlflowTracker, default_tracking_uri

    def tracked(root):
        return MlflowTracker(default_tracking_uri(root / "mlflow"), artifact_root=root / "art")

    never = float("inf")
    cfg = resolve(TASK, "ddpo", seed=3, budget=320, eval_fractions=(0.0, 0.5, 1.0), output_root=str(tmp_path / "a"))
    reference = run(cfg, tracker=tracked(tmp_path / "a"), checkpoint_every=never)
    cfg_b = resolve(TASK, "ddpo", seed=3, budget=320, eval_fractions=(0.0, 0.5, 1.0),
                    output_root=str(tmp_path / "b"))
    with monkeypatch.context() as m:
        _crash_after(m, 8)  # 5 steps to the evaluation at 160 queries, then 3 more
        with pytest.raises(Crash):
            run(cfg_b, tracker=tracked(tmp_path / "b"), checkpoint_every=never)
    assert torch.load(cfg_b.run_dir / CHECKPOINT, weights_only=True)["oracle"]["used"] == 160
    assert read_metrics(cfg_b.run_dir)["step"].max() == 256  # the crashed run's logs reached the file
    resumed = run(cfg_b, tracker=tracked(tmp_path / "b"), resume=True, checkpoint_every=never)
    np.testing.assert_array_equal(resumed.query_log.reward, reference.query_log.reward)
    assert [deterministic(c) for c in resumed.curve] == [deterministic(c) for c in reference.curve]
    assert [deterministic(t) for t in resumed.train] == [deterministic(t) for t in reference.train]
    assert list(read_metrics(cfg.run_dir)["step"]) == list(read_metrics(cfg_b.run_dir)["step"])
    for root in (tmp_path / "a", tmp_path / "b"):
        client = MlflowClient(default_tracking_uri(root / "mlflow"))
        (mrun,) = client.search_runs([client.get_experiment_by_name(TASK).experiment_id])
        for key in ("train/reward_mean", "eval/brightness_mean"):
            steps = [h.step for h in client.get_metric_history(mrun.info.run_id, key)]
            assert len(steps) == len(set(steps)) > 0, key


def test_cli_checkpoint_every_reaches_the_runner_and_bad_values_exit_2(tmp_path, monkeypatch, capsys):
    from benchsuite import runner
    from benchsuite.cli import main

    seen = {}

    def fake_run(config, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run", fake_run)
    base = ["run", "--task", TASK, "--method", "ddpo", "--budget", "64", "--output", str(tmp_path), "--no-mlflow"]
    with pytest.raises(SystemExit):
        main([*base, "--checkpoint-every", "5"])
    assert seen["checkpoint_every"] == 5.0
    seen.clear()
    with pytest.raises(SystemExit):
        main(base)
    assert "checkpoint_every" not in seen  # the runner's default
    assert main([*base, "--checkpoint-every", "-1"]) == 2
    assert "--checkpoint-every must be a finite number >= 0" in capsys.readouterr().err
