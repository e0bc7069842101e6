"""SQDF: soft Q-based diffusion fine-tuning (arXiv 2512.04559; Shin-woocheol/SQDF).

Rules as in the official code (``T2I/alignprop_trainer.py``: buffer, sampling and loss;
``T2I/sd_pipeline.py``: ``buffer_sqdf_pipeline_step_with_grad``, ``buffer_sqdf_pipeline_n_step_sampling``,
``sqdf_scheduler_step``):
1. Roll out B full chains without gradients and push them into a FIFO replay buffer (all T+1 states, the
   condition and the paid-for reward of each chain).
2. Draw (chain, step k) pairs: ``random`` (chains uniformly without replacement, k uniform), ``on-policy`` (the
   newest chains, k uniform) or ``prioritized`` (pairs with probability proportional to r~ . gamma^(T-1-k)).
3. From the stored x_k take one reparameterized step with gradient, x_{k+1} = mu_theta(x_k) + sigma_k eps,
   and the KL_k to the frozen reference at the same x_k.
4. Soft-Q estimate without training: x0_hat = f(x_{k+1}) with a frozen predictor: ``consistency`` (the official
   default: a consistency model distilled from the backbone, the policy's ``x0_predictor``; LCM-LoRA on SD 1.5,
   ``benchsuite.policies.consistency`` on the digits backbone), or, built on the reference model, ``tweedie``
   (one Tweedie step) or ``ddim-k`` (a deterministic k-step DDIM jump); x0_hat = x_{k+1} after the last step.
   ``auto`` (the default) takes the consistency model where the backbone has one, else Tweedie. The reward of
   x0_hat is differentiated through f (its weights are frozen; its input is not). On a black-box oracle the reward
   is a surrogate fit only to the rollouts' paid-for rewards.
5. loss = mean over pairs of -(gamma^(T-1-k) r(x0_hat) / sigma_r - kl_coef KL_k) . 1[r~(x0_hat) > 0]; AdamW, grad
   clip. sigma_r is the reward scale (``reward_norm``; the official code uses the raw reward, ``none``).

Differences from the official code:
- The official code scores x0_hat with a consistency model (LCM-LoRA for SD 1.5) by default; so does ``auto`` on
  the digits backbone (a consistency model we distil, shipped beside it) and on SD (LCM-LoRA). The sequence
  backbones have none: there ``auto`` is the reference model's Tweedie step (the official
  ``use_consistency_model=False`` path; ``ddim-k`` is their ``use_n_step_sampling``). Our ``ddim-k`` lands its last
  jump on the clean estimate; theirs lands on training timestep 0 (alpha_bar_0 = 0.9999 for SD), a negligible
  difference that makes ``ddim-k`` with k = 1 exactly ``tweedie``.
- Reward sign (``reward_shift``). The paper keeps a pair only when r > 0 and samples pairs proportionally to
  max(r, 0); that is meaningful for rewards whose zero means something (aesthetic scores are positive). Our JPEG
  rewards are all negative, which would mask every pair. ``reward_shift="rank"`` replaces a reward by its
  empirical CDF among the buffer's paid-for rewards, r~ = #{j : r_j <= r} / N in [0, 1]: every stored chain
  gets a positive priority (the best 1, the worst 1/N; scale-free), and the indicator becomes
  1[r(x0_hat) >= min of the buffer's rewards], i.e. the paper's "drop what is worse than zero" with zero moved to
  the worst reward paid for. The differentiated term keeps the raw reward: a constant shift does not change
  the gradient. ``reward_shift="none"`` is the paper's rule and raises if no buffered reward is positive.
- Budget: one oracle query per rolled-out chain. With a black-box oracle the updates use the surrogate and
  are free; with a differentiable oracle (``reward_gradients="oracle"``) every scored x0_hat is an oracle query
  and is charged.
- One optimizer step per update on ``train_batch_size`` pairs (the official code accumulates 8 x 4 pairs per
  GPU on 2 GPUs into one step); ``updates_per_step`` is their ``replay_ratio``.

KL: the official ``sqdf_scheduler_step`` uses the mean over the D data dims of (mu_ref - mu_theta)^2 / sigma^2;
our ``gaussian_kl`` is the sum over dims of (mu_ref - mu_theta)^2 / (2 sigma^2), D / 2 times theirs, so their
alpha . KL_theirs = (2 alpha / D) . KL_ours: kl_coef = 2 alpha / D on a raw reward (``reward_norm="none"``). The
paper's alpha = 2 on SD 1.5's 4 x 64 x 64 latents is kl_coef = 4 / 16384 = 2.4e-4.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ..budget import BudgetedOracle
from ..errors import ConfigError
from ..policies.base import DiffusionPolicy
from .base import Method, MethodConfig, OptimizerFields, RewardNormFields, check
from .surrogate import RewardGradientFields, SurrogateReward, check_reward_gradients


@dataclass(frozen=True)
class SQDFConfig(RewardNormFields, OptimizerFields, RewardGradientFields, MethodConfig):
    batch_size: int = 64
    """Chains rolled out (= oracle queries) per step and pushed into the buffer. Official: 8 x 4 per GPU, 2 GPUs."""
    train_batch_size: int = 64
    """(chain, step) pairs per optimizer step. Official: 64 (as above)."""
    updates_per_step: int = 1
    """Optimizer steps on buffer samples after each rollout batch (the official ``replay_ratio``, default 1)."""
    buffer_capacity: int = 1024
    """Chains kept in the replay buffer; the oldest are evicted first. Official: 1024."""
    sampling: Literal["random", "on-policy", "prioritized"] = "random"
    """How (chain, step) pairs are drawn: ``random`` (chains without replacement, uniform step), ``on-policy``
    (the newest chains, uniform step) or ``prioritized`` (pairs with probability ~ r~ gamma^(T-1-k)).
    Official default: random."""
    reward_shift: Literal["none", "rank"] = "none"
    """``none``: the paper's 1[r > 0] and max(r, 0) priorities (rewards with a meaningful zero); ``rank``: the
    empirical CDF of the reward among the buffer's rewards replaces r in the indicator and the priorities (for
    rewards of any sign, such as -JPEG kB). See the module docstring."""
    discount: float = 0.9
    """gamma; the reward of step k is weighted by gamma^(T-1-k) (steps remaining). Paper: 0.9."""
    kl_coef: float = 2.44140625e-4
    """Weight of KL_k in nats (our ``gaussian_kl``: the sum over dims of (mu - mu_ref)^2 / (2 sigma^2)) against the
    reward divided by its scale (``reward_norm``). The paper's alpha = 2 multiplies the official KL, the mean over
    the D dims of (mu - mu_ref)^2 / sigma^2: kl_coef = 2 alpha / D, 2.4e-4 on SD 1.5's D = 16384 latent dims (on a
    raw reward, ``reward_norm="none"``; see the module docstring)."""
    predictor: Literal["auto", "consistency", "tweedie", "ddim-k"] = "auto"
    """Frozen x0 predictor: the backbone's consistency model (the paper's default), one Tweedie step of the
    reference, or a ``predictor_steps``-step DDIM jump of it; ``auto``: the consistency model where the backbone
    has one (digits, SD with LCM-LoRA), else Tweedie."""
    predictor_steps: int = 2
    """Jumps of the ``ddim-k`` predictor (official ``n_steps``; 2 reported to work). Ignored by ``tweedie``."""
    lr: float = 1e-3
    """AdamW learning rate (``OptimizerFields``). Paper: 1e-3 with LoRA rank 4; its weight decay, 1e-4 (the
    official default), is the shared default."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.train_batch_size >= 1, "train_batch_size must be >= 1")
        check(self.updates_per_step >= 1, "updates_per_step must be >= 1")
        check(self.buffer_capacity >= self.batch_size, "buffer_capacity must be >= batch_size")
        check(self.sampling in ("random", "on-policy", "prioritized"),
              "sampling must be 'random', 'on-policy' or 'prioritized'")
        check(self.reward_shift in ("none", "rank"), "reward_shift must be 'none' or 'rank'")
        check(0 < self.discount <= 1, "discount must be in (0, 1]")
        check(self.kl_coef >= 0, "kl_coef must be >= 0")
        check(self.predictor in ("auto", "consistency", "tweedie", "ddim-k"),
              "predictor must be 'auto', 'consistency', 'tweedie' or 'ddim-k'")
        check(self.predictor_steps >= 1, "predictor_steps must be >= 1")


