"""Hyperparameter tuning: a thin layer over Optuna in which every trial is one ``benchsuite.runner.run``.

Optuna does the sampling (``TPESampler``; ``GPSampler`` on request), the pruning (``MedianPruner``), the storage
(``JournalStorage`` on a file for one machine; ``RDBStorage`` on PostgreSQL for many), the heartbeats that fail
the trial of a dead worker and the retry of that trial (``RetryHeartbeatStaleTrialCallback``), and the Pareto
front (``Study.best_trials``). Ours, and thin:

- **Search spaces are data**: ``baselines/<method>/search_space.yaml``, one entry per method config field,
  ``field: {type: float|int|categorical, low, high, log | choices}``; ``params`` picks a subset.
- **Objectives**: single-objective maximises the final mean of the task's gold judge if it has one, else of its
  primary judge (alias ``reward``), and reports it at every evaluation with ``step`` = the scheduled query
  count, so the pruner compares trials at equal query counts. Multi-objective maximises (reward, diversity =
  ``eval/diversity``, the mean pairwise L2 distance within a condition) or any listed ``eval/`` metrics,
  without pruning (Optuna's pruners are single-objective), and yields a Pareto front. Not ``eval/vendi`` by
  default: its cosine kernel on raw pixels rates nearly blank, reward-hacked digits as highly diverse
  (measured on digits-jpeg-compress-v0: 6.8 vs 1.9 for the pretrained model, while ``eval/diversity`` fell
  from 1.96 to 0.18).
- **Trial slots**: the process that creates a study enqueues one WAITING trial per slot (``benchsuite.slot``
  = 0..n-1); workers only take queued trials, so any number of workers on any number of machines run exactly n
  trials, and a retried trial keeps its slot. A worker that meets an empty queue in a race gets a fresh trial
  with no slot: it fails at once, marked ``benchsuite.surplus`` (not a lost or duplicated trial).
- **Seed policy**: every trial trains with the same seed (``seed``, default 1000): common random numbers make
  trials differ only by their hyperparameters, and 1000 keeps tuning off the seeds 0, 1, ... that sweeps report,
  so a leaderboard never scores a seed its hyperparameters were selected on. Evaluation noise is the task's.
  Each worker's sampler is seeded from (``sampler_seed``, worker index): one worker reproduces its study
  exactly; parallel workers draw different start points (give each machine its own ``sampler_seed``).
- **Resumability and dead workers**: a trial's run folder is ``<output>/optuna/<study>/runs/<run id>`` (the
  id hashes the config), and trials run with ``resume=True``: a retried trial continues its predecessor's
  checkpoint, and rerunning a finished tune runs nothing. With a database storage, a trial without a heartbeat
  for 2 x ``heartbeat_interval`` is failed and queued again with its parameters and slot; a worker that was
  only slow finds its trial unwritable at its next evaluation and stops. A run folder has one writer at a time
  (the runner's lock): the retry waits for the slow worker to stop, and a trial whose parameters repeat another's
  (the same run id) waits for it, then reads its run back. A journal file has no heartbeat: after a killed or
  interrupted tune, ``retry_interrupted`` queues its trials again. A trial whose run fails (a full disk, say)
  is marked failed and the study goes on.
- **MLflow**: one parent run per study in the task's experiment (run key ``study--<name>``), created by the
  process that creates the study before any worker starts; each trial's run is its child, named
  ``trial-<number>`` (a pruned trial's run ends KILLED). The stock ``MLflowCallback(nested=True)`` creates no
  parent run (optuna #5148), hence this glue.
- **Export**: the best trial's parameters (single objective) or a chosen trial's (``export_trial``; required
  for multi-objective, where no point of the front is best) go to ``baselines/<method>/tuned/<task>.yaml``,
  which ``benchsuite.config.resolve`` layers over the method's defaults for every later run of that task.

optuna, mlflow and sqlalchemy are imported inside functions: ``import benchsuite.tuning`` stays light.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import re
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig, resolve
from .errors import BenchsuiteError, ConfigError, RunLockedError, StopRun
from .files import atomic_write_text
from .registry import BACKBONES, check_spawnable
from .runner import eval_points, run
from .sweep import KIND_TAG, open_parent_run
from .tasks import data_dir, load_spec, preset_file, selection_metric, within_drift
from .tracking import MlflowTracker

if TYPE_CHECKING:
    import optuna

SLOT_ATTR = "benchsuite.slot"
"""Trial user attribute: the trial's slot, 0..n-1 (a retried trial keeps it)."""
SPEC_ATTR = "benchsuite.spec"
"""Study user attribute: the settings the study was created with (JSON); a rerun must match them."""
READY_ATTR = "benchsuite.ready"
"""Study user attribute: set once the creating process has queued the slots and opened the MLflow parent."""
WORKER_ATTR = "benchsuite.worker"
"""Trial user attribute: ``host:pid`` of the worker running it."""
RUN_ATTR = "benchsuite.run_id"
"""Trial user attribute: the benchsuite run id (run folder name) of the trial's run."""
INTERRUPTED_ATTR = "benchsuite.interrupted"
"""Trial user attribute: True on a trial failed by Ctrl-C (``retry_interrupted`` queues it again)."""
QUERIES_ATTR = "benchsuite.queries"
"""Trial user attribute: oracle queries of the trial's run at its latest evaluation."""
SURPLUS_ATTR = "benchsuite.surplus"
"""Trial user attribute: True on a trial created past the last slot (it fails at once and runs nothing)."""
MLFLOW_RUN_ATTR = "benchsuite.mlflow_run_id"
"""Trial user attribute: the MLflow run id of the trial's run."""
PER_TASK_ATTR = "benchsuite.per_task"
"""Trial user attribute of a study on several tasks (``TuneSpec.also_on``): task -> its objective values."""

_TYPES = {"float": {"low", "high", "log"}, "int": {"low", "high", "log"}, "categorical": {"choices"}}
_OBJECTIVE_STATS = ("mean", "median", "top10")
_READY_TIMEOUT_S = 120.0
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PRUNE_WARMUP = 0.3  # no pruning before this fraction of the budget
_LOCK_POLL_S = 2.0  # while another worker holds a trial's run folder, try again this often


