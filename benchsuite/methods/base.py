"""The ``Method`` contract: an algorithm that improves a policy using only a budgeted oracle.

A method never owns the training loop, the evaluation or the budget: the runner calls ``step`` until the oracle
is exhausted and evaluates the policy on its own schedule (nevergrad's rule: no optimizer alters the workflow).
Randomness comes only from the generator handed to ``setup``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
import math
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from .. import distributed
from ..budget import BudgetedOracle
from ..policies.base import DiffusionPolicy, Trajectory
from ..tasks import TaskInfo


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's frozen config. Subclasses document each field and validate in ``__post_init__``
    (raising ``ValueError`` with the field name and the valid range)."""

    batch_size: int = 64
    """Samples (= oracle queries) drawn per ``step``."""

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size must be >= 1")


@dataclass(frozen=True)
class RewardNormFields:
    """The config field of every method whose loss adds a reward-scale term to a KL term (DDPO with ``kl_coef``,
    DRaFT, SQDF, VARD, continuous-time RL), mixed into its ``Config`` and validated here once.

    Without it the same ``kl_coef`` would mean a strong or a negligible KL on two tasks whose rewards differ in
    scale (JPEG kB vary by about 0.03 over the digits, a classifier probability by 0.3), and no search range could
    serve every task. Dividing the reward term by a scale makes ``kl_coef`` the nats of path KL traded for one
    standard deviation of reward, comparable across tasks. This is the suite's choice, not the papers' (they use
    the raw reward); ``none`` restores their rule and tuning may choose it."""

    reward_norm: Literal["running", "batch", "none"] = "running"
    """Scale of the reward term before the KL term is added: ``running`` divides it by the standard deviation of
    every reward the method has received so far (``RewardScale``), ``batch`` by that of the current batch, ``none``
    leaves the raw reward (the papers' rule)."""

    def __post_init__(self) -> None:
        super().__post_init__()  # cooperative: the other config bases' checks run too
        check(self.reward_norm in ("running", "batch", "none"), "reward_norm must be 'running', 'batch' or 'none'")


@dataclass(frozen=True)
class OptimizerFields:
    """The policy optimizer's fields of every method that trains the policy by gradient (DDPO, DRaFT, SQDF, VARD,
    continuous-time RL): an AdamW over the trainable parameters (``Method.make_optimizer``) whose gradient is
    clipped before each step (``Method.clip_and_step``). Mixed into a method's ``Config`` and validated here once;
    a method whose paper gives other values redeclares the field with its default and the source."""

    lr: float = 1e-4
    """AdamW learning rate of the policy."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the policy."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip before every policy optimizer step."""

    def __post_init__(self) -> None:
        super().__post_init__()  # cooperative: the other config bases' checks run too
        check(self.lr > 0, "lr must be > 0")
        check(self.weight_decay >= 0, "weight_decay must be >= 0")
        check(self.max_grad_norm > 0, "max_grad_norm must be > 0")


@dataclass(frozen=True)
class ChainUpdateFields:
    """The fields of a method that trains on the chains it has just sampled, in minibatches of chains and over a
    subset of their steps (DDPO, VARD, continuous-time RL), validated here once."""

    train_batch_size: int = 64
    """Chains per policy optimizer step; an iteration takes ceil(batch / train_batch_size) steps per inner epoch."""
    num_inner_epochs: int = 1
    """Passes of policy updates over each sampled batch."""
    timestep_fraction: float = 1.0
    """Fraction of the T steps of each chain trained on (drawn at random per chain; the sum over steps is estimated
    as T / (steps trained) times the trained steps' sum)."""
    train_chunk: int = 4096
    """(chain, step) pairs per denoiser forward in the update; bounds memory, does not change the gradient."""

    def __post_init__(self) -> None:
        super().__post_init__()  # cooperative: the other config bases' checks run too
        check(self.train_batch_size >= 1, "train_batch_size must be >= 1")
        check(self.num_inner_epochs >= 1, "num_inner_epochs must be >= 1")
        check(0 < self.timestep_fraction <= 1, "timestep_fraction must be in (0, 1]")
        check(self.train_chunk >= 1, "train_chunk must be >= 1")


