"""The distributed path for real: two `benchsuite tune --workers 2` commands (two "machines", four workers)
share one study on a PostgreSQL server; one worker is killed with SIGKILL in the middle of a trial.

Needs a server: ``BENCHSUITE_TEST_POSTGRES_URL=postgresql+psycopg://user:password@127.0.0.1:5432/db`` (.ci/run
installs and starts one). Without it the test is skipped, except under CI (``CI=true``), where it fails.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

URL = os.environ.get("BENCHSUITE_TEST_POSTGRES_URL")
CI = os.environ.get("CI", "").lower() == "true"
TOY = "toy-brightness-v0"
N_TRIALS = 8

pytestmark = pytest.mark.skipif(not URL and not CI, reason="no PostgreSQL server: set BENCHSUITE_TEST_POSTGRES_URL "
                                                           "(.ci/run starts one)")


def _wait_for_victim(study_name: str, machines: list[subprocess.Popen], timeout_s: float = 120.0):
    """A RUNNING trial of a spawned worker (not one of the commands' main processes): (trial number, pid)."""
    import optuna

    from benchsuite.tuning import RUN_ATTR, WORKER_ATTR

    storage = optuna.storages.RDBStorage(URL)
    mains = {proc.pid for proc in machines}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert all(proc.poll() is None for proc in machines), "a tune command ended before any trial ran"
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:  # not created yet
            time.sleep(0.2)
            continue
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            worker = trial.user_attrs.get(WORKER_ATTR)
            pid = int(worker.rsplit(":", 1)[1]) if worker else None
            if pid is not None and pid not in mains and RUN_ATTR in trial.user_attrs:
                return trial.number, pid
        time.sleep(0.05)
    pytest.fail("no trial started running within two minutes")


@pytest.mark.timeout(300)
def test_four_workers_on_postgres_lose_no_trial_and_retry_a_killed_one(tmp_path):
    assert URL, "CI must set BENCHSUITE_TEST_POSTGRES_URL (see .ci/run)"
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from benchsuite.tracking import default_tracking_uri
    from benchsuite.tuning import SLOT_ATTR, SURPLUS_ATTR

    study_name = f"test-postgres-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "res"
    command = [sys.executable, "-m", "benchsuite.cli", "tune", "--task", TOY, "--method", "sqdf",
               "--params", "lr,kl_coef,discount", "--trials", str(N_TRIALS), "--budget", "320", "--no-prune",
               "--storage", URL, "--study-name", study_name, "--heartbeat-interval", "3", "--workers", "2",
               "--no-export", "--output", str(out)]
    logs = [open(tmp_path / f"machine{i}.log", "w") for i in range(2)]
    machines = [subprocess.Popen([*command, "--sampler-seed", str(i)], stdout=logs[i], stderr=subprocess.STDOUT)
                for i in range(2)]
    try:
        victim, pid = _wait_for_victim(study_name, machines)
        os.kill(pid, signal.SIGKILL)
        codes = [proc.wait(timeout=240) for proc in machines]
    finally:
        for proc in machines:
            if proc.poll() is None:
                proc.kill()
        for log in logs:
            log.close()
    output = "\n".join((tmp_path / f"machine{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], output
    assert f"exited with code {-signal.SIGKILL}" in output

    study = optuna.load_study(study_name=study_name, storage=URL)
    trials = study.get_trials()
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sorted(t.user_attrs[SLOT_ATTR] for t in done) == list(range(N_TRIALS)), "a slot lost or run twice"
    assert len({t.number for t in trials}) == len(trials)
    assert len({tuple(sorted(t.params.items())) for t in done}) == N_TRIALS, "duplicated parameters"
    killed = trials[victim]
    assert killed.state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs[SLOT_ATTR] == killed.user_attrs[SLOT_ATTR]
    others = [t for t in trials if t.state == TrialState.FAIL and t.number != victim]
    assert all(t.user_attrs.get(SURPLUS_ATTR) for t in others), "only surplus trials may fail besides the killed one"

    client = MlflowClient(default_tracking_uri(out / "mlflow"))
    runs = client.search_runs([client.get_experiment_by_name(TOY).experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("benchsuite.study") == study_name
                 and r.data.tags.get("benchsuite.kind") == "study"]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    by_trial = {int(r.data.tags["benchsuite.trial"]): r for r in children}
    assert {t.number for t in done} <= set(by_trial)
    assert all(by_trial[t.number].info.status == "FINISHED" for t in done)
    assert all(r.info.status in ("FINISHED", "KILLED") for r in children), "no trial's run is left RUNNING"
