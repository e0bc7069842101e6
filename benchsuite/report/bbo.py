"""The black-box tier's report: PMO's AUC top-10 per oracle beside the published values, top-k curves against oracle
calls, and holo-bench's Ehrlich numbers (``benchsuite leaderboard report --tier bbo``).

Inputs are the run folders of a tier whose cards use PMO accounting (``benchsuite.accounting``): each run's final
``pmo/*`` metrics (``summary.json``) and its query log (``query_log.csv``: the value, whether it was charged, the cache
key). ``read_bbo_runs`` turns them into one row per run and the top-k curves; ``write_bbo_report`` writes, from those
two frames alone (so the committed CSVs regenerate the report without the run folders):

- ``bbo.md``: per PMO oracle and method the mean AUC top-10 over seeds with its 95% Student-t half-width, PMO's
  published values beside (``PUBLISHED_AUC_TOP10``), the sums over the oracles present, and a note on what our
  smaller pool and budget explain; per Ehrlich card the simple regret, feasible fraction, solve rate and queries to
  solve (holo-bench's numbers) and the AUC top-10; what each run cost.
- ``bbo.md`` also pairs, per task and seed, each method that is not one of the field's baselines (the diffusion
  fine-tuners, BO) with each baseline of the task's kind (``BASELINES``: screening, Graph GA and REINVENT on the PMO
  oracles; screening and the sequence GA on the Ehrlich cards): the mean AUC top-10 difference with its paired 95%
  t-interval, a count of the tasks where it is above, below or not separated from the baseline, and
  ``paired_differences.csv`` with every pair.
- ``bbo.json`` (title, budget, method order: what ``rebuild_bbo_report`` needs besides the CSVs),
  ``auc_top10.csv`` (mean, interval, seeds per task and method), ``per_run.csv`` (every final ``pmo/*`` value of every
  run), ``topk_curves.csv`` (top-1 and top-10 mean of the charged values every ``freq`` charged calls, a run that
  stopped early padded to its budget as PMO pads its AUC).
- ``figures/topk_<task>.png`` (and ``.pdf``): top-10 and top-1 mean against oracle calls, one line per method (mean
  over seeds, 95% t-band; dashed for the methods that do not fine-tune: the field's baselines and BO);
  ``figures/topk_overview.png``: the top-10 panels of every task in one grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..metrics.pmo import PMO_FREQ
from ..tasks import load_spec
from .labels import REFERENCE_METHODS
from .plots import _ordered, _save, _setup, _t_bounds, method_colors
from . import tables
from .stats import t_interval

RUN_KEYS = ["task", "method", "seed"]

PUBLISHED_SOURCE = ("Gao et al. 2022 (PMO, arXiv 2206.12411), AUC top-10 at 10,000 calls, mean ± std of 5 runs from "
                    "ZINC 250k, as reproduced in Lee et al. 2024 (f-RAG, arXiv 2411.12078) Table 1")
PUBLISHED_METHODS = ("REINVENT", "Graph GA", "SELFIES-REINVENT", "GP BO", "STONED", "LSTM HC", "SMILES GA")
PUBLISHED_AUC_TOP10: dict[str, tuple[float, ...]] = {
    # oracle: one mean per PUBLISHED_METHODS entry (facts from the source above)
    "albuterol_similarity": (0.882, 0.838, 0.826, 0.898, 0.745, 0.719, 0.661),
    "amlodipine_mpo": (0.635, 0.661, 0.607, 0.583, 0.608, 0.593, 0.549),
    "celecoxib_rediscovery": (0.710, 0.630, 0.573, 0.723, 0.382, 0.380, 0.344),
    "deco_hop": (0.666, 0.619, 0.631, 0.629, 0.611, 0.826, 0.611),
    "fexofenadine_mpo": (0.784, 0.760, 0.741, 0.722, 0.797, 0.725, 0.721),
    "isomers_c7h8n2o2": (0.852, 0.862, 0.849, 0.680, 0.899, 0.485, 0.913),
    "isomers_c9h10n2o2pf2cl": (0.642, 0.719, 0.733, 0.469, 0.805, 0.342, 0.860),
    "median1": (0.356, 0.294, 0.355, 0.301, 0.266, 0.255, 0.192),
    "median2": (0.276, 0.273, 0.255, 0.297, 0.245, 0.248, 0.198),
    "mestranol_similarity": (0.618, 0.579, 0.620, 0.627, 0.609, 0.526, 0.469),
    "osimertinib_mpo": (0.837, 0.831, 0.820, 0.787, 0.822, 0.796, 0.817),
    "perindopril_mpo": (0.537, 0.538, 0.517, 0.493, 0.488, 0.489, 0.447),
    "qed": (0.941, 0.940, 0.940, 0.937, 0.941, 0.939, 0.940),
    "ranolazine_mpo": (0.760, 0.728, 0.748, 0.735, 0.765, 0.714, 0.699),
    "scaffold_hop": (0.560, 0.517, 0.525, 0.548, 0.521, 0.533, 0.494),
    "sitagliptin_mpo": (0.021, 0.433, 0.194, 0.186, 0.393, 0.066, 0.363),
    "thiothixene_rediscovery": (0.534, 0.479, 0.495, 0.559, 0.367, 0.438, 0.315),
    "troglitazone_rediscovery": (0.441, 0.390, 0.348, 0.410, 0.320, 0.354, 0.263),
    "valsartan_smarts": (0.178, 0.000, 0.000, 0.000, 0.000, 0.000, 0.000),
    "zaleplon_mpo": (0.358, 0.346, 0.333, 0.221, 0.325, 0.206, 0.334),
}
"""PMO's published AUC top-10 of the 20 RDKit-only oracles (TDC's scoring of 2022: the isomer, zaleplon and
sitagliptin values predate TDC's August 2022 isomer change, ``benchsuite.domains.pmo``)."""
PUBLISHED_SUMS_23 = {"REINVENT": 14.196, "Graph GA": 13.751, "SELFIES-REINVENT": 13.471, "GP BO": 13.156,
                     "STONED": 13.024, "LSTM HC": 12.223, "SMILES GA": 12.054, "SELFIES GA": 8.95, "screening": 8.63}
