"""How far fine-tuned samples drift from the pretrained model's."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from torch import Tensor


def frechet_distance(features: Tensor, reference: Tensor, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fit to two feature sets (the formula behind FID, Heusel et al. 2017):
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Args:
        features, reference: ``N x D`` and ``M x D`` (or ``N x ...``) float tensors; N, M >= 2.
        eps: added to both covariances' diagonals when their product is singular.

    Returns:
        A non-negative float; 0 for identical feature sets.
    """
    a = features.detach().flatten(1).double().cpu().numpy()
    b = reference.detach().flatten(1).double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(len(cov_a))
        covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = covmean.real
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean)
    return float(max(value, 0.0))
