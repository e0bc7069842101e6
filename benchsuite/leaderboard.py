"""Leaderboards as data, and the stages that make their committed tables.

A leaderboard is a versioned spec in ``tasks/leaderboards/<name>-v<N>.yaml`` (``LeaderboardSpec``): its tasks, the
seeds of each (fixed before any run, never extended after looking), the queries per run, the evaluation points,
the tuning budget, the methods (``registered``: every registered method that declares ``Method.leaderboard``, a
plugin's included) and a small verify slice. Four stages run it::

    benchsuite leaderboard tune --tier core     # the presets: one equal Optuna study per (task, method)
    benchsuite leaderboard run --tier core      # every (task, method, seed) with those presets, then the report
    benchsuite leaderboard report --tier core   # the report again from the run folders
    benchsuite leaderboard verify --tier core   # rerun the verify slice; fail on any value that moved

Tuning. Every method with hyperparameters gets the same study on every task: ``tuning.trials`` trials (TPE, sampler
seed ``tuning.sampler_seed``, median pruning at equal query counts) over the fields its class names in
``Method.tune_params`` (the KL coefficient, the learning rate, its own knobs, the timestep fraction where it
applies; ranges from ``baselines/<method>/search_space.yaml``), each trial one run at the leaderboard's queries and
evaluation points with the tuning seed (never a reported seed) and the standardized reward (``reward_norm:
running``) for every method that mixes a reward with a KL term. The objective is the same for every method of a
task, read on the card's selection set: the headline at matched drift (``tuning.MATCHED``), or at full budget for
a method that fine-tunes nothing (``REFERENCE_METHODS``: it has no path KL). The best trial of each study becomes
``baselines/<method>/tuned/<task>.yaml``, which every later run of the task picks up; the journals and
``tuning.md`` / ``tuning.csv`` are written by the stage, never by hand. Studies are shared by the tiers (a preset is
per task), in ``results/leaderboard/tuning/``.

Runs. Every (task, method, seed) is one ``runner.run`` in a single-threaded worker process through
``sweep.run_many`` (resumable; run folders in ``<out>/runs/``, not committed), seed-major, so that a stopped stage
holds whole seeds. The stage refuses a source tree with uncommitted changes (``--allow-dirty`` runs anyway and the
stage's record says so) and appends its commit, wall and CPU time to ``<out>/suite.json``.
"""

from __future__ import annotations

import json
import math
import tempfile
import resource
import time
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .config import resolve
from .errors import BenchsuiteError, ConfigError
from .files import atomic_write_text
from .registry import METHODS
from .report import DIRTY, current_commit, final_grids, load_runs, write_report
from .report.bbo import read_bbo_runs, write_bbo_report
from .report.labels import REFERENCE_METHODS, report_task
from .report.tables import run_values
from .runner import run as run_one
from .sweep import run_many
from .tasks import load_spec, task_dirs
from .tuning import MATCHED, Tuner, TuneSpec, load_search_space

SPEC_FOLDER = "leaderboards"
"""Leaderboard specs live in this subfolder of every task-card folder (``tasks.task_dirs``)."""
RESULTS = Path("results/leaderboard")
"""Where each tier's report goes (``<RESULTS>/<name>``) and the shared studies (``<RESULTS>/tuning``)."""
TUNING_SEED = 1000
MACHINE_DEPENDENT = ("wall", "peak_rss", "peak_cuda", "cost/time_", "time/")
"""Columns whose values depend on the machine and its load (time, memory), left out of ``verify``'s comparison."""


@dataclass(frozen=True)
class TierTask:
    """One task of a leaderboard: its id, the training seeds of its runs (0 .. seeds - 1) and, in a spec whose
    ``methods`` is a mapping of named lists, the name of the list this task runs (``LeaderboardSpec.groups``)."""

    id: str
    seeds: int
    methods: str | None = None


@dataclass(frozen=True)
class VerifyRun:
    """One run of the verify slice: rerun, and compared with the committed ``per_seed.csv``."""

    task: str
    method: str
    seed: int


