"""``reinvent``: REINVENT (Olivecrona et al. 2017, arXiv 1704.07555), PMO's strongest baseline (Gao et al. 2022:
AUC top-10 sum 14.18 over the 23 oracles), as PMO runs it (wenhao-gao/mol_opt ``main/reinvent``), on an
autoregressive prior over the ``selfies-chembl`` backbone's tokens. Facts from mol_opt and MolecularAI/Reinvent; the
code is ours.

The prior is not the task's diffusion backbone: it is a GRU language model trained on the same ChEMBL molecules in the
same token space (``benchsuite.policies.selfies_rnn``, data card ``policies/weights/selfies_chembl_gru.md``), so its
samples are samples of the task and every reward, judge and metric applies unchanged. The diffusion policy is never
touched (``trains_policy = False``: no online rounds, no policy to export); the method's product is its agent, which a
finished run writes into its folder as ``agent.safetensors`` (``AGENT_FILE``: the agent's weights with the prior's
metadata, so that ``selfies_rnn.load_prior(<run folder>/agent.safetensors)`` loads it). The prior is the method's, not
the card's: its digest enters the run id of ``reinvent`` runs (``Reinvent.embedded_weights``), so that a retrained
prior never reuses a run made with the old one.

One step (mol_opt's loop):

1. The agent (a copy of the prior at the start) samples ``batch_size`` sequences (the last step: what is left of the
   budget); repeated sequences are dropped, keeping the first (mol_opt's ``unique(seqs)``). Every remaining one is
   queried through the budgeted oracle (under a card's PMO accounting a molecule seen before costs nothing).
2. The augmented likelihood of each, ``log p_prior(x) + sigma * score(x)``, is the agent's target:
   ``loss = mean_x (log p_prior(x) + sigma * score(x) - log p_agent(x))^2 + likelihood_penalty * mean_x (-1 / log
   p_agent(x))`` (``augmented_likelihood_loss``). The second term is mol_opt's regulariser against sequences of very
   high likelihood (its ``5 * 1e3 * -(1 / agent_likelihood).mean()``, also in Olivecrona's original code).
3. Experience replay: when the memory holds more than ``replay`` molecules, ``replay`` of them are drawn without
   replacement with probability proportional to their score (mol_opt's ``Experience.sample``) and their squared
   errors join the batch's, with the prior likelihood stored when they were first seen. The memory then takes the
   step's molecules and keeps the ``replay_capacity`` best distinct ones (``ReplayBuffer``; distinct by canonical
   SMILES; ties: the earlier one stays).
4. One Adam step of the agent (no gradient clipping, as mol_opt).

Batches: ``batch_size`` per step, the last one shrunk to what is left of the budget; on a card with online rounds too
(they are the diffusion fine-tuners' protocol, which REINVENT does not follow, like the GAs).

Defaults: mol_opt's tuned ``main/reinvent/hparams_default.yaml`` (PMO's setting): lr 5e-4, batch 64, sigma 500,
replay 24 from a memory of 100 (``Experience(max_size=100)``). For scale, Olivecrona's original script used sigma 60
and replayed 4, mol_opt's tuning grid covers sigma 5 to 60, lr 1e-4 and 5e-4, batch 64 and 128, replay 0, 4, 8
(``hparams_tune.yaml``), and MolecularAI/Reinvent's reinforcement-learning defaults are sigma 120 (128 in later
versions), lr 1e-4, batch 128. MolecularAI/Reinvent's diversity filters (a penalty on repeated scaffolds) are not
part of PMO's REINVENT and are not here. ``sigma`` is in units of the reward: PMO's oracles lie in [0, 1], as do the
``pmo-*`` and ``selfies-*`` rewards.

Evaluation: ``eval_samples`` returns ``n`` fresh samples of the agent (drawn with an evaluation generator of its own,
seeded from the method's at setup and checkpointed, so every evaluation set is disjoint from the others and from
training and a resumed run draws the same ones) and ``eval/kl``: the sequence-level KL(agent || prior) in nats,
estimated on those samples by the chain rule (``selfies_rnn.token_kl``: per sample the exact KL of the two models'
next-symbol distributions summed over its positions; unbiased, never negative, 0 at the start). It is the KL of the
agent to its own prior, not to the task's diffusion backbone: REINVENT's drift from where it started, on the same
nats axis as the fine-tuners' path KL but to another reference. The first evaluation (0 queries) judges the prior's
samples, which are not the diffusion backbone's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..budget import BudgetedOracle
from ..domains.chembl import canonical_smiles
from ..domains.molecules import tokens_to_smiles
from ..errors import ConfigError, MissingWeightsError
from ..policies.selfies_rnn import (PRIOR_WEIGHTS, TRAIN_SCRIPT, load_prior, log_likelihood, prior_metadata,
                                    token_kl)
from ..spaces import MoleculeSpace, one_hot_tokens
from .base import Method, MethodConfig, check

AGENT_FILE = "agent.safetensors"
"""The trained agent a finished run exports (``Reinvent.exported_model``), in the prior's format."""


