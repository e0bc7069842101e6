"""``pretrained``: the reference every curve starts from. Samples and queries like a method, never updates."""

from __future__ import annotations

from ..budget import BudgetedOracle
from .base import Method


class Pretrained(Method):
    """The frozen pretrained model. It spends its budget on samples so that its train-reward curve is comparable
    with the fine-tuning methods', but its policy never changes."""

    name = "pretrained"
    display_name = "pretrained"
    colour = "#999999"
    marker = "o"
    tune_params = ()
    trains_policy = False
    data_parallel = True

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        return {"train/reward_mean": self.query_batch(oracle).rewards.mean().item()}
