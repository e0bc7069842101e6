"""Paper figures from the tidy table: one colour per method in every figure, sized for a paper column.

Every function writes ``<path>.pdf`` and ``<path>.png`` and returns the PNG path. Axes carry human labels
(``labels.metric_label``); every interval is the 95% Student-t interval over seeds (``stats.t_interval``). Methods
that do not fine-tune (``REFERENCE_METHODS``) are never placed on a path-KL axis: there they are horizontal lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BenchsuiteError
from ..registry import METHODS
from .labels import REFERENCE_METHODS, metric_label
from .stats import t_interval
from .tables import mean_intervals

COLUMN_WIDTH_IN = 3.4  # a two-column paper's column
METHOD_ORDER = ["pretrained", "best-of-n", "bo", "ddpo", "draft", "sqdf", "vard", "ctrl"]
HV_MARGIN = 0.5
"""The hypervolume reference point of a task is the pretrained model's mean (reward, diversity) minus ``HV_MARGIN``
times its absolute value on each axis: fixed per task (not the figure's worst run), so hypervolumes of one task
compare across reports and method sets; methods that lose more than half of either stay inside."""


def _declared(methods, attribute: str) -> dict:
    """``{method: value}`` of a class attribute each registered method declares beside its code
    (``Method.colour``, ``marker``, ``display_name``); a method only the data knows (a report rebuilt where its
    plugin is not installed) declares nothing."""
    out = {}
    for m in methods:
        try:
            value = getattr(METHODS.load(m), attribute, None)
        except BenchsuiteError:
            continue
        if value:
            out[m] = value
    return out


def method_colors(methods) -> dict[str, str]:
    """Each method's declared colour (the built-ins: Okabe-Ito, distinguishable with colour-blindness); methods
    without one get seaborn "dark" colours after them."""
    import seaborn as sns

    fixed = _declared(methods, "colour")
    extra = sorted(set(methods) - set(fixed))
    return {**fixed, **dict(zip(extra, sns.color_palette("dark", len(extra)).as_hex()))}


def method_markers(methods) -> dict[str, str]:
    """Each method's declared marker ("o" where it declares none)."""
    return {m: "o" for m in methods} | _declared(methods, "marker")


def method_dashes(methods) -> dict[str, tuple | str]:
    """Dashed lines for the reference baselines (``REFERENCE_METHODS``), solid for fine-tuning methods."""
    return {m: (4, 1.5) if m in REFERENCE_METHODS else "" for m in methods}


def _ordered(methods) -> list[str]:
    present = set(methods)
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def _setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    return plt, sns


def _legend_below(fig, ax, ncol: int = 4) -> None:
    """The axes' legend moved under the figure (outside the data: dense plots had it over their lines)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=6, frameon=False,
               handlelength=2.4, columnspacing=1.0)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".pdf"))
    fig.savefig(path.with_suffix(".png"), dpi=200)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.with_suffix(".png")


def _t_bounds(values) -> tuple[float, float]:
    """seaborn ``errorbar`` callable: the 95% Student-t interval of the mean."""
    return t_interval(values)[1:]


def plot_curves(tidy: pd.DataFrame, task: str, metric: str, path: Path, ylabel: str | None = None) -> Path:
    """``metric`` against oracle queries, mean over seeds with its 95% t-interval as a band, one line per method."""
    plt, sns = _setup()
    data = tidy[(tidy["task"] == task) & (tidy["metric"] == metric)]
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.9), layout="constrained")
    order = _ordered(data["method"].unique())
    sns.lineplot(data=data, x="queries", y="value", hue="method", hue_order=order, palette=method_colors(order),
                 style="method", style_order=order, markers=method_markers(order), dashes=method_dashes(order),
                 errorbar=_t_bounds, markersize=4, linewidth=1.2, ax=ax)
    ax.set_xlabel("oracle queries")
    ax.set_ylabel(ylabel or metric_label(metric))
    ax.set_title(f"{task}\n(mean, 95% t-interval over seeds)", fontsize=6)
    _legend_below(fig, ax)
    return _save(fig, path)


def point_means(tidy: pd.DataFrame, task: str, metrics: list[str]) -> pd.DataFrame:
    """Per (method, evaluation point): each metric's mean over seeds with its 95% t-interval.

    Returns columns method, queries, seeds, and ``<metric>``, ``<metric>_lo``, ``<metric>_hi`` per metric.
    """
    data = tidy[(tidy["task"] == task) & tidy["metric"].isin(metrics)]
    wide = data.pivot_table(index=["method", "seed", "queries"], columns="metric", values="value").reset_index()
    return mean_intervals(wide, ["method", "queries"], metrics)


def _reference_lines(ax, points: pd.DataFrame, metric: str, colors: dict[str, str]) -> None:
    """Each reference method's final mean of ``metric`` as a dashed horizontal line in its colour."""
    for m in _ordered(points["method"].unique()):
        if m in REFERENCE_METHODS:
            last = points[points["method"] == m].sort_values("queries").iloc[-1]
            ax.axhline(last[metric], color=colors[m], linestyle=(0, (4, 1.5)), linewidth=1.0, label=f"{m} (ref.)")


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (``N x 2``, both maximised), via botorch."""
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    return is_non_dominated(torch.tensor(np.asarray(points), dtype=torch.double)).numpy()


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by ``points`` (``N x 2``, maximised) above ``reference``, via botorch."""
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    y = torch.tensor(np.asarray(points), dtype=torch.double)
    y = y[pareto_front(points)]
    return float(Hypervolume(torch.tensor(np.asarray(reference), dtype=torch.double)).compute(y))


def front_boundary(x: np.ndarray, y: np.ndarray, x_ref: float, y_ref: float) -> tuple[list[float], list[float]]:
    """The staircase bounding the region that front points ``(x, y)`` (sorted by x, both maximised) dominate
    above the reference ``(x_ref, y_ref)``: from ``(x_ref, y_0)`` across and down each step to ``(x_last, y_ref)``.
    A one-point front is an L, not an invisible zero-length step."""
    xs, ys = [x_ref], [y[0]]
    for i in range(len(x)):
        xs += [x[i], x[i]]
        ys += [y[i], y[i + 1] if i + 1 < len(x) else y_ref]
    return [float(v) for v in xs], [float(v) for v in ys]


def hypervolume_reference(final: pd.DataFrame, task: str, reward: str, diversity: str,
                          baseline: str = "pretrained") -> np.ndarray | None:
    """The task's fixed hypervolume reference point ``[reward, diversity]``: the ``baseline``'s mean minus
    ``HV_MARGIN`` times its absolute value on each axis (None without a baseline run)."""
    base = final[(final["task"] == task) & (final["method"] == baseline)][[reward, diversity]].mean().to_numpy()
    return None if not np.isfinite(base).all() else base - HV_MARGIN * np.abs(base)


def plot_pareto(final: pd.DataFrame, task: str, reward: str, diversity: str, path: Path) -> tuple[Path, float]:
    """Reward against diversity at the final evaluation: each seed faint, each method's mean bold with its 95%
    t-intervals on both axes, the Pareto front of the method means as a step line, and its hypervolume above the
    task's fixed reference point (``hypervolume_reference``; NaN without a pretrained run) in the title.

    Returns ``(png path, hypervolume)``.
    """
    plt, sns = _setup()
    data = final[final["task"] == task].dropna(subset=[reward, diversity])
    order = _ordered(data["method"].unique())
    stats = {m: [t_interval(data.loc[data["method"] == m, c]) for c in (reward, diversity)] for m in order}
    colors, markers = method_colors(order), method_markers(order)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.1), layout="constrained")
    for m in order:
        runs = data[data["method"] == m]
        (r, r_lo, r_hi), (d, d_lo, d_hi) = stats[m]
        ax.scatter(runs[diversity], runs[reward], color=colors[m], marker=markers[m], alpha=0.35, s=10, linewidths=0)
        ax.errorbar(d, r, xerr=[[d - d_lo], [d_hi - d]] if np.isfinite(d_lo) else None,
                    yerr=[[r - r_lo], [r_hi - r]] if np.isfinite(r_lo) else None, color=colors[m], marker=markers[m],
                    markersize=6, markeredgecolor="black", markeredgewidth=0.5, elinewidth=0.8, capsize=1.5,
                    label=m, zorder=3)
    pts = np.array([[stats[m][0][0], stats[m][1][0]] for m in order])  # methods x (reward, diversity) means
    ref = hypervolume_reference(final, task, reward, diversity)
    hv = float("nan")
    if ref is not None:
        ax.scatter(ref[1], ref[0], marker="x", color="black", s=20, linewidths=0.8, label="hypervolume reference")
        inside = (pts > ref).all(axis=1)
        hv = hypervolume(pts[inside], ref) if inside.any() else 0.0
        front = pts[inside][pareto_front(pts[inside])] if inside.any() else pts[:0]
        front = front[np.argsort(front[:, 1])]
        if len(front):
            xs, ys = front_boundary(front[:, 1], front[:, 0], ref[1], ref[0])
            ax.plot(xs, ys, color="black", linewidth=0.8, linestyle="--", label="Pareto front", zorder=1)
    ax.set_xlabel(metric_label(diversity))
    ax.set_ylabel(metric_label(reward))
    ax.set_title(f"{task}: hypervolume {hv:.3g}\n(ref. point: pretrained - {HV_MARGIN:.0%}; dots: seeds; bars: 95% "
                 "t-interval)", fontsize=6)
    _legend_below(fig, ax, ncol=3)
    return _save(fig, path), hv


