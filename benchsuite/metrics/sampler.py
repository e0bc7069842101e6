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
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # annotations only: metrics import nothing of the suite above them
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


@torch.no_grad()
def x0_predictor_quality(policy: DiffusionPolicy, predictors: dict, reward, conditions: Tensor | None, batch: int,
                         seed: int = 0) -> dict[str, Tensor]:
    """How well x0 predictors anticipate the final sample, state by state, along the policy's own chains.

    Args:
        policy: the sampler whose chains are scored.
        predictors: name -> ``f(x: N x *S, state: N int64, cond) -> N x *S``; ``state`` is the chain's state index
            (1..T-1: the input of sampler step ``state``).
        reward: a ``Reward`` applied to decoded predictions and final samples.
        conditions, batch: the chains (``batch`` condition ids or None).

    Returns:
        name -> ``(T - 1) x 3``: per state 1..T-1, the RMSE of the predicted x0 against the chain's final x0 (pixel
        units; the posterior mean, Tweedie's estimate, minimises it by construction), the reward bias (mean over
        chains of r(prediction) - r(final sample): a blurry prediction is scored out of distribution) and the
        Pearson correlation of the two rewards across chains.
    """
    traj, _ = policy.rollout(conditions, torch.Generator().manual_seed(seed), batch=batch)
    final = traj.x0
    r_final = reward(policy.decode(final), traj.conditions).double()
    out = {}
    for name, predict in predictors.items():
        rows = []
        for j in range(1, policy.num_steps):
            state = torch.full((batch,), j, dtype=torch.int64, device=final.device)
            pred = predict(traj.latents[:, j], state, traj.conditions)
            rmse = (pred - final).square().flatten(1).mean(1).sqrt().mean()
            r = reward(policy.decode(pred), traj.conditions).double()
            corr = torch.corrcoef(torch.stack([r, r_final]))[0, 1]
            rows.append(torch.stack([rmse.double(), (r - r_final).mean(), corr]))
        out[name] = torch.stack(rows)
    return out
