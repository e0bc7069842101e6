"""Reports: leaderboard tables and paper figures from run records (never from the training code).

``write_report(tidy, out_dir)`` writes ``leaderboard.{md,csv,tex}``, the statistics behind them as CSVs and
``figures/*.{pdf,png}``, and the inputs that regenerate all of it (``curves.csv``, ``report.json``, ``grids/``):
``rebuild_report(out_dir)`` rewrites the identical report from those files alone, without run folders or MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DirtyTreeError
from ..grids import GRID_PANELS
from ..tracking import GIT_SHA_TAG, run_tags
from .dpi import check_records
from .labels import (DRIFT_SUFFIX, JUDGE_DEFINITION, METRIC_DEFINITIONS, REFERENCE_NOTE, ReportTask, metric_label,
                     report_task, task_metrics)
from .latex import METHOD_WIDTH_PT, abbreviations, legend, main_table, placement_note, task_detail_table, text_width
from .plots import HV_MARGIN, grid_figure, plot_curves, plot_frontier, plot_overoptimization, plot_pareto
from .stats import COVERAGE_TRIALS, t_interval_coverage
from .tables import (COMMIT, DIFF_NOTE, RUN_KEYS, UPPER_FROM_DATA, aggregate_iqm, canonical, final_grids,
                     format_interval, improvement_probabilities, leaderboard, load_mlflow, load_runs, markdown_table,
                     normalization_anchors, normalized_scores, paired_differences, rank_stability_table, run_values,
                     separation, task_table)

__all__ = ["current_commit", "final_grids", "load_mlflow", "load_runs", "read_saved_inputs", "rebuild_report",
           "task_metrics", "write_report"]


CONFIDENCE = 0.95
"""Every interval of the report is a 95% interval."""
BOOTSTRAP_RESAMPLES = 2000
"""Resamples of the stratified bootstraps (IQM, probability of improvement)."""
RANK_RESAMPLES = 1000
"""Seed resamples of the rank-stability bootstrap, per task."""


def _commits(tidy: pd.DataFrame, tree_commit: str | None, allow_dirty: bool) -> tuple[pd.Series, list[str]]:
    """Each run's commit (indexed by ``RUN_KEYS``; empty without a ``commit`` column) and the dirty commits among
    them and ``tree_commit``; raises ``DirtyTreeError`` on a dirty one unless ``allow_dirty``."""
    commits = (tidy.groupby(RUN_KEYS)[COMMIT].first() if COMMIT in tidy
               else pd.Series(dtype=str, index=pd.MultiIndex.from_tuples([], names=RUN_KEYS), name=COMMIT))
    dirty = sorted({c for c in commits if c.endswith(DIRTY)} | ({tree_commit} if (tree_commit or "").endswith(DIRTY)
                                                                 else set()))
    if dirty and not allow_dirty:
        raise DirtyTreeError(f"refusing to publish a report made from an uncommitted tree ({', '.join(dirty)}): "
                             "commit the changes (and rerun the runs made from them), or pass --allow-dirty to "
                             "publish it marked")
    return commits, dirty


def write_report(tidy: pd.DataFrame, out_dir: Path | str, grids: dict[str, dict[str, Path]] | None = None, *,
                 reference_scores: dict[str, float] | None = None, tasks: dict[str, ReportTask] | None = None,
                 seed: int = 0, allow_dirty: bool = False, tree_commit: str | None = None) -> dict:
    """Write the leaderboard, its statistics and the figures for every task in ``tidy`` into ``out_dir``.

    Provenance: the report lists the commits of the runs (``tidy``'s ``commit`` column, which ``load_runs`` and
    ``load_mlflow`` fill from each run's ``benchsuite.git_sha`` tag) and refuses, with ``DirtyTreeError`` (exit code
    2) and before writing anything, to publish results of an uncommitted tree: a run commit ending in ``-dirty``, or
    ``tree_commit`` (the code making the report) ending in it. The check reads the runs' recorded commits, not the
    git state of wherever the function is called, so that a report of given data is the same in any checkout (the
    test suite runs in one that may be dirty; synthetic frames without a ``commit`` column have nothing to refuse);
    the entry points (``benchsuite report``) pass ``tree_commit``. With ``allow_dirty`` it publishes and marks the
    report: a line in ``leaderboard.md``, the legend and a comment atop every ``.tex`` file saying "made from an
    uncommitted tree: <sha>".

    Args:
        tidy: the frame of ``load_runs`` / ``load_mlflow``: columns task, method, seed, queries, metric, value.
        out_dir: the report folder (created).
        grids: optional ``{task: {method: sample-grid PNG}}`` for the sample-grid figure (copied to ``grids/``).
        reference_scores: optional ``{task: headline value}``, the upper anchor (1) of each task's normalized score,
            e.g. a published best or the oracle's optimum: fixed, so that normalized scores and IQMs do not move when
            a method is added. A task without one falls back to the best method mean in the data, and the report
            says so.
        tasks: ``{task: ReportTask}`` to use instead of reading the task cards (``rebuild_report`` passes the saved
            ones); a task missing here is read from its card (or guessed from the data without one).
        seed: seeds every bootstrap, so that the report is reproducible to the byte.
        allow_dirty: publish results of an uncommitted tree, marked (see above).
        tree_commit: the commit of the code making the report (``current_commit()``), recorded in ``report.json``
            and refused when dirty; None: not recorded or checked.

    Files: ``leaderboard.md`` (tables, statistics and metric definitions), ``tables/`` (the LaTeX tables for a paper,
    ``benchsuite.report.latex``: ``legend.tex``, ``main.tex``, ``<task>.tex``), ``leaderboard.tex`` (the same in one
    file), ``leaderboard.csv`` (mean and t-interval per task, method and metric, at full budget and at matched
    drift), ``paired_differences.csv``, ``tasks.csv`` (separation, rank stability, normalization anchors and
    hypervolume per task), ``aggregate.csv`` (IQM), ``probability_of_improvement.csv``, ``per_seed.csv`` (one row
    per run: final and matched-drift value of every metric, normalized score, commit), ``curves.csv`` (the tidy frame of
    evaluation points), ``report.json`` (task metadata, reference scores, seed), ``figures/`` and ``grids/``.

    Returns:
        ``{"leaderboard", "aggregate", "paired", "tasks", "probability_of_improvement", "per_seed": frames,
        "figures": [PNG paths], "hypervolume": {task: float}, "separation": {task: share of method pairs told
        apart}, "rank_stability": {task: mean Kendall tau}}``.
    """
    tidy = canonical(tidy)
    commits, dirty = _commits(tidy, tree_commit, allow_dirty)
    check_records(tidy)  # a path KL below a bounded judge's data-processing bound: refused before anything is written
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    ids = sorted(tidy["task"].unique())
    tasks = {t: (tasks or {}).get(t) or report_task(t, sorted(tidy.loc[tidy["task"] == t, "metric"].unique()))
             for t in ids}
    headline = {t: tasks[t].headline for t in ids}
    # every statistic reads the headline at matched drift where the task has a drift budget (stats_metric)
    stat = {t: stats_metric(tasks[t]) for t in ids}

    runs = run_values(tidy, tasks)
    board = pd.concat([leaderboard(runs[runs["task"] == t], [*tasks[t].metrics, *(
        m + DRIFT_SUFFIX for m in tasks[t].metrics)], CONFIDENCE) for t in ids], ignore_index=True)
    pairs = paired_differences(runs, stat, CONFIDENCE)
    stability = rank_stability_table(runs, stat, CONFIDENCE, RANK_RESAMPLES, seed)
    anchors = normalization_anchors(runs, stat, reference_scores=reference_scores)
    normalized = normalized_scores(runs, stat, reference_scores=reference_scores)
    aggregate = aggregate_iqm(normalized, CONFIDENCE, BOOTSTRAP_RESAMPLES, seed)
    improvement = improvement_probabilities(runs, stat, CONFIDENCE, BOOTSTRAP_RESAMPLES, seed)
    summary = pd.DataFrame({"task": ids, "headline": [stat[t] for t in ids],
                            "drift_budget": [tasks[t].drift_budget for t in ids]})
    for part in (separation(pairs, ids), stability, anchors.drop(columns="metric")):
        summary = summary.merge(part, on="task", how="left")
    per_seed = runs.merge(normalized, on=RUN_KEYS, how="left")
    if len(commits):
        per_seed = per_seed.merge(commits.reset_index(), on=RUN_KEYS, how="left")
    provenance = Provenance(sorted(set(commits)), tree_commit, dirty)

    figures, hv = [], {}
    grids = _keep_grids(grids or {}, out / "grids")
    for t in ids:
        figures += _task_figures(tidy, runs, tasks[t], out / "figures", grids.get(t), hv)
    summary["hypervolume"] = summary["task"].map(hv)

    markdown = _markdown(tasks, board, pairs, summary, aggregate, improvement, provenance)
    (out / "leaderboard.md").write_text(markdown)
    _write_latex(out, tasks, board, pairs, stat, provenance)
    for name, frame in (("leaderboard", board), ("paired_differences", pairs), ("tasks", summary),
                        ("aggregate", aggregate), ("probability_of_improvement", improvement),
                        ("per_seed", per_seed), ("curves", tidy)):
        frame.to_csv(out / f"{name}.csv", index=False)
    settings = {"seed": seed, "reference_scores": reference_scores or {},
                "tasks": {t: dataclasses.asdict(tasks[t]) for t in ids}}
    if tree_commit is not None:
        settings["tree_commit"] = tree_commit
    (out / "report.json").write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    return {"leaderboard": board, "aggregate": aggregate, "paired": pairs, "tasks": summary,
            "probability_of_improvement": improvement, "per_seed": per_seed, "figures": figures, "hypervolume": hv,
            "separation": dict(zip(summary["task"], summary["separation"])),
            "rank_stability": dict(zip(summary["task"], summary["tau"]))}


DIRTY = "-dirty"
"""Suffix of a commit (``benchsuite.git_sha``) whose tree had uncommitted changes."""


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a report's results come from: the distinct ``commits`` of its runs, the ``tree`` commit of the code
    that made it (None: not recorded) and the ``dirty`` ones among them (published only with ``allow_dirty``)."""

    commits: list[str]
    tree: str | None
    dirty: list[str]

    @property
    def mark(self) -> str:
        """The line that marks a report made from an uncommitted tree, or empty."""
        return f"made from an uncommitted tree: {', '.join(self.dirty)}" if self.dirty else ""


