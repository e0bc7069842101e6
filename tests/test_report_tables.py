"""Leaderboard statistics by hand on tiny tidy frames, the tables as a paper reads them, and a report rebuilt from
its own CSVs."""

import filecmp
import math

import numpy as np
import pandas as pd
import pytest

from benchsuite.report import rebuild_report, write_report
from benchsuite.report.labels import ReportTask, metric_label, report_task
from benchsuite.report.latex import task_detail_table
from benchsuite.report.plots import HV_MARGIN, hypervolume_reference, plot_pareto
from benchsuite.report.tables import (TIDY_COLUMNS, aggregate_iqm, format_interval, improvement_probabilities,
                                      leaderboard, matched_drift_values, normalization_anchors,
                                      normalized_scores, paired_differences, rank_stability_table, run_values,
                                      separation, task_table)

T975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student-t 0.975 quantiles by degrees of freedom


def tidy_frame(points):
    """Tidy rows from ``(task, method, seed, queries, {metric: value})`` evaluation points."""
    return pd.DataFrame([(t, m, s, q, k, v) for t, m, s, q, values in points for k, v in values.items()],
                        columns=TIDY_COLUMNS)


def simple_task(task="t-v0", budget=None, metrics=("eval/r_mean", "eval/kl")):
    return ReportTask(task, "eval/r_mean", ("eval/r_mean",), tuple(metrics), drift_budget=budget)


def test_matched_drift_is_chosen_on_the_selection_set_and_reported_on_the_test_set():
    tidy = tidy_frame([
        # the test set's best point within budget (10 queries: 0.9) is not the selection set's (20: select 0.6)
        ("t-v0", "ddpo", 0, 0, {"eval/kl": 0.0, "select/kl": 0.0, "eval/r_mean": 0.1, "select/r_mean": 0.1}),
        ("t-v0", "ddpo", 0, 10, {"eval/kl": 0.5, "select/kl": 0.5, "eval/r_mean": 0.9, "select/r_mean": 0.4}),
        ("t-v0", "ddpo", 0, 20, {"eval/kl": 0.9, "select/kl": 0.8, "eval/r_mean": 0.5, "select/r_mean": 0.6}),
        # the selection set's KL decides the budget: 30 is within it on the test set only
        ("t-v0", "ddpo", 0, 30, {"eval/kl": 0.9, "select/kl": 1.2, "eval/r_mean": 0.7, "select/r_mean": 0.9}),
    ])
    matched = matched_drift_values(tidy, {"t-v0": simple_task(budget=1.0)})
    assert matched["drift_queries"].tolist() == [20]
    assert matched["eval/r_mean@drift"].tolist() == [0.5]  # reported from the test set


