"""``pretrained``: the reference every curve starts from. Samples and queries like a method, never updates."""

from __future__ import annotations

from ..budget import BudgetedOracle
from .base import Method


class Pretrained(Method):
    """The frozen pretrained model. It spends its budget on samples so that its train-reward curve is comparable
    with the fine-tuning methods', but its policy never changes."""

    name = "pretrained"
    trains_policy = False

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        n = self.batch_for(oracle)
        conds = self.sample_conditions(n)
        traj, _ = self.policy.rollout(conds, self.generator, batch=n)
        rewards = oracle(self.policy.decode(traj.x0), traj.conditions)
        return {"train/reward_mean": rewards.mean().item()}
