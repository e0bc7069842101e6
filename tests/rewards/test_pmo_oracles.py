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
