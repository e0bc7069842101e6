"""Headroom of a digits card: pretrained, best-of-N and fine-tuners at the leaderboard's budget, over seeds.

    python scripts/headroom_probe.py                      # digits-ink-v0, the table of its card's comments
    python scripts/headroom_probe.py --task digits-jpeg-incompress-v1 --cache runs.jsonl

Runs each (method, settings) of ``SETTINGS`` at 512 queries with evaluations at (0, 0.25, 0.5, 1) of the budget, one
process, one thread, nothing written but the optional ``--cache`` (JSON lines, one run each; runs already there are
read instead of rerun). Then prints, per row, mean and 95% Student-t half-width over seeds of

- the headline at matched drift: the test-set headline at the evaluation with the best selection-set headline among
  those within the card's drift budget (selection-set path KL) and judge tolerance (``tasks.within_drift``, the
  report's rule); pretrained and best-of-N do not fine-tune and are read at full budget, as the report reads them;
- the headline, the judges and the path KL at full budget;
- the headline difference to pretrained and to best-of-N, paired by seed (matched drift for fine-tuners);

and, per fine-tuner row, the largest fall of each judge of the card's tolerance from the run's start in bands of
path KL (the figures the card's drift budget and tolerance were chosen from).

A card has headroom when pretrained, best-of-N and the best fine-tuner differ by at least three half-widths.
About 10 CPU minutes on one core for the default rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SEEDS5 = (0, 1, 2, 3, 4)
SEEDS3 = (0, 1, 2)
SETTINGS = (
    # (row label, method, method overrides, seeds)
    ("pretrained", "pretrained", {}, SEEDS5),
    ("best-of-n", "best-of-n", {}, SEEDS5),
    ("ddpo lr 3e-4 (preset)", "ddpo", {}, SEEDS5),
    ("ddpo lr 1e-4", "ddpo", {"lr": 1e-4}, SEEDS5),
    ("sqdf (preset)", "sqdf", {}, SEEDS3),
    ("sqdf 1 update/step", "sqdf", {"updates_per_step": 1}, SEEDS3),
    ("vard (preset)", "vard", {}, SEEDS3),
    ("ctrl (preset)", "ctrl", {}, SEEDS3),
)
BUDGET = 512
FRACTIONS = (0, 0.25, 0.5, 1.0)
REFERENCES = ("pretrained", "best-of-n")
"""Rows read at full budget only (no path KL: the report places them at no matched-drift point)."""


def run_one(task: str, method: str, overrides: dict, seed: int) -> dict:
    """One run's curve (the eval/ and select/ judge means and path KLs per evaluation) and its CPU seconds."""
    from benchsuite.config import resolve
    from benchsuite.runner import run

    start = time.process_time()
    config = resolve(task, method, seed=seed, budget=BUDGET, eval_fractions=FRACTIONS, overrides=overrides or None)
    result = run(config, write=False)
    curve = [{k: float(v) for k, v in point.items()
              if k.startswith(("eval/", "select/")) and (k.endswith("_mean") or k.endswith("/kl"))}
             for point in result.curve]
    return {"task": task, "method": method, "overrides": overrides, "seed": seed, "curve": curve,
            "cpu_s": time.process_time() - start}


def matched_point(curve: list[dict], spec) -> dict:
    """The curve's point at matched drift: the best selection-set headline among the points within the card's drift
    budget and judge tolerance (the first point, the pretrained model, always qualifies; ties: the earliest)."""
    from benchsuite.tasks import within_drift

    head = f"select/{spec.primary_judge}_mean"
    first = {j: curve[0][f"select/{j}_mean"] for j, _ in spec.judge_tolerance}
    ok = [p for i, p in enumerate(curve) if i == 0 or within_drift(
        p["select/kl"], {j: p[f"select/{j}_mean"] for j, _ in spec.judge_tolerance}, first, spec.drift_budget,
        spec.judge_tolerance)]
    return max(ok, key=lambda p: (p[head], -curve.index(p)))


def cell(values) -> str:
    from benchsuite.report.stats import t_interval

    mean, low, _ = t_interval(values)
    return f"{mean:.4f} ± {mean - low:.4f}" if np.isfinite(low) else f"{mean:.4f}"


