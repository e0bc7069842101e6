"""Command line: ``benchsuite list``, ``show``, ``run``, ``ask``, ``tell``, ``weights``, ``sweep``, ``tune`` and
``report`` (``benchsuite --help`` lists them with one line each).

User errors (unknown names, bad values, malformed files, missing weights) print one line,
``benchsuite: error: <what to do>``, exit with code 2 and write nothing: every check runs before the first file
or MLflow run is created. A run folder that another process is writing is refused the same way. A write that fails
on the way (a full disk, a quota, a read-only file system, a folder removed meanwhile) prints one such line naming
the path and what to do, and exits with code 1. A closed output pipe (``benchsuite list | head``) ends the command
quietly with 141, as a process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import textwrap
from pathlib import Path

from ._version import __version__
from .errors import BenchsuiteError, choices_listing, clip, clip_repr
from .files import describe_os_error
from .registry import BACKBONES, METHODS, check_plugins, plugins


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise BenchsuiteError(f"{message} (see '{self.prog} --help')")


def _nonneg_int(name: str, seed: bool = False):
    """An integer option from 0 to ``MAX_INTEGER`` (10**9), or to ``MAX_SEED`` (2**32 - 1) for a seed."""

    def parse(text: str) -> int:
        # on use: the CLI starts without torch, mlflow or optuna
        from .tasks import MAX_INTEGER, MAX_SEED

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {value}")
        if value > (MAX_SEED if seed else MAX_INTEGER):
            raise argparse.ArgumentTypeError(f"{name} must be at most {'2**32 - 1' if seed else '10**9'}, got {value}")
        return value

    return parse


def _positive_int(name: str):
    def parse(text: str) -> int:
        value = _nonneg_int(name)(text)
        if value == 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got 0")
        return value

    return parse


def _names(name: str):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(","))
        if not all(items):
            raise argparse.ArgumentTypeError(f"{name} must be a comma-separated list, got {text!r}")
        return items

    return parse


def _seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"``, ``"0-4"`` or a mix (``"0-2,7"``) -> seeds."""
    seeds: list[int] = []
    for item in text.split(","):
        low, dash, high = item.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--seeds must look like 0,1,2 or 0-4, got {text!r}") from None
        if first < 0 or last < first:
            raise argparse.ArgumentTypeError(f"--seeds range {item.strip()!r} must be non-negative and increasing")
        _nonneg_int("--seeds", seed=True)(str(last))
        if last - first >= 10_000:
            raise argparse.ArgumentTypeError(f"--seeds range {item.strip()!r} holds more than 10000 seeds")
        seeds.extend(range(first, last + 1))
    return tuple(seeds)


