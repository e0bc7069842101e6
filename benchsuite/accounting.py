"""PMO accounting: the oracle budget as the molecular-optimization field counts it (a card's ``accounting:`` block).

PMO (Gao et al. 2022, arXiv 2206.12411; wenhao-gao/mol_opt ``main/optimizer.py``, ``Oracle``) counts oracle calls
this way, and ``PmoOracle`` does the same on top of ``BudgetedOracle``'s rules (faults, retries, the query log):

- Every queried sample gets a cache key: the canonical SMILES of its molecule (RDKit's ``MolToSmiles`` of the parsed
  molecule, as PMO canonicalises) for the molecule rewards, the token string for sequence rewards (Ehrlich). An empty
  or unparsable molecule has no key: it is invalid.
- A key seen before is answered from the cache with its first value and charges nothing; a repeat inside one batch
  too (its first occurrence is the one charged). An invalid molecule scores 0.0 and charges nothing (PMO leaves it
  out of its record). Only distinct valid samples are charged, one each, before the oracle is asked (a batch never
  holds more new keys than samples, so a batch of at most ``remaining`` samples always fits).
- Free answers can go on forever (a method that only repeats itself), so the run ends once ``free_limit`` free
  answers have been given in all (default: 10 x the budget): ``exhausted`` becomes True with budget left, and the
  final AUC is padded to the budget as mol_opt pads a run that stopped early.
- The query log has, for every answered query, whether it was charged and its key (``query_log.csv`` columns
  ``charged`` and ``key``; an invalid molecule's key is empty).

``metrics()`` (logged by the runner at every evaluation point and in the summary) reads PMO's record, the values of
the charged queries in order (``benchsuite.metrics.pmo.distinct_in_order`` of the log), and gives ``pmo/auc_top1``,
``pmo/auc_top10``, ``pmo/auc_top100`` (``top_auc``: read every ``freq`` charged queries, divided by the budget;
padded to the budget only once the run is over, so an intermediate value is the area so far), ``pmo/top1``,
``pmo/top10``, ``pmo/top100``, the counters ``pmo/charged``, ``pmo/cache_hits``, ``pmo/invalid``, and for molecules
``pmo/diversity_top100`` (PMO's internal diversity: mean pairwise Tanimoto distance of the 100 best molecules'
Morgan radius-2 2048-bit fingerprints, ECFP4); for Ehrlich rewards (known optimum 1.0) holo-bench's
``pmo/simple_regret``, ``pmo/cumulative_regret`` (per charged query), ``pmo/feasible_fraction``, ``pmo/solved`` (0/1)
and ``pmo/queries_to_solve`` (charged queries; -1 while unsolved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .budget import BudgetedOracle, QueryLog
from .errors import BudgetExhausted, ConfigError
from .metrics import pmo as pmo_metrics
from .rewards.base import Reward
from .domains.molecules import mol_from_smiles
from .rewards.molecules import _SelfiesReward
from .domains.molecules import tanimoto_diversity

MODES = ("queries", "pmo")
"""``queries``: every sample charged (the suite's default); ``pmo``: PMO's accounting (module docstring)."""

INVALID_SCORE = 0.0
"""What an invalid molecule scores under PMO accounting (PMO's rule)."""


@dataclass(frozen=True)
class AccountingSpec:
    """A card's ``accounting:`` block.

    Attributes:
        mode: ``queries`` (every sample charged) or ``pmo``.
        freq: charged queries between two points of the top-k curve whose area is the AUC (PMO: 100).
        free_limit: free answers (cache hits and invalid molecules) after which the run ends; 0: 10 x the budget.
    """

    mode: str = "queries"
    freq: int = pmo_metrics.PMO_FREQ
    free_limit: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"accounting.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("freq", "free_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "freq" else 0):
                raise ConfigError(f"accounting.{name} must be an integer >= {1 if name == 'freq' else 0}, got "
                                  f"{value!r}")


def parse_accounting(raw: Any, source: str) -> AccountingSpec | None:
    """The ``accounting`` block of a card (a mapping of ``AccountingSpec`` fields, or just the mode as a string);
    None when absent or ``queries`` with default settings (so existing cards keep their digests)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"mode": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: accounting must be a mode ({' or '.join(MODES)}) or a mapping with mode, freq, "
                          "free_limit")
    unknown = set(raw) - {"mode", "freq", "free_limit"}
    if unknown:
        raise ConfigError(f"{source}: unknown accounting key(s) {sorted(map(str, unknown))}; allowed: free_limit, "
                          "freq, mode")
    spec = AccountingSpec(**raw)
    return None if spec == AccountingSpec() else spec


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES of ``smiles``; None for an empty or unparsable molecule."""
    from rdkit import Chem


    mol = mol_from_smiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def cache_keys(reward: Reward, samples: Tensor) -> list[str | None]:
    """One cache key per sample (module docstring); raises ``ConfigError`` for a reward without keys."""

    if isinstance(reward, _SelfiesReward):
        return [canonical_smiles(s) for s in reward.smiles(samples)]
    tokens = getattr(reward, "tokens", None)
    if callable(tokens):
        return [" ".join(map(str, row)) for row in tokens(samples).tolist()]
    raise ConfigError(f"accounting pmo needs a molecule or sequence oracle (cache keys); {reward.name!r} has none")


def supports_keys(reward: Reward) -> bool:
    """Whether ``cache_keys`` can key ``reward``'s samples."""

    return isinstance(reward, _SelfiesReward) or callable(getattr(reward, "tokens", None))


class PmoOracle(BudgetedOracle):
    """``BudgetedOracle`` with PMO's accounting (module docstring): repeats and invalid molecules are free.

    Args:
        reward, budget, retries, backoff_s, timeout_s: as ``BudgetedOracle``.
        spec: the card's accounting settings.
    """

    def __init__(self, reward: Reward, budget: int, spec: AccountingSpec, retries: int = 0, backoff_s: float = 1.0,
                 timeout_s: float | None = None):
        super().__init__(reward, budget, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)
        if not supports_keys(reward):
            raise ConfigError(f"accounting pmo needs a molecule or sequence oracle (cache keys); {reward.name!r} "
                              "has none")
        self.spec = spec
        self.free_limit = spec.free_limit or 10 * self.budget
        self._cache: dict[str, float] = {}
        self._free = 0  # free answers so far
        self._charged: list[np.ndarray] = []
        self._keys: list[str | None] = []

    @property
    def answered(self) -> int:
        """Queries answered so far, charged or free."""
        return len(self._keys)

    @property
    def last_charged(self) -> np.ndarray | None:
        """Which samples of the last call were charged (new distinct valid keys); None before the first call."""
        return self._charged[-1] if self._charged else None

    @property
    def exhausted(self) -> bool:
        """True once the budget is spent or ``free_limit`` free answers were given (sticky)."""
        return self._used >= self.budget or self._free >= self.free_limit

    def __call__(self, samples: Tensor, conditions: Tensor | None = None) -> Tensor:
        """Score ``samples``: new valid keys from the reward (charged first), repeats from the cache, invalid
        molecules 0.0. ``BudgetExhausted`` (nothing charged) when the new keys exceed ``remaining`` or the run is
        over."""
        n = len(samples)
        if n == 0:
            raise ValueError("an oracle call needs at least one sample")
        if self.exhausted:
            raise BudgetExhausted(f"the run is over (used {self._used} of {self.budget}; {self._free} free answers "
                                  f"of at most {self.free_limit})")
        keys = cache_keys(self._reward, samples)
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is not None and key not in self._cache and key not in first:
                first[key] = i
        new = sorted(first.values())
        if len(new) > self.remaining:
            raise BudgetExhausted(f"batch of {len(new)} new molecules exceeds the remaining budget of "
                                  f"{self.remaining} (used {self._used} of {self.budget})")
        self._used += len(new)  # charged before any work, once, whatever the retries
        call = self._calls
        self._calls += 1
        if new:
            index = torch.tensor(new, dtype=torch.int64, device=samples.device)
            scored = self._answer(samples[index], None if conditions is None else conditions[index])
            for i, value in zip(new, scored.detach().to(torch.float64).cpu().tolist()):
                self._cache[keys[i]] = value
        values = np.array([INVALID_SCORE if key is None else self._cache[key] for key in keys], dtype=np.float64)
        charged = np.zeros(n, dtype=bool)
        charged[new] = True
        self._free += n - len(new)
        conds = (np.full(n, -1, dtype=np.int64) if conditions is None
                 else conditions.detach().cpu().numpy().astype(np.int64))
        self._log.append((np.full(n, call, dtype=np.int64), conds, values))
        self._charged.append(charged)
        self._keys.extend(keys)
        return torch.tensor(values, dtype=torch.float32, device=samples.device)

    def query_log(self) -> QueryLog:
        log = super().query_log()
        charged = np.concatenate(self._charged) if self._charged else np.zeros(0, dtype=bool)
        return QueryLog(log.call, log.condition, log.reward, charged=charged, key=tuple(self._keys))

    def record(self) -> np.ndarray:
        """PMO's record: the values of the charged queries (distinct valid keys) in the order they were charged."""
        log = self.query_log()
        return np.asarray(pmo_metrics.distinct_in_order(list(log.key), log.reward.tolist()))

    def metrics(self) -> dict[str, float]:
        """The ``pmo/*`` metrics of the run so far (module docstring)."""
        values, log = self.record(), self.query_log()
        out: dict[str, float] = {
            "pmo/charged": float(self._used),
            "pmo/cache_hits": float(sum(1 for k, c in zip(log.key, log.charged) if k is not None and not c)),
            "pmo/invalid": float(sum(1 for k in log.key if k is None)),
        }
        if len(values) == 0:
            return out
        finished = self.exhausted
        for k in (1, 10, 100):
            out[f"pmo/auc_top{k}"] = pmo_metrics.top_auc(values, k, self.budget, self.spec.freq, finished)
            out[f"pmo/top{k}"] = pmo_metrics.top_k_mean(values, k, self.budget)

        if isinstance(self._reward, _SelfiesReward):

            best = {}  # key -> value, the 100 best distinct molecules
            for key, charged, value in zip(log.key, log.charged, log.reward):
                if charged:
                    best[key] = value
            top = sorted(best, key=lambda s: -best[s])[:100]
            out["pmo/diversity_top100"] = tanimoto_diversity(top)
        infeasible = getattr(self._reward, "infeasible_value", None)
        if infeasible is not None:
            summary = pmo_metrics.regret_summary(values, optimum=1.0, batch_size=1, infeasible_value=infeasible)
            out["pmo/simple_regret"] = summary["simple_regret"]
            out["pmo/cumulative_regret"] = summary["cumulative_regret"]
            out["pmo/feasible_fraction"] = summary["feasible_fraction"]
            out["pmo/solved"] = float(summary["solved"])
            out["pmo/queries_to_solve"] = float(-1 if summary["queries_to_solve"] is None
                                                else summary["queries_to_solve"])
        return out

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["pmo"] = {"free": self._free,
                        "charged": torch.from_numpy(np.concatenate(self._charged) if self._charged
                                                    else np.zeros(0, dtype=bool)),
                        "keys": ["" if k is None else k for k in self._keys],
                        "valid": torch.tensor([k is not None for k in self._keys], dtype=torch.bool)}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        pmo = state["pmo"]
        self._free = int(pmo["free"])
        self._charged = [pmo["charged"].numpy().copy()] if len(pmo["charged"]) else []
        self._keys = [k if ok else None for k, ok in zip(pmo["keys"], pmo["valid"].tolist())]
        log = self.query_log()
        self._cache = {}
        for key, charged, value in zip(log.key, log.charged, log.reward):
            if charged:
                self._cache[key] = float(value)
