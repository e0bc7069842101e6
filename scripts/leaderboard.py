"""The committed leaderboard of the embedded suite: equal tuning effort, then every method on every embedded task.

    python scripts/leaderboard.py tune                 # stage 1 (resumable): tune every method on every task
    python scripts/leaderboard.py run                  # stage 2 (resumable): 5 seeds with the tuned presets + report
    python scripts/leaderboard.py report               # stage 3: redraw the report from the committed CSVs alone

Embedded tasks are the current task cards whose backbone ships with the package (digits, sequence models); toy
tasks and superseded versions are left out.

Stage 1, tuning (``results/leaderboard/tuning/``): every method with hyperparameters gets the same Optuna budget on
every task: ``TUNE_TRIALS`` trials (TPE, sampler seed 0, median pruning at equal query counts) over the fields in
``TUNE_PARAMS`` (the KL coefficient and discount where the method has them, its learning rate, and the one or two
settings its paper names next; ranges from ``baselines/<method>/search_space.yaml``, per backbone where they
differ), each trial one run at the leaderboard's budget and evaluation points with the tuning seed 1000 (never a
reported seed). The objective is the same for every method of a task: on tasks with a ``drift_budget`` the primary
judge's best evaluation within that path KL (the leaderboard's matched-drift value; BO, which selects samples and
has no path KL, at full budget); the four online tasks in ``TOP10_TUNED`` were tuned on the mean of the 10 best
oracle values found (their headline until the v2 report, which ranks every task on the product's eval reward; their
studies were not rerun on it: the Ehrlich-128 and -64 studies alone take over an hour on 2 cores). The best trial of each study
is exported to ``baselines/<method>/tuned/<task>.yaml``, which every later run of that task picks up. The study journals
(``journals/*.log``, Optuna's own format) and ``tuning.md`` / ``tuning.csv`` (trials, pruned, best value and
parameters, CPU seconds per study) are committed. ``pretrained`` has nothing to tune; ``best-of-n``'s one setting
decides which of its samples are judged, not how it searches, so it keeps its definition (the task's eval samples
per condition).

Stage 2, the leaderboard: every (task, method, seed) is one ``benchsuite.runner.run`` in a worker process (1 torch
thread each) through ``benchsuite.sweep`` (resumable; run folders in ``<out>/runs/``, not committed), seed-major
so that a stopped suite holds whole seeds. ``LEADERBOARD_BUDGET`` queries per run (on the sequence tasks 4 online
rounds of 128), evaluations at ``EVAL_FRACTIONS``. The report (``benchsuite.report.write_report``: leaderboard
md/csv/tex with Student-t intervals, paired differences, separation, matched drift, figures, ``per_seed.csv`` and
``curves.csv``) goes to ``<out>/``, with each card's ``reference_score`` as the fixed upper anchor of normalized
scores; ``cost.md`` has the CPU seconds per (task, method). Stage 3 rebuilds all of it from the committed CSVs.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

EMBEDDED_BACKBONES = ("digits", "ehrlich", "selfies")
LEADERBOARD_BUDGET = {"digits": 512, "ehrlich": 512, "selfies": 512}
"""Oracle queries per run on the committed leaderboard, by backbone (one value today; the table allows a
backbone whose queries cost more or less compute to get its own)."""
EVAL_FRACTIONS = (0.0, 0.25, 0.5, 1.0)
GRID_BACKBONES = ("digits", "ehrlich", "selfies")
"""Backbones whose sample grids go into the report (images; Ehrlich sequences as text rows; molecules as RDKit
drawings, see benchsuite/grids.py)."""
TUNE_TRIALS = 8
"""Trials per (task, method) study: the same tuning budget for every method."""
TUNE_PARAMS = {
    "ddpo": ("lr", "kl_coef", "clip_range", "timestep_fraction"),
    "draft": ("lr", "kl_coef", "k"),
    "sqdf": ("lr", "kl_coef", "discount"),
    "vard": ("lr", "kl_coef", "discount", "timestep_fraction"),
    "ctrl": ("lr", "kl_coef", "trust_coef", "timestep_fraction"),
    "bo": ("feature_dim", "initial_queries"),
}
"""What each method's study tunes (fields of its search space). None of them changes a run's compute much, so the
leaderboard's cost stays what the presets give."""


