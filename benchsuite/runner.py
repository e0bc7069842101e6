"""The one training loop. Every method, sweep and study goes through ``run``.

    task   = config.make_task()            # the card, with any task overrides
    policy = task.make_policy();  reference = frozen copy of it
    oracle = task.train_oracle(config.budget)
    method.setup(policy, task.info, generator(seed))
    while not oracle.exhausted: method.step(oracle)      # logged at oracle.used
        evaluate at the fixed fractions of the budget    # judges only: no budget spent

The runner seeds once; the method draws all its randomness from the generator it is given; evaluation uses
the task's eval noise: on a card with one evaluation set its fixed eval seed (every method and seed is judged on
the same initial noise); on a card with a selection and a test set (``tasks.EvalProtocol``) noise drawn from the
card's seed and the run's seed (the methods of one seed share it), each set evaluated at every evaluation point.

Under ``accelerate launch`` with several processes (``benchsuite.distributed``) every process runs this loop on
an equal share of the budget, in step; rank 0 alone evaluates, logs and writes the run folder.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import inspect
import io
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import distributed
from .budget import QueryLog
from .config import RunConfig, backbone_digest, config_yaml
from .errors import ConfigError, RunLockedError, StopRun, WriteFailedError, clip
from .evaluation import cost_metrics, evaluate
from .export import export_finished
from .files import RunFolderLock, atomic_write_bytes, atomic_write_text, describe_os_error, is_write_failure
from .methods.online import OnlineRounds
from .metrics.sequences import query_metrics
from .registry import METHODS
from .tracking import JsonlTracker, MultiTracker, NullTracker, run_tags


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


CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
CHECKPOINT_EVERY_S = 30.0
"""Default seconds between checkpoints outside the evaluation points (every evaluation point and the end of the
budget are always checkpointed). A digits DDPO checkpoint (8.6 MB: weights, AdamW state, eval images) takes about
0.08 s, so this costs about 0.3%; a crash loses at most this much work, replayed exactly on ``--resume``."""


@dataclass(frozen=True)
class OracleOptions:
    """How the runner treats a faulty oracle (does not change results, so not part of the run id).

    Attributes:
        retries: extra tries of a failed oracle call (exception, timeout, NaN/inf).
        backoff_s: sleep before retry i is ``backoff_s * 2**i``.
        timeout_s: seconds before a call counts as failed; None waits forever.
    """

    retries: int = 2
    backoff_s: float = 1.0
    timeout_s: float | None = None


def run_state(run_dir: Path) -> str:
    """``"new"`` (nothing there), ``"finished"``, ``"checkpointed"`` (resumable) or ``"broken"`` (files but no
    checkpoint: killed before its first checkpoint)."""
    if not run_dir.exists():
        return "new"
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "FINISHED":
        return "finished"
    return "checkpointed" if (run_dir / CHECKPOINT).exists() else "broken"


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()  # in memory first: torch.save into a file that fills up fails with a bare RuntimeError
    torch.save(state, buffer)
    # atomic: a kill or a full disk leaves the previous checkpoint or the new one, never half of one
    atomic_write_bytes(path, buffer.getbuffer())


def _load_checkpoint(path: Path, config: RunConfig) -> dict[str, Any]:
    try:
        state = torch.load(path, weights_only=True)  # never unpickles arbitrary objects
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ConfigError(f"checkpoint {path} is unreadable ({type(exc).__name__}); restart the run with --restart") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or state.get("run_id") != config.run_id:
        raise ConfigError(f"checkpoint {path} does not belong to run {config.run_id}; restart with --restart")
    return state


def _check_data_parallel(config: RunConfig, world: int, on_eval) -> None:
    """Refuse, with one line, a run that several processes cannot share exactly."""
    method_cls = METHODS.load(config.method)
    parallel = sorted(name for name in METHODS.names() if METHODS.load(name).runs_data_parallel())
    if not method_cls.runs_data_parallel():
        raise ConfigError(f"{config.method} does not run in several processes (data-parallel methods: "
                          f"{', '.join(parallel)}); run it as one process, without accelerate launch")
    if config.task_spec().online is not None:
        raise ConfigError(f"{config.task} trains in online rounds, which do not run in several processes; run it "
                          "as one process, without accelerate launch")
    if config.budget % world:
        raise ConfigError(f"budget {config.budget} does not split evenly over {world} processes; use a multiple "
                          f"of {world}")
    if on_eval is not None:
        raise ConfigError("an on_eval callback (tuning) does not run in several processes")


def _log_of(oracle_state: dict[str, Any]) -> QueryLog:
    """The query log inside a ``BudgetedOracle.state_dict``."""
    log = oracle_state["log"]
    return QueryLog(log["call"].numpy(), log["condition"].numpy(), log["reward"].numpy())


def build_method(config: RunConfig, task, policy, generator: torch.Generator, external_oracle: bool = False):
    """The method of ``config``, set up on ``policy``. On a task with online rounds (``online:`` in its card) a
    method that trains the policy runs inside ``OnlineRounds``: one oracle batch per round, then training against
    a surrogate refitted on every query so far. ``external_oracle``: the oracle is answered from outside (ask/tell)
    and gives no gradients, whatever the task's reward could."""
    method_cls = METHODS.load(config.method)
    method = method_cls(method_cls.Config(**dict(config.method_config)))
    if task.spec.online is not None and method_cls.trains_policy:
        method = OnlineRounds(method, task.spec.online)
    info = task.info
    if external_oracle:
        info = dataclasses.replace(info, oracle_differentiable=False)
    method.setup(policy, info, generator)
    return method


