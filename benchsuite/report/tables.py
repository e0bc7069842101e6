"""Run records -> a tidy table -> per-run values -> leaderboard statistics and their tables.

The report reads results, never the training code: run folders written by the runner (``summary.json`` and
``metrics.jsonl``) or an MLflow store. The tidy table has one row per (task, method, seed, queries, metric) with its
``value``. Per run it takes the final evaluation (full budget) and the matched-drift evaluation; over seeds, Student-t
intervals per (task, method) and paired t-intervals between methods; over tasks, rliable's aggregates (IQM with a
stratified bootstrap, probability of improvement) of scores normalised with anchors that do not move when a method
is added.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..sweep import KIND_TAG
from ..tasks import selection_metric, within_drift
from ..tracking import GIT_SHA_TAG, RUN_KEY_TAG, read_metrics
from .labels import DRIFT_SUFFIX, REFERENCE_METHODS, REFERENCE_NOTE, ReportTask, higher_is_better, metric_label
from .stats import improvement_interval, iqm_interval, paired_t_interval, rank_stability, t_interval

TIDY_COLUMNS = ["task", "method", "seed", "queries", "metric", "value"]
COMMIT = "commit"
"""Optional column of the tidy frame: the git commit the run's code was at (its ``benchsuite.git_sha`` tag, with
``-dirty`` for a tree with uncommitted changes; "unknown" where the run recorded none). ``load_runs`` and
``load_mlflow`` add it; ``write_report`` lists the commits and refuses dirty ones unless allowed."""
UNKNOWN_COMMIT = "unknown"


def load_runs(root: Path | str, tasks: list[str] | None = None) -> pd.DataFrame:
    """Every evaluation point of every finished run under ``root/runs`` as a tidy frame.

    Also adds metric ``wall_time_s`` at the final query count of each run (from its summary), and the column
    ``commit``: the run's ``benchsuite.git_sha`` tag from its ``run.json`` ("unknown" without one).
    Unfinished runs (no ``summary.json`` with status FINISHED) are skipped. Two finished runs of one
    (task, method, seed) with different configs raise ``ConfigError``: averaging them would mix settings.
    """
    frames, seen = [], {}
    for summary_path in sorted(Path(root).glob("runs/*/summary.json")):
        summary = json.loads(summary_path.read_text())
        cfg = summary["config"]
        if summary["status"] != "FINISHED" or (tasks and cfg["task"] not in tasks):
            continue
        metrics = read_metrics(summary_path.parent)
        cols = [c for c in metrics.columns if c.startswith(("eval/", "cost/", "query/"))]
        evals = metrics.dropna(subset=[c for c in cols if c.startswith("eval/")], how="all")[["step", *cols]]
        long = evals.melt(id_vars="step", var_name="metric", value_name="value").dropna(subset=["value"])
        long = long.rename(columns={"step": "queries"})
        extra = pd.DataFrame([{"queries": summary["queries_used"], "metric": "wall_time_s",
                               "value": summary["wall_time_s"]}])
        long = pd.concat([long, extra], ignore_index=True)
        long["task"], long["method"], long["seed"] = cfg["task"], cfg["method"], cfg["seed"]
        long[COMMIT] = _run_commit(summary_path.parent)
        key = (cfg["task"], cfg["method"], cfg["seed"])
        if key in seen:
            raise ConfigError(f"two runs of {key[1]} seed {key[2]} on {key[0]} under {root} ({seen[key]} and "
                              f"{summary_path.parent.name}); a report needs one config per (task, method, seed)")
        seen[key] = summary_path.parent.name
        frames.append(long[[*TIDY_COLUMNS, COMMIT]])
    if not frames:
        return pd.DataFrame(columns=[*TIDY_COLUMNS, COMMIT])
    return pd.concat(frames, ignore_index=True)


def _run_commit(run_dir: Path) -> str:
    """The ``benchsuite.git_sha`` tag of the run in ``run_dir`` (its ``run.json``), "unknown" without one."""
    try:
        tags = json.loads((run_dir / "run.json").read_text()).get("tags", {})
    except (OSError, ValueError):
        return UNKNOWN_COMMIT
    return str(tags.get(GIT_SHA_TAG) or UNKNOWN_COMMIT)


def final_grids(root: Path | str, tasks: list[str] | None = None) -> dict[str, dict[str, Path]]:
    """``{task: {method: PNG}}``: the last sample grid (the final evaluation) of each method's finished run with
    the lowest seed under ``root/runs``, for ``write_report``'s sample-grid figure."""
    best: dict[tuple[str, str], tuple[int, Path]] = {}
    for summary_path in sorted(Path(root).glob("runs/*/summary.json")):
        summary = json.loads(summary_path.read_text())
        cfg = summary["config"]
        pngs = sorted((summary_path.parent / "samples").glob("queries_*.png"))
        if summary["status"] != "FINISHED" or not pngs or (tasks and cfg["task"] not in tasks):
            continue
        key = (cfg["task"], cfg["method"])
        if key not in best or cfg["seed"] < best[key][0]:
            best[key] = (cfg["seed"], pngs[-1])
    grids: dict[str, dict[str, Path]] = {}
    for (task, method), (_, png) in sorted(best.items()):
        grids.setdefault(task, {})[method] = png
    return grids


