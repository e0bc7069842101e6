"""Tiny components for tests and examples, and the contract suites.

- A random-init denoiser and policy small enough for unit tests of the sampler math, and a closed-form
  differentiable reward (the ``toy-brightness-v0`` task). Nothing here is used by real runs.
- The contract suites every method, reward, backbone, task card and sample space passes: ``check_method``,
  ``check_reward``, ``check_backbone``, ``check_task`` and ``check_space``. benchsuite's own contract tests
  (``tests/*/test_*_contract.py``, tests/test_spaces.py) call the same checks on every built-in entry; a plugin's
  tests call them on its own (as optuna ships ``optuna.testing``)::

      from benchsuite.testing import check_method, check_reward, check_task

      def test_my_method():
          check_method("my-method")          # a registered name (entry point or METHODS.register) or the class

  Each ``check_*`` runs all its checks and raises ``AssertionError`` naming the first that fails; the single
  checks (``METHOD_CHECKS``, ``REWARD_CHECKS``, ``BACKBONE_CHECKS``, ``TASK_CHECKS``, ``SPACE_CHECKS``) are there
  to parametrize a test over them. They run on the CPU in seconds: methods on the toy task, backbones, task cards
  and spaces on a few samples.
"""

from __future__ import annotations

import dataclasses
import re
import io
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import resolve
from .grids import GRID_PANELS
from .policies.base import DiffusionPolicy
from .registry import BACKBONES, METHODS, REWARDS
from .rewards.base import Reward
from .rewards.brightness import MeanBrightness  # re-exported: tests and plugins built on it import it from here
from .runner import run
from .spaces import SampleSpace
from .tasks import broken_cards, make_task, task_specs
from .tuning import load_search_space

TINY_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "timestep_spacing": "trailing",
}


