"""graph-ga's operators (benchsuite.domains.graph_ga) on tiny molecules, checked by hand."""

import random

import pytest

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from benchsuite.domains import graph_ga as ga  # noqa: E402
from benchsuite.methods.graph_ga import GraphGAConfig, writable_tokens  # noqa: E402


def mol(smiles):
    return Chem.MolFromSmiles(smiles)


def heavy(fragments):
    """Heavy atoms of fragments, not counting the dummies at the cuts."""
    return sum(1 for f in fragments for a in f.GetAtoms() if a.GetAtomicNum() > 0)


@pytest.mark.parametrize("smiles, ok", [("CCO", True), ("c1ccccc1", True), ("C1=CC1", False),
                                        ("C1CCCCCCC1", False), ("C1CC=C=CC1", False)])
def test_ring_rules(smiles, ok):
    assert ga.ring_ok(mol(smiles)) is ok


def test_mol_ok_size_window():
    rng = random.Random(0)
    assert not ga.mol_ok(mol("CCO"), rng)  # 3 atoms: not more than 5
    assert ga.mol_ok(mol("CCCCCCC"), rng)  # 7 atoms, cap drawn near 39
    assert not ga.mol_ok(mol("CCCCCCC"), rng, size=(6.0, 1e-9))  # cap 6: 7 atoms is too many


def test_cut_at_an_acyclic_single_bond():
    frags = ga.cut(mol("CCOCC"), random.Random(1))
    assert len(frags) == 2 and heavy(frags) == 5
    assert all(sum(a.GetAtomicNum() == 0 for a in f.GetAtoms()) == 1 for f in frags)  # one dummy each
    assert ga.cut(mol("c1ccccc1"), random.Random(1)) is None  # no acyclic single bond


def test_cut_ring_gives_two_fragments_with_two_dummies_each():
    # methylcyclohexane has a 4-atom ring path and a branched ring atom: both kinds of cut apply
    for seed in range(5):
        frags = ga.cut_ring(mol("CC1CCCCC1"), random.Random(seed))
        assert len(frags) == 2 and heavy(frags) == 7
        assert all(sum(a.GetAtomicNum() == 0 for a in f.GetAtoms()) == 2 for f in frags)
    assert ga.cut_ring(mol("CCCCCC"), random.Random(2)) is None


def test_crossover_child_is_new_and_made_of_the_parents_elements():
    a, b = mol("CCCCCCO"), mol("NCCCCCC")
    children = [ga.crossover(a, b, random.Random(seed)) for seed in range(10)]
    made = [Chem.MolToSmiles(c) for c in children if c is not None]
    assert made, "no child in 10 seeds"
    for smiles in made:
        assert smiles not in {"CCCCCCO", "CCCCCCN"}
        assert set(smiles) <= set("CNO")
    assert any("N" in s and "O" in s for s in made)  # some child joins a fragment of each parent


def test_mutation_rate_zero_is_identity_and_one_changes():
    m = mol("CCCCCCO")
    assert ga.mutate(m, 0.0, random.Random(0)) is m
    mutants = [ga.mutate(m, 1.0, random.Random(seed)) for seed in range(10)]
    changed = [Chem.MolToSmiles(x) for x in mutants if x is not None]
    assert changed and all(s != "CCCCCCO" for s in changed)
    assert all(ga.ring_ok(Chem.MolFromSmiles(s)) for s in changed)


def test_mating_pool_weights_by_score():
    assert set(ga.mating_pool([0.0, 1.0, 0.0], 50, random.Random(0))) == {1}
    assert set(ga.mating_pool([0.0, 0.0, 0.0], 200, random.Random(0))) == {0, 1, 2}  # all zero: uniform


def test_writable_tokens():
    from benchsuite.domains.molecules import tokens_to_smiles
    import torch

    tokens = writable_tokens("OCC")
    assert len(tokens) == 32 and Chem.MolToSmiles(mol(tokens_to_smiles(torch.tensor([tokens]))[0])) == "CCO"
    assert writable_tokens("C[N+](C)(C)C") is None  # a charge: not in the alphabet
    assert writable_tokens("C" * 40) is None  # 40 symbols > 32
    assert writable_tokens("C" * 40, length=64) == [writable_tokens("C")[0]] * 40 + [0] * 24  # the chembl space's L
    assert writable_tokens("") is None


@pytest.mark.parametrize("field, value", [("population_size", 1), ("mutation_rate", 1.5), ("pool", "zinc"),
                                          ("max_tries_factor", 0)])
def test_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        GraphGAConfig(**{field: value})


def test_refuses_a_sequence_task_in_one_line():
    from benchsuite.config import resolve
    from benchsuite.errors import ConfigError
    from benchsuite.runner import run

    with pytest.raises(ConfigError, match="SELFIES molecule backbone"):
        run(resolve("toy-ehrlich-v0", "graph-ga", budget=200), write=False)


@pytest.mark.slow  # about 10 s: the pool is sampled from the ChEMBL backbone
def test_start_population_comes_from_the_pool():
    from benchsuite.config import resolve
    from benchsuite.methods.graph_ga import seed_pool
    from benchsuite.runner import run

    result = run(resolve("toy-selfies-qed-v0", "graph-ga", budget=8, eval_fractions=(0.0, 1.0),
                         overrides={"batch_size": 8, "population_size": 8, "pool": "prior"}), write=False)
    pool = set(seed_pool("prior")[0])
    from benchsuite.domains.pmo import score_smiles

    assert len(result.query_log) == 8
    # each queried value is the QED of some pool molecule
    values = {round(score_smiles("qed", s), 6) for s in pool}
    assert all(round(v, 6) in values for v in result.query_log.reward)
