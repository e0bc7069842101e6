"""Tiny components for tests and examples: a random-init denoiser and policy small enough for unit tests of the
sampler math, and a closed-form differentiable reward. Nothing here is used by real runs."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .policies.base import DiffusionPolicy
from .rewards.base import Reward

TINY_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "timestep_spacing": "trailing",
}


class TinyDenoiser(nn.Module):
    """eps(x, t, c) = MLP([x, sin/cos(t), onehot(c)]) for ``B x *S`` inputs; a few hundred parameters."""

    def __init__(self, sample_shape: tuple[int, ...] = (1, 2, 2), num_classes: int = 3, hidden: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.sample_shape, self.num_classes = tuple(sample_shape), num_classes
        d = int(torch.tensor(sample_shape).prod())
        self.net = nn.Sequential(nn.Linear(d + 2 + num_classes + 1, hidden), nn.SiLU(), nn.Linear(hidden, d))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        tf = t.float()[:, None] / 1000
        onehot = torch.zeros(len(x), self.num_classes + 1)
        onehot[torch.arange(len(x)), self.num_classes if cond is None else cond] = 1
        h = torch.cat([x.flatten(1), torch.sin(3 * tf), torch.cos(3 * tf), onehot], 1)
        return self.net(h).view(len(x), *self.sample_shape)


def tiny_policy(num_steps: int = 5, eta: float = 1.0, sample_shape=(1, 2, 2), guidance_scale: float = 1.0,
                seed: int = 0) -> DiffusionPolicy:
    """A ``DiffusionPolicy`` over a ``TinyDenoiser`` with classes 0..2 and null class 3."""
    return DiffusionPolicy(
        TinyDenoiser(sample_shape, seed=seed), TINY_SCHEDULER_CONFIG, sample_shape,
        decoder=lambda x: ((x + 1) / 2).clamp(0, 1), num_steps=num_steps, eta=eta,
        guidance_scale=guidance_scale, null_condition=3,
    )


class MeanBrightness(Reward):
    """Differentiable toy reward: the mean pixel value of each image."""

    name: ClassVar[str] = "mean-brightness"
    differentiable: ClassVar[bool] = True

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        return samples.flatten(1).mean(1)


NONDETERMINISTIC_METRICS = ("cost/wall_s", "cost/peak_rss_mb", "cost/peak_cuda_mb")


def deterministic(metrics: dict) -> dict:
    """``metrics`` without the ones that measure the machine (wall time, peak memory)."""
    return {k: v for k, v in metrics.items() if k not in NONDETERMINISTIC_METRICS}
