"""Command line: ``benchsuite list`` and ``benchsuite run``.

User errors (unknown names, bad values, malformed files, missing weights) print one line,
``benchsuite: error: <what to do>``, exit with code 2 and write nothing: every check runs before the first file
or MLflow run is created.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .errors import BenchsuiteError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise BenchsuiteError(f"{message} (see '{self.prog} --help')")


def _nonneg_int(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {value}")
        return value

    return parse


def _positive_float(name: str, allow_zero: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchsuite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="list tasks and methods")
    ls.add_argument("what", nargs="?", choices=["tasks", "methods", "all"], default="all")

    r = sub.add_parser("run", help="fine-tune one method on one task under a query budget")
    r.add_argument("--task", required=True, help="task id (see 'benchsuite list tasks')")
    r.add_argument("--method", required=True, help="method name (see 'benchsuite list methods')")
    r.add_argument("--budget", type=_nonneg_int("--budget"), default=None,
                   help="oracle queries (default: the task card's default_budget)")
    r.add_argument("--seed", type=_nonneg_int("--seed"), default=0)
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="method.FIELD=VALUE",
                   help="override a method setting, repeatable (e.g. --set method.lr=1e-4)")
    r.add_argument("--output", default="results", help="root folder for run outputs (default: results)")
    r.add_argument("--mlflow-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///<output>/mlflow/mlflow.db)")
    r.add_argument("--no-mlflow", action="store_true", help="log to the run folder only")
    r.add_argument("--threads", type=_nonneg_int("--threads"), default=1,
                   help="torch CPU threads (default 1: on 2 shared cores 1 thread was measured faster than 2)")
    r.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    again = r.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue this run from its last checkpoint")
    again.add_argument("--restart", action="store_true", help="delete this run's folder and start over")
    r.add_argument("--oracle-retries", type=_nonneg_int("--oracle-retries"), default=2,
                   help="extra tries of a failed oracle call (exception, timeout, NaN/inf); default 2")
    r.add_argument("--oracle-backoff", type=_positive_float("--oracle-backoff", allow_zero=True), default=1.0,
                   metavar="SECONDS",
                   help="wait before retry i is SECONDS * 2**i (default 1)")
    r.add_argument("--oracle-timeout", type=_positive_float("--oracle-timeout"), default=None, metavar="SECONDS",
                   help="an oracle call taking longer counts as failed (default: wait)")
    return parser


def _cmd_list(args) -> int:
    from .registry import METHODS
    from .tasks import task_specs

    if args.what in ("tasks", "all"):
        print("tasks:")
        for tid, spec in task_specs().items():
            print(f"  {tid:32s} budget {spec.default_budget:>6d}  {spec.description}")
    if args.what in ("methods", "all"):
        print("methods:")
        for name in METHODS.names():
            doc = (METHODS.load(name).__doc__ or "").strip().splitlines()[0]
            print(f"  {name:32s} {doc}")
    return 0


def _check_output(path: Path) -> None:
    """Fail early (before anything is written) if ``path`` cannot be created or written."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BenchsuiteError(f"output folder {path} is not writable; pass --output <writable folder>")


def _cmd_run(args) -> int:
    from .config import parse_overrides, resolve

    if args.threads < 1:
        raise BenchsuiteError("--threads must be >= 1")
    config = resolve(args.task, args.method, seed=args.seed, budget=args.budget,
                     overrides=parse_overrides(args.overrides), num_threads=args.threads, device=args.device,
                     output_root=args.output)
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
    if not args.no_mlflow:
        from .tracking import MlflowTracker, default_tracking_uri

        uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output / "mlflow")
        tracker = MlflowTracker(uri, artifact_root=(output / "mlflow" / "artifacts").resolve())

    from .runner import OracleOptions, run

    options = OracleOptions(args.oracle_retries, args.oracle_backoff, args.oracle_timeout)
    result = run(config, tracker=tracker, progress=not args.no_progress, resume=args.resume, restart=args.restart,
                 oracle_options=options)
    print(format_summary(result))
    if tracker is not None:
        print(f"MLflow: experiment '{config.task}' in {uri}  (browse: mlflow ui --backend-store-uri {uri})")
    return 0


def format_summary(result) -> str:
    """A plain-text table of the first and last evaluation (the first is the pretrained model)."""
    first, last = result.curve[0], result.curve[-1]
    keys = [k for k in last if k.endswith("_mean") or k in ("eval/kl", "eval/diversity")]
    cfg = result.config
    lines = [
        f"{cfg.method} on {cfg.task}, seed {cfg.seed}: {last['queries']:.0f} oracle queries, "
        f"{result.wall_time:.1f} s",
        f"  {'metric':28s} {'pretrained':>12s} {'final':>12s} {'change':>12s}",
    ]
    for k in keys:
        lines.append(f"  {k:28s} {first[k]:12.5g} {last[k]:12.5g} {last[k] - first[k]:+12.4g}")
    if result.run_dir is not None:
        lines.append(f"  run folder: {result.run_dir}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "list":
            return _cmd_list(args)
        return _cmd_run(args)
    except BenchsuiteError as exc:
        print(f"benchsuite: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