@dataclass(frozen=True)
class LeaderboardSpec:
    """A leaderboard tier (see the module docstring).

    Attributes:
        id: ``<name>-v<N>``; a published id never changes meaning: a change of tasks, seeds, budget or methods is a
            new version.
        description: one line.
        tasks: the tasks and their seed counts, fixed before any run.
        budget: oracle queries of every run (and every tuning trial).
        eval_fractions: fractions of the budget at which every run evaluates both of its card's evaluation sets.
        methods: method names; ``("builtin",)``: every built-in method that declares ``Method.leaderboard`` (what
            a committed tier runs, so that its tables do not depend on the plugins installed); ``("registered",)``:
            every registered one, an installed plugin's included (``--methods registered`` on the command line).
            An explicit name joins whatever its ``Method.leaderboard`` says (the black-box tier lists screening and
            the GAs). With ``groups`` it is the union of the groups' lists.
        groups: ``(name, methods)`` pairs when the spec's ``methods`` is a mapping of named lists (each task names
            its list: the molecule optimizers on the PMO cards, the sequence optimizers on the Ehrlich cards); a
            method joins every task of a list with a one-line edit of that list. Empty: every task runs ``methods``.
        headline: what the tier ranks by: ``matched-drift`` (the primary judge's test-set mean at the card's drift
            budget, the fine-tuning tiers) or ``auc-top10`` (PMO's AUC of the top-10 curve of the oracle queries,
            ``pmo/auc_top10``: the black-box tier, whose cards use PMO accounting).
        budget: None: every card's own ``default_budget`` (``--budget default``, e.g. PMO's 10,000).
        trials: Optuna trials per (task, method) study.
        tune_on: ``(list name, tasks)`` pairs of a spec with named method lists tuned by PMO's protocol (Gao et al.
            2022; mol_opt tunes each method once, on zaleplon_mpo and perindopril_mpo, by the mean AUC top-10 over
            them, and uses that preset on all 23 oracles): one study per (list, method) whose objective is the
            mean over the list's tuning tasks; its best trial is ``baselines/<method>/tuned/<id>-<list>.yaml``,
            the preset of every run of that list (``preset_name``). Empty: one study per (task, method).
        verify: the runs the verify stage reruns.
        changes: what this version changed.
        source: the file.
    """

    id: str
    description: str
    tasks: tuple[TierTask, ...]
    budget: int | None
    eval_fractions: tuple[float, ...]
    methods: tuple[str, ...] = ("builtin",)
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    headline: str = "matched-drift"
    trials: int = 8
    tune_on: tuple[tuple[str, tuple[str, ...]], ...] = ()
    verify: tuple[VerifyRun, ...] = ()
    changes: str = ""
    source: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.id.rsplit("-v", 1)[0]

    @property
    def task_ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    def seeds(self, task: str) -> list[int]:
        return list(range(next(t.seeds for t in self.tasks if t.id == task)))

    def method_names(self) -> list[str]:
        """The methods of the tier: the spec's list, or every registered method that joins leaderboards."""
        return resolve_methods(self.methods)

    def task_methods(self, task: str, methods: list[str]) -> list[str]:
        """The methods ``task`` runs among ``methods`` (the stage's selection): all of them, or with ``groups`` those
        in the task's list."""
        group = next(t.methods for t in self.tasks if t.id == task)
        if group is None:
            return list(methods)
        listed = set(resolve_methods(dict(self.groups)[group]))
        return [m for m in methods if m in listed]

    def list_preset(self, group: str) -> str:
        """The name of the preset a method list tuned by ``tune_on`` exports and its runs take: ``<id>-<list>``."""
        return f"{self.id}-{group}"

    def preset_name(self, task: str) -> str | None:
        """The named preset the runs of ``task`` take (``tune_on``: ``list_preset``), or None: the task's own
        tuned preset, when there is one (``benchsuite.config.resolve``)."""
        group = next(t.methods for t in self.tasks if t.id == task)
        return self.list_preset(group) if group in dict(self.tune_on) else None

    def config(self, task: str, method: str, seed: int, output_root: Path):
        """The ``RunConfig`` of one run of the tier (the run and verify stages): the tier's budget and evaluation
        points, and the tier's presets."""
        preset = self.preset_name(task)
        return resolve(task, method, seed=seed, budget=self.budget_for(task), eval_fractions=self.eval_fractions,
                       output_root=str(output_root), preset=preset)

    def budget_for(self, task: str) -> int:
        """Oracle queries of every run of ``task``: the tier's budget, or the card's default (``budget`` None)."""
        return load_spec(task).default_budget if self.budget is None else self.budget


GROUPS = ("builtin", "registered")
HEADLINES = ("matched-drift", "auc-top10")
"""What a tier ranks by (``LeaderboardSpec.headline``)."""
AUC_TOP10 = "pmo/auc_top10"
"""The ``auc-top10`` headline's metric (``benchsuite.accounting``)."""
"""Names that stand for a group of methods in a spec's ``methods`` or ``--methods`` (``LeaderboardSpec.methods``)."""


def resolve_methods(names) -> list[str]:
    """Method names with ``builtin`` / ``registered`` expanded to the methods that declare ``Method.leaderboard``."""
    out: list[str] = []
    for name in names:
        group = {"builtin": METHODS.builtin_names, "registered": METHODS.names}.get(name)
        found = [m for m in group() if getattr(METHODS.load(m), "leaderboard", True)] if group else [name]
        out += [m for m in found if m not in out]
    return out


_KEYS = {"id", "description", "tasks", "budget", "eval_fractions", "methods", "tuning", "verify", "changes",
         "headline"}