class TinyDenoiser(nn.Module):
    """eps(x, t, c) = MLP([x, sin/cos(t), onehot(c)]) for ``B x *S`` inputs; a few hundred parameters."""

    def __init__(self, sample_shape: tuple[int, ...] = (1, 2, 2), num_classes: int = 3, hidden: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.sample_shape, self.num_classes = tuple(sample_shape), num_classes
        d = int(torch.tensor(sample_shape).prod())
        self.net = nn.Sequential(nn.Linear(d + 2 + num_classes + 1, hidden), nn.SiLU(), nn.Linear(hidden, d))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        tf = t.float()[:, None] / 1000
        onehot = torch.zeros(len(x), self.num_classes + 1)
        onehot[torch.arange(len(x)), self.num_classes if cond is None else cond] = 1
        h = torch.cat([x.flatten(1), torch.sin(3 * tf), torch.cos(3 * tf), onehot], 1)
        return self.net(h).view(len(x), *self.sample_shape)


def tiny_policy(num_steps: int = 5, eta: float = 1.0, sample_shape=(1, 2, 2), guidance_scale: float = 1.0,
                seed: int = 0) -> DiffusionPolicy:
    """A ``DiffusionPolicy`` over a ``TinyDenoiser`` with classes 0..2 and null class 3."""
    return DiffusionPolicy(
        TinyDenoiser(sample_shape, seed=seed), TINY_SCHEDULER_CONFIG, sample_shape,
        decoder=lambda x: ((x + 1) / 2).clamp(0, 1), num_steps=num_steps, eta=eta,
        guidance_scale=guidance_scale, null_condition=3,
    )


NONDETERMINISTIC_METRICS = ("cost/wall_s", "cost/peak_rss_mb", "cost/peak_cuda_mb")


def deterministic(metrics: dict) -> dict:
    """``metrics`` without the ones that measure the machine (wall time, peak memory, the phase times
    ``cost/time_*`` and an online step's ``time/*``)."""
    return {k: v for k, v in metrics.items()
            if k not in NONDETERMINISTIC_METRICS and not k.startswith(("cost/time_", "time/"))}


# ---- contract suites -------------------------------------------------------------------------------------------
CONTRACT_TASK = "toy-brightness-v0"
"""The task ``check_method`` runs on by default: a random tiny model on 2x2 images, runs of a second or less."""


def require_installed(distribution: str, install: str) -> None:
    """In a pytest test or fixture: skip when ``distribution`` is not installed, naming ``install`` (the command that
    installs it); under ``CI=true``, whose script installs it, fail instead, so that a CI tier cannot pass by skipping.
    Call it per test (an autouse fixture), not at import: an error while collecting a file breaks every tier that
    collects it, including marker tiers that deselect its tests."""
    import importlib.metadata
    import os

    import pytest

    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {distribution} is not installed; CI installs it with '{install}'")
        pytest.skip(f"{distribution} is not installed ({install})")


def _expect(ok: bool, message: str) -> None:
    """``AssertionError(message)`` unless ``ok`` (explicit, so that the checks also hold under ``python -O``)."""
    if not ok:
        raise AssertionError(message)


def _registered(registry, cls_or_name: Any) -> str:
    """The registry name of ``cls_or_name``: a registered name as is; an object by its ``name`` attribute,
    registered in this process first if that name is free (a method or reward written in a notebook or a test)."""
    if isinstance(cls_or_name, str):
        registry.check(cls_or_name)
        return cls_or_name
    name = getattr(cls_or_name, "name", None) or getattr(cls_or_name, "__name__", None)
    _expect(isinstance(name, str) and bool(name), f"{cls_or_name!r} has no name attribute to register it under")
    if name not in registry:
        registry.register(name, cls_or_name)
    _expect(registry.load(name) is cls_or_name, f"{registry.kind} {name!r} is registered as another object "
                                                f"({registry.load(name)!r}); give {cls_or_name!r} its own name")
    return name


# -- methods: each check takes (method name, task id) --
def _resolve(task: str, method: str, **kwargs: Any):
    """``config.resolve`` with the method's ``contract_settings`` (on its ``contract_task`` only) as overrides."""
    cls = METHODS.load(method)
    settings = getattr(cls, "contract_settings", None) if task == getattr(cls, "contract_task", None) else None
    return resolve(task, method, overrides=dict(settings) if settings else None, **kwargs)


def _method_run(method: str, task: str, budget: int, seed: int = 0):
    return run(_resolve(task, method, seed=seed, budget=budget, eval_fractions=(0.0, 1.0)), write=False)


def check_method_spends_exactly_the_budget(method: str, task: str = CONTRACT_TASK) -> None:
    """A budget that is not a multiple of the batch is spent exactly (the last step shrinks), never exceeded."""
    batch = dict(_resolve(task, method).method_config)["batch_size"]
    budget = 2 * batch + 3
    result = _method_run(method, task, budget)
    _expect(len(result.query_log) == budget, f"{method}: {len(result.query_log)} queries answered of a budget of "
                                             f"{budget}")
    _expect(result.final["queries"] == budget, f"{method}: final evaluation at {result.final['queries']} queries, "
                                               f"not {budget}")


def check_method_is_deterministic(method: str, task: str = CONTRACT_TASK) -> None:
    """The same seed gives the same query log and metrics; another seed another query log."""
    import numpy as np

    a, b = _method_run(method, task, 70, seed=3), _method_run(method, task, 70, seed=3)
    _expect(np.array_equal(a.query_log.reward, b.query_log.reward), f"{method}: seed 3 twice, different rewards")
    _expect(np.array_equal(a.query_log.condition, b.query_log.condition),
            f"{method}: seed 3 twice, different conditions")
    _expect(deterministic(a.final) == deterministic(b.final), f"{method}: seed 3 twice, different final metrics")
    c = _method_run(method, task, 70, seed=4)
    _expect(not np.array_equal(a.query_log.reward, c.query_log.reward), f"{method}: seeds 3 and 4 query alike")


def check_method_budget_zero(method: str, task: str = CONTRACT_TASK) -> None:
    """Budget 0: no query, no update, one evaluation of the untouched pretrained model (KL 0)."""
    built = make_task(task)
    before = {k: v.clone() for k, v in built.make_policy().denoiser.state_dict().items()}
    result = run(_resolve(task, method, budget=0), write=False)
    _expect(len(result.query_log) == 0, f"{method}: {len(result.query_log)} queries answered on budget 0")
    _expect(deterministic(result.curve[0]) == deterministic(result.final),
            f"{method}: more than the one evaluation of the pretrained model on budget 0")
    after = built.make_policy().denoiser.state_dict()
    _expect(all(torch.equal(before[k], after[k]) for k in before), f"{method}: changed the backbone's weights")
    _expect(result.final["eval/kl"] == 0.0, f"{method}: eval/kl {result.final['eval/kl']} on budget 0")


def check_method_state_dict_round_trip(method: str, task: str = CONTRACT_TASK) -> None:
    """``state_dict`` through a file (``torch.load(weights_only=True)``: tensors and plain containers only) into a
    fresh instance resumes identically: the next step gives the same diagnostics and weights."""
    cls = METHODS.load(method)
    cfg = _resolve(task, method)
    built = make_task(task)

    def fresh():
        m = cls(cls.Config(**dict(cfg.method_config)))
        m.setup(built.make_policy(), built.info, torch.Generator().manual_seed(11))
        return m

    a = fresh()
    oracle_a = built.train_oracle(1000)
    a.step(oracle_a)
    b = fresh()
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    oracle_b = built.train_oracle(1000)
    info_a, info_b = a.step(oracle_a), b.step(oracle_b)
    _expect(info_a == info_b, f"{method}: resumed step diagnostics differ: {info_a} vs {info_b}")
    for (k, va), (_, vb) in zip(a.policy.denoiser.state_dict().items(), b.policy.denoiser.state_dict().items(),
                                   strict=True):
        _expect(torch.equal(va, vb), f"{method}: resumed step gives other weights ({k})")


def check_method_config(method: str, task: str = CONTRACT_TASK) -> None:
    """A frozen dataclass config that refuses ``batch_size=0`` with ``ValueError``; a class docstring (what
    ``benchsuite list`` shows) and ``name`` equal to the registry name."""
    cls = METHODS.load(method)
    _expect(dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen,
            f"{method}: Config must be a frozen dataclass")
    try:
        cls.Config(batch_size=0)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{method}: Config(batch_size=0) must raise ValueError")
    _expect(bool(cls.__doc__), f"{method}: the class needs a docstring ('benchsuite list' shows it)")
    _expect(cls.name == method, f"{method}: class attribute name is {cls.name!r}")
    _check_declarations(method, cls)


def _check_declarations(method: str, cls) -> None:
    """What a method declares about itself for reports and leaderboards (``Method.display_name``, ``colour``,
    ``marker``, ``leaderboard``, ``tune_params``): the figure ones declared in its own class body (they are not
    inherited: ``Method.IDENTITY``), all well-formed, and the tuned fields are config fields with a range in its
    search space."""
    from matplotlib.lines import Line2D

    missing = [name for name in cls.REQUIRED_IDENTITY if name in getattr(cls, "undeclared", ())]
    _expect(not missing, f"{method}: declare {', '.join(missing)} in the class body of {cls.__name__} (a method "
            "does not inherit them from its base; None picks the registry name and a free colour)")
    _expect(cls.display_name is None or (isinstance(cls.display_name, str) and cls.display_name.strip()),
            f"{method}: display_name must be a non-empty string or None")
    _expect(cls.colour is None or bool(re.fullmatch(r"#[0-9A-Fa-f]{6}", str(cls.colour))),
            f"{method}: colour must be '#rrggbb' or None, got {cls.colour!r}")
    _expect(cls.marker in Line2D.markers, f"{method}: marker {cls.marker!r} is not a matplotlib marker")
    _expect(isinstance(cls.leaderboard, bool), f"{method}: leaderboard must be True or False")
    if cls.tune_params:
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(cls.tune_params) - fields)
        _expect(not unknown, f"{method}: tune_params {unknown} are not fields of its Config")
        space = {d.name for d in load_search_space(method, tuple(cls.tune_params))}
        _expect(space == set(cls.tune_params), f"{method}: tune_params without a search-space range: "
                f"{sorted(set(cls.tune_params) - space)}")


