"""Every method on one task at its default budget over several seeds: a table and reward-vs-queries curves.

    python scripts/bench_methods.py --task digits-jpeg-compress-v0 --seeds 0 1 2 --workers 2 --out /tmp/bench

Each (method, seed) is one ``benchsuite.runner.run`` in its own worker process (1 torch thread each), logged to
``<out>/runs/<run id>/`` (no MLflow). The table is read back from those folders, so rerunning with
``--report-only`` redraws it without training. Prints a markdown table: final eval reward (mean +- std over
seeds), KL to pretrained, diversity, class fidelity where the task has it, wall time and oracle queries.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _one(task: str, method: str, seed: int, out: str, budget: int | None) -> str:
    import torch

    torch.set_num_threads(1)
    from benchsuite.config import resolve
    from benchsuite.runner import run

    result = run(resolve(task, method, seed=seed, budget=budget, output_root=out))
    return str(result.run_dir)


def collect(out: Path, task: str):
    """Tidy frame of every evaluation point of every finished run of ``task`` under ``out``."""
    import pandas as pd

    from benchsuite.tracking import read_metrics

    rows, summaries = [], []
    for run_dir in sorted((out / "runs").glob(f"{task}__*")):
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            continue
        summary = json.loads(summary_path.read_text())
        if summary["status"] != "FINISHED":
            continue
        cfg = summary["config"]
        summaries.append({"method": cfg["method"], "seed": cfg["seed"], "wall_time_s": summary["wall_time_s"],
                          "queries": summary["queries_used"], **summary["final"]})
        metrics = read_metrics(run_dir)
        evals = metrics.dropna(subset=[c for c in metrics.columns if c.startswith("eval/")][:1])
        for _, r in evals.iterrows():
            rows.append({"method": cfg["method"], "seed": cfg["seed"], "queries": int(r["step"]),
                         **{k: r[k] for k in evals.columns if k.startswith("eval/")}})
    return pd.DataFrame(rows), pd.DataFrame(summaries)


def table(final, primary: str) -> str:
    cols = [c for c in (f"eval/{primary}_mean", "eval/class_prob_mean", "eval/kl", "eval/diversity",
                        "wall_time_s", "queries") if c in final.columns]
    g = final.groupby("method")
    lines = ["| method | seeds | " + " | ".join(c.removeprefix("eval/") for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    order = g[cols[0]].mean().sort_values(ascending=False).index
    for m in order:
        sub = g.get_group(m)
        cells = [f"{sub[c].mean():.4g} ± {sub[c].std(ddof=1) if len(sub) > 1 else 0:.2g}" for c in cols[:-2]]
        cells += [f"{sub['wall_time_s'].mean():.0f}", f"{sub['queries'].mean():.0f}"]
        lines.append(f"| {m} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves, primary: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    metrics = [m for m in (f"eval/{primary}_mean", "eval/class_prob_mean", "eval/kl") if m in curves.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), constrained_layout=True)
    for ax, m in zip(axes, metrics):
        sns.lineplot(data=curves, x="queries", y=m, hue="method", errorbar=("ci", 95), ax=ax,
                     legend=ax is axes[0], marker="o", markersize=3)
        ax.set_title(m.removeprefix("eval/"))
        ax.set_xlabel("oracle queries")
        ax.set_ylabel("")
        if m == "eval/kl":
            ax.set_yscale("symlog", linthresh=1.0)
    if axes[0].get_legend() is not None:
        sns.move_legend(axes[0], "best", fontsize=7, title=None)
    fig.savefig(path, dpi=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-jpeg-compress-v0")
    parser.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=None, help="default: the task's default budget")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()

    from benchsuite.registry import METHODS
    from benchsuite.tasks import load_spec

    spec = load_spec(args.task)
    out = Path(args.out)
    methods = args.methods or METHODS.names()
    if not args.report_only:
        jobs = [(args.task, m, s, str(out), args.budget) for m in methods for s in args.seeds]
        with ProcessPoolExecutor(args.workers) as pool:
            for job, run_dir in zip(jobs, pool.map(_one, *zip(*jobs))):
                print(f"done {job[1]} seed {job[2]}: {run_dir}", flush=True)
    curves, final = collect(out, args.task)
    print(f"\n{args.task}: final evaluation, mean ± std over seeds")
    print(table(final, spec.primary_judge))
    fig = out / f"{args.task}_curves.png"
    plot(curves, spec.primary_judge, fig)
    curves.to_csv(out / f"{args.task}_curves.csv", index=False)
    print(f"curves: {fig}")


if __name__ == "__main__":
    main()
