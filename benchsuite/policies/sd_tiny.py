"""A tiny random-weight Stable Diffusion folder, for tests and the ``--tiny`` smoke mode of the SD benchmark.

``save_tiny_sd(folder)`` writes the layout of a diffusers Stable Diffusion repository (``model_index.json``,
``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) with models a few thousand parameters
large, so that the real loading code of ``benchsuite.policies.sd`` runs offline in a second. The tokenizer is a
byte-level BPE built here from a generated vocabulary (the 512 byte symbols with and without the end-of-word
mark, a few merges, CLIP's two special tokens), since no tokenizer file ships with any package.

Sizes follow the shape of SD 1.5 (4 latent channels, a VAE that downsamples, cross-attention on prompt
embeddings, the scheduler config of SD 1.5) at toy scale: the VAE downsamples by 2 (SD: 8), so a 16 px image has
a 4 x 8 x 8 latent. Nothing here is used by real runs.
"""

from __future__ import annotations

import json
from pathlib import Path

# SD 1.5's scheduler (scheduler/scheduler_config.json of the SD 1.5 repository: a PNDM config; our sampler reads
# its noise schedule and leading spacing with steps_offset = 1 through a DDIMScheduler).
SD15_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

TINY_UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 16,
    "attention_head_dim": 2,
    "norm_num_groups": 4,
}

TINY_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 16,
}

TINY_TEXT_LENGTH = 16  # tokens per prompt (SD: 77)
TINY_RESOLUTION = 16  # image side in pixels; latents are 4 x 8 x 8
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_MERGES = ("c a", "ca t</w>", "d o", "do g</w>", "f o", "fo x</w>", "a n", "an t</w>")


def _byte_symbols() -> list[str]:
    """The 256 printable unicode symbols byte-level BPE uses for the bytes 0..255 (GPT-2's table)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for _, c in sorted(zip(keep, codes))]


def tiny_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``(vocab, merges)`` of the tiny CLIP tokenizer: byte symbols, their end-of-word forms, merges, specials."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    for merge in _MERGES:
        tokens.append(merge.replace(" ", ""))
    tokens += list(_SPECIAL)
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}, [tuple(m.split(" ")) for m in _MERGES]


def save_tiny_sd(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random SD model as a diffusers folder and return its path.

    Args:
        folder: created if needed; subfolders ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``.
        seed: initialisation seed of the three models (the same seed writes the same weights).
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        UNet2DConditionModel(**TINY_UNET_CONFIG).save_pretrained(folder / "unet")
        AutoencoderKL(**TINY_VAE_CONFIG).save_pretrained(folder / "vae")
        text_config = CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=TINY_UNET_CONFIG["cross_attention_dim"], intermediate_size=32,
            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=TINY_TEXT_LENGTH,
            projection_dim=16, bos_token_id=vocab[_SPECIAL[0]], eos_token_id=vocab[_SPECIAL[1]],
            pad_token_id=vocab[_SPECIAL[1]],
        )
        CLIPTextModel(text_config).save_pretrained(folder / "text_encoder")
    CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TINY_TEXT_LENGTH).save_pretrained(folder / "tokenizer")
    DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
