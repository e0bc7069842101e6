"""Evaluation owned by the runner: fixed conditions, fixed noise, judges that never touch the budget."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .metrics import mean_pairwise_distance
from .policies.base import DiffusionPolicy
from .tasks import Task


@torch.no_grad()
def evaluate(policy: DiffusionPolicy, reference: DiffusionPolicy, task: Task,
             method=None) -> tuple[dict[str, float], Tensor, Tensor | None]:
    """Sample the task's eval set with its fixed eval seed and score it with every judge.

    A ``method`` whose ``eval_samples`` returns images (best-of-N) is judged on those instead, with the KL it
    reports.

    Returns:
        metrics: ``eval/<judge>_mean`` and ``_std`` per judge, ``eval/kl`` (mean over samples of the summed
            per-step KL to the reference along the sampled chains), ``eval/diversity`` (mean pairwise L2
            distance between images of the same condition).
        images: ``N x C x H x W`` in [0, 1].
        conditions: ``N`` or None.
    """
    conds = task.eval_conditions()
    generator = torch.Generator().manual_seed(task.spec.eval_seed)
    n = len(conds) if conds is not None else task.spec.eval_samples_per_condition
    own = method.eval_samples(conds, n) if method is not None else None
    if own is not None:
        images, kl = own
    else:
        was_training = policy.training
        policy.eval()
        traj, kls = policy.rollout(conds, generator, batch=n, reference=reference)
        policy.train(was_training)
        images, kl = policy.decode(traj.x0), kls.sum(1).mean().item()
    metrics: dict[str, float] = {}
    for label, judge in task.judges.items():
        r = judge(images, conds).double()
        metrics[f"eval/{label}_mean"] = r.mean().item()
        metrics[f"eval/{label}_std"] = r.std().item() if len(r) > 1 else 0.0
    metrics["eval/kl"] = kl
    metrics["eval/diversity"] = mean_pairwise_distance(images, conds)
    return metrics, images, conds


def sample_grid(images: Tensor, conditions: Tensor | None, per_row: int = 8, scale: int = 4, pad: int = 1) -> np.ndarray:
    """A ``H x W x 3`` uint8 grid: one row per condition (first ``per_row`` samples), upscaled ``scale``x.

    Args:
        images: ``N x C x h x w`` in [0, 1], C in {1, 3}.
        conditions: ``N`` or None (then rows of ``per_row`` in order).
    """
    imgs = images.detach().cpu().clamp(0, 1)
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    if conditions is None:
        rows = [imgs[i : i + per_row] for i in range(0, min(len(imgs), 8 * per_row), per_row)]
    else:
        rows = [imgs[conditions.cpu() == c][:per_row] for c in torch.unique(conditions.cpu())]
    h, w = imgs.shape[-2] * scale, imgs.shape[-1] * scale
    grid = torch.ones(3, len(rows) * (h + pad) + pad, per_row * (w + pad) + pad)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            up = torch.nn.functional.interpolate(img[None], scale_factor=scale, mode="nearest")[0]
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, y : y + h, x : x + w] = up
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
