"""Intervals that hold at the seed counts benchmarks use (3-10).

A percentile bootstrap over 3-5 seeds under-covers: simulated coverage of a nominal 95 % interval was 73 % at
n = 3 and 83 % at n = 5 (shared/design/ecosystem.md). The Student-t interval is exact for normal data and close
to nominal for the mildly skewed per-seed finals of these runs; paired differences (the same seeds under two
settings) remove the variation the settings share.
"""

from __future__ import annotations

import math

import numpy as np


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the Student-t interval of the mean of ``values`` (``n`` >= 2; NaN bounds for n < 2).

    low/high = mean -/+ t_{(1 + confidence)/2, n - 1} * s / sqrt(n), s the sample standard deviation.
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def paired_t_interval(a, b, confidence: float = 0.95) -> tuple[float, float, float]:
    """``t_interval`` of the per-seed differences ``a - b`` (arrays aligned by seed)."""
    return t_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), confidence)


def coverage(sampler, truth: float, n: int, interval, trials: int = 2000, seed: int = 0) -> float:
    """Share of ``trials`` samples of size ``n`` (``sampler(rng, n)``) whose ``interval(sample)`` -> (m, lo, hi)
    contains ``truth``: the simulated coverage of an interval procedure."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        _, lo, hi = interval(sampler(rng, n))
        hits += lo <= truth <= hi
    return hits / trials


COVERAGE_TRIALS = 2000
"""Simulated samples per coverage figure of ``t_interval_coverage``."""


def t_interval_coverage(n: int, confidence: float = 0.95, trials: int = COVERAGE_TRIALS,
                        seed: int = 0) -> dict[str, float]:
    """The simulated coverage of ``t_interval`` at ``n`` seeds: the share of ``trials`` samples of ``n`` per-seed
    values whose interval contains the true mean, for normal values and for skewed ones (gamma with shape 4:
    skewness 1, as the per-seed finals of reward runs can be). Deterministic (``seed``), vectorised: about 10 ms.
    ``coverage`` with ``t_interval`` gives the same figures one sample at a time; the report states these at its
    own seed count, tests/test_stats.py asserts on them.

    Returns:
        ``{"normal": share, "skewed": share}``; NaN for ``n`` < 2 (no interval).
    """
    from scipy import stats

    if n < 2:
        return {"normal": math.nan, "skewed": math.nan}
    rng = np.random.default_rng(seed)
    samples = {"normal": (rng.normal(0.0, 1.0, (trials, n)), 0.0),
               "skewed": (rng.gamma(4.0, 1.0, (trials, n)), 4.0)}  # (trials x n values, true mean)
    factor = stats.t.ppf((1 + confidence) / 2, n - 1) / math.sqrt(n)
    out = {}
    for name, (x, truth) in samples.items():
        half = factor * x.std(axis=1, ddof=1)
        out[name] = float(np.mean(np.abs(x.mean(axis=1) - truth) <= half))
    return out


def iqm(values) -> float:
    """Interquartile mean of a flat array of scores: the mean of the middle 50 % (25 % trimmed from each end).

    rliable's ``aggregate_iqm`` (google-research/rliable ``rliable/metrics.py``: ``scipy.stats.trim_mean(scores,
    0.25, axis=None)``), the aggregate Agarwal et al. (2021) recommend. Non-finite values are dropped; NaN if none
    is left.
    """
    from scipy.stats import trim_mean

    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    return float(trim_mean(x, 0.25)) if len(x) else math.nan


def stratified_bootstrap(strata, statistic, confidence: float = 0.95, n_resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float, float]:
    """``(point, low, high)``: ``statistic(*strata)`` and its percentile bootstrap interval, resampling every
    stratum on its own with replacement (``scipy.stats.bootstrap`` with several samples, ``paired=False``).

    With strata = tasks this is rliable's ``StratifiedBootstrap`` (``rliable/library.py``: runs resampled within
    each task, tasks kept), and with strata = (method, task) score arrays its ``StratifiedIndependentBootstrap``;
    ``method="percentile"`` is rliable's default.

    Args:
        strata: a sequence of 1-d arrays (lengths may differ), e.g. one per task.
        statistic: ``f(*arrays, axis=-1)`` vectorised along the last axis: it gets arrays of shape ``(n_i,)`` for
            the point estimate and ``(B, n_i)`` for a batch of ``B`` resamples, and returns a scalar or ``(B,)``.
        seed: seeds the resampling, so a report is reproducible to the byte.

    Returns:
        NaN bounds when a stratum holds fewer than two values (it cannot be resampled).
    """
    from scipy.stats import bootstrap

    strata = [np.asarray(s, dtype=float) for s in strata]
    point = float(statistic(*strata, axis=-1))
    if not strata or min(len(s) for s in strata) < 2:
        return point, math.nan, math.nan
    res = bootstrap(strata, statistic, n_resamples=n_resamples, vectorized=True, paired=False,
                    confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def _pooled_iqm(*strata, axis=-1):
    """IQM over all values of all strata along ``axis`` (the pooled runs of every task)."""
    from scipy.stats import trim_mean

    return trim_mean(np.concatenate(strata, axis=axis), 0.25, axis=axis)


def iqm_interval(scores_by_task, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(IQM, low, high)`` of the runs of all tasks pooled, with rliable's stratified bootstrap interval
    (runs resampled within each task; ``stratified_bootstrap``).

    Args:
        scores_by_task: one 1-d array of run scores (e.g. normalized scores of the seeds) per task.
    """
    strata = [s[np.isfinite(s)] for s in map(lambda v: np.asarray(v, dtype=float), scores_by_task)]
    strata = [s for s in strata if len(s)]
    if not strata:
        return math.nan, math.nan, math.nan
    return stratified_bootstrap(strata, _pooled_iqm, confidence, n_resamples, seed)


