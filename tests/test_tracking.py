"""Tests for benchsuite.tracking, against a real sqlite MLflow store in a temporary folder.

Creating the sqlite store runs MLflow's migrations (a few seconds), so one store is shared by the module and
every test uses its own experiment name.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchsuite.tracking import (
    GIT_COMMIT_TAG,
    GIT_SHA_TAG,
    RUN_KEY_TAG,
    JsonlTracker,
    MlflowTracker,
    MultiTracker,
    NullTracker,
    Tracker,
    default_tracking_uri,
    read_metrics,
    run_tags,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """A migrated sqlite MLflow store: (tracking URI, artifact root)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = default_tracking_uri(root / "store")
    tracker = MlflowTracker(uri, artifact_root=root / "artifacts")
    tracker._client()  # creates and migrates the database once for the module
    return uri, root / "artifacts"


def _start(tracker: Tracker, experiment: str, run_key: str = "key-0", **params) -> None:
    tracker.start_run(experiment=experiment, run_name="run", run_key=run_key, params=params, tags={"who": "test"})


def test_default_tracking_uri_is_absolute_sqlite_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(Path("rel") / "root")
    assert uri == f"sqlite:///{tmp_path.resolve() / 'rel' / 'root' / 'mlflow.db'}"
    assert not (tmp_path / "rel").exists()