def test_matched_drift_by_hand():
    tidy = tidy_frame([
        # seed 0: within KL 1 the best reward is at 10 queries (0.3), not the last point within budget (20: 0.2)
        ("t-v0", "ddpo", 0, 0, {"eval/kl": 0.0, "eval/r_mean": 0.1}), ("t-v0", "ddpo", 0, 10, {"eval/kl": 0.5,
        "eval/r_mean": 0.3}), ("t-v0", "ddpo", 0, 20, {"eval/kl": 0.9, "eval/r_mean": 0.2}),
        ("t-v0", "ddpo", 0, 30, {"eval/kl": 2.0, "eval/r_mean": 0.9}),
        # seed 1: only the first evaluation is within budget
        ("t-v0", "ddpo", 1, 0, {"eval/kl": 0.0, "eval/r_mean": 0.1}), ("t-v0", "ddpo", 1, 10, {"eval/kl": 1.5,
        "eval/r_mean": 0.5}),
        # seed 2: the first evaluation qualifies even above the budget; seed 3: ties go to the earliest
        ("t-v0", "ddpo", 2, 0, {"eval/kl": 3.0, "eval/r_mean": 0.2}), ("t-v0", "ddpo", 2, 10, {"eval/kl": 4.0,
        "eval/r_mean": 0.8}),
        ("t-v0", "ddpo", 3, 0, {"eval/kl": 0.0, "eval/r_mean": 0.1}), ("t-v0", "ddpo", 3, 10, {"eval/kl": 0.5,
        "eval/r_mean": 0.4}), ("t-v0", "ddpo", 3, 20, {"eval/kl": 0.6, "eval/r_mean": 0.4}),
        # a reference method gets none here (run_values gives it its final value); nor does a task without a budget
        ("t-v0", "best-of-n", 0, 0, {"eval/kl": 0.1, "eval/r_mean": 0.5}),
        ("u-v0", "ddpo", 0, 0, {"eval/kl": 0.0, "eval/r_mean": 0.1}),
    ])
    tasks = {"t-v0": simple_task(budget=1.0), "u-v0": simple_task("u-v0")}
    matched = matched_drift_values(tidy, tasks).set_index("seed")
    assert set(matched["task"]) == {"t-v0"} and set(matched["method"]) == {"ddpo"}
    assert matched["drift_queries"].to_dict() == {0: 10, 1: 0, 2: 0, 3: 10}
    assert matched["eval/r_mean@drift"].to_dict() == {0: 0.3, 1: 0.1, 2: 0.2, 3: 0.4}
    assert matched["eval/kl@drift"].to_dict() == {0: 0.5, 1: 0.0, 2: 3.0, 3: 0.5}
    runs = run_values(tidy, tasks).set_index(["task", "method", "seed"])
    assert runs.loc[("t-v0", "ddpo", 0), "eval/r_mean"] == 0.9  # final value: the full budget
    assert runs.loc[("t-v0", "ddpo", 0), "eval/r_mean@drift"] == 0.3
    # a reference method does not drift along a path: its value at matched drift is its final value
    assert runs.loc[("t-v0", "best-of-n", 0), "eval/r_mean@drift"] == 0.5
    assert math.isnan(runs.loc[("u-v0", "ddpo", 0), "eval/r_mean@drift"])


def test_leaderboard_intervals_are_student_t():
    final = pd.DataFrame({"task": "t", "method": "a", "seed": [0, 1, 2], "r": [1.0, 2.0, 3.0]})
    row = leaderboard(final, ["r"]).iloc[0]
    half = T975[2] * 1.0 / math.sqrt(3)  # s = 1
    assert row["seeds"] == 3 and row["r"] == 2.0
    assert (row["r_lo"], row["r_hi"]) == pytest.approx((2 - half, 2 + half), rel=1e-9)


def paired_runs():
    return pd.DataFrame({"task": "t", "seed": [0, 1, 2] * 2 + [0, 1],
                         "method": ["pretrained"] * 3 + ["a"] * 3 + ["b"] * 2,
                         "r": [1.0, 1.0, 1.0, 2.0, 2.5, 3.0, 2.1, 2.9]})


def test_paired_differences_and_separation_by_hand():
    pairs = paired_differences(paired_runs(), {"t": "r"}).set_index(["method", "other"])
    # a - pretrained on seeds 0-2: 1, 1.5, 2 -> mean 1.5, s 0.5: excludes 0
    half = T975[2] * 0.5 / math.sqrt(3)
    row = pairs.loc[("a", "pretrained")]
    assert row["seeds"] == 3 and row["diff"] == pytest.approx(1.5)
    assert (row["diff_lo"], row["diff_hi"]) == pytest.approx((1.5 - half, 1.5 + half)) and row["excludes_zero"]
    # b - a on the two seeds both ran: 0.1, 0.4 -> mean 0.25, s = 0.3 / sqrt 2; t(0.975, 1) is wide: includes 0
    row = pairs.loc[("b", "a")]
    assert row["seeds"] == 2 and row["diff"] == pytest.approx(0.25) and not row["excludes_zero"]
    assert row["diff_hi"] - row["diff"] == pytest.approx(T975[1] * (0.3 / math.sqrt(2)) / math.sqrt(2))
    assert pairs.loc[("pretrained", "a"), "diff"] == pytest.approx(-1.5)  # both orders
    # b - pretrained: 1.1, 1.9 -> includes 0. One of the three pairs is told apart
    sep = separation(paired_differences(paired_runs(), {"t": "r"})).iloc[0]
    assert (sep["pairs"], sep["separated"], sep["separation"]) == (3, 1, pytest.approx(1 / 3))


