"""Shared parts of the CLIP-based image rewards (LAION aesthetic, HPSv2): loading open_clip models from local
files and a differentiable CLIP preprocessing written in torch.

open_clip (``pip install -e ".[images]"``) is imported only inside these functions, so importing this module (and
the registry) works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BenchsuiteError, ConfigError
from ..weights import WeightsFormatError

# OpenAI CLIP's normalisation, also open_clip's default for the LAION-trained ViT-H-14 that HPSv2 fine-tunes.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class MissingDependencyError(BenchsuiteError, ImportError):
    """An optional dependency is not installed. The message says which extra to install."""


def import_open_clip() -> Any:
    """The ``open_clip`` module, or ``MissingDependencyError`` naming the extra that provides it."""
    try:
        import open_clip
    except ImportError as exc:  # open_clip itself, or torchvision/timm failing to import under it
        raise MissingDependencyError(
            f"CLIP-based rewards need open_clip_torch and torchvision ({type(exc).__name__}: {exc}); "
            'pip install -e ".[images]" (on a CPU-only machine: torch==2.14.1 torchvision==0.29.1, see .ci/run)'
        ) from None
    return open_clip


def load_open_clip(model_name: str, checkpoint: str | Path, what: str) -> nn.Module:
    """An open_clip model of architecture ``model_name`` with the weights of the local file ``checkpoint``.

    Loading is open_clip's own ``create_model(model_name, pretrained=<file>)``: safetensors or ``torch.load(...,
    weights_only=True)``, a ``{"state_dict": ...}`` wrapper and a DDP ``module.`` prefix are unwrapped, and keys
    must match exactly (strict). The model comes back in eval mode with frozen parameters.

    Raises:
        ConfigError: ``model_name`` is not an open_clip model config.
        WeightsFormatError: the file is not a checkpoint of that architecture.
    """
    open_clip = import_open_clip()
    if model_name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {model_name!r} for {what}; "
                          "choose an open_clip config name (open_clip.list_models())")
    try:
        model = open_clip.create_model(model_name, pretrained=str(checkpoint), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - strict key mismatch, bad pickle, truncated file: one message
        detail = " ".join(str(exc).split())[:400] or type(exc).__name__  # one line, the offending keys first
        raise WeightsFormatError(f"{checkpoint} is not a {what} checkpoint for open_clip {model_name!r}: "
                                 f"{detail}") from exc
    return model.eval().requires_grad_(False)


def preprocess_config(model: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """``(size, mean, std)`` an open_clip model expects (its visual tower's preprocess config)."""
    open_clip = import_open_clip()
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", model.visual.image_size)
    if isinstance(size, Sequence):
        if len(set(size)) != 1:
            raise ConfigError(f"non-square CLIP input size {tuple(size)} is not supported")
        size = size[0]
    return int(size), tuple(cfg.get("mean", OPENAI_CLIP_MEAN)), tuple(cfg.get("std", OPENAI_CLIP_STD))


def clip_preprocess(images: Tensor, size: int, mean: Sequence[float] = OPENAI_CLIP_MEAN,
                    std: Sequence[float] = OPENAI_CLIP_STD, interpolation: str = "bicubic") -> Tensor:
    """CLIP's evaluation transform as differentiable tensor ops.

    Same steps as CLIP's PIL pipeline (``Resize(size)`` of the shorter side, ``CenterCrop(size)``, ``Normalize``),
    with an antialiased torch resize instead of PIL so gradients reach the pixels. Grayscale images are repeated
    to three channels. Values are not clipped after a bicubic resize (PIL's uint8 output would be).

    Args:
        images: ``B x C x H x W`` in [0, 1], C = 1 or 3.
        size: output side (224 for ViT-L/14 and ViT-H/14).
        interpolation: ``"bicubic"`` (CLIP's) or ``"bilinear"``.

    Returns:
        ``B x 3 x size x size``, normalised with ``mean`` and ``std``.
    """
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] != 3:
        raise ValueError(f"CLIP rewards take 1- or 3-channel images, got {images.shape[1]} channels")
    h, w = images.shape[-2:]
    if (h, w) != (size, size):
        # torchvision's Resize(int): the shorter side becomes ``size``, the longer one is scaled and truncated
        if h <= w:
            new_h, new_w = size, max(size, int(size * w / h))
        else:
            new_h, new_w = max(size, int(size * h / w)), size
        images = F.interpolate(images, size=(new_h, new_w), mode=interpolation, align_corners=False,
                               antialias=True)
        # torchvision's CenterCrop offsets
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        images = images[..., top:top + size, left:left + size]
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device)[:, None, None]
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean_t) / std_t


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]
