"""Continuous-time RL, "score as action" (Zhao et al., arXiv 2502.01819; theory in arXiv 2409.08400).

Reconstructed: no public code was found; this follows the rules of shared/design/methods.md ("Continuous-time
RL", tagged [recon]). The sampler (DDIM with eta = 1, i.e. DDPM ancestral steps) is read as a discretisation of
the reverse VP SDE

    dX = [ -f(T - tau, X) + g^2(T - tau) a ] dtau + g(T - tau) dB,    action a = the score s_theta(tau, X, c),

and fine-tuning maximises  E r(X_0) - (beta / 2) E int g^2 ||s_theta - s_ref||^2 dtau  (r minus the KL between
path measures). From the performance-difference formula, each update minimises over on-policy states

    sum_k dtau_k g^2(tau_k) [ -<s_theta, grad_x V> + (beta / 2) ||s_theta - s_ref||^2 + trust term ],

whose minimiser per state is s_theta = s_ref + grad_x V / beta: the optimal-control score.

VP-SDE quantities from our discrete schedule (alphas_cumprod abar_t on N = num_train_timesteps training steps;
the sampler visits t_0 > t_1 > ... > t_{T-1}, and its step k lands at abar_prev_k, the policy's ``alpha_prev``):
- continuous time tau = t / N; the final state sits at t_T = 0;
- score s(x_t) = -eps(x_t, t) / sqrt(1 - abar_t) (eps-prediction, with guidance when the policy uses it);
- abar(tau) = exp(-int_0^tau beta(u) du), so g^2(tau) = beta(tau) = -d log abar / d tau;
- dtau_k = (t_k - t_{k+1}) / N and g^2_k = log(abar_prev_k / abar_k) / dtau_k: the finite difference of
  -log abar between consecutive sampler grid points, i.e. the average of beta(tau) over step k. Hence
  dtau_k g^2_k = int over step k of beta dtau exactly, and the weights sum to log(abar_final / abar_{t_0}) for
  any number of steps: the loss estimates an integral, so its scale does not change with T (tested with 20,
  50 and 100 steps). N cancels in the product; it only sets the unit of the reported tau, dtau and g^2.

Translation to the suite's one KL definition (KL_k in nats, summed over the D data dims): for small steps a
DDIM/DDPM step's mean moves by g^2 dtau (s_theta - s_ref) with variance g^2 dtau, so KL_k ~ (dtau g^2 / 2)
||s_theta - s_ref||^2, and ``kl_coef`` is the paper's beta itself. The per-pair loss is therefore

    dtau_k g^2_k [ -<s_theta, grad_x V_phi / sigma_r>  +  (kl_coef / 2) ||s_theta - s_ref||^2
                   + (trust_coef / 2) ||s_theta - s_old||^2 ]

with <.,.> and ||.||^2 summed over dims and sigma_r the reward scale (``reward_norm``: the running std of the
paid-for rewards by default, 1 with ``none``); its fixed point is s_ref + grad_x V / (sigma_r beta) (with
``trust_coef = 0``), and the objective it ascends approximates E r / sigma_r - kl_coef * sum_k KL_k, as VARD's does
(up to the discretisation: see the caveat below). The trust region
is a penalty towards s_old, the score of the policy that sampled the batch (it matters from the second optimizer
step on a batch). How well the continuous-time penalty matches the suite's discrete KL_k depends on the sampler
grid: per unit of (eps_theta - eps_ref)^2 the discrete KL_k is 1.5 to 2.3 times dtau_k g^2_k (1/2)
||s_theta - s_ref||^2 on every step of the log-SNR grid of the ``-v1`` digits cards, but on the trailing grid of
the ``-v0`` cards 1.3 to 3.5 times on the inner steps, about 190 times on the last step (it lands at abar ~ 1 with
std 0.006) and far more on the first (abar_999 ~ 2e-9). On that grid the weights also put 74 % of the loss on the
first step, where grad V through the Tweedie estimate (divided by sqrt(abar)) explodes: its parameter gradient
took 82 % of the total and pointed against the rest. On the log-SNR grid no step has more than 15 % of the
weight. ``grad_share_every`` logs the per-step gradient shares (``step_gradients``) as a training diagnostic.

There is no ``discount``: the objective is the undiscounted terminal reward, and the weight of each time is
dtau g^2 by construction; a per-step gamma^(steps remaining) would tie the objective to T.

Value network (the structured choice of the paper): V_phi(tau, x, c) = r_hat(x0_hat(tau, x), c) + h_phi(x, t, c)
where x0_hat is the reference model's Tweedie estimate (x - sqrt(1 - abar) eps_ref) / sqrt(abar) (clipped as the
sampler clips), r_hat is a ``SurrogateReward`` fit to the paid-for (x_0, r) pairs, and the correction h_phi (a
``ValueNetwork``, zero at initialisation) is regressed on the Monte-Carlo residuals r - r_hat(x0_hat) over the
replayed states the policy loss is evaluated at (the trained steps of each chain, and its final sample). r_hat
is a learned surrogate even when the oracle is differentiable: evaluating the oracle at every state's x0_hat
would charge a query per state. Budget: one query per sampled chain.

No published hyperparameters for these backbones exist, so the field defaults are this suite's choices; the
presets live in ``baselines/ctrl/defaults.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import distributed
from ..budget import BudgetedOracle
from ..policies.base import DiffusionPolicy
from .base import ChainUpdateFields, Method, MethodConfig, OptimizerFields, RewardNormFields, check
from .surrogate import SurrogateFields, SurrogateReward
from .value import ValueFields, ValueFunction, num_conditions, state_timesteps


@dataclass(frozen=True)
class CTRLConfig(RewardNormFields, OptimizerFields, ChainUpdateFields, SurrogateFields, ValueFields, MethodConfig):
    """Continuous-time RL's settings. Its ``timestep_fraction`` (``ChainUpdateFields``) also chooses the states the
    value correction is fit on, so the reference's Tweedie estimates are computed only there."""

    batch_size: int = 64
    """Chains sampled (= oracle queries) per iteration; their states are the policy update's inputs."""
    kl_coef: float = 0.1
    """beta: the weight of the path KL in nats (each step's KL summed over the data dims), per unit of the
    standardized reward (``reward_norm``). No value for these backbones is published (reconstructed method)."""
    trust_coef: float = 1.0
    """Weight of the trust-region penalty dtau g^2 (1/2) ||s_theta - s_old||^2 (summed over dims, like the KL)."""
    surrogate_fit_steps: int = 100
    """Adam steps of the surrogate r_hat after each new batch (r_hat is always fit: see the module docstring)."""
    grad_share_every: int = 10
    """Every this many iterations (the first included), log how the loss's parameter gradient splits over the sampler
    steps (``train/grad_share_max``: the largest step's share of the summed per-step gradient norms,
    ``train/grad_share_step``: which step, ``train/grad_cos_min``: the lowest cosine of a step's gradient with the
    sum of the others). Costs T backward passes over ``grad_share_chains`` chains; 0 turns it off."""
    grad_share_chains: int = 16
    """Chains of the batch the per-step gradient diagnostic uses."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.kl_coef > 0, "kl_coef must be > 0")
        check(self.trust_coef >= 0, "trust_coef must be >= 0")
        check(self.grad_share_every >= 0, "grad_share_every must be >= 0")
        check(self.grad_share_chains >= 1, "grad_share_chains must be >= 1")


def step_gradient_shares(grads: Tensor) -> dict[str, float]:
    """Summary of per-step gradients ``T x P`` (``ContinuousTimeRL.step_gradients``): the largest step's share of the
    summed norms, its index, and the lowest cosine between a step's gradient and the sum of the other steps'."""
    norms = grads.norm(dim=1)
    total = grads.sum(0)
    cos = torch.nn.functional.cosine_similarity(grads, (total[None] - grads), dim=1)
    share = norms / norms.sum().clamp_min(1e-30)
    return {"train/grad_share_max": share.max().item(), "train/grad_share_step": float(share.argmax()),
            "train/grad_cos_min": cos.min().item()}


def vp_sde_grid(timesteps: Tensor, alpha: Tensor, alpha_prev: Tensor,
                num_train_timesteps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Continuous time, step lengths and g^2 = beta of the VP SDE on a sampler grid.

    Args:
        timesteps: ``T`` model timesteps t_k of the steps' input states (decreasing).
        alpha, alpha_prev: ``T`` alphas_cumprod at t_k and at the state step k lands on.
        num_train_timesteps: N.

    Returns:
        ``tau`` (``T``, t_k / N), ``dtau`` (``T``, (t_k - t_{k+1}) / N with t_T = 0) and ``g2`` (``T``,
        log(alpha_prev / alpha) / dtau: the mean of beta(tau) = -d log abar / d tau over step k).
    """
    t = timesteps.double()
    t_next = torch.cat([t[1:], t.new_zeros(1)])
    dtau = (t - t_next) / num_train_timesteps
    g2 = torch.log(alpha_prev.double() / alpha.double()) / dtau
    return (t / num_train_timesteps).float(), dtau.float(), g2.float()


