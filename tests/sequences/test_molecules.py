"""SELFIES molecule oracles: QED and SA against direct RDKit calls, conversions, diversity, pretraining data."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("selfies")

from rdkit import Chem, DataStructs  # noqa: E402
from rdkit.Chem import QED, rdFingerprintGenerator  # noqa: E402
from rdkit.Contrib.SA_Score import sascorer  # noqa: E402

from benchsuite.policies.sequence import one_hot_relaxation, token_probabilities  # noqa: E402
from benchsuite.rewards.molecules import (  # noqa: E402
    MIN_HEAVY_ATOMS,
    SELFIES_ALPHABET,
    SELFIES_LENGTH,
    SelfiesQED,
    SelfiesSA,
    sample_selfies_tokens,
    selfies_to_tokens,
    smiles_to_selfies,
    tanimoto_diversity,
    tokens_to_selfies,
    tokens_to_smiles,
)

# aspirin, caffeine, ethanol, benzene, ibuprofen, written kekulized (SELFIES has no aromatic symbols)
SMILES = ["CC(=O)OC1=CC=CC=C1C(=O)O", "CN1C=NC2=C1C(=O)N(C)C(=O)N2C", "CCO", "C1=CC=CC=C1",
          "CC(C)CC1=CC=C(C(C)C(=O)O)C=C1"]


def probabilities(tokens: torch.Tensor) -> torch.Tensor:
    """``B x L`` ids -> ``B x V x L`` probabilities as the sequence backbones' decoder gives them."""
    return token_probabilities(one_hot_relaxation(tokens, len(SELFIES_ALPHABET)))


@pytest.fixture(scope="module")
def drug_tokens() -> torch.Tensor:
    return selfies_to_tokens(smiles_to_selfies(SMILES))


def test_alphabet_is_fixed():
    assert len(SELFIES_ALPHABET) == 25 and SELFIES_ALPHABET[0] == "[nop]"
    assert len(set(SELFIES_ALPHABET)) == 25


def test_token_round_trip(drug_tokens):
    assert drug_tokens.shape == (5, SELFIES_LENGTH)
    assert selfies_to_tokens(tokens_to_selfies(drug_tokens)).tolist() == drug_tokens.tolist()
    decoded = tokens_to_smiles(drug_tokens)
    assert [Chem.CanonSmiles(s) for s in decoded] == [Chem.CanonSmiles(s) for s in SMILES]
    assert tokens_to_smiles(torch.zeros(1, SELFIES_LENGTH, dtype=torch.int64)) == [""]  # all padding: empty


def test_unknown_symbols_and_overlong_strings_are_refused():
    with pytest.raises(ValueError, match="not in SELFIES_ALPHABET"):
        selfies_to_tokens(["[C][Si][C]"])
    with pytest.raises(ValueError, match="more than the length"):
        selfies_to_tokens(["[C]" * 33])


def test_qed_and_sa_match_direct_rdkit_calls(drug_tokens):
    probs = probabilities(drug_tokens)
    mols = [Chem.MolFromSmiles(s) for s in SMILES]
    qed = SelfiesQED()(probs)
    sa = SelfiesSA()(probs)
    expected_qed = torch.tensor([QED.qed(m) for m in mols])
    expected_sa = torch.tensor([(10 - sascorer.calculateScore(m)) / 9 for m in mols])
    assert torch.allclose(qed, expected_qed, atol=1e-6), (qed, expected_qed)
    assert torch.allclose(sa, expected_sa, atol=1e-6), (sa, expected_sa)
    assert 0.5 < qed[0] < 0.6  # aspirin's QED is 0.55


def test_reward_contract_and_invalid_molecules(drug_tokens):
    empty = torch.zeros(2, SELFIES_LENGTH, dtype=torch.int64)
    tokens = torch.cat([drug_tokens, empty])
    for reward in (SelfiesQED(), SelfiesSA()):
        out = reward(probabilities(tokens).requires_grad_())
        assert out.shape == (7,) and out.dtype == torch.float32 and torch.isfinite(out).all()
        assert ((out >= 0) & (out <= 1)).all()
        assert out[5:].tolist() == [0.0, 0.0]
        assert reward(tokens).tolist() == out.tolist()
        with pytest.raises(ValueError, match="token probabilities"):
            reward(torch.rand(2, 24, SELFIES_LENGTH))
    assert SelfiesQED(invalid_value=-1.0)(empty).tolist() == [-1.0, -1.0]


def test_tanimoto_diversity_matches_rdkit():
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fp = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in SMILES[:3]]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(1 - DataStructs.TanimotoSimilarity(fp[i], fp[j]) for i, j in pairs) / 3
    assert tanimoto_diversity(SMILES[:3]) == pytest.approx(expected)
    assert tanimoto_diversity(["CCO", "CCO"]) == 0.0
    assert tanimoto_diversity(["CCO", "", "not a smiles"]) == 0.0  # fewer than two valid molecules


def test_pretraining_sampler_is_deterministic_and_valid():
    a = sample_selfies_tokens(32, generator=torch.Generator().manual_seed(3))
    b = sample_selfies_tokens(32, generator=torch.Generator().manual_seed(3))
    assert a.shape == (32, SELFIES_LENGTH) and torch.equal(a, b)
    mols = [Chem.MolFromSmiles(s) for s in tokens_to_smiles(a)]
    assert all(m is not None and m.GetNumHeavyAtoms() >= MIN_HEAVY_ATOMS for m in mols)
    # padding only at the end (the re-encoded SELFIES is left-aligned)
    lengths = (a > 0).sum(1)
    assert all(bool((row[:n] > 0).all()) for row, n in zip(a, lengths.tolist()))
