"""Sample spaces: what a backbone's decoded samples are, and everything in the suite that depends on it.

Each backbone owns one (``policy.space``, set by its factory); evaluation, online rounds, ask/tell and the runner's
sample grids call it instead of looking at a tensor's shape or a reward's ``sample_kind``:

| need | method | images | sequences | molecules (SELFIES) |
| --- | --- | --- | --- | --- |
| diversity and drift | ``features``, ``metrics`` | pixels (pooled above 32 px): L2 diversity, cosine Vendi, Fréchet distance | token ids: Hamming diversity and Vendi, novelty, token-frequency TV drift | as sequences, plus Tanimoto diversity |
| sample grids | ``render`` | image tiles | monospace text rows | RDKit structure drawings (SMILES text rows without RDKit) |
| ask files | ``records`` | one PNG per candidate | the string and its token ids | SELFIES and SMILES |
| online surrogates | ``reward_model`` | small CNN | dilated 1-D CNN | dilated 1-D CNN |
| decoding | ``decode`` / ``encode`` | PIL images | strings, one symbol per token | SELFIES strings (``smiles`` for SMILES) |

Samples here are what ``policy.decode`` returns and rewards score: images ``B x C x H x W`` in [0, 1]; sequences
``B x V x L`` per-position token probabilities (``benchsuite.policies.sequence``).

A new backbone passes its space to ``DiffusionPolicy(space=...)``; without one a policy gets an ``ImageSpace`` with
the sample's channel count (decoders that map pixels to pixels, as the tiny test backbone's).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .domains.molecules import (MOLECULES_INSTALL, SELFIES_ALPHABET, rdkit_available, selfies_to_smiles,
                                tanimoto_diversity, tokens_to_smiles)
from .grids import molecule_grid, sample_grid, text_grid
from .metrics import frechet_distance, mean_pairwise_distance, vendi_score
from .metrics.diversity import condition_groups
from .metrics.sequences import hamming_vendi, mean_pairwise_hamming, novelty

log = logging.getLogger(__name__)

FEATURE_SIZE = 32
"""Images larger than this are average-pooled to ``FEATURE_SIZE x FEATURE_SIZE`` before the pixel metrics."""


class SampleSpace(ABC):
    """The decoded samples of one backbone (see the module docstring). Subclasses implement every abstract method;
    ``encode`` where decoding can be inverted."""

    kind: ClassVar[str]
    """A name for people (log lines, reprs); nothing dispatches on it."""
    grid_panel: ClassVar[str] = "tiles"
    """How the report cuts this space's sample grids (``render``) into figure panels (``grids.GRID_PANELS``):
    ``tiles`` (a grid of image tiles: the first columns of every row, 4 panels per row) or ``rows`` (one text row
    or drawing per sample, best first: the best rows, 2 panels per row)."""

    @abstractmethod
    def check(self, samples: Tensor) -> None:
        """Raise ``ValueError`` unless ``samples`` is a batch of this space (shape and dtype)."""

    @abstractmethod
    def features(self, samples: Tensor) -> Tensor:
        """``N x D`` features the space's diversity and drift metrics compare."""

    @abstractmethod
    def metrics(self, samples: Tensor, conditions: Tensor | None, reference: Tensor | None) -> dict[str, float]:
        """Diversity and drift of ``samples`` (``conditions``: ``N`` ids or None; ``reference``: the pretrained
        model's eval samples, or None before there are any): ``eval/diversity``, ``eval/vendi`` and the space's own
        (``eval/fd_pretrained`` for images; novelty, ``eval/drift_tv`` ... for sequences)."""

    @abstractmethod
    def render(self, samples: Tensor, conditions: Tensor | None, rewards: Tensor | None = None,
               label: str = "reward") -> np.ndarray:
        """A sample grid: an ``H x W x 3`` uint8 picture of ``samples`` with their ``rewards`` (``label`` says
        what the rewards are)."""

    @abstractmethod
    def records(self, samples: Tensor, ids: Sequence[str], folder: Path) -> list[dict[str, str]]:
        """One dict of ask-file columns per candidate, telling whoever scores it what it is; may write files
        (created under ``folder``) that the columns name."""

    @abstractmethod
    def decode(self, samples: Tensor) -> list[Any]:
        """The samples as the domain's objects (PIL images, strings)."""

    def encode(self, objects: Sequence[Any]) -> Tensor:
        """The inverse of ``decode``, up to its rounding: objects back to a batch of samples."""
        raise NotImplementedError(f"{type(self).__name__} cannot encode objects")

    @abstractmethod
    def reward_model(self, num_conditions: int | None, width: int) -> nn.Module:
        """A fresh differentiable regressor ``(samples B x ..., conditions B | None) -> B`` of this space's
        surrogate family: the members of online rounds' ensembles."""

    @property
    @abstractmethod
    def image_channels(self) -> int:
        """C of ``as_image``."""

    @abstractmethod
    def as_image(self, samples: Tensor) -> Tensor:
        """The samples as a ``B x C x H x W`` picture for image models (the CNN of gradient methods' black-box
        surrogate, ``methods.surrogate.SurrogateReward``); differentiable."""


