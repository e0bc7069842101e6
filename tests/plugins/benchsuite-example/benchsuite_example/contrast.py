"""``pixel-contrast``: how far each image's pixels spread around their mean (a differentiable toy reward)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from benchsuite.rewards.base import Reward


class PixelContrast(Reward):
    """The standard deviation of each image's pixels, in [0, 0.5] for images in [0, 1]: 0 for a flat image, 0.5 for
    one half black, half white. Differentiable."""

    name: ClassVar[str] = "pixel-contrast"
    version: ClassVar[str] = "0"
    differentiable: ClassVar[bool] = True

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        # samples: B x C x H x W in [0, 1] (validated by Reward.__call__); population std over all pixels
        return samples.flatten(1).std(1, correction=0)
