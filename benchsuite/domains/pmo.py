"""The RDKit-only PMO oracles as pure functions of a SMILES string (no torch; RDKit imported on first use).

PMO (Gao et al. 2022, "Sample efficiency matters", arXiv 2206.12411; wenhao-gao/mol_opt) ranks optimizers on 23
oracles; 20 of them need only RDKit and are here. PMO scores them through TDC's oracle module (PyPI ``PyTDC``,
``tdc.Oracle``), which re-implements the goal-directed objectives of GuacaMol (Brown et al. 2019, arXiv 1811.09621;
BenevolentAI/guacamol). The definitions below (targets, fingerprints, modifiers, SMARTS, MPO components) are taken
from those papers and TDC's module; the code is ours.

Semantics (``SEMANTICS``): TDC's current ones (since August 2022), which are GuacaMol's goal-directed objectives of
the same names (targets, fingerprints, modifiers, means); checked against PyTDC 1.1.15 on RDKit 2023.09.6 to 1e-6 by
``tests/rewards/test_pmo_oracles.py`` on the molecules of ``scripts/make_pmo_fixtures.py``. Where RDKit raises inside
an oracle (none of those molecules makes it), the value is 0, as ``tdc.Oracle`` scores an exception.

Scoring a SMILES (PMO's protocol, mol_opt ``main/optimizer.py``): an empty or unparsable SMILES scores 0; otherwise
its RDKit canonical SMILES is parsed again and scored. Every oracle is a pure function: its targets are computed
from constants on first use and never change, so a value never depends on which oracle ran before (TDC's do:
``scaffold_hop`` overwrites a SMARTS that ``deco_hop`` reads from the module's globals, moving gefitinib's deco_hop
from 0.870 to 0.620, or leaves ``deco_hop`` scoring 0 when it runs first; the two zaleplon and the two sitagliptin
MPOs share one cached isomer scorer).

Building blocks:
- fingerprints, all unfolded counts compared by Tanimoto: ECFP4 / ECFP6 (Morgan, radius 2 / 3), FCFP4 (Morgan with
  feature invariants, radius 2), AP (atom pairs up to 10 bonds apart), and PHCO (RDKit's Gobbi 2D pharmacophore
  fingerprint, a bit vector);
- modifiers mapping a raw value to [0, 1]: ``clipped(x, t) = min(1, x / t)`` (x >= 0), ``gaussian(x, mu, sigma)``,
  its one-sided forms ``min_gaussian`` (1 for x <= mu) and ``max_gaussian`` (1 for x >= mu);
- isomer score for a formula: the geometric mean of a Gaussian (sigma 1) on the count of each element of the formula
  (hydrogens included) and a Gaussian (sigma 2) on the total number of atoms;
- means: geometric (any zero component gives 0) or arithmetic.

Pre-August-2022 variants (``*_prev``, not part of the 20): before August 2022 TDC's isomer scorer read the total atom
count from the SMILES string with the formula parser (one per capital letter, a following number taken as its count,
so ring-closure digits count and hydrogens do not); the zaleplon and sitagliptin MPOs use it. PyTDC 0.3.6, which
mol_opt's README recommends, has that isomer scorer; its sitagliptin MPO also lacked the modifiers on similarity, logP
and TPSA (not reproduced here: TDC's ``sitagliptin_mpo_prev`` is).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

SEMANTICS = "TDC since Aug 2022 (checked against PyTDC 1.1.15) = GuacaMol goal-directed definitions; PMO's protocol"
"""What the current oracles reproduce."""
PREV_SEMANTICS = "TDC before Aug 2022 (checked against PyTDC 1.1.15's *_prev): total atoms read from the SMILES string"
"""What the ``*_prev`` oracles reproduce."""

PMO_ORACLES: tuple[str, ...] = (
    "celecoxib_rediscovery", "troglitazone_rediscovery", "thiothixene_rediscovery",
    "albuterol_similarity", "mestranol_similarity",
    "isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl",
    "median1", "median2",
    "osimertinib_mpo", "fexofenadine_mpo", "ranolazine_mpo", "perindopril_mpo", "amlodipine_mpo",
    "sitagliptin_mpo", "zaleplon_mpo",
    "deco_hop", "scaffold_hop", "valsartan_smarts", "qed",
)
"""The 20 RDKit-only PMO objectives, by their TDC names."""

PREV_ORACLES: tuple[str, ...] = (
    "isomers_c7h8n2o2_prev", "isomers_c9h10n2o2pf2cl_prev", "sitagliptin_mpo_prev", "zaleplon_mpo_prev",
)
"""TDC's pre-August-2022 isomer scoring and the two MPOs that use it (module docstring)."""