def test_rank_stability_uses_the_seeds_every_method_has():
    row = rank_stability_table(paired_runs(), {"t": "r"}).iloc[0]
    assert (row["methods"], row["seeds"]) == (3, 2)  # b has no seed 2
    # on seeds 0, 1: pretrained (1, 1) < a (2, 2.5) < b (2.1, 2.9) seed by seed, so every paired resample ranks them
    # so (a resample of b's seeds apart from a's would put a's 2.5 above b's 2.1)
    assert (row["tau"], row["tau_lo"], row["tau_hi"]) == (1.0, 1.0, 1.0)


def test_normalized_scores_do_not_move_when_a_method_is_added():
    final = pd.DataFrame({"task": "t", "method": ["pretrained", "a", "a"], "seed": [0, 0, 1], "r": [1.0, 2.0, 4.0]})
    better = pd.concat([final, pd.DataFrame({"task": "t", "method": ["c"], "seed": [0], "r": [9.0]})])
    fixed = [normalized_scores(f, {"t": "r"}, reference_scores={"t": 5.0}) for f in (final, better)]
    # (2 - 1) / (5 - 1) and (4 - 1) / (5 - 1), with or without c
    for norm in fixed:
        assert norm[norm["method"] == "a"]["normalized"].tolist() == [0.25, 0.75]
    # without a reference score the upper anchor is the best method mean, which c moves (and the anchors say so)
    moving = [normalized_scores(f, {"t": "r"}) for f in (final, better)]
    assert moving[0][moving[0]["method"] == "a"]["normalized"].tolist() == [0.5, 1.5]
    assert moving[1][moving[1]["method"] == "a"]["normalized"].tolist() == [0.125, 0.375]
    anchors = normalization_anchors(better, {"t": "r"}).iloc[0]
    assert (anchors["lower"], anchors["upper"], anchors["upper_source"]) == (1.0, 9.0, "best method mean in the data")
    assert normalization_anchors(better, {"t": "r"}, reference_scores={"t": 5.0}).iloc[0]["upper_source"] == "given"


def test_aggregate_iqm_pools_the_runs_of_all_tasks():
    norm = pd.DataFrame({"task": ["t"] * 4 + ["u"] * 4, "method": "a", "seed": list(range(4)) * 2,
                         "normalized": [0.0, 1, 2, 3, 4, 5, 6, 7]})
    row = aggregate_iqm(norm).iloc[0]
    assert (row["tasks"], row["runs"], row["iqm"]) == (2, 8, 3.5)  # middle half of 0..7: 2, 3, 4, 5
    assert row["iqm_lo"] < 3.5 < row["iqm_hi"]


def test_improvement_probabilities_by_hand():
    runs = pd.DataFrame({"task": ["t"] * 4 + ["u"] * 4, "method": ["a", "a", "b", "b"] * 2, "seed": [0, 1] * 4,
                         "r": [1.0, 3.0, 2.0, 0.0, 5.0, 5.0, 5.0, 5.0]})
    poi = improvement_probabilities(runs, {"t": "r", "u": "r"}).set_index(["method", "other"])
    # task t: a (1, 3) beats b (2, 0) in 3 of 4 pairs; task u: all tie, 1/2 -> (3/4 + 1/2) / 2
    assert poi.loc[("a", "b"), "poi"] == pytest.approx(0.625) and poi.loc[("a", "b"), "tasks"] == 2
    assert poi.loc[("b", "a"), "poi"] == pytest.approx(0.375)
    assert poi.loc[("b", "a"), "poi_lo"] == pytest.approx(1 - poi.loc[("a", "b"), "poi_hi"])