def current_commit() -> str:
    """The commit of the benchsuite code running now (``tracking.run_tags``' ``benchsuite.git_sha``: ``-dirty`` when
    its tree has uncommitted changes, "unknown" outside git), for ``write_report``'s ``tree_commit``."""
    return run_tags()[GIT_SHA_TAG]


def rebuild_report(folder: Path | str, out_dir: Path | str | None = None) -> dict:
    """Rewrite the report that ``write_report`` saved in ``folder`` from its own files alone: ``curves.csv`` (the
    tidy frame), ``report.json`` (task metadata, reference scores, seed) and ``grids/``; no run folders, no MLflow,
    no task cards, no git (a card edited since, e.g. a new drift budget, does not change a rebuilt report: run
    ``write_report`` on ``curves.csv`` for that). Writes into ``out_dir`` (default: ``folder`` itself); the tables
    come out byte-identical. Returns what ``write_report`` returns."""
    folder = Path(folder)
    settings = json.loads((folder / "report.json").read_text())
    tidy, grids = read_saved_inputs(folder)
    tasks = {t: ReportTask.from_json(d) for t, d in settings["tasks"].items()}
    # a written report passed the provenance check once (or was published marked): rebuilt, it keeps its marks
    return write_report(tidy, folder if out_dir is None else out_dir, grids=grids,
                        reference_scores=settings["reference_scores"], tasks=tasks, seed=settings["seed"],
                        allow_dirty=True, tree_commit=settings.get("tree_commit"))