# ---- target molecules, as TDC writes them ------------------------------------------------------------------------
CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
TROGLITAZONE = "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O"
THIOTHIXENE = "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1"
ALBUTEROL = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"
MESTRANOL = "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1"
CAMPHOR = "CC1(C)C2CCC1(C)C(=O)C2"
MENTHOL = "CC(C)C1CCC(C)CC1O"
TADALAFIL = "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C"
SILDENAFIL = "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C"
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
AMLODIPINE = "Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\\C(=O)OC"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
SITAGLIPTIN_FOR_VALSARTAN = "NC(CC(=O)N1CCn2c(nnc2C(F)(F)F)C1)Cc1cc(F)c(F)cc1F"  # the same molecule, written anew
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"
HOP_START = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"  # the deco- and scaffold-hop pharmacophore

# SMARTS of the hop and valsartan objectives (GuacaMol)
SULFONE = "CS([#6])(=O)=O"
BENZOTHIAZOLE_AMINE = "[#7]-c1ccc2ncsc2c1"
QUINAZOLINE_SCAFFOLD = "[#7]-c1n[c;h1]nc2[c;h1]c(-[#8])[c;h0][c;h1]c12"
PROPOXY_BENZOTHIAZOLE_AMINE = "[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1"
VALSARTAN_SMARTS = "CN(C=O)Cc1ccc(c2ccccc2)cc1"


# ---- modifiers and means ---------------------------------------------------------------------------------------------
def clipped(x: float, upper: float) -> float:
    """0 at x = 0 rising linearly to 1 at ``upper``, clipped to [0, 1] (GuacaMol's ClippedScoreModifier, lower 0)."""
    return min(1.0, max(0.0, x / upper))


def gaussian(x: float, mu: float, sigma: float) -> float:
    """``exp(-((x - mu) / sigma)^2 / 2)``."""
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


def min_gaussian(x: float, mu: float, sigma: float) -> float:
    """1 for ``x <= mu``, the Gaussian above it (rewards staying under ``mu``)."""
    return gaussian(max(x, mu), mu, sigma)


def max_gaussian(x: float, mu: float, sigma: float) -> float:
    """1 for ``x >= mu``, the Gaussian below it (rewards reaching ``mu``)."""
    return gaussian(min(x, mu), mu, sigma)


def geometric_mean(values: list[float]) -> float:
    """``exp(mean(log v))``; 0 when any value is 0 (as TDC's ``scipy.stats.mstats.gmean``)."""
    if any(v <= 0.0 for v in values):
        return 0.0
    return math.exp(math.fsum(math.log(v) for v in values) / len(values))


def arithmetic_mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def parse_formula(formula: str) -> list[tuple[str, int]]:
    """``"C7H8N2O2"`` -> ``[("C", 7), ("H", 8), ("N", 2), ("O", 2)]``: a capital letter with its lower-case letters,
    then an optional count (1 when absent). Anything else in the string is skipped."""
    return [(element, int(count) if count else 1) for element, count in re.findall(r"([A-Z][a-z]*)(\d*)", formula)]


# ---- RDKit pieces (imported on first use) ----------------------------------------------------------------------------
@functools.cache
def _generator(kind: str):
    from rdkit.Chem import rdFingerprintGenerator as gen

    if kind == "ECFP4":
        return gen.GetMorganGenerator(radius=2)
    if kind == "ECFP6":
        return gen.GetMorganGenerator(radius=3)
    if kind == "FCFP4":
        return gen.GetMorganGenerator(radius=2, atomInvariantsGenerator=gen.GetMorganFeatureAtomInvGen())
    if kind == "AP":
        return gen.GetAtomPairGenerator(maxDistance=10)
    raise ValueError(f"unknown fingerprint {kind!r}")


def fingerprint(mol, kind: str):
    """The ``kind`` fingerprint of an RDKit Mol: ECFP4, ECFP6, FCFP4, AP (unfolded counts) or PHCO (Gobbi 2D
    pharmacophores, bits)."""
    if kind == "PHCO":
        from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D

        return Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory)
    return _generator(kind).GetSparseCountFingerprint(mol)


