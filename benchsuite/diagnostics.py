"""Diagnostics that combine a task, its pretrained policy and a method's predictors, printed for the scripts that
report them (scripts/train_consistency_model.py, scripts/fidelity.py). They sit above the methods: the pure
measures they print live in ``benchsuite.metrics.sampler``."""

from __future__ import annotations

from torch import Tensor

from .methods.sqdf import predict_x0
from .metrics.sampler import x0_predictor_quality
from .tasks import make_task


def print_predictor_quality(task_id: str, batch: int = 160) -> dict[str, Tensor]:
    """Print ``x0_predictor_quality`` of SQDF's predictors (Tweedie, 2-step DDIM, the consistency model when the
    backbone has one; an 8-step DDIM jump as the many-step reference) on ``task_id``'s pretrained sampler and
    primary judge, by thirds of the chain."""
    task = make_task(task_id)
    policy = task.make_policy()
    conds = task.eval_conditions()
    conds = None if conds is None else conds[:batch]
    preds = {"tweedie (1 pass)": lambda x, s, c: predict_x0(policy, x, s, c, 1),
             "ddim-2 (2 passes)": lambda x, s, c: predict_x0(policy, x, s, c, 2),
             "ddim-8 (8 passes)": lambda x, s, c: predict_x0(policy, x, s, c, 8)}
    if policy.x0_predictor is not None:
        preds["consistency model (1 pass)"] = lambda x, s, c: policy.consistency_x0(x, s, c)
    quality = x0_predictor_quality(policy, preds, task.judges[task.spec.primary_judge], conds, batch)
    T = policy.num_steps
    thirds = [range(1, T // 3 + 1), range(T // 3 + 1, 2 * T // 3 + 1), range(2 * T // 3 + 1, T)]
    print(f"x0 predictors on {task_id} ({batch} pretrained chains): RMSE to the final sample / reward bias / "
          "reward correlation")
    print("| predictor | " + " | ".join(f"states {r[0]}-{r[-1]}" for r in thirds) + " |")
    print("|---|" + "---|" * len(thirds))
    for name, q in quality.items():
        cells = [" / ".join(f"{q[[i - 1 for i in r], col].mean():{fmt}}" for col, fmt in ((0, ".3f"), (1, "+.4f"),
                                                                                            (2, ".3f")))
                 for r in thirds]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return quality
