"""JPEG (in)compressibility: the file size of the sample saved as a JPEG.

Definition from DDPO (arXiv 2305.13301; kvablack/ddpo-pytorch ``ddpo_pytorch/rewards.py``): quality 95, size in
kB = bytes / 1000, compressibility = -kB. flow_grpo rescales the same name by 1/500; our versioned task ids pin
this scale. Images smaller than a JPEG block barely vary in size (measured on 8x8 digits: 394 +- 3 bytes), so a
``render_size`` upsamples (bilinear) before encoding; at 32 px digits give 730 +- 27 bytes, a blank image 344.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .base import Reward, to_uint8


def jpeg_kilobytes(images: Tensor, quality: int = 95, render_size: int | None = None) -> Tensor:
    """Size in kB of each image saved as a JPEG.

    Args:
        images: ``B x C x H x W`` in [0, 1], C = 1 (grayscale) or 3 (RGB).
        quality: PIL JPEG quality.
        render_size: if set, images are resized (bilinear) to ``render_size x render_size`` first.

    Returns:
        ``B`` float32 tensor of kilobytes (1 kB = 1000 bytes).
    """
    images = images.detach().float().cpu()
    if images.shape[1] not in (1, 3):
        raise ValueError(f"JPEG rewards take 1- or 3-channel images, got {images.shape[1]} channels")
    if render_size is not None and images.shape[-1] != render_size:
        images = F.interpolate(images, size=(render_size, render_size), mode="bilinear", align_corners=False)
    arrays = to_uint8(images).permute(0, 2, 3, 1).numpy()
    sizes = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format="JPEG", quality=quality)
        sizes.append(buf.tell())
    return torch.from_numpy(np.asarray(sizes, dtype=np.float32) / 1000.0)


class JpegCompressibility(Reward):
    """Reward = -(JPEG size in kB). Not differentiable."""

    name: ClassVar[str] = "jpeg-compressibility"
    version: ClassVar[str] = "0"
    differentiable: ClassVar[bool] = False
    _sign: ClassVar[float] = -1.0

    def __init__(self, quality: int = 95, render_size: int | None = None):
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be in [1, 100], got {quality}")
        if render_size is not None and render_size < 1:
            raise ValueError(f"render_size must be positive, got {render_size}")
        self.quality = quality
        self.render_size = render_size

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        return self._sign * jpeg_kilobytes(samples, self.quality, self.render_size).to(samples.device)


class JpegIncompressibility(JpegCompressibility):
    """Reward = +(JPEG size in kB). Not differentiable."""

    name: ClassVar[str] = "jpeg-incompressibility"
    _sign: ClassVar[float] = 1.0