def test_mlflow_run_round_trip(store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri, artifact_root = store
    tracker = MlflowTracker(uri, artifact_root=artifact_root)
    batch_sizes = []  # the sqlite store accepts any batch; an MLflow server refuses more than 100 params
    real_log_batch = tracker._client().log_batch

    def log_batch_recording(run_id, **kwargs):
        batch_sizes.append(len(kwargs.get("params", ())))
        return real_log_batch(run_id, **kwargs)

    monkeypatch.setattr(tracker._client(), "log_batch", log_batch_recording)
    params = {f"p{i:03d}": i for i in range(150)}  # more than one log_batch of 100 params
    params["method"] = {"lr": 1e-4, "kl_coef": 0.1}
    tags = {**run_tags(), "who": "test"}
    tracker.start_run(experiment="round-trip", run_name="sqdf-s0", run_key="abc123", params=params, tags=tags)
    for step, value in [(0, 0.5), (64, 0.75), (128, float("nan"))]:
        tracker.log_metrics({"reward/mean": value, "kl": step / 10}, step=step)
    tracker.log_image(np.linspace(0, 1, 8 * 8 * 3).reshape(8, 8, 3), "samples/queries_000128.png")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    tracker.log_artifact(summary)
    run_id = tracker.run_id
    tracker.end_run()
    assert max(batch_sizes) <= 100 and sum(batch_sizes) == 152

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("round-trip")
    assert experiment.artifact_location == (artifact_root / "round-trip").resolve().as_uri()
    run = client.get_run(run_id)
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.run_name == "sqdf-s0"
    assert run.info.status == "FINISHED"
    assert run.data.params["p149"] == "149" and run.data.params["method.kl_coef"] == "0.1"
    assert len(run.data.params) == 152
    assert run.data.tags[RUN_KEY_TAG] == "abc123"
    assert run.data.tags[GIT_SHA_TAG] == tags[GIT_SHA_TAG]
    assert run.data.tags["version.numpy"] == np.__version__ and run.data.tags["who"] == "test"
    history = client.get_metric_history(run_id, "reward/mean")
    assert [m.step for m in history] == [0, 64, 128]
    assert [m.value for m in history[:2]] == [0.5, 0.75] and math.isnan(history[2].value)
    assert [m.value for m in client.get_metric_history(run_id, "kl")] == [0.0, 6.4, 12.8]
    assert [a.path for a in client.list_artifacts(run_id, "samples")] == ["samples/queries_000128.png"]
    assert "summary.json" in [a.path for a in client.list_artifacts(run_id)]
    assert tracker.find_run("round-trip", "abc123") == run_id
    assert tracker.find_run("round-trip", "other") is None
    assert tracker.find_run("no-such-experiment", "abc123") is None


def test_mlflow_failed_status_and_parent_run(store):
    from mlflow.tracking import MlflowClient

    uri, artifact_root = store
    parent = MlflowTracker(uri, artifact_root=artifact_root)
    _start(parent, "nested", run_key="parent")
    child = MlflowTracker(uri, artifact_root=artifact_root, parent_run_id=parent.run_id)
    _start(child, "nested", run_key="child")
    child_id = child.run_id
    child.end_run("FAILED")
    parent.end_run("KILLED")

    client = MlflowClient(uri)
    run = client.get_run(child_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["mlflow.parentRunId"] == parent.find_run("nested", "parent")
    assert client.get_run(parent.find_run("nested", "parent")).info.status == "KILLED"


def test_mlflow_experiment_created_by_another_process_first(store, monkeypatch):
    uri, artifact_root = store
    first, second = MlflowTracker(uri, artifact_root=artifact_root), MlflowTracker(uri, artifact_root=artifact_root)
    client = second._client()
    real_lookup = client.get_experiment_by_name
    lookups = []

    def lookup_racing(name):
        """The first lookup happens before `first` creates the experiment; later ones see it."""
        lookups.append(name)
        if len(lookups) == 1:
            _start(first, "race", run_key="first")
            return None
        return real_lookup(name)

    monkeypatch.setattr(client, "get_experiment_by_name", lookup_racing)
    _start(second, "race", run_key="second")
    assert len(lookups) == 2  # the create failed and the experiment was fetched again
    monkeypatch.undo()
    ids = {t._client().get_run(t.run_id).info.experiment_id for t in (first, second)}
    assert ids == {first._client().get_experiment_by_name("race").experiment_id}
    first.end_run()
    second.end_run()


def test_mlflow_rejects_bad_input_before_creating_a_run(store):
    uri, artifact_root = store
    tracker = MlflowTracker(uri, artifact_root=artifact_root)
    with pytest.raises(ValueError, match="longer than 6000"):
        _start(tracker, "bad-input", big="x" * 6001)
    with pytest.raises(ValueError, match="run_key"):
        _start(tracker, "bad-input", run_key="it's")
    assert tracker.run_id is None
    with pytest.raises(RuntimeError, match="no open run"):
        tracker.log_metrics({"a": 1.0}, step=0)
    _start(tracker, "bad-input")
    with pytest.raises(ValueError, match="status"):
        tracker.end_run("DONE")
    with pytest.raises(ValueError, match=".png"):
        tracker.log_image(np.zeros((4, 4), dtype=np.uint8), "../escape.png")
    tracker.end_run()


def test_jsonl_round_trip(tmp_path):
    run_dir = tmp_path / "runs" / "abc"
    tracker = JsonlTracker(run_dir)
    _start(tracker, "exp", run_key="abc", lr=1e-3)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "RUNNING"
    tracker.log_metrics({"reward": 0.5, "kl": float("nan")}, step=0)
    tracker.log_metrics({"reward": np.float32(0.25), "eval/gold": float("inf")}, step=64)
    tracker.log_image(np.ones((8, 8), dtype=np.float32), "samples/queries_000064.png")
    tracker.log_image(np.zeros((8, 8, 3), dtype=np.uint8), "grid.png")
    (tmp_path / "summary.json").write_text("{}")
    tracker.log_artifact(tmp_path / "summary.json")
    tracker.end_run("FAILED")

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 0, "reward": 0.5, "kl": None}
    assert json.loads(lines[1]) == {"step": 64, "reward": 0.25, "eval/gold": None}
    frame = read_metrics(run_dir)
    assert frame["step"].tolist() == [0, 64] and frame["step"].dtype == np.int64
    assert frame["reward"].tolist() == [0.5, 0.25]
    assert frame[["kl", "eval/gold"]].isna().all().all()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "FAILED" and run["end_time"] is not None
    assert (run["experiment"], run["run_key"], run["params"]) == ("exp", "abc", {"lr": 1e-3})
    assert run["tags"] == {"who": "test"}
    assert Image.open(run_dir / "samples" / "queries_000064.png").getpixel((0, 0)) == 255
    assert (run_dir / "grid.png").exists() and (run_dir / "artifacts" / "summary.json").exists()
    assert not list(run_dir.glob("*.tmp"))


def test_jsonl_rejects_images_it_cannot_store_faithfully(tmp_path):
    tracker = JsonlTracker(tmp_path)
    _start(tracker, "exp")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tracker.log_image(np.full((4, 4), 2.0), "a.png")
    with pytest.raises(ValueError, match="shape"):
        tracker.log_image(np.zeros((4, 4, 2), dtype=np.uint8), "a.png")
    with pytest.raises(ValueError, match=".png"):
        tracker.log_image(np.zeros((4, 4), dtype=np.uint8), "a.jpg")


def test_multi_tracker_fans_out_and_ends_every_run(tmp_path):
    a, b = JsonlTracker(tmp_path / "a"), JsonlTracker(tmp_path / "b")
    multi = MultiTracker([a, NullTracker(), b])
    assert all(isinstance(t, Tracker) for t in [a, b, multi, NullTracker(), MlflowTracker("sqlite:///x.db")])
    _start(multi, "exp")
    multi.log_metrics({"reward": 1.0}, step=8)
    assert read_metrics(tmp_path / "a").equals(read_metrics(tmp_path / "b"))
    a.end_run()  # `a` is closed, so the fan-out's end_run fails there but must still end `b`
    with pytest.raises(RuntimeError, match="no open run"):
        multi.end_run("KILLED")
    assert json.loads((tmp_path / "b" / "run.json").read_text())["status"] == "KILLED"


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_run_tags_git_sha_clean_dirty_and_unknown(tmp_path):
    assert run_tags(tmp_path)[GIT_SHA_TAG] == "unknown"  # not a repository
    assert GIT_COMMIT_TAG not in run_tags(tmp_path)  # MLflow's standard tag only names a real commit
    _git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("1")
    assert run_tags(tmp_path)[GIT_SHA_TAG] == "unknown"  # no commits yet
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "commit", "-q", "-m", "init")
    sha = _git(tmp_path, "rev-parse", "HEAD")
    tags = run_tags(tmp_path)
    assert tags[GIT_SHA_TAG] == sha and tags[GIT_COMMIT_TAG] == sha
    assert set(tags) >= {"benchsuite.version", "version.python", "version.torch", "version.mlflow"}
    assert tags["version.diffusers"]  # a version string or "absent"
    (tmp_path / "f.txt").write_text("2")
    dirty = run_tags(tmp_path)
    assert dirty[GIT_SHA_TAG] == sha + "-dirty" and dirty[GIT_COMMIT_TAG] == sha


