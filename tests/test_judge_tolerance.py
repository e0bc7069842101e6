"""A card's judge tolerance narrows matched drift: a point where a held-out judge fell too far below the run's start
is not at matched drift, in the report's choice and in the tuning objective alike (``tasks.within_drift``)."""

import os

import pandas as pd
import pytest

from benchsuite import tasks
from benchsuite.errors import ConfigError
from benchsuite.report.labels import ReportTask
from benchsuite.report.tables import TIDY_COLUMNS, matched_drift_values
from benchsuite.tasks import within_drift
from benchsuite.tuning import objective_value

CARD = """\
id: toy-tol-v0
description: toy
backbone: tiny
sampler: {num_steps: 5, eta: 1.0}
oracle: {name: mean-brightness, version: "0"}
judges:
  brightness: {name: mean-brightness, version: "0"}
  other: {name: mean-brightness, version: "0"}
primary_judge: brightness
conditions: {train: null, eval: null}
eval: {samples_per_condition: 8, seed: 7}
default_budget: 256
%s
"""


@pytest.fixture
def write_card(tmp_path, monkeypatch):
    def write(extra):
        (tmp_path / "toy-tol-v0.yaml").write_text(CARD % extra)
        monkeypatch.setenv("BENCHSUITE_TASKS_DIR", os.fspath(tmp_path))
        tasks._cards.cache_clear()
        return tasks.load_spec("toy-tol-v0")

    yield write
    tasks._cards.cache_clear()


def test_within_drift_by_hand():
    tol = (("fid", 0.05),)
    assert within_drift(7.9, {"fid": 0.90}, {"fid": 0.92}, 8.0, tol)  # fell 0.02 <= 0.05
    assert within_drift(8.0, {"fid": 0.87}, {"fid": 0.92}, 8.0, tol)  # exactly at both limits
    assert not within_drift(8.1, {"fid": 0.92}, {"fid": 0.92}, 8.0, tol)  # over the KL budget
    assert not within_drift(1.0, {"fid": 0.80}, {"fid": 0.92}, 8.0, tol)  # the judge fell 0.12
    assert within_drift(1.0, {}, {}, 8.0)  # no tolerance: the KL budget alone
    kl = pd.Series([1.0, 1.0, 9.0])
    ok = within_drift(kl, {"fid": pd.Series([0.9, 0.5, 0.9])}, {"fid": pd.Series([0.9, 0.9, 0.9])}, 8.0, tol)
    assert ok.tolist() == [True, False, False]


def test_the_card_states_tolerances_of_its_own_judges_with_a_budget(write_card):
    assert write_card("drift_budget: 2\njudge_tolerance: {other: 0.1}").judge_tolerance == (("other", 0.1),)
    assert write_card("drift_budget: 2").judge_tolerance == ()
    for extra, message in [("judge_tolerance: {other: 0.1}", "needs a drift_budget"),
                           ("drift_budget: 2\njudge_tolerance: {nope: 0.1}", "not one of the card's judges"),
                           ("drift_budget: 2\njudge_tolerance: {other: -1}", "must be a number >= 0"),
                           ("drift_budget: 2\njudge_tolerance: [other]", "must be a mapping")]:
        with pytest.raises(ConfigError, match=message):
            write_card(extra)


def test_the_report_and_the_tuning_objective_skip_a_point_whose_judge_fell_too_far():
    # within the KL budget at 10 and 20 queries; at 20 the held-out judge has fallen 0.3 from the start (0.9)
    curve = [{"eval/kl": 0.0, "eval/r_mean": 0.1, "eval/fid_mean": 0.9},
             {"eval/kl": 0.5, "eval/r_mean": 0.3, "eval/fid_mean": 0.88},
             {"eval/kl": 0.9, "eval/r_mean": 0.6, "eval/fid_mean": 0.6}]
    tol = (("fid", 0.05),)
    assert objective_value("eval/r_mean.matched", curve, 1.0) == 0.6
    assert objective_value("eval/r_mean.matched", curve, 1.0, tol) == 0.3
    tidy = pd.DataFrame([("t-v0", "ddpo", 0, q, k, v) for q, point in zip((0, 10, 20), curve)
                         for k, v in point.items()], columns=TIDY_COLUMNS)
    task = ReportTask("t-v0", "eval/r_mean", ("eval/r_mean", "eval/fid_mean"), ("eval/r_mean", "eval/kl"),
                      drift_budget=1.0, judge_tolerance=tol)
    assert matched_drift_values(tidy, {"t-v0": task})["drift_queries"].tolist() == [10]
    loose = ReportTask(**{**task.__dict__, "judge_tolerance": ()})
    assert matched_drift_values(tidy, {"t-v0": loose})["drift_queries"].tolist() == [20]