def ctrl_loss(score: Tensor, ref_score: Tensor, old_score: Tensor | None, value_grad: Tensor, weight: Tensor,
              kl_coef: float, trust_coef: float) -> Tensor:
    """Per-state loss ``w [ -<s, grad V> + kl_coef/2 ||s - s_ref||^2 + trust_coef/2 ||s - s_old||^2 ]`` (sums over dims).

    Args:
        score: ``N x *S`` s_theta at the states (differentiable).
        ref_score: ``N x *S`` s_ref (no grad).
        old_score: ``N x *S`` score of the sampling policy, or None (no trust term).
        value_grad: ``N x *S`` grad_x V_phi at the states (no grad).
        weight: ``N`` dtau_k g^2_k of each state's step.

    Returns:
        ``N`` losses. Minimiser over s per state: (kl_coef s_ref + trust_coef s_old + grad V) / (kl_coef +
        trust_coef).
    """
    reward = -(score * value_grad).flatten(1).sum(1)
    kl = 0.5 * (score - ref_score).square().flatten(1).sum(1)
    total = reward + kl_coef * kl
    if old_score is not None:
        total = total + trust_coef * 0.5 * (score - old_score).square().flatten(1).sum(1)
    return weight * total


def tweedie_x0(policy: DiffusionPolicy, x: Tensor, k: Tensor, eps: Tensor) -> Tensor:
    """x0_hat = (x - sqrt(1 - abar_k) eps) / sqrt(abar_k), clipped like the sampler; ``x, eps``: ``N x *S``."""
    a = policy.alpha[k].reshape(-1, *([1] * (x.ndim - 1)))
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    return x0 if policy.clip_sample is None else x0.clamp(-policy.clip_sample, policy.clip_sample)


