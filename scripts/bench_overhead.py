"""What the runner adds to the loop it wraps, by what it writes: one table with a per-phase breakdown.

Five variants of the same run (DDPO on the embedded digits backbone, JPEG reward; by default 512 queries in
8 steps of 64, evaluations at 0, 50 and 100% of the budget, as many evaluations per step as the default
2,048-query run with its 11 evaluation points has), all set up alike (task, policy, frozen reference, oracle,
method) and all evaluated for real at the same points (the eval-rollout cache is emptied before every run, so
no evaluation is served from it):

  bare         ``method.step(oracle)`` until the budget is spent, ``evaluate`` at the evaluation points; nothing
               written, nothing logged: the work the runner cannot avoid;
  runner       ``benchsuite.runner.run(write=False)``: nothing written;
  +checkpoint  the run folder with its checkpoints and run files, the JSONL tracker replaced by a null one;
  +jsonl       the run folder as ``run`` writes it (checkpoints, metrics.jsonl, sample grids);
  +mlflow      and an MLflow tracker (a fresh sqlite store, the default; ``--mlflow-uri`` for another);
  +mlflow/step the same with a checkpoint and a log flush after every method step (``checkpoint_every=0``: what
               the runner did before it checkpointed on a time cadence and batched its logs).

Runs are interleaved bare, runner, bare, +checkpoint, bare, +jsonl, ..., and repeated with each pair's order
swapped in every other repetition (runner, bare, ...), after a garbage collection outside the timed region, so that
the load of a shared machine and what a run leaves to the next hit a variant and its bare partner alike: each
variant's overhead is the median over the repetitions of its time divided by its bare partner's, in wall seconds
and in CPU seconds of
this process (which other load hardly changes; it leaves out waits for the disk and git's subprocesses). Phases
are exclusive CPU seconds from ``scripts/profile_phases.py``'s ``PhaseClock`` (sampling: the method's rollouts;
update: the rest of ``Method.step``; oracle; fits; evaluation: ``evaluate``; checkpoint: the method's state
snapshot and ``torch.save``; logging: tracker calls, run files, run tags; other: setup, sample-grid rendering, the
runner's bookkeeping), medians over the repetitions.

    python scripts/bench_overhead.py [--reps 3] [--budget 512] [--fractions 0 0.5 1] [--checkpoint-every S]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from profile_phases import PHASES, PhaseClock, instrument  # noqa: E402 - scripts/ is not a package

TASK, METHOD = "digits-jpeg-compress-v1", "ddpo"
VARIANTS = ("runner", "+checkpoint", "+jsonl", "+mlflow", "+mlflow/step")
COLUMNS = ("sampling", "update", "oracle", "fits", "evaluation", "checkpoint", "logging", "other")
assert set(COLUMNS) == set(PHASES)


def bare_run(cfg, clock: PhaseClock) -> None:
    """The loop ``run`` wraps, with the runner's setup and evaluation schedule and nothing else."""
    from benchsuite.evaluation import evaluate
    from benchsuite.runner import build_method, eval_points

    torch.manual_seed(cfg.seed)
    task = cfg.make_task()
    policy = task.make_policy().to(cfg.device)
    reference = policy.frozen_copy()
    oracle = task.train_oracle(cfg.budget)
    method = build_method(cfg, task, policy, torch.Generator().manual_seed(cfg.seed))
    points, done, pretrained = eval_points(cfg.budget, cfg.eval_fractions), set(), None

    def evaluate_now():
        nonlocal pretrained
        with clock.phase("evaluation"):
            _, images, _, _ = evaluate(policy, reference, task, method, pretrained)
        pretrained = images if pretrained is None else pretrained
        done.update(p for p in points if p <= oracle.used)

    evaluate_now()
    while not oracle.exhausted:
        method.step(oracle)
        if any(p <= oracle.used and p not in done for p in points) or oracle.exhausted:
            evaluate_now()


def runner_run(cfg, variant: str, mlflow_uri: str | None, checkpoint_every: float | None) -> None:
    from unittest import mock

    from benchsuite import tracking
    from benchsuite.runner import run

    tracker = None
    if variant.startswith("+mlflow"):
        tracker = tracking.MlflowTracker(mlflow_uri, artifact_root=Path(cfg.output_root) / "artifacts")
    if variant == "+mlflow/step":
        checkpoint_every = 0.0
    kwargs = {} if checkpoint_every is None else {"checkpoint_every": checkpoint_every}
    if variant == "+checkpoint":
        with mock.patch.object(tracking, "JsonlTracker", lambda run_dir: tracking.NullTracker()):
            run(cfg, **kwargs)
    else:
        run(cfg, tracker=tracker, write=variant != "runner", **kwargs)