"""Published sums over all 23 oracles (DRD2, GSK3B and JNK3 included); SELFIES GA and screening only as sums (their
per-oracle values were not found in a source we could read: Gao et al.'s sums as issue 24 quotes them)."""
COUNTERPART = {"screening": "screening", "graph-ga": "Graph GA", "reinvent": "REINVENT", "bo": "GP BO",
               "sequence-ga": "SELFIES GA"}
"""Our method -> the published method it stands beside (the same idea, not the same code or starting pool)."""

BASELINES = {"pmo": ("screening", "graph-ga", "reinvent"), "ehrlich": ("screening", "sequence-ga")}
"""The field's baselines each other method of a task is paired with, by kind of task (``paired_differences``)."""
BLACK_BOX = ("screening", "graph-ga", "sequence-ga", "reinvent")
"""The field's black-box baselines; every other method of the tier (the diffusion fine-tuners, BO) is paired with
the ``BASELINES`` of its task."""

POOL_NOTE = ("What the setups explain. PMO's optimizers start from ZINC 250k (about 250,000 molecules, SMILES of any "
             "length and charge) and spend 10,000 calls; ours start from the ChEMBL SELFIES prior (2,911 molecules in "
             "25 neutral symbols, at most 64 of them; Graph GA seeds from its ChEMBL drugs) and spend {budget} calls. "
             "The AUC is an area divided by the budget, so a shorter run weighs its first calls, where every method "
             "is still near the start pool, more: our values are lower than PMO's at the same skill, and the gap is "
             "largest on the oracles where PMO's curves climb late (the MPOs, median1/2, the rediscoveries). A target "
             "the alphabet cannot write well (charged or long molecules) caps the top values themselves; on QED, "
             "saturated in both, the two should agree. Differences between methods within one column are the "
             "comparison this table supports; differences to the published columns are a sanity check.")