def _add_output_args(p: argparse.ArgumentParser, output_default: str | None = "results") -> None:
    p.add_argument("--output", default=output_default, help="root folder for run outputs (default: results)")
    p.add_argument("--mlflow-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///<output>/mlflow/mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="log to the run folders only")


MAX_SECONDS = 10**6
"""The longest wait an option may ask for (about 11.6 days): longer ones overflow the sleep and thread timeouts."""


def _positive_float(name: str, allow_zero: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0")
        if value > MAX_SECONDS:
            raise argparse.ArgumentTypeError(f"{name} must be at most 10**6 seconds, got {text}")
        return value

    return parse


DESCRIPTION = "Benchmark and black-box optimization suite for reward fine-tuning of diffusion models."


def version() -> str:
    """The installed package's version (``importlib.metadata``), else the source tree's."""
    import importlib.metadata

    try:
        return importlib.metadata.version("benchsuite")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``benchsuite`` command's parser; each subcommand's arguments are added by its ``_add_*_parser``."""
    parser = _Parser(prog="benchsuite", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"benchsuite {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    _add_list_parser(sub)
    _add_show_parser(sub)
    _add_run_parser(sub)
    _add_ask_tell_parsers(sub)
    _add_weights_parser(sub)
    _add_sweep_parser(sub)
    _add_tune_parser(sub)
    _add_leaderboard_parser(sub)
    _add_report_parser(sub)
    return parser


def _add_list_parser(sub) -> None:
    """``list``: the registered tasks and methods."""
    ls = sub.add_parser("list", help="list tasks and methods")
    ls.add_argument("what", nargs="?", choices=["tasks", "methods", "all"], default="all")


def _add_show_parser(sub) -> None:
    """``show``: a method's settings or a task's card."""
    sh = sub.add_parser("show", help="a method's settings (types, defaults, presets, docs) or a task's card")
    sh.add_argument("name", help="a method or task name (see 'benchsuite list')")


def _add_run_parser(sub) -> None:
    """``run``: one method on one task under a query budget."""
    r = sub.add_parser("run", help="fine-tune one method on one task under a query budget")
    r.add_argument("--task", help="task id (see 'benchsuite list tasks'); required without --config")
    r.add_argument("--method", help="method name (see 'benchsuite list methods'); required without --config")
    r.add_argument("--budget", type=_nonneg_int("--budget"), default=None,
                   help="oracle queries (default: the task card's default_budget)")
    r.add_argument("--seed", type=_nonneg_int("--seed", seed=True), default=None, help="training seed (default 0)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="method.FIELD=VALUE",
                   help="override a method setting or the task's sampler / online settings, repeatable "
                        "(e.g. --set method.lr=1e-4 --set task.sampler.num_steps=50)")
    r.add_argument("--config", metavar="FILE", default=None,
                   help="run the config in FILE (written by --print-config; same run id as the flags that wrote it) "
                        "instead of --task/--method/--budget/--seed/--set/--threads/--device")
    r.add_argument("--print-config", action="store_true",
                   help="print the fully resolved run config as YAML and exit without running")
    _add_output_args(r, output_default=None)
    r.add_argument("--threads", type=_positive_int("--threads"), default=None,
                   help="torch CPU threads (default 1: on 2 shared cores 1 thread was measured faster than 2)")
    r.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:1, ...; default cpu)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    again = r.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue this run from its last checkpoint")
    again.add_argument("--restart", action="store_true", help="delete this run's folder and start over")
    r.add_argument("--checkpoint-every", type=_positive_float("--checkpoint-every", allow_zero=True), default=None,
                   metavar="SECONDS", help="seconds between checkpoints besides the evaluation points (default 30; "
                                           "0: after every step); a resume replays the steps since the last one")
    r.add_argument("--oracle-retries", type=_nonneg_int("--oracle-retries"), default=2,
                   help="extra tries of a failed oracle call (exception, timeout, NaN/inf); default 2")
    r.add_argument("--oracle-backoff", type=_positive_float("--oracle-backoff", allow_zero=True), default=1.0,
                   metavar="SECONDS",
                   help="wait before retry i is SECONDS * 2**i (default 1)")
    r.add_argument("--oracle-timeout", type=_positive_float("--oracle-timeout"), default=None, metavar="SECONDS",
                   help="an oracle call taking longer counts as failed (default: wait)")


def _add_ask_tell_parsers(sub) -> None:
    """``ask`` and ``tell``: the ask/tell loop for an oracle outside Python."""
    a = sub.add_parser("ask", help="ask/tell: write the next batch of candidates for an oracle outside Python")
    a.add_argument("--state", required=True, metavar="FOLDER", help="the session folder (created on the first ask)")
    a.add_argument("--task", help="task id (first ask only: starts the session)")
    a.add_argument("--method", help="method name (first ask only)")
    a.add_argument("--budget", type=_positive_int("--budget"), default=None, help="oracle queries (first ask only)")
    a.add_argument("--seed", type=_nonneg_int("--seed", seed=True), default=0, help="training seed (first ask only)")
    a.add_argument("--set", dest="overrides", action="append", default=[], metavar="method.FIELD=VALUE",
                   help="override a method setting or task.sampler.ARG / task.online.FIELD (first ask only), "
                        "repeatable")
    a.add_argument("--format", choices=["csv", "json"], default="csv", help="candidate file format (default csv)")
    tl = sub.add_parser("tell", help="ask/tell: give the scores of the pending batch and continue the method")
    tl.add_argument("--state", required=True, metavar="FOLDER", help="the session folder")
    tl.add_argument("scores", help="the ask file with its score column filled in (CSV or JSON)")


def _add_weights_parser(sub) -> None:
    """``weights``: the model files of the real-weights rewards."""
    w = sub.add_parser("weights", help="list the model files the real-weights rewards need, or fetch them")
    w.add_argument("action", choices=["list", "fetch"], help="list: where each file is looked for; fetch: make "
                   "the named files local (downloads only with --allow-download)")
    w.add_argument("names", nargs="*", help="weights names (see 'benchsuite weights list')")
    w.add_argument("--allow-download", action="store_true",
                   help="download missing files from the Hugging Face hub into the weights folder")


def _add_sweep_parser(sub) -> None:
    """``sweep``: tasks x methods x seeds under equal budgets."""
    sw = sub.add_parser("sweep", help="run tasks x methods x seeds under equal budgets, in parallel, resumably")
    sw.add_argument("file", nargs="?", help="sweep file (YAML: name, tasks, methods, seeds, budget); flags given "
                                            "with it override its entries")
    sw.add_argument("--tasks", type=_names("--tasks"), help="comma-separated task ids")
    sw.add_argument("--methods", type=_names("--methods"), help="comma-separated method names")
    sw.add_argument("--seeds", type=_seeds, help="training seeds: 0,1,2 or 0-4 (default without a file: 0)")
    sw.add_argument("--budget", type=_nonneg_int("--budget"), default=None,
                    help="oracle queries of every run (default: each task card's default_budget)")
    sw.add_argument("--name", default=None,
                    help="sweep name, the key of its MLflow parent runs (default: the file name, else a hash of "
                         "the grid)")
    sw.add_argument("--workers", type=_positive_int("--workers"), default=1,
                    help="parallel worker processes (default 1; each run uses one torch thread)")
    sw.add_argument("--backend", choices=["local", "ray"], default="local",
                    help="where the runs execute: local worker processes (default), or the tasks of a Ray cluster "
                         "(pip install 'benchsuite[ray]'; one CPU per run, a GPU per Stable Diffusion run)")
    sw.add_argument("--address", default=None,
                    help="with --backend ray: the cluster's head (host:port, ray://host:10001, or auto); default "
                         "$RAY_ADDRESS, else a local cluster for this sweep")
    _add_output_args(sw)


def _add_tune_parser(sub) -> None:
    """``tune``: a method's hyperparameters on a task, with Optuna."""
    t = sub.add_parser("tune", help="tune a method's hyperparameters on a task with Optuna")
    t.add_argument("--task", required=True, help="task id (see 'benchsuite list tasks')")
    t.add_argument("--method", required=True, help="method name (see 'benchsuite list methods')")
    t.add_argument("--trials", type=_positive_int("--trials"), default=16,
                   help="trials of the study in total, over all workers and machines (default 16)")
    t.add_argument("--params", type=_names("--params"), default=None,
                   help="comma-separated fields of baselines/<method>/search_space.yaml to tune (default: all)")
    t.add_argument("--objective", dest="objectives", action="append", default=None, metavar="METRIC",
                   help="metric to maximise, repeatable; two or more make a multi-objective study with a Pareto front."
                        " reward = eval/<gold, else primary judge>_mean (default), matched = that reward at matched"
                        " drift (best evaluation within the card's drift_budget), found = query/top10_mean, diversity"
                        " = eval/diversity, or an eval/ metric")
    t.add_argument("--budget", type=_nonneg_int("--budget"), default=None,
                   help="oracle queries of every trial (default: the task card's default_budget)")
    t.add_argument("--seed", type=_nonneg_int("--seed", seed=True), default=1000,
                   help="training seed of every trial (default 1000, apart from the seeds sweeps report)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="method.FIELD=VALUE",
                   help="fix a method setting for every trial, repeatable")
    t.add_argument("--sampler", choices=["tpe", "gp"], default="tpe", help="Optuna sampler (default tpe)")
    t.add_argument("--sampler-seed", type=_nonneg_int("--sampler-seed", seed=True), default=0,
                   help="seed of the samplers (default 0); give each machine joining a study its own")
    t.add_argument("--no-prune", action="store_true", help="do not prune single-objective trials")
    t.add_argument("--storage", default=None,
                   help="postgresql+psycopg://user:password@host/db for many machines, or a journal file path "
                        "(default: <output>/optuna/<study>.log)")
    t.add_argument("--study-name", default=None, help="default: <method>--<task>--<objective metrics>")
    t.add_argument("--workers", type=_positive_int("--workers"), default=1,
                   help="worker processes on this machine (default 1)")
    t.add_argument("--heartbeat-interval", type=_positive_int("--heartbeat-interval"), default=30, metavar="SECONDS",
                   help="database storage: a trial without a heartbeat for twice this long is failed and retried "
                        "(default 30)")
    t.add_argument("--retry-interrupted", action="store_true",
                   help="first queue again the trials of a killed or interrupted tune (only when no other worker runs)")
    export = t.add_mutually_exclusive_group()
    export.add_argument("--export-trial", type=_nonneg_int("--export-trial"), default=None, metavar="N",
                        help="export trial N (required to export from a multi-objective study)")
    export.add_argument("--no-export", action="store_true",
                        help="do not write baselines/<method>/tuned/<task>.yaml")
    _add_output_args(t)


def _add_leaderboard_parser(sub) -> None:
    """``leaderboard``: a tier's stages from its spec."""
    lb = sub.add_parser("leaderboard", help="a leaderboard tier from its spec: tune, run, report, verify, show")
    lb.add_argument("stage", choices=["tune", "run", "report", "verify", "show"],
                    help="tune: the presets; run: every run and the report; report: the report from the run folders; "
                    "verify: rerun the spec's slice and compare with the committed per_seed.csv; show: the spec")
    lb.add_argument("--tier", default="core", help="a spec of tasks/leaderboards/: a name (core, full: its newest "
                    "version) or an id (core-v1); default core")
    lb.add_argument("--methods", type=_names("--methods"), default=None,
                    help="comma-separated methods (default: the spec's); 'builtin' / 'registered' stand for every "
                    "built-in / registered method that joins leaderboards (registered: installed plugins' included)")
    lb.add_argument("--tasks", type=_names("--tasks"), default=None,
                    help="run stage: only these of the tier's tasks (a tier run in parts; the report takes them all)")
    lb.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    lb.add_argument("--budget", default=None,
                    help="oracle queries per run instead of the spec's: N, or 'default' for every card's own "
                    "default_budget (PMO's 10,000 on the PMO cards; with --backend ray and more workers); the report "
                    "folder becomes results/leaderboard/<name>-budget<N> / -budget-default")
    lb.add_argument("--out", default=None, help="the tier's report folder (default results/leaderboard/<name>)")
    lb.add_argument("--tuning-out", default=None, help="the studies' folder (default results/leaderboard/tuning)")
    lb.add_argument("--backend", choices=["local", "ray"], default="local",
                    help="run stage: this machine's process pool or the Ray cluster at $RAY_ADDRESS")
    lb.add_argument("--allow-dirty", action="store_true",
                    help="run from a tree with uncommitted changes (the stage's record and cost.md say so)")


def _add_report_parser(sub) -> None:
    """``report``: the leaderboard and figures from finished runs."""
    rep = sub.add_parser("report", help="leaderboard (md/csv/tex) and paper figures from finished runs")
    rep.add_argument("--runs", default="results",
                     help="folder whose runs/ holds the run folders (default: results); ignored with --mlflow-uri")
    rep.add_argument("--mlflow-uri", default=None, help="read runs from this MLflow store instead of run folders")
    rep.add_argument("--tasks", type=_names("--tasks"), default=None,
                     help="comma-separated task ids (default: every task found; required with --mlflow-uri)")
    rep.add_argument("--out", default=None, help="where to write (default: results/report; with --rebuild, "
                     "the report folder itself)")
    rep.add_argument("--rebuild", default=None, metavar="REPORT_DIR",
                     help="regenerate a written report (e.g. results/leaderboard) from its own curves.csv, "
                     "report.json and grids/ alone: no run folders needed")
    rep.add_argument("--allow-dirty", action="store_true",
                     help="publish results of an uncommitted tree (runs whose commit ends in -dirty, or this "
                     "checkout with changes), marked as such; refused without it")


def _cmd_list(args) -> int:
    # on use: the CLI starts without torch, mlflow or optuna
    from .tasks import broken_cards, superseded_by, task_specs

    broken_plugins = check_plugins()  # imports every installed plugin now: the broken ones are one line each below
    if args.what in ("tasks", "all"):
        print("tasks:")
        specs = task_specs()
        for tid, spec in specs.items():
            newer = superseded_by(tid, specs)
            note = f"  [superseded by {newer}]" if newer else ""
            print(f"  {clip(tid, 64):32s} budget {spec.default_budget:>6d}  {clip(spec.description, 160)}{note}")
        for tid, problem in broken_cards().items():  # one line each: the others stay usable
            print(f"  {clip(tid, 64):32s} [does not load] {clip(' '.join(problem.split()), LISTED_PROBLEM_CHARS)}")
    if args.what in ("methods", "all"):
        print("methods:")
        for name in METHODS.names():
            plugin = METHODS.plugin(name)
            origin = f" (plugin: {plugin.distribution})" if plugin else ""
            print(textwrap.fill(first_paragraph(METHODS.load(name).__doc__) + origin, width=118,
                                break_on_hyphens=False, initial_indent=f"  {name:32s} ", subsequent_indent=" " * 35))
    if broken_plugins:
        print("plugins that do not load (the rest works without them):")
        for problem in broken_plugins:
            print(f"  {clip(' '.join(problem.split()), LISTED_PROBLEM_CHARS)}")
    return 0


LISTED_PROBLEM_CHARS = 400
"""Characters of a broken card's or plugin's problem that ``list`` prints (``benchsuite show <id>`` gives it whole)."""


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph (up to its first blank line) as one line."""
    return " ".join(inspect.cleandoc(doc or "").split("\n\n", 1)[0].split())


def _cmd_show(args) -> int:
    # on use: the CLI starts without torch, mlflow or optuna
    from .tasks import broken_cards, task_specs

    if args.name in METHODS.names():
        print(_show_method(args.name))
    elif args.name in task_specs() or args.name in broken_cards():
        print(_show_task(args.name))
    else:
        if any(p.name == args.name and p.group == METHODS.group for p in plugins()):
            METHODS.check(args.name)  # a broken plugin method: its own one-line problem
        raise BenchsuiteError(f"unknown name {clip_repr(args.name)}; choose a method "
                              f"({choices_listing(args.name, METHODS.names())}) or a task "
                              f"({choices_listing(args.name, list(task_specs()))})")
    return 0


def _wrap(text: str, indent: int, hang: int = 0) -> str:
    """``text`` on lines of at most 118 characters, indented by ``indent`` (continuation lines by ``indent + hang``)."""
    return textwrap.fill(" ".join(text.split()), width=118, initial_indent=" " * indent,
                         subsequent_indent=" " * (indent + hang), break_on_hyphens=False)


def _show_method(name: str) -> str:
    """Every config field of method ``name``: type, dataclass default, the preset values per backbone where they
    differ (``baselines/<method>/defaults.yaml``) and the field's docstring."""
    import dataclasses
    import typing

    # on use: the CLI starts without torch, mlflow or optuna
    from .config import build_method_config, field_docs, read_yaml
    from .tasks import data_dir, preset_file

    method_cls = METHODS.load(name)
    config_cls = method_cls.Config
    defaults_file = preset_file(name, "defaults.yaml")
    sections = (read_yaml(defaults_file, "preset") or {}) if defaults_file.exists() else {}
    presets = {}  # backbone -> resolved preset config (common, then the backbone's section)
    for backbone in [b for b in sections if b != "common"] or (["common"] if "common" in sections else []):
        layers = [(f"{defaults_file}[{s}]", sections[s]) for s in dict.fromkeys(("common", backbone)) if sections.get(s)]
        presets[backbone] = build_method_config(config_cls, layers)
    tuned = sorted(p.stem for p in (data_dir("baselines") / name / "tuned").glob("*.yaml"))
    lines = [_wrap(f"method {name}: {first_paragraph(method_cls.__doc__)}", 0, 2),
             _wrap(f"config {config_cls.__module__}.{config_cls.__qualname__}; presets {defaults_file}"
                   + (f"; tuned presets (baselines/{name}/tuned) for {', '.join(tuned)}" if tuned else ""), 2, 2),
             "fields:"]
    hints, docs = typing.get_type_hints(config_cls), field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        hint = hints[f.name]
        kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        lines.append(f"  {f.name}: {kind} = {f.default!r}")
        differ = {b: getattr(c, f.name) for b, c in presets.items() if getattr(c, f.name) != f.default}
        if differ:
            lines.append(_wrap("presets: " + ", ".join(f"{b} {v!r}" for b, v in differ.items()), 6))
        if f.name in docs:
            lines.append(_wrap(docs[f.name], 6))
    return "\n".join(lines)


def _show_task(task_id: str) -> str:
    """The settings of task ``task_id``'s card and the version that supersedes it, if any."""
    import dataclasses

    # on use: the CLI starts without torch, mlflow or optuna
    from .tasks import load_spec, superseded_by, task_specs

    spec = load_spec(task_id)  # a card that does not load: its one-line problem

    def reward(r) -> str:
        return f"{r.name} v{r.version}" + (f" {dict(r.kwargs)}" if r.kwargs else "")

    judges = [f"{label}: {reward(r)}" + (" (primary)" if label == spec.primary_judge else "")
              + (" (gold)" if label == spec.gold_judge else "") for label, r in spec.judges]
    newer = superseded_by(task_id, task_specs())
    rows = [
        ("card", spec.source), ("description", spec.description), ("backbone", spec.backbone),
        ("sampler", ", ".join(f"{k}={v}" for k, v in spec.sampler) or "the backbone's defaults"),
        ("oracle", reward(spec.oracle)), ("judges", "; ".join(judges)),
        ("conditions", f"train {_ids(spec.train_conditions)}; eval {_ids(spec.eval_conditions)}"
                       + (" (eval on training conditions allowed)" if spec.allow_eval_on_train_conditions else "")),
        ("eval", f"{spec.eval_samples_per_condition} samples per condition, seed {spec.eval_seed}"),
        ("default budget", f"{spec.default_budget} queries"),
        ("drift budget", "none (reported at full budget only)" if spec.drift_budget is None
         else f"path KL {spec.drift_budget:g} nats"
         + "".join(f", {j} at most {t:g} below the run's start" for j, t in spec.judge_tolerance)),
        ("reference score", "none" if spec.reference_score is None else f"{spec.reference_score:g}"),
        ("online rounds", "none" if spec.online is None
         else ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(spec.online).items())),
        ("changes", spec.changes or "none"),
        ("superseded by", newer or "none (current)"),
    ]
    return "\n".join([f"task {task_id}"] + [_wrap(f"{label}: {value}", 2, 4) for label, value in rows])


def _ids(ids) -> str:
    if ids is None:
        return "unconditional"
    if list(ids) == list(range(ids[0], ids[0] + len(ids))) and len(ids) > 3:
        return f"{ids[0]}..{ids[-1]} ({len(ids)})"
    return ", ".join(map(str, ids))


def _check_output(path: Path) -> None:
    """Fail early (before anything is written) if ``path`` cannot be created or written."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BenchsuiteError(f"output folder {path} is not writable; pass --output <writable folder>")


def _check_sampler_overrides(config) -> None:
    """Build the backbone of a run whose task overrides change sampler settings, so that a value it refuses
    (``num_steps=0``, ``eta=0``) is a one-line error before anything is written rather than a traceback in the run.
    The embedded backbones build in well under a second; Stable Diffusion (minutes to load) checks at run time."""
    if not any(key.startswith("sampler.") for key, _ in config.task_overrides):
        return

    spec = config.task_spec()
    if spec.backbone == "sd":
        return
    try:
        BACKBONES.make(spec.backbone, **dict(spec.sampler))
    except (ValueError, TypeError) as exc:
        settings = ", ".join(f"task.{key}={value}" for key, value in config.task_overrides)
        raise BenchsuiteError(f"backbone {spec.backbone!r} refuses {settings}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


_CONFIG_FLAGS = ("task", "method", "budget", "seed", "overrides", "threads", "device")


def _run_config(args):
    """The run's ``RunConfig``: from ``--config FILE`` or from the flags (validated, nothing written)."""
    # on use: the CLI starts without torch, mlflow or optuna
    from .config import parse_overrides, resolve, resolve_file

    if args.config:
        given = [f"--{'set' if name == 'overrides' else name}" for name in _CONFIG_FLAGS if getattr(args, name)
                 not in (None, [])]
        if given:
            raise BenchsuiteError(f"--config FILE holds the whole run config; drop {', '.join(given)} (or edit FILE)")
        return resolve_file(Path(args.config), output_root=args.output)
    if not (args.task and args.method):
        raise BenchsuiteError("run needs --task and --method (both are required), or --config FILE")
    method_overrides, task_overrides = parse_overrides(args.overrides, task=True)
    return resolve(args.task, args.method, seed=0 if args.seed is None else args.seed, budget=args.budget,
                   overrides=method_overrides, task_overrides=task_overrides, num_threads=args.threads or 1,
                   device=args.device or "cpu", output_root=args.output or "results")


def _cmd_run(args) -> int:
    config = _run_config(args)
    args.output = config.output_root
    _check_sampler_overrides(config)
    if args.print_config:
        # on use: the CLI starts without torch, mlflow or optuna
        from .config import config_yaml

        print(config_yaml(config), end="")
        return 0
    if config.device != "cpu":
        import torch

        try:
            torch.empty(1, device=config.device)
        except (RuntimeError, AssertionError) as exc:
            raise BenchsuiteError(f"device {config.device!r} is not usable here ({str(exc).splitlines()[0]})") from None
    output = Path(args.output)
    _check_output(output)
    # run() loads the task, weights and any checkpoint before it writes a file or opens the MLflow run.
    tracker = None
    tracking = _tracking(args)
    if tracking is not None:
        # on use: the CLI starts without torch, mlflow or optuna
        from .tracking import MlflowTracker

        uri = tracking[0]
        tracker = MlflowTracker(uri, artifact_root=Path(tracking[1]))

    # on use: the CLI starts without torch, mlflow or optuna
    from .runner import OracleOptions, run

    options = OracleOptions(args.oracle_retries, args.oracle_backoff, args.oracle_timeout)
    result = run(config, tracker=tracker, progress=not args.no_progress, resume=args.resume, restart=args.restart,
                 oracle_options=options,
                 **({} if args.checkpoint_every is None else {"checkpoint_every": args.checkpoint_every}))
    if not result.curve:  # a process other than rank 0 of an `accelerate launch`: rank 0 reports
        return 0
    print(format_summary(result))
    if tracker is not None:
        print(f"MLflow: experiment '{config.task}' in {uri}  (browse: mlflow ui --backend-store-uri {uri})")
    return 0


def _tracking(args) -> tuple[str, str] | None:
    """``(tracking_uri, artifact_root)`` of the MLflow store the command logs to, or None with --no-mlflow."""
    if args.no_mlflow:
        return None
    # on use: the CLI starts without torch, mlflow or optuna
    from .tracking import check_tracking_uri, default_tracking_uri

    output = Path(args.output)
    uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output / "mlflow")
    database = check_tracking_uri(uri)  # before any folder exists: a bad URI must leave nothing behind
    if database is not None:
        _check_output(database.parent)
    return uri, str((output / "mlflow" / "artifacts").resolve())