def plot_overoptimization(tidy: pd.DataFrame, task: str, proxy: str, gold: str, path: Path) -> Path:
    """The training reward (proxy) and a held-out judge (a gold reward where the task has one) against
    sqrt(path KL to pretrained) along training, on one shared y scale so that the proxy-gold gap reads directly
    (Gao et al. 2023): mean over seeds per evaluation point with 95% t-intervals; reference methods (no path KL) as
    horizontal lines at their final mean."""
    plt, sns = _setup()
    points = point_means(tidy, task, ["eval/kl", proxy, gold])
    order = _ordered(points["method"].unique())
    colors, markers = method_colors(order), method_markers(order)
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4), layout="constrained", sharey=True)
    for ax, metric, title in ((axes[0], proxy, "training reward (proxy)"), (axes[1], gold, "held-out judge")):
        for m in order:
            if m in REFERENCE_METHODS:
                continue
            c = points[points["method"] == m].sort_values("queries")
            ax.errorbar(np.sqrt(c["eval/kl"].clip(lower=0)), c[metric], yerr=[c[metric] - c[f"{metric}_lo"],
                        c[f"{metric}_hi"] - c[metric]], color=colors[m], marker=markers[m], markersize=3,
                        linewidth=1.1, elinewidth=0.6, capsize=1.5, label=m)
        _reference_lines(ax, points, metric, colors)
        ax.set_xlabel(r"$\sqrt{\mathrm{path\ KL}}$ to pretrained")
        ax.set_title(f"{title}: {metric_label(metric)}", fontsize=8)
    axes[0].set_ylabel("eval reward (mean, 95% t-interval)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=6, frameon=False)
    fig.suptitle(task, fontsize=8)
    return _save(fig, path)


def plot_frontier(tidy: pd.DataFrame, task: str, reward: str, path: Path, drift_budget: float | None = None) -> Path:
    """Reward against drift: for each fine-tuning method, the mean ``reward`` against the mean path KL
    (``eval/kl``) over seeds at each evaluation point, with 95% t-intervals on the reward; the task's drift budget
    as a vertical line, the reference methods as horizontal lines. The KL axis is symlog (linear below the smallest
    positive mean KL's power of ten), as path KLs of the methods span orders of magnitude."""
    plt, sns = _setup()
    points = point_means(tidy, task, ["eval/kl", reward])
    order = _ordered(points["method"].unique())
    colors, markers = method_colors(order), method_markers(order)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.9), layout="constrained")
    tuned = points[~points["method"].isin(REFERENCE_METHODS)]
    for m in order:
        c = tuned[tuned["method"] == m].sort_values("queries")
        if len(c):
            ax.errorbar(c["eval/kl"], c[reward], yerr=[c[reward] - c[f"{reward}_lo"], c[f"{reward}_hi"] - c[reward]],
                        color=colors[m], marker=markers[m], markersize=3, linewidth=1.1, elinewidth=0.6,
                        capsize=1.5, label=m)
    _reference_lines(ax, points, reward, colors)
    if drift_budget is not None:
        ax.axvline(drift_budget, color="black", linewidth=0.8, linestyle=":", label=f"drift budget {drift_budget:g}")
    positive = tuned["eval/kl"][tuned["eval/kl"] > 0]
    linthresh = 10.0 ** np.floor(np.log10(positive.min())) if len(positive) else 1.0
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_xlim(left=-0.1 * linthresh)  # no negative KL ticks
    ax.set_xlabel("path KL to pretrained (symlog)")
    ax.set_ylabel(metric_label(reward))
    ax.set_title(f"{task}\n(mean over seeds at each evaluation, 95% t-interval)", fontsize=6)
    _legend_below(fig, ax, ncol=3)
    return _save(fig, path)


def grid_figure(grids: dict[str, Path], path: Path, title: str = "", per_row: int = 4, crop=None) -> Path:
    """Sample grids (PNG files written by the runner) as panels, ``per_row`` methods per row, each cut by
    ``crop`` (a function of the PIL image, e.g. ``evaluation.sample_grid_panel``; None: the whole grid)."""
    plt, _ = _setup()
    from PIL import Image

    order = _ordered(grids)
    panels = {m: Image.open(grids[m]).convert("RGB") for m in order}
    if crop is not None:
        panels = {m: crop(p) for m, p in panels.items()}
    aspect = max(p.size[1] / p.size[0] for p in panels.values())  # height / width of the tallest panel
    rows = -(-len(order) // per_row)
    cols = min(per_row, len(order))
    width = 6.8 if cols > 1 else 3.4  # a two-column page's width (one column for a single panel)
    fig, axes = plt.subplots(rows, cols, figsize=(width, rows * (width / cols * aspect + 0.35)),
                             constrained_layout=True, squeeze=False)
    colors = method_colors(order)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, order):
        ax.imshow(panels[m], interpolation="nearest")
        ax.set_title(m, fontsize=9, color=colors[m])
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