def read_saved_inputs(folder: Path | str) -> tuple[pd.DataFrame, dict[str, dict[str, Path]]]:
    """The tidy frame (``curves.csv``, every float read back exactly) and the ``{task: {method: PNG}}`` sample grids
    (``grids/``) that ``write_report`` saved in ``folder``."""
    folder = Path(folder)
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}  # pandas 3: default
    tidy = pd.read_csv(folder / "curves.csv", **exact)
    grids = {d.name: {png.stem: png for png in sorted(d.glob("*.png"))}
             for d in sorted((folder / "grids").glob("*")) if d.is_dir()}
    return tidy, grids


def _keep_grids(grids: dict[str, dict[str, Path]], folder: Path) -> dict[str, dict[str, Path]]:
    """The sample-grid PNGs copied to ``folder/<task>/<method>.png`` (the report's own copy, from which
    ``rebuild_report`` redraws the sample figures); returns the copies' paths."""
    kept: dict[str, dict[str, Path]] = {}
    for task, by_method in grids.items():
        (folder / task).mkdir(parents=True, exist_ok=True)
        for method, png in by_method.items():
            copy = folder / task / f"{method}.png"
            if Path(png).resolve() != copy.resolve():
                shutil.copyfile(png, copy)
            kept.setdefault(task, {})[method] = copy
    return kept


