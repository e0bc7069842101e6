"""The data-processing check of the path KL (``benchsuite.metrics.dpi``) on run records: at every evaluation point
of every fine-tuning run, each judge with a declared value range (``Reward.value_range``) may have moved from the
pretrained model's mean only as far as the reported path KL allows. ``write_report`` refuses records that break it.

Methods that fine-tune nothing (``labels.REFERENCE_METHODS``: pretrained, best-of-N, BO) are exempt: their
``eval/kl`` is the analytic KL of a selection among pretrained samples, not a path KL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from ..errors import BenchsuiteError, ConfigError, clip
from ..metrics.dpi import Z, dpi_check
from ..registry import REWARDS
from ..rewards.base import Reward
from ..tasks import PREFIXES, load_spec
from .labels import REFERENCE_METHODS

COLUMNS = ["task", "method", "seed", "queries", "metric", "value", "pretrained", "samples", "kl", "bound"]
"""A violation: the run, the evaluation point, the judge mean, its pretrained mean, the samples behind each, the
reported path KL and the least KL the judge's move implies."""


def checked_judges(task_id: str) -> dict[str, tuple[str, int, tuple[float, float]]]:
    """``{judge mean metric: (the path-KL metric of its evaluation set, samples in the set, value range)}`` for the
    judges of ``task_id``'s card whose reward declares a range, on the test set (``eval/``) and, on a card with two
    sets, the selection set (``select/``). Empty for a task without a card."""
    try:
        spec = load_spec(task_id)
    except BenchsuiteError:
        return {}
    sets = {"test": spec.eval_samples_per_condition * len(spec.eval_conditions or (None,))}
    if spec.protocol is not None:
        conditions = spec.protocol.selection_conditions or spec.eval_conditions or (None,)
        sets["selection"] = spec.protocol.selection_samples_per_condition * len(conditions)
    out = {}
    for label, reward in spec.judges:
        try:
            cls = REWARDS.load(reward.name)
        except BenchsuiteError:
            continue
        value_range = (cls.value_range_of(**dict(reward.kwargs))
                       if isinstance(cls, type) and issubclass(cls, Reward) else None)
        if value_range is not None:
            for split, n in sets.items():
                out[f"{PREFIXES[split]}{label}_mean"] = (f"{PREFIXES[split]}kl", n, value_range)
    return out


def _check_point(values: Mapping[str, float], reference: Mapping[str, float],
                 judges: dict[str, tuple[str, int, tuple[float, float]]], z: float) -> list[dict]:
    """The violated judges of one evaluation point (``values``) against the pretrained model's (``reference``)."""
    out = []
    for metric, (kl_metric, n, value_range) in judges.items():
        p, q, kl = (values.get(metric), reference.get(metric), values.get(kl_metric))
        if not all(isinstance(v, float | int) and math.isfinite(v) for v in (p, q, kl)):
            continue
        check = dpi_check(p, q, n, kl, z=z, value_range=value_range)
        if check.violated:
            out.append({"metric": metric, "value": p, "pretrained": q, "samples": n, "kl": kl, "bound": check.bound})
    return out


def dpi_violations(tidy: pd.DataFrame, z: float = Z) -> pd.DataFrame:
    """The evaluation points of ``tidy`` (the report's frame: task, method, seed, queries, metric, value) whose path
    KL is below a judge's data-processing bound (``COLUMNS``). The pretrained mean of a run is its own first
    evaluation (at 0 queries: the pretrained model), else the first evaluation of the pretrained method's run of the
    same task and seed; a run with neither is not checked."""
    rows: list[dict] = []
    if tidy.empty:
        return pd.DataFrame(columns=COLUMNS)
    wide = tidy.pivot_table(index=["task", "method", "seed", "queries"], columns="metric", values="value",
                            aggfunc="last")
    for task, of_task in wide.groupby(level="task", sort=True):
        judges = checked_judges(str(task))
        if not judges:
            continue
        pretrained = {seed: run.iloc[0].to_dict() for (_, method, seed), run in
                      of_task.groupby(level=["task", "method", "seed"]) if method == "pretrained"}
        for (_, method, seed), run in of_task.groupby(level=["task", "method", "seed"]):
            if method in REFERENCE_METHODS:
                continue
            queries = run.index.get_level_values("queries")
            reference = run.iloc[0].to_dict() if queries[0] == 0 else pretrained.get(seed)
            if reference is None:
                continue
            for q, values in zip(queries, run.itertuples(index=False), strict=True):
                point = dict(zip(run.columns, values, strict=True))
                for found in _check_point(point, reference, judges, z):
                    rows.append({"task": task, "method": method, "seed": seed, "queries": int(q), **found})
    return pd.DataFrame(rows, columns=COLUMNS)


def per_seed_violations(per_seed: pd.DataFrame, z: float = Z) -> pd.DataFrame:
    """``dpi_violations`` of a report's ``per_seed.csv`` (one row per run: final values and ``<metric>@drift``):
    each fine-tuning run's final and matched-drift values against the pretrained method's row of the same task and
    seed. ``queries`` is the evaluation point's (``cost/queries``, ``drift_queries``)."""
    rows: list[dict] = []
    records = per_seed.to_dict("records")
    pretrained = {(r["task"], r["seed"]): r for r in records if r["method"] == "pretrained"}
    for record in records:
        reference = pretrained.get((record["task"], record["seed"]))
        if record["method"] in REFERENCE_METHODS or reference is None:
            continue
        judges = checked_judges(record["task"])
        drift = {k.removesuffix("@drift"): v for k, v in record.items() if k.endswith("@drift")}
        for values, queries in ((record, record.get("cost/queries")), (drift, record.get("drift_queries"))):
            for found in _check_point(values, reference, judges, z):
                rows.append({"task": record["task"], "method": record["method"], "seed": record["seed"],
                             "queries": queries, **found})
    return pd.DataFrame(rows, columns=COLUMNS)


def check_records(tidy: pd.DataFrame, z: float = Z) -> None:
    """``ConfigError`` (one line: the first violation, how many more) if ``dpi_violations(tidy)`` finds any."""
    bad = dpi_violations(tidy, z)
    if bad.empty:
        return
    first = bad.iloc[0]
    more = f" (and {len(bad) - 1} more judge means and points)" if len(bad) > 1 else ""
    raise ConfigError(
        f"task {clip(first.task)}, method {clip(first.method)}, seed {first.seed}, at {first.queries} queries: "
        f"{first.metric} moved from {first.pretrained:.4g} (pretrained) to {first.value:.4g}, which needs a path KL "
        f"of at least {first.bound:.4g} nats over {first.samples} samples (data-processing bound), but "
        f"{first.metric.split('/')[0]}/kl is {first.kl:.4g}{more}; the KL of these runs is not a path KL (a per-dim "
        "KL, or steps left out): rerun them with the current runner")
