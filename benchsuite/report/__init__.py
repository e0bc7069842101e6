"""Reports: leaderboard tables and paper figures from run records (never from the training code).

``write_report(tidy, out_dir)`` writes ``leaderboard.{md,csv,tex}`` and ``figures/*.{pdf,png}``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .plots import grid_figure, plot_curves, plot_overoptimization, plot_pareto
from .tables import (aggregate_iqm, final_grids, final_values, leaderboard, load_mlflow, load_runs,
                     normalized_scores, to_latex, to_markdown)

__all__ = ["final_grids", "load_mlflow", "load_runs", "task_metrics", "write_report"]


def task_metrics(task_id: str) -> tuple[str, list[str], list[str]]:
    """(headline metric, the task's judge means, the table's metrics) for a task id."""
    from ..tasks import load_spec

    spec = load_spec(task_id)
    primary = f"eval/{spec.primary_judge}_mean"
    judges = [primary] + [f"eval/{label}_mean" for label, _ in spec.judges if label != spec.primary_judge]
    rest = ["eval/kl", "eval/diversity", "eval/vendi", "wall_time_s", "cost/queries"]
    if spec.online is not None:
        # black-box track: the headline is what the queries found (mean of the 10 best oracle values so far), as
        # in holo-bench and SEIKO; the policy's eval samples follow
        return "query/top10_mean", judges, ["query/top10_mean", "query/best", *judges, *rest]
    return primary, judges, [*judges, *rest]


def _grid_panel(task_id: str):
    """(crop, panels per row) that turn the runner's sample grids of this task into legible report panels:
    images 4 per row, sequences (wide: one row per sequence) 2 per row."""
    from ..evaluation import sample_grid_panel
    from ..metrics.sequences import sequence_grid_panel
    from ..policies.sequence import SEQUENCE_BACKBONES
    from ..tasks import load_spec

    if load_spec(task_id).backbone in SEQUENCE_BACKBONES:
        return sequence_grid_panel, 2
    return sample_grid_panel, 4


def write_report(tidy: pd.DataFrame, out_dir: Path | str, grids: dict[str, dict[str, Path]] | None = None) -> dict:
    """Write the leaderboard and figures for every task in ``tidy`` into ``out_dir``.

    Args:
        tidy: the frame of ``load_runs`` / ``load_mlflow``.
        grids: optional ``{task: {method: sample-grid PNG}}`` for the sample-grid figure.

    Returns:
        ``{"leaderboard": frame, "aggregate": frame, "figures": [paths], "hypervolume": {task: float}}``.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    final = final_values(tidy)
    boards, figures, hv = [], [], {}
    headline = {}
    for task in sorted(final["task"].unique()):
        primary, judges, metrics = task_metrics(task)
        headline[task] = primary
        board = leaderboard(final[final["task"] == task], metrics)
        boards.append(board)
        ylabel = ("top-10 mean of the queries" if primary == "query/top10_mean"
                  else primary.removeprefix("eval/").removesuffix("_mean") + " (eval)")
        figures.append(plot_curves(tidy, task, primary, out / "figures" / f"{task}_curves", ylabel=ylabel))
        path, hv[task] = plot_pareto(final, task, primary, "eval/diversity", out / "figures" / f"{task}_pareto")
        figures.append(path)
        if len(judges) > 1:
            # the policy's own eval samples on both axes (judges[0] is the training reward's judge; on online
            # tasks the headline is a query statistic, which is not a function of the policy's KL)
            figures.append(plot_overoptimization(tidy, task, judges[0], judges[1],
                                                 out / "figures" / f"{task}_overoptimization"))
        if grids and task in grids:
            crop, per_row = _grid_panel(task)
            figures.append(grid_figure(grids[task], out / "figures" / f"{task}_samples", title=task,
                                       crop=crop, per_row=per_row))
    board = pd.concat(boards, ignore_index=True)
    norm = normalized_scores(final, headline)
    aggregate = aggregate_iqm(norm)
    metric_order = list(dict.fromkeys(m for t in headline for m in task_metrics(t)[2]))
    board.to_csv(out / "leaderboard.csv", index=False)
    md = ["# Leaderboard", "", "Mean [95% bootstrap CI] over seeds of the final evaluation; rows sorted by the "
          "headline reward (first column).", ""]
    for task in sorted(headline):
        md.append(to_markdown(board[board["task"] == task], task_metrics(task)[2]))
    md += ["## Aggregate over tasks", "",
           "Normalized score per run: 0 = pretrained, 1 = best method mean on that task; interquartile mean over "
           "all runs with a 95% bootstrap CI (stratified by task).", "",
           "| method | IQM | 95% CI | runs |", "|---|---|---|---|"]
    md += [f"| {r.method} | {r.iqm:.3f} | [{r.iqm_lo:.3f}, {r.iqm_hi:.3f}] | {r.runs} |"
           for r in aggregate.itertuples()]
    (out / "leaderboard.md").write_text("\n".join(md) + "\n")
    (out / "leaderboard.tex").write_text(to_latex(board, [m for m in metric_order if m in board]) + "\n")
    aggregate.to_csv(out / "aggregate.csv", index=False)
    return {"leaderboard": board, "aggregate": aggregate, "figures": figures, "hypervolume": hv}
