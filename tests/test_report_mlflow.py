"""The report's MLflow reader (``load_mlflow``): leaderboard runs only (no tuning trials), every page of runs."""

import pandas as pd
import pytest

from benchsuite.errors import ConfigError
from benchsuite.report.tables import COMMIT, TIDY_COLUMNS, UNKNOWN_COMMIT, load_mlflow
from benchsuite.sweep import KIND_TAG
from benchsuite.tracking import RUN_KEY_TAG

TOY = "toy-brightness-v0"


def _run(client, experiment_id, tags, values=None, status="FINISHED"):
    """A run with ``tags`` and ``eval/brightness_mean`` logged at each (step, value) of ``values``."""
    run = client.create_run(experiment_id, tags=tags)
    for step, value in (values or {}).items():
        client.log_metric(run.info.run_id, "eval/brightness_mean", value, step=step)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _leaderboard_run(client, experiment_id, method, seed, values, key=None, parent=None):
    tags = {"method": method, "seed": str(seed), "task": TOY, RUN_KEY_TAG: key or f"{method}-{seed}"}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    return _run(client, experiment_id, tags, values)


@pytest.fixture
def store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment(TOY, artifact_location=(tmp_path / "art").as_uri())


def test_tuning_trials_stay_out_of_the_leaderboard(store):
    """Regression: trials of a study (seed 1000, one learning rate each) came back as one 'seed 1000' run of the
    method, their values averaged."""
    uri, client, exp = store
    _leaderboard_run(client, exp, "pretrained", 0, {0: 0.40, 64: 0.40})
    sweep = _run(client, exp, {KIND_TAG: "sweep", "benchsuite.sweep": "grid"})
    _leaderboard_run(client, exp, "sqdf", 0, {0: 0.40, 64: 0.50}, parent=sweep)  # a sweep's child: kept
    study = _run(client, exp, {KIND_TAG: "study", "benchsuite.study": "s"}, status="RUNNING")  # tune still going
    for number, value in enumerate((0.45, 0.60)):
        _leaderboard_run(client, exp, "sqdf", 1000, {0: 0.40, 64: value}, key=f"trial-{number}", parent=study)

    tidy = load_mlflow(uri, [TOY])
    assert list(tidy.columns) == [*TIDY_COLUMNS, COMMIT] and set(tidy[COMMIT]) == {UNKNOWN_COMMIT}  # no git tag
    assert sorted(set(zip(tidy["method"], tidy["seed"]))) == [("pretrained", 0), ("sqdf", 0)]
    final = tidy[(tidy["method"] == "sqdf") & (tidy["queries"] == 64)]
    assert final["value"].tolist() == [0.50]


def test_every_page_of_runs_is_read(store, monkeypatch):
    """Regression: one unpaginated search returned at most one page (1000 runs on MLflow's default); here the
    store answers 2 runs per page, as a server with a smaller page would."""
    from mlflow.tracking import MlflowClient

    uri, client, exp = store
    for seed in range(5):
        _leaderboard_run(client, exp, "pretrained", seed, {0: 0.4, 64: 0.4 + seed / 100})
    search = MlflowClient.search_runs

    def small_pages(self, experiment_ids, *args, max_results=1000, **kwargs):
        return search(self, experiment_ids, *args, max_results=min(max_results, 2), **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", small_pages)
    tidy = load_mlflow(uri, [TOY])
    assert sorted(tidy["seed"].unique()) == [0, 1, 2, 3, 4]
    assert len(tidy) == 10  # two evaluation points per run, each once


def test_a_restarted_run_counts_once_and_two_configs_of_one_seed_are_refused(store):
    uri, client, exp = store
    _leaderboard_run(client, exp, "ddpo", 0, {0: 0.4, 64: 0.5}, key="ddpo-lr1")
    _leaderboard_run(client, exp, "ddpo", 0, {0: 0.4, 64: 0.55}, key="ddpo-lr1")  # --restart: same run key
    tidy = load_mlflow(uri, [TOY])
    assert tidy[tidy["queries"] == 64]["value"].tolist() == [0.55]  # the newest run of the key

    _leaderboard_run(client, exp, "ddpo", 0, {0: 0.4, 64: 0.7}, key="ddpo-lr2")  # another config, same seed
    with pytest.raises(ConfigError, match="two runs of ddpo seed 0 on toy-brightness-v0"):
        load_mlflow(uri, [TOY])


def test_unknown_experiments_give_an_empty_frame(store):
    uri, _, _ = store
    tidy = load_mlflow(uri, ["absent-v0"])
    assert isinstance(tidy, pd.DataFrame) and tidy.empty and list(tidy.columns) == [*TIDY_COLUMNS, COMMIT]
