"""Write reference scores of the RDKit-only PMO oracles, computed by TDC, to ``tests/rewards/data/pmo_reference.json``.

The reference is TDC's oracle module (PyPI ``PyTDC``, ``tdc.Oracle``), which PMO (Gao et al. 2022,
wenhao-gao/mol_opt) scores through. It is run here, never imported by benchsuite: install it in a throwaway venv
with TDC's own pins (PyTDC 1.1.15 requires rdkit >= 2023.9.5, < 2024.3.1 and numpy < 2) and only what its oracle
module imports (nothing is downloaded for these oracles; the workers refuse any network connection to prove it):

    python3 -m venv /tmp/refvenv23
    /tmp/refvenv23/bin/pip install --no-deps PyTDC==1.1.15
    /tmp/refvenv23/bin/pip install rdkit==2023.9.6 numpy==1.26.4 "scipy<1.14" "pandas<2.3" networkx \
        "scikit-learn<1.6" packaging "setuptools<70" requests tqdm fuzzywuzzy
    /tmp/refvenv23/bin/python scripts/make_pmo_fixtures.py

How each molecule is scored is PMO's (mol_opt ``main/optimizer.py``, ``Oracle.score_smi``): an empty or
unparsable SMILES scores 0; otherwise RDKit's canonical SMILES of it goes to ``tdc.Oracle(name)`` (whose single-SMILES
call scores 0 when the evaluator raises; the exception is recorded under ``swallowed_errors``).

Each oracle runs in a fresh Python process: several TDC oracles keep their targets in module globals that other
oracles overwrite (``scaffold_hop`` replaces the scaffold SMARTS that ``deco_hop`` uses, and when it runs first
``deco_hop`` raises for every molecule, which ``tdc.Oracle`` scores 0; ``zaleplon_mpo`` and ``zaleplon_mpo_prev`` share
one cached isomer scorer, as do the two sitagliptin MPOs), so one process scoring
several oracles would record values that depend on their order.

``--out PATH`` writes elsewhere, e.g. to measure RDKit drift in the reference itself. TDC 1.1.15 imports
``rdkit.six``, which newer RDKit releases lack; when it is missing a stand-in module with the one helper TDC takes from
it (used only by TDC's SA scorer, none of these oracles) is registered and the file says so. Run that way on RDKit
2026.09.1, numpy 2.4.6, scipy 1.17.1, pandas 3.1.1, no value moved by more than 1.1e-16 from the committed file.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "rewards" / "data" / "pmo_reference.json"

# TDC names: PMO's 20 RDKit-only objectives, then TDC's pre-August-2022 isomer scorers and the two MPOs that use them
ORACLES = [
    "celecoxib_rediscovery", "troglitazone_rediscovery", "thiothixene_rediscovery",
    "albuterol_similarity", "mestranol_similarity",
    "isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl",
    "median1", "median2",
    "osimertinib_mpo", "fexofenadine_mpo", "ranolazine_mpo", "perindopril_mpo", "amlodipine_mpo",
    "sitagliptin_mpo", "zaleplon_mpo",
    "deco_hop", "scaffold_hop", "valsartan_smarts", "qed",
    "isomers_c7h8n2o2_prev", "isomers_c9h10n2o2pf2cl_prev", "sitagliptin_mpo_prev", "zaleplon_mpo_prev",
]
# the two pre-2022 isomer scorers are module-level objects of TDC's oracle module that tdc.Oracle does not name
MODULE_LEVEL = {"isomers_c7h8n2o2_prev", "isomers_c9h10n2o2pf2cl_prev"}

MOLECULES = [
    # (id, SMILES as given to the oracle)
    # -- the oracles' own target molecules
    ("celecoxib", "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"),
    ("troglitazone", "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O"),
    ("thiothixene", "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1"),
    ("albuterol", "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"),
    ("mestranol", "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1"),
    ("camphor", "CC1(C)C2CCC1(C)C(=O)C2"),
    ("menthol", "CC(C)C1CCC(C)CC1O"),
    ("tadalafil", "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C"),
    ("sildenafil", "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C"),
    ("osimertinib", "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"),
    ("fexofenadine", "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"),
    ("ranolazine", "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"),
    ("perindopril", "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"),
    ("amlodipine", "Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\\C(=O)OC"),
    ("sitagliptin", "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"),
    ("zaleplon", "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"),
    ("hop_start", "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"),
    ("valsartan", "CCCCC(=O)N(Cc1ccc(cc1)-c1ccccc1-c1nn[nH]n1)[C@@H](C(C)C)C(O)=O"),
    ("aripiprazole", "Clc4cccc(N3CCN(CCCCOc2ccc1c(NC(=O)CC1)c2)CC3)c4Cl"),
    # -- near the hop and SMARTS objectives
    ("gefitinib", "COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1"),
    ("erlotinib", "COCCOc1cc2ncnc(Nc3cccc(c3)C#C)c2cc1OCCOC"),
    ("hop_quinoline", "CCCOc1cc2c(Nc3ccc4ncsc4c3)ccnc2cc1S(=O)(=O)C(C)(C)C"),
    ("valsartan_core_amide", "CC(C)N(C=O)Cc1ccc(cc1)-c1ccccc1"),
    # -- formula isomers (C7H8N2O2, C9H10N2O2PF2Cl) and a near miss
    ("c7h8n2o2_hydrazide", "NNC(=O)c1ccc(O)cc1"),
    ("c7h8n2o2_nitrotoluidine", "Cc1ccc([N+](=O)[O-])cc1N"),
    ("c7h8n2o2_ester", "COC(=O)c1ccc(N)nc1"),
    ("c7h8n2o2_amide", "Nc1ccc(C(N)=O)cc1O"),
    ("c9h10n2o2pf2cl", "CC(=O)Nc1cc(F)c(F)c(Cl)c1P(N)(C)=O"),
    ("c9h10n2o3pf2cl", "CC(=O)Nc1cc(F)c(F)c(Cl)c1OP(N)(=O)C"),
    # -- ordinary drugs
    ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
    ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
    ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"),
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("metformin", "CN(C)C(=N)NC(=N)N"),
    ("penicillin_g", "CC1(C)S[C@@H]2[C@H](NC(=O)Cc3ccccc3)C(=O)N2[C@H]1C(=O)O"),
    ("morphine", "CN1CC[C@]23c4c5ccc(O)c4O[C@H]2[C@@H](O)C=C[C@H]3[C@H]1C5"),
    ("diazepam", "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21"),
    ("nicotine", "CN1CCC[C@H]1c1cccnc1"),
    ("atorvastatin", "CC(C)c1c(C(=O)Nc2ccccc2)c(-c2ccccc2)c(-c2ccc(F)cc2)n1CC[C@@H](O)C[C@@H](O)CC(=O)O"),
    ("imatinib", "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"),
    ("haloperidol", "OC1(CCN(CCCC(=O)c2ccc(F)cc2)CC1)c1ccc(Cl)cc1"),
    ("warfarin", "CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O"),
    ("cholesterol", "CC(C)CCC[C@@H](C)[C@H]1CC[C@H]2[C@@H]3CC=C4C[C@@H](O)CC[C@]4(C)[C@H]3CC[C@]12C"),
    # -- ChEMBL-like screening compounds
    ("chembl_like_1", "O=C(Nc1ccc(cc1)S(=O)(=O)N1CCCC1)c1ccc2OCOc2c1"),
    ("chembl_like_2", "Cc1nc2ccccc2n1Cc1ccc(cc1)C(=O)NCCN1CCOCC1"),
    ("chembl_like_3", "CC(C)n1cnc2c(Nc3cccc(Cl)c3)nc(NCCO)nc21"),
    ("chembl_like_4", "FC(F)(F)c1ccc(Oc2ccc(cc2)C#N)nc1"),
    ("chembl_like_5", "O=C1NC(=O)C(=Cc2ccc(o2)-c2ccc(Br)cc2)S1"),
    ("chembl_like_6", "COc1ccc(cc1OC)C(=O)N1CCN(CC1)c1ncccn1"),
    # -- what the SELFIES backbone's pretraining process draws (benchsuite.domains.molecules, seed 0)
    ("selfies_prior_1", "C=1=CCCCCCCCCC=1"),
    ("selfies_prior_2", "CCC#COCCNCOCC"),
    ("selfies_prior_3", "ON=CC1CCCCCC1"),
    ("selfies_prior_4", "CC1C#CC(F)C2CN2NCONC1"),
    ("selfies_prior_5", "O=C=CC1=C2CCCC12"),
    ("selfies_prior_6", "CC(NC=O)=C1NCCOCC=NN1"),
    ("selfies_prior_7", "CN1CC(O)C(CNCCC2CCC=N2)N1"),
    ("selfies_prior_8", "C=CC=C=CNCCN(C)C1C=C1"),
    # -- charges, aromaticity, hydrogens, isotopes, odd elements, sizes
    ("sodium_acetate", "CC(=O)[O-].[Na+]"),
    ("glycine_zwitterion", "[NH3+]CC(=O)[O-]"),
    ("tetramethylammonium_chloride", "C[N+](C)(C)C.[Cl-]"),
    ("pyridine_n_oxide", "[O-][n+]1ccccc1"),
    ("pyrrole", "c1cc[nH]c1"),
    ("thiophene", "c1ccsc1"),
    ("indole", "c1ccc2[nH]ccc2c1"),
    ("kekule_benzene", "C1=CC=CC=C1"),
    ("ethanol_benzene_mixture", "CCO.c1ccccc1"),
    ("deuterated_methanol", "[2H]C([2H])([2H])O"),
    ("explicit_h_ethane", "[H]C([H])([H])C"),
    ("dihydrogen", "[H][H]"),
    ("methane", "C"),
    ("water", "O"),
    ("sodium_ion", "[Na+]"),
    ("methyl_radical", "[CH3]"),
    ("l_alanine", "C[C@H](N)C(=O)O"),
    ("e_2_butene", "C/C=C/C"),
    ("phenylboronic_acid", "OB(O)c1ccccc1"),
    ("selenophene", "c1cc[se]c1"),
    ("triphenylphosphine_oxide", "O=P(c1ccccc1)(c1ccccc1)c1ccccc1"),
    ("cyclododecane", "C1CCCCCCCCCCC1"),
    ("wildcard_phenyl", "*c1ccccc1"),
    ("tetracontane", "C" * 40),  # the isomer scores' total-atom Gaussian underflows to 0
    # -- invalid and empty
    ("unclosed_ring", "C1CC"),
    ("not_smiles", "not a smiles"),
    ("pentavalent_carbon", "C(C)(C)(C)(C)C"),
    ("unkekulizable", "c1cccc1"),
    ("unknown_element", "[Xx]"),
    ("empty", ""),
]


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("PyTDC", "rdkit", "numpy", "scipy", "pandas"):
        out[dist] = md.version(dist)
    return out


def import_tdc_oracle_module():
    """TDC's ``tdc.oracles`` and ``tdc.chem_utils.oracle.oracle`` without ``tdc/__init__.py``, which imports TDC's
    data-set and model-hub layers (huggingface, transformers, ...) that the oracles do not use."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("tdc")
    package = types.ModuleType("tdc")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["tdc"] = package
    shimmed = False
    try:
        import rdkit.six  # noqa: F401
    except ModuleNotFoundError:  # RDKit after 2023.09: TDC takes one helper from it, for its SA scorer only
        six = types.ModuleType("rdkit.six")
        six.iteritems = lambda d: iter(d.items())
        sys.modules["rdkit.six"] = six
        shimmed = True
    import tdc.chem_utils.oracle.oracle as oracle_module
    from tdc.oracles import Oracle

    return Oracle, oracle_module, shimmed