@dataclass(frozen=True)
class Dimension:
    """One entry of a search space: a method config field and the distribution it is sampled from.

    Attributes:
        name: the method config field.
        type: ``"float"``, ``"int"`` or ``"categorical"``.
        low, high: bounds (inclusive) of a float or int.
        log: sample a float or int on a log scale (needs ``low > 0``).
        choices: the values of a categorical.
    """

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask ``trial`` for this field's value."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def extremes(self) -> tuple[Any, ...]:
        """The values that bound the space (both bounds, or every choice), for checking it before a study."""
        return self.choices if self.type == "categorical" else (self.low, self.high)


def _dimension(name: str, raw: Any, where: str) -> Dimension:
    if not isinstance(raw, dict) or raw.get("type") not in _TYPES:
        raise ConfigError(f"{where}: {name} must be a mapping with type one of {sorted(_TYPES)}, got {raw!r}")
    kind = raw["type"]
    unknown = set(raw) - {"type"} - _TYPES[kind]
    if unknown:
        raise ConfigError(f"{where}: {name} ({kind}) has unknown key(s) {sorted(unknown)}")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices or len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: {name} needs a non-empty list of distinct choices")
        return Dimension(name, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    low, high, log = raw.get("low"), raw.get("high"), raw.get("log", False)
    for label, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value):
            raise ConfigError(f"{where}: {name}.{label} must be a finite {'integer' if kind == 'int' else 'number'}, "
                              f"got {value!r}")
    if not low < high:
        raise ConfigError(f"{where}: {name} needs low < high, got {low} and {high}")
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: {name}.log must be true or false, and log needs low > 0")
    if kind == "float":
        low, high = float(low), float(high)
    return Dimension(name, kind, low, high, log)


