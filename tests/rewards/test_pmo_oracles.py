"""The RDKit-only PMO oracles (``benchsuite.domains.pmo``) against TDC's scores in ``data/pmo_reference.json``
(written by ``scripts/make_pmo_fixtures.py`` from PyTDC in a separate venv), their purity, and invalid input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("rdkit")

from benchsuite.domains.pmo import (  # noqa: E402
    ORACLES,
    PMO_ORACLES,
    PREV_ORACLES,
    geometric_mean,
    oracle,
    parse_formula,
    score_smiles,
)

REFERENCE = json.loads((Path(__file__).parent / "data" / "pmo_reference.json").read_text())
SMILES = {m["id"]: m["smiles"] for m in REFERENCE["molecules"]}
INVALID = ["unclosed_ring", "not_smiles", "pentavalent_carbon", "unkekulizable", "unknown_element", "empty"]


def test_fixture_covers_every_oracle_and_names_its_reference():
    assert len(PMO_ORACLES) == 20 and set(REFERENCE["scores"]) == set(ORACLES) == set(PMO_ORACLES) | set(PREV_ORACLES)
    assert REFERENCE["reference"]["PyTDC"] == "1.1.15" and REFERENCE["reference"]["rdkit"].startswith("2023.9")
    assert "make_pmo_fixtures.py" in REFERENCE["command"]
    assert not REFERENCE["swallowed_errors"]  # TDC raised on none of them: every value is a real score
    assert all(REFERENCE["scores"][name][m] == 0.0 for name in ORACLES for m in INVALID)


@pytest.mark.parametrize("name", list(ORACLES))
def test_matches_tdc_on_every_fixture_molecule(name):
    expected = REFERENCE["scores"][name]
    got = {m: score_smiles(name, SMILES[m]) for m in expected}
    diffs = {m: abs(got[m] - expected[m]) for m in expected}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= 1e-6, f"{name}: {worst} scores {got[worst]}, TDC {expected[worst]}"


def test_each_target_scores_its_own_oracle_top():
    assert score_smiles("celecoxib_rediscovery", SMILES["celecoxib"]) == 1.0
    assert score_smiles("albuterol_similarity", SMILES["albuterol"]) == 1.0
    assert score_smiles("isomers_c7h8n2o2", SMILES["c7h8n2o2_nitrotoluidine"]) == pytest.approx(1.0)
    assert score_smiles("isomers_c9h10n2o2pf2cl", SMILES["c9h10n2o2pf2cl"]) == pytest.approx(1.0)
    # the pre-2022 scorer counts atoms in the SMILES string: an exact isomer falls short (0.0074, as TDC's)
    assert score_smiles("isomers_c7h8n2o2_prev", SMILES["c7h8n2o2_nitrotoluidine"]) < 0.01


def test_values_do_not_depend_on_the_order_oracles_run_in():
    """TDC's deco_hop changes after scaffold_hop has run; ours are pure functions."""
    mols = [SMILES[m] for m in ("hop_start", "gefitinib", "sitagliptin", "zaleplon")]
    names = ["deco_hop", "scaffold_hop", "zaleplon_mpo", "zaleplon_mpo_prev", "sitagliptin_mpo",
             "sitagliptin_mpo_prev", "isomers_c7h8n2o2", "isomers_c7h8n2o2_prev"]
    forward = {(n, s): score_smiles(n, s) for n in names for s in mols}
    backward = {(n, s): score_smiles(n, s) for n in reversed(names) for s in reversed(mols)}
    again = {(n, s): score_smiles(n, s) for n in names for s in mols}
    assert forward == backward == again


def test_invalid_and_empty_molecules_score_zero_and_unknown_names_are_refused():
    for name in ORACLES:
        assert oracle(name).score("") is None and oracle(name)("C1CC") == 0.0
    with pytest.raises(ValueError, match="unknown PMO oracle"):
        score_smiles("drd2", "CCO")