def check_method_moves_the_policy(method: str, task: str = CONTRACT_TASK) -> None:
    """After 96 queries a method's evaluated samples have drifted from the pretrained model (``eval/kl > 0``);
    ``pretrained``'s have not."""
    kl = _method_run(method, task, 96).final["eval/kl"]
    _expect(kl == 0.0 if method == "pretrained" else kl > 0, f"{method}: eval/kl {kl} after 96 queries")


METHOD_CHECKS: tuple[Callable[..., None], ...] = (
    check_method_config, check_method_spends_exactly_the_budget, check_method_is_deterministic,
    check_method_budget_zero, check_method_state_dict_round_trip, check_method_moves_the_policy,
)


def contract_task(method: str) -> str:
    """The task a method's contract runs on: its class's ``contract_task``, else ``CONTRACT_TASK`` (the toy task)."""

    return getattr(METHODS.load(method), "contract_task", None) or CONTRACT_TASK


def check_method(cls_or_name: Any, task: str | None = None) -> None:
    """Run every ``METHOD_CHECKS`` check on a method (a registered name, or a ``Method`` subclass: registered in
    this process under its ``name`` if that is free) on ``task`` (default: the method's ``contract_task``, else the
    toy task; seconds)."""
    name = _registered(METHODS, cls_or_name)
    task = task or contract_task(name)
    for check in METHOD_CHECKS:
        check(name, task)