def timed(clock: PhaseClock, fn) -> dict[str, float]:
    """Run ``fn`` with the eval cache emptied; wall and CPU seconds and the exclusive seconds of each phase."""
    from benchsuite import evaluation

    evaluation._ROLLOUT_CACHE.clear()
    gc.collect()  # the previous run's garbage is not this run's cost
    clock.totals.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    with clock.phase("other"):
        fn()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, **clock.totals}


def print_table(args, rows: dict, ratios: dict, reps_done: int) -> None:
    """The table over the repetitions so far (printed after each, so that a stopped run still reports)."""

    def med(values):
        return statistics.median(values)

    print(f"{METHOD} on {TASK}: {args.budget} queries, evaluations at {args.fractions}, checkpoint_every "
          f"{'default' if args.checkpoint_every is None else args.checkpoint_every}; {reps_done} interleaved "
          f"repetition(s), one torch thread; medians (phases in CPU seconds; overhead: median of per-pair ratios "
          f"to bare)", flush=True)
    head = ["variant", "wall s", "CPU s", "vs bare (wall)", "vs bare (CPU)", *COLUMNS]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for name, runs in rows.items():
        wall_ratio = "" if name == "bare" else f"{100 * (med(r for r, _ in ratios[name]) - 1):+.1f}%"
        cpu_ratio = "" if name == "bare" else f"{100 * (med(c for _, c in ratios[name]) - 1):+.1f}%"
        phases = [f"{med(r.get(p, 0.0) for r in runs):.2f}" for p in COLUMNS]
        print(f"| {name} | {med(r['wall'] for r in runs):.1f} | {med(r['cpu'] for r in runs):.1f} | {wall_ratio} | "
              f"{cpu_ratio} | " + " | ".join(phases) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the interleaved sequence")
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--checkpoint-every", type=float, default=None,
                        help="seconds, passed to run (default: the runner's default)")
    parser.add_argument("--mlflow-uri", default=None, help="default: a fresh sqlite store in a temporary folder")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from benchsuite.config import resolve
    from benchsuite.tracking import MlflowTracker, default_tracking_uri

    clock = PhaseClock(time.process_time)
    instrument(clock)
    rows: dict[str, list[dict[str, float]]] = {"bare": [], **{v: [] for v in VARIANTS}}
    ratios: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        uri = args.mlflow_uri or default_tracking_uri(Path(tmp) / "mlflow")
        MlflowTracker(uri)._client()  # create and migrate the store once, outside the timed runs
        count = 0

        def config(budget=args.budget):
            nonlocal count
            count += 1  # a fresh output folder per run: no run ever finds an earlier one
            return resolve(TASK, METHOD, seed=0, budget=budget, eval_fractions=tuple(args.fractions),
                           output_root=str(Path(tmp) / f"out{count}"))

        warm = config(budget=64)  # imports, weights, the MLflow experiment: not part of any timed run
        runner_run(warm, "+mlflow", uri, args.checkpoint_every)
        for rep in range(args.reps):
            for variant in VARIANTS:
                bare_cfg, runner_cfg = config(), config()
                pair = {"bare": lambda: timed(clock, lambda: bare_run(bare_cfg, clock)),
                        variant: lambda: timed(clock, lambda: runner_run(runner_cfg, variant, uri,
                                                                          args.checkpoint_every))}
                order = list(pair) if rep % 2 == 0 else list(pair)[::-1]
                times = {name: pair[name]() for name in order}
                bare, mine = times["bare"], times[variant]
                rows["bare"].append(bare)
                rows[variant].append(mine)
                ratios[variant].append((mine["wall"] / bare["wall"], mine["cpu"] / bare["cpu"]))
                print(f"rep {rep} {variant}: bare {bare['wall']:.1f} s ({bare['cpu']:.1f} CPU), {variant} "
                      f"{mine['wall']:.1f} s ({mine['cpu']:.1f} CPU)", file=sys.stderr, flush=True)
            print_table(args, rows, ratios, rep + 1)

if __name__ == "__main__":
    main()