def _cmd_sweep(args) -> int:
    # on use: the CLI starts without torch, mlflow or optuna
    from .backends import make_backend
    from .sweep import SweepSpec, load_sweep_file, plan, sweep

    backend = make_backend(args.backend, args.workers, args.address)

    base = load_sweep_file(Path(args.file)) if args.file else None
    if base is None and not (args.tasks and args.methods):
        raise BenchsuiteError("sweep needs a sweep file or both --tasks and --methods")
    tasks = args.tasks or base.tasks
    methods = args.methods or base.methods
    seeds = args.seeds or (base.seeds if base else (0,))
    budget = args.budget if args.budget is not None else (base.budget if base else None)
    flags_changed_grid = base is not None and any(v is not None for v in (args.tasks, args.methods, args.seeds,
                                                                           args.budget))
    name = args.name or (base.name if base and not flags_changed_grid else
                         SweepSpec.default_name(tasks, methods, seeds, budget))
    spec = SweepSpec(name=name, tasks=tasks, methods=methods, seeds=seeds, budget=budget,
                     eval_fractions=base.eval_fractions if base else None)  # no flag changes the schedule
    configs = plan(spec, args.output)  # every name and budget is checked before anything is written
    _check_output(Path(args.output))
    tracking = _tracking(args)
    print(f"sweep {spec.name}: {len(configs)} runs ({len(tasks)} tasks x {len(methods)} methods x {len(seeds)} seeds), "
          f"{backend.describe()}", flush=True)

    def progress(outcome) -> None:
        cfg = outcome.config
        what = "skipped (finished)" if outcome.before == "finished" else outcome.status
        extra = f": {outcome.error}" if outcome.error else ""
        print(f"  {cfg.task} {cfg.method} seed {cfg.seed}: {what}{extra}", flush=True)

    outcomes = sweep(spec, args.output, workers=args.workers, tracking=tracking, on_outcome=progress, backend=backend)
    print(format_sweep(outcomes))
    if tracking is not None:
        print(f"MLflow: parent run 'sweep {spec.name}' in experiment(s) {', '.join(tasks)} of {tracking[0]}  "
              f"(browse: mlflow ui --backend-store-uri {tracking[0]})")
    return 0 if all(o.status == "FINISHED" for o in outcomes) else 1