# -- rewards --
def check_reward_class(name: str) -> None:
    """A registered reward is a ``Reward`` subclass with its registry ``name``, a non-empty ``version`` string, a
    bool ``differentiable``, a known ``sample_kind`` and a ``value_range`` that is None or a finite ``(low, high)``
    with low < high, or a factory (checked when called)."""
    entry = REWARDS.load(name)
    _expect(callable(entry), f"reward {name!r}: {entry!r} is not callable")
    if isinstance(entry, type):
        _expect(issubclass(entry, Reward), f"reward {name!r}: {entry!r} does not subclass Reward")
        _expect(entry.name == name, f"reward {name!r}: class attribute name is {entry.name!r}")
        _expect(isinstance(entry.version, str) and bool(entry.version), f"reward {name!r}: version must be a string")
        _expect(isinstance(entry.differentiable, bool), f"reward {name!r}: differentiable must be a bool")
        _expect(entry.sample_kind in ("image", "sequence"), f"reward {name!r}: unknown sample_kind")
        _check_range(f"reward {name!r}", entry.value_range)


def _check_range(what: str, value_range: Any) -> None:
    _expect(value_range is None or (
        isinstance(value_range, tuple) and len(value_range) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value_range)
        and value_range[0] < value_range[1]), f"{what}: value_range must be None or a finite (low, high) with "
                                              f"low < high, got {value_range!r}")


DECLARED = "declared"
"""``check_reward_scores``'s default ``value_range``: the class's ``value_range`` (its default arguments' range)."""

def check_reward_scores(reward: Reward, samples: Tensor, conditions: Tensor | None = None,
                        value_range: tuple[float, float] | None | str = DECLARED) -> Tensor:
    """The call contract on a batch ``reward`` accepts: ``(B,)`` finite floats inside ``value_range`` (default:
    the class's declared ``value_range``; pass ``type(reward).value_range_of(**kwargs)`` for a reward built with
    other arguments; None: no bound), the same twice, and for a differentiable reward a finite, non-zero gradient
    to the samples. Returns the rewards."""
    out = reward(samples, conditions)
    _expect(out.shape == (len(samples),) and out.is_floating_point() and bool(torch.isfinite(out).all()),
            f"{reward!r}: expected ({len(samples)},) finite floats, got {tuple(out.shape)} {out.dtype}")
    bounds = type(reward).value_range if value_range == DECLARED else value_range
    if bounds is not None:
        low, high = float(out.min()), float(out.max())
        _expect(bounds[0] <= low and high <= bounds[1],
                f"{reward!r}: scores in [{low:.6g}, {high:.6g}] leave its value_range {tuple(bounds)}")
    _expect(torch.allclose(out, reward(samples, conditions), rtol=1.3e-6, atol=1e-5),
            f"{reward!r}: not a deterministic function of its input")
    if reward.differentiable:
        x = samples.clone().requires_grad_(True)
        scored = reward(x, conditions)
        _expect(scored.requires_grad, f"{reward!r}: declared differentiable, but its output carries no gradient")
        scored.sum().backward()
        _expect(x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0,
                f"{reward!r}: declared differentiable, but no finite non-zero gradient reaches the samples")
    return out