def load_search_space(method: str, names: tuple[str, ...] | None = None,
                      backbone: str | None = None) -> tuple[Dimension, ...]:
    """The method's search space from ``baselines/<method>/search_space.yaml``, or the ``names`` subset of it.

    Entries (``field: {type, ...}``) apply to every backbone; a section named after a backbone (``ehrlich: {lr:
    {...}}``, a mapping without ``type``) replaces or adds entries for tasks on that backbone, where the useful
    range differs (a 35 k-parameter sequence model takes far larger learning rates than the digits UNet).

    Raises:
        ConfigError: no such file, a malformed entry, or a name the file does not list.
    """
    import yaml

    path = preset_file(method, "search_space.yaml")
    if not path.exists():
        raise ConfigError(f"method {method!r} has no search space; write {path} to tune it")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of field: {{type, ...}}")

    sections = {k: v for k, v in raw.items() if k in BACKBONES and isinstance(v, dict)}
    entries = {k: v for k, v in raw.items() if k not in sections}
    for section in sections.values():
        if not all(isinstance(v, dict) and "type" in v for v in section.values()):
            raise ConfigError(f"{path}: a backbone section holds field: {{type, ...}} entries only")
    entries.update(sections.get(backbone, {}))
    space = {name: _dimension(str(name), value, str(path)) for name, value in entries.items()}
    if names is None:
        return tuple(space.values())
    unknown = [n for n in names if n not in space]
    if unknown:
        raise ConfigError(f"{path} has no entry {', '.join(map(repr, unknown))}; tunable: {', '.join(space)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"tuned parameters repeat an entry: {list(names)}")
    return tuple(space[n] for n in names)


MATCHED = ".matched"
"""Suffix of an objective taken at matched drift: ``eval/jpeg_mean.matched`` is the best ``eval/jpeg_mean`` over the
run's evaluations whose path KL (``eval/kl``) is within the task card's ``drift_budget`` (the first evaluation, of
the pretrained model, always is), the report's matched-drift value."""


def objective_metric(name: str, task: str) -> str:
    """The metric an objective name stands for: ``reward`` = the mean of the task's gold judge (held out, so
    tuning cannot overfit the proxy) or, without one, of its primary judge; ``matched`` = that reward at matched
    drift (``MATCHED``; the card must state a ``drift_budget``); ``found`` = ``query/top10_mean``, the mean of the
    10 best oracle values found (the black-box track's headline); ``diversity`` = ``eval/diversity``; otherwise
    ``eval/<judge>_{mean,median,top10}``, ``eval/diversity``, ``eval/vendi``, ``query/top10_mean`` or
    ``query/best`` as given, any ``eval/`` one with the ``.matched`` suffix, and on a card with PMO accounting
    (``accounting: pmo``) ``pmo/auc_top{1,10,100}`` and ``pmo/top{1,10,100}`` (PMO's AUC top-k of the charged
    queries; the black-box tier's objective). All objectives are maximised."""
    spec = load_spec(task)
    reward = f"eval/{spec.gold_judge or spec.primary_judge}_mean"
    aliases = {"reward": reward, "matched": reward + MATCHED, "found": "query/top10_mean",
               "diversity": "eval/diversity"}
    metric = aliases.get(name, name)
    allowed = [f"eval/{judge}_{stat}" for judge, _ in spec.judges for stat in _OBJECTIVE_STATS]
    allowed += ["eval/diversity", "eval/vendi", "query/top10_mean", "query/best"]
    if getattr(spec.accounting, "mode", None) == "pmo":
        allowed += [f"pmo/{kind}{k}" for kind in ("auc_top", "top") for k in (1, 10, 100)]
    base = metric.removesuffix(MATCHED)
    if base not in allowed or (metric != base and not base.startswith("eval/")):
        raise ConfigError(f"objective {name!r} is not a metric to maximise on {task}; use reward, matched, found, "
                          f"diversity or one of: {', '.join(allowed)} (eval/ ones also with {MATCHED})")
    if metric != base and spec.drift_budget is None:
        raise ConfigError(f"objective {name!r} compares at matched drift, but task {task} states no drift_budget")
    return metric


def objective_value(metric: str, curve: list[dict[str, float]], drift_budget: float | None,
                    judge_tolerance: tuple[tuple[str, float], ...] = ()) -> float:
    """The value of ``metric`` (see ``objective_metric``) for a run's evaluations so far (``curve``: one metrics
    dict per evaluation, in order): the last evaluation's, or for a ``.matched`` metric the best over the
    evaluations whose ``eval/kl`` is within ``drift_budget`` and whose judges of ``judge_tolerance`` have not
    fallen below the first evaluation's by more than their tolerance (``tasks.within_drift``).

    On a card with a selection set (``tasks.EvalProtocol``) every ``eval/`` metric is read from that set
    (``select/``): tuning never sees the test set that the report's numbers come from."""
    metric = _on_selection_set(metric, curve)
    if not metric.endswith(MATCHED):
        return float(curve[-1].get(metric, math.nan))  # query/ metrics exist from the first query on
    base = metric.removesuffix(MATCHED)
    kl = selection_metric("eval/kl", curve[-1] if curve else ())
    # a run's first evaluation (the pretrained model, KL 0) always qualifies; only a pruning report of a resumed
    # trial, which sees the evaluations after the resume alone, can find none
    judge = {j: selection_metric(f"eval/{j}_mean", curve[-1]) for j, _ in judge_tolerance}
    first = {j: float(curve[0][m]) for j, m in judge.items()} if curve else {}
    return max((float(point[base]) for point in curve
                if within_drift(point[kl], {j: float(point[m]) for j, m in judge.items()}, first, drift_budget,
                                judge_tolerance)), default=-math.inf)


def _on_selection_set(metric: str, curve: list[dict[str, float]]) -> str:
    """``metric`` (with or without ``MATCHED``) read on the selection set where the run logs it
    (``tasks.selection_metric``)."""
    base = metric.removesuffix(MATCHED)
    return selection_metric(base, curve[-1] if curve else ()) + metric[len(base):]


@dataclass(frozen=True)
class TuneSpec:
    """A tuning study.

    Attributes:
        task: task id.
        method: method name.
        n_trials: trials the study runs in total, over all workers and machines.
        params: fields of the search space to tune; None tunes every entry of the file.
        objectives: what to maximise (see ``objective_metric``); two or more make a multi-objective study.
        budget: oracle queries of every trial; None: the task card's ``default_budget``.
        seed: training seed of every trial (see the module docstring's seed policy).
        sampler: ``"tpe"`` (``TPESampler``, constant liar for parallel workers) or ``"gp"`` (``GPSampler``).
        sampler_seed: seeds each worker's sampler together with the worker index.
        prune: stop single-objective trials that trail the median at equal query counts (``MedianPruner``).
        prune_after_trials: completed trials before the pruner may stop one.
        overrides: method settings fixed for every trial, as ``(field, value)`` pairs (exported with the best).
        storage: a PostgreSQL (or MySQL) URL, a journal file path, or None: ``<output_root>/optuna/<study>.log``.
        study_name: None: ``<method>--<preset_name or task>--<objective metrics>``.
        output_root: the trials' run folders go to ``<output_root>/optuna/<study>/runs/``, apart from other
            runs, so that each study's runs and MLflow children are its own; retries of a trial share its folder.
        heartbeat_interval: seconds between heartbeats of a running trial (database storage); a trial without
            one for twice as long is failed and retried, at most ``max_retry`` times.
        max_retry: retries of a trial whose worker died.
        eval_fractions: fractions of the budget at which every trial evaluates (the pruner's steps, and the points
            a ``.matched`` objective chooses among); None: the runner's default (0, 0.1, ..., 1).
        also_on: further tasks that every trial also runs, with the same parameters, seed and budget; each
            objective is the mean of its values over ``task`` and these (the study then has no pruning). PMO's
            protocol (Gao et al. 2022; mol_opt's ``hparam_tune``): each method is tuned once on zaleplon_mpo and
            perindopril_mpo by the mean AUC top-10 and that preset is used on every oracle.
        preset_name: the exported preset is ``baselines/<method>/tuned/<preset_name>.yaml``; None: ``<task>``
            (the file ``benchsuite.config.resolve`` layers over the defaults of that task). A study ``also_on``
            other tasks names a preset that the runs of a group of tasks take (``benchsuite.leaderboard``).
    """

    task: str
    method: str
    n_trials: int = 16
    params: tuple[str, ...] | None = None
    objectives: tuple[str, ...] = ("reward",)
    budget: int | None = None
    seed: int = 1000
    sampler: str = "tpe"
    sampler_seed: int = 0
    prune: bool = True
    prune_after_trials: int = 4
    overrides: tuple[tuple[str, Any], ...] = ()
    storage: str | None = None
    study_name: str | None = None
    output_root: str = "results"
    heartbeat_interval: int = 30
    max_retry: int = 3
    eval_fractions: tuple[float, ...] | None = None
    also_on: tuple[str, ...] = ()
    preset_name: str | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task a trial runs: ``task``, then ``also_on``."""
        return (self.task, *self.also_on)


@dataclass
class TuneReport:
    """Where a study stands after ``Tuner.tune``.

    Attributes:
        study_name: the study.
        storage: where it is stored (passwords hidden).
        metrics: the objective metrics, all maximised.
        n_trials: the study's target number of trials.
        done: slots whose trial finished (COMPLETE, PRUNED, or FAIL after its retries; not one failed by Ctrl-C).
        states: trials by state name (retried and surplus trials included).
        best: the best trial (single objective) or the Pareto front sorted by the first metric; FrozenTrials.
        dead_workers: ``(worker index, exit code)`` of worker processes that did not exit cleanly.
        parent_run_id: the study's MLflow parent run, or None without MLflow.
    """

    study_name: str
    storage: str
    metrics: tuple[str, ...]
    n_trials: int
    done: int
    states: dict[str, int]
    best: list[Any]
    dead_workers: list[tuple[int, int]]
    parent_run_id: str | None

    @property
    def complete(self) -> bool:
        """Whether every slot's trial finished."""
        return self.done == self.n_trials


class _SurplusTrial(Exception):
    """A trial was created after the last slot was taken (a race between workers); it runs nothing."""


def _trial_config(spec: TuneSpec, study_dir: Path, overrides: dict[str, Any], task: str | None = None) -> RunConfig:
    """The run config of a trial of ``spec`` on ``task`` (None: ``spec.task``) with the method settings
    ``overrides``, its folder under ``study_dir``."""
    extra = {} if spec.eval_fractions is None else {"eval_fractions": spec.eval_fractions}
    return resolve(task or spec.task, spec.method, seed=spec.seed, budget=spec.budget, overrides=overrides,
                   output_root=str(study_dir), preset=spec.preset_name, **extra)


@dataclass(frozen=True)
class StudyPlan:
    """A checked ``TuneSpec`` and what follows from it, shared by the parts of a study: ``StudyBuilder`` (its Optuna
    objects), ``TrialObjective`` (one trial) and ``export_preset`` (a trial's parameters to a preset file).
    Picklable, so that spawned worker processes receive it whole.

    Attributes:
        spec: the study's settings.
        metrics: the objective metrics (``objective_metric``), all maximised.
        study_name: the study's name in its storage.
        study_dir: ``<output_root>/optuna/<study>``: the trials' run folders are under it.
        base: the run config of the method's presets with the fixed overrides (the budget every trial spends).
        space: the tuned search space.
        storage_url: a database URL or a journal file path.
        storage_label: ``storage_url`` with any password hidden, for messages.
    """

    spec: TuneSpec
    metrics: tuple[str, ...]
    study_name: str
    study_dir: Path
    base: RunConfig
    space: tuple[Dimension, ...]
    storage_url: str
    storage_label: str

    @classmethod
    def check(cls, spec: TuneSpec) -> StudyPlan:
        """Check names, search space bounds, objectives, storage and trial count. Raises ``ConfigError``."""
        if isinstance(spec.n_trials, bool) or not isinstance(spec.n_trials, int) or spec.n_trials < 1:
            raise ConfigError(f"the number of trials must be a positive integer, got {spec.n_trials!r}")
        if spec.sampler not in ("tpe", "gp"):
            raise ConfigError(f"sampler must be tpe or gp, got {spec.sampler!r}")
        integers = (("sampler seed", spec.sampler_seed, 0), ("heartbeat interval", spec.heartbeat_interval, 1),
                    ("max retry", spec.max_retry, 0), ("prune after trials", spec.prune_after_trials, 0))
        for label, value, low in integers:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")
        if not spec.objectives:
            raise ConfigError("a study needs at least one objective")
        if not isinstance(spec.also_on, tuple) or not all(isinstance(t, str) for t in spec.also_on):
            raise ConfigError(f"also_on must be a tuple of task ids, got {spec.also_on!r}")
        if len(set(spec.tasks)) != len(spec.tasks):
            raise ConfigError(f"a study's tasks repeat: {list(spec.tasks)}")
        metrics = tuple(objective_metric(o, spec.task) for o in spec.objectives)
        for task in spec.also_on:  # the mean over tasks needs one metric on every task
            theirs = tuple(objective_metric(o, task) for o in spec.objectives)
            if theirs != metrics:
                raise ConfigError(f"objectives {list(spec.objectives)} mean {list(metrics)} on {spec.task} but "
                                  f"{list(theirs)} on {task}; name the metrics")
        if len(set(metrics)) != len(metrics):
            raise ConfigError(f"objectives repeat a metric: {list(metrics)}")
        short = "+".join(m.removeprefix("eval/").replace("/", "_") for m in metrics)
        if spec.preset_name is not None and not _STUDY_NAME.match(spec.preset_name):
            raise ConfigError(f"preset name {spec.preset_name!r} must use only letters, digits, '.', '_', '+' and '-'")
        study_name = spec.study_name or f"{spec.method}--{spec.preset_name or spec.task}--{short}"
        if not _STUDY_NAME.match(study_name):
            raise ConfigError(f"study name {study_name!r} must use only letters, digits, '.', '_', '+' and '-'")
        study_dir = Path(spec.output_root) / "optuna" / study_name
        overrides = dict(spec.overrides)
        base = _trial_config(spec, study_dir, overrides)
        space = load_search_space(spec.method, spec.params, load_spec(spec.task).backbone)
        fixed = [d.name for d in space if d.name in overrides]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} is both tuned and fixed by an override; drop one")
        for task in spec.also_on:  # one backbone's search space for every task of the study
            if load_spec(task).backbone != load_spec(spec.task).backbone:
                if load_search_space(spec.method, spec.params, load_spec(task).backbone) != space:
                    raise ConfigError(f"{spec.method}'s search space differs between {spec.task} and {task}")
            _trial_config(spec, study_dir, overrides, task)
        for dim in space:  # every bound must make a valid config, or trials would fail one by one
            for value in dim.extremes():
                for task in spec.tasks:
                    _trial_config(spec, study_dir, {**overrides, dim.name: value}, task)
        storage_url, storage_label = _storage_location(spec.storage, study_dir.with_name(study_name + ".log"))
        return cls(spec, metrics, study_name, study_dir, base, space, storage_url, storage_label)

    @property
    def pruning(self) -> bool:
        """Whether trials are pruned: asked for, and a single objective (Optuna's pruners are single-objective)."""
        return self.spec.prune and len(self.metrics) == 1 and not self.spec.also_on

    def config(self, overrides: dict[str, Any], task: str | None = None) -> RunConfig:
        """The run config of a trial on ``task`` (None: the study's first) with the method settings ``overrides``."""
        return _trial_config(self.spec, self.study_dir, overrides, task)

    @property
    def preset_path(self) -> Path:
        """Where ``export_preset`` writes: ``baselines/<method>/tuned/<preset_name or task>.yaml``."""
        return data_dir("baselines") / self.spec.method / "tuned" / f"{self.spec.preset_name or self.spec.task}.yaml"

    @property
    def fingerprint(self) -> str:
        """What the study's trials depend on, as JSON: a rerun into an existing study must match it."""
        return json.dumps({
            "task": self.spec.task, "method": self.spec.method, "budget": self.base.budget, "seed": self.spec.seed,
            "metrics": self.metrics, "space": [dataclasses.asdict(d) for d in self.space],
            "overrides": sorted(map(list, self.spec.overrides)),
            # only when set: studies from before the field keep their fingerprint
            **({} if self.spec.eval_fractions is None else {"eval_fractions": list(self.base.eval_fractions)}),
            **({"also_on": list(self.spec.also_on)} if self.spec.also_on else {}),
        }, sort_keys=True, default=str)


