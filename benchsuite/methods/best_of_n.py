"""``best-of-n``: rejection sampling from the frozen pretrained model, the reference every fine-tuning method
should beat at equal oracle budget (shared/design/methods.md, "References").

Rules:
1. Each step draws a batch from the pretrained policy (never updated), decodes it and queries the oracle for
   every sample, so the budget is spent in batches exactly as the fine-tuning methods spend it. Conditions are
   assigned round-robin over the task's training conditions (sample i of the run gets condition i mod C), so
   every condition gets the same number of candidates, give or take one.
2. Per condition it keeps the ``keep_per_condition`` samples with the highest oracle reward seen so far (ties:
   the earlier sample wins). The kept images are the method's product.
3. ``eval_samples`` returns, for each requested eval condition, its kept images best first. If a condition asks
   for more images than were kept, the kept ones are repeated in rank order (best, second, ..., best, ...): the
   best-of-N set is what it is, and repeating keeps the eval set's size fixed for the judges. Until every
   requested condition has at least one kept sample (before the first step, or for a condition that is not a
   training condition), it returns None and the runner judges the pretrained policy on the fixed eval noise,
   which is best-of-1.

Reported KL. The policy never changes, so the KL along policy rollouts would be 0. ``eval_samples`` reports an
upper bound on the KL of the judged samples to the pretrained model instead: a uniformly drawn member of a set of
m kept out of N i.i.d. pretrained candidates falls in any event A with probability at most N P_ref(A) / m (the
expected number of candidates in A, divided by m), so its density ratio to P_ref is at most N / m and its KL at
most log(N / m), whatever rule chose the m (``selection_kl_bound``). Averaged over the requested eval samples
per condition. It is in nats, like the fine-tuners' path KL (``eval/kl``), which bounds their final samples' KL
from above as well, so both sit on one drift axis and obey the report's data-processing check. (Until the
leaderboard's v2 protocol this was best-of-n's expected KL, log(n) - (n - 1) / n (Beirami et al., arXiv
2401.01879) divided by the data dims: an estimate that keeping the top m of N can exceed, not a bound.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import distributed
from ..budget import BudgetedOracle
from .base import Method, MethodConfig, check

UNCONDITIONAL = -1
"""Key of the kept set when the task is unconditional."""


@dataclass(frozen=True)
class BestOfNConfig(MethodConfig):
    batch_size: int = 64
    """Samples (= oracle queries) drawn per step; only sets how the budget is spent, not what is kept. Ignored on
    tasks with online rounds: a step is then one round."""
    keep_per_condition: int = 0
    """m: top samples kept per condition. With N candidates per condition, n = N / m candidates per kept sample;
    a smaller m means a stronger selection (higher reward, higher KL, fewer distinct images). 0: the task's eval
    samples per condition, so that the eval set holds no repeats once enough candidates were drawn."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.keep_per_condition >= 0, "keep_per_condition must be >= 0 (0: the task's eval samples per condition)")


def selection_kl_bound(candidates: float, kept: float) -> float:
    """log(candidates / kept) in nats: an upper bound on the KL to the base distribution of a uniformly drawn member
    of ``kept`` samples chosen, by any rule, among ``candidates`` i.i.d. base samples (see the module docstring)."""
    return math.log(max(candidates, kept) / kept)


class BestOfN(Method):
    """Best-of-N from the frozen pretrained model; its product is the per-condition set of top samples."""

    name = "best-of-n"
    display_name = "best-of-N"
    colour = "#000000"
    marker = "s"
    tune_params = ()  # its one setting decides which samples are judged, not how it searches
    trains_policy = False
    data_parallel = True
    Config = BestOfNConfig
    config: BestOfNConfig

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        self.kept: dict[int, tuple[Tensor, Tensor]] = {}  # condition -> (images m' x C x H x W, rewards m'), best first
        self.drawn: dict[int, int] = {}  # condition -> candidates scored so far
        self.cursor = 0  # samples drawn so far: the next one's position in the round-robin over conditions
        self.keep_m = self.config.keep_per_condition or task.eval_samples_per_condition

    def batch_for(self, oracle: BudgetedOracle) -> int:
        """The configured batch; on a task with online rounds, what is left of the current round instead, so
        that the reference baselines query in the same rounds as the fine-tuners (``OnlineSpec.round_sizes``)."""
        if self.task.online is None:
            return super().batch_for(oracle)
        return self.task.online.round_left(oracle.budget, oracle.used)

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        # data-parallel: every process keeps the same sets, from the gathered samples of the global batch
        batch = self.query_batch(oracle, conditions=self._next_conditions)
        rewards = batch.rewards
        self.keep(distributed.gather(batch.samples), batch.conditions, rewards)
        kept = torch.cat([r for _, r in self.kept.values()])
        return {
            "train/reward_mean": rewards.mean().item(),
            "train/kept_reward_mean": kept.mean().item(),
            "train/candidates_per_kept": sum(self.drawn.values()) / len(kept),
        }

    def _next_conditions(self, n: int) -> Tensor | None:
        """The next ``n`` conditions of the round-robin over the training conditions (None if unconditional)."""
        conds = self.task.train_conditions
        position = torch.arange(self.cursor, self.cursor + n)
        self.cursor += n
        return None if conds is None else conds[position % len(conds)]

    @torch.no_grad()
    def keep(self, images: Tensor, conditions: Tensor | None, rewards: Tensor) -> None:
        """Merge a scored batch into the kept sets: per condition, the top ``keep_per_condition`` by reward.

        Args:
            images: ``B x C x H x W``.
            conditions: ``B`` int64, or None (one unconditional set).
            rewards: ``B``.
        """
        rewards = rewards.detach().float()
        keys = (torch.full((len(images),), UNCONDITIONAL, dtype=torch.int64) if conditions is None
                else conditions.detach().cpu())
        for key in torch.unique(keys).tolist():
            mask = (keys == key).to(images.device)
            new_images, new_rewards = images[mask], rewards[mask]
            self.drawn[key] = self.drawn.get(key, 0) + len(new_rewards)
            if key in self.kept:  # earlier samples first, so that the stable sort lets them win ties
                old_images, old_rewards = self.kept[key]
                new_images, new_rewards = torch.cat([old_images, new_images]), torch.cat([old_rewards, new_rewards])
            order = torch.sort(new_rewards, descending=True, stable=True).indices[: self.keep_m]
            self.kept[key] = (new_images[order], new_rewards[order])

    def candidates(self, key: int) -> int:
        """Pretrained candidates the kept set of condition ``key`` was chosen from: those drawn for it."""
        return self.drawn[key]

    def eval_samples(self, conditions: Tensor | None, n: int) -> tuple[Tensor, float] | None:
        """The kept images for the eval ``conditions`` (``n`` int64, or None: ``n`` unconditional samples), best
        first per condition and repeated in rank order when fewer were kept, and the selection's KL bound (see the
        module docstring). None while a requested condition has nothing kept. Never queries the oracle."""
        keys = torch.full((n,), UNCONDITIONAL, dtype=torch.int64) if conditions is None else conditions.cpu()
        unique = torch.unique(keys).tolist()
        if not all(key in self.kept for key in unique):
            return None
        first = next(iter(self.kept.values()))[0]
        images = first.new_empty((n, *first.shape[1:]))
        kl_sum = 0.0
        for key in unique:
            positions = (keys == key).nonzero().squeeze(1)
            kept_images, _ = self.kept[key]
            rank = torch.arange(len(positions)) % len(kept_images)
            images[positions.to(images.device)] = kept_images[rank.to(images.device)]
            kl_sum += len(positions) * selection_kl_bound(self.candidates(key), len(kept_images))
        return images, kl_sum / n

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "kept": self.kept, "drawn": self.drawn, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.kept = {k: (imgs.clone(), r.clone()) for k, (imgs, r) in state["kept"].items()}
        self.drawn = dict(state["drawn"])
        self.cursor = int(state["cursor"])