def check_reward(cls_or_name: Any, samples: Tensor | None = None, conditions: Tensor | None = None,
                 **kwargs: Any) -> Tensor:
    """Check a reward (a registered name, or a ``Reward`` subclass: registered in this process under its ``name`` if
    that is free): its class attributes, that ``REWARDS.make(name, **kwargs)`` builds it, and the call contract on
    ``samples`` (default for an image reward: three random 1 x 8 x 8 images with conditions 0, 1, 2; other sample
    kinds must pass a batch their backbone decodes), the scores inside ``value_range_of(**kwargs)``. Returns the
    rewards."""
    name = _registered(REWARDS, cls_or_name)
    check_reward_class(name)
    reward = REWARDS.make(name, **kwargs)
    _expect(isinstance(reward, Reward) and reward.name == name, f"reward {name!r} built {reward!r}")
    if samples is None:
        if reward.sample_kind != "image":
            raise TypeError(f"check_reward({name!r}): pass samples=, a batch of what its backbone decodes")
        samples = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        conditions = torch.tensor([0, 1, 2])
    value_range = type(reward).value_range_of(**kwargs)
    _check_range(f"reward {name!r} with {kwargs}", value_range)
    return check_reward_scores(reward, samples, conditions, value_range)


# -- backbones: each check takes (task, policy) built from a card that uses the backbone --
def backbone_card(backbone: str) -> str:
    """The first task card (by id) that uses ``backbone``: the one its contract builds it from."""
    ids = sorted(t for t, s in task_specs().items() if s.backbone == backbone)
    _expect(bool(ids), f"backbone {backbone!r} has no task card to build it from; write one")
    return ids[0]


def _conditions(task, n: int) -> Tensor | None:
    tc = task.info.train_conditions
    return None if tc is None else tc[torch.arange(n) % len(tc)]


def check_backbone_rollout(task, policy) -> None:
    """Rollout shapes; finite log-probs; zero KL to its own frozen copy; log-probs recomputed from the stored chain
    equal the sampling ones (the basis of every policy-gradient method)."""
    conds = _conditions(task, 3)
    traj, kls = policy.rollout(conds, torch.Generator().manual_seed(0), batch=3, reference=policy.frozen_copy())
    T, S = policy.num_steps, policy.sample_shape
    _expect(traj.latents.shape == (3, T + 1, *S) and traj.means.shape == (3, T, *S),
            f"rollout latents {tuple(traj.latents.shape)} / means {tuple(traj.means.shape)} for T={T}, S={S}")
    _expect(traj.log_probs.shape == (3, T) and bool(torch.isfinite(traj.log_probs).all()),
            "rollout log-probs must be finite, B x T")
    _expect(bool((traj.stds > 0).all()), "every step std must be > 0")
    _expect(kls.abs().max().item() < 1e-6, "KL to the policy's own frozen copy must be 0")
    for k in (0, T - 1):
        lp = policy.log_prob(traj.latents[:, k], traj.latents[:, k + 1], k, traj.conditions)
        _expect(torch.allclose(lp, traj.log_probs[:, k], rtol=1e-4, atol=1e-3),
                f"log_prob at step {k} does not recompute the sampling log-probs")


def check_backbone_decode_feeds_the_oracle(task, policy) -> None:
    """The same generator gives the same samples; decoded samples are floats in [0, 1] that the task's oracle scores
    to ``(B,)`` finite values."""
    conds = _conditions(task, 4)
    a, _ = policy.rollout(conds, torch.Generator().manual_seed(1), batch=4)
    b, _ = policy.rollout(conds, torch.Generator().manual_seed(1), batch=4)
    _expect(torch.equal(a.x0, b.x0), "the same generator must give the same samples")
    decoded = policy.decode(a.x0)
    _expect(decoded.is_floating_point() and float(decoded.min()) >= 0 and float(decoded.max()) <= 1,
            "decode must give floats in [0, 1]")
    rewards = task.oracle_reward(decoded, conds)
    _expect(rewards.shape == (4,) and bool(torch.isfinite(rewards).all()), "the oracle must score decoded samples")


def check_backbone_decode_is_differentiable(task, policy) -> None:
    """Gradient methods backpropagate rewards through the decoder into the chain."""
    x = torch.randn(2, *policy.sample_shape, requires_grad=True)
    policy.decode(x).square().sum().backward()
    _expect(x.grad is not None and float(x.grad.abs().sum()) > 0, "decode must pass gradients to the samples")


def check_backbone_parameters_move_the_mean(task, policy) -> None:
    """The trainable parameters change the step mean (a method has something to train)."""
    x = torch.randn(2, *policy.sample_shape, generator=torch.Generator().manual_seed(2))
    mean, _ = policy.step_mean(x, 0, _conditions(task, 2))
    params = [p for p in policy.denoiser.parameters() if p.requires_grad]
    _expect(bool(params), "the policy has no trainable parameters")
    mean.sum().backward()
    _expect(any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in params),
            "no trainable parameter gets a gradient from the step mean")