def _spec_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in task_dirs():
        for path in sorted((folder / SPEC_FOLDER).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def leaderboard_ids() -> list[str]:
    return sorted(_spec_files())


def load_leaderboard(tier: str) -> LeaderboardSpec:
    """The spec of ``tier``: an id (``core-v1``) or a name (``core``: its newest version)."""
    files = _spec_files()
    if tier not in files:
        versions = sorted((k for k in files if k.rsplit("-v", 1)[0] == tier),
                          key=lambda k: int(k.rsplit("-v", 1)[1]) if k.rsplit("-v", 1)[1].isdigit() else -1)
        if not versions:
            raise ConfigError(f"unknown leaderboard {tier!r}; use one of: {', '.join(sorted(files)) or 'none'} "
                              f"(or a name: {', '.join(sorted({k.rsplit('-v', 1)[0] for k in files}))})")
        tier = versions[-1]
    return parse_leaderboard(files[tier])


def parse_leaderboard(path: Path) -> LeaderboardSpec:
    """A ``LeaderboardSpec`` from its YAML file; a one-line ``ConfigError`` on anything malformed."""
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: not a readable YAML leaderboard spec ({type(exc).__name__}); "
                          "fix the file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a leaderboard spec is a mapping (id, tasks, budget, ...)")
    unknown = sorted(set(map(str, raw)) - _KEYS)
    missing = sorted({"id", "tasks", "budget", "eval_fractions"} - set(raw))
    if unknown or missing:
        raise ConfigError(f"{source}: " + "; ".join(
            [f"unknown keys {unknown} (allowed: {sorted(_KEYS)})"] * bool(unknown)
            + [f"missing keys {missing}"] * bool(missing)))
    if str(raw["id"]) != path.stem:
        raise ConfigError(f"{source}: id {raw['id']!r} must equal the file name {path.stem!r}")
    tasks = raw["tasks"]
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(f"{source}: tasks must be a mapping task id -> {{seeds: N}}")
    methods = raw.get("methods", "builtin")
    groups = {}
    if isinstance(methods, dict):  # named lists; each task names one
        groups = methods
        if not groups or any(not isinstance(v, list) or not v for v in groups.values()):
            raise ConfigError(f"{source}: methods as a mapping names non-empty lists of methods (list name -> "
                              "[method, ...])")
        methods = [m for names in groups.values() for m in names]
        methods = list(dict.fromkeys(methods))
    tier_tasks = []
    for task, entry in tasks.items():
        load_spec(str(task))  # an unknown task: the registry's one-line error with close names
        seeds = entry.get("seeds") if isinstance(entry, dict) else None
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
            raise ConfigError(f"{source}: task {task}: seeds must be an integer >= 2 (intervals need two)")
        extra = sorted(set(entry) - {"seeds", "methods"})
        if extra:
            raise ConfigError(f"{source}: task {task}: unknown keys {extra} (allowed: seeds, methods)")
        group = entry.get("methods")
        if groups and group not in groups:
            raise ConfigError(f"{source}: task {task}: methods must name one of the spec's method lists "
                              f"({', '.join(map(str, groups))}), got {group!r}")
        if not groups and group is not None:
            raise ConfigError(f"{source}: task {task}: names a method list, but the spec's methods is not a mapping "
                              "of named lists")
        tier_tasks.append(TierTask(str(task), seeds, None if group is None else str(group)))
    budget = raw["budget"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"{source}: budget must be a positive integer (oracle queries per run)")
    headline = raw.get("headline", "matched-drift")
    if headline not in HEADLINES:
        raise ConfigError(f"{source}: headline must be one of {', '.join(HEADLINES)}, got {headline!r}")
    if headline == "auc-top10":
        unaccounted = [t.id for t in tier_tasks if getattr(load_spec(t.id).accounting, "mode", None) != "pmo"]
        if unaccounted:
            raise ConfigError(f"{source}: headline auc-top10 needs PMO accounting (an 'accounting: pmo' block) on "
                              f"every task; {', '.join(unaccounted)} has none")
    fractions = raw["eval_fractions"]
    if (not isinstance(fractions, list) or not fractions or fractions[0] != 0 or fractions[-1] != 1
            or any(not isinstance(f, int | float) or isinstance(f, bool) for f in fractions)
            or sorted(set(fractions)) != fractions):
        raise ConfigError(f"{source}: eval_fractions must rise strictly from 0 to 1 (the pretrained model and the "
                          "full budget are always evaluated)")
    methods = (methods,) if methods in GROUPS else methods
    if not isinstance(methods, list | tuple) or not methods:
        raise ConfigError(f"{source}: methods must be 'registered' or a list of method names")
    for m in methods:
        if m not in GROUPS:
            METHODS.load(str(m))  # an unknown method: one line with close names
    tuning = raw.get("tuning", {}) or {}
    trials = tuning.get("trials", 8) if isinstance(tuning, dict) else None
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"{source}: tuning.trials must be a positive integer")
    unknown = sorted(map(str, set(tuning) - {"trials", "tasks"}))
    if unknown:
        raise ConfigError(f"{source}: unknown tuning keys {unknown} (allowed: trials, tasks)")
    tune_on = _parse_tune_on(source, tuning.get("tasks"), groups)
    verify = []
    for entry in raw.get("verify", []) or []:
        if not isinstance(entry, dict) or set(entry) != {"task", "method", "seed"}:
            raise ConfigError(f"{source}: each verify entry is {{task, method, seed}}")
        if entry["task"] not in tasks:
            raise ConfigError(f"{source}: verify names {entry['task']!r}, which is not one of the tier's tasks")
        verify.append(VerifyRun(str(entry["task"]), str(entry["method"]), int(entry["seed"])))
    return LeaderboardSpec(id=str(raw["id"]), description=str(raw.get("description", "")), tasks=tuple(tier_tasks),
                           budget=budget, eval_fractions=tuple(float(f) for f in fractions),
                           methods=tuple(str(m) for m in methods),
                           groups=tuple((str(k), tuple(map(str, v))) for k, v in groups.items()),
                           headline=str(headline), trials=trials, tune_on=tune_on, verify=tuple(verify),
                           changes=str(raw.get("changes", "")), source=source)