def embedded_tasks() -> list[str]:
    """The current embedded task cards (a card superseded by a newer version of itself is left out). Cards with PMO
    accounting (the black-box optimization cards of issue 24) are left out: they belong to a bbo tier of their own."""
    from benchsuite.tasks import superseded_by, task_specs

    specs = task_specs()
    return sorted(t for t, spec in specs.items()
                  if spec.backbone in EMBEDDED_BACKBONES and not t.startswith("toy-") and not superseded_by(t, specs)
                  and spec.accounting is None)


TOP10_TUNED = frozenset({"ehrlich-s32-l128-v1", "ehrlich-s32-l64-v1", "ehrlich-s32-l32-v1", "selfies-qed-v0"})
"""Online tasks whose committed studies were run on the v1 headline, the top-10 mean of the queries found; they
keep that objective so that their journals resume as they were. Every later card is tuned on its headline."""


def tuning_objective(task: str, method: str) -> str:
    """The objective of every study on ``task`` (see the module docstring): the same for every method, except
    that a method that does not fine-tune (``bo``) is not on the path-KL axis, so it is tuned at full budget."""
    from benchsuite.report.plots import REFERENCE_METHODS
    from benchsuite.tasks import load_spec
    from benchsuite.tuning import MATCHED

    spec = load_spec(task)
    if task in TOP10_TUNED:
        return "found"
    if spec.drift_budget is None:
        raise SystemExit(f"{task} states no drift_budget: the leaderboard tunes at matched drift")
    primary = f"eval/{spec.primary_judge}_mean"
    return primary if method in REFERENCE_METHODS else primary + MATCHED


