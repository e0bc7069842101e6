"""Fidelity of the suite's methods to their seed papers: measurements of the samplers and methods, and the papers'
claims tested claim by claim on the embedded tasks. Writes ``results/fidelity/``.

    python scripts/fidelity.py measure                 # sampler grids, DRaFT K, CTRL gradient shares, x0 predictors
    python scripts/fidelity.py claims                  # every claim's runs (resumable), then the report
    python scripts/fidelity.py claims --report-only    # the report from the committed per-seed CSVs alone

``measure`` prints and writes ``measurements.md`` (deterministic; one thread). ``claims`` runs every arm of every
claim for ``--seeds`` (default 0 1 2) through ``benchsuite.sweep.run_many`` (2 workers, 1 torch thread each; run
folders in ``results/fidelity/runs/``, not committed; rerunning skips finished runs), writes every evaluation point
of every run to ``curves.csv`` (committed: the report regenerates from it) and the report: ``README.md`` (one row
per claim: reproduced / not reproduced / not testable here, the numbers with 95 % Student-t intervals over the
seeds, paired by seed where two arms are compared) and ``figures/``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

OUT = Path("results/fidelity")
DIGITS = "digits-jpeg-compress-v1"
CLASSIFIER = "digits-classifier-v1"
EHRLICH = "ehrlich-s32-l32-v3"
DIGITS_V2 = "digits-jpeg-compress-v2"
"""The core leaderboard's JPEG card (two evaluation sets, drift budget 8 nats with a class-judge tolerance): the
claims rerun with the tuned presets at matched drift use it at the leaderboard's budget and evaluation points."""
CORE_BUDGET, CORE_FRACTIONS, CORE_SEEDS = 512, (0.0, 0.25, 0.5, 1.0), (0, 1, 2, 3, 4)
CURRENT_CARDS = (DIGITS_V2, "digits-classifier-v2", EHRLICH, "ehrlich-s32-l128-v2", "selfies-chembl-qed-v1")
"""The measurements' cards: the current version of each embedded backbone's cards (the sampler grids are compared on
them by overriding the card's own grid; the -v0 cards' tables are in git history)."""
DIGITS_BUDGET = 1024
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
DENSE = tuple(i / 10 for i in range(11))


# ---- measurements ------------------------------------------------------------------------------------------------
SHARES: list[dict] = []  # per-step KL shares of measure_sampler, written to sampler_shares.csv for the figure
def measure_sampler() -> list[str]:
    """Per-step KL shares and pretrained quality of sampler grids on every embedded backbone."""
    import torch

    from benchsuite.metrics.sampler import parameter_kl_shares
    from benchsuite.registry import BACKBONES
    from benchsuite.tasks import make_task

    grids = {"trailing from 999 (v0)": {}, "leading, steps_offset 1": {"timestep_spacing": "leading", "steps_offset": 1},
             "log-SNR from 951 (digits v1)": {"timestep_spacing": "logsnr", "max_timestep": 951}}
    rows = ["| task | grid | first t | last t | largest step share: per eps change | per random parameter change "
            "(step) | last step | pretrained primary judge | second judge |", "|---|---|---|---|---|---|---|---|---|"]
    for task_id in CURRENT_CARDS:
        task = make_task(task_id)
        for label, over in grids.items():
            if task.spec.backbone != "digits" and "steps_offset" in over:
                continue  # the sequence backbones take no steps_offset (their config fixes trailing spacing)
            own = {k: v for k, v in dict(task.spec.sampler).items()  # the card's grid out: the backbone's default
                   if k not in ("timestep_spacing", "max_timestep", "steps_offset")}  # (trailing from 999) or `over`
            policy = BACKBONES.make(task.spec.backbone, **{**own, **over})
            conds = task.eval_conditions()
            n = len(conds) if conds is not None else task.spec.eval_samples_per_condition
            traj, _ = policy.rollout(conds, torch.Generator().manual_seed(task.spec.eval_seed), batch=n)
            judges = list(task.judges.items())
            scores = [float(j(policy.decode(traj.x0), conds).mean()) for _, j in judges]
            shares = parameter_kl_shares(policy, conds, n, seed=0)
            SHARES.extend({"task": task_id, "grid": label, "step": k, "share": float(v)}
                          for k, v in enumerate(shares.tolist()))
            eps = policy.kl_sensitivity.double()
            eps_share = float((eps / eps.sum()).max())
            rows.append(f"| {task_id} | {label} | {int(policy.timesteps[0])} | {int(policy.timesteps[-1])} | "
                        f"{eps_share:.3f} | {float(shares.max()):.3f} ({int(shares.argmax())}) | {float(shares[-1]):.3f} "
                        f"| {judges[0][0]} {scores[0]:.4f} | {judges[1][0]} {scores[1]:.4f} |")
    return rows