def _parse_tune_on(source: str, on, groups: dict) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``tuning.tasks``: every method list -> the tasks its methods are tuned on (``LeaderboardSpec.tune_on``)."""
    if on is None:
        return ()
    if not groups:
        raise ConfigError(f"{source}: tuning.tasks needs named method lists (methods as a mapping)")
    if not isinstance(on, dict) or sorted(map(str, on)) != sorted(map(str, groups)):
        raise ConfigError(f"{source}: tuning.tasks maps every method list ({', '.join(map(str, groups))}) to the tasks "
                          "its methods are tuned on")
    for group, tasks in on.items():
        if not isinstance(tasks, list) or not tasks or len(set(map(str, tasks))) != len(tasks):
            raise ConfigError(f"{source}: tuning.tasks.{group} must be a non-empty list of distinct task ids")
        for task in tasks:
            load_spec(str(task))  # an unknown task: the registry's one-line error with close names
    return tuple((str(g), tuple(map(str, t))) for g, t in on.items())


def with_budget(spec: LeaderboardSpec, budget: str | None) -> LeaderboardSpec:
    """``spec`` at another budget (``--budget``): a positive integer, or ``default`` for every card's own
    ``default_budget`` (PMO's 10,000 on the PMO cards); None: unchanged."""
    if budget is None:
        return spec
    if budget == "default":
        return dataclasses.replace(spec, budget=None)
    if not budget.isdigit() or int(budget) < 1:
        raise ConfigError(f"--budget must be a positive integer or 'default' (every card's default_budget), got "
                          f"{budget!r}")
    return dataclasses.replace(spec, budget=int(budget))


def report_folder(spec: LeaderboardSpec, base: LeaderboardSpec) -> Path:
    """Where ``spec``'s report goes by default: ``results/leaderboard/<name>``, or, at a budget other than the spec's
    (``--budget``), ``<name>-budget<N>`` / ``<name>-budget-default``, so that runs of two budgets never mix."""
    if spec.budget == base.budget:
        return RESULTS / spec.name
    return RESULTS / f"{spec.name}-budget{'-default' if spec.budget is None else spec.budget}"


# ---- tuning -----------------------------------------------------------------------------------------------------
def tune_params(method: str) -> tuple[str, ...] | None:
    """The search-space fields a leaderboard tunes for ``method`` (``Method.tune_params``): None every field of its
    search space, () nothing (also for a method without a search-space file)."""

    declared = getattr(METHODS.load(method), "tune_params", None)
    if declared is not None:
        return tuple(declared)
    try:
        load_search_space(method)
    except ConfigError:
        return ()
    return None


def tuning_objective(task: str, method: str, headline: str = "matched-drift") -> str:
    """The objective of every study on ``task``: its headline (the primary judge's mean) at matched drift, read on
    the selection set; at full budget for a method that fine-tunes nothing (no path KL) or a card without a drift
    budget. A tier ranked by ``auc-top10``: PMO's AUC top-10 of the run's queries (``pmo/auc_top10``, at the end of
    the run; the queries are the method's own, there is no evaluation set to hold out)."""
    if headline == "auc-top10":
        return AUC_TOP10
    spec = load_spec(task)
    primary = f"eval/{spec.primary_judge}_mean"
    return primary if method in REFERENCE_METHODS or spec.drift_budget is None else primary + MATCHED


def studies(spec: LeaderboardSpec, methods: list[str], out: Path) -> list[tuple[str, TuneSpec]]:
    """The tuning stage's studies, as ``(label, TuneSpec)``: one per (task, method) with something to tune, the
    label the task; or with ``tune_on`` one per (method list, method) on the list's tuning tasks, the label the
    preset it exports (``<id>-<list>``)."""
    if spec.tune_on:
        units = [(spec.list_preset(group), tasks, next(t.id for t in spec.tasks if t.methods == group))
                 for group, tasks in spec.tune_on]
    else:
        units = [(task, (task,), task) for task in spec.task_ids]
    found = []
    for label, tasks, member in units:
        for method in spec.task_methods(member, methods):
            params = tune_params(method)
            if params == ():
                continue
            found.append((label, TuneSpec(
                task=tasks[0], also_on=tasks[1:], method=method, n_trials=spec.trials, params=params,
                objectives=(tuning_objective(tasks[0], method, spec.headline),), budget=spec.budget_for(tasks[0]),
                seed=TUNING_SEED, eval_fractions=spec.eval_fractions, output_root=str(out),
                # the reward scale exists on the methods that weigh a reward against a KL term
                overrides=(("reward_norm", "running"),) if _has_field(method, "reward_norm") else (),
                preset_name=label if spec.tune_on else None,
                storage=str(out / "journals" / f"{method}--{label}.log"))))
    return found


def tuning_folder(spec: LeaderboardSpec) -> Path:
    """The studies' default folder: ``results/leaderboard/tuning`` (shared by the tiers whose presets are per task),
    or ``tuning-<name>`` for a tier tuned by ``tune_on`` (its presets are its own)."""
    return RESULTS / ("tuning" if not spec.tune_on else f"tuning-{spec.name}")


def tune(spec: LeaderboardSpec, methods: list[str], out: Path, workers: int) -> Path:
    """The tuning stage (resumable): the studies of ``studies``; writes ``tuning.csv`` and ``tuning.md`` in ``out``.
    Returns the markdown summary's path."""
    import optuna  # optional-weight: only the tuning stage needs it

    rows = []
    start = time.perf_counter()
    (out / "journals").mkdir(parents=True, exist_ok=True)
    for label, study in studies(spec, methods, out):
        tuner = Tuner(study)
        began = time.perf_counter()
        # resumable: trials left RUNNING by a killed stage are stale (no other tuner shares the journal)
        report = tuner.tune(workers, retry_interrupted=True)
        loaded = optuna.load_study(study_name=tuner.study_name, storage=tuner.storage())
        trials = loaded.get_trials(deepcopy=False)
        trial_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                      if t.datetime_complete is not None and t.datetime_start is not None)
        best = loaded.best_trial
        tuner.export(loaded)
        rows.append({"task": label, "method": study.method, "objective": tuner.metrics[0], "trials": len(trials),
                     "pruned": report.states.get("PRUNED", 0), "failed": report.states.get("FAIL", 0),
                     "best": best.value, "best_trial": best.number,
                     "params": json.dumps(best.params, sort_keys=True), "cpu_s": round(trial_s, 1),
                     "wall_s": round(time.perf_counter() - began, 1)})
        print(f"{label} {study.method}: best {best.value:.5g} (trial {best.number}) {best.params}; "
              f"{report.states} {trial_s:.0f} trial-s", flush=True)
    table = pd.DataFrame(rows)
    if (out / "tuning.csv").exists():  # a stage of some tasks keeps every other study's row
        kept = pd.read_csv(out / "tuning.csv")
        done = set(zip(table.task, table.method)) if len(table) else set()
        kept = kept[[(t, m) not in done for t, m in zip(kept.task, kept.method)]]
        table = pd.concat([kept, table], ignore_index=True).sort_values(["task", "method"], ignore_index=True)
    atomic_write_text(out / "tuning.csv", table.to_csv(index=False))
    return write_tuning_summary(spec, table, out, time.perf_counter() - start, workers)


