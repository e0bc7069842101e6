"""Human Preference Score v2 / v2.1: CLIP ViT-H/14 fine-tuned on human preferences (HPDv2), prompt-conditioned.

Model facts from tgxs002/HPSv2 (``hpsv2/img_score.py``; arXiv 2306.09341):
- architecture: open_clip ``ViT-H-14`` (the laion2B-s32B-b79K config, GELU), both towers fine-tuned;
- checkpoint: ``HPS_v2_compressed.pt`` / ``HPS_v2.1_compressed.pt`` (Hugging Face repo ``xswu/HPSv2``), a dict whose
  ``"state_dict"`` holds the whole CLIP model's weights, so no separate backbone file is needed;
- score: ``image_features @ text_features.T`` of the model's normalised features, the diagonal: the cosine
  similarity of image and prompt embeddings, with no logit scale (real images score about 0.2-0.35);
- preprocessing: open_clip's eval transform (bicubic resize of the shorter side to 224, centre crop, OpenAI
  mean/std).

Ours: written anew; open_clip loads the checkpoint (``clip.load_open_clip``), preprocessing is the differentiable
``clip.clip_preprocess``, and text embeddings of the prompt list are computed once per prompt and cached.

Weights (``benchsuite weights fetch hpsv2`` / ``hpsv2.1``): ``benchsuite.weights.HPSV2`` (``$BENCHSUITE_HPSV2_WEIGHTS`` or
``<weights dir>/HPS_v2_compressed.pt``) and ``benchsuite.weights.HPSV2_1`` (``$BENCHSUITE_HPSV21_WEIGHTS`` or
``<weights dir>/HPS_v2.1_compressed.pt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..prompts import load_prompts
from ..weights import HPSV2, HPSV2_1, WeightSpec, resolve
from .base import Reward
from .clip import clip_preprocess, import_open_clip, load_open_clip, preprocess_config, resolve_dtype


def as_prompt_list(prompts: str | Sequence[str]) -> tuple[str, ...]:
    """A prompt list given by name (``tasks/prompts/<name>.txt``) or explicitly."""
    if isinstance(prompts, str):
        return load_prompts(prompts)
    out = tuple(prompts)
    if not out or not all(isinstance(p, str) and p.strip() for p in out):
        raise ConfigError("prompts must be a prompt-list name or a non-empty sequence of non-empty strings")
    return out


class PromptImageScorer(nn.Module):
    """Cosine similarity of CLIP image embeddings and the embeddings of their prompts.

    ``forward(images, ids)``: ``B x C x H x W`` images in [0, 1] and ``B`` long prompt ids -> ``B`` scores,
    differentiable w.r.t. the images. Text embeddings are cached per prompt id (they do not depend on the images).
    """

    def __init__(self, clip_model: nn.Module, tokenizer: Any, prompts: tuple[str, ...]):
        super().__init__()
        self.clip, self.tokenizer, self.prompts = clip_model, tokenizer, prompts
        self.size, self.mean, self.std = preprocess_config(clip_model)
        self._text_cache: dict[int, Tensor] = {}

    def _apply(self, fn, *args, **kwargs):  # a device or dtype move invalidates the cached text embeddings
        self._text_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def embed_images(self, images: Tensor) -> Tensor:
        """``B x C x H x W`` in [0, 1] -> ``B x D`` unit-norm image embeddings."""
        pixels = clip_preprocess(images, self.size, self.mean, self.std)
        return F.normalize(self.clip.encode_image(pixels), dim=-1)

    @torch.no_grad()
    def embed_prompts(self, ids: Tensor) -> Tensor:
        """``B`` prompt ids -> ``B x D`` unit-norm text embeddings (cached)."""
        todo = sorted({int(i) for i in ids.tolist()} - self._text_cache.keys())
        if todo:
            device = next(self.clip.parameters()).device
            tokens = self.tokenizer([self.prompts[i] for i in todo]).to(device)
            feats = F.normalize(self.clip.encode_text(tokens), dim=-1)
            self._text_cache.update(zip(todo, feats))
        return torch.stack([self._text_cache[int(i)] for i in ids.tolist()])

    def forward(self, images: Tensor, ids: Tensor) -> Tensor:
        if len(images) == 0:
            return images.new_zeros(0)
        return (self.embed_images(images) * self.embed_prompts(ids)).sum(-1)


class HPSv2(Reward):
    """HPS v2.0 of each image for its prompt (cosine similarity, about 0.2-0.35 on real images). Differentiable.

    Args:
        prompts: the prompt list the condition ids index: a name (``tasks/prompts/<name>.txt``) or the prompts.
        weights: path of the HPS checkpoint; default: resolved from the class's ``weights_spec``.
        clip_model: open_clip config name of the architecture (tests pass a tiny one).
        dtype: compute dtype (``float32``, ``float16``, ``bfloat16``); rewards come back as float32.

    Weights are looked up, never downloaded, unless ``BENCHSUITE_ALLOW_DOWNLOADS=1`` (see ``benchsuite.weights``).
    """

    name: ClassVar[str] = "hpsv2"
    version: ClassVar[str] = "0"
    differentiable: ClassVar[bool] = True
    weights_spec: ClassVar[WeightSpec] = HPSV2

    def __init__(self, prompts: str | Sequence[str], weights: str | None = None, clip_model: str = "ViT-H-14",
                 dtype: str = "float32"):
        self.dtype = resolve_dtype(dtype)
        self.prompts = as_prompt_list(prompts)
        path: Path = resolve(self.weights_spec, weights)
        model = load_open_clip(clip_model, path, self.weights_spec.name)
        tokenizer = import_open_clip().get_tokenizer(clip_model)
        self.scorer = PromptImageScorer(model, tokenizer, self.prompts).to(self.dtype)
        self._device = torch.device("cpu")

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        if conditions is None:
            raise ValueError(f"{self.name} scores an image against its prompt: pass condition ids "
                             f"(indices into the {len(self.prompts)}-prompt list)")
        if conditions.numel() and (int(conditions.min()) < 0 or int(conditions.max()) >= len(self.prompts)):
            raise ValueError(f"{self.name}: condition ids must be in [0, {len(self.prompts)}), got "
                             f"[{int(conditions.min())}, {int(conditions.max())}]")
        if samples.device != self._device:
            self.scorer.to(samples.device)
            self._device = samples.device
        return self.scorer(samples.to(self.dtype), conditions).float()


class HPSv21(HPSv2):
    """HPS v2.1: the same model and score as ``HPSv2`` with the v2.1 checkpoint."""

    name: ClassVar[str] = "hpsv2.1"
    weights_spec: ClassVar[WeightSpec] = HPSV2_1
