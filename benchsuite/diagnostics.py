"""Diagnostics that combine a task, its pretrained policy and a method's predictors, printed for the scripts that
report them (scripts/train_consistency_model.py, scripts/fidelity.py). They sit above the methods and the runner
(a method is built as a run builds it, ``runner.build_method``): the pure measures they print live in
``benchsuite.metrics.sampler``."""

from __future__ import annotations

import torch
from torch import Tensor

from .config import resolve
from .methods.ctrl import ContinuousTimeRL
from .methods.sqdf import predict_x0
from .metrics.sampler import x0_predictor_quality
from .runner import build_method
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


def gradient_shares_on_task(task_id: str, iterations: int = 2, batch_size: int = 32, chains: int = 16,
                            seed: int = 0) -> tuple[Tensor, Tensor]:
    """CTRL's preset on ``task_id`` after ``iterations`` iterations of ``batch_size`` chains, then the per-step
    gradients (``ContinuousTimeRL.step_gradients``) over ``chains`` fresh chains. Returns the normalised step
    weights ``T`` and the gradients ``T x P``: the measurement behind the sampler-grid comparison
    (``scripts/fidelity.py measure``)."""
    task = make_task(task_id)
    policy = task.make_policy()
    budget = iterations * batch_size
    cfg = resolve(task_id, ContinuousTimeRL.name, budget=budget,
                  overrides={"batch_size": batch_size, "grad_share_every": 0})
    method = build_method(cfg, task, policy, torch.Generator().manual_seed(seed))
    oracle = task.train_oracle(budget)
    for _ in range(iterations):
        method.step(oracle)
    traj, _ = policy.rollout(method.sample_conditions(chains), torch.Generator().manual_seed(seed + 5), batch=chains)
    return method.weights / method.weights.sum(), method.step_gradients(traj.latents, traj.conditions)