def to_uint8(images: Tensor) -> Tensor:
    """Quantize ``B x C x H x W`` images in [0, 1] to uint8 the way PIL would receive them (round half up)."""
    return (images.detach().clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)


def _grouped_mean(values: Callable[[Tensor], float], features: Tensor, conditions: Tensor | None) -> float:
    """Mean over condition groups of ``values`` of each group's features."""
    return float(np.mean([values(features[idx]) for idx in condition_groups(len(features), conditions)]))


class ImageSpace(SampleSpace):
    """Images ``B x C x H x W`` in [0, 1].

    Args:
        channels: C (1 grey, 3 RGB).
    """

    kind: ClassVar[str] = "image"

    def __init__(self, channels: int):
        if channels not in (1, 3):
            raise ValueError(f"images have 1 (grey) or 3 (RGB) channels, got {channels}")
        self.channels = int(channels)

    def __repr__(self) -> str:
        return f"ImageSpace(channels={self.channels})"

    def check(self, samples: Tensor) -> None:
        if samples.ndim != 4 or samples.shape[1] != self.channels or not samples.is_floating_point():
            raise ValueError(f"expected a B x {self.channels} x H x W float image batch, got shape "
                             f"{tuple(samples.shape)} and dtype {samples.dtype}")

    def features(self, samples: Tensor) -> Tensor:
        """Pixels as metric features, ``N x D``: unchanged up to ``FEATURE_SIZE`` px (the digits' 8 x 8),
        area-averaged down to ``FEATURE_SIZE`` px above it, so that diversity, Vendi and the Fréchet drift stay
        cheap and well-posed for 512 px Stable Diffusion images (a covariance over 786k raw pixels is neither)."""
        if max(samples.shape[-2:]) > FEATURE_SIZE:
            samples = torch.nn.functional.adaptive_avg_pool2d(samples.float(), FEATURE_SIZE)
        return samples.flatten(1)

    def metrics(self, samples: Tensor, conditions: Tensor | None, reference: Tensor | None) -> dict[str, float]:
        """``eval/diversity`` (mean pairwise L2 distance within a condition), ``eval/vendi`` (cosine Vendi score
        per condition), both averaged over conditions, and ``eval/fd_pretrained`` (Fréchet distance of the
        features to ``reference``'s) when a reference is given."""
        feats = self.features(samples)
        out = {"eval/diversity": mean_pairwise_distance(feats, conditions), "eval/vendi": vendi_score(feats, conditions)}
        if reference is not None:
            out["eval/fd_pretrained"] = frechet_distance(feats, self.features(reference))
        return out

    def render(self, samples: Tensor, conditions: Tensor | None, rewards: Tensor | None = None,
               label: str = "reward") -> np.ndarray:
        return sample_grid(samples, conditions, rewards, label=label)

    def records(self, samples: Tensor, ids: Sequence[str], folder: Path) -> list[dict[str, str]]:
        """``{"file": "<folder>/<id>.png"}`` per candidate, the PNG written there (8-bit, as rewards quantize)."""
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for i, image in zip(ids, self.decode(samples)):
            path = folder / f"{i}.png"
            image.save(path)
            out.append({"file": str(path)})
        return out

    @property
    def _mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def decode(self, samples: Tensor) -> list[Any]:
        """PIL images (mode ``L`` or ``RGB``), 8 bits per pixel as rewards quantize them (``to_uint8``)."""
        from PIL import Image

        arrays = to_uint8(samples).cpu().permute(0, 2, 3, 1).numpy()  # B x H x W x C
        return [Image.fromarray(a[..., 0] if self._mode == "L" else a, self._mode) for a in arrays]

    def encode(self, objects: Sequence[Any]) -> Tensor:
        """PIL images -> ``B x C x H x W`` float in [0, 1] (converted to this space's mode)."""
        arrays = np.stack([np.asarray(o.convert(self._mode), dtype=np.uint8) for o in objects])
        return torch.from_numpy(arrays).reshape(*arrays.shape[:3], self.channels).permute(0, 3, 1, 2).float() / 255

    def reward_model(self, num_conditions: int | None, width: int = 32) -> nn.Module:
        return RewardModel(self.channels, num_conditions, width=width)

    @property
    def image_channels(self) -> int:
        return self.channels

    def as_image(self, samples: Tensor) -> Tensor:
        """The images themselves."""
        return samples


