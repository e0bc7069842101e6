"""Shared by gradient methods: reward gradients from the oracle, or from a surrogate fit to paid-for queries.

A method that backpropagates a reward needs ``d r / d x``. When the oracle is differentiable it gives that
directly (and charges the queries). When it is a black box (JPEG size, a wet-lab assay), the method still pays
for every sample it scores, and fits a small differentiable model to the (sample, condition, reward) triples it
has paid for; gradients then come from that model. Nothing else is free: the surrogate never sees a reward that
was not charged to the budget (shared/design/architecture.md: "surrogates trained on paid-for outputs are free").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..budget import BudgetedOracle
from ..errors import ConfigError
from ..spaces import RewardModel, SampleSpace
from .base import check

RewardGradients = Literal["auto", "oracle", "surrogate"]


@dataclass(frozen=True)
class SurrogateFields:
    """Config fields of a method that fits a surrogate reward, mixed into its ``Config`` dataclass
    (``class XConfig(SurrogateFields, MethodConfig)``); validated here once for all such methods."""

    surrogate_capacity: int = 4096
    """Surrogate: most recent paid-for queries kept for fitting."""
    surrogate_fit_steps: int = 50
    """Surrogate: Adam steps after each paid-for batch."""
    surrogate_fit_batch: int = 128
    """Surrogate: minibatch size of the fit."""
    surrogate_lr: float = 1e-3
    """Surrogate: Adam learning rate of the fit."""

    def __post_init__(self) -> None:
        super().__post_init__()  # cooperative: MethodConfig's checks run too
        check(self.surrogate_capacity >= 1, "surrogate_capacity must be >= 1")
        check(self.surrogate_fit_steps >= 1, "surrogate_fit_steps must be >= 1")
        check(self.surrogate_fit_batch >= 1, "surrogate_fit_batch must be >= 1")
        check(self.surrogate_lr > 0, "surrogate_lr must be > 0")


@dataclass(frozen=True)
class RewardGradientFields(SurrogateFields):
    """``SurrogateFields`` plus the choice of where reward gradients come from (gradient methods)."""

    reward_gradients: RewardGradients = "auto"
    """Where d r / d x comes from: ``oracle`` (must be differentiable), ``surrogate`` (a model fit to paid-for
    queries), or ``auto`` (the oracle if it is differentiable, else the surrogate)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.reward_gradients in ("auto", "oracle", "surrogate"),
              "reward_gradients must be 'auto', 'oracle' or 'surrogate'")


class SurrogateReward:
    """A ``RewardModel`` (CNN) over the samples' picture view (``space.as_image``: images as they are, sequences
    as a 1 x L strip with V channels) plus the data it is fit on. Targets are standardised; outputs are on the
    reward scale.

    Args:
        space: the policy's sample space (``policy.space``).
        num_conditions: number of condition ids (None: unconditional).
        config: the method's config (its ``SurrogateFields``).
        generator: randomness of minibatch draws (the method's generator).
    """

    def __init__(self, space: SampleSpace, num_conditions: int | None, config: SurrogateFields,
                 generator: torch.Generator, device: torch.device | str = "cpu"):
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):  # initialise from the method's stream, not the global one
            torch.manual_seed(seed)
            self.model = RewardModel(space.image_channels, num_conditions).to(device)
        self.space = space
        self.model.requires_grad_(False)  # only fit() trains it; a method's backward should not fill its grads
        self.config, self.generator = config, generator
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.surrogate_lr)
        self.images: Tensor | None = None
        self.conditions: Tensor | None = None
        self.rewards: Tensor | None = None
        self.mean, self.std = 0.0, 1.0

    def add(self, images: Tensor, conditions: Tensor | None, rewards: Tensor) -> None:
        """Append paid-for data (samples ``B x ...``, ``B`` or None, ``B``); keeps the newest
        ``surrogate_capacity``."""
        images, rewards = images.detach(), rewards.detach().float()
        conds = conditions.detach() if conditions is not None else None
        if self.images is None:
            self.images, self.conditions, self.rewards = images, conds, rewards
        else:
            self.images = torch.cat([self.images, images])[-self.config.surrogate_capacity :]
            self.rewards = torch.cat([self.rewards, rewards])[-self.config.surrogate_capacity :]
            if conds is not None:
                self.conditions = torch.cat([self.conditions, conds])[-self.config.surrogate_capacity :]

    def fit(self) -> float:
        """``surrogate_fit_steps`` Adam steps of MSE on standardised targets; returns the last minibatch loss."""
        n = len(self.rewards)
        self.mean = self.rewards.mean().item()
        self.std = self.rewards.std().item() if n > 1 else 1.0
        self.std = self.std if self.std > 1e-8 else 1.0
        targets = (self.rewards - self.mean) / self.std
        self.model.requires_grad_(True)
        self.model.train()
        loss = torch.zeros(())
        for _ in range(self.config.surrogate_fit_steps):
            idx = torch.randint(n, (min(n, self.config.surrogate_fit_batch),), generator=self.generator)
            conds = None if self.conditions is None else self.conditions[idx]
            loss = (self.model(self.space.as_image(self.images[idx]), conds) - targets[idx]).square().mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.model.eval()
        self.model.requires_grad_(False)
        return loss.item()

    def __call__(self, images: Tensor, conditions: Tensor | None) -> Tensor:
        """Predicted rewards, ``B``, differentiable w.r.t. ``images`` (the model's weights are not updated)."""
        return self.model(self.space.as_image(images), conditions) * self.std + self.mean

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "images": self.images, "conditions": self.conditions, "rewards": self.rewards,
                "mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.images, self.conditions, self.rewards = state["images"], state["conditions"], state["rewards"]
        self.mean, self.std = state["mean"], state["std"]


def check_reward_gradients(mode: RewardGradients, oracle_differentiable: bool, method: str) -> bool:
    """Decide at setup whether to use a surrogate; raise a clear error for an impossible combination.

    Returns True when the method must fit a surrogate.
    """
    if mode == "oracle" and not oracle_differentiable:
        raise ConfigError(
            f"{method} needs reward gradients but this task's oracle is not differentiable; "
            f"use --set method.reward_gradients=surrogate (a model fit to paid-for queries) or a differentiable task"
        )
    return mode == "surrogate" or (mode == "auto" and not oracle_differentiable)


def differentiable_reward(oracle: BudgetedOracle, surrogate: SurrogateReward | None, images: Tensor,
                          conditions: Tensor | None) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Score ``images`` (which may require grad) and return rewards to differentiate.

    Always charges ``len(images)`` queries. Returns ``(r_grad, r_true, info)``: ``r_grad`` is ``B`` with
    gradients to ``images`` (from the oracle, or from the surrogate after adding the paid-for rewards and
    refitting); ``r_true`` is the oracle's detached ``B`` answer.
    """
    if surrogate is None:
        r = oracle(images, conditions)
        return r, r.detach(), {}
    r_true = oracle(images.detach(), conditions).detach()
    surrogate.add(images, conditions, r_true)
    loss = surrogate.fit()
    return surrogate(images, conditions), r_true, {"train/surrogate_loss": loss}
