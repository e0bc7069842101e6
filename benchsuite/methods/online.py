"""Online rounds: few oracle queries, many cheap steps against an optimistic surrogate.

The protocol of SEIKO (Uehara et al. 2024, arXiv 2402.16359; zhaoyl18/SEIKO) and of SQDF's online setting, for
any method that trains a policy:

    for each round r (the task card's ``online.rounds`` splits the budget evenly):
        x_1..x_n ~ p_theta                       # n = the round's queries, sampled from the current policy
        y_i = oracle(x_i)                        # the only queries charged to the budget
        D <- D + {(x_i, y_i)}
        refit a bootstrap ensemble f_1..f_M on D
        run ceil(ratio * n / B) steps of the method (batch B) against  r_hat(x) = mean_m f_m(x) + bonus * std_m f_m(x)
        (free: the method's own KL to the pretrained model keeps it near the data)

The ensemble stands in for SEIKO's uncertainty oracle (bootstrap ensembles are one of its two variants; the
other is a GP with a UCB bonus). Members see different bootstrap resamples of D, drawn from the method's
generator; each refit continues from the previous round's weights. Written for this suite.

Everything is checkpointed at round boundaries: a round is one ``step`` of the wrapped method, and its one
oracle call is one ``ask`` of an ask/tell session.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..budget import BudgetedOracle
from ..policies.base import DiffusionPolicy
from ..spaces import SampleSpace
from ..tasks import OnlineSpec, TaskInfo
from .base import Method


class EnsembleSurrogate:
    """A bootstrap ensemble on every paid-for query; ``ucb = mean + bonus * std`` over members (reward scale).
    Members come from the sample space's surrogate family (``space.reward_model``: a CNN for images, a dilated
    1-D CNN for sequences).

    Args:
        space: the decoded samples' space (``policy.space``).
        num_conditions: number of condition ids, or None (unconditional).
        spec: the task's online settings (ensemble size, bonus, fit steps, batch, lr, width).
        generator: the method's generator (initialisation, bootstrap resamples, minibatches).
    """

    def __init__(self, space: SampleSpace, num_conditions: int | None, spec: OnlineSpec,
                 generator: torch.Generator, device: torch.device | str = "cpu"):
        self.spec, self.generator = spec, generator
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):  # initialise from the method's stream, not the global one
            torch.manual_seed(seed)
            self.members = nn.ModuleList(
                [space.reward_model(num_conditions, spec.width) for _ in range(spec.ensemble_size)]
            ).to(device)
        self.members.requires_grad_(False)
        self.optimizers = [torch.optim.Adam(m.parameters(), lr=spec.lr) for m in self.members]
        self.samples: Tensor | None = None
        self.conditions: Tensor | None = None
        self.rewards: Tensor | None = None
        self.mean, self.std = 0.0, 1.0

    def add(self, samples: Tensor, conditions: Tensor | None, rewards: Tensor) -> None:
        """Append paid-for data (all of it is kept: online budgets are small)."""
        samples, rewards = samples.detach(), rewards.detach().float()
        conds = None if conditions is None else conditions.detach()
        if self.samples is None:
            self.samples, self.conditions, self.rewards = samples, conds, rewards
            return
        self.samples = torch.cat([self.samples, samples])
        self.rewards = torch.cat([self.rewards, rewards])
        if conds is not None:
            self.conditions = torch.cat([self.conditions, conds])

    def fit(self) -> float:
        """Refit every member on its own bootstrap resample (MSE on standardised targets); returns the mean
        last-minibatch loss."""
        n = len(self.rewards)
        self.mean = self.rewards.mean().item()
        std = self.rewards.std().item() if n > 1 else 0.0
        self.std = std if std > 1e-8 else 1.0
        targets = (self.rewards - self.mean) / self.std
        losses = []
        self.members.requires_grad_(True)
        self.members.train()
        for member, opt in zip(self.members, self.optimizers):
            boot = torch.randint(n, (n,), generator=self.generator)
            loss = torch.zeros(())
            for _ in range(self.spec.refit_steps(n)):
                idx = boot[torch.randint(n, (min(n, self.spec.fit_batch),), generator=self.generator)]
                conds = None if self.conditions is None else self.conditions[idx]
                loss = (member(self.samples[idx], conds) - targets[idx]).square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(loss.item())
        self.members.eval()
        self.members.requires_grad_(False)
        return sum(losses) / len(losses)

    def predict(self, samples: Tensor, conditions: Tensor | None) -> tuple[Tensor, Tensor]:
        """Ensemble mean and std (over members) on the reward scale, ``B`` each; differentiable in ``samples``."""
        preds = torch.stack([m(samples, conditions) for m in self.members])  # M x B
        return preds.mean(0) * self.std + self.mean, preds.std(0) * self.std

    def ucb(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        mean, std = self.predict(samples, conditions)
        return mean + self.spec.bonus * std

    def state_dict(self) -> dict[str, Any]:
        return {"members": self.members.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
                "samples": self.samples, "conditions": self.conditions, "rewards": self.rewards,
                "mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.members.load_state_dict(state["members"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        self.samples, self.conditions, self.rewards = state["samples"], state["conditions"], state["rewards"]
        self.mean, self.std = state["mean"], state["std"]


class SurrogateOracle:
    """The oracle interface of ``BudgetedOracle`` over an ensemble's UCB: differentiable and free.

    ``used`` counts the synthetic queries (never charged to the run's budget); ``remaining`` is unbounded for
    practical purposes, so a method's batch is its configured size.
    """

    differentiable = True
    name = "surrogate-ucb"
    budget = 2**62

    def __init__(self, surrogate: EnsembleSurrogate):
        self.surrogate = surrogate
        self.used = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    @property
    def exhausted(self) -> bool:
        return False

    def __call__(self, samples: Tensor, conditions: Tensor | None = None) -> Tensor:
        self.used += len(samples)
        return self.surrogate.ucb(samples, conditions)


class OnlineRounds(Method):
    """Runs a policy-training method under online rounds (see the module docstring).

    Args:
        inner: the method to run against the surrogate (not yet set up).
        spec: the task card's ``online`` settings; each step is one round of ``spec.round_left`` queries.
    """

    def __init__(self, inner: Method, spec: OnlineSpec):
        super().__init__(inner.config)
        self.inner, self.spec = inner, spec
        self.name = inner.name
        self.round = 0

    def setup(self, policy: DiffusionPolicy, task: TaskInfo, generator: torch.Generator) -> None:
        super().setup(policy, task, generator)
        # the inner method's oracle is the surrogate: differentiable, so gradient methods use its gradients
        self.inner.setup(policy, dataclasses.replace(task, oracle_differentiable=True), generator)
        tc = task.train_conditions
        self.surrogate = EnsembleSurrogate(policy.space, None if tc is None else int(tc.max()) + 1, self.spec,
                                           generator, policy.stds.device)

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        n = self.spec.round_left(oracle.budget, oracle.used)
        began = time.perf_counter()
        conds = self.sample_conditions(n)
        samples = self.sample_decoded(conds, n)
        rewards = oracle(samples, conds).detach()  # the round's one charged call
        sampled = time.perf_counter()
        fit_loss = self._learn(samples, conds, rewards, getattr(oracle, "last_charged", None))
        fitted = time.perf_counter()
        self.round += 1
        proxy = SurrogateOracle(self.surrogate)
        steps = self.spec.inner_steps(n, self.inner.config.batch_size)
        inner_infos = [self.inner.step(proxy) for _ in range(steps)]
        info = {"train/reward_mean": rewards.mean().item(), "train/reward_max": rewards.max().item(),
                "train/round": float(self.round), "train/surrogate_loss": fit_loss, "train/inner_steps": float(steps),
                # seconds of the round's phases (the runner's phase table, scripts/leaderboard_phases.py)
                "time/query_s": sampled - began, "time/fit_s": fitted - sampled,
                "time/inner_s": time.perf_counter() - fitted}
        for key in inner_infos[-1] if inner_infos else ():
            values = [d[key] for d in inner_infos if key in d]
            info[f"inner/{key.split('/', 1)[-1]}"] = sum(values) / len(values)
        return info

    def _learn(self, samples: Tensor, conds: Tensor | None, rewards: Tensor, charged) -> float:
        """Add the round's paid-for data to the surrogate and refit it; returns the fit loss (NaN: no refit).

        ``charged``: which samples the oracle charged (PMO accounting, ``PmoOracle.last_charged``), or None
        (every sample charged: the default accounting, where nothing below applies). Under PMO accounting the
        surrogate fits PMO's record, the distinct valid queries: a repeat or an invalid sample is free and adds
        nothing, and a round that charged nothing keeps the last fit, so that a policy that only repeats itself
        does not refit on copies round after round until the run's free answers run out (measured before this
        rule: a DDPO tuning trial on selfies-chembl-pmo-zaleplon-mpo-v0 spent 1,184 of its 1,378 s refitting)."""
        if charged is not None and not bool(np.all(charged)):
            if not np.any(charged):
                return math.nan
            keep = torch.from_numpy(np.asarray(charged, dtype=bool)).to(samples.device)
            samples, rewards = samples[keep], rewards[keep]
            conds = None if conds is None else conds[keep]
        self.surrogate.add(samples, conds, rewards)
        return self.surrogate.fit()

    def eval_samples(self, conditions: Tensor | None, n: int):
        return self.inner.eval_samples(conditions, n)

    def _state(self) -> dict[str, Any]:  # deep-copied by Method.state_dict
        return {"inner": self.inner.state_dict(), "surrogate": self.surrogate.state_dict(), "round": self.round}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.surrogate.load_state_dict(state["surrogate"])
        self.round = int(state["round"])
