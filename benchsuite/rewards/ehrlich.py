"""Ehrlich rewards: the Ehrlich holo function value and feasibility of token sequences.

The function itself (holo's seeded construction, DMP, motifs, quantization) is defined in
``benchsuite.domains.ehrlich``, shared with the sequence backbones; its names are re-exported here. Rewards must be
finite, so ``Ehrlich`` scores an infeasible sequence ``infeasible_value`` (default -1.0) where holo returns -inf.

Inputs: ``B x V x L`` float per-position token probabilities (the sequence backbones' decoder output), argmax over
dim 1; ``B x L`` int64 token ids are accepted as well.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from benchsuite.domains.ehrlich import (  # noqa: F401 - re-exported: the reward's instance and its parts
    BAND_FRACTION,
    SOFTMAX_TEMPERATURE,
    EhrlichConfig,
    EhrlichFunction,
    circulant_band,
    ehrlich_function,
    is_ergodic,
    sample_markov_chains,
    stationary_distribution,
)
from benchsuite.errors import ConfigError

from .base import Reward


def sequence_tokens(samples: Tensor, vocab_size: int, length: int, who: str) -> Tensor:
    """``B x L`` int64 tokens from sequence-reward inputs, checking the vocabulary and length.

    Args:
        samples: ``B x V x L`` float per-position token probabilities (argmax over dim 1), or ``B x L`` integer ids.
        vocab_size, length: the V and L the reward expects.
        who: reward name for error messages.
    """
    if samples.is_floating_point():
        if samples.ndim != 3 or samples.shape[1:] != (vocab_size, length):
            raise ValueError(
                f"{who}: expected B x {vocab_size} x {length} token probabilities, got {tuple(samples.shape)}"
            )
        return samples.detach().argmax(1)
    if samples.ndim != 2 or samples.shape[1] != length:
        raise ValueError(f"{who}: expected B x {length} token ids, got {tuple(samples.shape)}")
    tokens = samples.long()
    if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"{who}: token ids must be in [0, {vocab_size}), got {int(tokens.min())}..{int(tokens.max())}")
    return tokens


class Ehrlich(Reward):
    """Ehrlich function value in [0, 1] for feasible sequences, ``infeasible_value`` otherwise. Not differentiable.

    Args:
        num_states, dim, num_motifs, motif_length, quantization, epistasis_factor, seed: the instance
            (``EhrlichConfig``; holo's ``random_seed`` is ``seed``).
        infeasible_value: the (finite) reward of a sequence with a banned transition; holo returns -inf.
    """

    name: ClassVar[str] = "ehrlich"
    version: ClassVar[str] = "0"
    differentiable: ClassVar[bool] = False
    sample_kind: ClassVar[str] = "sequence"
    value_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)  # with the default infeasible_value

    @classmethod
    def value_range_of(cls, infeasible_value: float = -1.0, **kwargs) -> tuple[float, float]:
        """[0, 1] widened to ``infeasible_value``."""
        return min(0.0, float(infeasible_value)), max(1.0, float(infeasible_value))

    def __init__(self, num_states: int = 32, dim: int = 32, num_motifs: int = 4, motif_length: int = 4,
                 quantization: int | None = None, epistasis_factor: float = 0.0, seed: int = 0,
                 infeasible_value: float = -1.0):
        if not math.isfinite(infeasible_value):
            raise ConfigError(f"ehrlich: infeasible_value must be finite, got {infeasible_value}")
        self.config = EhrlichConfig(num_states, dim, num_motifs, motif_length, quantization, epistasis_factor, seed)
        self.function = ehrlich_function(self.config)
        self.infeasible_value = float(infeasible_value)
        self.vocab_size, self.length = num_states, dim  # V and L of the inputs (every sequence reward has them)

    def tokens(self, samples: Tensor) -> Tensor:
        """``B x L`` int64 tokens of reward inputs (see ``sequence_tokens``)."""
        return sequence_tokens(samples, self.config.num_states, self.config.dim, self.name)

    def sample_feasible(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n x dim`` int64 feasible sequences from the instance's DMP (pretraining data)."""
        return self.function.sample(n, self.config.dim, generator)

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        value = self.function(self.tokens(samples).cpu())
        value = torch.where(torch.isfinite(value), value, torch.full_like(value, self.infeasible_value))
        return value.to(samples.device)


class EhrlichFeasibility(Ehrlich):
    """1.0 if the sequence has no banned transition of the instance's DMP, else 0.0 (a judge, not an objective).

    Takes the same instance arguments as ``Ehrlich`` (``infeasible_value`` is ignored).
    """

    name: ClassVar[str] = "ehrlich-feasibility"
    version: ClassVar[str] = "0"
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    @classmethod
    def value_range_of(cls, **kwargs) -> tuple[float, float]:
        return cls.value_range

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        return self.function.feasible(self.tokens(samples).cpu()).float().to(samples.device)
