"""What the report calls each metric and method, what each metric means, and what it knows about each task.

Tables and figures name metrics by ``metric_label`` (never by raw keys such as ``eval/proxy_mean``); the
leaderboard writes ``METRIC_DEFINITIONS`` of the metrics it shows once. ``ReportTask`` is what the report reads from
a task card (headline, judges, drift budget), saved beside the report so that the report can be rebuilt from its
CSVs alone (``benchsuite.report.rebuild_report``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownNameError
from ..tasks import backbone_space, load_spec

REFERENCE_METHODS = ("pretrained", "best-of-n", "bo")
"""Methods that do not fine-tune: dashed lines in every curve, so that they read as references. Their ``eval/kl`` is
the analytic KL of a selection among pretrained samples, not a path KL, so they are never placed on a path-KL axis."""

METRIC_DEFINITIONS: dict[str, tuple[str, str]] = {
    "eval/kl": ("path KL", "sum over the sampler steps of the per-step KL to the pretrained model along the eval "
                "chains, mean over the eval samples"),
    "eval/diversity": ("diversity", "mean pairwise distance between eval samples of one condition, averaged over "
                       "conditions: L2 between pixels for images (pooled to 32 px above that size), normalised "
                       "Hamming distance for sequences"),
    "eval/vendi": ("Vendi score", "exp of the entropy of the eigenvalues of K / n over the eval samples of one "
                   "condition (K: cosine similarity of pixels for images, 1 - normalised Hamming distance for "
                   "sequences), averaged over conditions: the effective number of distinct samples"),
    "query/top10_mean": ("top-10 query mean", "mean oracle reward of the 10 best queries made so far (what "
                         "the queries found, holo-bench's black-box number)"),
    "query/best": ("best query", "best oracle reward among the queries made so far"),
    "wall_time_s": ("wall time (s)", "wall-clock seconds of the run, setup included"),
    "cost/queries": ("oracle queries", "oracle queries charged to the run's budget"),
}
"""``metric key: (short label, definition)`` of the metrics every task shares; judge means (``eval/<judge>_mean``)
are labelled by ``JUDGE_LABELS`` and defined by their task's card (``ReportTask.judge_rewards``)."""

JUDGE_DEFINITION = ("mean over the task's fixed eval samples (eval seed and conditions of its card) of that judge's "
                    "reward; each task names the reward of each of its judges")

JUDGE_LABELS = {
    "jpeg": "JPEG reward", "class_prob": "class probability", "proxy": "proxy reward", "gold": "gold reward",
    "ehrlich": "Ehrlich", "feasible": "feasible share", "qed": "QED", "sa": "SA score", "aesthetic": "aesthetic score",
    "hps": "HPS v2", "brightness": "brightness",
}
"""Display names of the judge labels the task cards use; other labels are shown with spaces for underscores."""

DRIFT_SUFFIX = "@drift"
"""``<metric>@drift``: the metric at the run's matched-drift evaluation point (see ``tables.matched_drift_values``)."""

REFERENCE_NOTE = ("ref.: pretrained, best-of-N and BO do not fine-tune; their drift is a selection among pretrained "
                  "samples, not a path KL, so they are not placed at matched drift (read their full-budget value)")


def metric_label(metric: str) -> str:
    """Short human label of a metric key: ``eval/kl`` -> "path KL", ``eval/class_prob_mean`` -> "class
    probability", ``eval/jpeg_mean@drift`` -> "JPEG reward at matched drift"."""
    if metric.endswith(DRIFT_SUFFIX):
        return metric_label(metric.removesuffix(DRIFT_SUFFIX)) + " at matched drift"
    if metric in METRIC_DEFINITIONS:
        return METRIC_DEFINITIONS[metric][0]
    if metric.startswith("eval/") and metric.endswith("_mean"):
        judge = metric.removeprefix("eval/").removesuffix("_mean")
        return JUDGE_LABELS.get(judge, judge.replace("_", " "))
    return metric.split("/")[-1].replace("_", " ")


def higher_is_better(metric: str) -> bool:
    """Whether a table bolds the column's largest mean: rewards (judge means, query statistics, also at matched
    drift) and the diversity metrics; not path KL, time or queries, which have no better direction for a ranking."""
    base = metric.removesuffix(DRIFT_SUFFIX)
    return base.startswith("query/") or (base.startswith("eval/") and base.endswith("_mean")) or base in (
        "eval/diversity", "eval/vendi")