def score(policy: DiffusionPolicy, x: Tensor, k: Tensor, cond: Tensor | None, eps: Tensor | None = None) -> Tensor:
    """s(x, t_k) = -eps(x, t_k, c) / sqrt(1 - abar_k), ``N x *S`` (``eps`` may pass an already computed eps)."""
    if eps is None:
        eps = policy.eps(x, k, cond)
    a = policy.alpha[k].reshape(-1, *([1] * (x.ndim - 1)))
    return -eps / (1 - a).sqrt()


class ContinuousTimeRL(Method):
    """Continuous-time RL with the score as action (reconstructed, arXiv 2502.01819 / 2409.08400): a
    dtau g^2-weighted policy-improvement loss towards s_ref + grad V / beta, with a Tweedie-structured value."""

    name = "ctrl"
    display_name = "CTRL"
    colour = "#E69F00"
    marker = "*"
    tune_params = ("lr", "kl_coef", "trust_coef", "timestep_fraction")
    Config = CTRLConfig
    config: CTRLConfig

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        c = self.config
        device = policy.stds.device
        self.reference = policy.frozen_copy()
        self.old = policy.frozen_copy()  # the sampling policy of the current batch, for the trust region
        self.make_optimizer(c.lr, c.weight_decay)
        self.state_t = state_timesteps(policy)
        # N: trailing spacing starts at t_0 = N - 1; only dtau * g2 enters the loss and it does not depend on N
        _, dtau, g2 = vp_sde_grid(policy.timesteps, policy.alpha, policy.alpha_prev, policy.num_train_timesteps)
        self.weights = dtau * g2
        n_cond = num_conditions(task.train_conditions)
        self.value = ValueFunction(policy.sample_shape, n_cond, self.state_t, width=c.value_width, lr=c.value_lr,
                                   capacity=c.replay_size, generator=generator, device=device)
        self.surrogate = SurrogateReward(policy.space, n_cond, c, generator, device)
        self.x0_hats: Tensor | None = None  # N x (T+1) x *S, aligned with the value replay
        self.iterations = 0

    # ---- the value V_phi(tau, x, c) = r_hat(x0_hat) + h_phi --------------------------------------------------
    @torch.no_grad()
    def _tweedie_states(self, latents: Tensor, conditions: Tensor | None, steps: Tensor) -> Tensor:
        """Reference Tweedie estimates at the trained states, ``B x (T+1) x *S``.

        Args:
            latents: ``B x (T+1) x *S`` chains.
            steps: ``B x n`` the step indices trained on per chain; only their states (and the final x_0, its own
                estimate) get an estimate, the other entries keep the state itself and are not fit on.
        """
        out = latents.clone()
        rows = torch.arange(len(latents), device=latents.device).repeat_interleave(steps.shape[1])
        ks = steps.flatten().to(latents.device)
        cond = None if conditions is None else conditions[rows]
        x = latents[rows, ks]
        out[rows, ks] = tweedie_x0(self.reference, x, ks, self.reference.eps(x, ks, cond))
        return out

    def _offset(self, rows: Tensor, cols: Tensor) -> Tensor:
        """r_hat(x0_hat) of replayed states ``(rows, cols)``: the baseline h_phi is fit around, ``B``."""
        with torch.no_grad():
            cond = None if self.value.conditions is None else self.value.conditions[rows]
            return self.surrogate(self.policy.decode(self.x0_hats[rows, cols]), cond)

    def value_and_grad(self, x: Tensor, k: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """V_phi(tau_k, x, c), grad_x V_phi and the reference score at states ``x`` (``N x *S``) of steps ``k``.

        Returns ``N``, ``N x *S``, ``N x *S``, all detached. The gradient runs through the reference denoiser's
        Tweedie estimate, the surrogate and h_phi; none of their weights is updated.
        """
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            eps_ref = self.reference.eps(xg, k, cond)
            x0_hat = tweedie_x0(self.reference, xg, k, eps_ref)
            v = self.surrogate(self.policy.decode(x0_hat), cond) + self.value.scaled(xg, self.state_t[k], cond)
            (grad,) = torch.autograd.grad(v.sum(), xg)
        return v.detach(), grad, score(self.reference, x, k, cond, eps=eps_ref.detach())

    # ---- one iteration ----------------------------------------------------------------------------------------
    def step(self, oracle: BudgetedOracle) -> dict[str, float]:
        c, policy = self.config, self.policy
        policy.eval()
        batch = self.query_batch(oracle)
        traj, images, rewards = batch.trajectory, batch.samples, batch.rewards.detach()
        n = len(rewards)
        self.reward_scale.update(rewards)

        T = traj.num_steps
        n_train = max(1, int(round(T * c.timestep_fraction)))
        # the steps trained on per chain, drawn once: the value correction is fit on the same states
        steps_k = torch.stack([torch.randperm(T, generator=self.generator)[:n_train] for _ in range(n)])
        valid = torch.zeros(n, T + 1, dtype=torch.bool)
        valid[torch.arange(n).repeat_interleave(n_train), steps_k.flatten()] = True
        valid[:, T] = True

        self.surrogate.add(images, traj.conditions, rewards)
        surrogate_loss = self.surrogate.fit()
        self.value.add(traj.latents, traj.conditions, rewards, valid=valid.to(traj.latents.device))
        new = self._tweedie_states(traj.latents, traj.conditions, steps_k)
        self.x0_hats = new if self.x0_hats is None else torch.cat([self.x0_hats, new])[-c.replay_size :]
        steps = c.value_warmup_steps if self.iterations == 0 else c.value_steps
        value_loss = self.value.fit(steps, c.value_batch, offset=self._offset)
        self.iterations += 1
        # unwrap: under `accelerate launch` the denoiser is DDP-wrapped and its state_dict keys carry "module."
        self.old.denoiser.load_state_dict(distributed.unwrap(policy.denoiser).state_dict())
        diagnostics = {}
        if c.grad_share_every and (self.iterations - 1) % c.grad_share_every == 0:
            chains = min(n, c.grad_share_chains)
            cond = None if traj.conditions is None else traj.conditions[:chains]
            diagnostics = step_gradient_shares(self.step_gradients(traj.latents[:chains], cond))

        totals = {"loss": 0.0, "reward_term": 0.0, "kl_path": 0.0, "value": 0.0, "grad_norm": 0.0}
        updates = 0
        policy.train()
        for _ in range(c.num_inner_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, c.train_batch_size):
                idx = order[start : start + c.train_batch_size]
                rows, ks = idx.repeat_interleave(n_train), steps_k[idx].flatten()
                stats = self._update(traj, rows, ks, len(idx), T / n_train)
                for key, value in stats.items():
                    totals[key] += value
                updates += 1
        policy.eval()
        out = {f"train/{k}": v / updates for k, v in totals.items()}
        out["train/value_loss"] = value_loss
        out["train/surrogate_loss"] = surrogate_loss
        out["train/reward_mean"] = rewards.mean().item()
        out["train/reward_std"] = rewards.std().item() if n > 1 else 0.0
        return {**out, **diagnostics}

    def pair_losses(self, latents: Tensor, conditions: Tensor | None, rows: Tensor, ks: Tensor) -> dict[str, Tensor]:
        """The loss terms at the (chain ``rows``, step ``ks``) states of ``latents`` (``B x (T+1) x *S``).

        Returns ``N`` tensors: ``loss`` (differentiable in the policy), and detached ``reward_term``
        (dtau g^2 <s_theta, grad V>), ``kl_path`` (dtau g^2 (1/2) ||s_theta - s_ref||^2, the continuous-time
        estimate of the step's KL in nats) and ``value``.
        """
        c = self.config
        x = latents[rows, ks]
        cond = None if conditions is None else conditions[rows]
        value, value_grad, ref_score = self.value_and_grad(x, ks, cond)
        old_score = None
        if c.trust_coef > 0:
            with torch.no_grad():
                old_score = score(self.old, x, ks, cond)
        s = score(self.policy, x, ks, cond)
        w = self.weights[ks]
        value_grad = value_grad / self.reward_scale.value
        loss = ctrl_loss(s, ref_score, old_score, value_grad, w, c.kl_coef, c.trust_coef)
        with torch.no_grad():
            reward_term = w * (s * value_grad).flatten(1).sum(1)
            kl_path = w * 0.5 * (s - ref_score).square().flatten(1).sum(1)
        return {"loss": loss, "reward_term": reward_term, "kl_path": kl_path, "value": value}

    def step_gradients(self, latents: Tensor, conditions: Tensor | None) -> Tensor:
        """The policy-parameter gradient of each step's part of the loss, flattened: ``T x P``.

        Row k is d/d theta of (1/B) sum_b loss(b, k) over the ``B`` chains of ``latents`` (``B x (T+1) x *S``).
        Leaves the parameters' ``.grad`` cleared. A diagnostic (T backward passes): see ``grad_share_every``.
        """
        n, T = len(latents), latents.shape[1] - 1
        rows = torch.arange(n, device=latents.device)
        out = []
        for k in range(T):
            self.optimizer.zero_grad(set_to_none=True)
            ks = torch.full((n,), k, dtype=torch.int64, device=latents.device)
            (self.pair_losses(latents, conditions, rows, ks)["loss"].sum() / n).backward()
            out.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                                  for p in self.params]))
        self.optimizer.zero_grad(set_to_none=True)
        return torch.stack(out)

    def _update(self, traj, rows: Tensor, ks: Tensor, num_chains: int, step_scale: float) -> dict[str, float]:
        """One optimizer step on the (chain ``rows``, step ``ks``) pairs; the loss is the mean over the
        ``num_chains`` chains of the per-chain sum over steps, estimated as ``step_scale`` x (trained steps)."""
        c = self.config
        device = traj.latents.device
        rows, ks = rows.to(device), ks.to(device)
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "reward_term": 0.0, "kl_path": 0.0, "value": 0.0}
        for start in range(0, len(rows), c.train_chunk):
            r, k = rows[start : start + c.train_chunk], ks[start : start + c.train_chunk]
            terms = self.pair_losses(traj.latents, traj.conditions, r, k)
            loss = terms["loss"].sum() * step_scale / num_chains
            loss.backward()
            sums["loss"] += loss.item()
            sums["reward_term"] += terms["reward_term"].sum().item() * step_scale / num_chains
            sums["kl_path"] += terms["kl_path"].sum().item() * step_scale / num_chains
            sums["value"] += terms["value"].sum().item() / len(rows)
        grad_norm = self.clip_and_step(c.max_grad_norm)
        return {**sums, "grad_norm": float(grad_norm)}

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "value": self.value.state_dict(), "surrogate": self.surrogate.state_dict(),
                "x0_hats": self.x0_hats, "iterations": self.iterations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.value.load_state_dict(state["value"])
        self.surrogate.load_state_dict(state["surrogate"])
        self.x0_hats, self.iterations = state["x0_hats"], state["iterations"]