def test_canonical_smiles_is_what_gets_scored():
    # the same molecule written two ways scores the same everywhere (PMO canonicalises first)
    assert all(score_smiles(n, "C1=CC=CC=C1O") == score_smiles(n, "Oc1ccccc1") for n in ORACLES)


def test_building_blocks():
    assert parse_formula("C9H10N2O2PF2Cl") == [("C", 9), ("H", 10), ("N", 2), ("O", 2), ("P", 1), ("F", 2), ("Cl", 1)]
    # the pre-2022 count of a SMILES string: Cc1 -> ("Cc", 1); ring digits are counts, lowercase atoms are skipped
    assert parse_formula("Cc1ccc(N)cc1C12") == [("Cc", 1), ("N", 1), ("C", 12)]
    assert geometric_mean([0.25, 1.0]) == 0.5 and geometric_mean([0.0, 1.0]) == 0.0


# ---- the rewards on the SELFIES backbone's samples ---------------------------------------------------------------
def _reward_names() -> list[str]:
    from benchsuite.registry import REWARDS

    return [n for n in REWARDS.builtin_names() if n.startswith("pmo-")]


def test_every_oracle_is_a_registered_reward():
    from benchsuite.registry import REWARDS

    names = _reward_names()
    assert names == sorted("pmo-" + n.replace("_", "-") for n in ORACLES)
    assert all(REWARDS.load(n).oracle.replace("_", "-") == n.removeprefix("pmo-") for n in names)


def test_rewards_score_the_decoded_molecules_as_the_core_does():
    import torch

    from benchsuite.policies.sequence import one_hot_relaxation, token_probabilities
    from benchsuite.registry import REWARDS
    from benchsuite.rewards.molecules import SELFIES_ALPHABET, selfies_to_tokens, smiles_to_selfies, tokens_to_smiles
    from benchsuite.testing import check_reward_scores

    kekulized = ["CC(=O)OC1=CC=CC=C1C(=O)O", "CN1C=NC2=C1C(=O)N(C)C(=O)N2C", "CC(C)(C)NCC(O)C1=CC=C(O)C(CO)=C1",
                 "CC1(C)C2CCC1(C)C(=O)C2", "NNC(=O)C1=CC=C(O)C=C1"]  # aspirin, caffeine, albuterol, camphor, isomer
    tokens = torch.cat([selfies_to_tokens(smiles_to_selfies(kekulized)), torch.zeros(1, 32, dtype=torch.int64)])
    probs = token_probabilities(one_hot_relaxation(tokens, len(SELFIES_ALPHABET)))
    decoded = tokens_to_smiles(tokens)
    for name in _reward_names():
        reward = REWARDS.make(name)
        out = check_reward_scores(reward, probs)
        expected = torch.tensor([score_smiles(reward.oracle, s) for s in decoded])
        assert torch.allclose(out, expected, atol=1e-6), (name, out, expected)
        assert out[-1] == 0.0  # the empty molecule
    assert REWARDS.make("pmo-albuterol-similarity")(probs)[2] == 1.0
    assert REWARDS.make("pmo-isomers-c7h8n2o2")(probs)[4] == pytest.approx(1.0)
    assert REWARDS.make("pmo-qed", invalid_value=-1.0)(tokens[-1:]).tolist() == [-1.0]


def test_rewards_refuse_to_build_without_rdkit(monkeypatch):
    import benchsuite.domains.molecules as molecules
    from benchsuite.errors import BenchsuiteError
    from benchsuite.registry import REWARDS

    monkeypatch.setattr(molecules, "rdkit_available", lambda: False)
    with pytest.raises(BenchsuiteError, match=r"needs RDKit.*benchsuite\[molecules\]") as err:
        REWARDS.make("pmo-deco-hop")
    assert "\n" not in str(err.value)


def test_the_core_imports_neither_torch_nor_rdkit():
    import subprocess
    import sys

    code = ("import sys, benchsuite.domains.pmo; "
            "loaded = [m for m in ('torch', 'rdkit') if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