def _has_field(method: str, name: str) -> bool:
    return name in {f.name for f in fields(METHODS.load(method).Config)}


def write_tuning_summary(spec: LeaderboardSpec, table, out: Path, wall: float, workers: int, machine: str = "") -> Path:
    """``tuning.md``: generated from ``tuning.csv`` (never edited by hand); ``machine``: what else the machine ran."""
    if spec.tune_on:
        how = ("one study per (method list, method) by PMO's protocol (each method tuned once on its list's "
               f"tuning tasks, the objective the mean of {spec.headline} over them: "
               + "; ".join(f"{g}: {', '.join(t)}" for g, t in spec.tune_on)
               + "), best trials exported to `baselines/<method>/tuned/<spec id>-<list>.yaml`, the preset of every "
               "run of the list")
        lines = ["# Tuning of the leaderboard presets", "",
                 f"Written by `benchsuite leaderboard tune --tier {spec.name}` (spec {spec.id}): {spec.trials} Optuna "
                 f"trials (TPE, no pruning) per study, {how}; tuning seed {TUNING_SEED} (never a reported seed), "
                 f"{spec.budget} queries per trial and task. Search dimensions: `Method.tune_params` of each method. "
                 "Journals in `journals/`.", ""]
    else:
        lines = ["# Tuning of the leaderboard presets", "",
                 f"Written by `benchsuite leaderboard tune --tier {spec.name}` (spec {spec.id}): {spec.trials} Optuna "
                 f"trials (TPE, median pruning) per (task, method), tuning seed {TUNING_SEED}, {spec.budget} "
                 f"queries per trial, evaluations at {list(spec.eval_fractions)} of the budget. Objective per "
                 "task, read on the card's selection set: the headline at matched drift (path KL within the card's "
                 "drift budget and its judges within their tolerance), at full budget for a method that fine-tunes "
                 "nothing. Search dimensions: `Method.tune_params` of each method. Best trials exported to "
                 "`baselines/<method>/tuned/<task>.yaml`; journals in `journals/`.", ""]
    lines += [f"Cost: {table.cpu_s.sum() / 60:.1f} trial-minutes in all (the summed wall time of the single-threaded "
             f"trial processes), the last stage {wall / 60:.1f} min wall with {workers} workers"
             + (f"; {machine}" if machine else "") + ".", "",
             "| task | method | objective | trials | pruned | failed | best | best parameters | trial s |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.task} | {r.method} | {r.objective} | {r.trials} | {r.pruned} | {r.failed} | {r.best:.5g} | "
              f"{r.params} | {r.cpu_s:.0f} |" for r in table.itertuples()]
    path = out / "tuning.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ---- runs -------------------------------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its joined children (the pool's workers)."""
    return sum(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def check_clean(allow_dirty: bool) -> str:
    """The source commit; a ``BenchsuiteError`` (exit 2) when the tree has uncommitted changes and
    ``allow_dirty`` is false: a committed table must regenerate from a commit."""
    commit = current_commit()
    if commit.endswith(DIRTY) and not allow_dirty:
        raise BenchsuiteError(f"the source tree has uncommitted changes ({commit}): commit them first, so that the "
                              "tables regenerate from a commit, or pass --allow-dirty (the stage's record says so)")
    return commit


def run_configs(spec: LeaderboardSpec, methods: list[str], seed: int, out: Path, tasks: list[str] | None = None):
    """The run configs of one seed: every task of the tier that has the seed, times ``methods``."""

    return [spec.config(task, method, seed, out)
            for task in (tasks or spec.task_ids) if seed in spec.seeds(task)
            for method in spec.task_methods(task, methods)]


def run(spec: LeaderboardSpec, methods: list[str], out: Path, workers: int, backend: str = "local",
        allow_dirty: bool = False, tasks: list[str] | None = None) -> dict[str, Any]:
    """The run stage (resumable), seed-major; returns its record, also appended to ``<out>/suite.json``."""

    commit = check_clean(allow_dirty)
    start, cpu_before = time.perf_counter(), cpu_seconds()
    done = [0]

    def progress(o) -> None:
        done[0] += 1
        note = o.error or f"{o.final.get('cost/wall_s', math.nan):.0f} s"
        print(f"[{done[0]}] {o.config.task} {o.config.method} seed {o.config.seed}: {o.status} ({o.before}) {note}",
              flush=True)

    outcomes = []
    for seed in range(max(t.seeds for t in spec.tasks)):
        configs = run_configs(spec, methods, seed, out, tasks)
        if configs:
            outcomes += run_many(configs, f"{spec.id}-seed{seed}", workers=workers, on_outcome=progress,
                                 backend=backend)
    stage = {"spec": spec.id, "tasks": tasks or spec.task_ids, "runs": len(outcomes),
             "failed": sum(o.status != "FINISHED" for o in outcomes),
             "ran": sum(o.before != "finished" for o in outcomes), "wall_s": round(time.perf_counter() - start, 3),
             "cpu_s": round(cpu_seconds() - cpu_before, 3), "workers": workers, "commit": commit}
    log = out / "suite.json"  # one entry per run stage (a tier may be run in parts, e.g. by task)
    stages = json.loads(log.read_text()) if log.exists() else []
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(log, json.dumps([*stages, stage], indent=1) + "\n")
    print(f"{spec.id}: {stage['runs']} runs, {stage['failed']} failed, wall {stage['wall_s'] / 60:.1f} min with "
          f"{workers} workers, {stage['cpu_s'] / 60:.1f} CPU-minutes")
    return stage


def report(spec: LeaderboardSpec, methods: list[str], out: Path, allow_dirty: bool = False) -> dict[str, Any]:
    """The tier's report from the run folders in ``<out>/runs``: the whole seeds the spec fixes, the tier's methods
    only; plus ``cost.md``. Refused (``report.DirtyTreeError``) when a run or the source tree has uncommitted
    changes, unless ``allow_dirty`` (the report is then marked)."""
    import pandas as pd

    if spec.headline == "auc-top10":
        return report_bbo(spec, methods, out, allow_dirty)
    tidy = load_runs(out, tasks=spec.task_ids)
    seeds = pd.Series([s in spec.seeds(t) for t, s in zip(tidy["task"], tidy["seed"])], index=tidy.index)
    keep = tidy["method"].isin(methods) & seeds
    tidy = tidy[keep]
    if tidy.empty:
        raise BenchsuiteError(f"no finished runs of {spec.id} in {out / 'runs'}; run 'benchsuite leaderboard run "
                              f"--tier {spec.name}' first")
    grids = {task: {m: png for m, png in by_method.items() if m in methods}
             for task, by_method in final_grids(out, tasks=spec.task_ids).items()}
    references = {t: load_spec(t).reference_score for t in spec.task_ids if load_spec(t).reference_score is not None}
    result = write_report(tidy, out, grids=grids, reference_scores=references, allow_dirty=allow_dirty,
                          tree_commit=current_commit())
    atomic_write_text(out / "cost.md", cost_markdown(tidy, out))
    return result


def report_bbo(spec: LeaderboardSpec, methods: list[str], out: Path, allow_dirty: bool = False) -> dict[str, Any]:
    """The report of a tier ranked by ``auc-top10`` (``benchsuite.report.bbo``): AUC top-10 per PMO oracle beside
    PMO's published values, holo-bench's numbers on the Ehrlich cards, top-k curves; plus ``cost.md``. The whole
    seeds the spec fixes and each task's methods only; refused on a dirty run or tree unless ``allow_dirty``."""
    per_run, curves = read_bbo_runs(out, tasks=spec.task_ids)
    if per_run.empty:
        raise BenchsuiteError(f"no finished runs of {spec.id} in {out / 'runs'}; run 'benchsuite leaderboard run "
                              f"--tier {spec.name}' first")

    def wanted(frame):
        keep = [s in spec.seeds(t) and m in spec.task_methods(t, methods)
                for t, m, s in zip(frame["task"], frame["method"], frame["seed"])]
        return frame[np.asarray(keep, dtype=bool)]

    per_run, curves = wanted(per_run), wanted(curves)
    dirty = sorted({c for c in per_run["commit"] if str(c).endswith(DIRTY)} | (
        {current_commit()} if current_commit().endswith(DIRTY) else set()))
    if dirty and not allow_dirty:
        raise BenchsuiteError(f"refusing to publish a report made from an uncommitted tree ({', '.join(dirty)}): "
                              "commit the changes (and rerun the runs made from them), or pass --allow-dirty")
    budgets = sorted({spec.budget_for(t) for t in spec.task_ids})
    result = write_bbo_report(per_run, curves, out, methods, title=spec.id + (" (uncommitted tree)" if dirty else ""),
                              budget=" or ".join(f"{b:,}" for b in budgets))
    walls = per_run.rename(columns={"wall_time_s": "value"}).assign(metric="wall_time_s")
    atomic_write_text(out / "cost.md", cost_markdown(walls, out))
    return result


def cost_markdown(tidy, out: Path) -> str:
    """``cost.md``: each (task, method)'s run time, and every run stage of ``suite.json``."""
    walls = tidy[tidy["metric"] == "wall_time_s"].groupby(["task", "method"])["value"]
    lines = ["# Cost of the leaderboard", "",
             "Per (task, method): each run's own wall time in its single-threaded worker, from the report's "
             "`wall_time_s`.", "", "| task | method | runs | mean s/run | total s |", "|---|---|---|---|---|"]
    lines += [f"| {t} | {m} | {v.count()} | {v.mean():.0f} | {v.sum():.0f} |" for (t, m), v in walls]
    lines.append(f"\ntotal run time {walls.sum().sum() / 60:.1f} min (sum over runs)")
    if (out / "suite.json").exists():
        stages = json.loads((out / "suite.json").read_text())
        lines += ["", "Run stages, oldest first (wall time depends on what else the machine ran; the workers' CPU "
                  "time does not):", "", "| commit | runs executed / in stage | failed | workers | wall min | CPU min |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {s['commit'][:12]}{' (dirty)' if s['commit'].endswith(DIRTY) else ''} | {s['ran']} / "
                  f"{s['runs']} | {s['failed']} | {s['workers']} | {s['wall_s'] / 60:.1f} | {s['cpu_s'] / 60:.1f} |"
                  for s in stages]
    return "\n".join(lines) + "\n"


# ---- verify -----------------------------------------------------------------------------------------------------
def committed_values(spec: LeaderboardSpec, out: Path) -> Path:
    """The committed per-run file that ``verify`` compares with: ``per_run.csv`` for a bbo tier (its report's,
    ``benchsuite.report.bbo``), ``per_seed.csv`` for every other tier."""
    return out / ("per_run.csv" if spec.headline == "auc-top10" else "per_seed.csv")


def verify(spec: LeaderboardSpec, out: Path, scratch: Path, rtol: float = 1e-6) -> list[str]:
    """Rerun the spec's verify slice in ``scratch`` and compare every value of its rows with the committed file
    (``committed_values``). Returns the differences (empty: the committed tables still regenerate)."""

    bbo = spec.headline == "auc-top10"
    committed_path = committed_values(spec, out)
    if not committed_path.is_file():
        raise BenchsuiteError(f"no committed {committed_path}; run 'benchsuite leaderboard run --tier {spec.name}'")
    if not spec.verify:
        raise ConfigError(f"{spec.source}: the spec names no verify runs")
    committed = pd.read_csv(committed_path)

    for v in spec.verify:
        run_one(spec.config(v.task, v.method, v.seed, scratch))
    if bbo:
        fresh = read_bbo_runs(scratch)[0]
    else:
        tidy = load_runs(scratch, tasks=sorted({v.task for v in spec.verify}))
        fresh = run_values(tidy, {t: report_task(t) for t in set(tidy["task"])})
    problems = []
    for v in spec.verify:
        new = fresh[(fresh.task == v.task) & (fresh.method == v.method) & (fresh.seed == v.seed)]
        old = committed[(committed.task == v.task) & (committed.method == v.method) & (committed.seed == v.seed)]
        if old.empty or new.empty:
            problems.append(f"{v.task} {v.method} seed {v.seed}: {'no committed row' if old.empty else 'no rerun'}")
            continue
        for column in sorted(set(new.columns) & set(old.columns) - {"task", "method", "seed", "commit"}):
            if any(word in column for word in MACHINE_DEPENDENT):
                continue
            a, b = new[column].iloc[0], old[column].iloc[0]
            if isinstance(a, str) or isinstance(b, str):
                continue
            if not (np.isnan(a) and np.isnan(b)) and not np.isclose(a, b, rtol=rtol, atol=1e-12):
                problems.append(f"{v.task} {v.method} seed {v.seed}: {column} committed {b:.9g}, rerun {a:.9g}")
    return problems


# ---- command line -----------------------------------------------------------------------------------------------
def main(args) -> int:
    """``benchsuite leaderboard <stage>`` (see ``cli.build_parser``)."""
    base = load_leaderboard(args.tier)
    spec = with_budget(base, getattr(args, "budget", None))
    methods = resolve_methods(args.methods) if args.methods else spec.method_names()
    if spec.groups:
        orphans = [m for m in methods if not any(spec.task_methods(t, [m]) for t in spec.task_ids)]
        if orphans:
            raise ConfigError(f"--methods: {', '.join(orphans)} in none of {spec.id}'s method lists "
                              f"({', '.join(g for g, _ in spec.groups)}); add it to a list in {spec.source}")
    out = Path(args.out) if args.out else report_folder(spec, base)
    if args.stage == "show":
        print(describe(spec, methods, out))
        return 0
    if args.stage == "tune":
        path = tune(spec, methods, Path(args.tuning_out) if args.tuning_out else tuning_folder(spec), args.workers)
        print(path.read_text())
        return 0
    if args.stage == "run":
        tasks = list(args.tasks) if args.tasks else None
        unknown = sorted(set(tasks or ()) - set(spec.task_ids))
        if unknown:
            raise ConfigError(f"--tasks: {', '.join(unknown)} not in {spec.id} (its tasks: {', '.join(spec.task_ids)})")
        stage = run(spec, methods, out, args.workers, args.backend, args.allow_dirty, tasks)
        if stage["failed"]:
            print(f"{stage['failed']} runs failed; the report waits for them: run the stage again")
            return 1
        if tasks:
            print(f"ran {', '.join(tasks)}; 'benchsuite leaderboard report --tier {spec.name}' once every task has run")
            return 0
    result = report(spec, methods, out, args.allow_dirty) if args.stage in ("run", "report") else None
    if result is not None:
        print((out / ("bbo.md" if spec.headline == "auc-top10" else "leaderboard.md")).read_text())
        print("figures:", *[str(p) for p in result["figures"]], sep="\n  ")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        problems = verify(spec, out, Path(scratch))
    if problems:
        print(f"{spec.id}: {len(problems)} committed values do not regenerate:", *problems, sep="\n  ")
        return 1
    print(f"{spec.id}: the verify slice ({len(spec.verify)} runs) regenerates {committed_values(spec, out)} exactly")
    return 0


def describe(spec: LeaderboardSpec, methods: list[str], out: Path) -> str:
    """What ``leaderboard show`` prints: the spec as a reader checks it before a run."""
    budget = "each card's default_budget" if spec.budget is None else spec.budget
    lines = [f"{spec.id}: {spec.description}", f"  spec: {spec.source}", f"  report folder: {out}",
             f"  headline: {spec.headline}",
             f"  queries per run: {budget}; evaluations at {list(spec.eval_fractions)} of the budget",
             f"  methods: {', '.join(methods)}"]
    lines += [f"    list {g}: {', '.join(spec.task_methods(t, methods))}" for g, _ in spec.groups
              for t in [next(t.id for t in spec.tasks if t.methods == g)]]
    lines.append("  tasks (seeds fixed before any run):")
    lines += [f"    {t.id}: {t.seeds} seeds" + (f", methods {t.methods}" if t.methods else "") for t in spec.tasks]
    runs = sum(t.seeds * len(spec.task_methods(t.id, methods)) for t in spec.tasks)
    if spec.tune_on:
        lines.append(f"  runs: {runs}; tuning: {spec.trials} trials per (method list, method) with something to tune, "
                     "on the list's tuning tasks (PMO's protocol; the mean objective over them):")
        lines += [f"    {g}: {', '.join(t)} -> preset {spec.list_preset(g)}" for g, t in spec.tune_on]
    else:
        lines.append(f"  runs: {runs}; tuning: {spec.trials} trials per (task, method) with something to tune")
    lines += [f"    {m}: {', '.join(p) if p else 'every field of its search space'}"
              for m in methods if (p := tune_params(m)) != ()]
    if spec.changes:
        lines.append(f"  changes: {spec.changes}")
    return "\n".join(lines)
