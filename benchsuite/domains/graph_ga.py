"""Graph GA operators on RDKit molecule graphs, in the style of Jensen 2019 (Chem. Sci. 10, 3567; "A graph-based
genetic algorithm and generative model/Monte Carlo tree search for the exploration of chemical space").

Facts from jensengroup/GB_GA (``crossover.py``, ``mutate.py``) and wenhao-gao/mol_opt (``main/graph_ga``: PMO's
version and its defaults); the code is ours. Every random choice is drawn from the ``random.Random`` passed in.

- Crossover (``crossover``): up to 10 tries, each with probability 1/2 a non-ring or a ring crossover; a child equal
  to a parent (canonical SMILES) is rejected. Non-ring: cut each parent at a random acyclic single bond
  (``[*]-;!@[*]``) into two fragments with a dummy atom at the cut, join a fragment of A with one of B through a
  single bond, keep a joined molecule that passes ``mol_ok``, chosen at random (10 tries). Ring: cut each parent's
  ring into two fragments, either at two bonds of a 4-atom ring path (``[R]@[R]@[R]@[R]``, bonds 1-2 and 3-4) or at
  the two bonds of a branched ring atom (``[R]@[R;!D2]@[R]``), with probability 1/2 each; join one pair of cut ends
  with a single or a double bond, close the other pair the same way, keep children that pass ``mol_ok`` and
  ``ring_ok`` (GB_GA's code resets its list inside the bond-order loop, so it only ever makes the double-bond
  joins; we make both, as its text intends).
- ``mol_ok``: sanitizes, survives a SMILES round trip, and has more than 5 and fewer than ``N(average_size,
  size_stdev)`` atoms (a fresh normal draw each time; GuacaMol/mol_opt: 39.15 and 3.50).
- ``ring_ok``: no ring allene (``[R]=[R]=[R]``), no ring larger than 6, no double bond in a 3- or 4-ring.
- Mutation (``mutate``): with probability ``mutation_rate``; kekulized; up to 10 tries of one of 7 reactions chosen
  with probabilities 0.15, 0.14, 0.14, 0.14, 0.14, 0.14, 0.15: insert an atom, change a bond order, delete a ring
  bond, add a ring, delete an atom, change an element, append an atom; a product that passes ``mol_ok`` and
  ``ring_ok`` is chosen at random; None if no try gives one (the SMARTS and their probabilities below are GB_GA's).
"""

from __future__ import annotations

import functools
import random

ATOM_SIZE = (39.15, 3.50)
"""GuacaMol's and mol_opt's (mean, standard deviation) of the atom-count cap of ``mol_ok``."""

MUTATION_WEIGHTS = (0.15, 0.14, 0.14, 0.14, 0.14, 0.14, 0.15)
"""insert atom, change bond order, delete ring bond, add ring, delete atom, change atom, append atom."""

_BOND_ORDER_WEIGHTS = (0.60, 0.35, 0.05)  # single, double, triple, for inserted and appended atoms


@functools.cache
def _smarts(text: str):
    from rdkit import Chem

    return Chem.MolFromSmarts(text)


@functools.cache
def _reaction(text: str):
    from rdkit.Chem import AllChem

    return AllChem.ReactionFromSmarts(text)


def _pick(rng: random.Random, items, weights=None):
    return rng.choices(list(items), weights=weights, k=1)[0]


def ring_ok(mol) -> bool:
    """GB_GA's ring rules (module docstring)."""
    if not mol.HasSubstructMatch(_smarts("[R]")):
        return True
    if mol.HasSubstructMatch(_smarts("[R]=[R]=[R]")):
        return False
    if max(len(ring) for ring in mol.GetRingInfo().AtomRings()) > 6:
        return False
    return not mol.HasSubstructMatch(_smarts("[r3,r4]=[r3,r4]"))


def mol_ok(mol, rng: random.Random, size: tuple[float, float] = ATOM_SIZE) -> bool:
    """Sanitizes, round-trips through SMILES and has 6 .. N(size) atoms (module docstring)."""
    from rdkit import Chem

    try:
        Chem.SanitizeMol(mol)
        if Chem.MolFromSmiles(Chem.MolToSmiles(mol)) is None:
            return False
    except Exception:  # noqa: BLE001 - RDKit raises several kinds on impossible valences
        return False
    return 5 < mol.GetNumAtoms() < rng.gauss(*size)


def _fragments(mol, bonds: list[int]):
    from rdkit import Chem

    labels = [(1, 1)] * len(bonds)
    try:
        return Chem.GetMolFrags(Chem.FragmentOnBonds(mol, bonds, addDummies=True, dummyLabels=labels), asMols=True)
    except Exception:  # noqa: BLE001
        return None


