"""Paper figures from the tidy table: one colour per method in every figure, sized for a paper column.

Every function writes ``<path>.pdf`` and ``<path>.png`` and returns the PNG path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMN_WIDTH_IN = 3.4  # a two-column paper's column
METHOD_ORDER = ["pretrained", "best-of-n", "bo", "ddpo", "draft", "sqdf", "vard", "ctrl"]
REFERENCE_METHODS = ("pretrained", "best-of-n", "bo")
"""Methods that do not fine-tune: dashed lines in every curve, so that they read as references."""


# Okabe-Ito colours (distinguishable with colour-blindness), one per method, fixed across every figure.
_FIXED_COLORS = {
    "pretrained": "#999999", "best-of-n": "#000000", "bo": "#56B4E9", "ddpo": "#0072B2", "draft": "#D55E00",
    "sqdf": "#009E73", "vard": "#CC79A7", "ctrl": "#E69F00",
}
# one marker per method as well: lines that coincide (best-of-N and BO often do) stay distinguishable
_FIXED_MARKERS = {
    "pretrained": "o", "best-of-n": "s", "bo": "D", "ddpo": "^", "draft": "v", "sqdf": "P", "vard": "X", "ctrl": "*",
}


def method_colors(methods) -> dict[str, str]:
    """A fixed colour per method; methods without one get seaborn "dark" colours after them."""
    import seaborn as sns

    extra = sorted(set(methods) - set(_FIXED_COLORS))
    return {**_FIXED_COLORS, **dict(zip(extra, sns.color_palette("dark", len(extra)).as_hex()))}


def method_markers(methods) -> dict[str, str]:
    """A fixed marker per method; methods without one get "o"."""
    return {m: _FIXED_MARKERS.get(m, "o") for m in methods}


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


def plot_curves(tidy: pd.DataFrame, task: str, metric: str, path: Path, ylabel: str | None = None) -> Path:
    """``metric`` against oracle queries, mean over seeds with a 95% bootstrap CI band, one line per method."""
    plt, sns = _setup()
    data = tidy[(tidy["task"] == task) & (tidy["metric"] == metric)]
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.9), layout="constrained")
    order = _ordered(data["method"].unique())
    sns.lineplot(data=data, x="queries", y="value", hue="method", hue_order=order, palette=method_colors(order),
                 style="method", style_order=order, markers=method_markers(order), dashes=method_dashes(order),
                 errorbar=("ci", 95), n_boot=2000, seed=0, markersize=4, linewidth=1.2, ax=ax)
    ax.set_xlabel("oracle queries")
    ax.set_ylabel(ylabel or metric.removeprefix("eval/"))
    ax.set_title(task, fontsize=8)
    _legend_below(fig, ax)
    return _save(fig, path)


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


def plot_pareto(final: pd.DataFrame, task: str, reward: str, diversity: str, path: Path) -> tuple[Path, float]:
    """Reward against diversity: each run faint, each method's mean bold, the Pareto front of the method means
    as a step line, its hypervolume (reference: the worst run on each axis) in the title."""
    plt, sns = _setup()
    data = final[final["task"] == task].dropna(subset=[reward, diversity])
    means = data.groupby("method")[[reward, diversity]].mean()
    order = _ordered(means.index)
    colors, markers = method_colors(order), method_markers(order)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.1), layout="constrained")
    for m in order:
        runs = data[data["method"] == m]
        marker = markers[m]
        ax.scatter(runs[diversity], runs[reward], color=colors[m], marker=marker, alpha=0.35, s=10, linewidths=0)
        ax.scatter(means.loc[m, diversity], means.loc[m, reward], color=colors[m], marker=marker, s=40, label=m,
                   edgecolors="black", linewidths=0.5, zorder=3)
    pts = means[[reward, diversity]].to_numpy()
    mask = pareto_front(pts)
    ref = data[[reward, diversity]].min().to_numpy()
    hv = hypervolume(pts, ref)
    front = means[mask].sort_values(diversity)
    xs, ys = front_boundary(front[diversity].to_numpy(), front[reward].to_numpy(), ref[1], ref[0])
    ax.plot(xs, ys, color="black", linewidth=0.8, linestyle="--", label="Pareto front", zorder=1)
    ax.set_xlabel(diversity.removeprefix("eval/"))
    ax.set_ylabel(reward.removeprefix("eval/"))
    ax.set_title(f"{task}  (hypervolume {hv:.3g})", fontsize=8)
    _legend_below(fig, ax, ncol=3)
    return _save(fig, path), hv


def plot_overoptimization(tidy: pd.DataFrame, task: str, proxy: str, gold: str, path: Path) -> Path:
    """The training reward (proxy) and a held-out judge (a gold reward where the task has one) against
    sqrt(KL to pretrained) along training, mean over seeds per evaluation point: the over-optimization picture
    (Gao et al. 2023). Solid: proxy; dashed: held-out judge."""
    plt, sns = _setup()
    data = tidy[(tidy["task"] == task) & tidy["metric"].isin(["eval/kl", proxy, gold])]
    wide = data.pivot_table(index=["method", "seed", "queries"], columns="metric", values="value").reset_index()
    curve = wide.groupby(["method", "queries"])[["eval/kl", proxy, gold]].mean().reset_index()
    curve["sqrt_kl"] = np.sqrt(curve["eval/kl"].clip(lower=0))
    order = _ordered(curve["method"].unique())
    colors, markers = method_colors(order), method_markers(order)
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4), layout="constrained")
    for ax, metric, title in ((axes[0], proxy, "training reward (proxy)"), (axes[1], gold, "held-out judge")):
        for m in order:
            c = curve[curve["method"] == m].sort_values("queries")
            ax.plot(c["sqrt_kl"], c[metric], color=colors[m], marker=markers[m], markersize=3,
                    linewidth=1.1, linestyle="-" if metric == proxy else "--", label=m)
        ax.set_xlabel(r"$\sqrt{\mathrm{KL}}$ to pretrained")
        ax.set_ylabel(metric.removeprefix("eval/"))
        ax.set_title(title, fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=6, frameon=False)
    fig.suptitle(task, fontsize=8)
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