def format_sweep(outcomes) -> str:
    """A plain-text table, one row per run: status, the primary judge's final mean, KL and diversity."""
    # on use: the CLI starts without torch, mlflow or optuna
    from .tasks import load_spec

    lines = [f"  {'task':26s} {'method':12s} {'seed':>4s} {'status':9s} {'reward':>10s} {'kl':>10s} {'vendi':>8s}"]
    for o in outcomes:
        cfg, final = o.config, o.final
        reward = final.get(f"eval/{load_spec(cfg.task).primary_judge}_mean")

        def num(value, width: int) -> str:
            return f"{value:{width}.4g}" if isinstance(value, int | float) else f"{'-':>{width}s}"

        lines.append(f"  {cfg.task:26s} {cfg.method:12s} {cfg.seed:4d} {o.status:9s} {num(reward, 10)} "
                     f"{num(final.get('eval/kl'), 10)} {num(final.get('eval/vendi'), 8)}")
    return "\n".join(lines)


def _cmd_tune(args) -> int:
    # on use: the CLI starts without torch, mlflow or optuna
    from .config import parse_overrides
    from .tuning import Tuner, TuneSpec

    overrides = parse_overrides(args.overrides)
    spec = TuneSpec(task=args.task, method=args.method, n_trials=args.trials, params=args.params,
                    objectives=tuple(args.objectives or ("reward",)), budget=args.budget, seed=args.seed,
                    sampler=args.sampler, sampler_seed=args.sampler_seed, prune=not args.no_prune,
                    overrides=tuple(sorted(overrides.items())), storage=args.storage, study_name=args.study_name,
                    output_root=args.output, heartbeat_interval=args.heartbeat_interval)
    tuner = Tuner(spec)  # names, search space, objectives and storage URL are checked before anything is written
    _check_output(Path(args.output))
    tracking = _tracking(args)
    print(f"study {tuner.study_name} in {tuner.storage_label}: {spec.n_trials} trials of {spec.method} on "
          f"{spec.task} ({tuner.base.budget} queries each), maximising {', '.join(tuner.metrics)}", flush=True)
    report = tuner.tune(args.workers, tracking, retry_interrupted=args.retry_interrupted)
    print(format_tune(report, tuner))
    if tracking is not None:
        print(f"MLflow: parent run 'study {tuner.study_name}' in experiment {spec.task} of {tracking[0]}  "
              f"(browse: mlflow ui --backend-store-uri {tracking[0]})")
    if report.complete and not args.no_export and (args.export_trial is not None or len(tuner.metrics) == 1):
        import optuna

        study = optuna.load_study(study_name=tuner.study_name, storage=tuner.storage())
        print(f"exported to {tuner.export(study, args.export_trial)}")
    elif report.complete and not args.no_export:
        print("to export one point of the front: rerun this command with --export-trial N")
    return 0 if report.complete else 1