def refuse_network() -> None:
    """Make every socket connection fail: these oracles must score without downloading anything."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("make_pmo_fixtures: network access refused (an oracle tried to download something)")

    socket.socket.connect = refuse
    socket.create_connection = refuse


def worker(name: str) -> dict:
    """Score every molecule with one oracle, PMO's way; runs in its own process."""
    refuse_network()
    from rdkit import Chem, rdBase

    Oracle, oracle_module, shimmed = import_tdc_oracle_module()
    if name in MODULE_LEVEL:
        evaluator = getattr(oracle_module, name)

        def call(smiles):  # what tdc.Oracle.__call__ does with one SMILES string
            if Chem.MolFromSmiles(smiles) is None:
                return 0.0
            try:
                return evaluator(smiles)
            except Exception:  # noqa: BLE001 - tdc.Oracle scores an evaluator's exception 0.0
                return 0.0
    else:
        oracle = Oracle(name=name)
        evaluator, call = oracle.evaluator_func, oracle
    scores, errors = {}, {}
    with rdBase.BlockLogs():
        for mol_id, smiles in MOLECULES:
            mol = Chem.MolFromSmiles(smiles) if smiles else None
            if mol is None:  # mol_opt Oracle.score_smi: invalid or empty SMILES score 0
                scores[mol_id] = 0.0
                continue
            canonical = Chem.MolToSmiles(mol)
            scores[mol_id] = float(call(canonical))
            try:
                evaluator(canonical)
            except Exception as exc:  # noqa: BLE001 - recorded: tdc.Oracle turned it into 0.0
                errors[mol_id] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    return {"scores": scores, "swallowed_errors": errors, "rdkit_six_shim": shimmed}


