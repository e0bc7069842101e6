"""Molecule oracles on SELFIES token sequences: RDKit QED and synthetic accessibility (SA).

Pipeline of both rewards: ``B x V x L`` probabilities -> argmax over V -> SELFIES string -> SMILES
(``selfies.decoder``) -> RDKit Mol -> score. Empty or unparsable molecules score ``invalid_value`` (0.0).

- ``selfies-qed``: RDKit's QED (Bickerton et al. 2012; ``rdkit.Chem.QED.qed``), in [0, 1], higher is better.
- ``selfies-sa``: ``(10 - SA) / 9`` in [0, 1] with SA the Ertl-Schuffenhauer synthetic accessibility score
  (``rdkit.Contrib.SA_Score.sascorer``; 1 = easy .. 10 = hard), so higher is better (more accessible).

The alphabet, conversions, scores and the pretraining process live in ``benchsuite.domains.molecules`` (shared with
the SELFIES backbone and its sample space) and are re-exported here. Both rewards need RDKit (the ``molecules``
extra): building one without it is a one-line error saying how to install it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from benchsuite.domains.molecules import (  # noqa: F401 - re-exported: the rewards' alphabet, conversions, scores
    GENERATIVE_WEIGHTS,
    MIN_HEAVY_ATOMS,
    PAD,
    RAW_LENGTH_RANGE,
    SELFIES_ALPHABET,
    SELFIES_LENGTH,
    mol_from_smiles,
    qed,
    require_rdkit,
    sa_score,
    sample_selfies_tokens,
    selfies_to_smiles,
    selfies_to_tokens,
    smiles_to_selfies,
    tanimoto_diversity,
    tokens_to_selfies,
    tokens_to_smiles,
)

from .base import Reward
from .ehrlich import sequence_tokens


# ---- rewards -----------------------------------------------------------------------------------------------
class _SelfiesReward(Reward):
    """Shared pipeline: probabilities -> tokens -> SMILES -> per-molecule score (``_molecule_score``)."""

    differentiable: ClassVar[bool] = False
    sample_kind: ClassVar[str] = "sequence"

    def __init__(self, length: int = SELFIES_LENGTH, invalid_value: float = 0.0):
        """Args:
            length: L of the token sequences.
            invalid_value: score of an empty or unparsable molecule.
        """
        require_rdkit(f"reward {self.name!r}")
        self.vocab_size, self.length = len(SELFIES_ALPHABET), int(length)  # V and L of the inputs
        self.invalid_value = float(invalid_value)

    def smiles(self, samples: Tensor) -> list[str]:
        """B SMILES of ``B x V x L`` probabilities (or ``B x L`` token ids)."""
        return tokens_to_smiles(sequence_tokens(samples, len(SELFIES_ALPHABET), self.length, self.name).cpu())

    @classmethod
    def value_range_of(cls, invalid_value: float = 0.0, **kwargs) -> tuple[float, float] | None:
        """The molecule score's range (``value_range``) widened to ``invalid_value``."""
        if cls.value_range is None:
            return None
        return min(cls.value_range[0], float(invalid_value)), max(cls.value_range[1], float(invalid_value))

    def _molecule_score(self, smiles: str) -> float | None:
        raise NotImplementedError

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        scores = [self._molecule_score(s) for s in self.smiles(samples)]
        values = [self.invalid_value if s is None else s for s in scores]
        return torch.tensor(values, dtype=torch.float32, device=samples.device)


class SelfiesQED(_SelfiesReward):
    """QED of the decoded molecule in [0, 1]; ``invalid_value`` (0.0) for an empty or invalid one."""

    name: ClassVar[str] = "selfies-qed"
    version: ClassVar[str] = "0"
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def _molecule_score(self, smiles: str) -> float | None:
        return qed(smiles)


class SelfiesSA(_SelfiesReward):
    """``(10 - SA) / 9`` of the decoded molecule in [0, 1] (higher = easier to synthesize); ``invalid_value`` (0.0)
    for an empty or invalid one."""

    name: ClassVar[str] = "selfies-sa"
    version: ClassVar[str] = "0"
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def _molecule_score(self, smiles: str) -> float | None:
        sa = sa_score(smiles)
        return None if sa is None else (10.0 - sa) / 9.0