def format_tune(report, tuner) -> str:
    """The study's state and its best trial or Pareto front as a plain-text table."""
    states = ", ".join(f"{name} {count}" for name, count in sorted(report.states.items()))
    lines = [f"{report.done}/{report.n_trials} trials done ({states})"]
    for index, code in report.dead_workers:
        lines.append(f"worker {index} exited with code {code}; its trial is retried once its heartbeat is stale")
    if not report.complete:
        lines.append("incomplete: other workers are still running, or a tune was killed or interrupted: rerun the "
                     "same command (add --retry-interrupted when no other worker runs)")
    if report.best:
        names = [d.name for d in tuner.space]
        title = "best trial" if len(report.metrics) == 1 else f"Pareto front ({len(report.best)} trials)"
        lines.append(f"{title}:")
        lines.append("  " + " ".join(f"{h:>14s}" for h in ["trial", *report.metrics, *names]))
        for trial in report.best:
            cells = [str(trial.number), *(f"{v:.5g}" for v in trial.values),
                     *(f"{trial.params[n]:.4g}" if isinstance(trial.params.get(n), float) else str(trial.params.get(n))
                       for n in names)]
            lines.append("  " + " ".join(f"{c:>14s}" for c in cells))
    return "\n".join(lines)


def format_summary(result) -> str:
    """What a finished run prints: each judge from the first evaluation (the pretrained model) to the last, the path
    KL against the card's drift budget (and, over it, the evaluation the leaderboard would read instead), then the
    other metrics as a table of first, last and change."""
    first, last = result.curve[0], result.curve[-1]
    cfg = result.config
    spec = cfg.task_spec()
    judges = [k for k in last if k.startswith("eval/") and k.endswith("_mean")]
    extra = ("eval/diversity", "eval/vendi", "eval/fd_pretrained", "eval/drift_tv", "eval/novelty_hamming",
             "eval/tanimoto_diversity", "eval/gold_proxy_gap")
    rest = [k for k in last if k in extra or k.startswith("query/")]
    lines = [f"{cfg.method} on {cfg.task}, seed {cfg.seed}: {last['queries']:.0f} oracle queries, "
             f"{result.wall_time:.1f} s",
             "  judges on the eval samples, pretrained (first evaluation) -> final:"]
    width = max(len(_judge_name(k, spec)) for k in judges) if judges else 0
    for k in judges:
        lines.append(f"    {_judge_name(k, spec):{width}s} {first[k]:.3g} -> {last[k]:.3g} ({last[k] - first[k]:+.3g})"
                     if k in first else f"    {_judge_name(k, spec):{width}s} {last[k]:.3g}")
    if "eval/kl" in last:
        lines.append("  " + _drift_line(result, spec, judges))
    if rest:
        lines.append(f"  {'other metrics':28s} {'pretrained':>12s} {'final':>12s} {'change':>12s}")
    for k in rest:
        if k in first:
            lines.append(f"  {k:28s} {first[k]:12.5g} {last[k]:12.5g} {last[k] - first[k]:+12.4g}")
        else:  # oracle-side metrics (query/...) start after the first query
            lines.append(f"  {k:28s} {'-':>12s} {last[k]:12.5g} {'':>12s}")
    if result.run_dir is not None:
        lines.append(f"  run folder: {result.run_dir}")
    return "\n".join(lines)