DEFAULT_SYMBOLS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""Symbols of sequence tokens without a domain alphabet: token i is ``DEFAULT_SYMBOLS[i]`` (its base-36 digit up to
35, so the 32 Ehrlich states read 0..9, A..V)."""


def one_hot_tokens(tokens: Tensor, vocab_size: int) -> Tensor:
    """``B x L`` token ids -> ``B x V x L`` one-hot float samples: the inverse of ``SequenceSpace.tokens``, for the
    methods that make sequences themselves (the GAs, REINVENT) and hand them to the oracle as the backbone would."""
    return torch.nn.functional.one_hot(tokens, vocab_size).permute(0, 2, 1).float()


class SequenceSpace(SampleSpace):
    """Token sequences, ``B x V x L`` per-position probabilities over a vocabulary of V symbols.

    Args:
        vocab_size, length: V and L.
        symbols: the string of each token id (default ``DEFAULT_SYMBOLS[:V]``); a sequence decodes to their
            concatenation, so no symbol may be a prefix of another (one character each, or bracketed as SELFIES).
        pretraining_data: a no-argument callable returning the backbone's training sequences (``N x L`` int64),
            the reference of the novelty metrics; None: no novelty metrics.
    """

    kind: ClassVar[str] = "sequence"
    grid_panel: ClassVar[str] = "rows"  # text rows (molecules: a row of drawings), best first
    what: ClassVar[str] = "sequence"
    """What a decoded string is, for grid headers."""

    def __init__(self, vocab_size: int, length: int, symbols: Sequence[str] | None = None,
                 pretraining_data: Callable[[], Tensor] | None = None):
        if symbols is None:
            if vocab_size > len(DEFAULT_SYMBOLS):
                raise ValueError(f"{vocab_size} tokens need their own symbols (at most {len(DEFAULT_SYMBOLS)} "
                                 "have default ones)")
            symbols = DEFAULT_SYMBOLS[:vocab_size]
        self.symbols = tuple(symbols)
        if len(self.symbols) != vocab_size or len(set(self.symbols)) != vocab_size:
            raise ValueError(f"need {vocab_size} distinct symbols, got {len(set(self.symbols))}")
        if any(a != b and b.startswith(a) for a in self.symbols for b in self.symbols):
            raise ValueError("no symbol may be a prefix of another (strings would not split back into tokens)")
        self.vocab_size, self.length = int(vocab_size), int(length)
        self.pretraining_data = pretraining_data
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, length={self.length})"

    def check(self, samples: Tensor) -> None:
        if samples.ndim != 3 or samples.shape[1:] != (self.vocab_size, self.length) or not samples.is_floating_point():
            raise ValueError(f"expected B x {self.vocab_size} x {self.length} float token probabilities, got shape "
                             f"{tuple(samples.shape)} and dtype {samples.dtype}")

    def tokens(self, samples: Tensor) -> Tensor:
        """``B x L`` int64 token ids (argmax over V), on the CPU."""
        return samples.detach().argmax(1).cpu()

    def features(self, samples: Tensor) -> Tensor:
        """The token ids, ``N x L`` int64: the Hamming metrics compare them position by position."""
        return self.tokens(samples)

    def metrics(self, samples: Tensor, conditions: Tensor | None, reference: Tensor | None) -> dict[str, float]:
        """``eval/diversity`` (mean pairwise normalised Hamming distance, per condition, averaged), ``eval/vendi``
        (Hamming-kernel Vendi score), ``eval/novelty_frac`` and ``eval/novelty_hamming`` against the pretraining
        data when the space has it, the domain's own (``_domain_metrics``) and ``eval/drift_tv`` (mean over
        positions of the total-variation distance between token frequencies and the reference's)."""
        tokens = self.features(samples)
        out = {"eval/diversity": _grouped_mean(mean_pairwise_hamming, tokens, conditions),
               "eval/vendi": _grouped_mean(hamming_vendi, tokens, conditions)}
        if self.pretraining_data is not None:
            out["eval/novelty_frac"], out["eval/novelty_hamming"] = novelty(tokens, self.pretraining_data().cpu())
        out.update(self._domain_metrics(tokens))
        if reference is not None:
            freq = torch.nn.functional.one_hot(tokens, self.vocab_size).float().mean(0)  # L x V
            ref = torch.nn.functional.one_hot(self.features(reference), self.vocab_size).float().mean(0)
            out["eval/drift_tv"] = 0.5 * (freq - ref).abs().sum(1).mean().item()
        return out

    def _domain_metrics(self, tokens: Tensor) -> dict[str, float]:
        """Metrics of a subclass's domain (``N x L`` tokens); none for plain sequences."""
        return {}

    def render(self, samples: Tensor, conditions: Tensor | None, rewards: Tensor | None = None,
               label: str = "reward") -> np.ndarray:
        """Monospace text rows: the best 32 by reward, each its reward and its decoded string."""
        return text_grid(self.decode(samples), rewards, label=label, what=self.what)

    def records(self, samples: Tensor, ids: Sequence[str], folder: Path) -> list[dict[str, str]]:
        """``sequence`` (the decoded string) and ``tokens`` (space-separated token ids) per candidate."""
        return [{"sequence": s, "tokens": " ".join(map(str, row))}
                for s, row in zip(self.decode(samples), self.tokens(samples).tolist())]

    def decode(self, samples: Tensor) -> list[str]:
        """One string per sample: the symbols of its tokens, concatenated."""
        return ["".join(self.symbols[i] for i in row) for row in self.tokens(samples).tolist()]

    def encode(self, objects: Sequence[str]) -> Tensor:
        """Strings of exactly L symbols -> ``B x V x L`` one-hot probabilities (``ValueError`` on anything else)."""
        out = torch.zeros(len(objects), self.vocab_size, self.length)
        for b, text in enumerate(objects):
            ids = self._split(text)
            out[b, ids, torch.arange(self.length)] = 1.0
        return out

    def _split(self, text: str) -> list[int]:
        ids, pos, widths = [], 0, sorted({len(s) for s in self.symbols}, reverse=True)
        while pos < len(text):
            match = next((text[pos:pos + w] for w in widths if text[pos:pos + w] in self._index), None)
            if match is None:
                raise ValueError(f"{text[pos:pos + 12]!r}... starts with no symbol of this space")
            ids.append(self._index[match])
            pos += len(match)
        if len(ids) != self.length:
            raise ValueError(f"a sequence of this space has {self.length} symbols, got {len(ids)}")
        return ids

    def reward_model(self, num_conditions: int | None, width: int = 64) -> nn.Module:
        return SequenceRewardModel(self.vocab_size, num_conditions, width=width)

    @property
    def image_channels(self) -> int:
        return self.vocab_size

    def as_image(self, samples: Tensor) -> Tensor:
        """``B x V x 1 x L``: a one-pixel-high strip with V channels (3 x 3 kernels act as width 3)."""
        return samples.unsqueeze(2)