def canonical_forms() -> dict[str, str | None]:
    from rdkit import Chem, rdBase

    out = {}
    with rdBase.BlockLogs():
        for mol_id, smiles in MOLECULES:
            mol = Chem.MolFromSmiles(smiles) if smiles else None
            out[mol_id] = None if mol is None else Chem.MolToSmiles(mol)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        json.dump(worker(args.worker), sys.stdout)
        return
    ids = [m for m, _ in MOLECULES]
    assert len(set(ids)) == len(ids), "duplicate molecule ids"
    record = {
        "description": "TDC oracle scores of fixed molecules, scored as PMO does (canonical SMILES; invalid or "
                       "empty: 0); each oracle in a fresh process. Written by scripts/make_pmo_fixtures.py.",
        "command": "python scripts/make_pmo_fixtures.py  (in a venv with PyTDC==1.1.15 --no-deps, rdkit==2023.9.6, "
                   "numpy==1.26.4; see the script's docstring)",
        "reference": versions(),
        "rdkit_six_shim": None,
        "molecules": [{"id": m, "smiles": s, "canonical": c}
                      for (m, s), c in zip(MOLECULES, canonical_forms().values())],
        "scores": {},
        "swallowed_errors": {},
    }
    with tempfile.TemporaryDirectory() as cwd:  # TDC would put downloads under ./oracle: keep them out of the repo
        for name in ORACLES:
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name], cwd=cwd,
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"oracle {name} failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout)
            record["scores"][name] = result["scores"]
            if result["swallowed_errors"]:
                record["swallowed_errors"][name] = result["swallowed_errors"]
            record["rdkit_six_shim"] = result["rdkit_six_shim"]
            print(f"{name}: {len(result['scores'])} molecules, {len(result['swallowed_errors'])} swallowed errors")
        leftovers = sorted(p.name for p in Path(cwd).rglob("*"))
        if leftovers:
            sys.exit(f"the oracles wrote files (downloads?): {leftovers}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
