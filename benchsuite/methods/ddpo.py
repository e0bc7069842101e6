"""DDPO: policy gradient over the denoising chain (Black et al., arXiv 2305.13301).

Rules as in the paper and kvablack/ddpo-pytorch (``scripts/train.py``, ``ddpo_pytorch/stat_tracking.py``):
1. Sample B chains with the current policy, keep log p_old(x_{k+1} | x_k) of every step.
2. Advantage A = (r - mean_c) / (std_c + 1e-8) with per-condition running statistics (a buffer of recent
   rewards per condition; below ``stat_min_count`` entries the batch statistics are used), clipped to
   +-``adv_clip_max``.
3. ``ppo`` (DDPO-IS): for every (sample, step) pair, rho = exp(log p_theta - log p_old) and
   loss = mean max(-A rho, -A clip(rho, 1 - eps, 1 + eps)).
   ``reinforce`` (DDPO-SF): loss = -mean A log p_theta (gradient of the score function).
Log-probabilities are averaged over the D data dims, as ddpo-pytorch does
(``ddpo_pytorch/diffusers_patch/ddim_with_logprob.py``: ``log_prob.mean(dim=tuple(range(1, log_prob.ndim)))``):
that mean sets the scale of its 1e-4 clip range. The ratio of per-dim means is the D-th root of the ratio of
full densities, so with a sum the same clip range would be D times tighter (16,384 times on SD's 4 x 64 x 64
latents, 64 times on the 8 x 8 digits). ``log_prob_reduction="sum"`` keeps the full-density ratio (this suite's
convention before it followed the reference) for ablations.
Differences from ddpo-pytorch, none of which change the estimator: (sample, step) pairs of a minibatch go
through the denoiser in chunks of ``train_chunk`` pairs rather than one step at a time, and the trained steps
per chain are drawn with the method's generator; under several processes (``benchsuite.distributed``) the chains
are slices of one global draw and the minibatches are global (ddpo-pytorch seeds each process apart and shuffles
each process's samples on their own), so that N processes reproduce one process with the N-fold batch.

KL (``kl_coef`` > 0; the paper has none, ``kl_coef = 0`` is its rule): the reward of a chain becomes
r / sigma_r - kl_coef * KL_path, with KL_path the chain's path KL to the frozen pretrained model in nats (the sum
over steps of the per-step KL, measured along the sampled chain as the reference is run beside the policy) and
sigma_r the reward scale (``reward_norm``), before the per-condition advantage normalisation. This is DPOK's
KL-regularised reward (Fan et al. 2023, arXiv 2305.16381, which puts a per-step KL into the policy-gradient
reward), written on DDPO's estimator so that every method of the leaderboard has a KL knob to tune.

Paper defaults (SD 1.5, LoRA) are this config's field defaults; the presets for our backbones live in
``baselines/ddpo/defaults.yaml``.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .. import distributed
from ..budget import BudgetedOracle
from .base import ChainUpdateFields, Method, MethodConfig, OptimizerFields, RewardNormFields, check


@dataclass(frozen=True)
class DDPOConfig(RewardNormFields, OptimizerFields, ChainUpdateFields, MethodConfig):
    batch_size: int = 256
    """Chains sampled (= oracle queries) per iteration. Paper: 256."""
    lr: float = 3e-4
    """AdamW learning rate (``OptimizerFields``). Paper: 3e-4 with LoRA, 1e-5 for full fine-tuning; its weight
    decay, 1e-4 (the ddpo-pytorch default), is the shared default."""
    clip_range: float = 1e-4
    """PPO ratio clip epsilon (ppo variant)."""
    adv_clip_max: float = 5.0
    """Advantages are clipped to [-adv_clip_max, adv_clip_max]."""
    stat_buffer_size: int = 32
    """Rewards kept per condition for the running advantage statistics."""
    stat_min_count: int = 16
    """Below this many buffered rewards for a condition, the batch mean and std are used instead."""
    variant: Literal["ppo", "reinforce"] = "ppo"
    """``ppo``: DDPO-IS with ratio clipping; ``reinforce``: DDPO-SF."""
    kl_coef: float = 0.0
    """Weight of each chain's path KL in nats in its reward, against the reward divided by its scale
    (``reward_norm``): DPOK's KL-regularised reward. 0 (the paper): no KL term, and ``reward_norm`` changes nothing
    (the advantages are normalised anyway)."""
    log_prob_reduction: Literal["mean", "sum"] = "mean"
    """How per-dim log-densities enter the ratio: ``mean`` over dims (ddpo-pytorch, which its clip range assumes)
    or ``sum`` (the full density)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.log_prob_reduction in ("mean", "sum"), "log_prob_reduction must be 'mean' or 'sum'")
        check(self.clip_range > 0, "clip_range must be > 0")
        check(self.adv_clip_max > 0, "adv_clip_max must be > 0")
        check(self.stat_buffer_size >= 1, "stat_buffer_size must be >= 1")
        check(self.stat_min_count >= 1, "stat_min_count must be >= 1")
        check(self.variant in ("ppo", "reinforce"), "variant must be 'ppo' or 'reinforce'")
        check(self.kl_coef >= 0, "kl_coef must be >= 0")