class RewardScale:
    """sigma_r of ``RewardNormFields.reward_norm``: 1 (``none``), the std of the last batch (``batch``) or the running
    std of every reward passed to ``update`` (``running``; Chan et al.'s pairwise update of count, mean and sum of
    squared deviations, so that a batch's order does not matter). A degenerate std (one reward, or all equal) gives
    1, so the first steps of a task with a constant reward do not divide by zero."""

    def __init__(self, mode: str = "running"):
        self.mode = mode
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.batch_std = 1.0

    def update(self, rewards: torch.Tensor) -> None:
        """Add a batch of ``B`` rewards (detached; any device)."""
        x = rewards.detach().double().flatten().cpu()
        if len(x) == 0:
            return
        n, mean = len(x), float(x.mean())
        m2 = float((x - mean).square().sum())
        self.batch_std = math.sqrt(m2 / (n - 1)) if n > 1 else 1.0
        total = self.count + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    @property
    def value(self) -> float:
        """The current sigma_r (> 0)."""
        if self.mode == "none":
            return 1.0
        std = self.batch_std if self.mode == "batch" else (
            math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 1.0)
        return std if std > 1e-12 else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "count": self.count, "mean": self.mean, "m2": self.m2, "batch_std": self.batch_std}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mode, self.count, self.mean = state["mode"], int(state["count"]), float(state["mean"])
        self.m2, self.batch_std = float(state["m2"]), float(state["batch_std"])


@dataclass
class QueriedBatch:
    """A step's batch as ``Method.query_batch`` returns it (P processes, n chains each; P = 1 in one process).

    Attributes:
        trajectory: this process's n chains.
        samples: their decoded samples, the oracle's inputs (``n x ...``).
        conditions: the global batch's ``P n`` condition ids, or None (unconditional).
        rewards: the global batch's ``P n`` rewards, in rank order.
        rows: this process's slice of the global batch.
        path_kl: the global batch's ``P n`` path KLs (nats) to the reference passed to ``query_batch`` along the
            sampled chains, in rank order; None without one.
        reward_grads: d r / d x_0 of this process's n chains (``n x *S``, the paid-for gradients of a
            differentiable oracle), when ``query_batch`` was asked for them; else None.
    """

    trajectory: Trajectory
    samples: torch.Tensor
    conditions: torch.Tensor | None
    rewards: torch.Tensor
    rows: slice
    path_kl: torch.Tensor | None = None
    reward_grads: torch.Tensor | None = None


def check(ok: bool, message: str) -> None:
    """Config validation helper: raise ``ValueError(message)`` unless ``ok``."""
    if not ok:
        raise ValueError(message)