# ---- the rule's math, as pure functions ---------------------------------------------------------------------
def discount_weights(k: Tensor, num_steps: int, discount: float) -> Tensor:
    """gamma^(T-1-k) for step indices ``k`` (any shape, int64); same shape, float32."""
    return torch.tensor(discount, dtype=torch.float64).pow(num_steps - 1 - k).float()


def empirical_cdf(values: Tensor, reference: Tensor) -> Tensor:
    """#{j : reference_j <= v} / len(reference) for each v in ``values`` (``B``); returns ``B`` in [0, 1]."""
    return (reference[None, :] <= values[:, None]).float().mean(1)


def shifted_rewards(rewards: Tensor, buffer_rewards: Tensor, shift: str) -> Tensor:
    """r~: the reward as the paper's indicator and priorities see it (``B`` -> ``B``).

    ``none``: r itself; ``rank``: its empirical CDF among ``buffer_rewards`` (``N``).
    """
    return rewards if shift == "none" else empirical_cdf(rewards, buffer_rewards)


def pair_probabilities(rewards: Tensor, num_steps: int, discount: float, shift: str) -> Tensor:
    """Prioritized sampling distribution over (chain, step) pairs, ``N x T``, summing to 1.

    p(i, k) ~ max(r~_i, 0) . gamma^(T-1-k) with r~ from ``shifted_rewards`` over the buffer itself
    (official ``sample_reward_gamma_PER``). Raises when every priority is zero.
    """
    r = shifted_rewards(rewards, rewards, shift).clamp(min=0)
    w = r[:, None] * discount_weights(torch.arange(num_steps), num_steps, discount)[None, :]
    total = w.sum()
    if not total > 0:
        raise ConfigError("prioritized sampling: no buffered reward is positive, so every priority is zero; "
                          "set --set method.reward_shift=rank for rewards that are not positive")
    return w / total