def _judge_name(metric: str, spec) -> str:
    """``eval/jpeg_mean`` -> ``jpeg (headline)`` for the card's primary judge, else ``class_prob``."""
    label = metric.removeprefix("eval/").removesuffix("_mean")
    return f"{label} (headline)" if label == spec.primary_judge else label


def _drift_line(result, spec, judges: list[str]) -> str:
    """The final path KL against the card's drift budget; over it, a second line with the evaluation the leaderboard
    reads instead (its best headline within the budget: ``report.tables.matched_drift_values``)."""
    # on use: the CLI starts without pandas
    import pandas as pd

    from .report.labels import REFERENCE_METHODS, report_task
    from .report.tables import matched_drift_values

    cfg, kl = result.config, result.curve[-1]["eval/kl"]
    if cfg.method in REFERENCE_METHODS:
        return f"KL {kl:.3g} nats: of a selection among pretrained samples ({cfg.method} fine-tunes nothing)"
    budget = spec.drift_budget
    if budget is None:
        return f"path KL {kl:.3g} nats (the card states no drift budget)"
    if kl <= budget:
        return f"path KL {kl:.3g} nats: within the card's drift budget of {budget:g} nats"
    tidy = pd.DataFrame([{"task": cfg.task, "method": cfg.method, "seed": cfg.seed, "queries": point["queries"],
                          "metric": key, "value": value} for point in result.curve for key, value in point.items()
                         if key != "queries" and isinstance(value, int | float)])
    picked = matched_drift_values(tidy, {cfg.task: report_task(cfg.task)}).iloc[0]
    values = ", ".join(f"{k.removeprefix('eval/').removesuffix('_mean')} {picked[k + '@drift']:.3g}" for k in judges
                       if k + "@drift" in picked)
    at = f"{picked['drift_queries']:.0f} queries" + (" (the pretrained model)" if picked["drift_queries"] == 0 else "")
    return (f"path KL {kl:.3g} nats: over the card's drift budget of {budget:g} nats\n  the leaderboard reads this "
            f"run at its best evaluation within the budget: {at}, {values}")