def _storage_location(storage: str | None, journal: Path) -> tuple[str, str]:
    """``(url or path, label for messages)`` of the study's storage; ``journal``: the default journal file."""
    if storage is None:
        return str(journal), str(journal)
    if "://" not in storage:
        return storage, storage
    scheme = storage.split("://", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        raise ConfigError("sqlite is not a tuning storage (parallel writers corrupt it); use the default journal "
                          "file on one machine or a postgresql:// URL for many")
    if scheme not in ("postgresql", "mysql"):
        raise ConfigError(f"storage {scheme}:// is not supported; give a postgresql:// URL or a journal file path")
    from sqlalchemy.engine import make_url  # optional dependency: only a database storage needs sqlalchemy
    from sqlalchemy.exc import ArgumentError

    try:
        return storage, make_url(storage).render_as_string(hide_password=True)
    except ArgumentError:
        raise ConfigError(f"storage URL {storage!r} is malformed") from None


class StudyBuilder:
    """The Optuna side of a study, built in each process from its ``StudyPlan`` (storages hold connections, and do
    not travel to workers): the storage, each worker's sampler, the pruner; creating or joining the study with
    its trial slots; queueing the trials of an interrupted tune again."""

    def __init__(self, plan: StudyPlan):
        self.plan = plan

    def storage(self) -> optuna.storages.BaseStorage:
        """The study's storage: ``RDBStorage`` with heartbeats and retries for a URL, else a journal file."""
        import optuna
        from optuna.exceptions import ExperimentalWarning

        plan = self.plan
        if "://" not in plan.storage_url:
            path = Path(plan.storage_url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            try:
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(plan.spec.max_retry)
                return optuna.storages.RDBStorage(plan.storage_url, heartbeat_interval=plan.spec.heartbeat_interval,
                                                  heartbeat_stale_trial_callback=retry)
            except ImportError:
                raise BenchsuiteError(f"no database driver for {plan.storage_label}; for PostgreSQL: "
                                      "pip install 'psycopg[binary]' and use a postgresql+psycopg:// URL") from None
            except Exception as exc:  # noqa: BLE001 - sqlalchemy's connection errors have no common public base
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BenchsuiteError(f"cannot open tuning storage {plan.storage_label}: {first}") from None

    def sampler(self, worker: int) -> optuna.samplers.BaseSampler:
        """Worker ``worker``'s sampler, seeded from (``sampler_seed``, ``worker``); half the trials (at most
        10, Optuna's default) are random start points."""
        import numpy as np
        import optuna

        spec = self.plan.spec
        seed = int(np.random.SeedSequence([spec.sampler_seed, worker]).generate_state(1)[0])
        startup = min(10, max(2, spec.n_trials // 2))
        if spec.sampler == "gp":
            from optuna.exceptions import ExperimentalWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)

    def pruner(self) -> optuna.pruners.BasePruner:
        """``MedianPruner`` from ``prune_after_trials`` completed trials and 30% of the budget on; else none."""
        import optuna

        if not self.plan.pruning:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=self.plan.spec.prune_after_trials,
                                           n_warmup_steps=math.ceil(_PRUNE_WARMUP * self.plan.base.budget))

    def open_study(self, storage, tracking: tuple[str, str] | None):
        """Create the study (or join it), queue its missing slots and get or create its MLflow parent run.

        The process whose ``create_study`` succeeds queues the slots and opens the parent before it marks the
        study ready; other processes wait for that mark (up to 2 minutes), then check the settings match.

        Returns:
            ``(study, parent)``: the parent is an open ``MlflowTracker`` or None without MLflow.
        """
        import optuna

        plan = self.plan
        try:
            # joining an existing study writes nothing (a journal would record every create attempt)
            if plan.study_name in optuna.study.get_all_study_names(storage):
                raise optuna.exceptions.DuplicatedStudyError(plan.study_name)
            study = optuna.create_study(storage=storage, study_name=plan.study_name,
                                        directions=["maximize"] * len(plan.metrics))
            study.set_user_attr(SPEC_ATTR, plan.fingerprint)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=plan.study_name, storage=storage)
            created = False
        if not created:
            self._wait_until_ready(study)
        self._queue_slots(study)
        parent = None if tracking is None else self._open_parent(tracking)
        if created:
            study.set_user_attr(READY_ATTR, True)
        return study, parent

    def _wait_until_ready(self, study) -> None:
        """Wait (up to 2 minutes) for the process that created ``study`` to mark it ready; check its settings."""
        plan = self.plan
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not study.user_attrs.get(READY_ATTR):
            if time.monotonic() > deadline:
                raise BenchsuiteError(f"study {plan.study_name} in {plan.storage_label} was never made ready by the "
                                      "process that created it; delete it (optuna delete-study) or pass another "
                                      "--study-name")
            time.sleep(0.5)
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored != plan.fingerprint:
            theirs, ours = (json.loads(stored) if stored else {}), json.loads(plan.fingerprint)
            differ = [k for k in ours if theirs.get(k) != ours[k]]
            raise BenchsuiteError(f"study {plan.study_name} in {plan.storage_label} was created with other settings "
                                  f"({', '.join(differ)} differ); pass another --study-name")

    def _open_parent(self, tracking: tuple[str, str]):
        """The study's MLflow parent run (opened, or created with the study's settings as params)."""
        plan, spec = self.plan, self.plan.spec
        return open_parent_run(
            tracking[0], Path(tracking[1]), spec.task, f"study--{plan.study_name}", f"study {plan.study_name}",
            {KIND_TAG: "study", "benchsuite.study": plan.study_name, "benchsuite.storage": plan.storage_label},
            params={"method": spec.method, "budget": plan.base.budget, "seed": spec.seed,
                    "objectives": ",".join(plan.metrics), "n_trials": spec.n_trials,
                    **{f"space.{d.name}": _describe(d) for d in plan.space},
                    **{f"fixed.{k}": v for k, v in spec.overrides}})

    def _queue_slots(self, study) -> None:
        n_trials = self.plan.spec.n_trials
        taken = {t.user_attrs[SLOT_ATTR] for t in study.get_trials(deepcopy=False) if SLOT_ATTR in t.user_attrs}
        if len(taken) > n_trials:
            raise BenchsuiteError(f"study {self.plan.study_name} already has {len(taken)} trials; a study can grow, "
                                  f"not shrink: pass --trials {len(taken)} or more")
        for slot in range(n_trials):
            if slot not in taken:
                study.enqueue_trial({}, user_attrs={SLOT_ATTR: slot})

    def retry_interrupted(self, study) -> list[int]:
        """Fail the trials left RUNNING and queue them again, with the trials failed by Ctrl-C; each keeps its
        parameters and slot and resumes its run's checkpoint. For a tune that was killed or interrupted, when no
        other worker runs: a journal file has no heartbeat to tell a dead worker's trial from a live one.

        Returns:
            The numbers of the trials queued again.
        """
        import optuna
        from optuna.exceptions import ExperimentalWarning
        from optuna.trial import TrialState

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(self.plan.spec.max_retry)
        again = []
        for trial in _latest_per_slot(study.get_trials(deepcopy=False)).values():
            if trial.state == TrialState.RUNNING:
                trial = study.tell(trial.number, state=TrialState.FAIL)
            elif not (trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED_ATTR)):
                continue
            retry(study, trial)
            again.append(trial.number)
        return again