def measure_draft_k() -> list[str]:
    """DRaFT's parameter-gradient norm by K on every embedded backbone (random linear reward of the decoded
    samples, batch 64, seed 1): where the reward gradient lives."""
    import dataclasses

    import torch

    from benchsuite.methods.draft import DRaFT
    from benchsuite.tasks import make_task

    ks = (1, 2, 3, 5, 8, 10, 15, 20)
    rows = ["| backbone (task) | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for task_id in (DIGITS_V2, EHRLICH, "ehrlich-s32-l128-v2", "selfies-chembl-qed-v1"):
        task = make_task(task_id)
        info = dataclasses.replace(task.info, oracle_differentiable=True)
        cells = []
        for k in ks:
            policy = task.make_policy()
            method = DRaFT(DRaFT.Config(k=k, batch_size=64))
            method.setup(policy, info, torch.Generator().manual_seed(0))
            shape = policy.decode(torch.zeros(1, *policy.sample_shape)).shape[1:]
            w = torch.randn(shape, generator=torch.Generator().manual_seed(1))

            class Linear:  # a free differentiable oracle: the mean of w * sample
                budget, used, remaining = 10**9, 0, 10**9

                def __call__(self, x, c=None):
                    return (x * w).flatten(1).mean(1)

            method.optimizer.zero_grad()
            loss, _ = method._loss(Linear())
            loss.backward()
            norm = sum(float(p.grad.square().sum()) for p in method.params if p.grad is not None) ** 0.5
            cells.append(f"{norm:.2g}")
        rows.append(f"| {task.spec.backbone} ({task_id}) | " + " | ".join(cells) + " |")
    return rows


def measure_ctrl_shares() -> list[str]:
    """CTRL: the largest sampler step's share of the policy-gradient norm, and the lowest cosine of a step's gradient
    with the others, after two iterations of the digits preset (batch 32), over the same 16 chains."""
    from benchsuite.diagnostics import gradient_shares_on_task
    from benchsuite.methods.ctrl import step_gradient_shares

    rows = ["| task (grid) | largest step's weight share (step) | largest gradient share (step) | lowest cosine |",
            "|---|---|---|---|"]
    for task_id in ("digits-jpeg-compress-v0", DIGITS):
        w, grads = gradient_shares_on_task(task_id, iterations=2, batch_size=32, chains=16)
        summary = step_gradient_shares(grads)
        rows.append(f"| {task_id} | {float(w.max()):.3f} ({int(w.argmax())}) | {summary['train/grad_share_max']:.3f} "
                    f"({int(summary['train/grad_share_step'])}) | {summary['train/grad_cos_min']:.2f} |")
    return rows


def measure_predictors() -> list[str]:
    import contextlib
    import io

    from benchsuite.diagnostics import print_predictor_quality

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print_predictor_quality(DIGITS)
    return buffer.getvalue().strip().splitlines()


def measure() -> None:
    import torch

    torch.set_num_threads(1)
    sections = [
        ("Sampler grids", "share of the path KL held by the largest step (closed form per unit of eps change, and "
         "measured under small random parameter changes: 3 directions, each weight tensor moved by 1 % of its std, "
         "along the eval chains), and the pretrained model's eval judges", measure_sampler),
        ("DRaFT: parameter-gradient norm by K", "a random linear reward of the decoded samples, batch 64; zero means "
         "the K last steps pass no gradient", measure_draft_k),
        ("CTRL: where the gradient comes from", "after two iterations of the digits preset, 16 chains",
         measure_ctrl_shares),
        ("SQDF: x0 predictors", "how well each predictor's x0 anticipates the final sample of the pretrained "
         "sampler, by thirds of the chain: RMSE in pixel units (Tweedie's posterior mean minimises it by "
         "construction) / bias of the JPEG reward, mean r(prediction) - r(final) (a blurry prediction compresses "
         "better than the sample it stands for) / Pearson correlation of the two rewards", measure_predictors),
    ]
    lines = ["# Fidelity measurements", "", "`python scripts/fidelity.py measure` (one thread, deterministic).", ""]
    for title, what, fn in sections:
        start = time.perf_counter()
        rows = fn()
        lines += [f"## {title}", "", what + f" ({time.perf_counter() - start:.0f} s).", "", *rows, ""]
        print("\n".join(lines[-len(rows) - 5:]), flush=True)
    import pandas as pd

    OUT.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(SHARES).to_csv(OUT / "sampler_shares.csv", index=False, float_format="%.6g")
    figure = plot_sampler_shares(pd.DataFrame(SHARES), OUT / "figures" / "sampler_kl_shares")
    lines += ["![per-step share of the path KL by sampler grid](figures/sampler_kl_shares.png)", ""]
    (OUT / "measurements.md").write_text("\n".join(lines))
    print(f"wrote {OUT / 'measurements.md'} and {figure}")


# ---- claims ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One setting: a method on a task with overrides, at a budget, evaluated at ``fractions`` of it."""

    task: str
    method: str
    overrides: tuple[tuple[str, Any], ...] = ()
    task_overrides: tuple[tuple[str, Any], ...] = ()
    budget: int = DIGITS_BUDGET
    fractions: tuple[float, ...] = FRACTIONS
    seeds: tuple[int, ...] | None = None
    """Seeds of this arm when not the claims' (a one-seed probe of a longer or stronger setting)."""
    tuned: bool = False
    """With the task's tuned preset (``baselines/<method>/tuned/<task>.yaml``, the leaderboard's); otherwise the
    hand-set presets the first claims were measured at."""

    def config(self, seed: int):
        from benchsuite.config import resolve

        return resolve(self.task, self.method, seed=seed, budget=self.budget, overrides=dict(self.overrides),
                       task_overrides=dict(self.task_overrides), eval_fractions=self.fractions,
                       output_root=str(OUT), tuned_presets=self.tuned)


def arm(task, method, budget=DIGITS_BUDGET, fractions=FRACTIONS, task_overrides=None, seeds=None, tuned=False,
        **overrides) -> Arm:
    return Arm(task, method, tuple(sorted(overrides.items())), tuple(sorted((task_overrides or {}).items())),
               budget, fractions, seeds, tuned)


def tuned_arm(method: str, task_overrides=None) -> Arm:
    """``method`` on the core JPEG card as the leaderboard runs it: its tuned preset, 512 queries, 4 evaluations."""
    return arm(DIGITS_V2, method, budget=CORE_BUDGET, fractions=CORE_FRACTIONS, task_overrides=task_overrides,
               tuned=True)


@dataclass
class Claim:
    """A paper's claim, the arms that test it, and the analysis that gives the verdict."""

    id: str
    paper: str
    text: str
    arms: dict[str, Arm]
    analyse: Callable[[Any], tuple[str, str]]
    """``analyse(curves) -> (verdict, evidence)``: ``curves`` is the claim's tidy frame (arm, seed, queries,
    metric, value)."""
    figure: Callable[[Any, Path], Path] | None = None
    notes: str = ""
    seeds: tuple[int, ...] | None = None
    kind: str = "claim"
    """``claim``: a paper's claim; ``fix``: a before/after measurement of a change this suite made."""


def final(curves, arm_name: str, metric: str):
    """Per-seed final values of ``metric`` for ``arm_name``, as a Series indexed by seed."""
    rows = curves[(curves.arm == arm_name) & (curves.metric == metric)]
    last = rows.sort_values("queries").groupby("seed").tail(1)
    return last.set_index("seed")["value"].sort_index()


def fmt(triple, digits: int = 3) -> str:
    m, lo, hi = triple
    return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def paired(x, y):
    """The paired t-interval of ``x - y`` (Series indexed by seed) over the seeds both have."""
    from benchsuite.report.stats import paired_t_interval

    seeds = x.index.intersection(y.index)
    return paired_t_interval(x[seeds].values, y[seeds].values)


def diff(curves, a: str, b: str, metric: str):
    return paired(final(curves, a, metric), final(curves, b, metric))


def sign(triple) -> int:
    """+1 / -1 when the interval excludes 0 above / below, 0 when it contains it."""
    _, lo, hi = triple
    return 1 if lo > 0 else -1 if hi < 0 else 0


def verdict_of(signs: list[int], wanted: list[int]) -> str:
    if all(s == w for s, w in zip(signs, wanted)):
        return "reproduced"
    if any(s == -w for s, w in zip(signs, wanted)):
        return "not reproduced (the opposite holds)"
    return "not reproduced (no significant difference)"


def value_at_reward(curves, arm_name: str, reward: str, target: float, metric: str):
    """Per seed: ``metric`` (e.g. eval/kl or queries) linearly interpolated at the first evaluation point where the
    eval ``reward`` reaches ``target`` along the run's curve; NaN when it never does."""
    import numpy as np
    import pandas as pd

    out = {}
    rows = curves[curves.arm == arm_name]
    for seed, run in rows.groupby("seed"):
        wide = run.pivot_table(index="queries", columns="metric", values="value").sort_index()
        r = wide[reward].values
        m = wide.index.values.astype(float) if metric == "queries" else wide[metric].values
        hit = np.nonzero(r >= target)[0]
        if len(hit) == 0:
            out[seed] = np.nan
        elif hit[0] == 0:
            out[seed] = m[0]
        else:
            i = hit[0]
            frac = (target - r[i - 1]) / (r[i] - r[i - 1])
            out[seed] = m[i - 1] + frac * (m[i] - m[i - 1])
    return pd.Series(out).sort_index()


# ---- figures -------------------------------------------------------------------------------------------------------
def _axes(ncols: int = 1, height: float = 2.6, width: float | None = None):
    from benchsuite.report.plots import COLUMN_WIDTH_IN, _setup

    plt, _ = _setup()
    return plt.subplots(1, ncols, figsize=(width or COLUMN_WIDTH_IN * ncols, height), layout="constrained",
                        squeeze=False)


def plot_sampler_shares(shares, path: Path) -> Path:
    """Per-step share of the path KL under random parameter changes, one panel per backbone task."""
    from benchsuite.report.plots import _save

    tasks = [DIGITS_V2, EHRLICH]
    grids = list(dict.fromkeys(shares.grid))
    colors = dict(zip(grids, ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]))  # one colour per grid in both panels
    fig, axes = _axes(2, height=2.4)
    for ax, task in zip(axes[0], tasks):
        for grid, part in shares[shares.task == task].groupby("grid", sort=False):
            ax.plot(part.step, part.share, marker="o", markersize=2.5, linewidth=1, label=grid, color=colors[grid])
        ax.set_title({DIGITS_V2: "digits backbone", EHRLICH: "sequence backbone "
                      "(Ehrlich L = 32)"}[task], fontsize=8)
        ax.set_xlabel("sampler step (0 = from noise)")
        ax.set_ylabel("share of the path KL")
        ax.set_ylim(0, 1)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=6, frameon=False)
    return _save(fig, path)


