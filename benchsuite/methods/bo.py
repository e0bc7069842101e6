"""``bo``: batch Bayesian optimization over a pool of pretrained samples (a black-box reference baseline).

The pretrained model proposes, a GP decides what to query:

1. At the first step, draw ``pool_size`` samples from the frozen pretrained policy (free: only oracle queries
   count), decode them and embed them in ``feature_dim`` dimensions by PCA of the flattened decoded samples
   (token probabilities for sequences, pixels for images), scaled to the unit cube; a condition adds a one-hot
   block. Training conditions are assigned round-robin over the pool.
2. Every step queries ``batch_size`` pool members not queried before. While fewer than ``initial_queries`` have
   been scored, they are drawn uniformly at random. After that, a ``SingleTaskGP`` (botorch) is fitted by
   marginal likelihood on all scored features (targets standardised) and the batch is chosen by Thompson sampling
   over the unqueried pool without replacement (botorch ``MaxPosteriorSampling``), which scales to large batches
   where sequential greedy q-acquisition does not.
3. The product is what best-of-N keeps: per condition, the top samples by observed reward (inherited from
   ``BestOfN``, with its eval rules). The reported KL is best-of-N's formula with n = queried / kept: BO selects
   more sharply than random draws, so it is a lower estimate.

The discrete-pool formulation follows the common practice for BO with generative models when the search space
is only reachable through samples (e.g. LaMBO-style candidate pools in prescient-design/holo-bench's
benchmarks); the code is ours.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..budget import BudgetedOracle
from .base import check
from .best_of_n import BestOfN, BestOfNConfig


@dataclass(frozen=True)
class BOConfig(BestOfNConfig):
    pool_size: int = 4096
    """Pretrained samples the GP chooses from (drawn once; must be at least the budget)."""
    feature_dim: int = 16
    """PCA dimensions of the GP's input features."""
    initial_queries: int = 64
    """Queries drawn uniformly from the pool before the first GP fit."""
    sample_chunk: int = 256
    """Pool samples drawn per rollout (bounds memory)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.pool_size >= 2, "pool_size must be >= 2")
        check(self.feature_dim >= 1, "feature_dim must be >= 1")
        check(self.initial_queries >= 1, "initial_queries must be >= 1")
        check(self.sample_chunk >= 1, "sample_chunk must be >= 1")


class BayesianOptimization(BestOfN):
    """Thompson-sampling batch BO with a GP over PCA features of a pretrained sample pool."""

    name = "bo"
    Config = BOConfig

    def setup(self, policy, task, generator: torch.Generator) -> None:
        super().setup(policy, task, generator)
        self.pool: Tensor | None = None  # P x *decoded
        self.pool_conditions: Tensor | None = None  # P or None
        self.features: Tensor | None = None  # P x d in [0, 1]
        self.queried = torch.zeros(0, dtype=torch.int64)  # pool indices, in query order
        self.scores = torch.zeros(0, dtype=torch.float64)

    @torch.no_grad()
    def _make_pool(self) -> None:
        c = self.config
        tc = self.task.train_conditions
        conds = None if tc is None else tc[torch.arange(c.pool_size) % len(tc)]
        self.pool, self.pool_conditions = self.sample_decoded(conds, c.pool_size, c.sample_chunk, device="cpu"), conds
        flat = self.pool.flatten(1).double()
        flat = flat - flat.mean(0)
        q = min(c.feature_dim, flat.shape[1], flat.shape[0] - 1)
        # PCA by SVD (deterministic, no randomness): the top-q right singular vectors
        _, _, v = torch.linalg.svd(flat, full_matrices=False)
        feats = flat @ v[:q].T
        lo, hi = feats.min(0).values, feats.max(0).values
        feats = (feats - lo) / (hi - lo).clamp(min=1e-12)
        if conds is not None:
            feats = torch.cat([feats, torch.nn.functional.one_hot(conds, int(tc.max()) + 1).double()], dim=1)
        self.features = feats

    def _select(self, n: int) -> Tensor:
        """Pool indices of the next ``n`` queries (never one queried before)."""
        free = torch.ones(len(self.pool), dtype=torch.bool)
        free[self.queried] = False
        candidates = free.nonzero().squeeze(1)
        if len(self.queried) < self.config.initial_queries:
            perm = torch.randperm(len(candidates), generator=self.generator)
            return candidates[perm[:n]]
        from botorch.fit import fit_gpytorch_mll
        from botorch.generation.sampling import MaxPosteriorSampling
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood
        from linear_operator.utils.warnings import NumericalWarning

        seed = int(torch.randint(2**31 - 1, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):  # botorch draws from the global RNG: seed it from ours
            torch.manual_seed(seed)
            x = self.features[self.queried]
            y = self.scores[:, None]
            gp = SingleTaskGP(x, y, outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            with torch.no_grad(), warnings.catch_warnings():
                # the joint posterior over thousands of pool points is near-singular; gpytorch adds diagonal
                # jitter (1e-8 and up) and warns each time: expected here, so not shown
                warnings.simplefilter("ignore", NumericalWarning)
                chosen = MaxPosteriorSampling(gp, replacement=False)(self.features[candidates][None], num_samples=n)
        # map the chosen feature rows back to pool indices (rows are unique: pool features are distinct almost
        # surely; ties resolve to the first free match)
        rows = torch.cdist(chosen[0], self.features[candidates]).argmin(1)
        picked = candidates[rows]
        if len(torch.unique(picked)) < len(picked):  # duplicate features: fill up with unpicked candidates
            picked = torch.unique(picked, sorted=False)
            rest = candidates[~torch.isin(candidates, picked)]
            picked = torch.cat([picked, rest[: n - len(picked)]])
        return picked

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        if self.pool is None:
            self._make_pool()
        n = min(self.batch_for(oracle), len(self.pool) - len(self.queried))
        if n <= 0:
            from ..errors import ConfigError

            raise ConfigError(f"bo: the pool of {len(self.pool)} samples is used up; set method.pool_size >= budget")
        idx = self._select(n)
        device = self.policy.stds.device
        samples = self.pool[idx].to(device)
        conds = None if self.pool_conditions is None else self.pool_conditions[idx].to(device)
        rewards = oracle(samples, conds).detach()
        self.queried = torch.cat([self.queried, idx])
        self.scores = torch.cat([self.scores, rewards.double().cpu()])
        self.keep(samples, conds, rewards)
        return {"train/reward_mean": rewards.mean().item(), "train/reward_max": rewards.max().item(),
                "train/best_so_far": self.scores.max().item()}

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "pool": self.pool, "pool_conditions": self.pool_conditions,
                "features": self.features, "queried": self.queried, "scores": self.scores}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pool, self.pool_conditions, self.features = state["pool"], state["pool_conditions"], state["features"]
        self.queried, self.scores = state["queried"].clone(), state["scores"].clone()
