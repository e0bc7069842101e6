"""``rwr``: reward-weighted regression over the denoising chain.

The idea of reward-weighted regression (Peters & Schaal, ICML 2007), as DDPO's RWR baseline applies it to diffusion
models (Black et al., arXiv 2305.13301, section 4.1): maximise the likelihood of the model's own samples, each
weighted by an exponential of its reward. DDPO's baseline weights the denoising loss of the final sample; this
version weights the log-likelihood of the whole sampled chain (every step of the Gaussian policy), so it needs only
the policy's ``log_prob``. Per step: sample B chains, query the oracle once per chain, standardise the rewards
within the batch, ``w = B * softmax(z / temperature)`` (mean 1), and take one AdamW step on
``loss = -mean_i w_i * mean_k log p_theta(x_{k+1} | x_k) / D`` (D: dims of a sample).

Written for the benchsuite-example plugin: a method built on ``benchsuite.methods.base.Method``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from benchsuite.budget import BudgetedOracle
from benchsuite.methods.base import Method, MethodConfig, OptimizerFields, check


@dataclass(frozen=True)
class RWRConfig(OptimizerFields, MethodConfig):
    """RWR's settings; ``lr`` and ``max_grad_norm`` are benchsuite's shared optimizer fields (``OptimizerFields``)."""

    batch_size: int = 64
    """Chains sampled (= oracle queries) per step."""
    weight_decay: float = 0.0
    """AdamW weight decay (``OptimizerFields``; 0 here)."""
    temperature: float = 0.5
    """Softmax temperature on the batch-standardised rewards: smaller weights the best samples more."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.temperature > 0, "temperature must be > 0")


class RewardWeightedRegression(Method):
    """Reward-weighted regression: maximises the likelihood of its own sampled denoising chains, each weighted by
    a softmax of its standardised reward (example plugin method, benchsuite-example)."""

    name = "rwr"
    # who it is in tables and figures: declared here, never inherited from a base method (check_method asks for them)
    display_name = "RWR"
    colour = "#6A3D9A"
    marker = "p"
    Config = RWRConfig
    config: RWRConfig

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        self.make_optimizer(self.config.lr, self.config.weight_decay)

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        c, policy = self.config, self.policy
        policy.eval()
        batch = self.query_batch(oracle)  # roll out the step's batch and query the oracle (benchsuite's helper)
        traj, rewards = batch.trajectory, batch.rewards.detach().float()
        n = len(rewards)
        z = (rewards - rewards.mean()) / (rewards.std(correction=0) + 1e-8)
        weights = (n * torch.softmax(z / c.temperature, 0)).to(traj.latents.device)  # mean 1
        scale = 1.0 / (traj.num_steps * math.prod(policy.sample_shape))
        policy.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for k in range(traj.num_steps):  # one denoiser pass per step of the chain, gradients accumulated
            log_prob = policy.log_prob(traj.latents[:, k], traj.latents[:, k + 1], k, traj.conditions)
            loss = -(weights * log_prob).mean() * scale
            loss.backward()
            loss_sum += loss.item()
        grad_norm = self.clip_and_step(c.max_grad_norm)
        policy.eval()
        return {"train/reward_mean": rewards.mean().item(), "train/loss": loss_sum, "train/grad_norm": grad_norm,
                "train/weight_max": weights.max().item()}

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
