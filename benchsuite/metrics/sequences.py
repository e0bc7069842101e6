"""Metrics of sets of discrete sequences (the molecule-like black-box track) and of the oracle's query log."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def hamming_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Normalised Hamming distances between ``N x L`` and ``M x L`` int64 token sets: ``N x M`` in [0, 1]."""
    return (a[:, None, :] != b[None, :, :]).float().mean(-1)


def mean_pairwise_hamming(tokens: Tensor) -> float:
    """Mean normalised Hamming distance over distinct pairs of ``N x L`` tokens (0 if N < 2)."""
    n = len(tokens)
    if n < 2:
        return 0.0
    return hamming_matrix(tokens, tokens).sum().item() / (n * (n - 1))


def hamming_vendi(tokens: Tensor) -> float:
    """Vendi score (Friedman & Dieng 2023) with the similarity k(x, y) = 1 - Hamming(x, y) / L, a positive
    semi-definite kernel (the mean over positions of the delta kernel): exp of the entropy of the eigenvalues of
    K / n. Between 1 (all equal) and n."""
    n = len(tokens)
    k = 1.0 - hamming_matrix(tokens, tokens).double()
    eig = torch.linalg.eigvalsh(k / n).clamp(min=0)
    eig = eig[eig > 1e-12]
    return float(torch.exp(-(eig * eig.log()).sum()))


def novelty(tokens: Tensor, reference: Tensor) -> tuple[float, float]:
    """Novelty of ``tokens`` against a reference set (the pretraining data): the fraction of sequences not in it
    and the mean normalised Hamming distance to the nearest reference sequence."""
    rows = max(1, 2**24 // max(1, reference.numel()))  # bounds the N x M x L comparison tensor to ~16 M entries
    nearest = torch.cat([hamming_matrix(chunk, reference).min(1).values for chunk in tokens.split(rows)])
    return float((nearest > 0).float().mean()), float(nearest.mean())


def query_metrics(rewards: np.ndarray, top_k: int = 10, infeasible_value: float | None = None) -> dict[str, float]:
    """Oracle-side metrics of every query answered so far (in query order).

    Returns ``query/best`` (best so far), ``query/top{k}_mean`` (mean of the k best), ``query/last_batch_mean``
    is left to the training log; with ``infeasible_value`` also ``query/feasible_frac`` (share of queries that
    scored above the infeasible value).
    """
    if len(rewards) == 0:
        return {}
    r = np.sort(np.asarray(rewards, dtype=np.float64))[::-1]
    out = {"query/best": float(r[0]), f"query/top{top_k}_mean": float(r[:top_k].mean())}
    if infeasible_value is not None:
        out["query/feasible_frac"] = float((np.asarray(rewards) > infeasible_value).mean())
    return out