def test_a_run_logs_its_config_summary_and_query_log_to_mlflow(tmp_path):
    """The MLflow run carries MLflow's git commit tag and, as artifacts, the resolved config (rerunnable with
    ``benchsuite run --config``), the summary and the query log: the run folder's files, for stores on other
    machines."""
    from mlflow.tracking import MlflowClient

    from benchsuite.config import resolve, resolve_file
    from benchsuite.runner import run

    config = resolve("toy-brightness-v0", "pretrained", budget=64, output_root=str(tmp_path / "res"))
    uri = default_tracking_uri(tmp_path / "mlflow")
    tracker = MlflowTracker(uri)
    result = run(config, tracker=tracker)
    client = MlflowClient(uri)
    (mrun,) = client.search_runs([client.get_experiment_by_name(config.task).experiment_id])
    assert mrun.data.tags.get(GIT_COMMIT_TAG) == run_tags().get(GIT_COMMIT_TAG)
    names = {a.path for a in client.list_artifacts(mrun.info.run_id)}
    assert {"config.yaml", "summary.json", "query_log.csv"} <= names
    folder = Path(client.download_artifacts(mrun.info.run_id, "", str(tmp_path / "dl")))
    assert resolve_file(folder / "config.yaml").run_id == config.run_id
    assert json.loads((folder / "summary.json").read_text()) == json.loads((result.run_dir / "summary.json").read_text())
    assert (folder / "query_log.csv").read_text() == (result.run_dir / "query_log.csv").read_text()
    assert not (result.run_dir / "artifacts").exists()  # the run folder keeps its own copies only


