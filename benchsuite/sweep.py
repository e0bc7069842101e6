"""Sweeps: every (task, method, seed) of a grid, each method of a task under the same query budget, run by
parallel worker processes or as the tasks of a Ray cluster (``benchsuite.backends``); rerunning a sweep skips its
finished runs and resumes its interrupted ones, and a run whose worker dies is retried from its checkpoint.

MLflow layout (the glue is ours and thin; mlflow itself does the storing and the UI):
- one experiment per task (the runner logs every run into the experiment named by its task id);
- one parent run per (sweep, task), named ``sweep <name>`` and found again by its run key ``sweep--<name>``, so
  that rerunning a sweep reuses its parents;
- every run of the sweep is a child of its task's parent (``mlflow.parentRunId``), logged by a worker process.
Experiments and parents are created in the main process before any worker starts: mlflow's experiment
creation races when many processes create the same experiment at once (mlflow #4123, #10334).

A sweep file is YAML (see ``results/sweeps/digits-smoke.yaml``)::

    name: digits-smoke                        # optional; default: the file name without .yaml
    tasks: [digits-jpeg-compress-v0]
    methods: [pretrained, ddpo, sqdf]
    seeds: [0, 1]
    budget: 512                               # optional; default: each task card's default_budget
    eval_fractions: [0, 0.25, 0.5, 0.75, 1]   # optional; default: every 10% of the budget

mlflow is imported only when a sweep logs to it: ``import benchsuite.sweep`` stays light.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import make_backend
from .config import RunConfig, resolve
from .errors import ConfigError, clip, clip_repr
from .registry import check_spawnable
from .runner import run_state
from .tasks import MAX_SEED, check_sizes, read_yaml
from .tracking import MlflowTracker, run_tags

if TYPE_CHECKING:
    from .backends import Backend

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_KEYS = {"name", "tasks", "methods", "seeds", "budget", "eval_fractions"}
KIND_TAG = "benchsuite.kind"
"""Tag marking a parent run: ``"sweep"`` or ``"study"``."""


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs.

    Attributes:
        name: the sweep's key: letters, digits, ``.``, ``_``, ``-``. Rerunning a sweep of the same name reuses
            its MLflow parent runs.
        tasks: task ids.
        methods: method names.
        seeds: training seeds, each >= 0.
        budget: oracle queries of every run; None: each task card's ``default_budget``. Either way every method
            of a task gets the same budget.
        eval_fractions: fractions of the budget at which every run evaluates; None: the runner's default
            (0, 0.1, ..., 1). Fewer points make a large grid cheaper (an evaluation costs about as much as a
            training step on the digits backbone).
    """

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    budget: int | None = None
    eval_fractions: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"sweep name {clip_repr(self.name)} must use only letters, digits, '.', '_' and '-'")
        for label, items in (("tasks", self.tasks), ("methods", self.methods), ("seeds", self.seeds)):
            if not items:
                raise ConfigError(f"a sweep needs at least one entry in {label}")
            if len(set(items)) != len(items):
                raise ConfigError(f"sweep {label} repeat an entry: {clip(list(items))}")
        if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in self.seeds):
            raise ConfigError("sweep seeds must be non-negative integers up to 2**32 - 1, got "
                              f"{clip(list(self.seeds))}")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int)
                                        or self.budget < 0):
            raise ConfigError(f"sweep budget must be a non-negative integer or null, got {clip_repr(self.budget)}")

    @staticmethod
    def default_name(tasks: tuple[str, ...], methods: tuple[str, ...], seeds: tuple[int, ...],
                     budget: int | None) -> str:
        """``sweep-<hash of the grid>``: the same grid given by flags gets the same name, hence the same parents."""
        blob = json.dumps([tasks, methods, seeds, budget]).encode()
        return f"sweep-{hashlib.sha256(blob).hexdigest()[:8]}"