class PerConditionStats:
    """Running reward statistics per condition for advantage normalisation (DDPO's per-prompt tracker).

    ``advantages`` first adds the batch's rewards to each condition's buffer, then normalises every reward by its
    condition's buffer mean and std, or by the whole batch's when the buffer holds fewer than ``min_count``.
    """

    def __init__(self, buffer_size: int, min_count: int):
        self.buffer_size, self.min_count = buffer_size, min_count
        self.buffers: dict[int, deque] = defaultdict(lambda: deque(maxlen=buffer_size))

    def advantages(self, rewards: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
        """``rewards``: ``B`` float; ``conditions``: ``B`` int or None (one shared buffer). Returns ``B``."""
        rewards = np.asarray(rewards, dtype=np.float64)
        keys = np.full(len(rewards), -1) if conditions is None else np.asarray(conditions)
        out = np.empty_like(rewards)
        for key in np.unique(keys):
            mask = keys == key
            buf = self.buffers[int(key)]
            buf.extend(rewards[mask].tolist())
            ref = np.asarray(buf) if len(buf) >= self.min_count else rewards
            out[mask] = (rewards[mask] - ref.mean()) / (ref.std() + 1e-8)
        return out

    def state_dict(self) -> dict[int, list[float]]:
        return {k: list(v) for k, v in self.buffers.items()}

    def load_state_dict(self, state: dict[int, list[float]]) -> None:
        self.buffers.clear()
        for k, v in state.items():
            self.buffers[int(k)].extend(v)


def ppo_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_range: float) -> Tensor:
    """Clipped surrogate, mean over pairs: max(-A rho, -A clip(rho, 1-eps, 1+eps)); all inputs ``N``."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


class DDPO(Method):
    """DDPO-IS (``variant=ppo``) and DDPO-SF (``variant=reinforce``)."""

    name = "ddpo"
    display_name = "DDPO"
    colour = "#0072B2"
    marker = "^"
    tune_params = ("lr", "kl_coef", "clip_range", "timestep_fraction")
    Config = DDPOConfig
    config: DDPOConfig
    data_parallel = True

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        c = self.config
        self.make_optimizer(c.lr, c.weight_decay)
        self.stats = PerConditionStats(c.stat_buffer_size, c.stat_min_count)
        self.reference = policy.frozen_copy() if c.kl_coef > 0 else None

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        # Data-parallel (see Method.query_batch): each process rolls out and queries its slice ``mine`` of the
        # global batch, computes the advantages of the whole batch from the gathered rewards, and trains on the
        # part of each global minibatch that it holds. With one process this is the plain step.
        c, policy = self.config, self.policy
        world = distributed.num_processes()
        policy.eval()
        batch = self.query_batch(oracle, reference=self.reference)
        traj, conds, rewards, mine = batch.trajectory, batch.conditions, batch.rewards, batch.rows
        total = len(rewards)
        self.reward_scale.update(rewards)
        shaped = rewards.detach().cpu().double()
        if batch.path_kl is not None:  # DPOK's KL-regularised reward
            shaped = shaped / self.reward_scale.value - c.kl_coef * batch.path_kl.detach().cpu().double()
        adv = self.stats.advantages(shaped.numpy(), None if conds is None else conds.cpu().numpy())
        adv = torch.from_numpy(adv[mine]).float().clamp(-c.adv_clip_max, c.adv_clip_max).to(traj.latents.device)

        T = traj.num_steps
        n_train = max(1, int(round(T * c.timestep_fraction)))
        totals = defaultdict(float)
        updates = 0
        policy.train()
        for _ in range(c.num_inner_epochs):
            order = torch.randperm(total, generator=self.generator)
            for start in range(0, total, c.train_batch_size * world):
                idx = order[start : start + c.train_batch_size * world]
                # which steps of each chain to train on (all of them by default), as flat (sample, step) pairs
                steps = torch.stack([torch.randperm(T, generator=self.generator)[:n_train] for _ in idx])
                own = (idx >= mine.start) & (idx < mine.stop)
                rows = (idx[own] - mine.start).repeat_interleave(n_train)
                ks = steps[own].flatten()
                stats = self._update(traj, adv, rows, ks, pairs=len(idx) * n_train)
                for key, value in stats.items():
                    totals[key] += value
                updates += 1
        policy.eval()
        out = {f"train/{k}": v / updates for k, v in totals.items()}
        out["train/reward_mean"] = rewards.mean().item()
        out["train/reward_std"] = rewards.std().item() if total > 1 else 0.0
        if batch.path_kl is not None:
            out["train/path_kl"] = batch.path_kl.mean().item()
        return out

    @property
    def log_prob_scale(self) -> float:
        """Factor from the policy's log-probs (summed over the D dims) to the ones the ratio uses: 1 / D for
        ``log_prob_reduction="mean"``, 1 for ``"sum"``."""
        return 1.0 / math.prod(self.policy.sample_shape) if self.config.log_prob_reduction == "mean" else 1.0

    def log_prob(self, x: Tensor, x_next: Tensor, k: Tensor, cond: Tensor | None) -> Tensor:
        """log p_theta(x_next | x) at step indices ``k`` as the ratio uses it (mean or sum over dims); ``N``."""
        return self.policy.log_prob(x, x_next, k, cond) * self.log_prob_scale

    def _update(self, traj, adv: Tensor, rows: Tensor, ks: Tensor, pairs: int | None = None) -> dict[str, float]:
        """One optimizer step on the (sample ``rows``, step ``ks``) pairs; returns diagnostics.

        ``pairs``: the minibatch's pairs over all processes. The loss is the mean over those, so each process
        weights its sum by ``processes / pairs`` (DDP averages the gradients), runs one forward pass at weight 0
        when it holds none of them (to take part in the gradient sync) and the diagnostics are summed over the
        processes. None: the loss and diagnostics are the means over this process's own pairs.
        """
        c, policy = self.config, self.policy
        device = traj.latents.device
        rows, ks = rows.to(device), ks.to(device)
        self.optimizer.zero_grad(set_to_none=True)
        total = len(rows) if pairs is None else pairs
        weight = 1 / total if pairs is None else distributed.num_processes() / total
        sums = torch.zeros(3, dtype=torch.float64)  # loss, clipped pairs, approx KL: summed over this process's pairs
        starts = list(range(0, len(rows), c.train_chunk)) or [None]
        for i, start in enumerate(starts):
            if start is None:
                r, k, w = torch.zeros(1, dtype=torch.long, device=device), ks.new_zeros(1), 0.0
            else:
                r, k, w = rows[start : start + c.train_chunk], ks[start : start + c.train_chunk], weight
            x, x_next = traj.latents[r, k], traj.latents[r, k + 1]
            cond = None if traj.conditions is None else traj.conditions[r]
            with distributed.sync_gradients(policy.denoiser, sync=i == len(starts) - 1):
                log_prob = self.log_prob(x, x_next, k, cond)
                old = traj.log_probs[r, k] * self.log_prob_scale
                if c.variant == "ppo":
                    loss = ppo_loss(log_prob, old, adv[r], c.clip_range)
                else:
                    loss = -(adv[r] * log_prob).mean()
                (loss * len(r) * w).backward()
            if start is not None:
                with torch.no_grad():
                    ratio = torch.exp(log_prob - old)
                    sums += torch.tensor([loss.item() * len(r), ((ratio - 1).abs() > c.clip_range).sum().item(),
                                          (0.5 * (log_prob - old).square()).sum().item()], dtype=torch.float64)
        grad_norm = self.clip_and_step(c.max_grad_norm)
        if pairs is not None:
            sums = distributed.gather(sums[None]).sum(0)
        loss_sum, clipfrac_sum, approx_kl_sum = sums.tolist()
        return {
            "loss": loss_sum / total,
            "clipfrac": clipfrac_sum / total,
            "approx_kl": approx_kl_sum / total,
            "grad_norm": float(grad_norm),
        }

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stats.load_state_dict(state["stats"])