def probability_of_improvement(x_by_task, y_by_task, axis: int = -1):
    """P(X > Y): per task the probability that a run of X scores above a run of Y (ties count 1/2), i.e. the
    Mann-Whitney U statistic of X against Y over ``n_x * n_y``, averaged over tasks.

    rliable's ``probability_of_improvement`` (``rliable/metrics.py``), computed with ``scipy.stats.mannwhitneyu``.
    Its special case (0.5 for identical arrays) is what U gives anyway. 1 - P(X > Y) = P(Y > X).

    Args:
        x_by_task / y_by_task: per task, X's and Y's run scores, arrays ``(n_x,)`` / ``(n_y,)`` (or ``(B, n)``
            for a batch, the runs along ``axis``), the same tasks in the same order.

    Returns:
        A float (or a ``(B,)`` array for batched input).
    """
    from scipy.stats import mannwhitneyu

    per_task = [mannwhitneyu(x, y, axis=axis).statistic / (np.shape(x)[axis] * np.shape(y)[axis])
                for x, y in zip(x_by_task, y_by_task, strict=True)]
    return np.mean(per_task, axis=0)


def improvement_interval(x_by_task, y_by_task, confidence: float = 0.95, n_resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float, float]:
    """``(P(X > Y), low, high)``: ``probability_of_improvement`` with rliable's interval for it, a stratified
    bootstrap that resamples X's and Y's runs of each task independently (its ``StratifiedIndependentBootstrap``).
    """
    tasks = len(x_by_task)

    def statistic(*strata, axis=-1):
        return probability_of_improvement(strata[:tasks], strata[tasks:], axis=axis)

    return stratified_bootstrap([*x_by_task, *y_by_task], statistic, confidence, n_resamples, seed)


def rank_stability(values, confidence: float = 0.95, n_resamples: int = 1000,
                   seed: int = 0) -> tuple[float, float, float]:
    """How stable the ranking of methods is under a resampling of the seeds.

    Resamples seed indices with replacement, the same indices for every method (``scipy.stats.bootstrap`` with
    ``paired=True``), ranks the methods by their mean over the resampled seeds and takes the Kendall tau-b
    (``scipy.stats.kendalltau``) between that ranking and the point ranking (means over all seeds).

    Args:
        values: ``M x S`` array, M methods (rows) by S seeds shared by all methods (columns), e.g. the headline
            reward of each method and seed of one task.

    Returns:
        ``(mean tau, low, high)``: the mean over resamples and the ``confidence`` percentile interval of the
        resampled taus, both over the resamples with a tau (one in which every method ties has none). 1: every resample ranks as the point estimate does. NaN with fewer than two methods or
        seeds, or when the point means are all equal (no ranking to compare with).
    """
    import warnings

    from scipy.stats import bootstrap, kendalltau

    values = np.asarray(values, dtype=float)
    m, s = values.shape
    point = values.mean(axis=1)
    if m < 2 or s < 2 or np.ptp(point) == 0:
        return math.nan, math.nan, math.nan

    def tau(*rows, axis=-1):  # rows: M arrays (S,) or (B, S) -> tau, or (B,) taus
        means = np.stack([np.mean(r, axis=axis) for r in rows], axis=-1)  # (M,) or (B, M)
        return np.array([kendalltau(mu, point).statistic for mu in np.atleast_2d(means)]).reshape(means.shape[:-1])

    with warnings.catch_warnings():  # a resample in which every method ties gives tau NaN
        warnings.simplefilter("ignore")
        res = bootstrap(tuple(values), tau, n_resamples=n_resamples, vectorized=True, paired=True,
                        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    # the percentile interval of the finite taus, as scipy's (np.percentile) where none is NaN: scipy's interval is NaN
    # as soon as one resample ties every method, and the report then printed the mean alone
    taus = res.bootstrap_distribution
    lo, hi = np.nanpercentile(taus, [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2])
    return float(np.nanmean(taus)), float(lo), float(hi)