def table(task: str, runs: list[dict], drift_budget: float | None = None) -> str:
    """The markdown table of ``runs``, at the card's drift budget or at ``drift_budget`` nats."""
    from dataclasses import replace

    from benchsuite.tasks import load_spec

    spec = load_spec(task)
    if drift_budget is not None:
        spec = replace(spec, drift_budget=drift_budget)
    head = spec.primary_judge
    judges = [name for name, _ in spec.judges]
    rows, matched = {}, {}
    for label, method, overrides, seeds in SETTINGS:
        found = {r["seed"]: r for r in runs if r["method"] == method and r["overrides"] == overrides}
        found = [found[s] for s in seeds if s in found]
        if not found:
            continue
        last = [r["curve"][-1] for r in found]
        at = [r["curve"][-1] if method in REFERENCES else matched_point(r["curve"], spec) for r in found]
        matched[label] = {r["seed"]: p[f"eval/{head}_mean"] for r, p in zip(found, at)}
        rows[label] = [label, str(len(found)), cell([p[f"eval/{head}_mean"] for p in at]),
                       "full budget" if method in REFERENCES else cell([p["select/kl"] for p in at])]
        rows[label] += [cell([p[f"eval/{j}_mean"] for p in last]) for j in judges]
        rows[label] += [cell([p["eval/kl"] for p in last])]
    for label, row in rows.items():
        for ref in REFERENCES:
            pairs = [(v, matched[ref][s]) for s, v in matched[label].items() if ref in matched and s in matched[ref]]
            row.append("—" if label == ref or len(pairs) < 2 else cell([a - b for a, b in pairs]))
    header = (["row", "seeds", f"{head} at matched drift", "select KL there"]
              + [f"{j} full budget" for j in judges] + ["path KL full budget"]
              + [f"Δ vs {ref} (paired)" for ref in REFERENCES])
    lines = [f"{task}: drift budget {spec.drift_budget} nats, judge tolerance {dict(spec.judge_tolerance)}, "
             f"{BUDGET} queries, mean ± 95% t half-width over seeds",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows.values()]
    return "\n".join(lines)


BANDS = (0.0, 8.0, 16.0, 32.0, float("inf"))
"""Selection-set path KL bands (nats) of ``judge_falls``."""


def judge_falls(task: str, runs: list[dict]) -> str:
    """Per fine-tuner row and KL band: the largest fall of each tolerance judge from the run's start, over its
    evaluations in that band, on the test / selection set (what the card's drift budget and tolerance are read off)."""
    from benchsuite.tasks import load_spec

    spec = load_spec(task)
    lines = [f"largest judge fall from the run's start (test / selection set) by selection-set path KL band (nats)",
             "| row | judge | " + " | ".join(f"({lo:g}, {hi:g}]" for lo, hi in zip(BANDS, BANDS[1:])) + " |",
             "|" + "---|" * (len(BANDS) + 1)]
    for label, method, overrides, _ in SETTINGS:
        found = [r for r in runs if r["method"] == method and r["overrides"] == overrides]
        if method in REFERENCES or not found:
            continue
        for judge in (j for j, _ in spec.judge_tolerance):
            cells = []
            for lo, hi in zip(BANDS, BANDS[1:]):
                falls = [(r["curve"][0][f"eval/{judge}_mean"] - p[f"eval/{judge}_mean"],
                          r["curve"][0][f"select/{judge}_mean"] - p[f"select/{judge}_mean"])
                         for r in found for p in r["curve"][1:] if lo < p["select/kl"] <= hi]
                cells.append(f"{max(f[0] for f in falls):.3f} / {max(f[1] for f in falls):.3f} ({len(falls)})"
                             if falls else "—")
            lines.append(f"| {label} | {judge} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="digits-ink-v0")
    parser.add_argument("--cache", type=Path, help="JSON lines of finished runs: read, and appended to")
    parser.add_argument("--drift-budget", type=float, action="append",
                        help="also print the table at this drift budget in nats (repeatable), e.g. to calibrate it")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    runs = []
    if args.cache and args.cache.exists():
        runs = [r for r in map(json.loads, args.cache.read_text().splitlines()) if r["task"] == args.task]
    for _, method, overrides, seeds in SETTINGS:
        for seed in seeds:
            if any(r["method"] == method and r["overrides"] == overrides and r["seed"] == seed for r in runs):
                continue
            record = run_one(args.task, method, overrides, seed)
            runs.append(record)
            print(f"{method} {overrides or ''} seed {seed}: {record['cpu_s']:.0f} CPU s", flush=True)
            if args.cache:
                with args.cache.open("a") as out:
                    out.write(json.dumps(record) + "\n")
    print(table(args.task, runs))
    print()
    print(judge_falls(args.task, runs))
    for budget in args.drift_budget or ():
        print()
        print(table(args.task, runs, budget))
    print(f"CPU seconds of these runs: {sum(r['cpu_s'] for r in runs):.0f}")


if __name__ == "__main__":
    main()