def _oracle(task: str) -> str:
    """The PMO oracle of a task (TDC name), from its card's oracle reward; the task id when there is no card."""
    try:
        name = load_spec(task).oracle.name
    except Exception:  # noqa: BLE001 - a task only the data knows
        return task
    return name.removeprefix("pmo-").replace("-", "_")


def _freq(task: str) -> int:
    try:
        accounting = load_spec(task).accounting
    except Exception:  # noqa: BLE001
        return PMO_FREQ
    return PMO_FREQ if accounting is None else accounting.freq


def topk_curve(values: np.ndarray, freq: int, budget: int | None = None) -> pd.DataFrame:
    """Top-1 and top-10 mean of the first ``calls`` values at every multiple of ``freq``.

    Args:
        values: ``N`` oracle values of the charged queries, in the order they were charged (PMO's record).
        freq: calls between two points.
        budget: the run's budget, for a finished run: the points run to it (and end on it), and a run that stopped
            before it (PMO accounting ends a run after too many free answers) is padded with its last values, as
            PMO pads its AUC, so that the mean over seeds at every point is over the same seeds. None: the points
            stop at ``N``, with a last point at ``N`` itself.

    Returns:
        Columns ``calls``, ``top1``, ``top10`` (mean of the best min(10, calls) values).
    """
    values = np.asarray(values, dtype=float)
    end = len(values) if budget is None else int(budget)
    points = sorted({*range(freq, end + 1, freq), end} - {0})
    rows = []
    for calls in points:
        best = np.sort(values[:calls])[::-1]
        rows.append({"calls": calls, "top1": float(best[0]), "top10": float(best[:10].mean())})
    return pd.DataFrame(rows, columns=["calls", "top1", "top10"])


def read_bbo_runs(root: Path | str, tasks: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_run, curves)`` of every finished run under ``root/runs`` (of ``tasks``) that logged ``pmo/*`` metrics.

    ``per_run``: task, method, seed, commit, wall_time_s and every final ``pmo/*`` value; ``curves``: task, method,
    seed and ``topk_curve`` of the run's charged values (padded to the run's budget). Two finished runs of one
    (task, method, seed) raise ``ConfigError``, as ``load_runs`` does.
    """
    rows, curves, seen = [], [], {}
    for path in sorted(Path(root).glob("runs/*/summary.json")):
        summary = json.loads(path.read_text())
        cfg = summary["config"]
        if summary["status"] != "FINISHED" or (tasks and cfg["task"] not in tasks):
            continue
        final = {k: v for k, v in summary.get("final", {}).items() if k.startswith("pmo/")}
        if "pmo/auc_top10" not in final:
            continue
        key = (cfg["task"], cfg["method"], cfg["seed"])
        if key in seen:
            raise ConfigError(f"two runs of {key[1]} seed {key[2]} on {key[0]} under {root} ({seen[key]} and "
                              f"{path.parent.name}); a report needs one config per (task, method, seed)")
        seen[key] = path.parent.name
        run = json.loads((path.parent / "run.json").read_text()) if (path.parent / "run.json").is_file() else {}
        commit = run.get("tags", {}).get("benchsuite.git_sha", "unknown")
        rows.append({**dict(zip(RUN_KEYS, key)), "commit": commit, "wall_time_s": summary["wall_time_s"], **final})
        log = pd.read_csv(path.parent / "query_log.csv")
        charged = log.loc[log["charged"].astype(bool), "reward"].to_numpy()
        if len(charged):
            curve = topk_curve(charged, _freq(key[0]), cfg.get("budget"))
            curve["task"], curve["method"], curve["seed"] = key
            curves.append(curve)
    per_run = pd.DataFrame(rows)
    curve_frame = (pd.concat(curves, ignore_index=True)[[*RUN_KEYS, "calls", "top1", "top10"]] if curves
                   else pd.DataFrame(columns=[*RUN_KEYS, "calls", "top1", "top10"]))
    return per_run, curve_frame


