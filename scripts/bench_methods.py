"""Every method on one task at its default budget over several seeds: a table and reward-vs-queries curves.

    python scripts/bench_methods.py --task digits-jpeg-compress-v0 --seeds 0 1 2 --workers 2 --out /tmp/bench

Each (method, seed) is one ``benchsuite.runner.run`` in its own worker process (1 torch thread each), logged to
``<out>/runs/<run id>/`` (no MLflow); finished runs are skipped, so an interrupted benchmark continues. The
report (``benchsuite.report``) is read back from those folders, so ``--report-only`` redraws it without
training: a markdown table per task (every judge, KL to pretrained, diversity, Vendi, wall time, oracle queries;
mean and 95% bootstrap CI over seeds) and figures in ``<out>/report/``.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _one(task: str, method: str, seed: int, out: str, budget: int | None) -> str:
    import torch

    torch.set_num_threads(1)
    from benchsuite.config import resolve
    from benchsuite.runner import run

    from benchsuite.runner import run_state

    config = resolve(task, method, seed=seed, budget=budget, output_root=out)
    state = run_state(config.run_dir)
    if state == "finished":
        return f"{config.run_dir} (already finished)"
    result = run(config, resume=state == "checkpointed", restart=state == "broken")
    return str(result.run_dir)


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
    from benchsuite.report import load_runs, task_metrics, write_report

    tidy = load_runs(out, tasks=[args.task])
    grids = {args.task: {}}
    for summary in sorted(out.glob(f"runs/{args.task}__*__seed{min(args.seeds)}__*/summary.json")):
        run_dir = summary.parent
        pngs = sorted((run_dir / "samples").glob("*.png"))
        if pngs:
            grids[args.task][run_dir.name.split("__")[1]] = pngs[-1]
    report = write_report(tidy, out / "report", grids=grids)
    board = report["leaderboard"]
    _, _, metrics = task_metrics(args.task)
    print(f"\n{args.task}: final evaluation, mean [95% bootstrap CI] over seeds")
    print((out / "report" / "leaderboard.md").read_text())
    print("figures:", *[str(p) for p in report["figures"]], sep="\n  ")
    print("hypervolume of the reward/diversity front:", report["hypervolume"])

if __name__ == "__main__":
    main()
