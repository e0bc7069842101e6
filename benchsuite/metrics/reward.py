"""Reward summaries of a set of samples."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def reward_summary(rewards: Tensor, top_fraction: float = 0.1) -> dict[str, float]:
    """Mean, median, std and top-fraction mean of ``rewards``.

    Args:
        rewards: ``N`` tensor.
        top_fraction: the share of best samples averaged for ``top`` (at least one sample).

    Returns:
        ``{"mean", "median", "std", "top10"}`` (the last key named after ``top_fraction`` in percent).
    """
    r = rewards.detach().double().flatten()
    k = max(1, math.ceil(top_fraction * len(r)))
    return {
        "mean": r.mean().item(),
        "median": r.median().item(),
        "std": r.std().item() if len(r) > 1 else 0.0,
        f"top{round(100 * top_fraction)}": torch.topk(r, k).values.mean().item(),
    }