_SEARCH_PAGE = 1000
"""Runs asked for per ``search_runs`` page (MLflow's default page size); ``load_mlflow`` reads every page."""


def load_mlflow(tracking_uri: str, experiments: list[str]) -> pd.DataFrame:
    """The same tidy frame from an MLflow store: finished runs of the named experiments (= task ids).

    Runs are listed page by page (``search_runs`` with page tokens), so a store of any size is read whole. Left
    out: parent runs (``benchsuite.kind`` sweep or study) and the trials of a tuning study (the children of a study
    parent, also tagged ``benchsuite.study``): a trial trains with the tuning seed under one sampled setting, not a
    leaderboard setting. A run restarted under the same run key counts once (the newest); two configs of one
    (task, method, seed) raise ``ConfigError``, as in ``load_runs``. Each kept run's evaluation points come from
    its metric histories (a search returns only the last value of a metric).
    """
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    names = {}
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            names[exp.experiment_id] = name
    runs, token = [], None
    while names:  # newest first, so that the first run of a run key is its latest
        page = client.search_runs(list(names), max_results=_SEARCH_PAGE, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        runs.extend(page)
        token = page.token
        if not token:
            break
    studies = {r.info.run_id for r in runs if r.data.tags.get(KIND_TAG) == "study"}
    latest = {}
    for run in runs:
        tags = run.data.tags
        tuning = tags.get("mlflow.parentRunId") in studies or "benchsuite.study" in tags
        if run.info.status == "FINISHED" and "method" in tags and KIND_TAG not in tags and not tuning:
            latest.setdefault(tags.get(RUN_KEY_TAG, run.info.run_id), run)
    rows, seen = [], {}
    for run in latest.values():
        tags = run.data.tags
        task, method, seed = names[run.info.experiment_id], tags["method"], int(tags["seed"])
        if (task, method, seed) in seen:
            raise ConfigError(f"two runs of {method} seed {seed} on {task} in {tracking_uri} (MLflow runs "
                              f"{seen[task, method, seed]} and {run.info.run_id}); a report needs one config per "
                              "(task, method, seed)")
        seen[task, method, seed] = run.info.run_id
        commit = tags.get(GIT_SHA_TAG) or UNKNOWN_COMMIT
        for key in run.data.metrics:
            if not key.startswith(("eval/", "cost/", "query/")) and key != "wall_time_s":
                continue
            for m in client.get_metric_history(run.info.run_id, key):
                rows.append((task, method, seed, m.step, key, m.value, commit))
    return pd.DataFrame(rows, columns=[*TIDY_COLUMNS, COMMIT])


RUN_KEYS = ["task", "method", "seed"]
"""A run's identity in every per-run frame."""


def canonical(tidy: pd.DataFrame) -> pd.DataFrame:
    """``tidy`` reduced to its columns, typed (seed and queries int, value float) and sorted by task, method, seed,
    metric, queries: the one order every statistic of the report is computed in, so that the report rebuilt from its
    own ``curves.csv`` is byte-identical. The ``commit`` column is kept where ``tidy`` has one (missing commits, e.g.
    of rows merged from a report saved without the column, as "unknown")."""
    types = {"task": str, "method": str, "seed": "int64", "queries": "int64", "metric": str, "value": "float64"}
    columns = [*TIDY_COLUMNS, COMMIT] if COMMIT in tidy else TIDY_COLUMNS
    if COMMIT in tidy:
        tidy = tidy.assign(**{COMMIT: tidy[COMMIT].fillna(UNKNOWN_COMMIT)})
        types[COMMIT] = str
    out = tidy[columns].astype(types)
    return out.sort_values(["task", "method", "seed", "metric", "queries"], kind="stable", ignore_index=True)


def final_values(tidy: pd.DataFrame) -> pd.DataFrame:
    """Wide frame: one row per (task, method, seed) with each metric's value at that run's last evaluation."""
    last = tidy.sort_values("queries").groupby([*RUN_KEYS, "metric"], as_index=False).last()
    wide = last.pivot_table(index=RUN_KEYS, columns="metric", values="value").reset_index()
    wide.columns.name = None
    return wide


def eval_points(tidy: pd.DataFrame) -> pd.DataFrame:
    """Wide frame: one row per evaluation point (task, method, seed, queries), one column per metric."""
    wide = tidy.pivot_table(index=[*RUN_KEYS, "queries"], columns="metric", values="value").reset_index()
    wide.columns.name = None
    return wide


def matched_drift_values(tidy: pd.DataFrame, tasks: dict[str, ReportTask]) -> pd.DataFrame:
    """Each fine-tuning run's metrics at its matched-drift evaluation point, on the tasks with a drift budget.

    The point is the run's evaluation with the best headline among those whose path KL ``eval/kl`` is at most the
    task's ``drift_budget`` and whose judges stay within the card's ``judge_tolerance`` of the run's first
    evaluation (``tasks.within_drift``), both read on the selection set where the runs have one (``tasks.selection_metric``); the
    first evaluation (queries 0: the pretrained model) always qualifies, so every run has one; ties go to the
    earliest. Reference methods (``REFERENCE_METHODS``) get none here: their ``eval/kl`` is not a path KL
    (``run_values`` gives them their final values).

    Args:
        tidy: the tidy frame.
        tasks: ``{task: ReportTask}`` of every task in ``tidy``.

    Returns:
        One row per such run: task, method, seed, ``drift_queries`` (the point's queries) and ``<metric>@drift``
        for every metric logged at evaluation points.
    """
    budgets = {t: r.drift_budget for t, r in tasks.items() if r.drift_budget is not None}
    keep = tidy["task"].isin(budgets) & ~tidy["method"].isin(REFERENCE_METHODS) & (tidy["metric"] != "wall_time_s")
    if not keep.any():
        return pd.DataFrame(columns=[*RUN_KEYS, "drift_queries"])
    picked = []
    for task, points in eval_points(tidy[keep]).groupby("task"):
        first = points["queries"] == points.groupby(RUN_KEYS)["queries"].transform("min")
        # a card with a selection set chooses on it (select/): the reported eval/ values are never the chooser
        chooser = selection_metric(tasks[task].headline, points.columns)
        kl_metric = selection_metric("eval/kl", points.columns)
        kl = points[kl_metric] if kl_metric in points else pd.Series(np.nan, index=points.index)
        judge = {j: selection_metric(f"eval/{j}_mean", points.columns) for j, _ in tasks[task].judge_tolerance}
        now = {j: points[m] for j, m in judge.items()}
        start = {j: points.groupby(RUN_KEYS)[m].transform("first") for j, m in judge.items()}
        ok = within_drift(kl, now, start, budgets[task], tasks[task].judge_tolerance)
        points = points[(ok | first) & np.isfinite(points[chooser])]
        picked.append(points.loc[points.groupby(RUN_KEYS)[chooser].idxmax()])
    out = pd.concat(picked, ignore_index=True)
    out = out.rename(columns={c: c + DRIFT_SUFFIX for c in out.columns if c not in (*RUN_KEYS, "queries")})
    return out.rename(columns={"queries": "drift_queries"})


def run_values(tidy: pd.DataFrame, tasks: dict[str, ReportTask]) -> pd.DataFrame:
    """One row per run (task, method, seed): every metric's final value (its last evaluation: the full budget)
    and, on tasks with a drift budget, ``drift_queries`` and ``<metric>@drift`` (``matched_drift_values``; NaN for
    tasks without a budget; the reference methods' final values). What ``per_seed.csv`` holds."""
    runs = final_values(tidy).merge(matched_drift_values(tidy, tasks), on=RUN_KEYS, how="left")
    # the reference methods do not drift along a path: their value at matched drift is their final value
    budgets = [t for t, r in tasks.items() if r.drift_budget is not None]
    ref = runs["task"].isin(budgets) & runs["method"].isin(REFERENCE_METHODS)
    if ref.any():
        bases = [c for c in runs.columns if c not in (*RUN_KEYS, "drift_queries") and not c.endswith(DRIFT_SUFFIX)]
        for base in bases:  # a column is made where no fine-tuner of the report gave one
            runs.loc[ref, base + DRIFT_SUFFIX] = runs.loc[ref, base]
    return runs


def mean_intervals(frame: pd.DataFrame, by: list[str], metrics: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t interval over seeds (``stats.t_interval``) of each metric per group of ``by``.

    Args:
        frame: one row per seed and group (e.g. per run).
        by: the group columns, e.g. task and method.
        metrics: the columns of ``frame`` to summarise (absent ones are skipped).

    Returns:
        A frame with the ``by`` columns, seeds (rows in the group), and ``<metric>``, ``<metric>_lo``,
        ``<metric>_hi`` (NaN bounds with a single seed).
    """
    rows = []
    for keys, group in frame.groupby(by):
        row = {**dict(zip(by, keys)), "seeds": len(group)}
        for m in metrics:
            if m in group:
                row[m], row[f"{m}_lo"], row[f"{m}_hi"] = t_interval(group[m], confidence)
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard(final: pd.DataFrame, metrics: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """``mean_intervals`` per (task, method) of one row per run (``final_values`` or ``run_values``): columns task,
    method, seeds, and ``<metric>``, ``<metric>_lo``, ``<metric>_hi`` for each metric."""
    return mean_intervals(final, ["task", "method"], metrics, confidence)


def paired_differences(runs: pd.DataFrame, headline: dict[str, str], confidence: float = 0.95) -> pd.DataFrame:
    """The headline of every ordered pair of methods of a task, compared seed by seed (paired by seed).

    Args:
        runs: one row per run (``run_values``).
        headline: ``{task: headline metric}``.

    Returns:
        One row per (task, method, other): ``seeds`` shared by both, ``diff`` = mean over them of method - other,
        ``diff_lo`` / ``diff_hi`` its paired t-interval (``stats.paired_t_interval``; NaN below two shared seeds)
        and ``excludes_zero`` (the interval lies above or below 0).
    """
    rows = []
    for task, group in runs.groupby("task"):
        by_seed = group.pivot_table(index="seed", columns="method", values=headline[task])  # seeds x methods
        for a, b in itertools.permutations(by_seed.columns, 2):
            both = by_seed[[a, b]].dropna()
            diff, lo, hi = paired_t_interval(both[a], both[b], confidence)
            rows.append({"task": task, "method": a, "other": b, "seeds": len(both), "diff": diff, "diff_lo": lo,
                         "diff_hi": hi, "excludes_zero": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows, columns=["task", "method", "other", "seeds", "diff", "diff_lo", "diff_hi",
                                       "excludes_zero"])


def separation(pairs: pd.DataFrame, tasks: list[str] | None = None) -> pd.DataFrame:
    """Per task, the share of method pairs that the benchmark tells apart: whose paired difference interval
    (``paired_differences``) excludes 0. Each unordered pair counts once; pairs without an interval (fewer than two
    shared seeds) are left out. Returns columns task, pairs, separated, separation (NaN without pairs), one row per
    task of ``tasks`` (default: the tasks in ``pairs``)."""
    once = pairs[(pairs["method"] < pairs["other"]) & pairs["diff_lo"].notna()]
    counts = once.groupby("task")["excludes_zero"].agg(["size", "sum"])
    counts = counts.reindex(sorted(pairs["task"].unique()) if tasks is None else tasks, fill_value=0)
    out = pd.DataFrame({"task": counts.index, "pairs": counts["size"].to_numpy(),
                        "separated": counts["sum"].to_numpy()})
    out["separation"] = out["separated"] / out["pairs"].where(out["pairs"] > 0)
    return out


def rank_stability_table(runs: pd.DataFrame, headline: dict[str, str], confidence: float = 0.95,
                         n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per task, ``stats.rank_stability`` of the methods' headline over the seeds every method has.

    Returns columns task, methods, seeds, tau (mean Kendall tau of resampled to point ranking), tau_lo, tau_hi.
    """
    rows = []
    for task, group in runs.groupby("task"):
        values = group.pivot_table(index="method", columns="seed", values=headline[task]).dropna(axis=1)
        tau, lo, hi = rank_stability(values.to_numpy(), confidence, n_resamples, seed)  # methods x shared seeds
        rows.append({"task": task, "methods": values.shape[0], "seeds": values.shape[1], "tau": tau, "tau_lo": lo,
                     "tau_hi": hi})
    return pd.DataFrame(rows, columns=["task", "methods", "seeds", "tau", "tau_lo", "tau_hi"])


UPPER_FROM_DATA = "best method mean in the data"


def normalization_anchors(final: pd.DataFrame, metric_by_task: dict[str, str], baseline: str = "pretrained",
                          reference_scores: dict[str, float] | None = None) -> pd.DataFrame:
    """The two anchors of each task's normalized score: ``lower`` (0) the ``baseline``'s mean headline, ``upper``
    (1) the caller's ``reference_scores[task]`` (fixed: scores do not move when a method is added) or, where none is
    given, the best method mean in ``final`` (which moves when a better method is added; ``upper_source`` says
    which). Returns columns task, metric, lower, upper, upper_source."""
    rows = []
    for task, group in final.groupby("task"):
        means = group.groupby("method")[metric_by_task[task]].mean()
        given = reference_scores is not None and task in reference_scores
        rows.append({"task": task, "metric": metric_by_task[task], "lower": float(means.get(baseline, np.nan)),
                     "upper": float(reference_scores[task]) if given else float(means.max()),
                     "upper_source": "given" if given else UPPER_FROM_DATA})
    return pd.DataFrame(rows, columns=["task", "metric", "lower", "upper", "upper_source"])


def normalized_scores(final: pd.DataFrame, metric_by_task: dict[str, str], baseline: str = "pretrained",
                      reference_scores: dict[str, float] | None = None) -> pd.DataFrame:
    """Per run: (headline - lower) / (upper - lower) with its task's ``normalization_anchors``: 0 is the pretrained
    mean, 1 the task's reference score. NaN where an anchor is missing or both are equal. Returns columns task,
    method, seed, normalized."""
    anchors = normalization_anchors(final, metric_by_task, baseline, reference_scores).set_index("task")
    parts = []
    for task, group in final.groupby("task"):
        lower, upper = anchors.loc[task, "lower"], anchors.loc[task, "upper"]
        span = upper - lower if np.isfinite(upper - lower) and upper != lower else np.nan
        parts.append(group[RUN_KEYS].assign(normalized=(group[metric_by_task[task]] - lower) / span))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*RUN_KEYS, "normalized"])


