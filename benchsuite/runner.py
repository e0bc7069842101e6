"""The one training loop. Every method, sweep and study goes through ``run``.

    task   = make_task(config.task)
    policy = task.make_policy();  reference = frozen copy of it
    oracle = task.train_oracle(config.budget)
    method.setup(policy, task.info, generator(seed))
    while not oracle.exhausted: method.step(oracle)      # logged at oracle.used
        evaluate at the fixed fractions of the budget    # judges only: no budget spent

The runner seeds once; the method draws all its randomness from the generator it is given; evaluation uses
the task's fixed eval seed, so every method and seed is judged on the same initial noise.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .budget import QueryLog
from .config import RunConfig
from .evaluation import evaluate, sample_grid
from .registry import METHODS
from .tasks import make_task


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        config: the run's config.
        final: metrics of the last evaluation (at the full budget).
        curve: one dict per evaluation point, ``{"queries": q, **metrics}``.
        train: one dict per method step, ``{"queries": q, **diagnostics}``.
        query_log: every answered oracle query.
        wall_time: seconds, setup included.
        run_dir: where the run's files are, or None when nothing was written.
    """

    config: RunConfig
    final: dict[str, float]
    curve: list[dict[str, float]]
    train: list[dict[str, float]]
    query_log: QueryLog
    wall_time: float
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def eval_points(budget: int, fractions: tuple[float, ...]) -> list[int]:
    """Query counts at which to evaluate: ``ceil(f * budget)`` for each fraction, deduplicated, sorted."""
    return sorted({min(budget, math.ceil(f * budget - 1e-9)) for f in fractions})


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, int | str) or (isinstance(v, float) and math.isfinite(v)) else None)
            for k, v in metrics.items()}


def run(config: RunConfig, tracker=None, progress: bool = False, write: bool = True) -> RunResult:
    """Train ``config.method`` on ``config.task`` until the budget is spent; evaluate on schedule.

    Args:
        config: a resolved ``RunConfig`` (see ``benchsuite.config.resolve``).
        tracker: a ``benchsuite.tracking.Tracker``; None logs nothing beyond the run directory.
        progress: show a progress bar over oracle queries (stderr).
        write: write ``results/runs/<run_id>/`` (summary, metrics, query log, sample grids).
    """
    from .tracking import JsonlTracker, MultiTracker, NullTracker

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    task = make_task(config.task)
    policy = task.make_policy().to(config.device)
    reference = policy.frozen_copy()
    oracle = task.train_oracle(config.budget)
    method_cls = METHODS.load(config.method)
    method = method_cls(method_cls.Config(**dict(config.method_config)))
    method.setup(policy, task.info, generator)

    run_dir = config.run_dir if write else None
    trackers = [tracker] if tracker is not None else []
    if run_dir is not None:
        if run_dir.exists():  # the id is the config's hash: this only replaces an identical config's old run
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        trackers.append(JsonlTracker(run_dir))
    log = MultiTracker(trackers) if trackers else NullTracker()
    params = {k: v for k, v in config.to_dict().items() if k not in ("method_config", "output_root")}
    params.update({f"method.{k}": v for k, v in config.method_config})
    from .tracking import run_tags

    log.start_run(experiment=config.task, run_name=f"{config.method}-seed{config.seed}", run_key=config.run_id,
                  params=params, tags={**run_tags(), "task": config.task, "method": config.method,
                                       "seed": str(config.seed), "run_id": config.run_id})

    points = eval_points(config.budget, config.eval_fractions)
    curve: list[dict[str, float]] = []
    train: list[dict[str, float]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.budget, desc=f"{config.method} on {config.task}", unit="q", leave=False)

    def evaluate_now() -> None:
        metrics, images, conds = evaluate(policy, reference, task, method)
        curve.append({"queries": oracle.used, **metrics})
        log.log_metrics(metrics, step=oracle.used)
        log.log_image(sample_grid(images, conds), f"samples/queries_{oracle.used:07d}.png")

    status = "FAILED"
    try:
        evaluate_now()
        done = {0}
        while not oracle.exhausted:
            before = oracle.used
            info = method.step(oracle)
            if oracle.used == before:
                raise RuntimeError(f"{config.method}.step() spent no oracle query; the run would never end")
            train.append({"queries": oracle.used, **info})
            log.log_metrics(info, step=oracle.used)
            if bar is not None:
                bar.update(oracle.used - before)
                bar.set_postfix(reward=f"{info.get('train/reward_mean', float('nan')):.4g}")
            if any(p <= oracle.used and p not in done for p in points):
                done.update(p for p in points if p <= oracle.used)
                evaluate_now()
        if curve[-1]["queries"] != oracle.used:
            evaluate_now()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - start
        torch.set_num_threads(previous_threads)
        result = RunResult(config, dict(curve[-1]) if curve else {}, curve, train, oracle.query_log(), wall, run_dir)
        if run_dir is not None:
            _write_run_files(result, status, oracle.used)
        log.log_metrics({"wall_time_s": wall}, step=oracle.used)
        log.end_run(status)
    return result


def _write_run_files(result: RunResult, status: str, used: int) -> None:
    """summary.json (final metrics, status, wall time) and query_log.csv, written atomically."""
    run_dir = result.run_dir
    summary = {
        "run_id": result.config.run_id,
        "status": status,
        "config": result.config.to_dict(),
        "queries_used": used,
        "wall_time_s": result.wall_time,
        "final": _jsonable(result.final),
    }
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, run_dir / "summary.json")
    qlog = result.query_log
    np.savetxt(run_dir / "query_log.csv", np.column_stack([qlog.call, qlog.condition, qlog.reward]),
               delimiter=",", header="call,condition,reward", comments="", fmt=["%d", "%d", "%.9g"])