def load_sweep_file(path: Path) -> SweepSpec:
    """Read a sweep file (format in the module docstring). Raises ``ConfigError`` naming the file."""
    path = Path(path)
    raw = check_sizes(read_yaml(path, "sweep file"), f"{path}: sweep file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping with keys {sorted(_FILE_KEYS)}")
    unknown = set(raw) - _FILE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {clip(sorted(map(str, unknown)))}; allowed: {sorted(_FILE_KEYS)}")
    lists = {}
    for key in ("tasks", "methods", "seeds"):
        value = raw.get(key)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {key} must be a list, got {clip_repr(value)}")
        lists[key] = tuple(value)
    try:
        fractions = raw.get("eval_fractions")
        if fractions is not None and (not isinstance(fractions, list)
                                      or not all(isinstance(f, int | float) for f in fractions)):
            raise ConfigError(f"eval_fractions must be a list of numbers in [0, 1], got {clip_repr(fractions)}")
        return SweepSpec(name=str(raw.get("name", path.stem)), budget=raw.get("budget"),
                         eval_fractions=None if fractions is None else tuple(float(f) for f in fractions),
                         tasks=tuple(map(str, lists["tasks"])), methods=tuple(map(str, lists["methods"])),
                         seeds=lists["seeds"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def plan(spec: SweepSpec, output_root: str | Path = "results") -> list[RunConfig]:
    """Resolve every run of the grid (task-major, then method, then seed); writes nothing.

    Raises:
        ConfigError: an unknown name, or a budget below one batch of some method.
    """
    extra = {} if spec.eval_fractions is None else {"eval_fractions": spec.eval_fractions}
    return [resolve(task, method, seed=seed, budget=spec.budget, output_root=str(output_root), **extra)
            for task in spec.tasks for method in spec.methods for seed in spec.seeds]


@dataclass(frozen=True)
class Outcome:
    """What became of one run of a sweep.

    Attributes:
        config: the run's config.
        before: its state when the sweep started (``benchsuite.runner.run_state``): ``"new"``,
            ``"checkpointed"`` (resumed), ``"broken"`` (restarted) or ``"finished"`` (skipped).
        status: ``"FINISHED"`` or ``"FAILED"``.
        final: metrics of its last evaluation (read from ``summary.json`` for a skipped run).
        error: for a failed run, the exception in one line.
        started: its state when the attempt that ended it began (``"checkpointed"`` also for a retry that resumed
            after its worker died); None for a skipped run or one whose worker died on every attempt.
    """

    config: RunConfig
    before: str
    status: str
    final: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started: str | None = None


def open_parent_run(tracking_uri: str, artifact_root: Path | None, experiment: str, key: str, name: str,
                    tags: dict[str, str], params: dict[str, Any] | None = None):
    """Get or create the parent run tagged with run key ``key`` in ``experiment`` (created if absent); ``tags``
    and ``params`` are logged when it is created.

    Returns the open ``MlflowTracker``: its ``run_id`` is the parent's id; ``end_run`` closes it.
    """
    tracker = MlflowTracker(tracking_uri, artifact_root)
    # resume_step reopens the run with this key if there is one and creates it otherwise
    tracker.start_run(experiment=experiment, run_name=name, run_key=key, params=params or {},
                      tags={**run_tags(), **tags}, resume_step=0)
    return tracker


def _finished_metrics(config: RunConfig) -> dict[str, Any]:
    return json.loads((config.run_dir / "summary.json").read_text()).get("final", {})


def sweep(spec: SweepSpec, output_root: str | Path = "results", workers: int = 1,
          tracking: tuple[str, str] | None = None,
          on_outcome: Callable[[Outcome], None] | None = None, backend: str | Backend = "local") -> list[Outcome]:
    """Run every run of ``spec`` that is not finished yet, ``workers`` at a time.

    Args:
        spec: the grid.
        output_root: root of the run folders (``<output_root>/runs/<run id>``).
        workers: worker processes of the local backend (spawned); 1 runs in this process.
        tracking: ``(tracking_uri, artifact_root)`` of the MLflow store, or None for run folders only.
        on_outcome: called in this process with each outcome as it arrives (skipped runs first).
        backend: where the runs execute: ``"local"``, ``"ray"`` (the cluster of ``$RAY_ADDRESS``, else a local
            one) or a ``benchsuite.backends.Backend`` (e.g. ``RayBackend(address=...)``).

    Returns:
        One ``Outcome`` per run of the grid, in grid order.
    """
    return run_many(plan(spec, output_root), spec.name, workers, tracking, on_outcome, backend)


def run_many(configs: list[RunConfig], name: str, workers: int = 1, tracking: tuple[str, str] | None = None,
             on_outcome: Callable[[Outcome], None] | None = None, backend: str | Backend = "local") -> list[Outcome]:
    """Run every config of a list that is not finished yet, ``workers`` at a time on the local backend, or as the
    tasks of a Ray cluster (``backend``, see ``sweep``): a sweep over any configs (other method or task overrides per
    run, as ablation studies need). ``name`` keys the MLflow parent runs.

    Returns one ``Outcome`` per config, in order.
    """
    if isinstance(backend, str):
        backend = make_backend(backend, workers)
    if len({c.run_id for c in configs}) != len(configs):
        raise ConfigError("run_many: two configs of the list are the same run")
    if backend.spawns:
        for config in configs:
            check_spawnable(config)
    before = {c.run_id: run_state(c.run_dir) for c in configs}
    outcomes: dict[str, Outcome] = {}
    todo = []
    for config in configs:
        if before[config.run_id] == "finished":
            outcomes[config.run_id] = Outcome(config, "finished", "FINISHED", _finished_metrics(config))
            if on_outcome is not None:
                on_outcome(outcomes[config.run_id])
        else:
            todo.append(config)

    if not todo:
        return [outcomes[c.run_id] for c in configs]
    backend.open()  # connects (Ray) before anything is written
    parents = {}
    if tracking is not None:
        for task in dict.fromkeys(c.task for c in todo):
            parents[task] = open_parent_run(tracking[0], Path(tracking[1]), task, f"sweep--{name}",
                                            f"sweep {name}", {KIND_TAG: "sweep", "benchsuite.sweep": name})

    def record(job, report) -> None:
        config, (status, final, error, started) = job[0], report
        outcomes[config.run_id] = Outcome(config, before[config.run_id], status, final, error, started)
        if on_outcome is not None:
            on_outcome(outcomes[config.run_id])

    jobs = [(c, tracking, parents[c.task].run_id if parents else None) for c in todo]
    interrupted = True
    try:
        backend.run(jobs, record)
        interrupted = False
    finally:
        backend.close()
        for task, parent in parents.items():
            failed = any(outcomes[c.run_id].status != "FINISHED" for c in configs
                         if c.task == task and c.run_id in outcomes)
            parent.end_run("KILLED" if interrupted else "FAILED" if failed else "FINISHED")
    return [outcomes[c.run_id] for c in configs]