def _mol(smiles: str):
    """RDKit Mol of ``smiles`` or None (RDKit's log silenced)."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(smiles)


@functools.cache
def _target_fingerprint(smiles: str, kind: str):
    return fingerprint(_mol(smiles), kind)


@functools.cache
def _smarts(pattern: str):
    from rdkit import Chem

    return Chem.MolFromSmarts(pattern)


@functools.cache
def _descriptors(smiles: str) -> tuple[float, float, float]:
    """(Crippen logP, TPSA, Bertz CT) of a target molecule."""
    from rdkit.Chem import Descriptors

    mol = _mol(smiles)
    return Descriptors.MolLogP(mol), Descriptors.TPSA(mol), Descriptors.BertzCT(mol)


def tanimoto(mol, target: str, kind: str) -> float:
    """Tanimoto similarity of ``mol`` and the ``target`` SMILES on the ``kind`` fingerprint."""
    from rdkit import DataStructs

    return DataStructs.TanimotoSimilarity(fingerprint(mol, kind), _target_fingerprint(target, kind))


def has_match(mol, pattern: str) -> float:
    """1.0 when ``mol`` contains the SMARTS ``pattern``, else 0.0."""
    return 1.0 if mol.HasSubstructMatch(_smarts(pattern)) else 0.0


def _logp(mol) -> float:
    from rdkit.Chem import Descriptors

    return Descriptors.MolLogP(mol)


def _tpsa(mol) -> float:
    from rdkit.Chem import Descriptors

    return Descriptors.TPSA(mol)


def isomer_score(mol, formula: str, smiles: str | None = None) -> float:
    """Closeness of ``mol`` to ``formula`` (module docstring). With ``smiles`` the total atom count is read from that
    string by ``parse_formula`` (TDC before August 2022) instead of counted on the molecule with its hydrogens."""
    from rdkit import Chem

    with_h = Chem.AddHs(mol)
    counts: dict[str, int] = {}
    for atom in with_h.GetAtoms():
        counts[atom.GetSymbol()] = counts.get(atom.GetSymbol(), 0) + 1
    target = parse_formula(formula)
    scores = [gaussian(counts.get(element, 0), n, 1.0) for element, n in target]
    if smiles is None:  # every real atom of the molecular formula (dummy atoms, '*', have none)
        total = sum(1 for atom in with_h.GetAtoms() if atom.GetAtomicNum() > 0)
    else:
        total = sum(n for _, n in parse_formula(smiles))
    scores.append(gaussian(total, sum(n for _, n in target), 2.0))
    return geometric_mean(scores)


# ---- the oracles -----------------------------------------------------------------------------------------------------
def _rediscovery(target: str) -> Callable:
    return lambda mol, smiles: tanimoto(mol, target, "ECFP4")


def _similarity(target: str, kind: str) -> Callable:
    return lambda mol, smiles: clipped(tanimoto(mol, target, kind), 0.75)


def _isomers(formula: str, prev: bool = False) -> Callable:
    return lambda mol, smiles: isomer_score(mol, formula, smiles if prev else None)


def _median(a: str, b: str, kind: str) -> Callable:
    return lambda mol, smiles: geometric_mean([tanimoto(mol, a, kind), tanimoto(mol, b, kind)])


def _osimertinib(mol, smiles):
    return geometric_mean([
        max_gaussian(_tpsa(mol), 100.0, 10.0),
        min_gaussian(_logp(mol), 1.0, 1.0),
        clipped(tanimoto(mol, OSIMERTINIB, "FCFP4"), 0.8),
        min_gaussian(tanimoto(mol, OSIMERTINIB, "ECFP6"), 0.85, 0.1),
    ])


def _fexofenadine(mol, smiles):
    return geometric_mean([
        max_gaussian(_tpsa(mol), 90.0, 10.0),
        min_gaussian(_logp(mol), 4.0, 1.0),
        clipped(tanimoto(mol, FEXOFENADINE, "AP"), 0.8),
    ])


def _ranolazine(mol, smiles):
    fluorines = sum(1 for atom in mol.GetAtoms() if atom.GetSymbol() == "F")
    return geometric_mean([
        max_gaussian(_tpsa(mol), 95.0, 20.0),
        max_gaussian(_logp(mol), 7.0, 1.0),
        clipped(tanimoto(mol, RANOLAZINE, "AP"), 0.7),
        gaussian(fluorines, 1.0, 1.0),
    ])


def _perindopril(mol, smiles):
    from rdkit.Chem import rdMolDescriptors

    return geometric_mean([tanimoto(mol, PERINDOPRIL, "ECFP4"),
                           gaussian(rdMolDescriptors.CalcNumAromaticRings(mol), 2.0, 0.5)])


def _amlodipine(mol, smiles):
    from rdkit.Chem import rdMolDescriptors

    return geometric_mean([tanimoto(mol, AMLODIPINE, "ECFP4"), gaussian(rdMolDescriptors.CalcNumRings(mol), 3.0, 0.5)])


def _sitagliptin(prev: bool) -> Callable:
    def score(mol, smiles):
        logp, tpsa, _ = _descriptors(SITAGLIPTIN)
        return geometric_mean([
            gaussian(tanimoto(mol, SITAGLIPTIN, "ECFP4"), 0.0, 0.1),
            gaussian(_logp(mol), logp, 0.2),
            gaussian(_tpsa(mol), tpsa, 5.0),
            isomer_score(mol, "C16H15F6N5O", smiles if prev else None),
        ])

    return score


def _zaleplon(prev: bool) -> Callable:
    return lambda mol, smiles: geometric_mean([tanimoto(mol, ZALEPLON, "ECFP4"),
                                               isomer_score(mol, "C19H17N3O2", smiles if prev else None)])


def _deco_hop(mol, smiles):
    return arithmetic_mean([
        clipped(tanimoto(mol, HOP_START, "PHCO"), 0.85),
        1.0 - has_match(mol, SULFONE),
        1.0 - has_match(mol, BENZOTHIAZOLE_AMINE),
        has_match(mol, QUINAZOLINE_SCAFFOLD),
    ])


def _scaffold_hop(mol, smiles):
    return arithmetic_mean([
        clipped(tanimoto(mol, HOP_START, "PHCO"), 0.75),
        has_match(mol, PROPOXY_BENZOTHIAZOLE_AMINE),
        1.0 - has_match(mol, QUINAZOLINE_SCAFFOLD),
    ])


def _valsartan(mol, smiles):
    from rdkit.Chem import Descriptors

    logp, tpsa, bertz = _descriptors(SITAGLIPTIN_FOR_VALSARTAN)
    return geometric_mean([
        has_match(mol, VALSARTAN_SMARTS),
        gaussian(_tpsa(mol), tpsa, 5.0),
        gaussian(_logp(mol), logp, 0.2),
        gaussian(Descriptors.BertzCT(mol), bertz, 30.0),
    ])


def _qed(mol, smiles):
    from rdkit.Chem import QED

    return QED.qed(mol)


@dataclass(frozen=True)
class PmoOracle:
    """One oracle: ``oracle(smiles)`` is its value in [0, 1] (0 for an invalid or empty SMILES)."""

    name: str
    """TDC's name, e.g. ``"celecoxib_rediscovery"``."""
    definition: str
    """One line: what it scores."""
    _score: Callable
    """(RDKit Mol, its canonical SMILES) -> float."""

    def score(self, smiles: str) -> float | None:
        """The value of ``smiles``, or None for an empty or unparsable SMILES (or one without atoms)."""
        from rdkit import Chem

        mol = _mol(smiles) if smiles else None
        if mol is None or mol.GetNumAtoms() == 0:
            return None
        canonical = Chem.MolToSmiles(mol)  # PMO scores the canonical SMILES, which TDC parses again
        mol = _mol(canonical)
        if mol is None:
            return None
        try:
            return float(self._score(mol, canonical))
        except (RuntimeError, ValueError):  # RDKit's errors on a molecule it parsed: 0, as tdc.Oracle scores them
            return 0.0

    def __call__(self, smiles: str) -> float:
        value = self.score(smiles)
        return 0.0 if value is None else value