@dataclass(frozen=True)
class ReinventConfig(MethodConfig):
    batch_size: int = 64
    """Sequences sampled per step (= oracle queries, at most; repeats dropped); mol_opt's 64."""
    sigma: float = 500.0
    """Weight of the score in the augmented likelihood ``log p_prior + sigma * score`` (> 0); mol_opt's 500."""
    lr: float = 5e-4
    """Adam learning rate of the agent (> 0); mol_opt's 5e-4."""
    replay: int = 24
    """Molecules replayed from the memory per step (0: no replay); mol_opt's 24."""
    replay_capacity: int = 100
    """Best distinct molecules the memory keeps (>= 1, and >= ``replay``); mol_opt's 100."""
    likelihood_penalty: float = 5e3
    """Weight of ``mean(-1 / log p_agent)``, the regulariser against very likely sequences (>= 0); mol_opt's 5e3."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.sigma > 0, "sigma must be > 0")
        check(self.lr > 0, "lr must be > 0")
        check(self.replay >= 0, "replay must be >= 0 (0: no experience replay)")
        check(self.replay_capacity >= max(1, self.replay), "replay_capacity must be >= 1 and >= replay")
        check(self.likelihood_penalty >= 0, "likelihood_penalty must be >= 0")


def augmented_likelihood_loss(agent_ll: Tensor, prior_ll: Tensor, scores: Tensor, sigma: float,
                              likelihood_penalty: float = 0.0) -> Tensor:
    """REINVENT's loss on ``B`` sequences (module docstring, step 2): ``mean((prior_ll + sigma * scores -
    agent_ll)^2) + likelihood_penalty * mean(-1 / agent_ll)``; every argument ``B`` (log-likelihoods in nats, < 0);
    the gradient flows through ``agent_ll`` only."""
    target = (prior_ll + sigma * scores).detach().to(agent_ll.dtype)
    return (target - agent_ll).square().mean() + likelihood_penalty * (-1.0 / agent_ll).mean()


class ReplayBuffer:
    """REINVENT's experience memory: the ``capacity`` best distinct molecules seen, with their token sequences, scores
    and prior log-likelihoods at the time they were first seen, best first."""

    def __init__(self, capacity: int, length: int):
        self.capacity = capacity
        self.keys: list[str] = []
        self.tokens = torch.zeros(0, length, dtype=torch.int64)
        self.scores = torch.zeros(0, dtype=torch.float64)
        self.prior_ll = torch.zeros(0, dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, keys: list[str], tokens: Tensor, scores: Tensor, prior_ll: Tensor) -> None:
        """Merge ``B`` molecules (``keys``: one identity per molecule; ``tokens`` ``B x L``; ``scores``, ``prior_ll``
        ``B``): a key already held, or repeated in the batch, keeps its first entry; then the best ``capacity`` by
        score stay (a stable sort: at equal score the earlier entry wins)."""
        all_keys = self.keys + list(keys)
        all_tokens = torch.cat([self.tokens, tokens.cpu()])
        all_scores = torch.cat([self.scores, scores.detach().double().cpu()])
        all_ll = torch.cat([self.prior_ll, prior_ll.detach().double().cpu()])
        first: dict[str, int] = {}
        for i, key in enumerate(all_keys):
            first.setdefault(key, i)
        rows = torch.tensor(list(first.values()), dtype=torch.int64)
        order = rows[torch.sort(all_scores[rows], descending=True, stable=True).indices[: self.capacity]]
        self.keys = [all_keys[i] for i in order.tolist()]
        self.tokens, self.scores, self.prior_ll = all_tokens[order], all_scores[order], all_ll[order]

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` distinct row indices drawn without replacement with probability proportional to the score
        (negative scores count as 0; a tiny floor lets a memory of zeros be drawn uniformly)."""
        weights = self.scores.clamp(min=0.0) + 1e-12
        return torch.multinomial(weights, n, replacement=False, generator=generator)

    def state_dict(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "tokens": self.tokens, "scores": self.scores, "prior_ll": self.prior_ll}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.keys = list(state["keys"])
        self.tokens, self.scores = state["tokens"].clone(), state["scores"].clone()
        self.prior_ll = state["prior_ll"].clone()


def first_occurrences(tokens: Tensor) -> Tensor:
    """Indices of the rows of ``tokens`` (``B x L``) that do not repeat an earlier row, in order."""
    seen: dict[tuple[int, ...], int] = {}
    for i, row in enumerate(tokens.tolist()):
        seen.setdefault(tuple(row), i)
    return torch.tensor(list(seen.values()), dtype=torch.int64)


def molecule_keys(tokens: Tensor) -> list[str]:
    """One identity per sequence: the canonical SMILES of its molecule, or ``invalid:<SMILES>`` when RDKit cannot
    parse it (the empty molecule: ``invalid:``)."""
    return [canonical_smiles(s) or f"invalid:{s}" for s in tokens_to_smiles(tokens)]


