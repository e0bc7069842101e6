"""Where a leaderboard run spends its time: one table of seconds per phase for every (task, method).

    python scripts/profile_phases.py                          # every current embedded task and method, seed 0
    python scripts/profile_phases.py --tasks digits-jpeg-compress-v1 --methods ddpo sqdf

Each run is the leaderboard's (``scripts/leaderboard.py``: its budget, evaluation points and the tuned presets),
written to a temporary folder with its checkpoints and JSONL log as the leaderboard writes them, in this process
with one torch thread. Phases are timed exclusively (a phase called inside another is taken out of the outer one):

- sampling: ``DiffusionPolicy.rollout`` outside evaluation (the method's own chains);
- evaluation: ``benchsuite.evaluation.evaluate`` (the eval chains, the judges, the metrics);
- oracle: ``BudgetedOracle.__call__`` (the training reward);
- fits: surrogate, value-function and online-ensemble refits;
- update: the rest of ``Method.step`` (policy losses, backward passes, optimizer steps);
- checkpoint and logging: the runner's checkpoint writes and tracker calls;
- other: setup (task, backbone, method) and everything not above.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

PHASES = ("sampling", "evaluation", "oracle", "fits", "update", "checkpoint", "logging", "other")


class PhaseClock:
    """Exclusive time per phase: entering a phase pauses the one it was called from. ``timer``: wall time by
    default; ``time.process_time`` gives CPU seconds, which the load of a shared machine hardly changes."""

    def __init__(self, timer=time.perf_counter):
        self.timer = timer
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []  # [phase, start of its current slice]

    @contextmanager
    def phase(self, name: str):
        now = self.timer()
        if self.stack:
            outer = self.stack[-1]
            self.totals[outer[0]] += now - outer[1]
        self.stack.append([name, now])
        try:
            yield
        finally:
            end = self.timer()
            inner = self.stack.pop()
            self.totals[inner[0]] += end - inner[1]
            if self.stack:
                self.stack[-1][1] = end

    def wrap(self, owner, attr: str, name: str | None = None, when=None) -> None:
        """Time every call of ``owner.attr`` as phase ``name`` (``when(self_or_args) -> phase name`` picks one)."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with self.phase(when(*args) if when else name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)


def instrument(clock: PhaseClock) -> None:
    from benchsuite import runner
    from benchsuite.budget import BudgetedOracle
    from benchsuite.methods import online, surrogate, value
    from benchsuite.policies.base import DiffusionPolicy
    from benchsuite.tracking import MultiTracker

    clock.wrap(runner, "evaluate", "evaluation")
    clock.wrap(DiffusionPolicy, "rollout", when=lambda *a: "evaluation" if clock.stack and clock.stack[-1][0] ==
               "evaluation" else "sampling")
    clock.wrap(BudgetedOracle, "__call__", "oracle")
    clock.wrap(surrogate.SurrogateReward, "fit", "fits")
    clock.wrap(value.ValueFunction, "fit", "fits")
    clock.wrap(online.EnsembleSurrogate, "fit", "fits")
    clock.wrap(runner, "_save_checkpoint", "checkpoint")
    from benchsuite.methods.base import Method

    clock.wrap(Method, "state_dict", "checkpoint")  # the snapshot the runner saves
    for attr in ("log_metrics", "log_metric_rows", "log_image", "log_artifact", "start_run", "end_run"):
        if hasattr(MultiTracker, attr):
            clock.wrap(MultiTracker, attr, "logging")
    for attr in ("_log_run_files", "_write_run_files"):  # config, summary, query log: files and MLflow artifacts
        clock.wrap(runner, attr, "logging")
    clock.wrap(runner, "run_tags", "logging")  # the name the runner calls
    # every method's step: registered methods subclass Method; wrap each concrete step found
    from benchsuite.registry import METHODS

    for name in METHODS.names():
        cls = METHODS.load(name)
        if "step" in cls.__dict__:
            clock.wrap(cls, "step", "update")
    clock.wrap(online.OnlineRounds, "step", "update")


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from leaderboard import EVAL_FRACTIONS, LEADERBOARD_BUDGET, embedded_tasks

    from benchsuite.config import resolve
    from benchsuite.registry import METHODS
    from benchsuite.runner import run
    from benchsuite.tasks import load_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=None)
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clock = PhaseClock()
    instrument(clock)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks or embedded_tasks():
            for method in args.methods or METHODS.names():
                spec = load_spec(task)
                cfg = resolve(task, method, seed=args.seed,
                              budget=LEADERBOARD_BUDGET.get(spec.backbone, spec.default_budget),
                              eval_fractions=EVAL_FRACTIONS, output_root=tmp)
                clock.totals.clear()
                start = time.perf_counter()
                with clock.phase("other"):
                    run(cfg)
                total = time.perf_counter() - start
                rows.append((task, method, total, dict(clock.totals)))
                print(f"{task} {method}: {total:.1f} s", flush=True)
    head = "| task | method | total s | " + " | ".join(PHASES) + " |"
    print("\n" + head + "\n|" + "---|" * (len(PHASES) + 3))
    sums = defaultdict(float)
    for task, method, total, phases in rows:
        for p in PHASES:
            sums[p] += phases.get(p, 0.0)
        sums["total"] += total
        print(f"| {task} | {method} | {total:.1f} | " + " | ".join(f"{phases.get(p, 0.0):.1f}" for p in PHASES) + " |")
    print(f"| all | all | {sums['total']:.0f} | " + " | ".join(
        f"{sums[p]:.0f} ({100 * sums[p] / sums['total']:.0f}%)" for p in PHASES) + " |")


if __name__ == "__main__":
    main()
