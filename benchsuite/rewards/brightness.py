"""``mean-brightness``: the mean pixel value of each image, a closed-form differentiable reward.

The oracle of the toy cards (``toy-brightness-v0``, ``toy-online-v0``) and of ``digits-ink-v0`` (how much ink a
digit carries). Written for this suite.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .base import Reward


class MeanBrightness(Reward):
    """Differentiable toy reward: the mean pixel value of each image."""

    name: ClassVar[str] = "mean-brightness"
    differentiable: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        return samples.flatten(1).mean(1)