class TrialObjective:
    """One trial, as Optuna's objective: its slot and worker marked, its config (the suggested parameters over the
    fixed overrides), its run (``run`` with ``resume=True``, waiting while another process holds the run folder),
    the pruning reports at every evaluation, and the objective value(s) of the finished run."""

    def __init__(self, plan: StudyPlan, tracking: tuple[str, str] | None = None, parent_run_id: str | None = None):
        """``tracking``: ``(tracking_uri, artifact_root)`` of the MLflow store, or None; ``parent_run_id``: the
        study's MLflow parent run."""
        self.plan, self.tracking, self.parent_run_id = plan, tracking, parent_run_id

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        import optuna

        plan = self.plan
        if SLOT_ATTR not in trial.user_attrs:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise _SurplusTrial(f"trial {trial.number} was created after all {plan.spec.n_trials} slots were taken")
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        if trial.user_attrs.get(INTERRUPTED_ATTR):  # a retry inherits its predecessor's attributes
            trial.set_user_attr(INTERRUPTED_ATTR, False)
        params = {**dict(plan.spec.overrides), **{d.name: d.suggest(trial) for d in plan.space}}
        per_task = []
        for i, task in enumerate(plan.spec.tasks):  # one task, or the tasks whose mean is the objective
            config = plan.config(params, task)
            trial.set_user_attr(RUN_ATTR if i == 0 else f"{RUN_ATTR}.{task}", config.run_id)
            tracker = (None if self.tracking is None else
                       _TrialTracker(self.tracking, self.parent_run_id, trial, plan.study_name, task if i else None))
            card = load_spec(task)
            try:
                result = _run_when_free(trial, config, tracker, self.reporter(trial, config, card))
            except StopRun as stop:
                raise optuna.TrialPruned(str(stop)) from None
            except KeyboardInterrupt:
                trial.set_user_attr(INTERRUPTED_ATTR, True)  # Optuna fails the trial; a rerun may retry it
                raise
            per_task.append([objective_value(m, result.curve, card.drift_budget, card.judge_tolerance)
                             for m in plan.metrics])
        if len(per_task) > 1:
            trial.set_user_attr(PER_TASK_ATTR, {t: v for t, v in zip(plan.spec.tasks, per_task)})
        values = [math.fsum(column) / len(column) for column in zip(*per_task)]
        return values[0] if len(values) == 1 else values

    def reporter(self, trial: optuna.Trial, config: RunConfig, card) -> Callable[[int, dict[str, float]], None]:
        """The run's ``on_eval`` for ``trial`` (``card``: the task's ``TaskSpec``): it records the queries spent
        and, when pruning, reports the objective at the scheduled evaluation point (equal across trials) and raises
        ``StopRun`` to prune."""
        import optuna

        points = eval_points(config.budget, config.eval_fractions)
        seen: list[dict[str, float]] = []

        def on_eval(queries: int, metrics: dict[str, float]) -> None:
            try:
                trial.set_user_attr(QUERIES_ATTR, queries)
            except optuna.exceptions.UpdateFinishedTrialError:  # failed for a late heartbeat: stop, do not race
                raise StopRun("the trial was failed for a stale heartbeat; its retry continues the run") from None
            seen.append(metrics)
            if self.plan.pruning:
                step = max(p for p in points if p <= queries)  # the scheduled point: equal across trials
                value = objective_value(self.plan.metrics[0], seen, card.drift_budget, card.judge_tolerance)
                if math.isfinite(value):  # nothing to compare before the first query of a query-side objective
                    trial.report(value, step)
                if trial.should_prune():
                    raise StopRun(f"pruned at {step} queries")

        return on_eval