def predict_x0(reference: DiffusionPolicy, x: Tensor, state: Tensor, cond: Tensor | None, jumps: int) -> Tensor:
    """Frozen x0 predictor: a deterministic DDIM jump in ``jumps`` steps with the reference's noise predictions.

    ``x`` (``B x *S``) is the chain's state with index ``state`` (``B`` int64 in 1..T): state j is the input of
    sampler step j, at timestep t_j with noise level alpha_bar = ``reference.alpha[j]`` (the output of step
    j-1 has the noise level of step j); state T is the final sample and is returned unchanged. The jump visits
    state indices round(j + (T - j) m / jumps), m = 0..jumps (the official ``make_uniform_subsequences``); a
    visit to a state i < T is x_i = sqrt(a_i) x0 + sqrt(1 - a_i) eps, the last one is x0 = (x - sqrt(1 - a_j)
    eps) / sqrt(a_j) itself, so ``jumps=1`` is one Tweedie step. Repeated indices are skipped. The reference's
    weights are frozen but gradients flow to ``x``. Returns ``B x *S``.
    """
    T = reference.num_steps
    levels = torch.cat([reference.alpha, reference.alpha.new_ones(1)])  # state index -> alpha_bar; clean at T
    grid = torch.linspace(0, 1, jumps + 1, device=state.device)
    visits = (state[:, None] + (T - state)[:, None] * grid).round().long()  # B x (jumps + 1), last column T
    view = (-1, *([1] * (x.ndim - 1)))
    for m in range(jumps):
        cur, nxt = visits[:, m], visits[:, m + 1]
        active = cur < nxt
        if not bool(active.any()):
            continue
        eps = reference.eps(x, cur.clamp(max=T - 1), cond)
        a_cur, a_nxt = levels[cur].view(view), levels[nxt].view(view)
        x0 = (x - (1 - a_cur).sqrt() * eps) / a_cur.sqrt()
        x = torch.where(active.view(view), a_nxt.sqrt() * x0 + (1 - a_nxt).sqrt() * eps, x)
    return x