def cut(mol, rng: random.Random):
    """Two fragments of ``mol`` cut at a random acyclic single bond (dummy ``[1*]`` at both ends), or None."""
    matches = mol.GetSubstructMatches(_smarts("[*]-;!@[*]"))
    if not matches:
        return None
    a, b = _pick(rng, matches)
    return _fragments(mol, [mol.GetBondBetweenAtoms(a, b).GetIdx()])


def cut_ring(mol, rng: random.Random):
    """Two fragments of ``mol`` cut through a ring at two bonds (module docstring), or None."""
    for _ in range(10):
        if rng.random() < 0.5:
            matches = mol.GetSubstructMatches(_smarts("[R]@[R]@[R]@[R]"))
            if not matches:
                return None
            m = _pick(rng, matches)
            pairs = ((m[0], m[1]), (m[2], m[3]))
        else:
            matches = mol.GetSubstructMatches(_smarts("[R]@[R;!D2]@[R]"))
            if not matches:
                return None
            m = _pick(rng, matches)
            pairs = ((m[0], m[1]), (m[1], m[2]))
        frags = _fragments(mol, [mol.GetBondBetweenAtoms(x, y).GetIdx() for x, y in pairs])
        if frags is not None and len(frags) == 2:
            return frags
    return None


def crossover_non_ring(a, b, rng: random.Random, size=ATOM_SIZE):
    """A child joining an acyclic fragment of ``a`` to one of ``b`` by a single bond, or None."""
    join = _reaction("[*:1]-[1*].[1*]-[*:2]>>[*:1]-[*:2]")
    for _ in range(10):
        fa, fb = cut(a, rng), cut(b, rng)
        if fa is None or fb is None:
            return None
        children = [p[0] for x in fa for y in fb for p in join.RunReactants((x, y))[:1]]
        children = [c for c in children if mol_ok(c, rng, size)]
        if children:
            return _pick(rng, children)
    return None


def crossover_ring(a, b, rng: random.Random, size=ATOM_SIZE):
    """A child joining ring fragments of ``a`` and ``b`` at both cuts (single or double bonds), or None."""
    if not (a.HasSubstructMatch(_smarts("[R]")) or b.HasSubstructMatch(_smarts("[R]"))):
        return None
    joins = [_reaction(f"[*:1]~[1*].[1*]~[*:2]>>[*:1]{o}[*:2]") for o in "-="]
    closes = [_reaction(f"([*:1]~[1*].[1*]~[*:2])>>[*:1]{o}[*:2]") for o in "-="]
    for _ in range(10):
        fa, fb = cut_ring(a, rng), cut_ring(b, rng)
        if fa is None or fb is None:
            return None
        joined = [p[0] for j in joins for x in fa for y in fb for p in j.RunReactants((x, y))[:1]]
        joined = [m for m in joined if mol_ok(m, rng, size)]
        closed = [p[0] for c in closes for m in joined for p in c.RunReactants((m,))]
        children = [m for m in closed if mol_ok(m, rng, size) and ring_ok(m)]
        if children:
            return _pick(rng, children)
    return None


def _kekulized(mol):
    from rdkit import Chem

    mol = Chem.Mol(mol)
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except Exception:  # noqa: BLE001 - GB_GA goes on with the aromatic molecule
        pass
    return mol


def crossover(a, b, rng: random.Random, size=ATOM_SIZE):
    """Jensen's crossover of two molecules: a child other than both parents, or None (module docstring)."""
    from rdkit import Chem

    parents = {Chem.MolToSmiles(a), Chem.MolToSmiles(b)}
    a, b = _kekulized(a), _kekulized(b)
    for _ in range(10):
        child = (crossover_non_ring if rng.random() <= 0.5 else crossover_ring)(a, b, rng, size)
        if child is not None and Chem.MolToSmiles(child) not in parents:
            return child
    return None


_INSERT = {"single": ("[*:1]~[*:2]>>[*:1]{}[*:2]", "CNOS"), "double": ("[*;!H0:1]~[*:2]>>[*:1]={}-[*:2]", "CN"),
           "triple": ("[*;!R;!H1;!H0:1]~[*:2]>>[*:1]#{}-[*:2]", "C")}
"""Insert an atom into a bond: bond order -> (reaction template, elements drawn uniformly)."""
_APPEND = {"single": ("[*;!H0:1]>>[*:1]-{}", ("C", "N", "O", "F", "S", "Cl", "Br")),
           "double": ("[*;!H0;!H1:1]>>[*:1]={}", "CNO"), "triple": ("[*;H3:1]>>[*:1]#{}", "CN")}
"""Append an atom to an atom with hydrogens: bond order -> (reaction template, elements drawn uniformly)."""


def _new_atom(table: dict, rng: random.Random) -> str:
    template, elements = table[_pick(rng, ("single", "double", "triple"), _BOND_ORDER_WEIGHTS)]
    return template.format(_pick(rng, elements))