def _run_when_free(trial, config: RunConfig, tracker, on_eval):
    """``run`` the trial's config, waiting while another process holds its run folder: a trial with the same
    parameters (hence the same run id) in another worker, or the slow worker of a trial whose stale heartbeat
    got it retried here (it stops at its next evaluation). Once free, the run resumes from their checkpoint, or
    only reads back a finished run; a dead holder frees the folder at once."""
    import optuna

    waiting = False
    while True:
        try:
            return run(config, tracker=tracker, resume=True, on_eval=on_eval)
        except RunLockedError as locked:
            if not waiting:
                optuna.logging.get_logger("optuna").info("trial %d waits: %s", trial.number, locked)
                waiting = True
            time.sleep(_LOCK_POLL_S)


def export_preset(plan: StudyPlan, study, trial_number: int | None = None) -> Path:
    """Write a trial's parameters (with the fixed overrides) to ``baselines/<method>/tuned/<task>.yaml``.

    Args:
        plan: the study's plan.
        study: the study.
        trial_number: a COMPLETE trial; None: the best trial of a single-objective study.

    Raises:
        ConfigError: no such complete trial, or None for a multi-objective study.
    """
    import optuna
    import yaml

    trial = _trial_to_export(plan, study, trial_number)
    values = {**dict(plan.spec.overrides), **trial.params}
    plan.config(values)  # the exported file must resolve
    if len(plan.metrics) == 1:
        rank = "best"
    else:
        rank = "Pareto-optimal" if trial.number in {t.number for t in study.best_trials} else "dominated"
    scores = ", ".join(f"{m} {v:.6g}" for m, v in zip(plan.metrics, trial.values))
    spec = plan.spec
    header = (f"# Written by `benchsuite tune` (optuna {optuna.__version__}) on "
              f"{_finished_on(study)}: study {plan.study_name},\n"
              f"# trial {trial.number} ({rank}): {scores};\n"
              f"# budget {plan.base.budget}, training seed {spec.seed}, storage {plan.storage_label}.\n"
              + (f"# `benchsuite run` layers it over baselines/{spec.method}/defaults.yaml for {spec.task}.\n"
                 if spec.preset_name is None else
                 f"# The mean objective over {', '.join(spec.tasks)}; the runs that name preset {spec.preset_name} "
                 f"take it\n# over baselines/{spec.method}/defaults.yaml (benchsuite.leaderboard).\n"))
    path = plan.preset_path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, header + yaml.safe_dump(values, sort_keys=True))
    return path


