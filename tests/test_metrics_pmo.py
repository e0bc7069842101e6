"""PMO's AUC and top-k metrics and the known-optimum (Ehrlich) regret metrics on tiny hand-computed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from benchsuite.metrics.pmo import (
    best_so_far,
    cumulative_regret,
    distinct_in_order,
    feasible_fraction,
    pmo_summary,
    queries_to_solve,
    regret_summary,
    simple_regret,
    solved,
    top_auc,
    top_k_mean,
)

RUN = [0.2, 0.6, 0.4, 0.8, 0.5]  # five molecules, budget 10, a point every 2 calls


def test_top1_auc_by_hand():
    # points at 2 and 4 calls (the loop stops below min(n, budget) = 5), then the end at n = 5:
    #   0 -> 2 calls: from 0 to best(0.2, 0.6) = 0.6          area 2 * (0 + 0.6) / 2   = 0.6
    #   2 -> 4 calls: 0.6 to best(.., 0.4, 0.8) = 0.8          area 2 * (0.6 + 0.8) / 2 = 1.4
    #   4 -> 5 calls: 0.8 to best of all five = 0.8            area 1 * (0.8 + 0.8) / 2 = 0.8
    #   stopped early: padded 5 -> 10 calls at 0.8             area 5 * 0.8             = 4.0
    assert top_auc(RUN, 1, budget=10, freq=2) == pytest.approx((0.6 + 1.4 + 0.8 + 4.0) / 10)
    assert top_auc(RUN, 1, budget=10, freq=2, finished=False) == pytest.approx((0.6 + 1.4 + 0.8) / 10)


def test_top2_and_top10_auc_by_hand():
    # top-2 means: 2 calls (0.6 + 0.2) / 2 = 0.4; 4 calls (0.8 + 0.6) / 2 = 0.7; all five 0.7
    #   2 * 0.4 / 2 + 2 * (0.4 + 0.7) / 2 + 1 * (0.7 + 0.7) / 2 + 5 * 0.7 = 0.4 + 1.1 + 0.7 + 3.5 = 5.7
    assert top_auc(RUN, 2, budget=10, freq=2) == pytest.approx(0.57)
    # fewer than k values: the mean of those there are. 2 calls 0.4; 4 calls 2.0 / 4 = 0.5; five 2.5 / 5 = 0.5
    #   0.4 + 2 * (0.4 + 0.5) / 2 + 1 * (0.5 + 0.5) / 2 + 5 * 0.5 = 0.4 + 0.9 + 0.5 + 2.5 = 4.3
    assert top_auc(RUN, 10, budget=10, freq=2) == pytest.approx(0.43)


def test_auc_at_and_past_the_budget():
    # n = budget = 4: a point at 2 calls (0.3), then the end at 4 (0.9): 2 * 0.3 / 2 + 2 * (0.3 + 0.9) / 2 = 1.5
    assert top_auc([0.1, 0.3, 0.2, 0.9], 1, budget=4, freq=2) == pytest.approx(1.5 / 4)
    # one value past the budget (mol_opt's buffer can hold budget + 1): its end point uses all five values,
    # 2 * 0.3 / 2 + 3 * (0.3 + 1.0) / 2 = 2.25, still divided by the budget
    assert top_auc([0.1, 0.3, 0.2, 0.9, 1.0], 1, budget=4, freq=2) == pytest.approx(2.25 / 4)


def test_a_perfect_run_loses_the_first_ramp():
    # every value 1: the curve rises from 0 to 1 over the first 100 calls, so PMO's best AUC is 1 - 50 / 10,000
    assert top_auc(np.ones(10_000), 10) == pytest.approx(0.995)
    assert top_auc(np.ones(10_000), 100) == pytest.approx(0.995)
    assert top_auc([1.0], 1) == pytest.approx(1 - 0.5 / 10_000)  # one call, then padded
    with pytest.raises(ValueError, match="no values"):
        top_auc([], 1)


def test_top_k_mean_and_summary():
    values = [0.2, 0.9, 0.5, 0.7]
    assert top_k_mean(values, 2) == pytest.approx(0.8)
    assert top_k_mean(values, 2, budget=2) == pytest.approx(0.55)  # only the first two calls count
    assert top_k_mean(values, 10) == pytest.approx(0.575)  # fewer than k: all of them
    summary = pmo_summary(values, budget=4, freq=2)
    assert sorted(summary) == ["auc_top1", "auc_top10", "auc_top100", "top1", "top10", "top100"]
    assert summary["top1"] == 0.9 and summary["auc_top1"] == pytest.approx((2 * 0.9 / 2 + 2 * 0.9) / 4)


def test_distinct_in_order_is_pmos_buffer():
    # repeats are free and invalid molecules (key None) are not recorded
    assert distinct_in_order(["a", "b", "a", None, "c", "b"], [1, 2, 3, 4, 5, 6]) == [1.0, 2.0, 5.0]
    with pytest.raises(ValueError, match="2 keys but 1 values"):
        distinct_in_order(["a", "b"], [1.0])


# ---- known optimum (Ehrlich, holo-bench's reporting) ----------------------------------------------------------------
EHRLICH = [-1.0, 0.25, 0.0, 0.5, -1.0, 1.0, 0.75]  # -1: infeasible, as benchsuite's Ehrlich reward scores it


def test_simple_and_cumulative_regret_by_hand():
    assert best_so_far(EHRLICH).tolist() == [-1.0, 0.25, 0.25, 0.5, 0.5, 1.0, 1.0]
    assert simple_regret(EHRLICH).tolist() == [2.0, 0.75, 0.75, 0.5, 0.5, 0.0, 0.0]
    assert cumulative_regret(EHRLICH) == pytest.approx(2 + 0.75 + 0.75 + 0.5 + 0.5)  # per query: 4.5
    assert cumulative_regret(EHRLICH, batch_size=3) == pytest.approx(0.75 + 0.0 + 0.0)  # after queries 3, 6, 7
    assert cumulative_regret(EHRLICH, batch_size=2) == pytest.approx(0.75 + 0.5 + 0.0 + 0.0)  # after 2, 4, 6, 7
    assert cumulative_regret([]) == 0.0 and simple_regret([]).size == 0


def test_feasibility_and_solving():
    assert feasible_fraction(EHRLICH) == pytest.approx(5 / 7)
    assert feasible_fraction([-np.inf, 0.0]) == 0.5  # holo's -inf is infeasible too
    assert queries_to_solve(EHRLICH) == 6 and solved(EHRLICH)
    assert queries_to_solve([0.5, 0.75]) is None and not solved([0.5, 0.75]) and queries_to_solve([]) is None
    assert regret_summary(EHRLICH) == {"simple_regret": 0.0, "cumulative_regret": pytest.approx(4.5),
                                       "feasible_fraction": pytest.approx(5 / 7), "solved": True,
                                       "queries_to_solve": 6}