def _interval(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t-interval, n); NaN half-width with one value."""
    mean, lo, hi = t_interval(values)
    return mean, (hi - lo) / 2, int(np.isfinite(np.asarray(values, dtype=float)).sum())


def summarize(per_run: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, 95% t half-width and seeds of each ``metrics`` column per (task, method)."""
    rows = []
    for (task, method), group in per_run.groupby(["task", "method"]):
        row = {"task": task, "method": method, "seeds": len(group)}
        for m in metrics:
            if m in group:
                row[m], row[f"{m}_half"], _ = _interval(group[m])
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, half: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if np.isfinite(half) else "")


def is_ehrlich(per_run: pd.DataFrame, task: str) -> bool:
    rows = per_run[per_run["task"] == task]
    return "pmo/simple_regret" in rows and rows["pmo/simple_regret"].notna().any()


def pmo_table(per_run: pd.DataFrame, methods: list[str]) -> tuple[str, pd.DataFrame]:
    """The markdown table of AUC top-10 per PMO oracle (rows) and method (ours, then the published ones)."""
    tasks = sorted(t for t in per_run["task"].unique() if not is_ehrlich(per_run, t))
    board = summarize(per_run[per_run["task"].isin(tasks)], ["pmo/auc_top10"])
    ours = [m for m in methods if m in set(board["method"])]
    header = ["oracle", *ours, *(f"{m} (PMO)" for m in PUBLISHED_METHODS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sums = {m: 0.0 for m in ours}
    published_sums = [0.0] * len(PUBLISHED_METHODS)
    for task in tasks:
        oracle = _oracle(task)
        cells = []
        for m in ours:
            row = board[(board.task == task) & (board.method == m)]
            mean, half = (row["pmo/auc_top10"].iloc[0], row["pmo/auc_top10_half"].iloc[0]) if len(row) else (np.nan,) * 2
            sums[m] += mean if np.isfinite(mean) else np.nan
            cells.append(_cell(mean, half))
        published = PUBLISHED_AUC_TOP10.get(oracle)
        if published:
            published_sums = [a + b for a, b in zip(published_sums, published)]
        cells += [f"{v:.3f}" for v in published] if published else ["–"] * len(PUBLISHED_METHODS)
        lines.append(f"| {oracle} | " + " | ".join(cells) + " |")
    known = sum(_oracle(t) in PUBLISHED_AUC_TOP10 for t in tasks)
    lines.append(f"| sum over these {len(tasks)} | " + " | ".join(
        f"**{sums[m]:.3f}**" if np.isfinite(sums[m]) else "–" for m in ours) + " | " + " | ".join(
        f"**{v:.3f}**" if known == len(tasks) else "–" for v in published_sums) + " |")
    return "\n".join(lines), board


def ehrlich_table(per_run: pd.DataFrame, methods: list[str]) -> tuple[str, pd.DataFrame]:
    """The markdown table of holo-bench's numbers per Ehrlich card and method."""
    tasks = sorted(t for t in per_run["task"].unique() if is_ehrlich(per_run, t))
    frame = per_run[per_run["task"].isin(tasks)].copy()
    if frame.empty:
        return "", pd.DataFrame()
    solved = frame["pmo/queries_to_solve"].where(frame["pmo/queries_to_solve"] >= 0)
    frame["queries_to_solve"] = solved
    board = summarize(frame, ["pmo/simple_regret", "pmo/feasible_fraction", "pmo/solved", "pmo/auc_top10",
                              "pmo/cumulative_regret"])
    medians = frame.groupby(["task", "method"])["queries_to_solve"].median()
    lines = ["| task | method | seeds | simple regret | feasible fraction | solve rate | median queries to solve | "
             "AUC top-10 |", "|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        for m in [m for m in methods if m in set(board[board.task == task]["method"])]:
            r = board[(board.task == task) & (board.method == m)].iloc[0]
            med = medians.get((task, m), np.nan)
            lines.append(f"| {task} | {m} | {r.seeds} | {_cell(r['pmo/simple_regret'], r['pmo/simple_regret_half'])} "
                         f"| {_cell(r['pmo/feasible_fraction'], r['pmo/feasible_fraction_half'])} | "
                         f"{r['pmo/solved']:.2f} | {'–' if not np.isfinite(med) else f'{med:.0f}'} | "
                         f"{_cell(r['pmo/auc_top10'], r['pmo/auc_top10_half'])} |")
    return "\n".join(lines), board


def paired_differences(per_run: pd.DataFrame, methods: list[str], metric: str = "pmo/auc_top10") -> pd.DataFrame:
    """Per task, every method outside ``BLACK_BOX`` minus every baseline of the task's kind (``BASELINES``), paired
    by seed (the seeds both ran; ``tables.paired_differences``): mean, 95% paired t-interval, seeds, and ``sign``
    +1 / -1 where the interval excludes 0 (0: not separated)."""
    tasks = sorted(per_run["task"].unique())
    every = tables.paired_differences(per_run, {task: metric for task in tasks}).set_index(["task", "method", "other"])
    rows = []
    for task in tasks:
        present = set(every.loc[task].index.get_level_values("method")) if task in every.index else set()
        kind = "ehrlich" if is_ehrlich(per_run, task) else "pmo"
        for method in [m for m in methods if m in present and m not in BLACK_BOX]:
            for base in [b for b in BASELINES[kind] if b in present]:
                r = every.loc[(task, method, base)]
                sign = 1 if r.diff_lo > 0 else -1 if r.diff_hi < 0 else 0
                rows.append({"task": task, "kind": kind, "method": method, "baseline": base, "seeds": r.seeds,
                             "difference": r["diff"], "low": r.diff_lo, "high": r.diff_hi, "sign": sign})
    return pd.DataFrame(rows, columns=["task", "kind", "method", "baseline", "seeds", "difference", "low", "high",
                                       "sign"])


def paired_markdown(pairs: pd.DataFrame) -> str:
    """The paired section of ``bbo.md``: a count per (method, baseline) over the tasks of each kind, then every
    task's differences (rows task x method, one column per baseline)."""
    if pairs.empty:
        return ""
    lines = ["| tasks | method | baseline | above | not separated | below | mean difference |",
             "|---|---|---|---|---|---|---|"]
    for (kind, method, base), g in pairs.groupby(["kind", "method", "baseline"], sort=False):
        lines.append(f"| {'PMO oracles' if kind == 'pmo' else 'Ehrlich grid'} ({len(g)}) | {method} | {base} | "
                     f"{(g.sign > 0).sum()} | {(g.sign == 0).sum()} | {(g.sign < 0).sum()} | "
                     f"{g.difference.mean():+.3f} |")
    for kind, frame in pairs.groupby("kind", sort=False):
        bases = [b for b in BASELINES[kind] if b in set(frame.baseline)]
        lines += ["", "| task | method | " + " | ".join(f"minus {b}" for b in bases) + " |",
                  "|---|---|" + "---|" * len(bases)]
        for (task, method), g in frame.groupby(["task", "method"], sort=False):
            cells = []
            for b in bases:
                r = g[g.baseline == b]
                cells.append("–" if r.empty else
                             f"{r.difference.iloc[0]:+.3f} [{r.low.iloc[0]:+.3f}, {r.high.iloc[0]:+.3f}]"
                             + ("*" if r.sign.iloc[0] else ""))
            lines.append(f"| {_oracle(task) if kind == 'pmo' else task} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _line_styles(order: list[str], every: list[str]) -> dict:
    """seaborn lineplot settings for the methods ``order`` of one panel: the colours of the whole tier's methods
    ``every`` (so a method that declares no colour keeps one colour across the tier's figures), dashed lines for the
    methods that do not fine-tune (the field's black-box baselines and BO), solid for the diffusion fine-tuners."""
    dashes = {m: (4, 1.5) if m in BLACK_BOX or m in REFERENCE_METHODS else "" for m in order}
    palette = method_colors(every)
    return {"hue": "method", "hue_order": order, "palette": {m: palette[m] for m in order}, "style": "method",
            "style_order": order, "dashes": dashes}


def plot_topk(curves: pd.DataFrame, task: str, path: Path) -> Path:
    """Top-10 and top-1 mean of the charged values against oracle calls, one line per method (mean over seeds with
    its 95% t-band)."""
    plt, sns = _setup()
    data = curves[curves["task"] == task].melt(id_vars=[*RUN_KEYS, "calls"], value_vars=["top10", "top1"],
                                                var_name="statistic", value_name="value")
    order = _ordered(data["method"].unique())
    every = _ordered(curves["method"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.6), layout="constrained", sharex=True)
    for ax, stat, label in zip(axes, ("top10", "top1"), ("top-10 mean", "top-1")):
        sns.lineplot(data=data[data["statistic"] == stat], x="calls", y="value", **_line_styles(order, every),
                     errorbar=_t_bounds, linewidth=1.2, ax=ax, legend=ax is axes[0])
        ax.set_xlabel("oracle calls (charged)")
        ax.set_ylabel(label)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(order), 5), fontsize=6, frameon=False)
    fig.suptitle(f"{task} (mean, 95% t-interval over seeds)", fontsize=7)
    return _save(fig, path)


def plot_overview(curves: pd.DataFrame, path: Path, per_row: int = 5) -> Path:
    """The top-10 panel of every task in one grid (a shared legend)."""
    plt, sns = _setup()
    tasks = sorted(curves["task"].unique())
    order = _ordered(curves["method"].unique())
    rows = -(-len(tasks) // per_row)
    fig, axes = plt.subplots(rows, min(per_row, len(tasks)), figsize=(1.9 * min(per_row, len(tasks)), 1.6 * rows + 0.4),
                             layout="constrained", squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        sns.lineplot(data=curves[curves["task"] == task], x="calls", y="top10", **_line_styles(order, order),
                     errorbar=None, linewidth=1.0, ax=ax, legend=ax is axes.flat[0])
        ax.set_title(_oracle(task) if not task.startswith("ehrlich") else task.removesuffix("-v0"), fontsize=6)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(labelsize=5)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[0].get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(order), 6), fontsize=6, frameon=False)
    fig.suptitle("top-10 mean of the oracle values against charged calls (mean over seeds)", fontsize=7)
    return _save(fig, path)


def write_bbo_report(per_run: pd.DataFrame, curves: pd.DataFrame, out: Path | str, methods: list[str],
                     title: str = "black-box tier", budget: str = "") -> dict:
    """Write ``bbo.md``, the CSVs and the figures (module docstring) into ``out``; returns the tables and figure
    paths. ``methods``: the column order; ``budget``: the calls per run, as the note states it."""
    out = Path(out)
    if per_run.empty:
        raise ConfigError(f"no finished run with pmo/* metrics for the report in {out}; run the tier first")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    methods = [m for m in methods if m in set(per_run["method"])] + sorted(set(per_run["method"]) - set(methods))
    pmo_md, pmo_board = pmo_table(per_run, methods)
    ehrlich_md, ehrlich_board = ehrlich_table(per_run, methods)
    commits = sorted(set(per_run["commit"]))
    lines = [f"# {title}: AUC top-10 and top-k curves", "",
             f"Runs: {len(per_run)} ({per_run.groupby(['task', 'method']).ngroups} task x method cells), commits "
             f"{', '.join(c[:12] for c in commits)}. Every value is the mean over seeds ± the half-width of the 95% "
             "Student-t interval (t(0.975, n - 1) s / sqrt(n)).", ""]
    if len(pmo_board):
        published = ", ".join(f"{m} {v:.2f}" for m, v in PUBLISHED_SUMS_23.items())
        lines += ["## PMO oracles: AUC top-10", "",
                  "AUC top-10 (PMO): the area under the curve of the mean of the 10 best oracle values so far against "
                  "charged calls, read every 100 calls, trapezoid rule, padded to the budget, divided by the budget; "
                  "a repeated molecule is answered from the cache and costs nothing (benchsuite.accounting). "
                  f"Published columns: {PUBLISHED_SOURCE}; our counterparts: "
                  + ", ".join(f"{a} ~ {b}" for a, b in COUNTERPART.items()) + ".", "", pmo_md, "",
                  f"Published sums over all 23 oracles (three of them classifiers we do not run): {published} "
                  "(SELFIES GA and screening: sums only, per-oracle values not found).", "",
                  POOL_NOTE.format(budget=budget or "fewer"), ""]
    if ehrlich_md:
        lines += ["## Ehrlich grid: holo-bench's numbers", "",
                  "Simple regret: 1 minus the best value queried (holo-bench's; 2 before a feasible query); feasible "
                  "fraction: the share of queries above the infeasible value; solve rate: the share of seeds that "
                  "queried the optimum 1.0; median queries to solve over the seeds that solved. A repeated sequence "
                  "is free here (PMO accounting); holo-bench charges it.", "", ehrlich_md, ""]
    pairs = paired_differences(per_run, methods)
    if len(pairs):
        lines += ["## Paired differences: the other methods against the field's baselines", "",
                  "AUC top-10 of a method minus a baseline's on the same task, paired by seed: the mean difference "
                  "and its 95% paired Student-t interval over the seeds; * where the interval excludes 0. The "
                  "counts say on how many tasks the method is above, not separated from, or below the baseline.", "",
                  paired_markdown(pairs), ""]
    cost = per_run.groupby("method")["wall_time_s"].agg(["count", "mean", "sum"])
    lines += ["## Cost", "", "| method | runs | mean s/run | total s |", "|---|---|---|---|"]
    lines += [f"| {m} | {int(r['count'])} | {r['mean']:.1f} | {r['sum']:.0f} |" for m, r in cost.iterrows()]
    figures = [plot_topk(curves, t, out / "figures" / f"topk_{t}") for t in sorted(curves["task"].unique())]
    if len(curves):
        figures.append(plot_overview(curves, out / "figures" / "topk_overview"))
    lines += ["", "## Figures", "", *(f"- `{p.relative_to(out)}`" for p in figures)]
    (out / "bbo.md").write_text("\n".join(lines) + "\n")
    board = pd.concat([pmo_board, ehrlich_board], ignore_index=True)
    board.to_csv(out / "auc_top10.csv", index=False)
    per_run.sort_values(RUN_KEYS).to_csv(out / "per_run.csv", index=False)
    curves.to_csv(out / "topk_curves.csv", index=False)
    pairs.to_csv(out / "paired_differences.csv", index=False)
    settings = {"title": title, "budget": budget, "methods": methods}
    (out / "bbo.json").write_text(json.dumps(settings, indent=1) + "\n")
    return {"pmo": pmo_board, "ehrlich": ehrlich_board, "pairs": pairs, "figures": figures}


def rebuild_bbo_report(folder: Path | str) -> dict:
    """The report again from its own ``per_run.csv``, ``topk_curves.csv`` and ``bbo.json`` (no run folders)."""
    folder = Path(folder)
    per_run = pd.read_csv(folder / "per_run.csv", dtype={"commit": str})
    curves = pd.read_csv(folder / "topk_curves.csv")
    settings = json.loads((folder / "bbo.json").read_text())
    return write_bbo_report(per_run, curves, folder, settings["methods"], settings["title"], settings["budget"])