def test_format_interval_by_hand():
    assert format_interval(0.831, 0.753, 0.909) == "0.831 ± 0.078"  # half-width 0.078: 3 decimals
    assert format_interval(15.21, 5.81, 24.61) == "15.2 ± 9.4"
    assert format_interval(1024.0, 1024.0, 1024.0) == "1024 ± 0" and format_interval(0.4, 0.4, 0.4) == "0.4 ± 0"
    assert format_interval(0.226, 0.169, 0.283, signed=True) == "+0.226 ± 0.057"
    assert format_interval(0.5, math.nan, math.nan) == "0.5"
    assert format_interval(math.nan, math.nan, math.nan) == "n/a"
    assert format_interval(0.81, 0.33, 1.0, brackets=True) == "0.81 [0.33, 1.00]"
    # a zero-width interval is still an interval, with the digits of its neighbours (rank stability 1: every
    # resample ranks alike)
    assert format_interval(1.0, 1.0, 1.0, brackets=True) == "1.00 [1.00, 1.00]"
    assert format_interval(0.998, 0.998, 0.998, brackets=True) == "0.998 [0.998, 0.998]"
    assert format_interval(2.0, 2.0, 2.0, brackets=True, signed=True) == "+2.00 [2.00, 2.00]"


def test_task_table_columns_rows_and_bold():
    runs = pd.DataFrame({"task": "t", "seed": [0, 1, 2] * 3, "method": ["pretrained"] * 3 + ["a"] * 3 + ["b"] * 3,
                         "eval/r_mean": [1.0, 1, 1, 2, 2.5, 3, 1.1, 1.2, 0.9],
                         "eval/r_mean@drift": [np.nan] * 3 + [1.5, 1.6, 1.7, 1.1, 1.2, 0.9],
                         "eval/kl": [0.0] * 3 + [5.0, 6, 7, 0.1, 0.2, 0.3], "eval/vendi": np.nan})
    task = simple_task("t", budget=2.0, metrics=("eval/r_mean", "eval/kl", "eval/vendi"))
    board = leaderboard(runs, ["eval/r_mean", "eval/r_mean@drift", "eval/kl", "eval/vendi"])
    cells, best, notes = task_table(task, board, paired_differences(runs, {"t": "eval/r_mean"}))
    label = metric_label("eval/r_mean")
    # the Vendi column has no value in any row: left out; there is no best-of-n: no column for it
    assert list(cells.columns) == ["method", "seeds", label, f"{label} at matched drift", "Δ vs pretrained",
                                   "path KL"]
    assert cells["method"].tolist() == ["a", "b", "pretrained"]  # best headline first
    rows = cells.set_index("method")
    assert rows.loc["pretrained", f"{label} at matched drift"] == "ref."
    assert rows.loc["a", "Δ vs pretrained"].endswith("*") and rows.loc["pretrained", "Δ vs pretrained"] == "—"
    assert not rows.loc["b", "Δ vs pretrained"].endswith("*")  # 0.1, 0.2, -0.1: includes 0
    assert best == {label: {"a"}, f"{label} at matched drift": {"a"}}  # path KL, differences: not ranked
    assert any(n.startswith("ref.:") for n in notes) and any(n.startswith("Δ vs X") for n in notes)
    assert f"{label} at matched drift" not in task_table(simple_task("t"), board, paired_differences(
        runs, {"t": "eval/r_mean"}))[0]  # without a drift budget


def test_latex_table_is_booktabs_with_human_labels_and_bold():
    cells = pd.DataFrame({"method": ["a", "b_1"], "JPEG reward": ["0.831 ± 0.078", "-0.5 ± 0.1"],
                          "Δ vs pretrained": ["+0.2 ± 0.1*", "—"]})
    tex = task_detail_table(simple_task(), cells, {"JPEG reward": {"a"}}, {})
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\label{tab:t-v0}" in tex
    assert r"\textbf{0.831 $\pm$ 0.078}" in tex and r"b\_1" in tex and r"$-$0.5 $\pm$ 0.1" in tex
    assert r"$\Delta$ vs pretrained" in tex and r"+0.2 $\pm$ 0.1$^{*}$" in tex and " -- " in tex


