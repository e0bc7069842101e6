"""Sample-efficiency metrics of black-box optimization runs, from oracle values in query order (numpy only).

PMO (Gao et al. 2022, arXiv 2206.12411; definitions from wenhao-gao/mol_opt ``main/optimizer.py``, ``top_auc`` and
``Oracle``):

- PMO's run record is a buffer of distinct molecules in the order they were first scored: a repeated molecule is
  answered from the buffer and costs nothing, an invalid one scores 0 and is not recorded. ``distinct_in_order``
  turns a query log into that sequence.
- ``top_auc(values, k)``: the area under the curve "mean of the k best values so far" against the number of calls,
  read every ``freq`` (100) calls, by the trapezoid rule, divided by the budget (10,000). Its details, kept here:
  the curve starts at 0 (the first segment runs from 0 at 0 calls to the value at ``freq``); the last segment runs
  from the last multiple of ``freq`` below ``min(n, budget)`` to n, ending at the k-best mean of all n values (so
  values past the budget are not dropped: mol_opt's buffer can hold budget + 1 molecules); a run that stopped early
  (``finished``, as mol_opt's final log passes) is padded to the budget with its last k-best mean. With fewer than k
  values the mean is over those there are.
- ``top_k_mean(values, k, budget)``: the mean of the k best among the first ``budget`` values (PMO's avg_top1,
  avg_top10, avg_top100 at the end of a run).

Ehrlich (Stanton et al. 2024, arXiv 2407.00236; reporting as in prescient-design/holo-bench
``scripts/benchmark_optimizer.py``), for a function whose optimum is known (1.0 for Ehrlich):

- ``simple_regret``: optimum minus the best value so far, after each query;
- ``cumulative_regret``: the sum of the simple regret after each step, a step being ``batch_size`` queries
  (holo-bench sums it once per optimizer step of a batch of particles; ``batch_size=1`` sums it per query);
- ``feasible_fraction``: the share of queries above ``infeasible_value`` (benchsuite's Ehrlich reward scores an
  infeasible sequence -1.0; holo gives -inf, also below it);
- ``solved`` / ``queries_to_solve``: whether, and after how many queries, a value reached the optimum.

Values are taken as given: before the first feasible query the simple regret is optimum - infeasible_value (2.0 with
benchsuite's -1.0; holo-bench's is +inf).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

PMO_BUDGET = 10_000
"""PMO's oracle budget."""
PMO_FREQ = 100
"""PMO's logging interval (calls) of the top-k curve."""


def _values(values: Iterable[float], who: str, allow_empty: bool = False) -> np.ndarray:
    out = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    if not allow_empty and out.size == 0:
        raise ValueError(f"{who}: no values")
    return out


def _top_mean(values: np.ndarray, k: int) -> float:
    """Mean of the k largest of ``values`` (all of them when there are fewer)."""
    return float(np.sort(values)[::-1][:k].mean())


def distinct_in_order(keys: Sequence[Hashable | None], values: Sequence[float]) -> list[float]:
    """PMO's buffer from a query log: the value of the first query of each distinct key, in query order; queries
    whose key is None (invalid molecules) are left out.

    Args:
        keys: one per query, e.g. canonical SMILES (None for an invalid molecule).
        values: the oracle value of each query.
    """
    if len(keys) != len(values):
        raise ValueError(f"distinct_in_order: {len(keys)} keys but {len(values)} values")
    seen: set = set()
    out = []
    for key, value in zip(keys, values):
        if key is None or key in seen:
            continue
        seen.add(key)
        out.append(float(value))
    return out


def top_auc(values: Sequence[float] | np.ndarray, k: int, budget: int = PMO_BUDGET, freq: int = PMO_FREQ,
            finished: bool = True) -> float:
    """PMO's AUC of the top-k curve (module docstring); in [0, 1] for values in [0, 1].

    Args:
        values: N oracle values of distinct molecules in query order (``distinct_in_order``).
        k: 1, 10 or 100 in PMO.
        budget: the oracle budget the area is divided by (and padded to when ``finished``).
        freq: calls between two points of the curve.
        finished: pad a run shorter than the budget with its last top-k mean (mol_opt's final log does).
    """
    v = _values(values, "top_auc")
    if k < 1 or budget < 1 or freq < 1:
        raise ValueError(f"top_auc: k, budget and freq must be >= 1, got {k}, {budget}, {freq}")
    n = len(v)
    area, previous, called = 0.0, 0.0, 0
    for calls in range(freq, min(n, budget), freq):
        now = _top_mean(v[:calls], k)
        area += freq * (now + previous) / 2
        previous, called = now, calls
    now = _top_mean(v, k)
    area += (n - called) * (now + previous) / 2
    if finished and n < budget:
        area += (budget - n) * now
    return area / budget


