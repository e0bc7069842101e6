"""Aggregate statistics of the report by hand on tiny inputs, against rliable where it imports, and the simulated
coverage of the bootstrap intervals the report uses."""

import math

import numpy as np
import pytest
from scipy.stats import norm, trim_mean

from benchsuite.report.stats import (coverage, improvement_interval, iqm, iqm_interval, probability_of_improvement,
                                     rank_stability, stratified_bootstrap)

# a small fixed score matrix: 3 runs x 2 tasks per method (rliable's layout: runs x tasks)
X = np.array([[0.1, 0.9], [0.4, 0.7], [0.35, 1.2]])
Y = np.array([[0.2, 0.5], [0.05, 0.8], [0.3, 0.6]])


def test_iqm_by_hand():
    assert iqm(np.array([0.0, 1, 2, 3, 4, 5, 6, 100])) == pytest.approx(3.5)  # middle half: 2, 3, 4, 5
    assert iqm(np.array([[0.0, 1], [2, 3]])) == pytest.approx(1.5)  # flattened, as rliable's axis=None
    assert math.isnan(iqm(np.array([np.nan])))


def test_probability_of_improvement_by_hand():
    # task 1: x = (1, 3) beats y = (2, 0) in 3 of 4 pairs; task 2: x = (1, 1) vs y = (1, 2): ties count 1/2 -> 1/4
    x, y = [np.array([1.0, 3.0]), np.array([1.0, 1.0])], [np.array([2.0, 0.0]), np.array([1.0, 2.0])]
    assert probability_of_improvement(x, y) == pytest.approx((0.75 + 0.25) / 2)
    assert probability_of_improvement(y, x) == pytest.approx(1 - 0.5)
    # a batch of resamples along the leading axis gives one value per resample
    batched = probability_of_improvement([np.stack([x[0], x[0][::-1]])], [np.stack([y[0], y[0]])])
    assert batched.shape == (2,) and batched.tolist() == [0.75, 0.75]


def test_stratified_bootstrap_resamples_within_each_stratum():
    """Strata without spread leave nothing to resample when resampling is stratified: the pooled mean of three 0s
    and five 1s is 5/8 in every stratified resample (a bootstrap over the pooled 8 values would vary)."""
    pooled_mean = lambda *s, axis=-1: np.concatenate(s, axis=axis).mean(axis=axis)  # noqa: E731
    assert stratified_bootstrap([np.zeros(3), np.ones(5)], pooled_mean) == (0.625, 0.625, 0.625)
    point, lo, hi = stratified_bootstrap([np.array([0.0, 1.0]), np.array([2.0, 3.0])], pooled_mean)
    assert point == 1.5 and 0.5 <= lo < 1.5 < hi <= 2.5  # pooled resample means lie in [0.5, 2.5]
    assert stratified_bootstrap([np.array([0.0, 1.0]), np.array([2.0, 3.0])], pooled_mean) == (point, lo, hi)
    assert np.isnan(stratified_bootstrap([np.array([1.0]), np.array([2.0, 3.0])], pooled_mean)[1])


def test_iqm_and_improvement_intervals_bracket_their_point():
    point, lo, hi = iqm_interval([X[:, 0], X[:, 1]])
    assert point == pytest.approx(trim_mean(X, 0.25, axis=None)) and lo <= point <= hi
    p, lo, hi = improvement_interval([X[:, 0], X[:, 1]], [Y[:, 0], Y[:, 1]])
    # task 1: 0.1 beats 0.05; 0.4 and 0.35 beat all three -> 7/9; task 2: 0.9 and 1.2 beat all, 0.7 beats 0.5, 0.6
    assert p == pytest.approx((7 / 9 + 8 / 9) / 2) and 0 <= lo <= p <= hi <= 1


def test_rank_stability_by_hand():
    # three methods far apart on every seed: every resample ranks them as the point estimate does
    assert rank_stability(np.array([[0.0, 1, 2], [10, 11, 12], [20, 21, 22]])) == (1.0, 1.0, 1.0)
    # paired resampling: B = A + 1 on every seed, so B's resampled mean is always above A's; resampling the two
    # methods' seeds independently would often rank them the other way
    assert rank_stability(np.array([[0.0, 10, 20], [1, 11, 21]])) == (1.0, 1.0, 1.0)
    # A = (0, 9) against a constant B = 4 (point: A 4.5 > B): the resample (0, 0) (probability 1/4) ranks A below B
    # (tau -1), every other one above (tau 1): E[tau] = -1/4 + 3/4 = 1/2
    mean, lo, hi = rank_stability(np.array([[0.0, 9.0], [4.0, 4.0]]), n_resamples=2000)
    assert mean == pytest.approx(0.5, abs=0.08) and (lo, hi) == (-1.0, 1.0)
    assert all(math.isnan(v) for v in rank_stability(np.array([[1.0, 2.0], [2.0, 1.0]])))  # tied means
    # resamples of seeds 0 and 1 alone tie both methods (no tau); every other one ranks alike: an interval [1, 1],
    # not NaN bounds (the report printed the mean alone)
    assert rank_stability(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])) == (1.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in rank_stability(np.array([[1.0], [2.0]])))  # one seed