class MoleculeSpace(SequenceSpace):
    """Molecules as SELFIES token sequences over ``benchsuite.domains.molecules.SELFIES_ALPHABET``.

    Decodes to SELFIES strings (padding ``[nop]`` kept, so that they encode back exactly) and, with ``smiles``, to
    SMILES. Grids are RDKit structure drawings with their rewards; without RDKit (the ``molecules`` extra) they are
    SMILES text rows, said once in the log.

    Args:
        length: L.
        pretraining_data: as ``SequenceSpace``.
    """

    kind: ClassVar[str] = "molecule"
    what: ClassVar[str] = "SMILES"

    def __init__(self, length: int, pretraining_data: Callable[[], Tensor] | None = None):
        super().__init__(len(SELFIES_ALPHABET), length, SELFIES_ALPHABET, pretraining_data)

    def smiles(self, samples: Tensor) -> list[str]:
        """One SMILES per sample (``""`` for the empty molecule), decoded by ``selfies``."""
        return selfies_to_smiles(self.decode(samples))

    def _domain_metrics(self, tokens: Tensor) -> dict[str, float]:
        """``eval/tanimoto_diversity``: mean pairwise Morgan-fingerprint Tanimoto distance of the molecules."""
        return {"eval/tanimoto_diversity": tanimoto_diversity(tokens_to_smiles(tokens))}

    def render(self, samples: Tensor, conditions: Tensor | None, rewards: Tensor | None = None,
               label: str = "reward") -> np.ndarray:
        """RDKit drawings of the best 16 molecules by reward; SMILES text rows without RDKit."""
        smiles = self.smiles(samples)
        if rdkit_available():
            return molecule_grid(smiles, rewards, label=label)
        _warn_no_rdkit()
        return text_grid([s or "(empty molecule)" for s in smiles], rewards, label=label, what=self.what)

    def records(self, samples: Tensor, ids: Sequence[str], folder: Path) -> list[dict[str, str]]:
        """``selfies`` and ``smiles`` per candidate."""
        return [{"selfies": a, "smiles": b} for a, b in zip(self.decode(samples), self.smiles(samples))]