def _cmd_report(args) -> int:
    # on use: the CLI starts without torch, mlflow or optuna
    from .report import current_commit, final_grids, load_mlflow, load_runs, rebuild_report, write_report
    from .tasks import load_spec

    grids = None
    if args.rebuild is not None:
        folder = Path(args.rebuild)
        missing = [name for name in ("curves.csv", "report.json") if not (folder / name).is_file()]
        if missing:
            raise BenchsuiteError(f"{folder} is not a written report (no {', '.join(missing)}); pass the folder "
                                  "that 'benchsuite report' or scripts/leaderboard.py wrote")
        out = folder if args.out is None else Path(args.out)
        if out != folder:
            _check_output(out)
        report = rebuild_report(folder, out)
        print((out / "leaderboard.md").read_text())
        print("figures:", *[str(p) for p in report["figures"]], sep="\n  ")
        return 0
    if args.mlflow_uri:
        if not args.tasks:
            raise BenchsuiteError("--mlflow-uri needs --tasks (the experiments to read)")
        # on use: the CLI starts without torch, mlflow or optuna
        from .tracking import check_tracking_uri

        database = check_tracking_uri(args.mlflow_uri)
        if database is not None and not database.is_file():  # reading must not create an empty store
            raise BenchsuiteError(f"no MLflow database at {database}; pass the --mlflow-uri your runs logged to")
        tidy = load_mlflow(args.mlflow_uri, list(args.tasks))
    else:
        if not (Path(args.runs) / "runs").is_dir():
            raise BenchsuiteError(f"no run folders in {Path(args.runs) / 'runs'}; pass --runs <folder with runs/>")
        tidy = load_runs(args.runs, list(args.tasks) if args.tasks else None)
        grids = final_grids(args.runs, list(args.tasks) if args.tasks else None)
    if tidy.empty:
        raise BenchsuiteError("no finished runs found; finish some with 'benchsuite run' or 'benchsuite sweep'")
    specs = {task: load_spec(task) for task in tidy["task"].unique()}  # a task whose card is gone: say so first
    references = {task: spec.reference_score for task, spec in specs.items() if spec.reference_score is not None}
    out = Path("results/report" if args.out is None else args.out)
    _check_output(out)
    report = write_report(tidy, out, grids=grids, reference_scores=references, allow_dirty=args.allow_dirty,
                          tree_commit=current_commit())
    print((out / "leaderboard.md").read_text())
    print("figures:", *[str(p) for p in report["figures"]], sep="\n  ")
    return 0