def aggregate_iqm(normalized: pd.DataFrame, confidence: float = 0.95, n_resamples: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Per method, rliable's IQM of the normalized scores of its runs on all its tasks, with the stratified
    bootstrap interval (``stats.iqm_interval``). Returns columns method, tasks, runs, iqm, iqm_lo, iqm_hi, best
    IQM first."""
    rows = []
    for method, group in normalized.dropna(subset=["normalized"]).groupby("method"):
        by_task = [g["normalized"].to_numpy() for _, g in group.groupby("task")]
        point, lo, hi = iqm_interval(by_task, confidence, n_resamples, seed)
        rows.append({"method": method, "tasks": len(by_task), "runs": sum(map(len, by_task)), "iqm": point,
                     "iqm_lo": lo, "iqm_hi": hi})
    out = pd.DataFrame(rows, columns=["method", "tasks", "runs", "iqm", "iqm_lo", "iqm_hi"])
    return out.sort_values("iqm", ascending=False, ignore_index=True, kind="stable")


def improvement_probabilities(runs: pd.DataFrame, headline: dict[str, str], confidence: float = 0.95,
                              n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """rliable's probability of improvement P(method > other) over the tasks both have, for every ordered pair
    of methods, from the headline of each run (``stats.improvement_interval``; a per-task rank statistic, so the
    same on raw and normalized scores). P(other > method) is 1 - P(method > other), its interval mirrored.

    Returns columns method, other, tasks, poi, poi_lo, poi_hi.
    """
    scores = {key: g[headline[key[0]]].dropna().to_numpy() for key, g in runs.groupby(["task", "method"])}
    scores = {key: v for key, v in scores.items() if len(v)}
    rows = []
    for a, b in itertools.combinations(sorted({m for _, m in scores}), 2):
        tasks = sorted(t for t, m in scores if m == a and (t, b) in scores)
        if not tasks:
            continue
        p, lo, hi = improvement_interval([scores[t, a] for t in tasks], [scores[t, b] for t in tasks], confidence,
                                         n_resamples, seed)
        rows.append({"method": a, "other": b, "tasks": len(tasks), "poi": p, "poi_lo": lo, "poi_hi": hi})
        rows.append({"method": b, "other": a, "tasks": len(tasks), "poi": 1 - p, "poi_lo": 1 - hi, "poi_hi": 1 - lo})
    return pd.DataFrame(rows, columns=["method", "other", "tasks", "poi", "poi_lo", "poi_hi"])


def format_interval(mean: float, lo: float, hi: float, signed: bool = False, brackets: bool = False) -> str:
    """A mean with its interval as ``mean ± half-width`` (``brackets``: ``mean [lo, hi]``, for intervals that are
    not symmetric), every number rounded to the decimal place that shows the half-width to two significant
    digits. Without an interval (NaN bounds) or with a zero-width one, the mean to three significant digits (an
    integer in full), the zero-width interval still written as one: ``512 ± 0``, and with ``brackets`` the three
    digits kept in every number (``1.00 [1.00, 1.00]``, as a rank stability of 1 whose every resample ranks alike,
    beside ``0.81 [0.50, 1.00]``); "n/a" without a mean."""
    sign = "+" if signed else ""
    if not np.isfinite(mean):
        return "n/a"
    point = f"{mean:{sign}.0f}" if mean == round(mean) else f"{mean:{sign}.3g}"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return point
    half = (hi - lo) / 2
    if half <= 1e-12 * max(1.0, abs(mean)):
        if not brackets:
            return f"{point} ± 0"
        d = int(min(8, max(0, 2 - np.floor(np.log10(abs(mean)))))) if mean else 2  # three significant digits
        return f"{mean:{sign}.{d}f} [{mean:.{d}f}, {mean:.{d}f}]"
    d = int(min(8, max(0, 1 - np.floor(np.log10(half)))))
    if brackets:
        return f"{mean:{sign}.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"
    return f"{mean:{sign}.{d}f} ± {half:.{d}f}"


DIFF_BASELINES = ("pretrained", "best-of-n")
"""The methods every other method's headline is compared with, seed by seed, in each task's table."""

DIFF_NOTE = ("Δ vs X: the headline minus X's on the seeds both ran (paired by seed), mean ± half-width of the paired "
             "95% t-interval; * the interval excludes 0")


def task_table(task: ReportTask, board: pd.DataFrame,
               pairs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, set], list[str]]:
    """One task's leaderboard as text cells, for the markdown and the LaTeX renderer.

    Columns: method, seeds, the headline at full budget, the headline at matched drift (tasks with a drift budget;
    "ref." for ``REFERENCE_METHODS``), the paired differences to each of ``DIFF_BASELINES`` the task has, then the
    task's other metrics. Rows: best headline first. A column without a value in any row is left out.

    Args:
        task: the task's ``ReportTask``.
        board: ``leaderboard`` rows (of this and other tasks).
        pairs: ``paired_differences`` rows.

    Returns:
        ``(cells, best, notes)``: the cells (one row per method, one column per human label), ``{column label:
        the methods with the best mean (all of them in a tie; none when every row ties)}`` for the columns where
        higher is better, and the table's notes.
    """
    board = board[board["task"] == task.id].sort_values([task.headline, "method"], ascending=[False, True])
    methods = board["method"].tolist()
    text: dict[str, list[str]] = {"method": methods, "seeds": [str(n) for n in board["seeds"]]}
    means: dict[str, list[float]] = {}
    ranked: set[str] = set()

    def add(label: str, cells: list[str], values: list[float], rank: bool) -> None:
        if np.isfinite(values).any():
            text[label], means[label] = cells, values
            if rank:
                ranked.add(label)

    def metric_column(metric: str) -> None:
        if metric not in board:
            return
        apart = [metric.endswith(DRIFT_SUFFIX) and m in REFERENCE_METHODS for m in methods]  # shown as "ref."
        stats = zip(apart, board[metric], board[f"{metric}_lo"], board[f"{metric}_hi"])
        cells = ["ref." if ref else format_interval(v, lo, hi) for ref, v, lo, hi in stats]
        values = [np.nan if ref else v for ref, v in zip(apart, board[metric])]
        add(metric_label(metric), cells, values, higher_is_better(metric))

    notes = []
    metric_column(task.headline)
    if task.drift_budget is not None:
        metric_column(task.headline + DRIFT_SUFFIX)
        if metric_label(task.headline + DRIFT_SUFFIX) in text and set(methods) & set(REFERENCE_METHODS):
            notes.append(REFERENCE_NOTE)
    diffs = pairs[pairs["task"] == task.id].set_index(["method", "other"])
    for base in (b for b in DIFF_BASELINES if b in methods and len(methods) > 1):
        rows = [diffs.loc[(m, base)] if m != base else None for m in methods]
        cells = ["—" if r is None else format_interval(r["diff"], r["diff_lo"], r["diff_hi"], signed=True)
                 + ("*" if r["excludes_zero"] else "") for r in rows]
        add(f"Δ vs {base}", cells, [np.nan if r is None else r["diff"] for r in rows], False)
    if any(label.startswith("Δ") for label in text):
        notes.append(DIFF_NOTE)
    for metric in task.metrics:
        if metric != task.headline:
            metric_column(metric)
    best = {label: {m for m, v in zip(methods, means[label]) if v == np.nanmax(means[label])} for label in ranked}
    best = {label: tied for label, tied in best.items() if len(tied) < len(methods)}  # all tied: nothing stands out
    return pd.DataFrame(text), best, notes


def markdown_table(cells: pd.DataFrame, best: dict[str, set]) -> str:
    """``task_table``'s cells as a markdown table, the best cells of each ranked column in bold."""
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    for _, row in cells.iterrows():
        lines.append("| " + " | ".join(f"**{row[c]}**" if row["method"] in best.get(c, ()) else row[c]
                                       for c in cells.columns) + " |")
    return "\n".join(lines)


_TEX = str.maketrans({"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                      "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"})


def tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the report's symbols (±, Δ, —, *) typeset."""
    symbols = {"±": r"$\pm$", "Δ": r"$\Delta$", "—": "--", "*": r"$^{*}$", "<=": r"$\le$"}
    out = str(text).translate(_TEX)
    for symbol, typeset in symbols.items():
        out = out.replace(symbol, typeset)
    return out
