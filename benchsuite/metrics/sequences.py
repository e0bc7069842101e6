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


def sequence_grid_panel(grid, rows: int = 16, cell_h: int = 12):
    """A report panel cut from a ``sequence_grid`` image (PIL): the header line dropped, the best ``rows``
    sequences kept."""
    from ..evaluation import GRID_HEADER_PX

    width, height = grid.size
    return grid.crop((0, GRID_HEADER_PX, width, min(height, GRID_HEADER_PX + rows * cell_h + 4)))


def sequence_grid(tokens: Tensor, vocab_size: int, rewards: Tensor | None = None, rows: int = 32,
                  label: str = "reward", cell_h: int = 12) -> np.ndarray:
    """An ``H x W x 3`` uint8 picture of sequences: one row per sequence (the ``rows`` best by reward), one
    coloured cell per position (colour = token id on a cyclic colour map), the reward printed left of each row."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw, ImageFont

    order = torch.argsort(rewards, descending=True)[:rows] if rewards is not None else torch.arange(min(rows, len(tokens)))
    cmap = colormaps["hsv"] if vocab_size > 20 else colormaps["tab20"]
    palette = (np.array([cmap(i / max(vocab_size, 1))[:3] for i in range(vocab_size)]) * 255).astype(np.uint8)
    tok = tokens[order].cpu().numpy()
    tile = palette[tok]  # R x L x 3
    cell_w = 8 if tok.shape[1] <= 64 else 5
    tile = np.kron(tile, np.ones((cell_h, cell_w, 1), dtype=np.uint8))
    font = ImageFont.load_default()
    from ..evaluation import GRID_HEADER_PX

    left, top = 52, GRID_HEADER_PX
    canvas = Image.new("RGB", (left + tile.shape[1] + 4, top + tile.shape[0] + 4), "white")
    canvas.paste(Image.fromarray(tile), (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((3, 2), f"best sequences by {label} (rows); colour = token; left: {label}", fill="black", font=font)
    if rewards is not None:
        for i, k in enumerate(order.tolist()):
            draw.text((3, top + i * cell_h), f"{float(rewards[k]):+.3f}", fill="black", font=font)
    return np.array(canvas)