def _task_figures(tidy: pd.DataFrame, runs: pd.DataFrame, task: ReportTask, folder: Path,
                  grids: dict[str, Path] | None, hv: dict[str, float]) -> list[Path]:
    """One task's figures (learning curves, reward-diversity Pareto, reward-drift frontier, over-optimization and
    sample grids where the data has them); stores the Pareto hypervolume in ``hv``."""
    t, present = task.id, set(tidy.loc[tidy["task"] == task.id, "metric"])
    figures = [plot_curves(tidy, t, task.headline, folder / f"{t}_curves")]
    if {task.judges[0], "eval/diversity"} <= present:
        # y: the policy's eval judge, like the diversity on x (an online task's headline is a query statistic)
        path, hv[t] = plot_pareto(runs, t, task.judges[0], "eval/diversity", folder / f"{t}_pareto")
        figures.append(path)
    if "eval/kl" in present:
        figures.append(plot_frontier(tidy, t, task.headline, folder / f"{t}_frontier", task.drift_budget))
        if len(task.judges) > 1:
            figures.append(plot_overoptimization(tidy, t, task.judges[0], task.judges[1],
                                                 folder / f"{t}_overoptimization"))
    if grids:
        crop, per_row = GRID_PANELS[task.grid_panel]  # the task's sample space chose the panel (grid_panel)
        figures.append(grid_figure(grids, folder / f"{t}_samples", title=t, crop=crop, per_row=per_row))
    return figures


def stats_metric(task: ReportTask) -> str:
    """The column every statistic of ``task`` reads: its headline at matched drift (``<headline>@drift``) when the
    task has a drift budget, else its headline at full budget."""
    return task.headline + DRIFT_SUFFIX if task.drift_budget is not None else task.headline


INTERVAL_RULE = ("mean ± half-width of the 95% Student-t interval over seeds (t(0.975, n - 1) s / sqrt(n)), the "
                 "half-width to two significant digits and the mean to the same decimal place")

STATISTIC_DEFINITIONS = {
    "at matched drift": "a run's value at its evaluation with the best headline among those whose path KL is within "
                        "the task's drift budget (the first evaluation, the pretrained model, always qualifies); on "
                        "a card with a selection set, the headline and the KL that choose the evaluation are read on "
                        "the selection set and the value reported is the test set's. Methods that fine-tune nothing "
                        "(pretrained, best-of-N, BO) enter with their final value. On tasks with a drift budget "
                        "every statistic below (paired differences, separation, rank stability, normalized scores, "
                        "IQM, probability of improvement) is computed on this value",
    "separation": "the share of a task's method pairs whose paired 95% t-interval of the headline difference (seed "
                  "by seed) excludes 0: how many comparisons the task's seeds decide",
    "rank stability": "Kendall tau between the ranking of methods by mean headline and the ranking in each of "
                      f"{RANK_RESAMPLES} resamples of the seeds (one resample for all methods of the task): mean "
                      "[95% percentile interval]; 1 = every resample ranks alike",
    "hypervolume": "area of the reward-diversity plane (the policy's eval reward against diversity, at the final "
                   "evaluation) dominated by the Pareto front of the method means above the task's fixed reference "
                   f"point: the pretrained mean minus {HV_MARGIN:.0%} of its absolute value on each axis (not the "
                   "figure's worst run, so it compares across reports of a task)",
}


def coverage_sentence(board: pd.DataFrame) -> str:
    """The measured coverage of the cells' t-interval at the report's seed count (the most common number of seeds
    of a method on a task, the smallest of a tie): ``stats.t_interval_coverage``, normal and skewed values."""
    counts = board["seeds"].value_counts()
    n = int(min(counts[counts == counts.max()].index)) if len(counts) else 0
    if n < 2:
        return "No interval at one seed."
    measured = t_interval_coverage(n, CONFIDENCE)
    return (f"Simulated coverage of this {CONFIDENCE:.0%} interval at this report's {n} seeds ({COVERAGE_TRIALS} "
            f"samples): {measured['normal']:.1%} for normal per-seed values, {measured['skewed']:.1%} for skewed "
            "ones (gamma, skewness 1).")


