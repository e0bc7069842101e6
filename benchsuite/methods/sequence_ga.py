"""``sequence-ga``: the genetic algorithm of holo-bench (Stanton et al. 2024, arXiv 2407.00236), the reference
optimizer of the Ehrlich functions, on any token-sequence backbone (Ehrlich, SELFIES).

Facts taken from prescient-design/holo-bench (``holo/optim/_discrete_evolution.py``, ``DiscreteEvolution``, and
``scripts/benchmark_optimizer.py``); the code is ours. One step is one generation of ``batch_size`` particles (the
population; holo's ``num_particles``, 128 by default there):

1. Start: the population is drawn from the frozen pretrained model (``init=prior``), or one prior sample repeated
   (``init=single``: holo starts every particle from ``initial_solution()``, one feasible sample of the DMP). The
   first generation is the start population mutated (step 3), so even ``single`` queries distinct particles.
2. Selection: the particles whose score is at least the ``1 - survival_quantile`` quantile of the last generation's
   scores survive (holo: loss <= the ``survival_quantile`` quantile, torch's linear interpolation, 0.5). Feasibility:
   an infeasible sequence scores the task's ``infeasible_value`` (-1, below every feasible value), holo's -inf as a
   finite number; when more than that quantile is infeasible the threshold is the infeasible value and every
   particle survives, as holo keeps all particles when its threshold is infinite.
3. Recombination and mutation: each non-survivor is replaced by a uniform crossover of two survivors drawn uniformly
   with replacement (each position from the first parent with probability ``recombine_prob``, else from the second);
   then every particle, survivors included, has each position replaced with probability ``mutation_prob`` by a
   uniformly drawn token (holo's vocabulary is every state; infeasible offspring are not repaired, they score low).
   holo-bench's benchmark sets both probabilities to 1.1 / L when unset (its configs leave them unset); 0 here means
   that.
4. Elitism: holo keeps the best particle ever seen as its solution while the population moves on; here the product
   is best-of-N's kept set (the top samples by observed score, ``BestOfN.keep``), judged as best-of-N's.

Reported KL: best-of-N's formula with n = queried / kept. A GA's samples are not a reweighting of the prior, so the
value is only the selection strength in best-of-N's units, not a KL of the GA's distribution (it is what makes
``eval/kl`` comparable in the tables; read the reward columns for a GA).

Batches: a generation is ``batch_size`` queries (the last one shrinks to what is left of the budget), also on tasks
with online rounds, whose rounds a GA does not follow. Under PMO accounting a particle that repeats a queried one is
answered from the cache and costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..budget import BudgetedOracle
from ..errors import ConfigError
from ..spaces import one_hot_tokens
from .base import Method, check
from .best_of_n import BestOfN, BestOfNConfig


@dataclass(frozen=True)
class SequenceGAConfig(BestOfNConfig):
    batch_size: int = 128
    """Particles per generation (= oracle queries per step); holo-bench's ``num_particles`` (128)."""
    mutation_prob: float = 0.0
    """Probability that a position is replaced by a uniformly drawn token, per particle per generation, in [0, 1);
    0: holo-bench's benchmark default, 1.1 / L."""
    recombine_prob: float = 0.0
    """Probability that a position of a replacement particle comes from its first parent (uniform crossover), in
    [0, 1); 0: holo-bench's benchmark default, 1.1 / L."""
    survival_quantile: float = 0.5
    """Share of each generation that survives (the best scores), in (0, 1); holo-bench's 0.5. At least two
    particles must survive."""
    init: str = "prior"
    """Start population: ``prior`` (batch_size samples of the pretrained model) or ``single`` (one of them,
    repeated, as holo-bench starts from one feasible solution)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 <= self.mutation_prob < 1.0, "mutation_prob must be in [0, 1) (0: 1.1 / L)")
        check(0.0 <= self.recombine_prob < 1.0, "recombine_prob must be in [0, 1) (0: 1.1 / L)")
        check(0.0 < self.survival_quantile < 1.0, "survival_quantile must be in (0, 1)")
        check(self.survival_quantile * self.batch_size >= 2 or self.batch_size < 2,
              "survival_quantile * batch_size must be >= 2 (two parents survive)")
        check(self.init in ("prior", "single"), "init must be 'prior' or 'single'")


def survivors(scores: Tensor, survival_quantile: float) -> Tensor:
    """``N`` bool: the particles at or above the ``1 - survival_quantile`` quantile of ``scores`` (linear
    interpolation); all of them when that quantile is the lowest score (e.g. mostly infeasible)."""
    threshold = torch.quantile(scores.double(), 1.0 - survival_quantile)
    return scores.double() >= threshold


def recombine(parents: Tensor, n: int, recombine_prob: float, generator: torch.Generator) -> Tensor:
    """``n x L`` children of the ``S x L`` ``parents``: two parents drawn uniformly with replacement, each position
    from the first with probability ``recombine_prob``, else from the second."""
    first = torch.randint(len(parents), (n,), generator=generator)
    second = torch.randint(len(parents), (n,), generator=generator)
    mask = torch.rand((n, parents.shape[1]), generator=generator) < recombine_prob
    return torch.where(mask, parents[first], parents[second])


def mutate(tokens: Tensor, vocab_size: int, mutation_prob: float, generator: torch.Generator) -> Tensor:
    """``tokens`` with each position replaced, with probability ``mutation_prob``, by a uniform token of
    ``0..vocab_size-1`` (which may equal the old one, as in holo-bench)."""
    mask = torch.rand(tokens.shape, generator=generator) < mutation_prob
    fresh = torch.randint(vocab_size, tokens.shape, generator=generator)
    return torch.where(mask, fresh, tokens)


def next_generation(tokens: Tensor, scores: Tensor, vocab_size: int, mutation_prob: float, recombine_prob: float,
                    survival_quantile: float, generator: torch.Generator) -> Tensor:
    """Selection, recombination of the non-survivors, then mutation of every particle (module docstring)."""
    keep = survivors(scores, survival_quantile)
    out = tokens.clone()
    missing = int((~keep).sum())
    if missing:
        out[~keep] = recombine(tokens[keep], missing, recombine_prob, generator)
    return mutate(out, vocab_size, mutation_prob, generator)


class SequenceGA(BestOfN):
    """holo-bench's genetic algorithm on token sequences: quantile selection, uniform crossover, uniform mutation."""

    name = "sequence-ga"
    display_name = "GA (holo)"
    # its own colour in every figure (from Paul Tol's colour-blind-safe set, beside the fine-tuners' Okabe-Ito
    # colours); best-of-N's colour and marker are not inherited (Method.IDENTITY)
    colour, marker = "#117733", "o"
    leaderboard = False  # the black-box tier compares the field's optimizers (issue 24)
    Config = SequenceGAConfig
    config: SequenceGAConfig
    data_parallel = False
    contract_task = "toy-ehrlich-v0"
    contract_settings = {"batch_size": 16}  # the contract spends 70 and 96 queries

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        space = policy.space
        if not hasattr(space, "vocab_size") or not hasattr(space, "length"):
            raise ConfigError(f"method sequence-ga needs a token-sequence backbone (Ehrlich, SELFIES); task {task.id} "
                              f"has samples of {type(space).__name__}")
        if task.train_conditions is not None:
            raise ConfigError(f"method sequence-ga optimizes one unconditional population; task {task.id} is "
                              "conditional")
        self.vocab_size, self.length = int(space.vocab_size), int(space.length)
        c = self.config
        self.mutation_prob = c.mutation_prob or 1.1 / self.length
        self.recombine_prob = c.recombine_prob or 1.1 / self.length
        self.population: Tensor | None = None  # N x L int64: the last generation queried
        self.scores: Tensor | None = None  # N float64: its scores
        self.generation = 0

    def batch_for(self, oracle: BudgetedOracle) -> int:
        """A generation: ``batch_size``, or what is left of the budget (online rounds are not followed)."""
        return Method.batch_for(self, oracle)

    def one_hot(self, tokens: Tensor) -> Tensor:
        """``B x L`` token ids -> ``B x V x L`` one-hot samples, as the backbone decodes."""
        return one_hot_tokens(tokens, self.vocab_size)

    @torch.no_grad()
    def _start(self, n: int) -> Tensor:
        drawn = self.sample_decoded(None, n if self.config.init == "prior" else 1, device="cpu")
        tokens = drawn.argmax(1)
        return tokens if self.config.init == "prior" else tokens.repeat(n, 1)

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        n = self.batch_for(oracle)
        c = self.config
        if self.population is None:
            parents = self._start(c.batch_size)
            children = mutate(parents, self.vocab_size, self.mutation_prob, self.generator)
        else:
            children = next_generation(self.population, self.scores, self.vocab_size, self.mutation_prob,
                                       self.recombine_prob, c.survival_quantile, self.generator)
        children = children[:n]
        device = self.policy.stds.device
        samples = self.one_hot(children).to(device)
        rewards = oracle(samples, None).detach()
        self.population, self.scores = children, rewards.double().cpu()
        self.generation += 1
        self.keep(samples, None, rewards)
        kept = torch.cat([r for _, r in self.kept.values()])
        return {"train/reward_mean": rewards.mean().item(), "train/reward_max": rewards.max().item(),
                "train/kept_reward_mean": kept.mean().item(), "train/generation": float(self.generation),
                "train/distinct_fraction": len(torch.unique(children, dim=0)) / len(children)}

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "population": self.population, "scores": self.scores,
                "generation": self.generation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = None if state["population"] is None else state["population"].clone()
        self.scores = None if state["scores"] is None else state["scores"].clone()
        self.generation = int(state["generation"])