def _cmd_ask(args) -> int:
    # on use: the CLI starts without torch, mlflow or optuna
    from .asktell import SESSION, AskTellSession

    state = Path(args.state)
    if (state / SESSION).exists():
        if args.task or args.method or args.overrides or args.budget is not None:
            raise BenchsuiteError(f"{state} already holds a session; ask again without --task/--method/--budget/--set")
        session = AskTellSession(state)
    else:
        if not (args.task and args.method):
            raise BenchsuiteError(f"{state} holds no session; start one with --task and --method")
        # on use: the CLI starts without torch, mlflow or optuna
        from .config import parse_overrides, resolve

        method_overrides, task_overrides = parse_overrides(args.overrides, task=True)
        config = resolve(args.task, args.method, seed=args.seed, budget=args.budget, overrides=method_overrides,
                         task_overrides=task_overrides)
        _check_sampler_overrides(config)
        _check_output(state)
        session = AskTellSession.create(state, config)
    batch = session.ask(args.format)
    print(f"ask: {len(batch.ids)} candidates ({batch.ids[0]}..{batch.ids[-1]}), {session.used} of "
          f"{session.config.budget} queries told so far")
    print(f"fill in the score column of {batch.path}, then: benchsuite tell --state {state} {batch.path}")
    return 0


def _cmd_tell(args) -> int:
    # on use: the CLI starts without torch, mlflow or optuna
    from .asktell import AskTellSession

    session = AskTellSession(args.state)
    summary = session.tell_file(args.scores)
    print(f"told: batch mean {summary['batch_mean']:.6g}, max {summary['batch_max']:.6g}, best so far "
          f"{summary['best_so_far']:.6g}; {session.used} of {session.config.budget} queries used"
          + ("; budget spent, session finished" if session.finished else f"; next: benchsuite ask --state {args.state}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit code: 0, 1 (a run, sweep or study that failed on the way; a failed write),
    2 (bad input, nothing written; a run folder another process is writing) or 141 (the output pipe was closed)."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not as a traceback when the interpreter exits
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader of our output went away (``benchsuite list | head``): Python's recipe for SIGPIPE (the ``signal``
    module's documentation) points stdout at /dev/null, so that flushing it at exit cannot fail again, and the
    command ends without a word, with the status of a process killed by SIGPIPE (128 + 13)."""
    import signal

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (an embedding, a test)
        pass
    return 128 + signal.SIGPIPE


def _error(message: str) -> None:
    # one line whatever the message holds (user input echoed back may contain line breaks, e.g. argv ['run', '\n'])
    print("benchsuite: error: " + " ".join(message.split()), file=sys.stderr)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "show":
            return _cmd_show(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "tune":
            return _cmd_tune(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "leaderboard":
            if args.workers < 1:
                raise BenchsuiteError(f"--workers must be at least 1, got {args.workers}")
            # on use: the CLI starts without torch, mlflow or optuna
            from .leaderboard import main as leaderboard_main

            return leaderboard_main(args)
        if args.command == "weights":
            # on use: the CLI starts without torch, mlflow or optuna
            from .weights import fetch_weights_main

            if args.action == "list" and args.names:
                raise BenchsuiteError("'weights list' takes no names; use 'weights fetch NAME ...'")
            if args.action == "fetch" and not args.names:
                raise BenchsuiteError("'weights fetch' needs at least one name; see 'benchsuite weights list'")
            return fetch_weights_main(args.names, args.allow_download)
        if args.command == "ask":
            return _cmd_ask(args)
        if args.command == "tell":
            return _cmd_tell(args)
        return _cmd_run(args)
    except BenchsuiteError as exc:
        _error(str(exc))
        return exc.exit_code
    except BrokenPipeError:
        raise
    except OSError as exc:  # the file system refused a write (or a read) outside a run: what, where, what to do
        _error(f"{describe_os_error(exc)}; then run the command again")
        return 1


if __name__ == "__main__":
    sys.exit(main())