class Reinvent(Method):
    """REINVENT: a GRU prior's agent trained on the augmented likelihood, with replay of the best molecules."""

    name = "reinvent"
    display_name = "REINVENT"
    colour = "#882255"
    marker = "p"
    leaderboard = False  # the black-box tier compares the field's optimizers (issue 24)
    tune_params = ("sigma", "lr", "replay")
    trains_policy = False  # it trains its own agent, never the diffusion policy (no online rounds; the agent exports)
    Config = ReinventConfig
    config: ReinventConfig
    contract_task = "toy-selfies-chembl-qed-v0"

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        prior = load_prior()
        space = policy.space
        if not isinstance(space, MoleculeSpace) or space.length != prior.config.length:
            raise ConfigError(f"method reinvent needs a task on the selfies-chembl backbone (molecules of "
                              f"{prior.config.length} SELFIES tokens, its prior's space); task {task.id} has samples "
                              f"of {type(space).__name__} of length {getattr(space, 'length', '?')}")
        if task.train_conditions is not None:
            raise ConfigError(f"method reinvent samples one unconditional agent; task {task.id} is conditional")
        self.device = policy.stds.device
        self.prior = prior.to(self.device).requires_grad_(False)
        self.agent = copy.deepcopy(self.prior).requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=self.config.lr)
        self.memory = ReplayBuffer(self.config.replay_capacity, prior.config.length)
        self.eval_generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))

    @classmethod
    def embedded_weights(cls) -> tuple[tuple[Path, str], ...]:
        """The shipped prior: its digest enters the run id (the method's weights, not the card's)."""
        return ((PRIOR_WEIGHTS, TRAIN_SCRIPT),)

    def exported_model(self) -> tuple[str, torch.nn.Module, dict[str, str]]:
        """The trained agent, with the prior's metadata (``load_prior`` checks it and reloads the file)."""
        return AGENT_FILE, self.agent, prior_metadata()

    @classmethod
    def exported_sampler(cls, run_dir: Path, device: str = "cpu"):
        """The exported agent (``load_prior`` checks the file), drawing one-hot ``n x V x L`` sequences."""
        path = Path(run_dir) / AGENT_FILE
        if not path.is_file():
            raise MissingWeightsError(f"run folder {run_dir} has no {AGENT_FILE} (the run finished before runs "
                                      f"exported the agent); write it by resuming the run: benchsuite.run("
                                      f"benchsuite.load_config('{run_dir}'), resume=True)")
        agent = load_prior(path).to(device).eval()
        return lambda n, generator: one_hot_tokens(agent.sample(n, generator), agent.config.vocab_size).to(device)

    def one_hot(self, tokens: Tensor) -> Tensor:
        """``B x L`` token ids -> the space's ``B x V x L`` samples, on the policy's device."""
        return one_hot_tokens(tokens, self.prior.config.vocab_size).to(self.device)

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        c = self.config
        tokens = self.agent.sample(self.batch_for(oracle), self.generator)
        drawn = len(tokens)
        tokens = tokens[first_occurrences(tokens)]
        scores = oracle(self.one_hot(tokens), None).detach().double().cpu()
        on_device = tokens.to(self.device)
        with torch.no_grad():
            prior_ll = log_likelihood(self.prior, on_device).double().cpu()
        agent_ll = log_likelihood(self.agent, on_device)
        all_agent, all_prior, all_scores = agent_ll, prior_ll, scores
        if c.replay and len(self.memory) > c.replay:
            rows = self.memory.sample(c.replay, self.generator)
            replayed = log_likelihood(self.agent, self.memory.tokens[rows].to(self.device))
            all_agent = torch.cat([agent_ll, replayed])
            all_prior = torch.cat([prior_ll, self.memory.prior_ll[rows]])
            all_scores = torch.cat([scores, self.memory.scores[rows]])
        loss = augmented_likelihood_loss(all_agent, all_prior.to(self.device), all_scores.to(self.device), c.sigma,
                                         c.likelihood_penalty)
        self.memory.add(molecule_keys(tokens), tokens, scores, prior_ll)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        log_ratio = agent_ll.detach().double().cpu() - prior_ll
        return {"train/reward_mean": scores.mean().item(), "train/reward_max": scores.max().item(),
                "train/loss": loss.item(), "train/agent_loglik": agent_ll.mean().item(),
                "train/prior_loglik": prior_ll.mean().item(), "train/log_ratio": log_ratio.mean().item(),
                "train/distinct_fraction": len(tokens) / drawn,
                "train/memory_best": self.memory.scores[0].item(), "train/memory_mean": self.memory.scores.mean().item()}

    @torch.no_grad()
    def eval_samples(self, conditions: Tensor | None, n: int) -> tuple[Tensor, float]:
        """``n`` fresh samples of the agent and their mean chain-rule KL(agent || prior) in nats (module docstring).
        Never queries the oracle."""
        tokens = self.agent.sample(n, self.eval_generator)
        kl = token_kl(self.agent, self.prior, tokens.to(self.device)).mean().item()
        return self.one_hot(tokens), kl

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(),
                "memory": self.memory.state_dict(), "eval_generator": self.eval_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.memory.load_state_dict(state["memory"])
        self.eval_generator.set_state(state["eval_generator"])