def sqdf_loss(q: Tensor, kl: Tensor, k: Tensor, num_steps: int, discount: float, kl_coef: float,
              keep: Tensor) -> Tensor:
    """mean over pairs of -(gamma^(T-1-k) q - kl_coef kl) . keep.

    Args:
        q: ``P`` rewards of x0_hat divided by the reward scale (differentiable); kl: ``P`` per-step KL (nats); k:
            ``P`` step indices;
        keep: ``P`` the 0/1 indicator 1[r~(x0_hat) > 0].
    """
    w = discount_weights(k, num_steps, discount).to(q.device)
    return (-(w * q - kl_coef * kl) * keep).mean()


class ReplayBuffer:
    """FIFO buffer of whole chains: ``latents`` ``capacity x (T+1) x *S``, ``conditions`` ``capacity`` (int64;
    None when unconditional), ``rewards`` ``capacity``. Kept on the CPU; ``total`` counts every chain pushed, so
    slot ``total % capacity`` holds the oldest chain once the buffer is full.
    """

    def __init__(self, capacity: int, chain_shape: tuple[int, ...], conditional: bool):
        self.capacity = capacity
        self.latents = torch.zeros((capacity, *chain_shape))
        self.conditions = torch.zeros(capacity, dtype=torch.int64) if conditional else None
        self.rewards = torch.zeros(capacity)
        self.total = 0

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def push(self, latents: Tensor, conditions: Tensor | None, rewards: Tensor) -> None:
        """Store ``B`` chains (``B x (T+1) x *S``, ``B`` or None, ``B``), overwriting the oldest; B <= capacity."""
        n = len(latents)
        if n > self.capacity:
            raise ValueError(f"cannot push {n} chains into a buffer of {self.capacity}")
        slots = (self.total + torch.arange(n)) % self.capacity
        self.latents[slots] = latents.detach().float().cpu()
        if self.conditions is not None:
            self.conditions[slots] = conditions.detach().cpu()
        self.rewards[slots] = rewards.detach().float().cpu()
        self.total += n

    def stored_rewards(self) -> Tensor:
        """Rewards of the stored chains, ``len(self)``, in slot order."""
        return self.rewards[: len(self)]

    def newest(self, n: int) -> Tensor:
        """Slots of the ``min(n, len)`` most recently pushed chains, newest first (``n`` int64)."""
        return (self.total - 1 - torch.arange(min(n, len(self)))) % self.capacity

    def state_dict(self) -> dict[str, Any]:
        return {"latents": self.latents, "conditions": self.conditions, "rewards": self.rewards,
                "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.latents = state["latents"].clone()
        self.conditions = None if state["conditions"] is None else state["conditions"].clone()
        self.rewards = state["rewards"].clone()
        self.total = int(state["total"])


class SQDF(Method):
    """SQDF with a replay buffer and a frozen Tweedie / DDIM-k soft-Q estimate (see the module docstring)."""

    name = "sqdf"
    display_name = "SQDF"
    colour = "#009E73"
    marker = "P"
    tune_params = ("lr", "kl_coef", "discount")  # trains on replayed chains: no timestep fraction
    Config = SQDFConfig
    config: SQDFConfig

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        c = self.config
        self.reference = policy.frozen_copy()
        self.make_optimizer(c.lr, c.weight_decay)
        self.predictor = c.predictor
        has_model = c.predictor in ("auto", "consistency") and policy.resolve_x0_predictor() is not None
        if self.predictor == "auto":
            self.predictor = "consistency" if has_model else "tweedie"
        if self.predictor == "consistency" and not has_model:
            raise ConfigError("sqdf: predictor='consistency' but this backbone has no consistency model; use "
                              "--set method.predictor=tweedie (or ddim-k)")
        conditional = task.train_conditions is not None
        self.buffer = ReplayBuffer(c.buffer_capacity, (policy.num_steps + 1, *policy.sample_shape), conditional)
        self.surrogate: SurrogateReward | None = None
        if check_reward_gradients(c.reward_gradients, task.oracle_differentiable, self.name):
            device = policy.stds.device
            classes = int(task.train_conditions.max()) + 1 if conditional else None
            self.surrogate = SurrogateReward(policy.space, classes, c, generator, device)

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        c, policy = self.config, self.policy
        policy.eval()
        batch = self.query_batch(oracle)
        traj, images, rewards = batch.trajectory, batch.samples, batch.rewards.detach()
        n = len(rewards)
        self.reward_scale.update(rewards)
        self.buffer.push(traj.latents, traj.conditions, rewards)
        out = {"train/reward_mean": rewards.mean().item(),
               "train/reward_std": rewards.std().item() if n > 1 else 0.0}
        if self.surrogate is not None:
            self.surrogate.add(images, traj.conditions, rewards)
            out["train/surrogate_loss"] = self.surrogate.fit()
        if c.reward_shift == "none" and not bool((self.buffer.stored_rewards() > 0).any()):
            raise ConfigError("sqdf: reward_shift='none' keeps only pairs with r > 0 (the paper's rule), but no "
                              "reward in the buffer is positive; set --set method.reward_shift=rank")

        totals: dict[str, float] = defaultdict(float)
        updates = 0
        policy.train()
        for _ in range(c.updates_per_step):
            pairs = c.train_batch_size if self.surrogate is not None else min(c.train_batch_size, oracle.remaining)
            if pairs == 0:
                break
            for key, value in self._update(oracle, pairs).items():
                totals[key] += value
            updates += 1
        policy.eval()
        out.update({f"train/{k}": v / updates for k, v in totals.items()})
        out["train/buffer_size"] = float(len(self.buffer))
        return out

    def _sample_pairs(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw up to ``n`` (buffer slot, step index) pairs by ``config.sampling``; two ``P`` int64 tensors."""
        c, T, size = self.config, self.policy.num_steps, len(self.buffer)
        if c.sampling == "prioritized":
            probs = pair_probabilities(self.buffer.stored_rewards(), T, c.discount, c.reward_shift)
            flat = torch.multinomial(probs.flatten(), n, replacement=True, generator=self.generator)
            return flat // T, flat % T
        if c.sampling == "on-policy":
            slots = self.buffer.newest(n)
        else:
            slots = torch.randperm(size, generator=self.generator)[:n]
        return slots, torch.randint(T, (len(slots),), generator=self.generator)

    def _update(self, oracle: BudgetedOracle, n: int) -> dict[str, float]:
        """One optimizer step on up to ``n`` buffer pairs; returns diagnostics."""
        c, policy = self.config, self.policy
        device = policy.stds.device
        T = policy.num_steps
        slots, k = self._sample_pairs(n)
        x = self.buffer.latents[slots, k].to(device)
        cond = None if self.buffer.conditions is None else self.buffer.conditions[slots].to(device)
        k = k.to(device)
        noise = torch.randn(x.shape, generator=self.generator).to(device)

        mean, _ = policy.step_mean(x, k, cond)
        x_next = mean + policy.step_std(k, len(x)) * noise  # policy.transition, reusing the mean for the KL
        kl = policy.kl_to(self.reference, x, k, cond, mean=mean)
        if self.predictor == "consistency":  # the policy's frozen consistency model (the reference has its copy)
            x0_hat = policy.consistency_x0(x_next, k + 1, cond)
        else:
            x0_hat = predict_x0(self.reference, x_next, k + 1, cond, 1 if self.predictor == "tweedie" else
                                c.predictor_steps)
        images = policy.decode(x0_hat)
        q = self.surrogate(images, cond) if self.surrogate is not None else oracle(images, cond)
        keep = (shifted_rewards(q.detach().cpu(), self.buffer.stored_rewards(), c.reward_shift) > 0).float()
        loss = sqdf_loss(q / self.reward_scale.value, kl, k, T, c.discount, c.kl_coef, keep.to(device))

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self.clip_and_step(c.max_grad_norm)
        return {"loss": loss.item(), "q_mean": q.mean().item(), "kl": kl.mean().item(),
                "keep_frac": keep.mean().item(), "grad_norm": float(grad_norm)}

    def _state(self) -> dict[str, Any]:
        state = {**super()._state(), "buffer": self.buffer.state_dict()}
        if self.surrogate is not None:
            state["surrogate"] = self.surrogate.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
        if self.surrogate is not None:
            self.surrogate.load_state_dict(state["surrogate"])