def test_report_task_without_a_card_is_guessed_and_says_so():
    task = report_task("no-such-task-v0", ["eval/kl", "eval/b_mean", "eval/a_mean", "wall_time_s"])
    assert task.headline == "eval/a_mean" and task.judges == ("eval/a_mean", "eval/b_mean")
    assert task.drift_budget is None and task.note.startswith("no task card")
    card = report_task("digits-classifier-v0")
    assert card.judges == ("eval/proxy_mean", "eval/gold_mean") and not card.note
    assert dict(card.judge_rewards)["eval/gold_mean"] == "digit-target-gold v0 (target=3)"


def synthetic_tidy():
    """Two tasks with four methods and one with one method, three seeds, evaluations at 0, 32 and 64 queries
    (fine-tuning methods drift)."""
    rng = np.random.default_rng(0)
    points = []
    methods = (("pretrained", 0, 0), ("best-of-n", 0.3, 0), ("ddpo", 0.5, 4.0), ("draft", 0.2, 1.0))
    for task, scale in (("synth-a-v0", 1.0), ("synth-b-v0", -2.0), ("synth-c-v0", 0.0)):
        for method, gain, drift in methods if task != "synth-c-v0" else methods[-1:]:
            for seed in range(3):
                for q in (0, 32, 64):
                    r = scale + gain * q / 64 + (0 if method == "pretrained" else 0.05 * rng.normal())
                    points.append((task, method, seed, q, {
                        "eval/r_mean": r, "eval/g_mean": r - 0.1 * drift * q / 64,
                        "eval/kl": (0.16 if method == "best-of-n" else drift * q / 64) * (1 + 0.1 * seed),
                        "eval/diversity": 2.0 - 0.2 * drift * q / 64 + 0.01 * seed, "eval/vendi": 3.0 + 0.1 * seed,
                        "cost/queries": q}))
                points.append((task, method, seed, 64, {"wall_time_s": 10.0 + seed}))
    return tidy_frame(points)


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    tasks = {"synth-a-v0": ReportTask("synth-a-v0", "eval/r_mean", ("eval/r_mean", "eval/g_mean"), (
        "eval/r_mean", "eval/g_mean", "eval/kl", "eval/diversity", "eval/vendi", "wall_time_s", "cost/queries"),
        drift_budget=2.0, judge_rewards=(("eval/r_mean", "toy-r v0"), ("eval/g_mean", "toy-g v0")))}
    # synth-b-v0 has no card and none given: guessed from the data
    report = write_report(synthetic_tidy(), out / "report", tasks=tasks, reference_scores={"synth-a-v0": 2.0})
    return out, report