def _task_lines(task: ReportTask, row) -> list[str]:
    """The lines above a task's table: what its headline and judges measure, its drift budget, separation and
    rank stability."""
    rewards = dict(task.judge_rewards)
    lines = [f"Headline: {metric_label(task.headline)} (`{task.headline}`)"
             + (f", {rewards[task.headline]}." if task.headline in rewards else ".")]
    lines += [f"Judge {metric_label(j)} (`{j}`): {rewards[j]}." for j in task.judges if j != task.headline
              and j in rewards]
    tolerance = "".join(f", {metric_label(f'eval/{j}_mean')} at most {t:g} below the run's start"
                        for j, t in task.judge_tolerance)
    lines.append(f"Drift budget: path KL <= {task.drift_budget:g} nats{tolerance}; statistics at matched drift."
                 if task.drift_budget is not None
                 else "Drift budget: none (the task is compared at full budget only).")
    lines.append(f"Separation: {row.separation:.2f} ({row.separated} of {row.pairs} method pairs)."
                 if row.pairs else "Separation: n/a (no two methods share two seeds).")
    lines.append(f"Rank stability: Kendall tau {format_interval(row.tau, row.tau_lo, row.tau_hi, brackets=True)} "
                 f"(methods: {row.methods}, seeds all of them ran: {row.seeds}).")
    if np.isfinite(row.hypervolume):
        lines.append(f"Hypervolume: {row.hypervolume:.3g}.")
    if task.note:
        lines.append(f"Note: {task.note}.")
    return [line + "  " for line in lines[:-1]] + lines[-1:]  # markdown line breaks


def _markdown(tasks: dict[str, ReportTask], board: pd.DataFrame, pairs: pd.DataFrame, summary: pd.DataFrame,
              aggregate: pd.DataFrame, improvement: pd.DataFrame, provenance: Provenance) -> str:
    """``leaderboard.md``: the provenance, the rules, the metric definitions (once), one section per task, the
    aggregate."""
    shown = {m for t in tasks.values() for m in t.metrics}
    md = ["# Leaderboard", ""]
    if provenance.mark:
        md += [f"**Warning: {provenance.mark}.**", ""]
    if provenance.commits:
        md += ["Commits of the runs: " + ", ".join(f"`{c}`" for c in provenance.commits)
               + (f"; report made at `{provenance.tree}`" if provenance.tree else "") + ".", ""]
    md += [f"Cells: {INTERVAL_RULE}. {coverage_sentence(board)} Values at the final evaluation (the full budget) "
           "unless marked at matched drift; rows sorted by the headline at full budget; bold: the best mean of each "
           "column where higher is better (ties: all).", "", "## Metrics", ""]
    md += [f"- **{label}** (`{key}`): {text}." for key, (label, text) in METRIC_DEFINITIONS.items() if key in shown]
    md.append(f"- **judge means** (`eval/<judge>_mean`, e.g. JPEG reward): {JUDGE_DEFINITION}.")
    md += [f"- **{name}**: {text}." for name, text in STATISTIC_DEFINITIONS.items()
           if name != "at matched drift" or any(t.drift_budget is not None for t in tasks.values())]
    for row in summary.itertuples():
        task = tasks[row.task]
        cells, best, notes = task_table(task, board, pairs)
        md += ["", f"## {task.id}", "", *_task_lines(task, row), "", markdown_table(cells, best)]
        md += ["", "; ".join(notes) + "."] if notes else []
    md += ["", "## Aggregate over tasks", "",
           "Normalized score of a run: (headline - lower) / (upper - lower), lower = the pretrained model's mean on "
           "the task, upper = the task's reference score where the report was given one (fixed), else the best "
           "method mean in the data (it moves when a better method is added).", "",
           "| task | headline | lower (pretrained mean) | upper | upper from |", "|---|---|---|---|---|"]
    md += [f"| {r.task} | {metric_label(r.headline)} | {r.lower:.4g} | {r.upper:.4g} | {r.upper_source} |"
           for r in summary.itertuples()]
    if (summary["upper_source"] == UPPER_FROM_DATA).any():
        md += ["", "Tasks whose upper anchor is the best method mean in the data: their normalized scores and the "
               "IQMs move when a method is added; pass reference_scores to fix them."]
    md += ["", "IQM (interquartile mean, rliable) of the normalized scores of all runs of a method, with the 95% "
           f"stratified bootstrap interval (runs resampled within each task, percentile, {BOOTSTRAP_RESAMPLES} "
           "resamples); it under-covers at benchmark seed counts: tests/test_report_stats.py simulates 85-93% at 3 "
           "tasks x 5 normal seeds for its nominal 95% (not measured at this report's counts).",
           "", "| method | IQM [95% CI] | tasks | runs |", "|---|---|---|---|"]
    md += [f"| {r.method} | {format_interval(r.iqm, r.iqm_lo, r.iqm_hi, brackets=True)} | {r.tasks} | {r.runs} |"
           for r in aggregate.itertuples()]
    if len(improvement):
        methods = [m for m in aggregate["method"] if m in set(improvement["method"])]
        poi = improvement.set_index(["method", "other"])["poi"]
        md += ["", "Probability of improvement P(row > column) (rliable: per task, the chance that a run of the row "
               "method beats a run of the column method, Mann-Whitney U / (n m), averaged over the tasks both ran); "
               "95% stratified bootstrap intervals in probability_of_improvement.csv.", "",
               "| P(row > column) | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        md += [f"| {a} | " + " | ".join("—" if a == b else f"{poi[a, b]:.2f}" if (a, b) in poi.index else "n/a"
                                        for b in methods) + " |" for a in methods]
    return "\n".join(md) + "\n"