_warned: set[str] = set()


def _warn_no_rdkit() -> None:
    """One log line per process: molecule grids fall back to SMILES text rows."""
    if "rdkit" not in _warned:
        _warned.add("rdkit")
        log.warning("RDKit is not installed: molecule grids are SMILES text rows instead of structure drawings "
                    "(install it with: %s)", MOLECULES_INSTALL)


# ---- surrogate families ------------------------------------------------------------------------------------
class RewardModel(nn.Module):
    """A small CNN regressor ``images (B x C x H x W) -> (B,)`` with an optional condition embedding: the image
    space's surrogate family (``ImageSpace.reward_model``), and the CNN of gradient methods' black-box surrogate
    (``methods.surrogate.SurrogateReward``) over any space's picture view.

    Global average pooling makes it independent of the image size.
    """

    def __init__(self, channels: int, num_conditions: int | None, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.embed = nn.Embedding(num_conditions + 1, 2 * width) if num_conditions else None
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, 1))

    def forward(self, images: Tensor, conditions: Tensor | None) -> Tensor:
        return _head(self, self.features(images), conditions)


class SequenceRewardModel(nn.Module):
    """Regressor ``B x V x L`` token probabilities -> ``B``: dilated 1-D convolutions (receptive field 31
    positions over 4 layers), mean and max pooling over positions, an MLP head: the sequence spaces' surrogate
    family (``SequenceSpace.reward_model``)."""

    def __init__(self, vocab: int, num_conditions: int | None, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(vocab, width, 3, padding=1), nn.SiLU()]
        for dilation in (2, 4, 8):
            layers += [nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.embed = nn.Embedding(num_conditions + 1, 2 * width) if num_conditions else None
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, 1))

    def forward(self, x: Tensor, conditions: Tensor | None) -> Tensor:
        h = self.features(x)
        return _head(self, torch.cat([h.mean(2), h.amax(2)], dim=1), conditions)


def _head(model: RewardModel | SequenceRewardModel, h: Tensor, conditions: Tensor | None) -> Tensor:
    """The shared end of both surrogates: add the condition embedding (the last id stands for "unconditional")
    to the pooled features ``B x 2 width``, then the MLP head; returns ``B``."""
    if model.embed is not None:
        idx = conditions if conditions is not None else torch.full((len(h),), model.embed.num_embeddings - 1)
        h = h + model.embed(idx.to(h.device))
    return model.head(h).squeeze(-1)
