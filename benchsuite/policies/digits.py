"""The embedded default backbone: a class-conditional DDPM on scikit-learn's 8x8 digits.

The model is a small diffusers ``UNet2DModel`` (about 0.7 M parameters) that predicts the noise ``epsilon``
of a ``1 x 8 x 8`` image in [-1, 1]. It is conditioned on a class id through ``class_labels``: ids
``0..9`` are the digits and ``NULL_CLASS`` (10) is the "no class" label. Training replaced the label by
``NULL_CLASS`` with probability ``TRAIN_CONFIG["label_dropout"]``, so the same network serves unconditional
sampling and classifier-free guidance.

Its weights ship inside the package (``WEIGHTS_PATH``, a few MB) and are produced by
``python scripts/train_digits_backbone.py``, which reads every setting from the dicts below. The weights
file records those dicts in its safetensors metadata; ``load_digits_unet`` refuses a file whose model
config differs from ``DIGITS_UNET_CONFIG``.

Everything here works offline: the digits ship with scikit-learn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from benchsuite.errors import MissingWeightsError
from benchsuite.weights import check_digest

if TYPE_CHECKING:
    from diffusers import UNet2DModel

NUM_CLASSES = 10
"""Number of digit classes (ids ``0..9``)."""

NULL_CLASS = 10
"""Class id meaning "unconditional"; the embedding table has ``NUM_CLASSES + 1`` rows."""

DIGITS_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "num_class_embeds": NUM_CLASSES + 1,
    "norm_num_groups": 8,
}
"""Keyword arguments of ``diffusers.UNet2DModel`` for the digits backbone."""

DIGITS_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_range": 1.0,
}
"""Keyword arguments of ``diffusers.DDPMScheduler`` used in training.

Samplers build other schedulers from the same dict (e.g. ``DDIMScheduler(**DIGITS_SCHEDULER_CONFIG,
set_alpha_to_one=False)``); every key is accepted by both DDPM and DDIM schedulers.
"""

TRAIN_CONFIG: dict[str, Any] = {
    "seed": 0,
    "steps": 2000,
    "batch_size": 64,
    "optimizer": "AdamW",
    "lr": 2e-3,
    "weight_decay": 0.0,
    "adam_betas": (0.9, 0.999),
    "lr_schedule": "cosine",
    "lr_warmup_steps": 100,
    "grad_clip_norm": 1.0,
    "label_dropout": 0.1,
    "ema_decay": 0.995,
    "data_scaling": "pixel / 16 -> [0, 1] -> x * 2 - 1 -> [-1, 1]",
    "num_threads": 1,
}
"""Every setting of the training run in ``scripts/train_digits_backbone.py``. The shipped weights are the
EMA weights (decay ``ema_decay``, updated after every optimizer step)."""

WEIGHTS_PATH: Path = Path(__file__).resolve().parent / "weights" / "digits_unet.safetensors"
"""Where the shipped weights live (inside the package)."""

TRAIN_SCRIPT = "python scripts/train_digits_backbone.py"
"""The command that (re)creates ``WEIGHTS_PATH``."""


def config_to_json(config: dict[str, Any]) -> str:
    """Serialize a config dict the way the weights metadata stores it (tuples become lists, keys sorted)."""
    return json.dumps(config, sort_keys=True)


def load_digits_images() -> tuple[Tensor, Tensor]:
    """All 1797 scikit-learn digits, scaled to the model's range.

    Returns:
        images: float32 ``N x 1 x 8 x 8`` tensor in [-1, 1] (``pixel / 16 * 2 - 1``), ``N = 1797``.
        labels: int64 ``N`` tensor of digit ids in ``0..9``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    return images * 2 - 1, labels


def training_batch(images: Tensor, labels: Tensor, batch_size: int, label_dropout: float,
                   generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """One training minibatch of the digits scripts: ``batch_size`` digits drawn with replacement, their labels
    replaced by ``NULL_CLASS`` with probability ``label_dropout``, and Gaussian noise of their shape (drawn in this
    order from ``generator``, which the shipped weights' determinism depends on). Returns ``x0, labels, noise``."""
    idx = torch.randint(len(images), (batch_size,), generator=generator)
    x0, y = images[idx], labels[idx].clone()
    y[torch.rand(len(y), generator=generator) < label_dropout] = NULL_CLASS
    return x0, y, torch.randn(x0.shape, generator=generator)


def build_digits_unet() -> UNet2DModel:
    """A randomly initialised ``diffusers.UNet2DModel`` built from ``DIGITS_UNET_CONFIG``.

    The model maps ``(x: B x 1 x 8 x 8, t: B or scalar, class_labels: B int64)`` to a ``B x 1 x 8 x 8``
    noise prediction (``.sample`` of its output).
    """
    from diffusers import UNet2DModel

    return UNet2DModel(**DIGITS_UNET_CONFIG)


def load_digits_unet(path: str | Path | None = None) -> UNet2DModel:
    """Build the digits UNet and load its trained weights; returned in eval mode.

    Args:
        path: a safetensors file written by ``scripts/train_digits_backbone.py``; default ``WEIGHTS_PATH``.

    Raises:
        MissingWeightsError: the file does not exist, or its recorded model config differs from
            ``DIGITS_UNET_CONFIG`` (stale weights). The message says how to regenerate it.
        WeightsDigestError: the file differs from its line in its folder's ``SHA256SUMS``.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(WEIGHTS_PATH if path is None else path)
    if not path.is_file():
        raise MissingWeightsError(f"digits backbone weights not found at {path}; create them with: {TRAIN_SCRIPT}")
    check_digest(path, TRAIN_SCRIPT)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    stored = metadata.get("unet_config")
    if stored is None or json.loads(stored) != json.loads(config_to_json(DIGITS_UNET_CONFIG)):
        raise MissingWeightsError(
            f"stale digits backbone weights at {path}: their recorded model config differs from "
            f"DIGITS_UNET_CONFIG; regenerate them with: {TRAIN_SCRIPT}"
        )
    model = build_digits_unet()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
