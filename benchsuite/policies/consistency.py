"""A consistency model distilled from the embedded digits backbone: SQDF's few-step x0 predictor.

SQDF (arXiv 2512.04559) scores its soft-Q estimate r(x0_hat(x_t)) with a consistency model (LCM-LoRA on SD 1.5)
rather than one Tweedie step, because a one-step Tweedie estimate is the blurry posterior mean while a
consistency model maps x_t to a point on the probability-flow ODE trajectory through it: a sharp sample that
the reward sees as it would see a final sample. This module is that predictor for the digits backbone.

Model (consistency models, Song et al. 2023, arXiv 2303.01469; discrete-time parameterization of latent
consistency models, Luo et al. 2023, arXiv 2310.04378; our code):

    f(x_t, t, c) = c_skip(t) x_t + c_out(t) x0_pred(x_t, t, c),
    x0_pred      = clip((x_t - sqrt(1 - abar_t) eps_phi(x_t, t, c)) / sqrt(abar_t), -1, 1)   (as the sampler clips),
    c_skip(t)    = s^2 / ((k t)^2 + s^2),  c_out(t) = k t / sqrt((k t)^2 + s^2),  s = 0.5 (sigma_data), k = 10,

so f(x, 0) = x exactly (the boundary condition) and f ~ x0_pred for t >= 1. eps_phi is a ``UNet2DModel`` of the
backbone's architecture (``DIGITS_UNET_CONFIG``), initialized from the backbone's weights.

Distillation (``scripts/train_consistency_model.py``, every setting in ``CONSISTENCY_TRAIN_CONFIG``): for a digit x0
with label c (dropped to the null class with the backbone's probability), t_hi uniform in [skip, N - 1],
t_lo = t_hi - skip, x_hi = sqrt(abar_hi) x0 + sqrt(1 - abar_hi) n; one deterministic DDIM step of the frozen
backbone (the teacher) from x_hi to x_lo; loss = pseudo-Huber(f_phi(x_hi, t_hi, c) - f_phi-(x_lo, t_lo, c)) with
phi- an EMA of phi (the target network). Deterministic: fixed seed, one thread.

Weights ship beside the backbone's (``CONSISTENCY_WEIGHTS_PATH``); the metadata records the configs and a digest
of the teacher's weights, and loading refuses a file whose teacher differs from the shipped backbone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import MissingWeightsError
from ..weights import check_digest, sha256_file
from .digits import (DIGITS_SCHEDULER_CONFIG, DIGITS_UNET_CONFIG, NULL_CLASS, WEIGHTS_PATH, config_to_json,
                     load_digits_unet)

CONSISTENCY_TRAIN_CONFIG: dict[str, Any] = {
    "seed": 0,
    "steps": 4000,
    "batch_size": 64,
    "lr": 1e-4,
    "lr_schedule": "cosine, no warmup (the student starts at the teacher)",
    "weight_decay": 0.0,
    "grad_clip_norm": 1.0,
    "skip": 20,
    "target_ema_decay": 0.95,
    "huber_c": 0.001,
    "sigma_data": 0.5,
    "timestep_scaling": 10.0,
    "label_dropout": 0.1,
    "num_threads": 1,
}
"""Every setting of ``scripts/train_consistency_model.py`` (``skip``: training timesteps between the two points of
a consistency pair, LCM's skipping step with its 50-step DDIM grid; ``target_ema_decay``: of the target network,
LCM's 0.95; ``huber_c``: the pseudo-Huber constant, as in improved consistency training)."""

CONSISTENCY_WEIGHTS_PATH: Path = Path(__file__).resolve().parent / "weights" / "digits_consistency.safetensors"
TRAIN_SCRIPT = "python scripts/train_consistency_model.py"


def boundary_scalings(t: Tensor, sigma_data: float, timestep_scaling: float) -> tuple[Tensor, Tensor]:
    """``c_skip(t), c_out(t)`` for ``B`` timesteps (float): 1 and 0 at t = 0, -> 0 and 1 as t grows."""
    scaled = t.double() * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2).sqrt()
    return c_skip.float(), c_out.float()


class DigitsConsistencyModel(nn.Module):
    """``forward(x: B x 1 x 8 x 8, t: B int64, cond: B int64 | None) -> x0: B x 1 x 8 x 8``; ``cond=None`` is the
    null class. Built around a ``UNet2DModel`` eps-network; frozen when loaded."""

    def __init__(self, unet: nn.Module, alphas_cumprod: Tensor, null_class: int,
                 sigma_data: float = CONSISTENCY_TRAIN_CONFIG["sigma_data"],
                 timestep_scaling: float = CONSISTENCY_TRAIN_CONFIG["timestep_scaling"]):
        super().__init__()
        self.unet = unet
        self.null_class = null_class
        self.sigma_data, self.timestep_scaling = sigma_data, timestep_scaling
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        if cond is None:
            cond = torch.full((len(x),), self.null_class, dtype=torch.int64, device=x.device)
        a = self.alphas_cumprod.index_select(0, t.long()).view(-1, 1, 1, 1)
        eps = self.unet(x, t, class_labels=cond).sample
        x0_pred = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)  # the data range, as the sampler clips
        c_skip, c_out = boundary_scalings(t, self.sigma_data, self.timestep_scaling)
        return c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1) * x0_pred


def teacher_digest() -> str:
    """SHA-256 (16 hex digits) of the shipped backbone's weight file: the teacher a consistency model belongs to."""
    return sha256_file(WEIGHTS_PATH)[:16]


def build_consistency_model() -> DigitsConsistencyModel:
    """A consistency model initialized at the shipped backbone (the start of distillation), in train mode."""
    from diffusers import DDPMScheduler

    acp = DDPMScheduler(**DIGITS_SCHEDULER_CONFIG).alphas_cumprod
    return DigitsConsistencyModel(load_digits_unet().train(), acp, NULL_CLASS)


def load_consistency_model(path: str | Path | None = None) -> DigitsConsistencyModel:
    """The shipped consistency model, frozen and in eval mode.

    Raises:
        MissingWeightsError: the file is missing, or it was distilled from other backbone weights (stale).
        WeightsDigestError: the file differs from its line in its folder's ``SHA256SUMS``.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(CONSISTENCY_WEIGHTS_PATH if path is None else path)
    if not path.is_file():
        raise MissingWeightsError(f"digits consistency model not found at {path}; create it with: {TRAIN_SCRIPT}")
    check_digest(path, TRAIN_SCRIPT)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("teacher_digest") != teacher_digest():
        raise MissingWeightsError(f"stale digits consistency model at {path}: distilled from other backbone "
                                  f"weights; rebuild it with: {TRAIN_SCRIPT}")
    model = build_consistency_model()
    model.unet.load_state_dict(load_file(str(path)), strict=True)
    model.requires_grad_(False)
    return model.eval()


def metadata(train_config: dict[str, Any], final_loss: float) -> dict[str, str]:
    """What the weights file records."""
    return {"unet_config": config_to_json(DIGITS_UNET_CONFIG),
            "scheduler_config": config_to_json(DIGITS_SCHEDULER_CONFIG),
            "train_config": config_to_json(train_config), "teacher_digest": teacher_digest(),
            "final_loss": json.dumps(final_loss), "torch_version": torch.__version__}