BACKBONE_CHECKS: tuple[Callable[..., None], ...] = (
    check_backbone_rollout, check_backbone_decode_feeds_the_oracle, check_backbone_decode_is_differentiable,
    check_backbone_parameters_move_the_mean,
)


def built_backbone(cls_or_name: Any, task: str | None = None):
    """``(task, policy)``: the backbone built the way a run builds it, from ``task`` (default: the first card
    that uses it) with that card's sampler settings."""
    name = _registered(BACKBONES, cls_or_name)
    built = make_task(task or backbone_card(name))
    _expect(built.spec.backbone == name, f"task {built.spec.id} uses backbone {built.spec.backbone!r}, not {name!r}")
    return built, built.make_policy()


def check_backbone(cls_or_name: Any, task: str | None = None) -> None:
    """Run every ``BACKBONE_CHECKS`` check on a backbone (a registered name, or a factory function: registered in
    this process under its ``__name__`` if that is free), built from ``task`` (default: the first card using it)."""
    built, policy = built_backbone(cls_or_name, task)
    for check in BACKBONE_CHECKS:
        check(built, policy)


# -- task cards: each check takes a task id --
def check_task_loads(task_id: str) -> None:
    """The card loads (no problem in ``benchsuite list``), builds its oracle and judges at the pinned versions and
    its backbone, and the backbone's decoded samples are scored by the oracle and every judge to ``(B,)`` finite
    floats without spending a budget."""
    _expect(task_id not in broken_cards(), f"task card {task_id}: {broken_cards().get(task_id)}")
    built = make_task(task_id)
    policy = built.make_policy()
    conds = None if built.spec.eval_conditions is None else torch.tensor(built.spec.eval_conditions[:4])
    traj, _ = policy.rollout(conds, torch.Generator().manual_seed(0), batch=4)
    decoded = policy.decode(traj.x0)
    for label, reward in [("oracle", built.oracle_reward), *built.judges.items()]:
        try:
            out = reward(decoded, traj.conditions)
        except Exception as exc:  # any failure to score is the card's problem: say which reward
            raise AssertionError(f"task {task_id}: {label} ({reward!r}) cannot score the backbone's samples "
                                 f"({type(exc).__name__}: {exc})") from exc
        _expect(out.shape == (len(decoded),) and bool(torch.isfinite(out).all()),
                f"task {task_id}: {label} ({reward!r}) does not score the backbone's samples to finite values")


def check_task_resolves_for_every_method(task_id: str) -> None:
    """Every registered method resolves a run config on the card (its presets fit the card's backbone) at the
    card's default budget."""
    for method in METHODS.names():
        resolve(task_id, method)


TASK_CHECKS: tuple[Callable[[str], None], ...] = (check_task_loads, check_task_resolves_for_every_method)


def check_task(task_id: str) -> None:
    """Run every ``TASK_CHECKS`` check on the task card ``task_id`` (from any task folder or plugin)."""
    for check in TASK_CHECKS:
        check(task_id)


# -- sample spaces: each check takes (space, samples, conditions, folder) --
def check_space_check(space: SampleSpace, samples: Tensor, conditions: Tensor | None, folder: Path) -> None:
    """``check`` accepts the space's own samples and refuses a flattened batch with ``ValueError``."""
    space.check(samples)
    try:
        space.check(samples.flatten(1))
    except ValueError:
        return
    raise AssertionError(f"{space!r}: check accepted a flattened batch {tuple(samples.flatten(1).shape)}")


def check_space_features(space: SampleSpace, samples: Tensor, conditions: Tensor | None, folder: Path) -> None:
    """``features``: one finite row per sample (``N x F``)."""
    feats = space.features(samples)
    _expect(feats.ndim == 2 and len(feats) == len(samples), f"{space!r}: features must be N x F, got "
            f"{tuple(feats.shape)} for {len(samples)} samples")
    _expect(bool(torch.isfinite(feats.double()).all()), f"{space!r}: features are not finite")


