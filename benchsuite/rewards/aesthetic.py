"""LAION aesthetic predictor v2: a linear MLP head on L2-normalised CLIP ViT-L/14 image embeddings.

Model facts from christophschuhmann/improved-aesthetic-predictor (``simple_inference.py``, weights
``sac+logos+ava1-l14-linearMSE.pth``), the reward DDPO optimises (arXiv 2305.13301; kvablack/ddpo-pytorch
``ddpo_pytorch/aesthetic_scorer.py``):
- embedding: OpenAI CLIP ViT-L/14 ``encode_image`` (768-d), divided by its L2 norm;
- head: ``nn.Sequential`` named ``layers`` of Linear(768, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
  Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1), no activations (the "linear" in linearMSE), so
  the released state dict has the keys ``layers.{0,2,4,6,7}.{weight,bias}``;
- score: the head's output, roughly 1-10 (the AVA rating scale); no rescaling.

Ours: written anew; the CLIP backbone is open_clip's ``ViT-L-14-quickgelu`` (the OpenAI weights use QuickGELU)
loaded from a local open_clip checkpoint, and preprocessing is ``clip.clip_preprocess`` (differentiable) instead of
CLIP's PIL transform, so the reward is differentiable end to end.

Weights (``benchsuite weights fetch laion-aesthetic-head clip-vit-l-14-openai``): ``benchsuite.weights.AESTHETIC_HEAD``
(``$BENCHSUITE_AESTHETIC_WEIGHTS`` or ``<weights dir>/sac+logos+ava1-l14-linearMSE.pth``) and
``benchsuite.weights.CLIP_VIT_L_14_OPENAI`` (``$BENCHSUITE_CLIP_L14_WEIGHTS`` or
``<weights dir>/clip-vit-l-14-openai.safetensors``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights import AESTHETIC_HEAD, CLIP_VIT_L_14_OPENAI, WeightsFormatError, resolve
from .base import Reward
from .clip import clip_preprocess, load_open_clip, preprocess_config, resolve_dtype

HEAD_DIMS = (1024, 128, 64, 16, 1)
HEAD_DROPOUT = (0.2, 0.2, 0.1)  # after the first three linear layers (inactive in eval mode, kept for the keys)


class AestheticHead(nn.Module):
    """``in_dim``-1024-128-64-16-1 linear stack of the LAION aesthetic predictor v2.

    ``forward``: a ``B x in_dim`` tensor of (normalised) embeddings -> a ``B`` tensor of scores.
    """

    def __init__(self, in_dim: int = 768):
        super().__init__()
        mods: list[nn.Module] = []
        prev = in_dim
        for i, d in enumerate(HEAD_DIMS):
            mods.append(nn.Linear(prev, d))
            if i < len(HEAD_DROPOUT):
                mods.append(nn.Dropout(HEAD_DROPOUT[i]))
            prev = d
        self.layers = nn.Sequential(*mods)

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.layers(embeddings).squeeze(-1)


def load_aesthetic_head(path: str | os.PathLike, in_dim: int = 768) -> AestheticHead:
    """An ``AestheticHead`` with the state dict saved at ``path`` (``torch.load(weights_only=True)``).

    Raises:
        WeightsFormatError: the file is not a state dict with exactly the head's keys and shapes.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - not a torch file, or one holding more than tensors
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise WeightsFormatError(f"{path} is not a LAION aesthetic head state dict ({type(exc).__name__}: {first})") \
            from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    head = AestheticHead(in_dim)
    if not isinstance(state, dict):
        raise WeightsFormatError(f"{path} holds a {type(state).__name__}, not a LAION aesthetic head state dict")
    expected, got = set(head.state_dict()), set(state)
    if expected != got:
        missing, unexpected = sorted(expected - got), sorted(got - expected)
        raise WeightsFormatError(f"{path} is not a LAION aesthetic head state dict: missing keys {missing[:6]}, "
                                 f"unexpected keys {unexpected[:6]} (expected layers.{{0,2,4,6,7}}.weight/bias)")
    want = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    bad = [f"{k} {tuple(v.shape)} != {want[k]}" for k, v in state.items() if tuple(v.shape) != want[k]]
    if bad:
        raise WeightsFormatError(f"{path}: LAION aesthetic head shapes do not fit a {in_dim}-d CLIP embedding: "
                                 + "; ".join(bad[:3]))
    head.load_state_dict(state)
    return head.eval().requires_grad_(False)


class AestheticScorer(nn.Module):
    """CLIP image embedding -> L2 normalisation -> ``AestheticHead``.

    ``forward``: ``B x C x H x W`` images in [0, 1] -> ``B`` scores, differentiable w.r.t. the images.
    """

    def __init__(self, clip_model: nn.Module, head: AestheticHead):
        super().__init__()
        self.clip, self.head = clip_model, head
        self.size, self.mean, self.std = preprocess_config(clip_model)

    @classmethod
    def from_files(cls, clip_model_name: str, clip_path: str | Path, head_path: str | Path) -> AestheticScorer:
        clip_model = load_open_clip(clip_model_name, clip_path, "CLIP image encoder")
        in_dim = clip_model.visual.output_dim
        return cls(clip_model, load_aesthetic_head(head_path, in_dim)).eval()

    def embed(self, images: Tensor) -> Tensor:
        """``B x C x H x W`` in [0, 1] -> ``B x D`` unit-norm CLIP image embeddings."""
        pixels = clip_preprocess(images, self.size, self.mean, self.std)
        return F.normalize(self.clip.encode_image(pixels), dim=-1)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.embed(images))


class LaionAesthetic(Reward):
    """LAION aesthetic score (about 1-10) of each image. Conditions are ignored. Differentiable.

    Args:
        head_weights: path of the head ``.pth``; default: resolved from ``benchsuite.weights.AESTHETIC_HEAD``.
        clip_weights: path of the open_clip ViT-L/14 (OpenAI) checkpoint; default: resolved from
            ``benchsuite.weights.CLIP_VIT_L_14_OPENAI``.
        clip_model: open_clip config name of the backbone (tests pass a tiny one).
        dtype: compute dtype (``float32``, ``float16``, ``bfloat16``); rewards come back as float32.

    Weights are looked up, never downloaded, unless ``BENCHSUITE_ALLOW_DOWNLOADS=1`` (see ``benchsuite.weights``).
    """

    name: ClassVar[str] = "laion-aesthetic"
    version: ClassVar[str] = "0"
    differentiable: ClassVar[bool] = True

    def __init__(self, head_weights: str | None = None, clip_weights: str | None = None,
                 clip_model: str = "ViT-L-14-quickgelu", dtype: str = "float32"):
        self.dtype = resolve_dtype(dtype)
        head_path = resolve(AESTHETIC_HEAD, head_weights)
        clip_path = resolve(CLIP_VIT_L_14_OPENAI, clip_weights)
        self.scorer = AestheticScorer.from_files(clip_model, clip_path, head_path).to(self.dtype)
        self._device = torch.device("cpu")

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        if samples.device != self._device:
            self.scorer.to(samples.device)
            self._device = samples.device
        return self.scorer(samples.to(self.dtype)).float()