class Method(ABC):
    """Base class of all methods. Subclasses set ``name`` and ``Config`` and implement ``step``."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    contract_task: ClassVar[str | None] = None
    """The task card the shared contract (``benchsuite.testing.check_method``) runs this method on; None: the toy
    image task. A method for one kind of sample (token sequences, molecules) names a small card of that kind."""
    contract_settings: ClassVar[dict[str, Any] | None] = None
    """Method settings the contract uses on ``contract_task`` (e.g. a population small enough for its budgets of 70
    and 96 queries); None: the presets."""
    trains_policy: ClassVar[bool] = True
    """False for methods that only choose which samples to query (pretrained, best-of-N, BO): on a task with
    online rounds they are not wrapped in ``OnlineRounds``."""
    display_name: ClassVar[str | None] = None
    """What tables and figures call the method; None: its registry name."""
    colour: ClassVar[str | None] = None
    """Its colour in every figure (hex); None: a seaborn "dark" colour after the declared ones."""
    marker: ClassVar[str] = "o"
    """Its matplotlib marker in every figure (lines that coincide stay distinguishable)."""
    leaderboard: ClassVar[bool] = True
    """Whether a leaderboard whose spec takes the registered methods (``benchsuite.leaderboard``) includes it: a
    plugin's method joins without editing any table."""
    tune_params: ClassVar[tuple[str, ...] | None] = None
    """The fields of its search space (``baselines/<name>/search_space.yaml``) that a leaderboard tunes, the same
    kinds for every method: the KL coefficient, the learning rate, the method's own knobs, the timestep fraction
    where it applies. None: every field of the file; (): nothing (a method without hyperparameters)."""
    data_parallel: ClassVar[bool] = False
    """True for methods whose ``step`` runs under ``accelerate launch`` with several processes (see
    ``benchsuite.distributed``): each process queries its slice of the global batch, statistics are gathered, the
    result equals one process with the global batch. The runner refuses several processes for the others. It
    counts only where the class that defines ``step`` sets it (``runs_data_parallel``): a subclass with its own
    ``step`` is not data-parallel until it says so."""

    IDENTITY: ClassVar[tuple[str, ...]] = ("display_name", "colour", "marker", "leaderboard", "tune_params")
    """The declarations above that say who a method is (in figures, tables and leaderboards). A subclass does not
    inherit them: each one its class body does not declare is reset to this class's default
    (``__init_subclass__``), so that a method built on another (a plugin's DDPO variant) never appears under its
    parent's name, colour and marker or joins its tuning; ``check_method`` names the figure ones it left out."""
    REQUIRED_IDENTITY: ClassVar[tuple[str, ...]] = ("display_name", "colour", "marker")
    """The declarations ``check_method`` requires in a registered method's own class body (None is a declaration:
    its registry name, a seaborn colour after the declared ones)."""
    undeclared: ClassVar[tuple[str, ...]] = ()
    """The ``IDENTITY`` names this class's body left out (set by ``__init_subclass__``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.undeclared = tuple(name for name in Method.IDENTITY if name not in cls.__dict__)
        for name in cls.undeclared:
            setattr(cls, name, Method.__dict__[name])

    @classmethod
    def runs_data_parallel(cls) -> bool:
        """Whether the class that defines this method's ``step`` declares ``data_parallel``."""
        owner = next(klass for klass in cls.__mro__ if "step" in klass.__dict__)
        return bool(owner.__dict__.get("data_parallel", False))

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.Config()
        self.policy: DiffusionPolicy | None = None
        self.task: TaskInfo | None = None
        self.generator: torch.Generator | None = None
        # both saved and restored with the method's state by this class: the policy's optimizer once
        # ``make_optimizer`` made it, and sigma_r of a config with ``RewardNormFields`` (made by ``setup``)
        self.optimizer: torch.optim.Optimizer | None = None
        self.reward_scale: RewardScale | None = None

    def setup(self, policy: DiffusionPolicy, task: TaskInfo, generator: torch.Generator) -> None:
        """Attach the policy to train (in place), the task description and the method's random source; a config
        with ``reward_norm`` (``RewardNormFields``) also gets its ``reward_scale``."""
        self.policy, self.task, self.generator = policy, task, generator
        if isinstance(self.config, RewardNormFields):
            self.reward_scale = RewardScale(self.config.reward_norm)

    @abstractmethod
    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        """Spend at least one query of ``oracle`` (at most ``oracle.remaining``), update the policy, and
        return scalar training diagnostics (logged by the runner at ``oracle.used``)."""

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy) of everything needed to resume: policy weights, optimizer and method state,
        generator state. Subclasses extend ``_state`` rather than this method."""
        assert self.policy is not None, "setup() first"
        return copy.deepcopy(self._state())

    def _state(self) -> dict[str, Any]:
        """The base's part of the state: policy weights, generator, and the optimizer and reward scale where the
        method has them; a subclass adds its own entries to it (and reads them back in ``load_state_dict``)."""
        state = {"policy": self.policy.trainable_state_dict(), "generator": self.generator.get_state()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.reward_scale is not None:
            state["reward_scale"] = self.reward_scale.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.policy is not None, "setup() first"
        self.policy.load_trainable_state_dict(state["policy"])
        self.generator.set_state(state["generator"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.reward_scale is not None:
            self.reward_scale.load_state_dict(state["reward_scale"])

    @classmethod
    def embedded_weights(cls) -> tuple[tuple[Path, str], ...]:
        """The weights files shipped with the package that the method itself loads (REINVENT's prior), as (path,
        rebuild command) pairs like a backbone factory's ``embedded_weights``. Their digest enters the run id
        (``benchsuite.config.method_digest``), so that retraining one gives the method's runs new ids. Default: none
        (the run id is what it was before methods could declare any)."""
        return ()

    def exported_model(self) -> tuple[str, torch.nn.Module, dict[str, str]] | None:
        """A model of the method's own that it trains instead of the policy (REINVENT's agent), which the end of a
        finished run writes into the run folder (``benchsuite.export.export_finished``): the file name, the module
        (its ``state_dict``, written with safetensors) and the metadata strings its loader checks. None (the
        default): the method's product is the policy (exported when ``trains_policy``) or a set of samples."""
        return None

    @classmethod
    def exported_sampler(cls, run_dir: Path, device: str = "cpu"):
        """A sampler of the model ``exported_model`` wrote into the finished ``run_dir``: a callable
        ``(n, generator) -> n`` decoded samples in the policy space's format (``benchsuite.load_run`` samples it
        instead of the policy). None (the default): the method exports no model of its own."""
        return None

    def eval_samples(self, conditions: torch.Tensor | None, n: int) -> tuple[torch.Tensor, float] | None:
        """For methods whose product is a set of samples rather than a policy (best-of-N): the ``n`` images to
        judge for these eval ``conditions`` and the KL to report for them. None (the default) means the runner
        samples the policy with the fixed eval noise. Must not query the oracle."""
        return None

    # ---- shared helpers ----------------------------------------------------------------------------------
    def make_optimizer(self, lr: float, weight_decay: float) -> None:
        """``self.params`` (the policy's trainable parameters) and an AdamW over them as ``self.optimizer``."""
        self.params = [p for p in self.policy.denoiser.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, eps=1e-8)
        # under `accelerate launch`: DDP-wrap the denoiser so every backward averages gradients over processes
        self.policy.denoiser, self.optimizer = distributed.prepare(self.policy.denoiser, self.optimizer)

    def clip_and_step(self, max_grad_norm: float) -> float:
        """Clip the accumulated gradient to ``max_grad_norm``, take the optimizer step; returns the pre-clip norm."""
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_grad_norm)
        self.optimizer.step()
        return float(grad_norm)

    def query_batch(self, oracle: BudgetedOracle, conditions: Callable[[int], torch.Tensor | None] | None = None,
                    reference: DiffusionPolicy | None = None, reward_grads: bool = False) -> QueriedBatch:
        """Sample this step's batch with the policy (no gradients) and query the oracle on it.

        Data-parallel (``data_parallel`` methods under ``accelerate launch``, P processes): every process holds
        the same generator and draws the conditions and noise of the global batch of P x n chains (n =
        ``batch_for(oracle)``), rolls out and queries only its slice of them, and gathers the rewards; the
        generators stay in step and the global batch is the one a single process would draw. P = 1: the plain
        batch.

        ``conditions(k)``: the global batch's k conditions (default ``sample_conditions``).
        ``reference``: also return each chain's path KL to this frozen policy (one more forward per step).
        ``reward_grads``: also return d r / d x_0 of the chains (the oracle must be differentiable; the rewards and
        samples come back detached).
        """
        n = self.batch_for(oracle)
        world, rank = distributed.num_processes(), distributed.process_index()
        mine = slice(rank * n, (rank + 1) * n)
        conds = (conditions or self.sample_conditions)(n * world)
        traj, kls = self.policy.rollout(conds, self.generator, batch=n * world, rows=mine, reference=reference)
        x0 = traj.x0.clone().requires_grad_(True) if reward_grads else traj.x0
        samples = self.policy.decode(x0)
        rewards = oracle(samples, traj.conditions)
        grads = None
        if reward_grads:
            (grads,) = torch.autograd.grad(rewards.sum(), x0)
            samples, rewards = samples.detach(), rewards.detach()
        path_kl = None if kls is None else distributed.gather(kls.sum(1))
        return QueriedBatch(traj, samples, conds, distributed.gather(rewards), mine, path_kl, grads)

    def batch_for(self, oracle: BudgetedOracle) -> int:
        """This step's batch: the configured size, or what is left of the budget if that is less."""
        return min(self.config.batch_size, oracle.remaining)

    @torch.no_grad()
    def sample_decoded(self, conditions: torch.Tensor | None, n: int, chunk: int = 256,
                       device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` decoded samples of the current policy (``conditions``: ``n`` ids or None), rolled out ``chunk``
        chains at a time with the method's generator so that memory does not grow with ``n``; each chunk is moved
        to ``device`` as it is made (None: left where the policy is)."""
        parts = []
        for start in range(0, n, chunk):
            b = min(chunk, n - start)
            traj, _ = self.policy.rollout(None if conditions is None else conditions[start:start + b],
                                          self.generator, batch=b)
            parts.append(self.policy.decode(traj.x0).to(device))
        return torch.cat(parts)

    def sample_conditions(self, n: int) -> torch.Tensor | None:
        """``n`` training conditions drawn uniformly with the method's generator (None if unconditional)."""
        conds = self.task.train_conditions
        if conds is None:
            return None
        return conds[torch.randint(len(conds), (n,), generator=self.generator)]
