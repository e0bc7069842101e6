"""Diversity of a set of samples."""

from __future__ import annotations

import torch
from torch import Tensor


def mean_pairwise_distance(features: Tensor, groups: Tensor | None = None) -> float:
    """Mean Euclidean distance over distinct pairs, within each group, averaged over groups.

    Args:
        features: ``N x D`` (or ``N x ...``, flattened) float tensor, one row per sample.
        groups: ``N`` int tensor of group ids (conditions); None puts all samples in one group.

    Returns:
        The average over groups with at least two members of the mean distance between distinct pairs of that
        group; 0.0 if no group has two members.
    """
    x = features.detach().flatten(1).double()
    if groups is None:
        groups = torch.zeros(len(x), dtype=torch.int64)
    values = []
    for g in torch.unique(groups):
        xs = x[groups == g]
        m = len(xs)
        if m < 2:
            continue
        d = torch.cdist(xs, xs)
        values.append(d.sum().item() / (m * (m - 1)))
    return float(sum(values) / len(values)) if values else 0.0