def top_k_mean(values: Sequence[float] | np.ndarray, k: int, budget: int | None = PMO_BUDGET) -> float:
    """Mean of the k best of the first ``budget`` values (all values when ``budget`` is None)."""
    v = _values(values, "top_k_mean")
    return _top_mean(v if budget is None else v[:budget], k)


def pmo_summary(values: Sequence[float] | np.ndarray, budget: int = PMO_BUDGET, freq: int = PMO_FREQ,
                finished: bool = True) -> dict[str, float]:
    """``auc_top1``, ``auc_top10``, ``auc_top100`` and ``top1``, ``top10``, ``top100`` (means at the end)."""
    out = {f"auc_top{k}": top_auc(values, k, budget, freq, finished) for k in (1, 10, 100)}
    out.update({f"top{k}": top_k_mean(values, k, budget) for k in (1, 10, 100)})
    return out


# ---- known optimum (Ehrlich) -----------------------------------------------------------------------------------------
def best_so_far(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """``N`` running maximum of ``N`` values in query order."""
    return np.maximum.accumulate(_values(values, "best_so_far", allow_empty=True))


def simple_regret(values: Sequence[float] | np.ndarray, optimum: float = 1.0) -> np.ndarray:
    """``N`` values ``optimum - best so far`` after each query."""
    return optimum - best_so_far(values)


def cumulative_regret(values: Sequence[float] | np.ndarray, optimum: float = 1.0, batch_size: int = 1) -> float:
    """Sum over steps of the simple regret at the end of each step of ``batch_size`` queries (a last, shorter step
    counts as one); 0.0 for no queries."""
    if batch_size < 1:
        raise ValueError(f"cumulative_regret: batch_size must be >= 1, got {batch_size}")
    regret = simple_regret(values, optimum)
    if regret.size == 0:
        return 0.0
    ends = np.append(np.arange(batch_size, regret.size, batch_size), regret.size) - 1
    return float(regret[ends].sum())


def feasible_fraction(values: Sequence[float] | np.ndarray, infeasible_value: float = -1.0) -> float:
    """Share of queries whose value is above ``infeasible_value``."""
    v = _values(values, "feasible_fraction")
    return float((v > infeasible_value).mean())


def queries_to_solve(values: Sequence[float] | np.ndarray, optimum: float = 1.0, atol: float = 1e-9) -> int | None:
    """The number of queries up to and including the first whose value is within ``atol`` of the optimum (or above
    it), or None if none is."""
    v = _values(values, "queries_to_solve", allow_empty=True)
    hits = np.flatnonzero(v >= optimum - atol)
    return int(hits[0]) + 1 if hits.size else None


def solved(values: Sequence[float] | np.ndarray, optimum: float = 1.0, atol: float = 1e-9) -> bool:
    """Whether some query reached the optimum (within ``atol``)."""
    return queries_to_solve(values, optimum, atol) is not None


def regret_summary(values: Sequence[float] | np.ndarray, optimum: float = 1.0, batch_size: int = 1,
                   infeasible_value: float = -1.0) -> dict[str, float | int | bool | None]:
    """``simple_regret`` (final), ``cumulative_regret``, ``feasible_fraction``, ``solved``, ``queries_to_solve``."""
    regret = simple_regret(values, optimum)
    return {
        "simple_regret": float(regret[-1]) if regret.size else None,
        "cumulative_regret": cumulative_regret(values, optimum, batch_size),
        "feasible_fraction": feasible_fraction(values, infeasible_value) if regret.size else None,
        "solved": solved(values, optimum),
        "queries_to_solve": queries_to_solve(values, optimum),
    }