def check_space_metrics(space: SampleSpace, samples: Tensor, conditions: Tensor | None, folder: Path) -> None:
    """``metrics``: finite, with ``eval/diversity`` and ``eval/vendi``; against a reference more keys (the drift
    metrics), each 0 when the reference is the samples themselves."""
    first = space.metrics(samples, conditions, None)
    _expect({"eval/diversity", "eval/vendi"} <= set(first), f"{space!r}: metrics lack eval/diversity or eval/vendi")
    against_itself = space.metrics(samples, conditions, samples)
    _expect(set(first) < set(against_itself), f"{space!r}: metrics against a reference add no drift metric")
    _expect(all(math.isfinite(v) for v in against_itself.values()), f"{space!r}: metrics not finite: {against_itself}")
    drift = {k: v for k, v in against_itself.items() if k not in first and abs(v) > 1e-6}
    _expect(not drift, f"{space!r}: drift of the samples from themselves is not 0: {drift}")


def check_space_render(space: SampleSpace, samples: Tensor, conditions: Tensor | None, folder: Path) -> None:
    """``render``: an RGB ``uint8`` picture (``H x W x 3``), and a ``grid_panel`` the report knows how to cut."""
    grid = space.render(samples, conditions, torch.linspace(-1, 1, len(samples)), label="check reward")
    _expect(grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3,
            f"{space!r}: render must return an H x W x 3 uint8 array, got {grid.dtype} {grid.shape}")
    _expect(space.grid_panel in GRID_PANELS, f"{space!r}: grid_panel must be one of {sorted(GRID_PANELS)}, "
            f"got {space.grid_panel!r}")


def check_space_records(space: SampleSpace, samples: Tensor, conditions: Tensor | None, folder: Path) -> None:
    """``records``: one dict of strings per sample; a ``file`` it names exists in ``folder``."""
    records = space.records(samples, [f"q{i:06d}" for i in range(len(samples))], folder)
    _expect(len(records) == len(samples) and all(r and all(isinstance(v, str) for v in r.values()) for r in records),
            f"{space!r}: records must be one non-empty dict of strings per sample")
    missing = [r["file"] for r in records if "file" in r and not Path(r["file"]).is_file()]
    _expect(not missing, f"{space!r}: records name files that do not exist: {missing[:3]}")


def check_space_decode_encode(space: SampleSpace, samples: Tensor, conditions: Tensor | None, folder: Path) -> None:
    """``decode`` gives one object per sample and ``encode`` takes them back to samples the space accepts that
    decode to the same objects."""
    decoded = space.decode(samples)
    _expect(len(decoded) == len(samples), f"{space!r}: decode gave {len(decoded)} objects for {len(samples)} samples")
    encoded = space.encode(decoded)
    space.check(encoded)
    again = space.decode(encoded)
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(again, decoded))
    _expect(same, f"{space!r}: decode(encode(decode(x))) differs from decode(x)")


def check_space_reward_model(space: SampleSpace, samples: Tensor, conditions: Tensor | None, folder: Path) -> None:
    """``reward_model``: a differentiable ``(N,)`` regressor on the samples; ``as_image``: ``N x image_channels x
    H x W``."""
    nc = None if conditions is None else int(conditions.max()) + 1
    x = samples.detach().clone().requires_grad_(True)
    out = space.reward_model(nc, 8)(x, conditions)
    _expect(out.shape == (len(samples),) and bool(torch.isfinite(out).all()),
            f"{space!r}: reward_model must give N finite values, got {tuple(out.shape)}")
    out.sum().backward()
    _expect(x.grad is not None and x.grad.abs().sum() > 0, f"{space!r}: reward_model is not differentiable")
    picture = space.as_image(samples)
    _expect(picture.ndim == 4 and picture.shape[:2] == (len(samples), space.image_channels),
            f"{space!r}: as_image must be N x image_channels x H x W, got {tuple(picture.shape)}")


SPACE_CHECKS: tuple[Callable[..., None], ...] = (
    check_space_check, check_space_features, check_space_metrics, check_space_render, check_space_records,
    check_space_decode_encode, check_space_reward_model,
)


def check_space(space: SampleSpace, samples: Tensor, conditions: Tensor | None = None) -> None:
    """Run every ``SPACE_CHECKS`` check on a sample space (``benchsuite.spaces.SampleSpace``) with a batch of its
    samples (a backbone's decoded samples, ``policy.decode(traj.x0)``) and their conditions (or None). Files that
    ``records`` writes go to a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        for check in SPACE_CHECKS:
            check(space, samples, conditions, Path(folder) / "records")
