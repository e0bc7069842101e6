"""Diversity of a set of samples, per condition (group) and averaged over conditions."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def condition_groups(n: int, groups: Tensor | None) -> list[Tensor]:
    """Index tensors of the samples of each group (condition id), in increasing id order; one group of all ``n``
    samples when ``groups`` is None."""
    g = torch.zeros(n, dtype=torch.int64) if groups is None else groups.detach().cpu()
    return [torch.nonzero(g == v).flatten() for v in torch.unique(g)]


def mean_pairwise_distance(features: Tensor, groups: Tensor | None = None) -> float:
    """Mean Euclidean distance over distinct pairs, within each group, averaged over groups.

    Args:
        features: ``N x D`` (or ``N x ...``, flattened) float tensor, one row per sample.
        groups: ``N`` int tensor of group ids (conditions); None puts all samples in one group.

    Returns:
        The average over groups with at least two members of the mean distance between distinct pairs of that
        group; 0.0 if no group has two members.
    """
    x = features.detach().flatten(1).double().cpu()
    values = []
    for idx in condition_groups(len(x), groups):
        m = len(idx)
        if m >= 2:
            values.append(torch.cdist(x[idx], x[idx]).sum().item() / (m * (m - 1)))
    return float(sum(values) / len(values)) if values else 0.0


def vendi_score(features: Tensor, groups: Tensor | None = None) -> float:
    """Vendi score (Friedman & Dieng 2023): exp of the entropy of the eigenvalues of K / n, with K the cosine
    similarity of the features; the effective number of distinct samples. Per group, averaged over groups.

    Args:
        features: ``N x D`` (or ``N x ...``) float tensor.
        groups: ``N`` group ids or None.

    Returns:
        Between 1 (all samples alike) and the group size (all orthogonal).
    """
    import warnings

    from vendi_score import vendi

    x = features.detach().flatten(1).double().cpu().numpy()
    with warnings.catch_warnings():  # vendi-score 0.0.3 touches a scipy namespace deprecated for SciPy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        values = [float(vendi.score_X(x[idx.numpy()], normalize=True)) for idx in condition_groups(len(x), groups)]
    return float(np.mean(values))