def redraw_sampler_figure() -> Path:
    import pandas as pd

    return plot_sampler_shares(pd.read_csv(OUT / "sampler_shares.csv"), OUT / "figures" / "sampler_kl_shares")


def _mean_ci(values):
    from benchsuite.report.stats import t_interval

    m, lo, hi = t_interval(values)
    return m, m - lo


def plot_final_scatter(curves, arms: list[str], x: str, y: str, xlabel: str, ylabel: str, path: Path) -> Path:
    """Final ``y`` against final ``x`` per arm: mean over seeds with 95 % t-interval bars on both axes."""
    from benchsuite.report.plots import _save

    fig, axes = _axes(height=2.6)
    ax = axes[0][0]
    for name in arms:
        (mx, ex), (my, ey) = _mean_ci(final(curves, name, x).values), _mean_ci(final(curves, name, y).values)
        ax.errorbar(mx, my, xerr=ex, yerr=ey, marker="o", markersize=4, capsize=2, linewidth=1, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=6, frameon=False)
    return _save(fig, path)


def plot_frontier(curves, arms: list[str], reward: str, path: Path, ylabel: str, target: float | None = None) -> Path:
    """Eval reward against path KL along training, mean over seeds at each evaluation point, one line per arm."""
    from benchsuite.report.plots import _save

    fig, axes = _axes(height=2.6)
    ax = axes[0][0]
    for name in arms:
        wide = curves[curves.arm == name].pivot_table(index=["seed", "queries"], columns="metric", values="value")
        mean = wide.groupby("queries")[["eval/kl", reward]].mean()
        ax.plot(mean["eval/kl"], mean[reward], marker="o", markersize=3, linewidth=1, label=name)
    if target is not None:
        ax.axhline(target, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("path KL to the pretrained model (eval chains)")
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=6, frameon=False)
    return _save(fig, path)