def _insert_atom(rng: random.Random, mol) -> str:
    return _new_atom(_INSERT, rng)


def _change_bond_order(rng: random.Random, mol) -> str:
    return _pick(rng, ("[*:1]!-[*:2]>>[*:1]-[*:2]", "[*;!H0:1]-[*;!H0:2]>>[*:1]=[*:2]", "[*:1]#[*:2]>>[*:1]=[*:2]",
                       "[*;!R;!H1;!H0:1]~[*:2]>>[*:1]#[*:2]"), (0.45, 0.45, 0.05, 0.05))


def _delete_cyclic_bond(rng: random.Random, mol) -> str:
    return "[*:1]@[*:2]>>([*:1].[*:2])"


def _add_ring(rng: random.Random, mol) -> str:
    return _pick(rng, (
        "[*;!r;!H0:1]~[*;!r:2]~[*;!r;!H0:3]>>[*:1]1~[*:2]~[*:3]1",
        "[*;!r;!H0:1]~[*!r:2]~[*!r:3]~[*;!r;!H0:4]>>[*:1]1~[*:2]~[*:3]~[*:4]1",
        "[*;!r;!H0:1]~[*!r:2]~[*:3]~[*:4]~[*;!r;!H0:5]>>[*:1]1~[*:2]~[*:3]~[*:4]~[*:5]1",
        "[*;!r;!H0:1]~[*!r:2]~[*:3]~[*:4]~[*!r:5]~[*;!r;!H0:6]>>[*:1]1~[*:2]~[*:3]~[*:4]~[*:5]~[*:6]1",
    ), (0.05, 0.05, 0.45, 0.45))


def _delete_atom(rng: random.Random, mol) -> str:
    return _pick(rng, (
        "[*:1]~[D1:2]>>[*:1]", "[*:1]~[D2:2]~[*:3]>>[*:1]-[*:3]",
        "[*:1]~[D3:2](~[*;!H0:3])~[*:4]>>[*:1]-[*:3]-[*:4]",
        "[*:1]~[D4:2](~[*;!H0:3])(~[*;!H0:4])~[*:5]>>[*:1]-[*:3]-[*:4]-[*:5]",
        "[*:1]~[D4:2](~[*;!H0;!H1:3])(~[*:4])~[*:5]>>[*:1]-[*:3](-[*:4])-[*:5]",
    ), (0.25, 0.25, 0.25, 0.1875, 0.0625))


_ELEMENTS = ("#6", "#7", "#8", "#9", "#16", "#17", "#35")
_ELEMENT_WEIGHTS = (0.15, 0.15, 0.14, 0.14, 0.14, 0.14, 0.14)


def _change_atom(rng: random.Random, mol) -> str:
    present = [e for e in _ELEMENTS if mol.HasSubstructMatch(_smarts(f"[{e}]"))] or list(_ELEMENTS)  # none: no match
    old = _pick(rng, present, [_ELEMENT_WEIGHTS[_ELEMENTS.index(e)] for e in present])
    others = [e for e in _ELEMENTS if e != old]
    new = _pick(rng, others, [_ELEMENT_WEIGHTS[_ELEMENTS.index(e)] for e in others])
    return f"[{old}:1]>>[{new}:1]"


def _append_atom(rng: random.Random, mol) -> str:
    return _new_atom(_APPEND, rng)


MUTATIONS = (_insert_atom, _change_bond_order, _delete_cyclic_bond, _add_ring, _delete_atom, _change_atom,
             _append_atom)
"""The 7 mutation kinds, in ``MUTATION_WEIGHTS`` order: each returns one reaction SMARTS for ``mol``."""


def mutate(mol, mutation_rate: float, rng: random.Random, size=ATOM_SIZE):
    """``mol`` unchanged with probability ``1 - mutation_rate``; else a mutant (module docstring) or None."""
    if rng.random() > mutation_rate:
        return mol
    mol = _kekulized(mol)
    for _ in range(10):
        kind = _pick(rng, MUTATIONS, MUTATION_WEIGHTS)
        products = [p[0] for p in _reaction(kind(rng, mol)).RunReactants((mol,))]
        products = [m for m in products if mol_ok(m, rng, size) and ring_ok(m)]
        if products:
            return _pick(rng, products)
    return None


def mating_pool(scores: list[float], n: int, rng: random.Random) -> list[int]:
    """``n`` population indices drawn with replacement with probability proportional to score (mol_opt; scores are
    clipped at 0 and all-zero scores draw uniformly)."""
    weights = [max(s, 0.0) for s in scores]
    if sum(weights) <= 0:
        weights = [1.0] * len(scores)
    return rng.choices(range(len(scores)), weights=weights, k=n)