def test_improvement_interval_covers_at_five_seeds():
    """P(X > Y) for normal X, Y per task with the same spread: Phi(delta / (sigma sqrt 2)); the stratified
    bootstrap interval covers it at least 93% of the time at 5 seeds on 3 tasks (nominal 95%)."""
    means, sd, delta = (0.0, 0.5, 1.0), 0.4, 0.3
    truth = norm.cdf(delta / (sd * math.sqrt(2)))
    sampler = lambda rng, n: ([rng.normal(m + delta, sd, n) for m in means],  # noqa: E731
                              [rng.normal(m, sd, n) for m in means])
    assert coverage(sampler, truth, 5, lambda s: improvement_interval(*s, n_resamples=1000), trials=300) >= 0.93


def test_iqm_interval_coverage_is_what_the_report_states():
    """The stratified percentile bootstrap of the IQM (rliable's interval) under-covers at benchmark seed counts:
    simulated about 89% at 3 tasks x 5 seeds for a nominal 95% (leaderboard.md says so). The pooled population's
    IQM is the truth; the check fails if the interval gets narrower (a bootstrap that ignored the strata, or one
    resample for all tasks) or if the statement in the report stops being true."""
    means, sd = (0.0, 0.5, 1.0), 0.4
    truth = trim_mean(np.concatenate([np.random.default_rng(9).normal(m, sd, 400_000) for m in means]), 0.25)
    sampler = lambda rng, n: [rng.normal(m, sd, n) for m in means]  # noqa: E731
    c = coverage(sampler, truth, 5, lambda s: iqm_interval(s, n_resamples=1000), trials=400)
    assert 0.85 <= c <= 0.93


def test_same_numbers_as_rliable_metrics():
    metrics = pytest.importorskip("rliable.metrics")
    assert iqm(X) == pytest.approx(metrics.aggregate_iqm(X))
    assert probability_of_improvement(list(X.T), list(Y.T)) == pytest.approx(metrics.probability_of_improvement(X, Y))
    assert probability_of_improvement(list(Y.T), list(X.T)) == pytest.approx(metrics.probability_of_improvement(Y, X))


def _rliable_library(monkeypatch):
    """rliable.library, importable on pandas 3. rliable 1.2 requires arch < 8, and arch 7.2's import applies pandas'
    private ``deprecate_kwarg`` with pandas 2's arguments (old name, new name) where pandas 3 takes a warning class
    first (a TypeError at import). That decorator only marks a renamed argument of an arch plotting method, nothing the
    bootstrap uses, so the import gets pandas 3's form of the same call (arch 8 imports, but rliable excludes it and
    passes it a random_state it no longer takes)."""
    import inspect

    import pandas.util._decorators as decorators

    original = decorators.deprecate_kwarg
    if next(iter(inspect.signature(original).parameters)) == "klass":  # pandas 3
        def pandas2_call(*args, **kwargs):
            return original(FutureWarning, *args, **kwargs) if args and isinstance(args[0], str) else \
                original(*args, **kwargs)

        monkeypatch.setattr(decorators, "deprecate_kwarg", pandas2_call)
    from rliable import library

    return library


def test_same_intervals_as_rliable_stratified_bootstrap(monkeypatch):
    """rliable's get_interval_estimates (its StratifiedBootstrap over arch) against ours, to Monte Carlo error. 6 runs x
    3 tasks: P(X > Y) moves in steps of 1/108, finer than the tolerance (on X, Y's 1/18 steps a bound can sit on a
    jump). rliable resamples in a Python loop (its probability of improvement runs a Mann-Whitney test per task per
    resample: 1.3 s per 1000), so it gets fewer resamples than ours: its bounds are within about 0.015 of their limit."""
    pytest.importorskip("rliable")
    library = _rliable_library(monkeypatch)
    from rliable import metrics

    x, y = np.random.default_rng(0).normal(0.3, 1.0, (6, 3)), np.random.default_rng(1).normal(0.0, 1.0, (6, 3))
    rly = {}
    for key, scores, reps in (("iqm", x, 5000), ("poi", [x, y], 1000)):
        np.random.seed(0)  # rliable draws its resample indices from the global generator
        rly.update(library.get_interval_estimates(
            {key: scores}, lambda *s: np.array([metrics.aggregate_iqm(s[0]) if len(s) == 1 else
                                                metrics.probability_of_improvement(*s)]), reps=reps)[1])
    assert iqm_interval(list(x.T), n_resamples=10_000)[1:] == pytest.approx(rly["iqm"].ravel(), abs=0.03)
    assert improvement_interval(list(x.T), list(y.T), n_resamples=10_000)[1:] == pytest.approx(rly["poi"].ravel(),
                                                                                               abs=0.03)
