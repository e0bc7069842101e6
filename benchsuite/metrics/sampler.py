"""How a sampler grid spreads the path KL over its steps: the measure behind the ``-v1`` sampler grids.

Two views of one question, "if fine-tuning changes the model a little, which steps carry the KL?":

- per unit of eps change (closed form, no model): ``DiffusionPolicy.kl_sensitivity``, KL_k per unit of squared
  change of the predicted noise, (SNR' / SNR - 1) / 2 at eta = 1;
- per random parameter change (this module): perturb every weight tensor of the denoiser by a small Gaussian
  (``scale`` times its own std) and measure the per-step KL of the perturbed policy to the original along its
  own chains. This includes what the closed form leaves out: x0 clipping, and denoisers whose output cannot
  change at some steps (the sequence backbones' x0 prediction is exactly one-hot for t <= 149).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from ..policies.base import DiffusionPolicy


@torch.no_grad()
def parameter_kl_shares(policy: DiffusionPolicy, conditions: Tensor | None, batch: int, seed: int = 0,
                        scale: float = 0.01, directions: int = 3) -> Tensor:
    """Each step's share of the path KL under small random parameter changes, ``T`` (sums to 1).

    Args:
        policy: the (pretrained) policy; left unchanged.
        conditions: ``batch`` condition ids, or None.
        batch: chains per direction.
        seed: seeds the directions and the chains' noise.
        scale: each weight tensor with more than one entry moves by ``scale * its std * N(0, 1)``.
        directions: random parameter directions averaged over.

    Returns:
        ``T``: mean over directions of (mean over chains of KL_k) / (its sum over k).
    """
    g = torch.Generator().manual_seed(seed)
    shares = []
    for _ in range(directions):
        moved = copy.deepcopy(policy)
        for p in moved.denoiser.parameters():
            if p.numel() > 1:
                p.add_(scale * p.std() * torch.randn(p.shape, generator=g).to(p.device))
        _, kls = moved.rollout(conditions, g, batch=batch, reference=policy)
        per_step = kls.double().mean(0)
        shares.append(per_step / per_step.sum())
    return torch.stack(shares).mean(0)