def test_write_report_tables_and_statistics(synthetic_report):
    out, report = synthetic_report
    folder = out / "report"
    md = (folder / "leaderboard.md").read_text()
    assert md.count("**path KL** (`eval/kl`)") == 1 and md.count("**diversity** (`eval/diversity`)") == 1
    assert "Drift budget: path KL <= 2 nats" in md and "no task card" in md
    assert "| synth-a-v0 | r at matched drift | 1 | 2 | given |" in md  # pretrained mean 1, the given reference 2
    # synth-b-v0 (no card): headline g, the first judge mean in sorted order; upper anchor from the data
    assert "| synth-b-v0 | g | -2 | " in md and "best method mean in the data |" in md
    assert set(report["separation"]) == {"synth-a-v0", "synth-b-v0", "synth-c-v0"}
    assert all(0 <= report["separation"][t] <= 1 for t in ("synth-a-v0", "synth-b-v0"))
    # a task with one method keeps its section, without pairs to separate or rank
    assert "## synth-c-v0" in md and "Separation: n/a" in md and math.isnan(report["separation"]["synth-c-v0"])
    assert f"Separation: {report['separation']['synth-a-v0']:.2f}" in md
    assert f"Hypervolume: {report['hypervolume']['synth-a-v0']:.3g}." in md and "**hypervolume**: area" in md
    tex = (folder / "leaderboard.tex").read_text()
    assert tex.count(r"\begin{table}") == 3 and tex.count(r"\begin{table*}") == 1 and "eval/" not in tex
    assert "n/a" not in tex and r"\caption{Every metric of synth-a-v0 (3 seeds and 64 oracle queries per run" in tex
    parts = [(folder / "tables" / f"{name}.tex").read_text().strip() for name in ("legend", "main",
                                                                                 *sorted(report["separation"]))]
    assert tex == "\n\n".join([tex.split("\n\n", 1)[0], *parts]) + "\n"  # one file: a comment, then the tables
    per_seed = pd.read_csv(folder / "per_seed.csv")
    assert len(per_seed) == (2 * 4 + 1) * 3 and {"eval/r_mean", "eval/r_mean@drift", "normalized"} <= set(per_seed)
    ddpo = per_seed[(per_seed["task"] == "synth-a-v0") & (per_seed["method"] == "ddpo")]
    # ddpo's KL at 32 queries is 2.0 x (1 + seed / 10): within the budget of 2 for seed 0 only (<= is inclusive)
    assert ddpo.sort_values("seed")["drift_queries"].tolist() == [32, 0, 0]
    board = report["leaderboard"].set_index(["task", "method"])
    # the pretrained model does not drift: its value at matched drift is its final value
    pre = board.loc[("synth-a-v0", "pretrained")]
    assert pre["eval/r_mean@drift"] == pre["eval/r_mean"]
    assert {p.stem for p in report["figures"]} >= {"synth-a-v0_frontier", "synth-a-v0_overoptimization",
                                                    "synth-a-v0_pareto", "synth-b-v0_curves"}
    assert all(p.exists() and p.with_suffix(".pdf").exists() for p in report["figures"])


def test_report_rebuilt_from_its_own_csvs_is_identical(synthetic_report, tmp_path):
    out, _ = synthetic_report
    rebuild_report(out / "report", tmp_path / "again")
    names = ["leaderboard.md", "leaderboard.tex", "tables/main.tex", "tables/legend.tex", "tables/synth-a-v0.tex",
             "leaderboard.csv", "paired_differences.csv", "tasks.csv",
             "aggregate.csv", "probability_of_improvement.csv", "per_seed.csv", "curves.csv", "report.json"]
    match, mismatch, errors = filecmp.cmpfiles(out / "report", tmp_path / "again", names, shallow=False)
    assert match == names, (mismatch, errors)
    assert sorted(p.name for p in (tmp_path / "again" / "figures").glob("*.png")) == sorted(
        p.name for p in (out / "report" / "figures").glob("*.png"))


def test_pareto_hypervolume_reference_is_fixed_per_task(tmp_path):
    final = pd.DataFrame({"task": "t", "method": ["pretrained", "a", "a"], "seed": [0, 0, 1],
                          "r": [-0.8, 0.0, 0.2], "d": [2.0, 1.5, 1.7]})
    ref = hypervolume_reference(final, "t", "r", "d")
    assert ref.tolist() == pytest.approx([-0.8 - HV_MARGIN * 0.8, 2.0 - HV_MARGIN * 2.0])
    _, hv = plot_pareto(final, "t", "r", "d", tmp_path / "p")
    # a dominated method (a worst run on both axes) used to move the reference point; now it changes nothing
    worse = pd.concat([final, pd.DataFrame({"task": "t", "method": ["b"], "seed": [0], "r": [-1.1], "d": [1.2]})])
    assert plot_pareto(worse, "t", "r", "d", tmp_path / "q")[1] == pytest.approx(hv)
    # front: pretrained (-0.8, 2.0) and a's mean (0.1, 1.6) above the reference (-1.2, 1.0): two rectangles,
    # 0.4 x 1.0 and 1.3 x 0.6, overlapping in 0.4 x 0.6
    assert hv == pytest.approx(0.4 + 0.78 - 0.24)
