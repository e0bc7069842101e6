"""Run records -> a tidy table -> a leaderboard with bootstrap confidence intervals.

The report reads results, never the training code: run folders written by the runner (``summary.json`` and
``metrics.jsonl``) or an MLflow store. The tidy table has one row per (task, method, seed, queries, metric)
with its ``value``; the leaderboard aggregates the final evaluation over seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

TIDY_COLUMNS = ["task", "method", "seed", "queries", "metric", "value"]


def load_runs(root: Path | str, tasks: list[str] | None = None) -> pd.DataFrame:
    """Every evaluation point of every finished run under ``root/runs`` as a tidy frame.

    Also adds metric ``wall_time_s`` at the final query count of each run (from its summary).
    Unfinished runs (no ``summary.json`` with status FINISHED) are skipped. Two finished runs of one
    (task, method, seed) with different configs raise ``ConfigError``: averaging them would mix settings.
    """
    from ..tracking import read_metrics

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
        key = (cfg["task"], cfg["method"], cfg["seed"])
        if key in seen:
            from ..errors import ConfigError

            raise ConfigError(f"two runs of {key[1]} seed {key[2]} on {key[0]} under {root} ({seen[key]} and "
                              f"{summary_path.parent.name}); a report needs one config per (task, method, seed)")
        seen[key] = summary_path.parent.name
        frames.append(long[TIDY_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=TIDY_COLUMNS)
    return pd.concat(frames, ignore_index=True)


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


def load_mlflow(tracking_uri: str, experiments: list[str]) -> pd.DataFrame:
    """The same tidy frame from an MLflow store: finished runs of the named experiments (= task ids)."""
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    rows = []
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            continue
        for run in client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'"):
            tags = run.data.tags
            if "method" not in tags:  # a sweep/study parent run
                continue
            for key in run.data.metrics:
                if not key.startswith(("eval/", "cost/")) and key != "wall_time_s":
                    continue
                for m in client.get_metric_history(run.info.run_id, key):
                    rows.append((name, tags["method"], int(tags["seed"]), m.step, key, m.value))
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


def final_values(tidy: pd.DataFrame) -> pd.DataFrame:
    """Wide frame: one row per (task, method, seed) with each metric's value at that run's last evaluation."""
    last = tidy.sort_values("queries").groupby(["task", "method", "seed", "metric"], as_index=False).last()
    return last.pivot_table(index=["task", "method", "seed"], columns="metric", values="value").reset_index()


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (scipy.stats.bootstrap, 10,000 resamples, seeded).

    With fewer than two values the interval is the value itself (NaN if there is none).
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2 or np.ptp(values) == 0:
        v = float(values.mean()) if len(values) else float("nan")
        return v, v
    res = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=10_000, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def leaderboard(final: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean and 95% bootstrap CI over seeds per (task, method) for each metric.

    Returns a frame with columns task, method, seeds, and ``<metric>``, ``<metric>_lo``, ``<metric>_hi``.
    """
    rows = []
    for (task, method), group in final.groupby(["task", "method"]):
        row = {"task": task, "method": method, "seeds": len(group)}
        for m in metrics:
            if m not in group:
                continue
            vals = group[m].to_numpy(dtype=float)
            row[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            row[f"{m}_lo"], row[f"{m}_hi"] = bootstrap_ci(vals)
        rows.append(row)
    return pd.DataFrame(rows)


def normalized_scores(final: pd.DataFrame, metric_by_task: dict[str, str], baseline: str = "pretrained",
                      best_known: dict[str, float] | None = None) -> pd.DataFrame:
    """Per run: (score - pretrained mean) / (best known - pretrained mean) on each task's headline metric.

    0 is the pretrained model, 1 the best known score: ``best_known[task]`` when given, else the best method
    mean in ``final``. Returns columns task, method, seed, normalized.
    """
    rows = []
    for task, group in final.groupby("task"):
        metric = metric_by_task[task]
        base = group.loc[group["method"] == baseline, metric].mean()
        top = (best_known or {}).get(task, group.groupby("method")[metric].mean().max())
        span = top - base
        for _, r in group.iterrows():
            value = (r[metric] - base) / span if span and np.isfinite(span) else float("nan")
            rows.append({"task": task, "method": r["method"], "seed": r["seed"], "normalized": value})
    return pd.DataFrame(rows)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean (mean of the middle 50%), the aggregate rliable recommends (Agarwal et al. 2021)."""
    from scipy.stats import trim_mean

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(trim_mean(values, 0.25)) if len(values) else float("nan")


def aggregate_iqm(normalized: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """IQM of normalized scores over all (task, seed) runs per method, with a 95% bootstrap CI
    (resampling runs within each task, i.e. stratified by task)."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, group in normalized.groupby("method"):
        by_task = [g["normalized"].to_numpy() for _, g in group.groupby("task")]
        point = iqm(np.concatenate(by_task))
        boots = [iqm(np.concatenate([rng.choice(v, len(v)) for v in by_task])) for _ in range(2000)]
        lo, hi = np.nanpercentile(boots, [2.5, 97.5])
        rows.append({"method": method, "iqm": point, "iqm_lo": float(lo), "iqm_hi": float(hi),
                     "runs": int(sum(len(v) for v in by_task))})
    return pd.DataFrame(rows).sort_values("iqm", ascending=False, ignore_index=True)


def format_cell(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    """``mean [lo, hi]`` with ``digits`` significant digits."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def to_markdown(board: pd.DataFrame, metrics: list[str], labels: dict[str, str] | None = None) -> str:
    """A markdown table per task: rows methods (sorted by the first metric, best first), cells mean [95% CI]."""
    labels = labels or {}
    out = []
    for task, group in board.groupby("task"):
        group = group.sort_values(metrics[0], ascending=False)
        present = [m for m in metrics if m in group]
        out.append(f"### {task}\n")
        out.append("| method | seeds | " + " | ".join(labels.get(m, m) for m in present) + " |")
        out.append("|---|---|" + "---|" * len(present))
        for _, r in group.iterrows():
            cells = [format_cell(r[m], r[f"{m}_lo"], r[f"{m}_hi"]) for m in present]
            out.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def to_latex(board: pd.DataFrame, metrics: list[str], labels: dict[str, str] | None = None) -> str:
    """A booktabs LaTeX table (one block per task), cells ``mean [lo, hi]``."""
    labels = labels or {}
    present = [m for m in metrics if m in board]
    head = " & ".join(["method", *[labels.get(m, m).replace("_", r"\_") for m in present]])
    lines = [r"\begin{tabular}{l" + "r" * len(present) + "}", r"\toprule", head + r" \\"]
    for task, group in board.groupby("task"):
        lines += [r"\midrule", rf"\multicolumn{{{len(present) + 1}}}{{l}}{{\texttt{{{task}}}}} \\"]
        for _, r in group.sort_values(present[0], ascending=False).iterrows():
            cells = [format_cell(r[m], r[f"{m}_lo"], r[f"{m}_hi"]) for m in present]
            lines.append(" & ".join([r["method"], *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)