def test_import_does_not_import_mlflow():
    code = "import benchsuite.tracking, sys; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metric_rows_go_in_one_batch_and_a_resumed_run_skips_what_it_holds(store, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, artifact_root = store
    tracker = MlflowTracker(uri, artifact_root=artifact_root)
    _start(tracker, "rows", run_key="rows-0")
    calls = []
    real_log_batch = tracker._client().log_batch
    monkeypatch.setattr(tracker._client(), "log_batch",
                        lambda run_id, **kw: (calls.append(len(kw["metrics"])), real_log_batch(run_id, **kw)))
    rows = [({"train/reward": s / 10, "train/kl": s / 100}, s) for s in range(0, 640, 64)]
    tracker.log_metric_rows(rows)
    assert calls == [20]  # ten rows, one store call
    run_id = tracker.run_id
    tracker.end_run("FAILED")

    # reopened from a checkpoint at step 320: rows from 320 on come again, with an eval metric at 320 that is new
    again = MlflowTracker(uri, artifact_root=artifact_root)
    again.start_run(experiment="rows", run_name="run", run_key="rows-0", params={}, tags={}, resume_step=320)
    assert again.run_id == run_id
    again.log_metric_rows([*rows[5:], ({"eval/reward": 1.0}, 320)])
    again.log_metrics({"train/reward": 9.0, "train/kl": 0.9}, step=640)
    again.end_run()
    client = MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(run_id, "train/reward")]
    assert steps == list(range(0, 704, 64))  # each step once, the new one added
    assert [m.step for m in client.get_metric_history(run_id, "eval/reward")] == [320]


def test_jsonl_metric_rows_equal_one_call_per_row(tmp_path):
    rows = [({"a": 1.0, "b": float("nan")}, 0), ({"a": 2.0}, 64)]
    one, many = JsonlTracker(tmp_path / "one"), JsonlTracker(tmp_path / "many")
    for tracker in (one, many):
        _start(tracker, "e")
    one.log_metric_rows(rows)
    for metrics, step in rows:
        many.log_metrics(metrics, step)
    assert (tmp_path / "one" / "metrics.jsonl").read_text() == (tmp_path / "many" / "metrics.jsonl").read_text()
    assert (tmp_path / "one" / "metrics.jsonl").read_text().count("\n") == 2
    with pytest.raises(ValueError, match="reserved"):
        one.log_metric_rows([({"step": 1.0}, 0)])


def test_multi_tracker_falls_back_to_log_metrics_for_trackers_without_rows(tmp_path):
    class Minimal(NullTracker):
        log_metric_rows = None  # a third-party tracker with only the protocol's methods

        def __init__(self):
            self.seen = []

        def log_metrics(self, metrics, step):
            self.seen.append((dict(metrics), step))

    minimal, files = Minimal(), JsonlTracker(tmp_path)
    multi = MultiTracker([minimal, files])
    _start(multi, "e")
    multi.log_metric_rows([({"a": 1.0}, 0), ({"a": 2.0}, 8)])
    assert minimal.seen == [({"a": 1.0}, 0), ({"a": 2.0}, 8)]
    assert list(read_metrics(tmp_path)["step"]) == [0, 8]