_DEFINITIONS: dict[str, tuple[str, Callable]] = {
    "celecoxib_rediscovery": ("Tanimoto (ECFP4 counts) to celecoxib", _rediscovery(CELECOXIB)),
    "troglitazone_rediscovery": ("Tanimoto (ECFP4 counts) to troglitazone", _rediscovery(TROGLITAZONE)),
    "thiothixene_rediscovery": ("Tanimoto (ECFP4 counts) to thiothixene", _rediscovery(THIOTHIXENE)),
    "albuterol_similarity": ("Tanimoto (FCFP4 counts) to albuterol, clipped at 0.75",
                             _similarity(ALBUTEROL, "FCFP4")),
    "mestranol_similarity": ("Tanimoto (atom pairs <= 10 bonds, counts) to mestranol, clipped at 0.75",
                             _similarity(MESTRANOL, "AP")),
    "isomers_c7h8n2o2": ("closeness to the formula C7H8N2O2 (per-element and total atom Gaussians, geometric mean)",
                         _isomers("C7H8N2O2")),
    "isomers_c9h10n2o2pf2cl": ("closeness to the formula C9H10N2O2PF2Cl (as isomers_c7h8n2o2)",
                               _isomers("C9H10N2O2PF2Cl")),
    "median1": ("geometric mean of Tanimoto (ECFP4 counts) to camphor and to menthol",
                _median(CAMPHOR, MENTHOL, "ECFP4")),
    "median2": ("geometric mean of Tanimoto (ECFP6 counts) to tadalafil and to sildenafil",
                _median(TADALAFIL, SILDENAFIL, "ECFP6")),
    "osimertinib_mpo": ("geometric mean: TPSA >= 100, logP <= 1, FCFP4 similarity to osimertinib clipped at 0.8, "
                        "ECFP6 similarity <= 0.85", _osimertinib),
    "fexofenadine_mpo": ("geometric mean: TPSA >= 90, logP <= 4, atom-pair similarity to fexofenadine clipped at 0.8",
                         _fexofenadine),
    "ranolazine_mpo": ("geometric mean: TPSA >= 95, logP >= 7, atom-pair similarity to ranolazine clipped at 0.7, "
                       "one fluorine", _ranolazine),
    "perindopril_mpo": ("geometric mean: ECFP4 similarity to perindopril, two aromatic rings", _perindopril),
    "amlodipine_mpo": ("geometric mean: ECFP4 similarity to amlodipine, three rings", _amlodipine),
    "sitagliptin_mpo": ("geometric mean: ECFP4 dissimilarity to sitagliptin, its logP and TPSA, formula "
                        "C16H15F6N5O", _sitagliptin(prev=False)),
    "zaleplon_mpo": ("geometric mean: ECFP4 similarity to zaleplon, formula C19H17N3O2", _zaleplon(prev=False)),
    "deco_hop": ("mean: pharmacophore similarity to the start clipped at 0.85, no sulfone, no benzothiazole amine, "
                 "quinazoline scaffold kept", _deco_hop),
    "scaffold_hop": ("mean: pharmacophore similarity to the start clipped at 0.75, propoxy-benzothiazole decoration "
                     "kept, quinazoline scaffold gone", _scaffold_hop),
    "valsartan_smarts": ("geometric mean: valsartan's biphenyl amide SMARTS, sitagliptin's logP, TPSA and Bertz "
                         "complexity", _valsartan),
    "qed": ("RDKit QED (Bickerton et al. 2012)", _qed),
    "isomers_c7h8n2o2_prev": ("isomers_c7h8n2o2 with the total atom count read from the SMILES (TDC before Aug 2022)",
                              _isomers("C7H8N2O2", prev=True)),
    "isomers_c9h10n2o2pf2cl_prev": ("isomers_c9h10n2o2pf2cl with the total atom count read from the SMILES (TDC "
                                    "before Aug 2022)", _isomers("C9H10N2O2PF2Cl", prev=True)),
    "sitagliptin_mpo_prev": ("sitagliptin_mpo with the pre-Aug-2022 isomer score", _sitagliptin(prev=True)),
    "zaleplon_mpo_prev": ("zaleplon_mpo with the pre-Aug-2022 isomer score", _zaleplon(prev=True)),
}

ORACLES: dict[str, PmoOracle] = {name: PmoOracle(name, text, fn) for name, (text, fn) in _DEFINITIONS.items()}
"""Every oracle by TDC name: ``PMO_ORACLES`` then ``PREV_ORACLES``."""


def oracle(name: str) -> PmoOracle:
    """The oracle called ``name`` (a TDC name: ``PMO_ORACLES`` or ``PREV_ORACLES``)."""
    try:
        return ORACLES[name]
    except KeyError:
        raise ValueError(f"unknown PMO oracle {name!r}; choose one of: {', '.join(ORACLES)}") from None


def score_smiles(name: str, smiles: str) -> float:
    """The value of oracle ``name`` for ``smiles`` in [0, 1]; 0.0 for an empty or invalid SMILES."""
    return oracle(name)(smiles)
