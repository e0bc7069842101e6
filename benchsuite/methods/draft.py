"""DRaFT: direct reward fine-tuning by backpropagating the reward through the sampler (Clark et al., arXiv
2309.17400). The paper ships no code; the rules below are the paper's as summarised in shared/design/methods.md,
written on our ``DiffusionPolicy`` step.

Variants (``variant``):
- ``k`` (DRaFT-K): run the first T - K sampler steps under ``no_grad``, then the last K steps with gradients
  (reparameterized: x_{k+1} = mu_theta(x_k) + sigma_k * noise, fresh noise from the method's generator).
  loss = -mean_b r(x_0^b). K = 1 is the paper's recommended default; K = T is full DRaFT.
- ``lv`` (DRaFT-LV, K = 1): sample x_0 entirely without gradients, then "re-noise" it n = ``lv_samples`` times to
  the noise level of the last step's input and take that last step again with gradients; the loss averages the
  rewards of the n one-step results. With our sampler the last step (index T-1) goes from timestep t_{T-1}
  (``policy.timesteps[-1]``) to x_0, so re-noising is the forward process q(x_{t_{T-1}} | x_0):
      x^(i) = sqrt(abar) x_0 + sqrt(1 - abar) eps_i,   abar = policy.alpha[T-1] (alphas_cumprod at t_{T-1}),
  treating the sampled x_0 as clean data, and the one-step result is x_0^(i) = mu_theta(x^(i), T-1) + sigma_{T-1}
  z_i. (The sampler's x_0 sits at alpha_prev[T-1] = alphas_cumprod[0], not exactly 1; on the digits schedule the
  difference is below 1e-4, so the plain forward process from a clean x_0 is used.)
- ``kl_coef`` > 0 (DRaFT+KL, as in the SQDF repository, ``T2I/sd_pipeline.py``, which recomputes the policy's
  noise prediction with gradient at every sampler step): loss = mean_b [-r_b / sigma_r + kl_coef * sum_k KL_k,b]
  over *every* step k = 0..T-1, sigma_r the reward scale (``reward_norm``: the running std of the paid-for rewards
  by default, 1 with ``none``, the SQDF code's rule). KL_k is ``gaussian_kl`` (the suite's one definition, nats
  summed over the data dims), with the reference mean computed
  at the same state. In the first T - K steps the state is sampled without gradient (detached), but the policy's
  mean at it carries one, so each of those KL terms has a theta-gradient; it is backpropagated step by step as
  the chain is sampled (memory O(1) in T). In the last K steps the state itself depends on theta and the
  gradient flows through both means. For ``lv`` the sampled chain's steps 0..T-2 contribute their KL the same
  way, and the last step's KL is taken on the re-noised copies.

Reward gradients and query accounting: every sample whose oracle reward is computed is one query.
- Differentiable oracle (``reward_gradients`` = ``oracle``, or ``auto`` on such a task): ``k`` charges the B
  final samples; ``lv`` sends each re-noised one-step result to the oracle, so a step of q queries draws
  ceil(q / lv_samples) chains and scores the first q of their (chain, copy) pairs (the last chain may get fewer
  copies when q is not a multiple of ``lv_samples``).
- Black-box oracle (JPEG size): the method fits a ``SurrogateReward`` to the queries it paid for
  (``benchsuite.methods.surrogate``) and differentiates that. ``k`` charges the B final samples (their images,
  detached, go to the oracle and the surrogate's data; the surrogate's prediction at the same images carries the
  gradient). ``lv`` charges the B true x_0 of the chains; the n re-noised copies are scored by the surrogate
  only, which is free (a model trained on paid-for outputs).
- ``reward_gradients = oracle`` on a black-box oracle fails at setup with a message naming the fix.

Changes from the paper: full fine-tuning of the embedded backbones instead of LoRA on SD 1.4 (so the paper's
LoRA learning rates do not carry over; see ``baselines/draft/defaults.yaml``); the surrogate for black-box
rewards is this suite's addition; gradient checkpointing is per step via ``torch.utils.checkpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..budget import BudgetedOracle
from ..errors import ConfigError
from ..policies.base import gaussian_kl
from .base import Method, MethodConfig, OptimizerFields, RewardNormFields, check
from .surrogate import RewardGradientFields, SurrogateReward, check_reward_gradients, differentiable_reward


@dataclass(frozen=True)
class DRaFTConfig(RewardNormFields, OptimizerFields, RewardGradientFields, MethodConfig):
    batch_size: int = 64
    """Oracle queries per step (one optimizer step each). See the module docstring for how many chains that is."""
    k: int = 1
    """K: the number of last sampler steps that carry gradients (1 <= K <= T). Paper default: 1."""
    variant: Literal["k", "lv"] = "k"
    """``k``: DRaFT-K; ``lv``: DRaFT-LV (needs k = 1)."""
    lv_samples: int = 2
    """n: re-noised copies per chain in DRaFT-LV. Paper: 2."""
    kl_coef: float = 0.0
    """Weight of the path KL in nats (the per-step KL summed over the data dims and over every step) against the
    reward divided by its scale (``reward_norm``): DRaFT+KL; 0 is plain DRaFT (the paper)."""
    lr: float = 2e-4
    """AdamW learning rate (``OptimizerFields``). Paper: 2e-4 to 4e-4 with LoRA on SD 1.4. Its ``max_grad_norm``,
    1, is the value of the SQDF/AlignProp code the suite follows."""
    weight_decay: float = 0.0
    """AdamW weight decay (``OptimizerFields``): not given by the paper; 0 keeps the objective the paper's."""
    gradient_checkpointing: bool = False
    """Recompute each gradient-carrying step's forward during backward (memory O(1) in K instead of O(K))."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.k >= 1, "k must be >= 1")
        check(self.variant in ("k", "lv"), "variant must be 'k' or 'lv'")
        check(self.variant == "k" or self.k == 1, "variant 'lv' (DRaFT-LV) is defined for k = 1")
        check(self.lv_samples >= 1, "lv_samples must be >= 1")
        check(self.kl_coef >= 0, "kl_coef must be >= 0")


class DRaFT(Method):
    """DRaFT-K (``variant=k``), DRaFT-LV (``variant=lv``), each with an optional KL penalty (DRaFT+KL)."""

    name = "draft"
    display_name = "DRaFT"
    colour = "#D55E00"
    marker = "v"
    tune_params = ("lr", "kl_coef", "k")  # the gradient reaches the last k steps: no timestep fraction
    Config = DRaFTConfig
    config: DRaFTConfig

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        c = self.config
        if c.k > policy.num_steps:
            raise ConfigError(f"draft: k={c.k} exceeds the sampler's {policy.num_steps} steps")
        self.reference = policy.frozen_copy()
        self.make_optimizer(c.lr, c.weight_decay)
        self.surrogate: SurrogateReward | None = None
        if check_reward_gradients(c.reward_gradients, task.oracle_differentiable, self.name):
            device = policy.stds.device
            tc = task.train_conditions
            self.surrogate = SurrogateReward(policy.space, None if tc is None else int(tc.max()) + 1, c, generator, device)

    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)  # before _loss: it backpropagates the early steps' KL itself
        loss, info = self._loss(oracle)
        loss.backward()
        grad_norm = self.clip_and_step(self.config.max_grad_norm)
        self.policy.eval()
        info["train/grad_norm"] = float(grad_norm)
        return info

    # ---- the objective -----------------------------------------------------------------------------------
    def _loss(self, oracle: BudgetedOracle) -> tuple[Tensor, dict[str, float]]:
        """Sample, pay for this step's queries, and return the scalar loss (with its graph) and diagnostics.

        The loss is mean over gradient-carrying samples of ``-r_grad / sigma_r + kl_coef * KL``, where KL (``B``) is
        the summed per-step KL of the steps taken with gradients.
        """
        c, policy = self.config, self.policy
        T = policy.num_steps
        q = self.batch_for(oracle)
        if c.variant == "k":
            conds = self._to_device(self.sample_conditions(q))
            x, kl_early = self._sample(conds, q, stop=T - c.k)
            policy.train()
            x0, kl = self._grad_steps(x, conds, range(T - c.k, T))
            kl = kl + kl_early
            r_grad, r_true, info = differentiable_reward(oracle, self.surrogate, policy.decode(x0), conds)
        else:
            per_chain = 1 if self.surrogate is not None else c.lv_samples  # queries each chain costs
            chains = -(-q // per_chain)
            conds = self._to_device(self.sample_conditions(chains))
            x0, kl_early = self._sample(conds, chains, stop=T, kl_steps=T - 1)
            rows = torch.arange(chains, device=x0.device).repeat_interleave(c.lv_samples)
            if self.surrogate is None:
                rows = rows[:q]
            rep_conds = None if conds is None else conds[rows]
            policy.train()
            x0_lv, kl = self._grad_steps(self._renoise(x0[rows]), rep_conds, [T - 1])
            kl = kl + kl_early[rows]
            images = policy.decode(x0_lv)
            if self.surrogate is None:  # each re-noised copy is an oracle query
                r_grad, r_true, info = differentiable_reward(oracle, None, images, rep_conds)
            else:  # pay for the chains' x_0; the copies are scored by the surrogate for free
                _, r_true, info = differentiable_reward(oracle, self.surrogate, policy.decode(x0), conds)
                r_grad = self.surrogate(images, rep_conds)
        self.reward_scale.update(r_true)
        # plain DRaFT (no KL term) keeps the paper's raw reward: a scale would only change the clipped step size
        scale = self.reward_scale.value if c.kl_coef > 0 else 1.0
        loss = (-r_grad / scale + c.kl_coef * kl).mean()
        info = {
            **info,
            "train/loss": loss.item(),
            "train/kl": kl.mean().item(),
            "train/reward_mean": r_true.mean().item(),
            "train/reward_std": r_true.std().item() if len(r_true) > 1 else 0.0,
        }
        return loss, info

    def _sample(self, conds: Tensor | None, batch: int, stop: int, kl_steps: int | None = None
                ) -> tuple[Tensor, Tensor]:
        """Run steps 0..stop-1 from fresh initial noise, the states detached; returns x after ``stop`` steps
        (``B x *S``, x_T itself when ``stop`` is 0) and the summed KL of steps 0..kl_steps-1 (``B``, detached;
        ``kl_steps`` defaults to ``stop``).

        With ``kl_coef`` > 0 each of those steps' KL_k (policy mean with gradient, at the detached state) is
        backpropagated at once with weight ``kl_coef / B`` (its share of the batch-mean loss), accumulating into
        the parameters' ``.grad``: the KL gradient of every step without holding T graphs.
        """
        policy, kl_coef = self.policy, self.config.kl_coef
        kl_steps = stop if kl_steps is None else kl_steps
        policy.eval()
        x = policy.initial_noise(batch, self.generator)
        kl_sum = x.new_zeros(batch)
        for k in range(stop):
            noise = self._noise(batch)
            if kl_coef > 0 and k < kl_steps:
                with torch.enable_grad():
                    mean, ref_mean = self._means(x, k, conds)
                    kl = gaussian_kl(mean, ref_mean, policy.step_std(k, batch))
                    (kl_coef * kl.mean()).backward()
                kl_sum += kl.detach()
                mean = mean.detach()
            else:
                with torch.no_grad():
                    mean, _ = policy.step_mean(x, k, conds)
            x = mean + policy.step_std(k, batch) * noise
        return x, kl_sum

    def _grad_steps(self, x: Tensor, conds: Tensor | None, steps) -> tuple[Tensor, Tensor]:
        """Take ``steps`` (consecutive step indices) from state ``x`` (``B x *S``) with gradients.

        Each step is the reparameterized transition mu_theta(x, k) + sigma_k * noise (what
        ``DiffusionPolicy.transition`` computes, written out to reuse the mean for the KL).

        Returns:
            The final state ``B x *S`` and the summed per-step KL to the reference along the way, ``B``.
        """
        kl = x.new_zeros(len(x))
        for k in steps:
            if self.config.gradient_checkpointing:
                mean, ref_mean = checkpoint(self._means, x, k, conds, use_reentrant=False)
            else:
                mean, ref_mean = self._means(x, k, conds)
            std = self.policy.step_std(k, len(x))
            kl = kl + gaussian_kl(mean, ref_mean, std)
            x = mean + std * self._noise(len(x))
        return x, kl

    def _means(self, x: Tensor, k: int, conds: Tensor | None) -> tuple[Tensor, Tensor]:
        """Transition means of the policy and the frozen reference at (x, k), both ``B x *S``."""
        mean, _ = self.policy.step_mean(x, k, conds)
        ref_mean, _ = self.reference.step_mean(x, k, conds)
        return mean, ref_mean

    def _renoise(self, x0: Tensor) -> Tensor:
        """q(x_{t_{T-1}} | x_0): sqrt(abar) x_0 + sqrt(1 - abar) eps with abar = alphas_cumprod at the last step's
        input timestep; ``x0`` and the result are ``N x *S``."""
        abar = self.policy.alpha[-1]
        return abar.sqrt() * x0 + (1 - abar).sqrt() * self._noise(len(x0))

    def _noise(self, batch: int) -> Tensor:
        """Standard normal ``batch x *S`` from the method's generator, on the policy's device."""
        shape = (batch, *self.policy.sample_shape)
        return torch.randn(shape, generator=self.generator).to(self.policy.stds.device)

    def _to_device(self, conds: Tensor | None) -> Tensor | None:
        return None if conds is None else conds.to(self.policy.stds.device)

    # ---- state -------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state = super()._state()
        if self.surrogate is not None:
            state["surrogate"] = self.surrogate.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.surrogate is not None:
            self.surrogate.load_state_dict(state["surrogate"])