def _finished_on(study) -> str:
    """The date the study's last trial finished (Optuna's record, the machine's local time), so that exporting a finished study
    again writes the same file (today's date for a study with no finished trial)."""
    done = [t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    when = max(done) if done else datetime.now(UTC)
    return when.date().isoformat()


def _trial_to_export(plan: StudyPlan, study, trial_number: int | None):
    """Trial ``trial_number`` of ``study`` if COMPLETE, or with None the best of a single-objective study."""
    from optuna.trial import TrialState

    if trial_number is None:
        if len(plan.metrics) > 1:
            raise ConfigError("a multi-objective study has no single best trial; pick one of its Pareto front "
                              "with --export-trial N")
        try:
            return study.best_trial
        except ValueError:
            raise ConfigError(f"study {plan.study_name} has no complete trial to export") from None
    found = [t for t in study.get_trials(deepcopy=False) if t.number == trial_number]
    if not found or found[0].state != TrialState.COMPLETE:
        raise ConfigError(f"study {plan.study_name} has no complete trial {trial_number}")
    return found[0]


class Tuner:
    """A validated ``TuneSpec`` (a ``StudyPlan``: everything is checked on construction, before any file or study
    exists) and the tune that composes the study's parts: ``StudyBuilder`` opens the study, worker processes run
    ``TrialObjective`` on its queued trials, ``report`` counts the outcome and ``export`` writes a preset.

    Picklable (it holds no storage connection), so that spawned worker processes receive it whole.
    """

    def __init__(self, spec: TuneSpec):
        """Check names, search space bounds, objectives, storage and trial count. Raises ``ConfigError``."""
        self.plan = StudyPlan.check(spec)
        self.studies = StudyBuilder(self.plan)

    spec = property(lambda self: self.plan.spec, doc="The study's settings.")
    metrics = property(lambda self: self.plan.metrics, doc="The objective metrics, all maximised.")
    study_name = property(lambda self: self.plan.study_name, doc="The study's name in its storage.")
    study_dir = property(lambda self: self.plan.study_dir, doc="Where the trials' run folders are.")
    base = property(lambda self: self.plan.base, doc="The run config of the presets with the fixed overrides.")
    space = property(lambda self: self.plan.space, doc="The tuned search space.")
    pruning = property(lambda self: self.plan.pruning, doc="Whether trials are pruned.")
    storage_url = property(lambda self: self.plan.storage_url, doc="A database URL or a journal file path.")
    storage_label = property(lambda self: self.plan.storage_label, doc="``storage_url``, any password hidden.")
    fingerprint = property(lambda self: self.plan.fingerprint, doc="What the trials depend on (JSON).")

    def storage(self) -> optuna.storages.BaseStorage:
        """The study's storage (``StudyBuilder.storage``)."""
        return self.studies.storage()

    def open_study(self, storage, tracking: tuple[str, str] | None):
        """Create or join the study and its MLflow parent (``StudyBuilder.open_study``): ``(study, parent)``."""
        return self.studies.open_study(storage, tracking)

    def retry_interrupted(self, study) -> list[int]:
        """Queue again the trials of a killed or interrupted tune (``StudyBuilder.retry_interrupted``)."""
        return self.studies.retry_interrupted(study)

    def work(self, worker: int, tracking: tuple[str, str] | None, parent_run_id: str | None) -> None:
        """Run queued trials until none is left. With a database storage, also fail and retry the trials of
        dead workers, and wait while other workers' trials run (one of them may die and be retried)."""
        import optuna
        from optuna.exceptions import ExperimentalWarning
        from optuna.trial import TrialState

        study = optuna.load_study(study_name=self.study_name, storage=self.studies.storage(),
                                  sampler=self.studies.sampler(worker), pruner=self.studies.pruner())
        heartbeat = "://" in self.storage_url
        objective = TrialObjective(self.plan, tracking, parent_run_id)
        while True:
            if heartbeat:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
            states = Counter(t.state for t in study.get_trials(deepcopy=False))
            if states[TrialState.WAITING]:
                try:  # a failing run fails its trial, not the worker; Optuna logs the error
                    study.optimize(objective, n_trials=1, catch=(Exception,))
                except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
                    # Optuna cannot record the outcome: a late heartbeat got the trial failed and retried elsewhere
                    optuna.logging.get_logger("optuna").warning("worker %d: %s; its retry carries on", worker, exc)
            elif heartbeat and states[TrialState.RUNNING]:
                time.sleep(min(5, self.spec.heartbeat_interval))
            else:
                return

    def tune(self, workers: int = 1, tracking: tuple[str, str] | None = None,
             retry_interrupted: bool = False) -> TuneReport:
        """Open the study, run ``workers`` worker processes (1: in this process) until no queued trial is
        left, log the outcome to the MLflow parent run and return it.

        Args:
            workers: worker processes on this machine (other machines may join with the same command).
            tracking: ``(tracking_uri, artifact_root)`` of the MLflow store, or None.
            retry_interrupted: first queue again the trials of a killed or interrupted tune (see
                ``retry_interrupted``).
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        if workers > 1:
            check_spawnable(self.base)
        study, parent = self.open_study(self.storage(), tracking)
        if retry_interrupted:
            self.retry_interrupted(study)
        parent_id = None if parent is None else parent.run_id
        dead: list[tuple[int, int]] = []
        try:
            if workers == 1:
                self.work(0, tracking, parent_id)
            else:
                context = multiprocessing.get_context("spawn")  # fork would copy torch's threads, open connections
                procs = [context.Process(target=self.work, args=(i, tracking, parent_id), name=f"tune-worker-{i}")
                         for i in range(workers)]
                for proc in procs:
                    proc.start()
                for i, proc in enumerate(procs):
                    proc.join()
                    if proc.exitcode != 0:
                        dead.append((i, proc.exitcode))
        except KeyboardInterrupt:
            if parent is not None:
                parent.end_run("KILLED")
            raise
        report = self.report(study, dead, parent_id)
        if parent is not None:
            _log_outcome(parent, study, report)
            if report.complete:
                parent.end_run("FINISHED")  # otherwise other machines are still at it: the parent stays open
        return report

    def report(self, study, dead_workers: list[tuple[int, int]] = (), parent_run_id: str | None = None) -> TuneReport:
        """Count finished slots and find the best trial or the Pareto front."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        latest = _latest_per_slot(trials)
        done = sum(t.state.is_finished() and not t.user_attrs.get(INTERRUPTED_ATTR) for t in latest.values())
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            best = []
        elif len(self.metrics) == 1:
            best = [study.best_trial]
        else:
            best = sorted(study.best_trials, key=lambda t: t.values[0], reverse=True)
        return TuneReport(self.study_name, self.storage_label, self.metrics, self.spec.n_trials, done,
                          dict(Counter(t.state.name for t in trials)), best, list(dead_workers), parent_run_id)

    def export(self, study, trial_number: int | None = None) -> Path:
        """Write a trial's parameters to ``baselines/<method>/tuned/<task>.yaml`` (``export_preset``)."""
        return export_preset(self.plan, study, trial_number)


def _latest_per_slot(trials) -> dict[int, Any]:
    """Each slot's latest trial: its retry, if it had one."""
    latest: dict[int, Any] = {}
    for trial in trials:
        slot = trial.user_attrs.get(SLOT_ATTR)
        if slot is not None and (slot not in latest or trial.number > latest[slot].number):
            latest[slot] = trial
    return latest


def _describe(dim: Dimension) -> str:
    if dim.type == "categorical":
        return f"categorical {list(dim.choices)}"
    return f"{dim.type} [{dim.low}, {dim.high}]{' log' if dim.log else ''}"


def _log_outcome(parent, study, report: TuneReport) -> None:
    """Log the best values (single objective) and the trials table with the Pareto flag to the parent run."""
    import tempfile

    frame = study.trials_dataframe(attrs=("number", "state", "values", "params", "user_attrs", "duration"))
    frame["best"] = frame["number"].isin([t.number for t in report.best])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trials.csv"
        frame.to_csv(path, index=False)
        parent.log_artifact(path)
    if len(report.metrics) == 1 and report.best:
        parent.log_metrics({f"best/{report.metrics[0]}": report.best[0].value}, step=len(study.trials))
    parent.log_metrics({"trials_done": float(report.done)}, step=len(study.trials))


class _TrialTracker(MlflowTracker):
    """The MLflow side of one trial: a child of the study's parent run, named ``trial-<number>`` and tagged with
    the study and trial. Its run id is stored on the trial, so that a retry which cannot resume its
    predecessor's run (killed before its first checkpoint) closes that run as KILLED."""

    def __init__(self, tracking: tuple[str, str], parent_run_id: str | None, trial, study_name: str,
                 task: str | None = None):
        """Log to ``tracking = (uri, artifact_root)`` under ``parent_run_id`` for ``trial`` of ``study_name``;
        ``task``: the run of a further task of a study ``also_on`` several (named ``trial-<number>-<task>``)."""
        super().__init__(tracking[0], Path(tracking[1]), parent_run_id)
        self._trial = trial
        self._study_name = study_name
        self._suffix = "" if task is None else f"-{task}"

    def start_run(self, *, experiment, run_name, run_key, params, tags, resume_step=None) -> None:
        """Open the run as ``MlflowTracker`` does, under the trial's name and tags."""
        name = f"trial-{self._trial.number}{self._suffix}"
        extra = {"benchsuite.study": self._study_name, "benchsuite.trial": str(self._trial.number),
                 "mlflow.runName": name}
        super().start_run(experiment=experiment, run_name=name, run_key=run_key, params=params,
                          tags={**tags, **extra}, resume_step=resume_step)
        client = self._client()
        for key, value in extra.items():  # a reopened run (a retry resuming a checkpoint) takes the retry's tags
            client.set_tag(self.run_id, key, value)
        attr = MLFLOW_RUN_ATTR + self._suffix.replace("-", ".", 1)
        previous = self._trial.user_attrs.get(attr)
        if previous not in (None, self.run_id) and client.get_run(previous).info.status == "RUNNING":
            client.set_terminated(previous, "KILLED")
        self._trial.set_user_attr(attr, self.run_id)