TASK_WIDTH_PT = 48.0
"""Task ids wider than this (at ``\\footnotesize``) make the tables name every task T1, T2, ... (ids in order), with
a key in the legend: a column of the main table is about as wide as one interval."""


def _write_latex(out: Path, tasks: dict[str, ReportTask], board: pd.DataFrame, pairs: pd.DataFrame,
                 stat: dict[str, str], provenance: Provenance) -> None:
    """``tables/legend.tex``, ``tables/main.tex`` and ``tables/<task>.tex`` (``benchsuite.report.latex``), and
    ``leaderboard.tex``: the same text in one file, the legend first."""
    ids = list(tasks)
    methods = abbreviations(sorted(board["method"].unique()), METHOD_WIDTH_PT)
    task_keys = (abbreviations(ids, 0.0, prefix="T") if any(text_width(t) > TASK_WIDTH_PT for t in ids) else {})
    shown = {m.removesuffix(DRIFT_SUFFIX) for t in tasks.values() for m in t.metrics}
    definitions = [("Cells", f"{INTERVAL_RULE}; values at the final evaluation (the full budget) unless marked at "
                    f"matched drift. {coverage_sentence(board).removesuffix('.')}"),
                   ("Main table", "each task's headline (at matched drift on tasks with a drift budget) and, on the "
                    "line below, its paired difference (as Δ vs X below) to the task's best reference method: the "
                    "one of pretrained, best-of-N and BO with the best mean, whose own line shows —"),
                   ("Δ vs X", DIFF_NOTE.removeprefix("Δ vs X: ")),
                   ("Bold", "the best mean of each column where higher is better (ties: all)")]
    if any(t.drift_budget is not None for t in tasks.values()):
        definitions += [("At matched drift", STATISTIC_DEFINITIONS["at matched drift"]),
                        ("ref.", REFERENCE_NOTE.removeprefix("ref.: "))]
    definitions += [(label, text) for key, (label, text) in METRIC_DEFINITIONS.items() if key in shown]
    definitions.append(("Judge means", JUDGE_DEFINITION))
    for t in ids:
        task, rewards = tasks[t], dict(tasks[t].judge_rewards)
        judges = ", ".join(f"{metric_label(j)}: {rewards[j]}" for j in task.judges if j in rewards)
        budget = (f"drift budget {task.drift_budget:g} nats" if task.drift_budget is not None
                  else "no drift budget")
        note = task.note.replace(task.headline, metric_label(task.headline))  # no raw keys in a paper
        definitions.append((t, f"headline {metric_label(task.headline)}; {budget}"
                            + (f"; {judges}" if judges else "") + (f"; {note}" if note else "")))
    definitions.append(("Placement", placement_note()))
    keys = [("Methods", methods), ("Tasks", task_keys)]
    folder = out / "tables"
    folder.mkdir(exist_ok=True)
    mark = provenance.mark
    parts = {"legend": (f"% {mark}\n" if mark else "") + legend(definitions, keys, provenance.commits,
                                                                  provenance.dirty),
             "main": main_table(tasks, board, pairs, stat, methods, task_keys, mark)}
    for t in ids:
        cells, best, _ = task_table(tasks[t], board, pairs)
        parts[t] = task_detail_table(tasks[t], cells, best, methods, key=task_keys.get(t), mark=mark)
    for name, text in parts.items():
        (folder / f"{name}.tex").write_text(text + "\n")
    (out / "leaderboard.tex").write_text(
        "% The report's tables for a paper (needs \\usepackage{booktabs}); the same text as tables/*.tex.\n\n"
        + "\n\n".join(parts.values()) + "\n")
