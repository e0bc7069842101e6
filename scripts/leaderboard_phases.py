"""Where a leaderboard tier's time goes: the phase table of its runs, from the report's own curves.csv, or from the
run folders themselves (``report.tables.load_runs``) where the report writes no curves.csv (the bbo tier).

    python scripts/leaderboard_phases.py results/leaderboard/core
    python scripts/leaderboard_phases.py results/leaderboard/bbo      # reads results/leaderboard/bbo/runs/

Per (task, method): runs, mean wall seconds per run, and the share of each phase the runner times
(``cost/time_<phase>_s``: ``step`` = the method's steps, queries included; ``eval`` / ``select`` = the test and
selection evaluation sets; an online round's ``query``, ``fit`` (the surrogate refit) and ``inner`` steps, which are
part of ``step``). The last lines sum each phase over the tier: the phases worth shortening first.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from benchsuite.report.tables import load_runs

OUTSIDE = ("eval", "select", "step")
"""Phases that do not overlap: with setup, they make up a run's wall time."""


def phase_table(curves: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """(one row per (task, method): runs, mean wall s, each phase's share of the wall time; seconds per phase over
    every run of the tier, setup included)."""
    last = curves.sort_values("queries").groupby(["task", "method", "seed", "metric"])["value"].last().unstack()
    timed = [c for c in last.columns if c.startswith("cost/time_")]
    if not timed:
        raise SystemExit("these runs log no cost/time_* phases (made before the runner timed its phases)")
    wall = last["cost/wall_s"]
    phases = last[timed].fillna(0.0).rename(columns=lambda c: c.removeprefix("cost/time_").removesuffix("_s"))
    phases["setup"] = (wall - phases[[p for p in OUTSIDE if p in phases]].sum(axis=1)).clip(lower=0.0)
    grouped = phases.groupby(level=["task", "method"])
    table = grouped.sum().div(wall.groupby(level=["task", "method"]).sum(), axis=0)
    table.insert(0, "mean wall s", wall.groupby(level=["task", "method"]).mean())
    table.insert(0, "runs", wall.groupby(level=["task", "method"]).count())
    return table, phases.sum()


def markdown(table: pd.DataFrame, totals: pd.Series) -> str:
    shares = [c for c in table.columns if c not in ("runs", "mean wall s")]
    lines = ["| task | method | runs | mean wall s | " + " | ".join(f"{c} %" for c in shares) + " |",
             "|---|---|---|---|" + "---|" * len(shares)]
    for (task, method), row in table.iterrows():
        lines.append(f"| {task} | {method} | {row['runs']:.0f} | {row['mean wall s']:.1f} | "
                     + " | ".join(f"{100 * row[c]:.0f}" for c in shares) + " |")
    total = totals[[p for p in (*OUTSIDE, "setup") if p in totals]].sum()
    lines += ["", f"Tier: {total / 60:.1f} run-minutes in all; by phase: "
              + ", ".join(f"{p} {totals[p] / 60:.1f} min ({100 * totals[p] / total:.0f} %)"
                          for p in (*OUTSIDE, "setup") if p in totals)
              + "; inside the online steps: " + ", ".join(f"{p} {totals[p] / 60:.1f} min" for p in totals.index
                                                         if p not in (*OUTSIDE, "setup"))]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a tier's report folder (holds curves.csv or runs/)")
    args = parser.parse_args(argv)
    path = args.report / "curves.csv"
    if path.is_file():
        curves = pd.read_csv(path)
    else:
        curves = load_runs(args.report)  # the same tidy frame the report writes as curves.csv
        if curves.empty:
            print(f"error: no {path} and no finished runs under {args.report / 'runs'}; pass a report folder written "
                  "by 'benchsuite leaderboard run'", file=sys.stderr)
            return 2
    print(markdown(*phase_table(curves)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
