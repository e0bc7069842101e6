"""The sampler as a policy: ``DiffusionPolicy`` and the ``Trajectory`` it rolls out.

The denoising chain is an MDP over steps k = 0..T-1 (timesteps t_k decreasing). Each step is a Gaussian
transition from a DDIM step with eta > 0:

    p_theta(x_{k+1} | x_k, c) = N(mu_theta(x_k, t_k, c), sigma_k^2 I)

Per-step log-probabilities and the KL to a frozen reference are not part of diffusers; every repository of the
field writes this step. Ours follows the DDIM update (Song et al. 2021, eq. 12) with the noise schedule and
timestep spacing taken from a diffusers ``DDIMScheduler``; the idea of returning the Gaussian's log-prob from
the step comes from kvablack/ddpo-pytorch (``ddpo_pytorch/diffusers_patch/ddim_with_logprob.py``). Changes
against that file: we return the mean and std as well, support a per-sample step index (to train on many
(sample, step) pairs in one forward), and compute the KL in closed form.

One KL definition for every method and for every report: the KL between the two Gaussian transitions,
    KL_k = sum over the D data dims of (mu_theta - mu_ref)^2 / (2 sigma_k^2)    (nats),
summed over the T steps to get the path KL, KL(P_theta || P_ref) of the whole sampling chain: an upper bound on
the KL of the final samples (data-processing inequality) that a report can check against any bounded judge.
Until the leaderboard's v2 protocol the suite averaged over the data dims instead (D = 64 on the 8 x 8 digits,
V x L on the sequence backbones); that figure, path KL / D, is still logged as ``eval/kl_per_dim``. Every
method's ``kl_coef`` multiplies KL_k in these units (nats), see each method's config.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..distributed import unwrap
from ..spaces import ImageSpace, SampleSpace


@dataclass
class Trajectory:
    """A batch of B sampled chains of T steps. Shapes use ``*S`` for the sample shape (e.g. 1 x 8 x 8).

    Attributes:
        latents: ``B x (T+1) x *S``; ``latents[:, 0]`` is x_T (pure noise), ``latents[:, -1]`` is x_0.
        means: ``B x T x *S``; mean of the transition taken at step k (from ``latents[:, k]``).
        stds: ``T``; the transition's standard deviation at each step (shared by the batch).
        log_probs: ``B x T``; log p(latents[:, k+1] | latents[:, k]) summed over data dims.
        timesteps: ``T`` (int64); the model timestep t_k of each step's input state.
        conditions: ``B`` (int64) condition ids, or None when unconditional.
    """

    latents: Tensor
    means: Tensor
    stds: Tensor
    log_probs: Tensor
    timesteps: Tensor
    conditions: Tensor | None

    @property
    def x0(self) -> Tensor:
        """Final samples, ``B x *S``."""
        return self.latents[:, -1]

    @property
    def batch_size(self) -> int:
        return self.latents.shape[0]

    @property
    def num_steps(self) -> int:
        return self.latents.shape[1] - 1

    def select(self, index: Tensor) -> Trajectory:
        """The sub-batch of chains ``index`` (a 1-D long tensor)."""
        return Trajectory(
            latents=self.latents[index],
            means=self.means[index],
            stds=self.stds,
            log_probs=self.log_probs[index],
            timesteps=self.timesteps,
            conditions=None if self.conditions is None else self.conditions[index],
        )


def gaussian_kl(mean: Tensor, ref_mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, std^2 I) || N(ref_mean, std^2 I)) in nats, summed over the data dims.

    Args:
        mean, ref_mean: ``B x *S``.
        std: broadcastable to ``B x *S`` (a scalar or ``B x 1 x ... x 1``).

    Returns:
        ``B``: sum over dims of (mean - ref_mean)^2 / (2 std^2).
    """
    per_dim = (mean - ref_mean).square() / (2 * std.square())
    return per_dim.flatten(1).sum(1)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, std^2 I) summed over data dims; ``x, mean`` are ``B x *S``; returns ``B``.

    Equal to ``torch.distributions.Normal(mean, std).log_prob(x).flatten(1).sum(1)``, written out so that the
    std can be a broadcast scalar without materialising a full tensor.
    """
    std = std.expand_as(mean) if std.ndim else std.expand(mean.shape)
    lp = -((x - mean).square()) / (2 * std.square()) - std.log() - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


def logsnr_timesteps(alphas_cumprod: Tensor, num_steps: int, max_timestep: int, final_alpha_cumprod: float) -> Tensor:
    """``T`` decreasing integer timesteps whose noise levels are (as nearly as integers allow) uniform in log SNR
    between ``max_timestep`` and the level the last step lands on (``final_alpha_cumprod``).

    Why: with eta = 1 a DDIM step from alpha-bar a to a' has KL per unit of squared eps change (per dim, x0
    unclipped) of exactly (SNR' / SNR - 1) / 2, SNR = a / (1 - a) (``DiffusionPolicy.kl_sensitivity``), so a grid
    uniform in log SNR gives every step the same sensitivity. Uniform spacing in t does not: on a cosine schedule
    its step into the clean end jumps SNR by 59x (leading, t = 51 -> 1) to 190x (trailing, t = 49 -> alpha-bar[0]),
    and that step then holds 86-93 % of the path's sensitivity (and of every KL-regularised gradient). The grid is
    DPM-Solver's "logSNR" time steps (Lu et al. 2022, arXiv 2206.00927), chosen here for the KL argument above.

    Args:
        alphas_cumprod: ``N`` alpha-bar of the training timesteps (float64).
        num_steps: T.
        max_timestep: the first step's timestep (its input is taken as pure noise).
        final_alpha_cumprod: alpha-bar of the state the last step lands on (alphas_cumprod[0] for our samplers).

    Returns:
        ``T`` int64 timesteps, strictly decreasing, all >= 1.
    """
    n = len(alphas_cumprod)
    if not 1 <= num_steps <= max_timestep <= n - 1:
        raise ValueError(f"logsnr spacing needs 1 <= num_steps <= max_timestep <= {n - 1}, got {num_steps} steps "
                         f"from t = {max_timestep}")
    acp = alphas_cumprod.double()
    lam = torch.log(acp / (1 - acp))  # decreasing in t
    final = torch.tensor(final_alpha_cumprod, dtype=torch.float64)
    targets = torch.linspace(float(lam[max_timestep]), float(torch.log(final / (1 - final))), num_steps + 1)[:-1]
    t = (lam[1 : max_timestep + 1, None] - targets[None]).abs().argmin(0) + 1  # nearest level among t = 1..max
    t[0] = max_timestep
    for j in range(1, num_steps):  # strictly decreasing: push collisions down from the noisy end ...
        t[j] = min(int(t[j]), int(t[j - 1]) - 1)
    for j in range(num_steps - 1, -1, -1):  # ... and back up from the clean end, so that every t >= 1
        t[j] = max(int(t[j]), 1 if j == num_steps - 1 else int(t[j + 1]) + 1)
    if int(t[0]) > max_timestep:
        raise ValueError(f"{num_steps} distinct timesteps do not fit below t = {max_timestep}")
    return t.to(torch.int64)


class DiffusionPolicy(nn.Module):
    """A denoiser plus a DDIM sampler, seen as a stochastic policy over denoising steps.

    Args:
        denoiser: module with ``forward(x: B x *S, t: B int64, cond: B int64 | None) -> eps: B x *S``.
        scheduler_config: a diffusers scheduler config (dict) for the training noise schedule; a
            ``DDIMScheduler`` is built from it with ``set_alpha_to_one=False`` so the last step keeps a small
            positive std and a finite log-prob (as in ddpo-pytorch with SD).
        sample_shape: ``S``, the shape of one sample in the space the sampler runs in.
        decoder: maps final samples ``B x *S`` to what rewards score (images ``B x C x H x W`` in [0, 1]).
        num_steps: T, the number of sampler steps.
        eta: DDIM eta (> 0 for a stochastic policy; 1 = DDPM-like variance).
        guidance_scale: classifier-free guidance weight; 1 means plain conditional sampling.
        null_condition: the condition id of the unconditional branch (needed when guidance_scale != 1).
        timestep_spacing: overrides the scheduler's spacing. diffusers' ``"leading"``, ``"trailing"`` and
            ``"linspace"`` place the steps uniformly in t (``"leading"`` needs ``steps_offset=1`` so that no step
            starts at t = 0, as SD has); ``"logsnr"`` (``logsnr_timesteps``) places them uniformly in log SNR,
            which gives every step the same KL sensitivity (see ``kl_sensitivity``).
        steps_offset: overrides the scheduler's ``steps_offset`` (diffusers spacings only).
        max_timestep: the first step's timestep for ``"logsnr"`` spacing (default: the last training timestep).
        space: what the decoded samples are (``benchsuite.spaces``): their metrics, grids, ask-file records,
            surrogate family and decoding. Default: an ``ImageSpace`` with ``sample_shape[0]`` channels, right for a
            decoder that maps pixels to pixels; a backbone whose decoder makes anything else passes its own.

    Attributes worth knowing: ``timesteps`` (``T``, the model timestep of each step's input), ``alpha`` and
    ``alpha_prev`` (``T``, alphas_cumprod of each step's input and of the state it lands on), ``stds`` (``T``) and
    ``kl_sensitivity`` (``T``).
    """

    def __init__(
        self,
        denoiser: nn.Module,
        scheduler_config: dict,
        sample_shape: tuple[int, ...],
        decoder: Callable[[Tensor], Tensor],
        num_steps: int = 20,
        eta: float = 1.0,
        guidance_scale: float = 1.0,
        null_condition: int | None = None,
        timestep_spacing: str | None = None,
        steps_offset: int | None = None,
        max_timestep: int | None = None,
        space: SampleSpace | None = None,
    ):
        super().__init__()
        from diffusers import DDIMScheduler

        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not eta > 0:
            raise ValueError(f"eta must be > 0 for a stochastic policy, got {eta}")
        if guidance_scale != 1.0 and null_condition is None:
            raise ValueError("guidance_scale != 1 needs a null_condition")
        self.denoiser = denoiser
        self.sample_shape = tuple(sample_shape)
        self.decoder = decoder
        self.num_steps = num_steps
        self.eta = float(eta)
        self.guidance_scale = float(guidance_scale)
        self.null_condition = null_condition
        if space is None:
            try:
                space = ImageSpace(sample_shape[0])
            except ValueError as exc:
                raise ValueError(f"{exc}: pass space= (a benchsuite.spaces.SampleSpace) for these samples") from None
        self.space = space
        """The decoded samples' space (``benchsuite.spaces``)."""

        overrides: dict = {"set_alpha_to_one": False}
        logsnr = timestep_spacing == "logsnr"
        if timestep_spacing is not None and not logsnr:
            overrides["timestep_spacing"] = timestep_spacing
        if steps_offset is not None:
            overrides["steps_offset"] = steps_offset
        sched = DDIMScheduler.from_config({**scheduler_config, **overrides})
        self.clip_sample = float(sched.config.clip_sample_range) if sched.config.clip_sample else None
        self.num_train_timesteps = int(sched.config.num_train_timesteps)
        acp = sched.alphas_cumprod.to(torch.float64)
        final = sched.final_alpha_cumprod.to(torch.float64)
        if logsnr:
            if steps_offset is not None:
                raise ValueError("steps_offset applies to diffusers' spacings, not to 'logsnr'")
            first = self.num_train_timesteps - 1 if max_timestep is None else int(max_timestep)
            timesteps = logsnr_timesteps(acp, num_steps, first, float(final))
            # each step lands exactly on the next step's input (the last one on alphas_cumprod[0])
            alpha_prev = torch.cat([acp[timesteps[1:]], final.reshape(1)])
        else:
            if max_timestep is not None:
                raise ValueError("max_timestep applies to timestep_spacing='logsnr' only")
            sched.set_timesteps(num_steps)
            timesteps = sched.timesteps.to(torch.int64)
            # as diffusers' DDIMScheduler.step (and ddpo-pytorch): the previous timestep is t - N // T
            prev = timesteps - self.num_train_timesteps // num_steps
            alpha_prev = torch.where(prev >= 0, acp[prev.clamp(min=0)], final)
        alpha = acp[timesteps]
        var = (1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)
        std = self.eta * var.sqrt()
        if not bool((std > 0).all()):
            raise ValueError(
                "a sampler step has zero variance (the last step starts at t=0): use timestep_spacing='trailing' "
                "or 'logsnr', or steps_offset=1"
            )
        if not bool((1 - alpha_prev - std.square() >= 0).all()):
            raise ValueError(f"eta={eta} is too large for this schedule (negative DDIM direction variance)")
        # d mean / d eps of the DDIM step (x0 unclipped), then KL_k per unit of squared eps change
        slope = (1 - alpha_prev - std.square()).sqrt() - (alpha_prev * (1 - alpha) / alpha).sqrt()
        self.register_buffer("kl_sensitivity", (slope.square() / (2 * std.square())).float(), persistent=False)
        self.x0_predictor: nn.Module | None = None
        """A frozen few-step predictor of the clean sample distilled from this backbone (a consistency model:
        ``(x, t, cond) -> x0``), or None; SQDF scores its soft-Q estimate with it (``consistency_x0``)."""
        self._nfe = [0]  # denoiser evaluations per sample (x2 with guidance), shared with frozen copies
        self.register_buffer("timesteps", timesteps, persistent=False)
        self.register_buffer("alpha", alpha.float(), persistent=False)
        self.register_buffer("alpha_prev", alpha_prev.float(), persistent=False)
        self.register_buffer("stds", std.float(), persistent=False)

    @property
    def nfe(self) -> int:
        """Denoiser evaluations (per sample) by this policy and every frozen copy made of it: the sampler cost."""
        return self._nfe[0]

    @nfe.setter
    def nfe(self, value: int) -> None:
        self._nfe[0] = value

    # ---- one step ---------------------------------------------------------------------------------------
    def _per_sample(self, values: Tensor, k: int | Tensor, batch: int) -> Tensor:
        """Gather a per-step buffer at step index k (int, or ``B`` int64) as a ``B x 1 x ... x 1`` tensor."""
        v = values[k] if isinstance(k, int) else values.index_select(0, k)
        return v.reshape(-1, *([1] * len(self.sample_shape))).expand(batch, *([1] * len(self.sample_shape)))

    def eps(self, x: Tensor, k: int | Tensor, cond: Tensor | None) -> Tensor:
        """Predicted noise at step index k (int or ``B`` int64), with classifier-free guidance if enabled."""
        t = self.timesteps[k].expand(len(x)) if isinstance(k, int) else self.timesteps.index_select(0, k)
        if self.guidance_scale == 1.0 or cond is None:
            self._nfe[0] += len(x)
            return self.denoiser(x, t, cond)
        self._nfe[0] += 2 * len(x)
        null = torch.full_like(cond, self.null_condition)
        eps_c, eps_u = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
        return eps_u + self.guidance_scale * (eps_c - eps_u)

    def step_mean(self, x: Tensor, k: int | Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """Mean of p(x_{k+1} | x_k = x) and the predicted clean sample; both ``B x *S``, differentiable."""
        eps = self.eps(x, k, cond)
        a = self._per_sample(self.alpha, k, len(x))
        a_prev = self._per_sample(self.alpha_prev, k, len(x))
        std = self._per_sample(self.stds, k, len(x))
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        mean = a_prev.sqrt() * x0 + (1 - a_prev - std.square()).clamp(min=0).sqrt() * eps
        return mean, x0

    def step_std(self, k: int | Tensor, batch: int) -> Tensor:
        """Transition std at step index k as ``B x 1 x ... x 1``."""
        return self._per_sample(self.stds, k, batch)

    def resolve_x0_predictor(self) -> nn.Module | None:
        """``x0_predictor``, loading it first where a backbone resolves it lazily (SD's LCM-LoRA); None without."""
        return self.x0_predictor

    def consistency_x0(self, x: Tensor, state: Tensor, cond: Tensor | None) -> Tensor:
        """The ``x0_predictor``'s clean sample from chain states ``x`` (``B x *S``) with state indices ``state``
        (``B`` int64 in 1..T: state j is the input of step j, at timestep ``timesteps[j]``; state T is the final
        sample and is returned as it is). Differentiable in ``x``; the predictor's weights are frozen."""
        if self.x0_predictor is None:
            raise ValueError("this backbone has no x0_predictor (consistency model)")
        last = state >= self.num_steps
        t = self.timesteps.index_select(0, state.clamp(max=self.num_steps - 1))
        x0 = self.x0_predictor(x, t, cond)
        return torch.where(last.view(-1, *([1] * (x.ndim - 1))), x, x0)

    def transition(self, x: Tensor, k: int | Tensor, cond: Tensor | None, noise: Tensor) -> Tensor:
        """Reparameterized step x_{k+1} = mu_theta(x, t_k, c) + sigma_k * noise; differentiable in theta."""
        mean, _ = self.step_mean(x, k, cond)
        return mean + self.step_std(k, len(x)) * noise

    def log_prob(self, x: Tensor, x_next: Tensor, k: int | Tensor, cond: Tensor | None) -> Tensor:
        """log p_theta(x_next | x) at step index k, summed over dims; returns ``B``."""
        mean, _ = self.step_mean(x, k, cond)
        return gaussian_log_prob(x_next, mean, self.step_std(k, len(x)))

    def kl_to(self, reference: DiffusionPolicy, x: Tensor, k: int | Tensor, cond: Tensor | None,
              mean: Tensor | None = None) -> Tensor:
        """Per-step KL(p_theta(.|x) || p_ref(.|x)) in nats (summed over dims); returns ``B``.

        ``mean`` may pass this policy's already computed mean at (x, k) to save a forward.
        """
        if mean is None:
            mean, _ = self.step_mean(x, k, cond)
        with torch.no_grad():
            ref_mean, _ = reference.step_mean(x, k, cond)
        return gaussian_kl(mean, ref_mean, self.step_std(k, len(x)))

    # ---- whole chains ----------------------------------------------------------------------------------
    def initial_noise(self, batch: int, generator: torch.Generator | None) -> Tensor:
        """x_T ~ N(0, I), ``B x *S``, drawn from ``generator`` (on CPU, so results do not depend on device)."""
        device = self.stds.device
        return torch.randn((batch, *self.sample_shape), generator=generator).to(device)

    @torch.no_grad()
    def rollout(self, conditions: Tensor | None, generator: torch.Generator | None, batch: int | None = None,
                reference: DiffusionPolicy | None = None, rows: slice | None = None
                ) -> tuple[Trajectory, Tensor | None]:
        """Sample B chains without gradients.

        Args:
            conditions: ``B`` int64 condition ids, or None (then ``batch`` gives B).
            generator: source of all noise (initial and per step).
            reference: if given, also return the per-step KL to it along the sampled chains.
            rows: run only these chains of the B (a data-parallel process's share); the noise of all B is drawn,
                so ``generator`` ends where it would after all B and the chains equal those of the full batch.

        Returns:
            The trajectory, and a ``B x T`` tensor of KL_k to ``reference`` (None without a reference); with
            ``rows``, of those chains only.
        """
        b_all = len(conditions) if conditions is not None else batch
        if b_all is None:
            raise ValueError("pass conditions or batch")
        keep = slice(None) if rows is None else rows
        device = self.stds.device
        cond = None if conditions is None else conditions[keep].to(device)
        x = self.initial_noise(b_all, generator)[keep]
        b = len(x)
        T = self.num_steps
        latents = torch.empty((b, T + 1, *self.sample_shape), device=device)
        means = torch.empty((b, T, *self.sample_shape), device=device)
        log_probs = torch.empty((b, T), device=device)
        kls = torch.empty((b, T), device=device) if reference is not None else None
        latents[:, 0] = x
        for k in range(T):
            mean, _ = self.step_mean(x, k, cond)
            std = self.step_std(k, b)
            noise = torch.randn((b_all, *self.sample_shape), generator=generator)[keep].to(device)
            x_next = mean + std * noise
            log_probs[:, k] = gaussian_log_prob(x_next, mean, std)
            if kls is not None:
                ref_mean, _ = reference.step_mean(x, k, cond)
                kls[:, k] = gaussian_kl(mean, ref_mean, std)
            means[:, k] = mean
            latents[:, k + 1] = x_next
            x = x_next
        traj = Trajectory(latents, means, self.stds.clone(), log_probs, self.timesteps.clone(),
                          None if cond is None else cond.clone())
        return traj, kls

    def decode(self, x0: Tensor) -> Tensor:
        """Final samples -> reward inputs, samples of ``space`` (images ``B x C x H x W`` in [0, 1])."""
        return self.decoder(x0)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The weights a method trains, all a checkpoint needs to restore the policy: by default the denoiser's
        whole state dict (a policy with adapters returns only those; the SD backbone its LoRA weights). Keys never
        carry a distributed wrapper's prefix."""
        return unwrap(self.denoiser).state_dict()

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load what ``trainable_state_dict`` returned (in place: optimizers keep their parameters)."""
        unwrap(self.denoiser).load_state_dict(state)

    def frozen_copy(self) -> DiffusionPolicy:
        """A deep copy with gradients off, in eval mode: the reference policy for KL terms. It shares this
        policy's ``nfe`` counter."""
        ref = copy.deepcopy(self)
        ref._nfe = self._nfe  # one counter: evaluations of the reference are part of the run's sampler cost
        ref.requires_grad_(False)
        return ref.eval()
