"""Ehrlich holo functions: closed-form black-box objectives over token sequences with a feasibility constraint.

The problem definition shared by the Ehrlich rewards (``benchsuite.rewards.ehrlich`` scores with it) and the
sequence backbones (``benchsuite.policies.sequence`` trains on chains of its DMP): neither imports the other.

Definition from Stanton et al. 2024, "Closed-Form Test Functions for Biophysical Sequence Design" (arXiv
2407.00236). An instance over ``v`` states and length ``L`` has

- a discrete Markov process (DMP): a uniform initial distribution and an ergodic transition matrix ``A`` with
  some transitions banned (``A[i, j] = 0``). A sequence is **feasible** iff it contains no banned transition
  (the uniform initial distribution bans no first state);
- ``c`` motifs ``a_i`` of length ``k`` with spacings ``s_i`` (offsets ``0 = o_i1 < ... < o_ik``). The quality of
  motif i is ``h_i(x) = max_l #{j : x[l + o_ij] = a_ij} / k``, quantized to ``q`` levels;
- value ``f(x) = prod_i h_i(x)`` in [0, 1] for feasible x (1 iff every motif is present with its spacing).

The seeded construction reproduces pytorch-holo 0.0.5 (prescient-design/holo-bench,
``holo/test_functions/closed_form/_ehrlich.py`` and ``holo/test_functions/elemental/*.py``) draw for draw: the
same torch random calls in the same order on a ``torch.Generator`` seeded with ``seed``, so the same seed gives
the same transition matrix, motifs and spacings as ``holo.test_functions.closed_form.Ehrlich(random_seed=seed)``.
This module is our own code (tests compare it to stored holo values, ``tests/sequences/data/ehrlich_reference.json``,
and to live holo when it is importable). The construction, in holo's order:

1. ``A0 = softmax(randn(v, v) / 0.5, dim=-1)``;
2. allowed mask: a circulant band (``|i - j| <= int(0.4 v)`` modulo v), its rows permuted by ``randperm(v)``, the
   diagonal always allowed (repeats always feasible); ``A = A0 * mask``, rows renormalized. About 20 % of the
   transitions are banned: a uniformly random sequence of length 32 over 32 states is feasible with p ~ 5e-4;
3. motifs: one DMP chain of length ``c * k`` started from the stationary distribution, cut into c motifs (so a
   feasible optimum exists);
4. spacings: per motif, ``w = rand(k - 1); w /= w.sum()``; ``s = 1 + floor((L - c k) // c * w)``.

Quantization follows holo's ``motif_search``: with ``f1 = ceil(k / q)``, a count of n matching elements scores
``(n // f1) / (k / f1)``. ``epistasis_factor`` e maps each h to ``(1 + e h (h - 1)) h`` (holo's cubic response;
0 = off, the paper's default).

Infeasible sequences: holo returns ``-inf``. Rewards here must be finite, so ``Ehrlich`` returns
``infeasible_value`` (default **-1.0**, below every feasible value, so any method sees that breaking feasibility
is worse than any feasible sequence); ``EhrlichFunction.__call__`` keeps holo's ``-inf``.

The rewards (``benchsuite.rewards.ehrlich``) receive ``B x V x L`` float per-position token probabilities (the
sequence backbones' decoder output) and take the argmax over dim 1; ``B x L`` int64 token ids are accepted as well.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from benchsuite.errors import ConfigError

BAND_FRACTION = 0.4
"""Half-width of the allowed circulant band as a fraction of the number of states (holo: ``int(0.4 v)``)."""

SOFTMAX_TEMPERATURE = 0.5
"""Temperature of the softmax over Gaussian logits that gives the dense transition probabilities (holo: 0.5)."""


@dataclass(frozen=True)
class EhrlichConfig:
    """One Ehrlich instance (holo's ``Ehrlich`` keyword names in brackets).

    Attributes:
        num_states: v, the vocabulary size (``num_states``); at least 2.
        dim: L, the sequence length (``dim``).
        num_motifs: c (``num_motifs``); ``c * motif_length <= dim``.
        motif_length: k (``motif_length``); at least 2.
        quantization: q in 1..k (``quantization``); None means k (no quantization).
        epistasis_factor: e >= 0 (``epistasis_factor``); 0 makes f the plain product of motif qualities.
        seed: seed of the instance (``random_seed``); the same seed gives holo's instance.
    """

    num_states: int = 32
    dim: int = 32
    num_motifs: int = 4
    motif_length: int = 4
    quantization: int | None = None
    epistasis_factor: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        v, L, c, k, q = self.num_states, self.dim, self.num_motifs, self.motif_length, self.quantization
        if v < 2:
            raise ConfigError(f"ehrlich: num_states must be >= 2, got {v}")
        if k < 2:
            raise ConfigError(f"ehrlich: motif_length must be >= 2, got {k}")
        if c < 1:
            raise ConfigError(f"ehrlich: num_motifs must be >= 1, got {c}")
        if c * k > L:
            raise ConfigError(
                f"ehrlich: num_motifs * motif_length = {c * k} exceeds dim = {L}; use a longer dim or fewer motifs"
            )
        if q is not None and not 1 <= q <= k:
            raise ConfigError(f"ehrlich: quantization must be in 1..motif_length={k} or null, got {q}")
        if q is not None and k % math.ceil(k / q):
            # holo accepts these, but a fully present motif then scores below 1 (e.g. k=5, q=3: 0.8)
            raise ConfigError(
                f"ehrlich: quantization {q} with motif_length {k} caps a present motif below 1; "
                "choose q with ceil(k / q) dividing k (e.g. q = k)"
            )
        if self.epistasis_factor < 0:
            raise ConfigError(f"ehrlich: epistasis_factor must be >= 0, got {self.epistasis_factor}")

    @property
    def levels(self) -> int:
        """The effective quantization q (k when ``quantization`` is None)."""
        return self.motif_length if self.quantization is None else self.quantization


def circulant_band(n: int, half_width: int) -> Tensor:
    """``n x n`` bool: True where ``(j - i) mod n`` is within ``half_width`` of 0 on the circle."""
    i = torch.arange(n)
    d = (i[None, :] - i[:, None]) % n
    return (d <= half_width) | (d >= n - half_width)


def is_ergodic(transition_matrix: Tensor) -> bool:
    """Irreducible and aperiodic (primitive): some power of the support graph is all-positive.

    Checked on the boolean support by repeated squaring of ``(A > 0)`` up to an exponent past Wielandt's bound
    ``(n - 1)^2 + 1`` (a primitive matrix's powers stay positive from there on).
    """
    n = transition_matrix.shape[0]
    reach = (transition_matrix > 0).to(torch.float64)
    exponent = 1
    while exponent < (n - 1) ** 2 + 1:
        reach = ((reach @ reach) > 0).to(torch.float64)
        exponent *= 2
    return bool((reach > 0).all())


def stationary_distribution(transition_matrix: Tensor) -> Tensor:
    """pi with ``pi A = pi``, ``sum(pi) = 1`` (float64 solve, returned as float32 ``n``)."""
    a = transition_matrix.to(torch.float64)
    n = a.shape[0]
    system = (a.T - torch.eye(n, dtype=torch.float64))
    system[-1] = 1.0  # replace one (redundant) balance equation by the normalization
    rhs = torch.zeros(n, dtype=torch.float64)
    rhs[-1] = 1.0
    return torch.linalg.solve(system, rhs).clamp(min=0).to(torch.float32)


def sample_markov_chains(initial: Tensor, transition_matrix: Tensor, n: int, length: int,
                         generator: torch.Generator | None) -> Tensor:
    """``n x length`` int64 chains: first state ~ ``initial``, then each state ~ the row of the previous one.

    Draws in holo's order (one ``multinomial`` over the initial distribution, then one per position over the
    ``n`` current rows), so a generator seeded like holo's reproduces its DMP samples.
    """
    out = torch.empty(n, length, dtype=torch.int64)
    out[:, 0] = torch.multinomial(initial, n, replacement=True, generator=generator)
    for t in range(1, length):
        out[:, t] = torch.multinomial(transition_matrix[out[:, t - 1]], 1, generator=generator).squeeze(-1)
    return out


class EhrlichFunction:
    """An Ehrlich function from explicit parts (``generate`` builds the seeded instance).

    Args:
        transition_matrix: ``v x v`` row-stochastic; zeros are banned transitions.
        motifs: ``c x k`` int64 motif states.
        spacings: ``c x (k - 1)`` int64 gaps (>= 1) between consecutive motif elements.
        quantization: q in 1..k, or None for k.
        epistasis_factor: e >= 0 (see module docstring).
    """

    def __init__(self, transition_matrix: Tensor, motifs: Tensor, spacings: Tensor, quantization: int | None = None,
                 epistasis_factor: float = 0.0):
        v = transition_matrix.shape[0]
        if transition_matrix.shape != (v, v):
            raise ValueError(f"transition_matrix must be square, got {tuple(transition_matrix.shape)}")
        c, k = motifs.shape
        if spacings.shape != (c, k - 1) or bool((spacings < 1).any()):
            raise ValueError(f"spacings must be a {c} x {k - 1} tensor of gaps >= 1, got {spacings.tolist()}")
        self.transition_matrix = transition_matrix.float()
        self.num_states = v
        self.motifs = motifs.long()
        self.spacings = spacings.long()
        self.offsets = torch.cat([torch.zeros(c, 1, dtype=torch.int64), self.spacings.cumsum(1)], 1)  # c x k
        self.quantization = k if quantization is None else int(quantization)
        self.epistasis_factor = float(epistasis_factor)
        self.allowed = self.transition_matrix > 0
        self.stationary = stationary_distribution(self.transition_matrix)

    @classmethod
    def generate(cls, config: EhrlichConfig) -> EhrlichFunction:
        """The seeded instance of ``config`` (holo's construction; see the module docstring)."""
        v, L, c, k = config.num_states, config.dim, config.num_motifs, config.motif_length
        g = torch.Generator().manual_seed(config.seed)
        dense = (torch.randn(v, v, generator=g) / SOFTMAX_TEMPERATURE).softmax(-1)
        mask = circulant_band(v, int(v * BAND_FRACTION))[torch.randperm(v, generator=g)]
        mask |= torch.eye(v, dtype=torch.bool)
        matrix = torch.where(mask, dense, torch.zeros_like(dense))
        matrix = matrix / matrix.sum(-1, keepdim=True)
        if not is_ergodic(matrix):
            raise ConfigError(f"ehrlich: seed {config.seed} gives a non-ergodic transition matrix; use another seed")
        stationary = stationary_distribution(matrix)
        motifs = sample_markov_chains(stationary, matrix, 1, c * k, g).view(c, k)
        per_motif_slack = (L - c * k) // c
        spacings = []
        for _ in range(c):
            w = torch.rand(k - 1, generator=g)
            w = w / w.sum()
            spacings.append(1 + (per_motif_slack * w).floor().to(torch.int64))
        return cls(matrix, motifs, torch.stack(spacings), config.quantization, config.epistasis_factor)

    # ---- pieces of the value --------------------------------------------------------------------------
    def feasible(self, tokens: Tensor) -> Tensor:
        """``B`` bool: no banned transition between consecutive tokens of ``B x L`` int64 ``tokens``."""
        tokens = tokens.long()
        return self.allowed[tokens[:, :-1], tokens[:, 1:]].all(1)

    def motif_quality(self, tokens: Tensor) -> Tensor:
        """``c x B`` float32: each motif's quantized quality ``h_i`` (best placement over positions)."""
        tokens = tokens.long()
        L = tokens.shape[1]
        k = self.motifs.shape[1]
        f1 = math.ceil(k / self.quantization)
        out = []
        for motif, offsets in zip(self.motifs, self.offsets):
            starts = torch.arange(L - int(offsets[-1]))
            if len(starts) == 0:
                raise ValueError(f"sequences of length {L} are too short for motif offsets {offsets.tolist()}")
            window = tokens[:, starts[:, None] + offsets[None, :]]  # B x P x k
            count = (window == motif).sum(-1).amax(1).float()  # B: most elements matched at one placement
            out.append((count // f1) / (k / f1))
        return torch.stack(out)

    def __call__(self, tokens: Tensor) -> Tensor:
        """``B`` float32 values of ``B x L`` int64 tokens: the motif product, ``-inf`` where infeasible (holo)."""
        h = self.motif_quality(tokens)
        h = (1.0 + self.epistasis_factor * h * (h - 1.0)) * h
        value = h.prod(0)
        return torch.where(self.feasible(tokens), value, torch.full_like(value, -math.inf))

    # ---- sequences ----------------------------------------------------------------------------------------
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> Tensor:
        """``n x length`` feasible sequences from the DMP started at its stationary distribution.

        With a generator freshly seeded with the instance's seed this equals holo's ``initial_solution(n)``.
        """
        return sample_markov_chains(self.stationary, self.transition_matrix, n, length, generator)

    def optimal_solution(self, length: int) -> Tensor:
        """A length-``length`` sequence of value 1: the motifs laid out one after another, each gap filled by
        repeating the previous state (repeats are always allowed), the tail by the last state."""
        seq: list[int] = []
        for motif, spacing in zip(self.motifs.tolist(), self.spacings.tolist()):
            seq.append(motif[0])
            for state, gap in zip(motif[1:], spacing):
                seq.extend([seq[-1]] * (gap - 1) + [state])
        if len(seq) > length:
            raise ValueError(f"the motifs need {len(seq)} positions, more than {length}")
        return torch.tensor(seq + [seq[-1]] * (length - len(seq)), dtype=torch.int64)


@functools.lru_cache(maxsize=32)
def ehrlich_function(config: EhrlichConfig) -> EhrlichFunction:
    """The (cached) seeded instance of ``config``."""
    return EhrlichFunction.generate(config)