def tune(tasks: list[str], methods: list[str], out: Path, workers: int) -> None:
    import optuna
    import pandas as pd

    from benchsuite.tuning import Tuner, TuneSpec

    rows = []
    start = time.perf_counter()
    for task in tasks:
        for method in methods:
            if method not in TUNE_PARAMS:
                continue
            spec = TuneSpec(task=task, method=method, n_trials=TUNE_TRIALS, params=TUNE_PARAMS[method],
                            objectives=(tuning_objective(task, method),), budget=budget_of(task),
                            overrides=() if method == "bo" else (("reward_norm", "running"),),
                            eval_fractions=EVAL_FRACTIONS, output_root=str(out),
                            storage=str(out / "journals" / f"{method}--{task}.log"))
            tuner = Tuner(spec)
            (out / "journals").mkdir(parents=True, exist_ok=True)
            began = time.perf_counter()
            # resumable: trials left RUNNING by a killed stage are stale (no other tuner shares the journal)
            report = tuner.tune(workers, retry_interrupted=True)
            study = optuna.load_study(study_name=tuner.study_name, storage=tuner.storage())
            trials = study.get_trials(deepcopy=False)
            cpu = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                      if t.datetime_complete is not None and t.datetime_start is not None)
            best = study.best_trial
            tuner.export(study)
            rows.append({"task": task, "method": method, "objective": tuner.metrics[0], "trials": len(trials),
                         "pruned": report.states.get("PRUNED", 0), "failed": report.states.get("FAIL", 0),
                         "best": best.value, "best_trial": best.number,
                         "params": json.dumps(best.params, sort_keys=True), "cpu_s": round(cpu, 1),
                         "wall_s": round(time.perf_counter() - began, 1)})
            print(f"{task} {method}: best {best.value:.5g} (trial {best.number}) {best.params}; "
                  f"{report.states} {cpu:.0f} s CPU", flush=True)
    table = pd.DataFrame(rows)
    if (out / "tuning.csv").exists():  # a stage of some tasks keeps every other study's row
        kept = pd.read_csv(out / "tuning.csv")
        done = set(zip(table.task, table.method)) if len(table) else set()
        kept = kept[[(t, m) not in done for t, m in zip(kept.task, kept.method)]]
        table = pd.concat([kept, table], ignore_index=True).sort_values(["task", "method"], ignore_index=True)
    table.to_csv(out / "tuning.csv", index=False)
    wall = time.perf_counter() - start
    lines = ["# Tuning of the leaderboard's presets", "",
             f"`python scripts/leaderboard.py tune`: {TUNE_TRIALS} Optuna trials (TPE, median pruning) per (task, "
             f"method), tuning seed 1000, the leaderboard's queries per trial ({sorted(set(LEADERBOARD_BUDGET.values()))}), "
             "evaluations at "
             f"{list(EVAL_FRACTIONS)} of the budget. Objective per task: the primary judge's best evaluation within "
             "the card's drift budget (path KL; BO at full budget), except on the online tasks tuned before the v2 "
             f"report ({', '.join(sorted(TOP10_TUNED))}): the top-10 mean of the queries. Best trials "
             "exported to `baselines/<method>/tuned/<task>.yaml`; journals in `journals/`.", "",
             f"Cost: {table.cpu_s.sum() / 60:.1f} trial-minutes (the summed wall time of the single-threaded trial "
             f"processes; more than their CPU time when the machine ran other work), {wall / 60:.1f} min wall with "
             f"{workers} workers in the last tuning stage.", "",
             "| task | method | objective | trials | pruned | failed | best | best parameters | trial s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.task} | {r.method} | {r.objective} | {r.trials} | {r.pruned} | {r.failed} | "
                     f"{r.best:.5g} | {r.params} | {r.cpu_s:.0f} |")
    (out / "tuning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def budget_of(task: str) -> int:
    """The leaderboard's queries per run on ``task`` (a card outside the table keeps its default budget)."""
    from benchsuite.tasks import load_spec

    spec = load_spec(task)
    return LEADERBOARD_BUDGET.get(spec.backbone, spec.default_budget)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its joined children (the pool's workers): the stage's compute
    whatever else the machine was doing; its wall time on an idle machine with ``workers`` cores is at least
    cpu / workers."""
    return sum(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def run(tasks: list[str], methods: list[str], seeds: list[int], out: Path, workers: int, budget: int | None,
        fractions: tuple[float, ...], backend: str = "local") -> None:
    from benchsuite.config import resolve
    from benchsuite.sweep import run_many

    from benchsuite.tracking import GIT_SHA_TAG, run_tags

    start = time.perf_counter()
    cpu_before = _cpu_seconds()
    done = [0]

    def progress(o) -> None:
        done[0] += 1
        note = o.error or f"{o.final.get('cost/wall_s', float('nan')):.0f} s"
        print(f"[{done[0]}] {o.config.task} {o.config.method} seed {o.config.seed}: {o.status} ({o.before}) {note}",
              flush=True)

    outcomes = []
    for seed in seeds:  # seed-major: a stopped suite still holds whole seeds of every task
        configs = [resolve(task, method, seed=seed, budget=budget or budget_of(task),
                           eval_fractions=fractions, output_root=str(out)) for task in tasks for method in methods]
        outcomes += run_many(configs, f"leaderboard-seed{seed}", workers=workers, on_outcome=progress,
                             backend=backend)
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    failed = [o for o in outcomes if o.status != "FINISHED"]
    stage = {"tasks": tasks, "runs": len(outcomes), "failed": len(failed),
             "ran": sum(o.before != "finished" for o in outcomes), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
             "workers": workers, "commit": run_tags()[GIT_SHA_TAG]}
    log = out / "suite.json"  # one entry per run stage (a suite may be run in parts, e.g. by task)
    stages = json.loads(log.read_text()) if log.exists() else []
    log.write_text(json.dumps([*stages, stage], indent=1) + "\n")
    print(f"suite: {len(outcomes)} runs, {len(failed)} failed, wall {wall / 60:.1f} min with {workers} workers, "
          f"{cpu / 60:.1f} CPU-minutes")


def report(tasks: list[str], methods: list[str], seeds: list[int], out: Path, keep_other_tasks: bool = False) -> None:
    """The report of the run folders in ``out/runs`` for ``tasks``. ``keep_other_tasks``: a partial rerun; the
    rows (and sample grids) of every other task are kept from the report already in ``out`` (its ``curves.csv`` and
    ``grids/``), so that rerunning the tasks whose cards or presets changed rewrites the whole leaderboard."""
    import pandas as pd

    from benchsuite.report import final_grids, load_runs, read_saved_inputs, write_report
    from benchsuite.tasks import load_spec, superseded_by, task_specs

    tidy = load_runs(out, tasks=tasks)
    grids = {task: {m: png for m, png in by_method.items() if m in methods}
             for task, by_method in final_grids(out, tasks=tasks).items()
             if load_spec(task).backbone in GRID_BACKBONES}
    if keep_other_tasks:
        if not (out / "curves.csv").exists():
            raise SystemExit(f"--keep-other-tasks: {out / 'curves.csv'} holds no earlier report to keep tasks from")
        previous, saved_grids = read_saved_inputs(out)
        specs = task_specs()
        # a task whose card now has a newer version leaves the leaderboard (its rows stay in git history)
        dropped = sorted(t for t in set(previous["task"]) if t not in tasks and superseded_by(t, specs))
        kept = previous[~previous["task"].isin([*tasks, *dropped])]
        print(f"kept from {out / 'curves.csv'}: {sorted(set(kept['task']))}"
              + (f"; dropped as superseded: {dropped}" if dropped else ""))
        tidy = pd.concat([kept, tidy], ignore_index=True)
        grids |= {task: {m: png for m, png in by_method.items() if m in methods}
                  for task, by_method in saved_grids.items() if task not in tasks and task not in dropped}
    tidy = tidy[tidy["seed"].isin(seeds) & tidy["method"].isin(methods)]  # whole seeds, the suite's methods only
    all_tasks = sorted(set(tidy["task"]))
    references = {t: load_spec(t).reference_score for t in all_tasks if load_spec(t).reference_score is not None}
    result = write_report(tidy, out, grids=grids, reference_scores=references)
    walls = tidy[tidy["metric"] == "wall_time_s"].groupby(["task", "method"])["value"]
    lines = ["# CPU cost of the committed leaderboard", "",
             "Per (task, method): each run's own wall time in its single-threaded worker (2 workers on the 2-core "
             "CI-type machine), from the report's `wall_time_s`.", "",
             "| task | method | runs | mean s/run | total s |", "|---|---|---|---|---|"]
    lines += [f"| {t} | {m} | {v.count()} | {v.mean():.0f} | {v.sum():.0f} |" for (t, m), v in walls]
    lines.append(f"\ntotal run time {walls.sum().sum() / 60:.1f} min (sum over runs)")
    if (out / "suite.json").exists():  # one entry per run stage
        stages = json.loads((out / "suite.json").read_text())
        lines += ["", "Run stages, oldest first (a later stage's runs of a task replace an earlier stage's; wall time "
                  "depends on what else the machine ran, CPU time of the workers does not):",
                  "", "| commit | tasks | runs executed / in stage | failed | workers | wall min | CPU min |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['commit'][:12]} | {', '.join(s['tasks'])} | {s['ran']} / {s['runs']} | {s['failed']} | "
                  f"{s['workers']} | {s['wall_s'] / 60:.1f} | {s['cpu_s'] / 60:.1f} |" for s in stages]
        cpu = sum(s["cpu_s"] for s in stages) / 60
        lines.append(f"\nIn all {cpu:.1f} CPU-minutes over these stages (runs that a later stage replaced included).")
    (out / "cost.md").write_text("\n".join(lines) + "\n")
    print((out / "leaderboard.md").read_text())
    print("\n".join(lines))
    print("figures:", *[str(p) for p in result["figures"]], sep="\n  ")


def main() -> None:
    from benchsuite.registry import METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", choices=["tune", "run", "report"], default="run",
                        help="tune: the presets; run: the leaderboard and its report (default); report: from CSVs")
    parser.add_argument("--tasks", nargs="*", default=None, help="default: every current embedded task")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="default: every built-in method (a plugin's methods only when named here)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/leaderboard")
    parser.add_argument("--budget", type=int, default=None,
                        help="queries per run for every task (default: LEADERBOARD_BUDGET by backbone)")
    parser.add_argument("--eval-fractions", nargs="*", type=float, default=list(EVAL_FRACTIONS))
    parser.add_argument("--report-only", action="store_true", help="with run: only the report from the run folders")
    parser.add_argument("--keep-other-tasks", action="store_true",
                        help="with run: a partial rerun of --tasks; every other task's rows and grids are kept from "
                        "the report already in --out")
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="run stage: this machine's process pool, or the Ray cluster at $RAY_ADDRESS (a local one "
                        "when unset; pip install -e '.[ray]'); the CPU in cost.md counts this machine's processes only")
    args = parser.parse_args()

    tasks = args.tasks or embedded_tasks()
    methods = args.methods or METHODS.builtin_names()  # installed plugins join only when named
    out = Path(args.out)
    if args.stage == "tune":
        tune(tasks, methods, out / "tuning", args.workers)
    elif args.stage == "report":
        from benchsuite.report import rebuild_report

        rebuild_report(out)
        print((out / "leaderboard.md").read_text())
    else:
        if not args.report_only:
            run(tasks, methods, args.seeds, out, args.workers, args.budget, tuple(args.eval_fractions), args.backend)
        report(tasks, methods, args.seeds, out, keep_other_tasks=args.keep_other_tasks)


if __name__ == "__main__":
    main()
