"""Factories for the embedded backbones that ship with the package (no downloads)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from ..spaces import ImageSpace
from ..weights import embeds
from . import consistency, digits
from .base import DiffusionPolicy
from .consistency import load_consistency_model
from .digits import DIGITS_SCHEDULER_CONFIG, DIGITS_UNET_CONFIG, NULL_CLASS, load_digits_unet


class ClassConditionalUNet(nn.Module):
    """Adapts a diffusers ``UNet2DModel`` with class embeddings to ``forward(x, t, cond) -> eps``.

    ``cond=None`` means unconditional and uses ``null_class``.
    """

    def __init__(self, unet: nn.Module, null_class: int):
        super().__init__()
        self.unet = unet
        self.null_class = null_class

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        if cond is None:
            cond = t.new_full((len(x),), self.null_class)
        return self.unet(x, t, class_labels=cond).sample


def _to_unit_interval(x0: Tensor) -> Tensor:
    """[-1, 1] samples -> [0, 1] images."""
    return ((x0 + 1) / 2).clamp(0, 1)


def digits_weights(consistency_model: bool = True, **_: object) -> list[tuple[Path, str]]:
    """The embedded files ``digits_policy`` loads (with the commands that rebuild them)."""
    files = [(digits.WEIGHTS_PATH, digits.TRAIN_SCRIPT)]
    if consistency_model:
        files.append((consistency.CONSISTENCY_WEIGHTS_PATH, consistency.TRAIN_SCRIPT))
    return files


@embeds(digits_weights)
def digits_policy(num_steps: int = 20, eta: float = 1.0, guidance_scale: float = 1.0,
                  timestep_spacing: str = "trailing", max_timestep: int | None = None,
                  steps_offset: int | None = None, consistency_model: bool = True) -> DiffusionPolicy:
    """The pretrained 8x8 class-conditional digits model (shipped weights) as a ``DiffusionPolicy``.

    Conditions are digit classes 0..9; samples are ``1 x 8 x 8`` in [-1, 1], decoded to images in [0, 1].
    The sampler arguments are ``DiffusionPolicy``'s (the ``-v0`` cards use the trailing default, the ``-v1`` cards
    ``timestep_spacing="logsnr"`` from ``max_timestep=951``). ``consistency_model`` attaches the shipped consistency
    model distilled from this backbone as the policy's ``x0_predictor`` (``benchsuite.policies.consistency``).
    """
    unet = load_digits_unet()
    size = DIGITS_UNET_CONFIG["sample_size"]
    policy = DiffusionPolicy(
        ClassConditionalUNet(unet, NULL_CLASS),
        scheduler_config=DIGITS_SCHEDULER_CONFIG,
        sample_shape=(DIGITS_UNET_CONFIG["in_channels"], size, size),
        decoder=_to_unit_interval,
        num_steps=num_steps,
        eta=eta,
        guidance_scale=guidance_scale,
        null_condition=NULL_CLASS,
        timestep_spacing=timestep_spacing,
        max_timestep=max_timestep,
        steps_offset=steps_offset,
        space=ImageSpace(channels=1),
    )
    if consistency_model:
        policy.x0_predictor = load_consistency_model()
    return policy