def _owns_run_folder(run_fn):
    """``run`` wrapped (not restructured) in what protects its run folder:

    - one process at a time owns it: ``RunFolderLock`` is taken before the run reads or writes the folder (the check
      that refuses an existing folder is only atomic under it) and released when the run ends; a second process gets
      ``RunLockedError`` (exit code 2). Under a distributed launch rank 0 alone takes it, for every process of the
      run (only rank 0 writes), and tells the others whether it got it;
    - a write that fails for a reason of the file system (no space, a quota, a read-only file system, a folder
      removed meanwhile), in the run folder or the MLflow store, ends the run with one ``WriteFailedError`` naming
      the path, what to do and whether the last checkpoint is there to ``--resume`` from (exit code 1).
    """
    signature = inspect.signature(run_fn)

    @functools.wraps(run_fn)
    def guarded(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        config = bound.arguments["config"]
        owner = bound.arguments["write"] and distributed.process_index() == 0
        lock = RunFolderLock(config.run_dir, config.run_id) if owner else None
        try:
            _take_run_lock(lock)
            return run_fn(*args, **kwargs)
        except Exception as exc:
            failure = _write_failure(exc)
            if failure is None or not bound.arguments["write"]:
                raise
            raise WriteFailedError(_describe_write_failure(config, failure, bound.arguments["tracker"])) from exc
        finally:
            if lock is not None:
                lock.release()

    return guarded


def _take_run_lock(lock: RunFolderLock | None) -> None:
    """Acquire ``lock`` (held by rank 0 only, None elsewhere); under a distributed launch every process learns
    whether rank 0 got it and refuses alike."""
    problem: Exception | None = None
    if lock is not None:
        try:
            lock.acquire()
        except Exception as exc:  # noqa: BLE001 - told to the other processes below, then raised
            problem = exc
    if distributed.num_processes() > 1:
        told = distributed.broadcast_object(None if problem is None else (
            type(problem) is RunLockedError, str(problem) if not isinstance(problem, OSError)
            else describe_os_error(problem)))
        if problem is None and told is not None:
            raise (RunLockedError if told[0] else WriteFailedError)(told[1])
    if problem is not None:
        raise problem


def _write_failure(exc: BaseException) -> BaseException | None:
    """The write failure of the file system behind ``exc`` (itself or an explicit cause), or None: an ``OSError``
    of ``benchsuite.files.is_write_failure``, or sqlite's "database or disk is full" from the MLflow store. Of a
    chain of write failures (each raised while handling the one before, as the end of a run writes one file after the
    other on a full disk) the first."""
    def failed(e: BaseException | None) -> bool:
        return e is not None and (is_write_failure(e) or "database or disk is full" in str(e))

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if failed(exc):
            while True:  # the error being handled when this one was raised (behind a ``raise ... from``, its cause's)
                before = (exc.__cause__ if exc.__suppress_context__ and exc.__cause__ is not None else exc).__context__
                if not failed(before) or id(before) in seen:
                    return exc
                exc = before
                seen.add(id(exc))
        exc = exc.__cause__
    return None


def _describe_write_failure(config: RunConfig, exc: BaseException, tracker) -> str:
    """One line: which write failed and why, what to do, and what of the run is intact."""
    if isinstance(exc, OSError):
        what = describe_os_error(exc)
    else:
        store = clip(str(getattr(tracker, "tracking_uri", "the MLflow store")))
        what = (f"cannot write to the MLflow store {store}: database or disk is full; free space on its file system "
                "(or run with --no-mlflow)")
    checkpoint = config.run_dir / CHECKPOINT
    if checkpoint.is_file():
        then = f"then continue the run with --resume: its last checkpoint ({checkpoint}) is intact"
    else:
        then = "then start the run over (with --restart where its folder is left): it has no checkpoint"
    return f"run {config.run_id} stopped: {what}; {then}"


@_owns_run_folder
def run(config: RunConfig, tracker=None, progress: bool = False, write: bool = True, resume: bool = False,
        restart: bool = False, oracle_options: OracleOptions = OracleOptions(),
        on_eval: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint_every: float = CHECKPOINT_EVERY_S) -> RunResult:
    """Train ``config.method`` on ``config.task`` until the budget is spent; evaluate on schedule.

    Args:
        config: a resolved ``RunConfig`` (see ``benchsuite.config.resolve``).
        tracker: a ``benchsuite.tracking.Tracker``; None logs nothing beyond the run directory.
        progress: show a progress bar over oracle queries (stderr).
        write: write ``<output_root>/runs/<run_id>/`` (checkpoint, summary, metrics, query log, sample grids).
        resume: continue from the run folder's checkpoint (a fresh start if the run never checkpointed).
        restart: delete an existing run folder of this config and start over.
        oracle_options: retries, backoff and timeout of oracle calls.
        on_eval: called as ``on_eval(queries, metrics)`` after each evaluation is checkpointed and logged; it may
            raise ``StopRun`` to end the run early (status KILLED), e.g. to prune a tuning trial.
        checkpoint_every: seconds between checkpoints outside the evaluation points; 0 checkpoints after every
            method step. Does not change results (not part of the run id).

    Raises:
        ConfigError: the run folder already holds this run and neither ``resume`` nor ``restart`` was given.
        RunLockedError: another process is writing the run folder (``write`` only; nothing was done).
        WriteFailedError: a write failed for a reason of the file system (no space, a quota, ...); the message says
            what to do, and the last checkpoint is intact for ``resume``.

    The runner writes an atomic checkpoint at every evaluation point and otherwise after the first method step
    that ends ``checkpoint_every`` seconds after the previous checkpoint. Logs are buffered in between (they are
    part of the checkpoint) and handed to the trackers right after each checkpoint, in one batch per tracker, and
    on a failure. A run killed at any point and resumed replays the steps after its last checkpoint
    deterministically and ends with the same query log, metrics and log lines as an uninterrupted one; a kill
    without a resume loses the logs of those steps (at most ``checkpoint_every`` seconds of them).
    """
    world, rank = distributed.num_processes(), distributed.process_index()
    if world > 1:
        _check_data_parallel(config, world, on_eval)
    folder = config.run_dir if write else None  # every process reads it; only rank 0 writes
    checkpoint = _read_checkpoint(config, folder, resume, restart, world)
    distributed.barrier()  # every process has read the folder before rank 0 changes it

    loop = RunLoop.start(config, checkpoint, oracle_options, world, rank, on_eval, checkpoint_every)
    # Everything that can fail on bad input (names, weights, checkpoint) has run: only now touch the disk.
    loop.open(tracker, folder if rank == 0 else None, checkpoint, progress)
    status = "FAILED"
    try:
        loop.resume()
        while not loop.oracle.exhausted:
            loop.step()
            evaluated = loop.evaluation_due()
            if evaluated:
                loop.evaluate()
            if evaluated or loop.checkpoint_due():
                loop.checkpoint()
            if evaluated:
                loop.report()
        if world > 1:
            loop.gather_shares()
        status = "FINISHED"
    except (KeyboardInterrupt, StopRun):
        status = "KILLED"
        raise
    finally:
        result = loop.finish(status)
    return result


def _read_checkpoint(config: RunConfig, folder: Path | None, resume: bool, restart: bool,
                     world: int) -> dict[str, Any] | None:
    """The checkpoint in ``folder`` to continue from (``resume`` only), or None to start afresh. Refuses a folder that
    holds the run already unless ``resume`` or ``restart`` is given, and a checkpoint of another number of
    processes."""
    if folder is None:
        return None
    status_now = run_state(folder)
    if status_now != "new" and not (resume or restart):
        raise ConfigError(f"run {config.run_id} already exists in {folder} ({status_now}); pass --resume to "
                          "continue it or --restart to start it over")
    if not (resume and (folder / CHECKPOINT).exists()):
        return None
    # also for a finished run: its loop is over, so only the idempotent finalisation runs again
    state = _load_checkpoint(folder / CHECKPOINT, config)
    if state.get("processes", 1) != world:
        raise ConfigError(f"checkpoint {folder / CHECKPOINT} was written by {state.get('processes', 1)} "
                          f"process(es); resume it with as many (accelerate launch --num_processes)")
    return state


@dataclass
class _RunState:
    """What the loop carries from one step to the next; all of it but the shares goes into the checkpoint.

    Attributes:
        curve: one dict per evaluation point, ``{"queries": q, **metrics}`` (rank 0 only).
        train: one dict per method step, ``{"queries": q, **diagnostics}`` (rank 0 only).
        done: the evaluation points passed.
        pending: logs not yet handed to the trackers, ``("metrics", dict, step)`` or ``("image", uint8 tensor,
            name)``; part of the checkpoint, handed over right after it.
        phases: wall seconds by phase (``cost/time_<phase>_s`` at every evaluation): the method's steps, the two
            evaluation sets, and whatever a step reports under ``time/`` (an online round's query, surrogate fit and
            inner steps).
        pretrained_images: the pretrained model's eval images, for drift metrics; set by the first evaluation.
        elapsed_before: wall seconds the run had spent when the checkpoint it resumed from was written.
        shared_log: every process's queries, as of the last ``RunLoop.gather_shares``.
        shared_nfe: every process's sampler cost (function evaluations), as of the last gather.
    """

    shared_log: QueryLog
    curve: list[dict[str, float]] = field(default_factory=list)
    train: list[dict[str, float]] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    pending: list[tuple[str, Any, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    pretrained_images: torch.Tensor | None = None
    elapsed_before: float = 0.0
    shared_nfe: int = 0

    def add_time(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds


class RunLoop:
    """One run, in named pieces that ``run`` composes and a test can call one at a time.

    ``start`` seeds and builds the task, policy, oracle and method (restored from a checkpoint when given); ``open``
    touches the disk: the run folder, the trackers, the progress bar. Then ``resume`` (the pretrained model's
    evaluation, or the checkpoint's buffered logs), ``step`` until the oracle is exhausted, ``evaluate`` at the
    evaluation points, ``checkpoint`` there and on the time cadence, ``report`` (the ``on_eval`` callback) after
    each evaluation, and ``finish`` (the run's records, summary last). Every process runs the same pieces in step;
    rank 0 alone evaluates, logs and writes.
    """

    def __init__(self, config: RunConfig, task, policy, reference, oracle, method, state: _RunState, *,
                 world: int = 1, rank: int = 0, resumed: bool = False,
                 on_eval: Callable[[int, dict[str, float]], None] | None = None,
                 checkpoint_every: float = CHECKPOINT_EVERY_S, started: float | None = None,
                 previous_threads: int | None = None):
        self.config, self.task, self.policy, self.reference = config, task, policy, reference
        self.oracle, self.method, self.state = oracle, method, state
        self.world, self.rank, self.resumed = world, rank, resumed
        self.on_eval, self.checkpoint_every = on_eval, checkpoint_every
        self.started = time.perf_counter() if started is None else started
        self.previous_threads = torch.get_num_threads() if previous_threads is None else previous_threads
        self.points = eval_points(config.budget, config.eval_fractions)
        self.run_dir: Path | None = None  # rank 0's run folder once ``open``; None writes nothing
        self.tracker = None  # the caller's tracker (rank 0), for the run's files as artifacts
        self.log = NullTracker()
        self.bar = None
        self.last_checkpoint = time.perf_counter()

    @classmethod
    def start(cls, config: RunConfig, checkpoint: dict[str, Any] | None = None,
              oracle_options: OracleOptions = OracleOptions(), world: int = 1, rank: int = 0,
              on_eval: Callable[[int, dict[str, float]], None] | None = None,
              checkpoint_every: float = CHECKPOINT_EVERY_S) -> RunLoop:
        """Seed, build the task, policy, frozen reference, oracle and method of ``config``; restore them and the
        loop's state from ``checkpoint`` (``_load_checkpoint``) when given. Sets torch's thread count (``finish``
        restores it)."""
        started = time.perf_counter()
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(config.num_threads)
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        task = config.make_task()
        policy = task.make_policy().to(distributed.device(config.device))
        reference = policy.frozen_copy()
        # several processes: each spends an equal share of the budget on its slice of every global batch, and every
        # process holds the same generator (the slices are of one global draw, as one process would draw it)
        oracle = task.train_oracle(distributed.local_budget(config.budget), retries=oracle_options.retries,
                                   backoff_s=oracle_options.backoff_s, timeout_s=oracle_options.timeout_s)
        method = build_method(config, task, policy, generator)
        state = _RunState(shared_log=oracle.query_log())
        if checkpoint is not None:
            _restore(checkpoint, state, method, oracle, policy, world, rank)
        return cls(config, task, policy, reference, oracle, method, state, world=world, rank=rank,
                   resumed=checkpoint is not None, on_eval=on_eval, checkpoint_every=checkpoint_every,
                   started=started, previous_threads=previous_threads)

    def open(self, tracker, run_dir: Path | None, checkpoint: dict[str, Any] | None = None,
             progress: bool = False) -> None:
        """Create ``run_dir`` (rank 0's run folder; None writes nothing), emptied unless the run resumes from
        ``checkpoint``; start the run in ``tracker`` (rank 0) and the folder's JSONL log; open the progress bar."""
        self.run_dir = run_dir
        self.tracker = tracker if self.rank == 0 else None
        trackers = [tracker] if self.tracker is not None else []
        if run_dir is not None:
            # --restart, or a resume of a run killed before its first checkpoint: start from an empty folder
            if checkpoint is None and run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            trackers.append(JsonlTracker(run_dir))
        self.log = MultiTracker(trackers) if trackers else NullTracker()
        config = self.config
        params = {k: v for k, v in config.to_dict().items() if k not in ("method_config", "output_root")}
        params.update({f"method.{k}": v for k, v in config.method_config})
        # a resumed run logs again everything from its checkpoint's buffered logs on (the trackers drop or skip what
        # they already hold from there), then what the replayed steps log
        resume_step = None if checkpoint is None else min(
            [where for kind, _, where in self.state.pending if kind == "metrics"],
            default=checkpoint["oracle"]["used"] * self.world)
        self.log.start_run(experiment=config.task, run_name=f"{config.method}-seed{config.seed}",
                           run_key=config.run_id, params=params,
                           tags={**run_tags(), "task": config.task, "method": config.method,
                                 "seed": str(config.seed), "run_id": config.run_id,
                                 # the embedded weights the task's backbone loaded (benchsuite.weights)
                                 "backbone_digest": backbone_digest(self.task.spec)},
                           resume_step=resume_step)
        self.last_checkpoint = time.perf_counter()
        if progress and self.rank == 0:
            from tqdm.auto import tqdm  # on use: only a run with a progress bar loads it

            self.bar = tqdm(total=config.budget, initial=self.used(), desc=f"{config.method} on {config.task}",
                            unit="q", leave=False)

    def used(self) -> int:
        """Queries spent by all processes (equal shares)."""
        return self.oracle.used * self.world

    def gather_shares(self) -> list[dict[str, Any]]:
        """Every process's oracle state and sampler cost (a collective: all processes call it at the same points);
        keeps the merged query log and the total cost in the state's shares."""
        ranks = distributed.gather_object({"oracle": self.oracle.state_dict(), "nfe": self.policy.nfe})
        self.state.shared_log = (QueryLog.merge([_log_of(r["oracle"]) for r in ranks]) if self.world > 1
                                 else self.oracle.query_log())
        self.state.shared_nfe = sum(r["nfe"] for r in ranks)
        return ranks

    def resume(self) -> None:
        """Begin the loop: a fresh run evaluates the pretrained model, checkpoints and reports; a resumed one hands
        its checkpoint's buffered logs to the trackers (they may not all have reached them)."""
        if self.resumed:
            self.flush()
            return
        self.evaluate()
        self.checkpoint()
        self.report()

    def step(self) -> dict[str, Any]:
        """One method step (it queries the oracle) and its bookkeeping: phase times, the train row and its log line
        (rank 0), the progress bar. Returns the step's diagnostics. Raises RuntimeError if it spent no query."""
        before, answered = self.used(), getattr(self.oracle, "answered", None)  # PMO accounting's free answers
        stepped = time.perf_counter()
        info = self.method.step(self.oracle)
        self.state.add_time("step", time.perf_counter() - stepped)
        for key in [k for k in info if k.startswith("time/")]:
            self.state.add_time(key.removeprefix("time/").removesuffix("_s"), info[key])
        if self.used() == before and getattr(self.oracle, "answered", None) == answered:
            raise RuntimeError(f"{self.config.method}.step() spent no oracle query; the run would never end")
        if self.rank == 0:  # the diagnostics are the same in every process (gathered by the method)
            self.state.train.append({"queries": self.used(), **info})
            self.state.pending.append(("metrics", info, self.used()))
        if self.bar is not None:
            self.bar.update(self.used() - before)
            self.bar.set_postfix(reward=f"{info.get('train/reward_mean', float('nan')):.4g}")
        return info

    def evaluation_due(self) -> bool:
        """An evaluation point has been passed since the last evaluation, or the budget is spent."""
        return any(p <= self.used() and p not in self.state.done for p in self.points) or self.oracle.exhausted

    def checkpoint_due(self) -> bool:
        """``checkpoint_every`` seconds have passed since the last checkpoint; rank 0's clock decides for every
        process (a collective: a checkpoint gathers from all of them)."""
        return distributed.broadcast_object(time.perf_counter() - self.last_checkpoint >= self.checkpoint_every)

    def evaluate(self) -> None:
        """Evaluate on the judges (rank 0 only; every process calls this at the same points): one curve point with
        the eval/ (and select/) metrics, cost/ and query metrics, and its log line and sample grid in ``pending``."""
        s, task = self.state, self.task
        self.gather_shares()
        s.done.update(p for p in self.points if p <= self.used())
        if self.rank != 0:
            return
        began = time.perf_counter()
        metrics, images, conds, scores = evaluate(self.policy, self.reference, task, self.method,
                                                  s.pretrained_images, run_seed=self.config.seed)
        tested = time.perf_counter()
        s.add_time("eval", tested - began)
        if task.spec.protocol is not None:  # the set every choice reads (select/ metrics)
            metrics.update(evaluate(self.policy, self.reference, task, self.method, split="selection",
                                    run_seed=self.config.seed)[0])
            s.add_time("select", time.perf_counter() - tested)
        if s.pretrained_images is None:  # the first evaluation is the pretrained model's
            s.pretrained_images = images
            metrics["eval/fd_pretrained"] = 0.0
        metrics.update(cost_metrics(self.used(), s.shared_nfe, s.elapsed_before + time.perf_counter() - self.started))
        metrics.update({f"cost/time_{phase}_s": seconds for phase, seconds in sorted(s.phases.items())})
        metrics.update(query_metrics(s.shared_log.reward,
                                     infeasible_value=getattr(task.oracle_reward, "infeasible_value", None)))
        if hasattr(self.oracle, "metrics"):  # PMO accounting (benchsuite.accounting): pmo/* metrics
            metrics.update(self.oracle.metrics())
        s.curve.append({"queries": self.used(), **metrics})
        s.pending.append(("metrics", metrics, self.used()))
        label = f"{task.spec.primary_judge} reward"
        grid = self.policy.space.render(images, conds, scores[task.spec.primary_judge], label=label)
        s.pending.append(("image", torch.from_numpy(grid), f"samples/queries_{self.used():07d}.png"))

    def checkpoint(self) -> None:
        """Write the checkpoint (rank 0, atomically; several processes: every one's oracle and cost, gathered), then
        hand the buffered logs to the trackers."""
        self.last_checkpoint = time.perf_counter()
        ranks = self.gather_shares() if self.world > 1 else None
        if self.run_dir is not None:
            _save_checkpoint(self.run_dir / CHECKPOINT, self.checkpoint_state(ranks))
        self.flush()

    def checkpoint_state(self, ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What ``checkpoint`` saves (format ``CHECKPOINT_FORMAT``); ``ranks``: every process's share, gathered."""
        s = self.state
        return {
            "format": CHECKPOINT_FORMAT, "run_id": self.config.run_id, "method": self.method.state_dict(),
            "oracle": self.oracle.state_dict(), "torch_rng": torch.get_rng_state(), "curve": s.curve,
            "train": s.train, "done": sorted(s.done), "pending": s.pending,
            "pretrained_images": s.pretrained_images, "nfe": self.policy.nfe,
            "elapsed_s": s.elapsed_before + time.perf_counter() - self.started, "phases": s.phases,
            **({"processes": self.world, "ranks": ranks} if self.world > 1 else {}),
        }

    def flush(self) -> None:
        """Hand the buffered logs to the trackers: the metric rows in one batch, then the images."""
        pending = self.state.pending
        self.log.log_metric_rows([(payload, where) for kind, payload, where in pending if kind == "metrics"])
        for kind, payload, where in pending:
            if kind == "image":
                self.log.log_image(payload.numpy(), where)
        pending.clear()

    def report(self) -> None:
        """Call ``on_eval(queries, metrics)`` with the last evaluation (after it is checkpointed and logged)."""
        if self.on_eval is not None:
            self.on_eval(self.used(), self.state.curve[-1])

    def finish(self, status: str) -> RunResult:
        """End the run with ``status``: close the progress bar, restore torch's thread count, log the wall time
        (``FINISHED``) and the run's files, end the trackers' run, then write the exported weights and the run
        folder's query log and summary (last: it marks a run finished). A run that is failing already finishes
        its bookkeeping as far as it can: its error is the one to raise (on a full disk each write would fail
        again and bury it under a chain of tracebacks)."""
        if self.bar is not None:
            self.bar.close()
        s = self.state
        wall = s.elapsed_before + time.perf_counter() - self.started
        torch.set_num_threads(self.previous_threads)
        # several processes: the queries of every process as of the last gather (the end, after a finished run)
        qlog = s.shared_log if self.world > 1 else self.oracle.query_log()
        result = RunResult(self.config, dict(s.curve[-1]) if s.curve else {}, s.curve, s.train, qlog, wall,
                           self.run_dir)
        with contextlib.suppress(Exception) if status != "FINISHED" else contextlib.nullcontext():
            try:
                if s.pending and status != "FINISHED":  # a failure between checkpoints: the steps since the last one
                    try:
                        self.flush()
                    except Exception:  # noqa: BLE001 - best effort; the error that ended the run is the one to raise
                        s.pending.clear()
                if status == "FINISHED":
                    self.log.log_metrics({"wall_time_s": wall}, step=self.used())
                if self.tracker is not None:  # the caller's tracker (MLflow); the run folder has these files
                    _log_run_files(self.tracker, result, status, self.used())
                self.log.end_run(status)
            finally:
                if self.run_dir is not None:  # the summary is written last: it is what marks a run finished
                    export_finished(self.config, self.policy, self.run_dir, status, self.method)  # the trained weights
                    _write_run_files(result, status, self.used())
        return result


def _restore(checkpoint: dict[str, Any], state: _RunState, method, oracle, policy, world: int, rank: int) -> None:
    """Load ``checkpoint`` into the method, this process's oracle and sampler cost, torch's global generator and
    ``state`` (the curve, train rows and buffered logs on rank 0 only: it evaluates, logs and reports)."""
    method.load_state_dict(checkpoint["method"])
    own = checkpoint["ranks"][rank] if world > 1 else checkpoint
    oracle.load_state_dict(own["oracle"])
    torch.set_rng_state(checkpoint["torch_rng"])
    state.done = set(checkpoint["done"])
    if rank == 0:
        state.curve, state.train, state.pending = checkpoint["curve"], checkpoint["train"], checkpoint["pending"]
    state.elapsed_before = checkpoint["elapsed_s"]
    state.phases = dict(checkpoint.get("phases", {}))  # a checkpoint of an older version has none
    state.pretrained_images = checkpoint["pretrained_images"]
    policy.nfe = own["nfe"]


def _log_run_files(tracker, result: RunResult, status: str, used: int) -> None:
    """Log the run's resolved config (``config.yaml``, the ``benchsuite run --config`` format), ``summary.json`` and
    ``query_log.csv`` to ``tracker`` as artifacts, at the end of the run (again at the end of a resumed one)."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "config.yaml").write_text(config_yaml(result.config))
        _write_run_files(result, status, used, folder)
        for name in ("config.yaml", "summary.json", "query_log.csv"):
            tracker.log_artifact(folder / name)


def _write_run_files(result: RunResult, status: str, used: int, folder: Path | None = None) -> None:
    """query_log.csv, then summary.json (final metrics, status, wall time; last, as it marks a run finished) in
    ``folder`` (default: the run folder), each written atomically."""
    run_dir = result.run_dir if folder is None else folder
    summary = {
        "run_id": result.config.run_id,
        "status": status,
        "config": result.config.to_dict(),
        "queries_used": used,
        "wall_time_s": result.wall_time,
        "final": _jsonable(result.final),
    }
    qlog, text = result.query_log, io.StringIO()
    if qlog.charged is None:
        np.savetxt(text, np.column_stack([qlog.call, qlog.condition, qlog.reward]),
                   delimiter=",", header="call,condition,reward", comments="", fmt=["%d", "%d", "%.9g"])
    else:  # PMO accounting: whether each query was charged, and its cache key (canonical SMILES)
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["call", "condition", "reward", "charged", "key"])
        for row in zip(qlog.call, qlog.condition, qlog.reward, qlog.charged, qlog.key):
            writer.writerow([int(row[0]), int(row[1]), f"{row[2]:.9g}", int(row[3]), row[4] or ""])
    atomic_write_text(run_dir / "query_log.csv", text.getvalue())
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