def plot_curves_by_arm(curves, arms: list[str], metrics: dict[str, str], path: Path, xlabel="oracle queries",
                       x: str = "queries") -> Path:
    """One panel per metric: its mean over seeds (band: 95 % t-interval) against ``x`` for each arm."""
    import numpy as np

    from benchsuite.report.plots import _save
    from benchsuite.report.stats import t_interval

    fig, axes = _axes(len(metrics), height=2.5)
    for ax, (metric, label) in zip(axes[0], metrics.items()):
        for name in arms:
            part = curves[(curves.arm == name) & (curves.metric == metric)]
            stats = part.groupby("queries")["value"].apply(lambda v: t_interval(v.values))
            q = stats.index.values
            m, lo, hi = (np.array([s[i] for s in stats.values]) for i in range(3))
            if metric == "eval/kl":
                lo = np.maximum(lo, 0.0)  # a KL is >= 0: the band stops there
            line, = ax.plot(q, m, marker="o", markersize=2.5, linewidth=1, label=name)
            ax.fill_between(q, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        if metric == "eval/kl":  # path KLs span orders of magnitude between methods
            ax.set_yscale("symlog", linthresh=0.01)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=6, frameon=False)
    return _save(fig, path)


def plot_proxy_gold(curves, arm_name: str, path: Path) -> Path:
    """Proxy and gold judge against oracle queries and against the path KL (means over seeds, t-interval bands)."""
    import numpy as np

    from benchsuite.report.plots import _save
    from benchsuite.report.stats import t_interval

    fig, axes = _axes(2, height=2.4)
    c = curves[curves.arm == arm_name]
    kl = c[c.metric == "eval/kl"].groupby("queries")["value"].mean()
    for metric, label in (("eval/proxy_mean", "proxy (trained on)"), ("eval/gold_mean", "gold (held out)")):
        stats = c[c.metric == metric].groupby("queries")["value"].apply(lambda v: t_interval(v.values))
        q = stats.index.values
        m, lo, hi = (np.array([s[i] for s in stats.values]) for i in range(3))
        for ax, x in zip(axes[0], (q, kl[q].values)):
            line, = ax.plot(x, m, marker="o", markersize=2.5, linewidth=1, label=label)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    axes[0][0].set_xlabel("oracle queries")
    axes[0][1].set_xlabel("path KL to the pretrained model")
    axes[0][1].set_xscale("symlog", linthresh=0.1)
    for ax in axes[0]:
        ax.set_ylabel("P(digit 3)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=6, frameon=False)
    return _save(fig, path)


# ---- the claims as data: each names its arms and one small check that gives its verdict and evidence ---------------
JPEG, DIV, KL = "eval/jpeg_mean", "eval/diversity", "eval/kl"
FINE_TUNERS = ("ddpo", "sqdf", "vard", "ctrl", "draft")


def _t_interval(values):
    from benchsuite.report.stats import t_interval

    return t_interval(values)


def check_gamma(c):
    r1, d1 = diff(c, "gamma 1.0", "gamma 0.9", JPEG), diff(c, "gamma 1.0", "gamma 0.9", DIV)
    r85, d85 = diff(c, "gamma 0.85", "gamma 0.9", JPEG), diff(c, "gamma 0.85", "gamma 0.9", DIV)
    v = verdict_of([sign(r1), sign(d1)], [1, -1])
    return v, (f"gamma 1 - 0.9: reward {fmt(r1)}, diversity {fmt(d1)}; gamma 0.85 - 0.9: reward {fmt(r85)}, "
               f"diversity {fmt(d85)}")


def check_consistency(c):
    r = diff(c, "consistency model", "tweedie", JPEG)
    return verdict_of([sign(r)], [1]), f"reward, consistency model - Tweedie: {fmt(r)}"


def check_buffer(c):
    r, d = diff(c, "no buffer", "buffer", JPEG), diff(c, "no buffer", "buffer", DIV)
    return verdict_of([sign(r), sign(d)], [1, -1]), f"no buffer - buffer: reward {fmt(r)}, diversity {fmt(d)}"


def check_matched_drift(c):
    import numpy as np

    start = final(c, "pretrained", JPEG).mean()
    target = start + 0.5 * float(final(c, "sqdf", JPEG).mean() - start)  # half of SQDF's own gain
    kls = {a: value_at_reward(c, a, JPEG, target, KL) for a in ("sqdf", "draft+kl", "draft+kl, lr x4", "ddpo")}
    parts, signs = [], []
    for other in ("draft+kl", "draft+kl, lr x4", "ddpo"):
        if kls[other].isna().all():  # never reaches the level: any drift of SQDF's there is the smaller one
            best = final(c, other, JPEG).mean() - start
            parts.append(f"{other} never reaches it (final gain {best:+.4f})")
            signs.append(-1)
            continue
        d = _t_interval((kls["sqdf"] - kls[other]).values)
        parts.append(f"SQDF - {other} {fmt(d)}")
        signs.append(sign(d))
    v = verdict_of(signs, [-1] * len(signs))
    means = ", ".join(f"{a} {np.nanmean(kls[a].values):.3f}" for a in kls if not kls[a].isna().all())
    return v, (f"path KL where the eval reward first reaches {target:+.4f} (half of SQDF's mean gain): "
               + "; ".join(parts) + f"; mean KL there: {means}")


def check_vard(c):
    start = final(c, "pretrained", JPEG).mean()
    target = start + 0.5 * min(float(final(c, a, JPEG).mean() - start) for a in ("vard", "ddpo"))
    q = {a: value_at_reward(c, a, JPEG, target, "queries") for a in ("vard", "ddpo")}
    dq = _t_interval((q["vard"] - q["ddpo"]).values)
    works = _t_interval(final(c, "vard", JPEG).values - start)
    sd = {a: float(final(c, a, JPEG).std(ddof=1)) for a in ("vard", "ddpo")}
    v = verdict_of([sign(dq), sign(works)], [-1, 1])
    return v, (f"queries to reach {target:+.4f}: VARD - DDPO {fmt(dq, 0)}; VARD's gain over pretrained on "
               f"JPEG (a black box) {fmt(works)}; across-seed sd of the final reward VARD {sd['vard']:.4f}, DDPO "
               f"{sd['ddpo']:.4f} (a variance ratio is not testable at this seed count)")


def check_ctrl_steps(c):
    gains = {t: _t_interval(final(c, f"CTRL, {t} steps", JPEG).values - final(c, "pretrained", JPEG).mean())
             for t in (20, 50, 100)}
    d = {t: diff(c, f"CTRL, {t} steps", "CTRL, 100 steps", JPEG) for t in (20, 50)}
    beats = diff(c, "CTRL, 20 steps", "ddpo", JPEG)
    comparable = all(sign(x) == 0 for x in d.values()) and all(sign(g) == 1 for g in gains.values())
    v = ("reproduced" if comparable and sign(beats) == 1 else
         "partly reproduced (comparable across steps; not better than DDPO)" if comparable else
         "not reproduced")
    return v, ("gain over pretrained: " + ", ".join(f"{t} steps {fmt(g)}" for t, g in gains.items())
               + f"; 20 - 100 steps {fmt(d[20])}, 50 - 100 {fmt(d[50])}; CTRL - DDPO (20 steps) {fmt(beats)}")


def at_drift(c, task: str, metric: str):
    """Per arm and seed, ``metric`` (an ``eval/`` one: the test set) at the run's matched-drift evaluation point,
    chosen on the selection set within the card's drift budget and judge tolerance, as the leaderboard reports it
    (``report.tables.run_values``; the pretrained arm: its final value). A Series indexed by (arm, seed)."""
    from benchsuite.report.labels import DRIFT_SUFFIX, report_task
    from benchsuite.report.tables import run_values

    tidy = c.rename(columns={"arm": "method"}).assign(task=task)
    tidy = tidy[["task", "method", "seed", "queries", "metric", "value"]]
    return run_values(tidy, {task: report_task(task)}).set_index(["method", "seed"])[metric + DRIFT_SUFFIX]


def drift_diff(values, a: str, b: str):
    return paired(values[a], values[b])


def check_vard_matched(c):
    v = at_drift(c, DIGITS_V2, JPEG)
    d = drift_diff(v, "vard", "ddpo")
    gain = _t_interval((v["vard"] - v["pretrained"].mean()).values)
    sd = {a: float(v[a].std(ddof=1)) for a in ("vard", "ddpo")}
    verdict = verdict_of([sign(d), sign(gain)], [1, 1])
    return verdict, (f"test-set reward at matched drift (8 nats, class judge within 0.05), VARD - DDPO: {fmt(d)}; "
                     f"VARD's gain over pretrained there {fmt(gain)}; across-seed sd VARD {sd['vard']:.4f}, DDPO "
                     f"{sd['ddpo']:.4f}")


def check_ctrl_matched(c):
    v = at_drift(c, DIGITS_V2, JPEG)
    gains = {t: _t_interval((v[f"CTRL, {t} steps"] - v["pretrained"].mean()).values) for t in (20, 50, 100)}
    d = {t: drift_diff(v, f"CTRL, {t} steps", "CTRL, 100 steps") for t in (20, 50)}
    beats = drift_diff(v, "CTRL, 20 steps", "ddpo")
    comparable = all(sign(x) == 0 for x in d.values()) and all(sign(g) == 1 for g in gains.values())
    verdict = ("reproduced" if comparable and sign(beats) == 1 else
               "partly reproduced (comparable across steps; not better than DDPO)" if comparable else
               "partly reproduced (better than DDPO; not comparable across steps)" if sign(beats) == 1 else
               "not reproduced")
    return verdict, ("test-set reward at matched drift, gain over pretrained: "
                     + ", ".join(f"{t} steps {fmt(g)}" for t, g in gains.items())
                     + f"; 20 - 100 steps {fmt(d[20])}, 50 - 100 {fmt(d[50])}; CTRL - DDPO (20 steps) {fmt(beats)}")


def check_ddpo(c):
    g = _t_interval(final(c, "ddpo", JPEG).values - final(c, "pretrained", JPEG).mean())
    return verdict_of([sign(g)], [1]), f"DDPO's gain over pretrained: {fmt(g)}"


def check_lv(c):
    d = diff(c, "DRaFT-LV", "DRaFT-1", "eval/proxy_mean")
    v = ("reproduced" if sign(d) >= 0 else "not reproduced (DRaFT-LV is worse)")
    return v, f"proxy reward, DRaFT-LV - DRaFT-1: {fmt(d)} (the claim is 'at least matches')"


OVEROPT_PAIRS = (("DRaFT-1, lr x4 (classifier)", "eval/proxy_mean", "eval/gold_mean", "gold classifier"),
                 ("DDPO (JPEG)", JPEG, "eval/class_prob_mean", "held-out class judge"))
"""The over-optimisation arms checked over seeds: (arm, proxy metric, held-out metric, what the held-out one is)."""
OVEROPT_PROBES = ("DRaFT-1, lr 1e-3 (classifier)", "DRaFT-1, lr x4, 6144 queries (classifier)")
"""The one-seed probes the over-optimisation evidence describes."""


def _held_out_fall(runs, proxy_key: str, held_key: str) -> tuple[list[float], list[float]]:
    """Per seed: how far the held-out judge fell from its peak by the end, and how far the proxy rose after it."""
    import numpy as np

    drops, proxy_up = [], []
    for _, run in runs.groupby("seed"):
        wide = run.pivot_table(index="queries", columns="metric", values="value").sort_index()
        held, proxy = wide[held_key].values, wide[proxy_key].values
        drops.append(float(held.max() - held[-1]))
        proxy_up.append(float(proxy[-1] - proxy[int(np.argmax(held))]))
    return drops, proxy_up


def check_overopt(c):
    parts, found = [], []
    for name, proxy_key, held_key, label in OVEROPT_PAIRS:
        drops, proxy_up = _held_out_fall(c[c.arm == name], proxy_key, held_key)
        d, p = _t_interval(drops), _t_interval(proxy_up)
        found.append(sign(d) == 1 and sign(p) == 1)
        parts.append(f"{name}: {label} peak - final {fmt(d)}, proxy rise after that peak {fmt(p)}")
    for name in OVEROPT_PROBES:
        wide = c[c.arm == name].pivot_table(index="queries", columns="metric", values="value").sort_index()
        parts.append(f"{name}, seed 0: proxy {wide['eval/proxy_mean'].iloc[-1]:.3f}, gold "
                     f"{wide['eval/gold_mean'].iloc[-1]:.3f} at the end (gold peak {wide['eval/gold_mean'].max():.3f}, "
                     f"path KL {wide['eval/kl'].iloc[-1]:.1f})")
    v = ("reproduced" if all(found) else "partly reproduced (on JPEG with the held-out class judge; the "
         "classifier task's gold judge plateaus without falling)" if found == [False, True] else
         verdict_of([int(f) for f in found], [1, 1]))
    return v, "; ".join(parts)


def check_online(c):
    d = diff(c, "bonus 1", "bonus 0", "query/top10_mean")
    return verdict_of([sign(d)], [1]), f"top-10 mean of the queries, bonus 1 - bonus 0: {fmt(d, 4)}"


def check_grids(c):
    parts, better = [], []
    for m in FINE_TUNERS:
        gain = {g: final(c, f"{m}, {g}", JPEG) - final(c, f"pretrained, {g}", JPEG).mean() for g in ("v0", "v1")}
        d = _t_interval((gain["v1"] - gain["v0"]).values)
        share = {g: final(c, f"{m}, {g}", "eval/kl_max_step_share").mean() for g in ("v0", "v1")}
        better.append(sign(d))
        parts.append(f"{m}: gain v0 {gain['v0'].mean():+.3f}, v1 {gain['v1'].mean():+.3f} (v1 - v0 {fmt(d)}); "
                     f"largest step's share of the eval KL {share['v0']:.2f} -> {share['v1']:.2f}")
    n_up = sum(b == 1 for b in better)
    return f"{n_up} of {len(better)} methods gain significantly more on v1", "; ".join(parts)


def check_logprob(c):
    d = diff(c, "mean over dims", "sum over dims", JPEG)
    k = diff(c, "mean over dims", "sum over dims", KL)
    cls = diff(c, "mean over dims", "sum over dims", "eval/class_prob_mean")
    return (f"the reference convention moves DDPO {'more' if sign(d) == 1 else 'less' if sign(d) == -1 else 'alike'}",
            f"mean - sum: reward {fmt(d)}, path KL {fmt(k)}, class judge {fmt(cls)}")


SQDF = arm(DIGITS, "sqdf")
DDPO = arm(DIGITS, "ddpo")
PRETRAINED = arm(DIGITS, "pretrained")
GRID_ARMS = {f"{m}, {g}": arm(task, m) for m in (*FINE_TUNERS, "pretrained")
             for g, task in (("v0", "digits-jpeg-compress-v0"), ("v1", DIGITS))}
DENSE_CLASSIFIER = {"fractions": DENSE, "budget": 2048}
"""The classifier task's over-optimisation arms: 2048 queries, 11 evaluations."""

CLAIMS = [
    Claim("sampler-grid", "this suite (fix 1)", "the -v1 log-SNR sampler grid against the -v0 trailing grid, "
          "every fine-tuner at its digits preset", GRID_ARMS, check_grids, kind="fix",
          notes="gain = final eval reward minus the pretrained model's on the same grid (-0.734 on v0, -0.736 on v1)"),
    Claim("ddpo-logprob", "this suite (fix 4)", "DDPO's ratio from per-dim mean log-probs (ddpo-pytorch) against "
          "full-density sums", {"mean over dims": DDPO, "sum over dims": arm(DIGITS, "ddpo", log_prob_reduction="sum")},
          check_logprob, kind="fix"),
    Claim("sqdf-discount", "SQDF (arXiv 2512.04559)",
          "gamma = 1 gives the highest reward and the lowest diversity; gamma 0.85-0.9 keeps diversity",
          {"gamma 0.85": arm(DIGITS, "sqdf", discount=0.85), "gamma 0.9": SQDF,
           "gamma 1.0": arm(DIGITS, "sqdf", discount=1.0)}, check_gamma,
          figure=lambda c, p: plot_final_scatter(c, ["gamma 0.85", "gamma 0.9", "gamma 1.0"], DIV, JPEG,
                                                 "diversity (mean pairwise L2 per digit)", "eval reward (-JPEG kB)", p)),
    Claim("sqdf-consistency", "SQDF", "without the consistency model the reward drops",
          {"consistency model": SQDF, "tweedie": arm(DIGITS, "sqdf", predictor="tweedie")}, check_consistency),
    Claim("sqdf-buffer", "SQDF", "without the replay buffer the reward rises and diversity falls",
          {"buffer": SQDF, "no buffer": arm(DIGITS, "sqdf", buffer_capacity=64, sampling="on-policy")}, check_buffer,
          notes="no buffer: capacity = one rollout batch (64), pairs from the newest chains"),
    Claim("sqdf-drift", "SQDF", "at equal reward SQDF drifts less (path KL) than DRaFT+KL and DDPO",
          {"sqdf": SQDF, "draft+kl": arm(DIGITS, "draft", kl_coef=0.07),
           "draft+kl, lr x4": arm(DIGITS, "draft", kl_coef=0.07, lr=2e-4), "ddpo": DDPO, "pretrained": PRETRAINED},
          check_matched_drift,
          figure=lambda c, p: plot_frontier(c, ["sqdf", "draft+kl", "draft+kl, lr x4", "ddpo"], JPEG, p,
                                            "eval reward (-JPEG kB)"),
          notes="DRaFT+KL with SQDF's preset kl_coef 0.07 (the suite's KL units) at DRaFT's digits preset lr "
                "(5e-5) and at 4x it; KL interpolated along each run's eval curve"),
    Claim("vard-efficiency", "VARD (arXiv 2505.15791; reconstructed)",
          "reaches a given reward in fewer queries than DDPO, varies less across seeds, and works with a "
          "non-differentiable reward (JPEG)", {"vard": arm(DIGITS, "vard"), "ddpo": DDPO, "pretrained": PRETRAINED},
          check_vard, notes="at the hand-set presets, untuned, at full budget (DDPO without a KL term, VARD on the raw "
                            "reward); vard-matched is the comparison on equal terms"),
    Claim("ctrl-steps", "Score as Action (arXiv 2502.01819; reconstructed)",
          "comparable results at 20, 50 and 100 sampler steps; better than DDPO at equal queries",
          {"CTRL, 20 steps": arm(DIGITS, "ctrl"),
           "CTRL, 50 steps": arm(DIGITS, "ctrl", task_overrides={"sampler.num_steps": 50}),
           "CTRL, 100 steps": arm(DIGITS, "ctrl", task_overrides={"sampler.num_steps": 100}),
           "ddpo": DDPO, "pretrained": PRETRAINED}, check_ctrl_steps,
          figure=lambda c, p: plot_curves_by_arm(c, ["CTRL, 20 steps", "CTRL, 50 steps", "CTRL, 100 steps", "ddpo"],
                                                 {JPEG: "eval reward (-JPEG kB)", KL: "path KL"}, p),
          notes="the log-SNR grid from t = 951 with 50 and 100 steps (task override sampler.num_steps); at the "
                "hand-set presets, untuned, at full budget; ctrl-matched is the comparison on equal terms"),
    Claim("vard-matched", "VARD (arXiv 2505.15791; reconstructed)",
          "better than DDPO at equal queries, and works with a non-differentiable reward (JPEG): rerun with the "
          "tuned presets, compared at matched drift",
          {"vard": tuned_arm("vard"), "ddpo": tuned_arm("ddpo"), "pretrained": tuned_arm("pretrained")},
          check_vard_matched, seeds=CORE_SEEDS,
          notes=f"{DIGITS_V2} as the core leaderboard runs it: each method's tuned preset (the same 8-trial study "
                "for each, standardized reward), 512 queries, evaluations at 0, 1/4, 1/2 and 1 of them, the point "
                "chosen on the selection set within the card's drift budget, the value read on the test set; "
                "seeds 0-4 (fixed before the runs)"),
    Claim("ctrl-matched", "Score as Action (arXiv 2502.01819; reconstructed)",
          "comparable results at 20, 50 and 100 sampler steps; better than DDPO at equal queries: rerun with the "
          "tuned presets, compared at matched drift",
          {"CTRL, 20 steps": tuned_arm("ctrl"),
           "CTRL, 50 steps": tuned_arm("ctrl", {"sampler.num_steps": 50}),
           "CTRL, 100 steps": tuned_arm("ctrl", {"sampler.num_steps": 100}),
           "ddpo": tuned_arm("ddpo"), "pretrained": tuned_arm("pretrained")}, check_ctrl_matched, seeds=CORE_SEEDS,
          notes=f"{DIGITS_V2} as in vard-matched; CTRL's preset was tuned at the card's 20 steps and is kept at 50 "
                "and 100 (task override sampler.num_steps)"),
    Claim("ddpo-beats-pretrained", "DDPO (arXiv 2305.13301)", "DDPO improves the reward over the pretrained model",
          {"ddpo": DDPO, "pretrained": PRETRAINED}, check_ddpo),
    Claim("draft-lv", "DRaFT (arXiv 2309.17400)", "DRaFT-LV at least matches DRaFT-1 at equal queries",
          {"DRaFT-1": arm(CLASSIFIER, "draft"), "DRaFT-LV": arm(CLASSIFIER, "draft", variant="lv")}, check_lv,
          notes="digits-classifier-v1 (differentiable proxy: every re-noised copy is an oracle query)"),
    Claim("overoptimization", "DDPO / DRaFT", "over-optimisation: the proxy reward keeps rising while a held-out "
          "judge falls past some KL",
          {"DRaFT-1, lr x4 (classifier)": arm(CLASSIFIER, "draft", lr=2e-4, **DENSE_CLASSIFIER),
           "DDPO (JPEG)": DDPO,
           "DRaFT-1, lr 1e-3 (classifier)": arm(CLASSIFIER, "draft", lr=1e-3, seeds=(0,), **DENSE_CLASSIFIER),
           "DRaFT-1, lr x4, 6144 queries (classifier)": arm(CLASSIFIER, "draft", lr=2e-4, budget=6144, seeds=(0,),
                                                            fractions=tuple(i / 8 for i in range(9)))},
          check_overopt, figure=lambda c, p: plot_proxy_gold(c, "DRaFT-1, lr x4 (classifier)", p),
          notes="digits-classifier-v1: proxy = MLP on half A of the digits, gold = SVC on half B; DRaFT-1 at 4x "
                "its preset lr, 2048 queries, 11 evaluations, and one-seed probes at lr 1e-3 and to 6144 queries; "
                "DDPO on digits-jpeg-compress-v1 with its held-out class judge (DDPO's own evidence: train on one "
                "reward, evaluate another)"),
    Claim("online-bonus", "SEIKO (arXiv 2402.16359) / SQDF online",
          "an optimistic surrogate (bonus > 0) beats bonus = 0 at equal queries",
          {"bonus 1": arm(EHRLICH, "sqdf", budget=2048),
           "bonus 0": arm(EHRLICH, "sqdf", budget=2048, task_overrides={"online.bonus": 0.0})}, check_online,
          notes=f"{EHRLICH}, 4 rounds of 512 queries, SQDF at its hand-set preset; SQDF trained against the "
                "ensemble's mean + bonus x std (rerun on the current card; the -v0 card's row is in git history)"),
]
"""Every claim and fix, in the order of the report."""


def claims() -> list[Claim]:
    return list(CLAIMS)


def run_claims(seeds: list[int], workers: int, only: list[str] | None) -> None:
    from benchsuite.sweep import run_many

    selected = [c for c in claims() if not only or c.id in only]
    configs = {}
    for claim in selected:
        for a in claim.arms.values():
            for seed in a.seeds or claim.seeds or seeds:
                cfg = a.config(seed)
                configs[cfg.run_id] = cfg
    todo = list(configs.values())
    print(f"{len(todo)} runs for {len(selected)} claims", flush=True)
    start = time.perf_counter()

    def show(o):
        print(f"  {o.before:12s} {o.status:8s} {o.config.task} {o.config.method} seed {o.config.seed} "
              f"{o.error or ''}", flush=True)

    outcomes = run_many(todo, "fidelity", workers=workers, on_outcome=show)
    failed = [o for o in outcomes if o.status != "FINISHED"]
    print(f"{len(outcomes)} runs, {len(failed)} failed, {time.perf_counter() - start:.0f} s wall", flush=True)
    collect(selected, seeds)


def collect(selected: list[Claim], seeds: list[int]) -> None:
    """Every evaluation point of every arm's runs into ``curves.csv`` (claim, arm, seed, queries, metric, value)."""
    import pandas as pd

    from benchsuite.tracking import read_metrics

    frames = []
    for claim in selected:
        for name, a in claim.arms.items():
            for seed in a.seeds or claim.seeds or seeds:
                cfg = a.config(seed)
                summary = json.loads((cfg.run_dir / "summary.json").read_text())
                metrics = read_metrics(cfg.run_dir)
                cols = [c for c in metrics.columns if c.startswith(("eval/", "select/", "query/", "cost/"))]
                evals = metrics.dropna(subset=[c for c in cols if c.startswith(("eval/", "select/"))], how="all")
                long = evals[["step", *cols]].melt(id_vars="step", var_name="metric", value_name="value").dropna()
                long = long.rename(columns={"step": "queries"})
                long = pd.concat([long, pd.DataFrame([{"queries": summary["queries_used"], "metric": "wall_time_s",
                                                       "value": summary["wall_time_s"]}])], ignore_index=True)
                long["claim"], long["arm"], long["seed"], long["run_id"] = claim.id, name, seed, cfg.run_id
                frames.append(long)
    table = pd.concat(frames, ignore_index=True)[["claim", "arm", "seed", "queries", "metric", "value", "run_id"]]
    old = OUT / "curves.csv"
    if old.exists():  # keep the claims not rerun this time
        previous = pd.read_csv(old)
        table = pd.concat([previous[~previous.claim.isin(table.claim.unique())], table], ignore_index=True)
    table.to_csv(old, index=False, float_format="%.6g")


def report(seeds: list[int]) -> None:
    import pandas as pd

    if (OUT / "sampler_shares.csv").exists():
        redraw_sampler_figure()
    curves = pd.read_csv(OUT / "curves.csv")
    lines = ["# Fidelity to the seed papers, claim by claim", "",
             f"`python scripts/fidelity.py claims` (seeds {', '.join(map(str, seeds))}; 95 % Student-t intervals over "
             "the seeds, of per-seed differences where two arms are compared: the same seed under both settings). "
             "Rebuilt from `curves.csv` alone by `python scripts/fidelity.py claims --report-only`. Measurements of "
             "the samplers and methods behind these settings: [measurements.md](measurements.md).", "",
             "| claim | source | verdict | evidence |", "|---|---|---|---|"]
    details, fixes = [], ["", "## Before and after this suite's fixes", "", "| change | verdict | evidence |",
                          "|---|---|---|"]
    for claim in claims():
        c = curves[curves.claim == claim.id]
        if c.empty:
            lines.append(f"| {claim.text} | {claim.paper} | not run | |")
            continue
        verdict, evidence = claim.analyse(c)
        if claim.figure is not None:
            png = claim.figure(c, OUT / "figures" / claim.id)
            evidence += f" ([figure](figures/{png.name}))"
        if claim.kind == "fix":
            fixes.append(f"| {claim.text} ({claim.paper}) | {verdict} | {evidence} |")
        else:
            lines.append(f"| {claim.text} | {claim.paper} | **{verdict}** | {evidence} |")
        arms = "; ".join(f"{n}: `{a.method}` on `{a.task}`, {a.budget} queries"
                         + (f", {dict(a.overrides)}" if a.overrides else "")
                         + (f", task {dict(a.task_overrides)}" if a.task_overrides else "")
                         for n, a in claim.arms.items())
        details.append(f"- **{claim.id}**: {arms}." + (f" {claim.notes}." if claim.notes else ""))
    lines += [*fixes, "", "## Arms", "", *details, ""]
    (OUT / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["measure", "claims"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="claim ids (default: every claim)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.what == "measure":
        measure()
        return
    if not args.report_only:
        run_claims(args.seeds, args.workers, args.only)
    report(args.seeds)


if __name__ == "__main__":
    main()
