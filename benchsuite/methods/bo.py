"""``bo``: batch Bayesian optimization over a pool of pretrained samples (a black-box reference baseline).

The pretrained model proposes, a GP decides what to query:

1. At the first step, draw ``pool_size`` samples (default: twice the budget) from the frozen pretrained policy
   (free: only oracle queries count), decode them and embed them in ``feature_dim`` dimensions by PCA of the
   flattened decoded samples (token probabilities for sequences, pixels for images), scaled to the unit cube; a
   condition adds a one-hot block. Training conditions are assigned round-robin over the pool.
2. Every step queries ``batch_size`` pool members not queried before. While fewer than ``initial_queries`` have
   been scored, they are drawn uniformly at random. After that, a ``SingleTaskGP`` (botorch) is fitted by
   marginal likelihood on all scored features (targets standardised; warm-started, refitted only when the
   scored set has grown by ``gp_refit_growth``) and the batch is chosen by Thompson sampling over
   ``ts_candidates`` random unqueried pool members without replacement (botorch ``MaxPosteriorSampling``), which
   scales to large batches where sequential greedy q-acquisition does not. On a task with online rounds a step is one round (see
   ``BestOfN.batch_for``) and the first round is the random start, whatever ``batch_size`` and
   ``initial_queries`` say.
3. The product is what best-of-N keeps: per condition, the top samples by observed reward (inherited from
   ``BestOfN``, with its eval rules). The reported KL is the selection bound log(pool / kept) per condition
   (``best_of_n.selection_kl_bound``): the kept set is chosen, by whatever rule, among the pool's i.i.d.
   pretrained samples of that condition.

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
from ..errors import ConfigError
from .base import check
from .best_of_n import BestOfN, BestOfNConfig


@dataclass(frozen=True)
class BOConfig(BestOfNConfig):
    pool_size: int = 0
    """Pretrained samples the GP chooses from (drawn once; must be at least the budget); 0: twice the budget."""
    feature_dim: int = 16
    """PCA dimensions of the GP's input features."""
    initial_queries: int = 64
    """Queries drawn uniformly from the pool before the first GP fit (on tasks with online rounds: the first
    round)."""
    sample_chunk: int = 256
    """Pool samples drawn per rollout (bounds memory)."""
    gp_fit_iterations: int = 100
    """L-BFGS iterations per GP fit, at most; every fit after the first starts from the last one's
    hyperparameters. Unbounded fits took about 500 marginal-likelihood evaluations each (minutes per run at
    1024 points on one CPU core)."""
    gp_refit_growth: float = 1.5
    """The hyperparameters are refitted once the scored set has grown by this factor since the last fit; in
    between, the GP conditions on the new data with the last hyperparameters (1 = refit every step)."""
    ts_candidates: int = 1024
    """Unqueried pool members, drawn at random each step, over which the posterior is sampled jointly (at least
    twice the batch). A joint draw costs a Cholesky factorisation cubic in this number: over all of a 4096 pool
    it took minutes per run on one CPU core. Random candidate subsets for Thompson sampling follow TuRBO
    (Eriksson et al. 2019, which uses min(5000, 200 d))."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.pool_size == 0 or self.pool_size >= 2, "pool_size must be 0 (twice the budget) or >= 2")
        check(self.ts_candidates >= 2, "ts_candidates must be >= 2")
        check(self.gp_fit_iterations >= 1, "gp_fit_iterations must be >= 1")
        check(self.gp_refit_growth >= 1, "gp_refit_growth must be >= 1")
        check(self.feature_dim >= 1, "feature_dim must be >= 1")
        check(self.initial_queries >= 1, "initial_queries must be >= 1")
        check(self.sample_chunk >= 1, "sample_chunk must be >= 1")


class BayesianOptimization(BestOfN):
    """Thompson-sampling batch BO with a GP over PCA features of a pretrained sample pool."""

    name = "bo"
    display_name = "BO"
    colour = "#56B4E9"
    marker = "D"
    tune_params = ("feature_dim", "initial_queries")
    Config = BOConfig

    def setup(self, policy, task, generator: torch.Generator) -> None:
        super().setup(policy, task, generator)
        self.pool: Tensor | None = None  # P x *decoded
        self.pool_conditions: Tensor | None = None  # P or None
        self.features: Tensor | None = None  # P x d in [0, 1]
        self.queried = torch.zeros(0, dtype=torch.int64)  # pool indices, in query order
        self.scores = torch.zeros(0, dtype=torch.float64)
        self.hyperparameters: dict[str, Tensor] | None = None  # the GP's last fitted kernel/likelihood/mean
        self.fitted_on = 0  # scored points at that fit

    @torch.no_grad()
    def _make_pool(self, budget: int) -> None:
        c = self.config
        size = c.pool_size or max(2, 2 * budget)
        tc = self.task.train_conditions
        conds = None if tc is None else tc[torch.arange(size) % len(tc)]
        self.pool, self.pool_conditions = self.sample_decoded(conds, size, c.sample_chunk, device="cpu"), conds
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
        # with online rounds the first round is the random start, as a fine-tuner's first round is pretrained
        if self.task.online is not None:
            random_start = len(self.queried) == 0
        else:
            random_start = len(self.queried) < self.config.initial_queries
        if random_start:
            perm = torch.randperm(len(candidates), generator=self.generator)
            return candidates[perm[:n]]
        limit = max(self.config.ts_candidates, 2 * n)
        if len(candidates) > limit:
            candidates = candidates[torch.randperm(len(candidates), generator=self.generator)[:limit]]
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
            if self.hyperparameters is not None:  # warm start from the last fit (not the data transform)
                gp.load_state_dict(self.hyperparameters, strict=False)
            if self.hyperparameters is None or len(x) >= self.config.gp_refit_growth * self.fitted_on:
                fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp),
                                 optimizer_kwargs={"options": {"maxiter": self.config.gp_fit_iterations}})
                self.hyperparameters = {k: v.detach().clone() for k, v in gp.state_dict().items()
                                        if not k.startswith("outcome_transform")}
                self.fitted_on = len(x)
            gp.eval()
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
            self._make_pool(oracle.budget)
        n = min(self.batch_for(oracle), len(self.pool) - len(self.queried))
        if n <= 0:
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

    def candidates(self, key: int) -> int:
        """The pool members of condition ``key``: the candidates BO's kept set was chosen from."""
        if self.pool_conditions is None:
            return len(self.pool)
        return int((self.pool_conditions == key).sum())

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "pool": self.pool, "pool_conditions": self.pool_conditions,
                "features": self.features, "queried": self.queried, "scores": self.scores,
                "hyperparameters": self.hyperparameters, "fitted_on": self.fitted_on}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pool, self.pool_conditions, self.features = state["pool"], state["pool_conditions"], state["features"]
        self.queried, self.scores = state["queried"].clone(), state["scores"].clone()
        self.hyperparameters, self.fitted_on = state.get("hyperparameters"), state.get("fitted_on", 0)