@dataclass(frozen=True)
class ReportTask:
    """What the report uses of one task, read from its card by ``report_task`` (or guessed without one).

    Attributes:
        id: the task id.
        headline: metric key of the headline number (higher is better): the primary judge's eval mean, on every
            task (black-box tasks with online rounds add ``query/top10_mean`` and ``query/best`` as columns).
        judges: eval judge means, the training reward's judge first (the over-optimization proxy), then the
            others (a held-out or gold judge second where the card has one).
        metrics: the leaderboard's metric columns, in order (the headline first).
        drift_budget: path KL (``eval/kl``) within which methods are compared at matched drift; None: full budget
            only.
        judge_tolerance: ``(judge, largest fall)`` pairs of the card (``TaskSpec.judge_tolerance``): a point where a
            judge fell further below the run's first evaluation is not at matched drift.
        grid_panel: how its sample grids become report panels, as its backbone's sample space says
            (``SampleSpace.grid_panel``: ``tiles`` or ``rows``).
        judge_rewards: ``{judge metric: "reward-name vN (kwargs)"}``, what each judge mean measures.
        note: empty, or why the card was not used ("no task card: ...").
    """

    id: str
    headline: str
    judges: tuple[str, ...]
    metrics: tuple[str, ...]
    drift_budget: float | None = None
    grid_panel: str = "tiles"
    judge_rewards: tuple[tuple[str, str], ...] = ()
    note: str = ""
    judge_tolerance: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_json(cls, data: dict) -> "ReportTask":
        """The inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to tuples); a report saved
        before ``grid_panel`` (its ``sequences`` flag) reads as the same panels."""
        if "sequences" in data:
            data = {**{k: v for k, v in data.items() if k != "sequences"},
                    "grid_panel": "rows" if data["sequences"] else "tiles"}
        return cls(**{**data, "judges": tuple(data["judges"]), "metrics": tuple(data["metrics"]),
                      "judge_rewards": tuple(tuple(p) for p in data["judge_rewards"]),
                      "judge_tolerance": tuple(tuple(p) for p in data.get("judge_tolerance", ()))})


def task_metrics(task_id: str) -> tuple[str, list[str], list[str]]:
    """(headline metric, the task's judge means, the table's metrics) for a task id."""
    spec = load_spec(task_id)
    primary = f"eval/{spec.primary_judge}_mean"
    judges = [primary] + [f"eval/{label}_mean" for label, _ in spec.judges if label != spec.primary_judge]
    rest = ["eval/kl", "eval/diversity", "eval/vendi", "wall_time_s", "cost/queries"]
    if spec.online is not None:
        # black-box track: the headline is still the product's eval reward (the fine-tuned model's samples, or the
        # kept set of best-of-N and BO), as in SEIKO's evaluation and on every other task; what the queries found
        # (mean of the 10 best oracle values, holo-bench's number) follows as its own columns. The top-10 query
        # mean was the headline until the v2 leaderboard: on Ehrlich it moves in steps of 1/32 and the 10 best of
        # 512 pretrained samples already reach it, so it measured sampling luck more than fine-tuning.
        return primary, judges, [primary, "query/top10_mean", "query/best", *judges[1:], *rest]
    return primary, judges, [*judges, *rest]


def report_task(task_id: str, present: list[str] | None = None) -> ReportTask:
    """``ReportTask`` of ``task_id`` from its card; without a card (a task id only the data knows), one guessed
    from the metrics ``present`` in the data: headline = the first eval judge mean in sorted order, no drift
    budget, and a ``note`` saying so."""
    try:
        spec = load_spec(task_id)
    except UnknownNameError:
        present = sorted(present or [])
        judges = tuple(m for m in present if m.startswith("eval/") and m.endswith("_mean")) or tuple(present[:1])
        rest = [m for m in ("eval/kl", "eval/diversity", "eval/vendi", "wall_time_s", "cost/queries") if m in present]
        note = f"no task card: headline {judges[0]} (the first judge mean in the data), no drift budget"
        return ReportTask(task_id, judges[0], judges, (*judges, *rest), note=note)
    headline, judges, metrics = task_metrics(task_id)
    rewards = dict(spec.judges)
    described = tuple((f"eval/{label}_mean", _describe(rewards[label])) for label, _ in spec.judges)
    return ReportTask(task_id, headline, tuple(judges), tuple(metrics), spec.drift_budget,
                      backbone_space(spec.backbone).grid_panel, described, judge_tolerance=spec.judge_tolerance)


def _describe(reward) -> str:
    """``jpeg-compressibility v0 (quality=95, render_size=32)``: a card's reward spec as one phrase."""
    args = ", ".join(f"{k}={v}" for k, v in reward.kwargs)
    return f"{reward.name} v{reward.version}" + (f" ({args})" if args else "")
