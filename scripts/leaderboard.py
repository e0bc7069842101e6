"""The committed leaderboard of the embedded suite: every method on every embedded task, 5 seeds, one command.

    python scripts/leaderboard.py                      # runs what is missing, then writes results/leaderboard/
    python scripts/leaderboard.py --report-only        # redraw the report from the finished runs

Embedded tasks are the task cards whose backbone ships with the package (digits, sequence models), toy tasks and
superseded versions excluded. Every (task, method, seed) is one ``benchsuite.runner.run`` in a worker process
(1 torch thread each) through ``benchsuite.sweep`` (resumable: finished runs are skipped, interrupted ones
resume). Run folders go to ``<out>/runs/`` (not committed); the report (leaderboard.md/.csv/.tex, figures) to
``<out>/``. The script prints the wall time of the whole suite and a table of CPU seconds per (task, method).

The leaderboard protocol is smaller than the task cards' defaults (2048 queries) so that the whole suite
(8 methods x 7 tasks x 5 seeds = 280 runs) fits the one-hour target on 2 CPU cores: ``LEADERBOARD_BUDGET``
queries per run on every task (on the sequence tasks: 4 online rounds of 128, each followed by 2 steps of 64
against the surrogate) and evaluations at 0, 50 and 100% of the budget. Every method of a task gets the same
budget. ``--budget`` and ``--eval-fractions`` run other protocols (e.g. the cards' defaults) into another
``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EMBEDDED_BACKBONES = ("digits", "ehrlich", "selfies")
LEADERBOARD_BUDGET = {"digits": 512, "ehrlich": 512, "selfies": 512}
"""Oracle queries per run on the committed leaderboard, by backbone (one value today; the table allows a
backbone whose queries cost more or less compute to get its own)."""
EVAL_FRACTIONS = (0.0, 0.5, 1.0)


def embedded_tasks() -> list[str]:
    """The current embedded task cards (a card superseded by a newer version of itself is left out)."""
    from benchsuite.tasks import superseded_by, task_specs

    specs = task_specs()
    return sorted(t for t, spec in specs.items()
                  if spec.backbone in EMBEDDED_BACKBONES and not t.startswith("toy-") and not superseded_by(t, specs))


def main() -> None:
    from benchsuite.registry import METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=None, help="default: every embedded task")
    parser.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/leaderboard")
    parser.add_argument("--budget", type=int, default=None,
                        help="queries per run for every task (default: LEADERBOARD_BUDGET by backbone)")
    parser.add_argument("--eval-fractions", nargs="*", type=float, default=list(EVAL_FRACTIONS))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()

    tasks = args.tasks or embedded_tasks()
    methods = args.methods or METHODS.names()
    out = Path(args.out)
    if not args.report_only:
        from benchsuite.sweep import SweepSpec, sweep
        from benchsuite.tasks import task_specs

        specs = task_specs()
        groups: dict[int, list[str]] = {}  # budget -> tasks (one sweep per budget)
        for task in tasks:
            budget = args.budget if args.budget is not None else LEADERBOARD_BUDGET[specs[task].backbone]
            groups.setdefault(budget, []).append(task)
        start = time.perf_counter()
        done = [0]

        def progress(o) -> None:
            done[0] += 1
            note = o.error or f"{o.final.get('cost/wall_s', float('nan')):.0f} s"
            print(f"[{done[0]}] {o.config.task} {o.config.method} seed {o.config.seed}: {o.status} ({o.before}) {note}",
                  flush=True)

        outcomes = []
        for seed in args.seeds:  # seed-major: a stopped suite still holds whole seeds of every task
            for budget, group in groups.items():
                spec = SweepSpec(name=f"leaderboard-{budget}", tasks=tuple(group), methods=tuple(methods),
                                 seeds=(seed,), budget=budget, eval_fractions=tuple(args.eval_fractions))
                outcomes += sweep(spec, output_root=out, workers=args.workers, on_outcome=progress)
        wall = time.perf_counter() - start
        failed = [o for o in outcomes if o.status != "FINISHED"]
        print(f"suite: {len(outcomes)} runs, {len(failed)} failed, wall {wall / 60:.1f} min with {args.workers} workers")

    from benchsuite.report import final_grids, load_runs, write_report

    tidy = load_runs(out, tasks=tasks)
    tidy = tidy[tidy["seed"].isin(args.seeds)]  # --report-only --seeds 0 1: a report of whole seeds only
    report = write_report(tidy, out, grids=final_grids(out, tasks=tasks))
    print((out / "leaderboard.md").read_text())
    # CPU cost per (task, method): the run's own wall time in its single-threaded worker
    rows = {}
    for path in sorted(out.glob("runs/*/summary.json")):
        s = json.loads(path.read_text())
        if s["status"] != "FINISHED" or s["config"]["seed"] not in args.seeds or s["config"]["task"] not in tasks:
            continue
        key = (s["config"]["task"], s["config"]["method"])
        rows.setdefault(key, []).append(s["wall_time_s"])
    print("| task | method | runs | mean s/run | total s |\n|---|---|---|---|---|")
    for (t, m), v in sorted(rows.items()):
        print(f"| {t} | {m} | {len(v)} | {sum(v) / len(v):.0f} | {sum(v):.0f} |")
    print(f"total run time {sum(sum(v) for v in rows.values()) / 60:.1f} min (sum over runs)")
    print("figures:", *[str(p) for p in report["figures"]], sep="\n  ")


if __name__ == "__main__":
    main()
