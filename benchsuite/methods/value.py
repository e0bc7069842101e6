"""Shared by VARD and continuous-time RL: a value network over intermediate states and its Monte-Carlo fit.

V_phi(x_t, t, c) predicts the expected final reward E[r(x_0, c) | x_t] of the current policy from a state of the
denoising chain. It is fit by regression on the rollouts the method has paid for: every state of a rollout gets
that rollout's final reward as its target (Monte-Carlo targets; their conditional mean is the value), and a small
replay of the most recent rollouts keeps the fit close to on-policy. Fitting is free: it only reuses rewards that
were charged to the budget (shared/design/architecture.md).

Written for this suite; the architecture (a small CNN, a sinusoidal timestep embedding and a condition embedding
added to the feature maps, global average pooling) is the usual shape of diffusion-time classifiers and value
heads, e.g. the noisy classifier of openai/guided-diffusion (``guided_diffusion/unet.py``, ``EncoderUNetModel``),
reduced to three convolutions so that it runs on any ``B x C x H x W`` sample shape, 2 x 2 included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..policies.base import DiffusionPolicy
from .base import check


@dataclass(frozen=True)
class ValueFields:
    """Config fields of a method that fits ``ValueFunction`` (VARD, ctrl), mixed into its ``Config`` dataclass
    and validated here once."""

    value_lr: float = 1e-3
    """Adam learning rate of the value network."""
    value_steps: int = 100
    """Value regression steps after each new batch of rollouts."""
    value_warmup_steps: int = 300
    """Value regression steps after the first batch (the network starts from scratch)."""
    value_batch: int = 256
    """(rollout, state) pairs per value regression step."""
    value_width: int = 32
    """Channel width of the value network."""
    replay_size: int = 256
    """Most recent rollouts kept for the value regression."""

    def __post_init__(self) -> None:
        super().__post_init__()  # cooperative: the other config bases' checks run too
        check(self.value_lr > 0, "value_lr must be > 0")
        check(self.value_steps >= 0, "value_steps must be >= 0")
        check(self.value_warmup_steps >= 0, "value_warmup_steps must be >= 0")
        check(self.value_batch >= 1, "value_batch must be >= 1")
        check(self.value_width >= 2 and self.value_width % 2 == 0, "value_width must be an even integer >= 2")
        check(self.replay_size >= 1, "replay_size must be >= 1")

def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) model timesteps: ``B`` -> ``B x dim`` (dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


def state_timesteps(policy: DiffusionPolicy) -> Tensor:
    """Model timestep of every state of a chain, ``T+1`` (int64): ``t_0 .. t_{T-1}`` for the inputs of the T
    steps, then 0 for the final sample x_0 (``latents[:, k]`` of a ``Trajectory`` sits at entry k)."""
    return torch.cat([policy.timesteps, policy.timesteps.new_zeros(1)])


def monte_carlo_targets(rewards: Tensor, num_states: int) -> Tensor:
    """Monte-Carlo value targets: every state of rollout i gets rollout i's final reward.

    Args:
        rewards: ``N`` final rewards r(x_0^i, c^i).
        num_states: states per rollout (T+1).

    Returns:
        ``N x num_states``; entry (i, k) is the regression target of V_phi at state k of rollout i.
    """
    return rewards[:, None].expand(len(rewards), num_states)


class ValueNetwork(nn.Module):
    """V_phi(x, t, c): ``x`` is ``B x C x H x W`` (any H, W >= 1), ``t`` is ``B`` model timesteps, ``c`` is ``B``
    int64 condition ids or None (the extra last embedding row stands for "unconditional"). Returns ``B``.

    The last layer starts at zero, so a fresh network predicts 0 everywhere: whatever the method puts around
    it (the reward mean for VARD, a Tweedie-composed surrogate for continuous-time RL) is the initial value.
    """

    def __init__(self, channels: int, num_conditions: int | None, width: int = 32):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.conv_down = nn.Conv2d(width, 2 * width, 3, padding=1, stride=2)
        self.conv_out = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.time_dim = width
        self.time_mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, 2 * width))
        self.embed = nn.Embedding(num_conditions + 1, 2 * width) if num_conditions else None
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))
        if self.embed is not None:
            idx = cond if cond is not None else torch.full((len(x),), self.embed.num_embeddings - 1)
            emb = emb + self.embed(idx.to(x.device))
        if x.ndim == 3:  # sequence states B x V x L: a 1 x L "image" with V channels
            x = x.unsqueeze(2)
        h = F.silu(self.conv_in(x))
        h = F.silu(self.conv_down(h) + emb[:, :, None, None])
        h = F.silu(self.conv_out(h) + emb[:, :, None, None])
        return self.head(h.mean((2, 3)) + emb).squeeze(-1)


class ValueFunction:
    """A ``ValueNetwork`` on the reward scale, the replay of recent rollouts it is fit on, and its optimizer.

    ``V(x, t, c) = offset + scale * net(x, t, c)`` where ``scale`` is the std of the replayed rewards and
    ``offset`` is their mean (VARD) or a per-state baseline the caller passes (continuous-time RL's
    ``r_hat(x0_hat(t, x))``); ``net`` is regressed on ``(target - offset) / scale``.

    Args:
        sample_shape: ``C x H x W`` of one state.
        num_conditions: number of condition ids (None: unconditional).
        state_t: ``T+1`` model timesteps of the states of a chain (``state_timesteps``).
        width: channel width of the network.
        lr: Adam learning rate of the fit.
        capacity: most recent rollouts kept in the replay.
        generator: the method's generator (network initialisation and minibatch draws).
    """

    def __init__(self, sample_shape: tuple[int, ...], num_conditions: int | None, state_t: Tensor, *, width: int,
                 lr: float, capacity: int, generator: torch.Generator, device: torch.device | str = "cpu"):
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):  # initialise from the method's stream, not the global one
            torch.manual_seed(seed)
            self.net = ValueNetwork(sample_shape[0], num_conditions, width).to(device)
        self.net.requires_grad_(False)  # only ``fit`` trains it; policy losses differentiate through it
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.state_t, self.capacity, self.generator = state_t.to(device), capacity, generator
        self.states: Tensor | None = None  # N x (T+1) x *S
        self.conditions: Tensor | None = None  # N
        self.rewards: Tensor | None = None  # N
        self.reward_grads: Tensor | None = None  # N x *S (differentiable oracles only)
        self.valid: Tensor | None = None  # N x (T+1) bool: the states the fit may draw
        self.mean, self.scale = 0.0, 1.0

    def add(self, states: Tensor, conditions: Tensor | None, rewards: Tensor, reward_grads: Tensor | None = None,
            valid: Tensor | None = None) -> None:
        """Append paid-for rollouts and keep the newest ``capacity``.

        Args:
            states: ``B x (T+1) x *S`` (a ``Trajectory``'s latents).
            conditions: ``B`` or None.
            rewards: ``B`` final rewards.
            reward_grads: ``B x *S`` gradients d r / d x_0 when the oracle is differentiable, else None.
            valid: ``B x (T+1)`` bool, the states the fit may draw (a caller that prepares per-state inputs for
                only some states); None means all of them.
        """
        if valid is None:
            valid = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)

        def push(old: Tensor | None, new: Tensor | None) -> Tensor | None:
            if new is None:
                return None
            new = new.detach()
            return new if old is None else torch.cat([old, new])[-self.capacity :]

        self.states = push(self.states, states)
        self.conditions = push(self.conditions, conditions)
        self.rewards = push(self.rewards, rewards.float())
        self.reward_grads = push(self.reward_grads, reward_grads)
        self.valid = push(self.valid, valid)

    def __len__(self) -> int:
        return 0 if self.rewards is None else len(self.rewards)

    def fit(self, steps: int, batch: int, offset: Callable[[Tensor, Tensor], Tensor] | None = None,
            grad_weight: float = 0.0) -> float:
        """``steps`` Adam steps of Monte-Carlo regression over (rollout, state) pairs drawn uniformly from the
        valid states of the replay.

        Args:
            steps, batch: optimizer steps and (rollout, state) pairs per step.
            offset: ``(rows, cols) -> B`` baseline of the states ``states[rows, cols]`` (no grad); None uses the
                replay's reward mean.
            grad_weight: if > 0 and reward gradients are stored, adds
                ``grad_weight * mean_i || d net(x_0^i, 0, c^i) / d x - (d r / d x_0^i) / scale ||^2`` over the
                final states of the minibatch's rollouts, so that V agrees with the reward to first order at t = 0.

        Returns:
            The last minibatch's regression loss (on standardised targets).
        """
        n, num_states = self.states.shape[:2]
        pairs = self.valid.nonzero()  # M x 2: (rollout, state)
        self.mean = self.rewards.mean().item()
        std = self.rewards.std().item() if n > 1 else 0.0
        self.scale = std if std > 1e-8 else 1.0
        targets = monte_carlo_targets(self.rewards, num_states)
        use_grads = grad_weight > 0 and self.reward_grads is not None
        self.net.requires_grad_(True)
        loss = torch.zeros(())
        for _ in range(steps):
            rows, cols = pairs[torch.randint(len(pairs), (batch,), generator=self.generator).to(pairs.device)].T
            base = self.mean if offset is None else offset(rows, cols)
            target = (targets[rows, cols] - base) / self.scale
            cond = None if self.conditions is None else self.conditions[rows]
            pred = self.net(self.states[rows, cols], self.state_t[cols], cond)
            loss = (pred - target).square().mean()
            total = loss
            if use_grads:
                x0 = self.states[rows, -1].clone().requires_grad_(True)
                v0 = self.net(x0, self.state_t[-1].expand(batch), cond)
                (g,) = torch.autograd.grad(v0.sum(), x0, create_graph=True)
                mismatch = (g - self.reward_grads[rows] / self.scale).flatten(1).square().sum(1)
                total = total + grad_weight * mismatch.mean()
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
        self.net.requires_grad_(False)
        return loss.item()

    def scaled(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """``scale * net(x, t, c)``, ``B``; differentiable w.r.t. ``x`` (the network's weights are frozen)."""
        return self.scale * self.net(x, t, cond)

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """``mean + scale * net(x, t, c)``: the value on the reward scale, ``B``, differentiable w.r.t. ``x``."""
        return self.mean + self.scaled(x, t, cond)

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "states": self.states,
                "conditions": self.conditions, "rewards": self.rewards, "reward_grads": self.reward_grads,
                "valid": self.valid, "mean": self.mean, "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.states, self.conditions, self.rewards = state["states"], state["conditions"], state["rewards"]
        self.reward_grads, self.valid = state["reward_grads"], state["valid"]
        self.mean, self.scale = state["mean"], state["scale"]


def num_conditions(train_conditions: Tensor | None) -> int | None:
    """Embedding size for condition ids: ``max id + 1`` (None when the task is unconditional)."""
    return None if train_conditions is None else int(train_conditions.max()) + 1
