"""The sampler-as-policy math against hand computations and torch.distributions."""

import math

import pytest
import torch
from diffusers import DDIMScheduler

from benchsuite.policies.base import gaussian_kl, gaussian_log_prob
from benchsuite.testing import TINY_SCHEDULER_CONFIG, tiny_policy


def test_gaussian_log_prob_matches_torch_normal():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(4, 1, 2, 3, generator=g)
    x = torch.randn(4, 1, 2, 3, generator=g)
    std = torch.tensor(0.37)
    expected = torch.distributions.Normal(mean, std).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, std), expected)
    per_sample_std = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(4, 1, 1, 1)
    expected = torch.distributions.Normal(mean, per_sample_std).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, per_sample_std), expected)


def test_gaussian_kl_hand_computation():
    mean = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    ref = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    std = torch.tensor(0.5)
    # nats, summed over the 2 dims: sample 0: (1 + 4) / (2 * 0.25) = 10; sample 1: 9 / 0.5 = 18
    torch.testing.assert_close(gaussian_kl(mean, ref, std), torch.tensor([10.0, 18.0]))
    # and it is the KL of the two Gaussians as torch.distributions computes it
    p = torch.distributions.Normal(mean, std)
    q = torch.distributions.Normal(ref, std)
    torch.testing.assert_close(gaussian_kl(mean, ref, std), torch.distributions.kl_divergence(p, q).sum(1))


def test_rollout_log_probs_match_torch_normal_and_recompute(generator):
    policy = tiny_policy(num_steps=6)
    conds = torch.tensor([0, 1, 2, 1])
    traj, _ = policy.rollout(conds, generator)
    assert traj.latents.shape == (4, 7, 1, 2, 2) and traj.log_probs.shape == (4, 6)
    for k in range(6):
        x, x_next = traj.latents[:, k], traj.latents[:, k + 1]
        dist = torch.distributions.Normal(traj.means[:, k], traj.stds[k])
        torch.testing.assert_close(traj.log_probs[:, k], dist.log_prob(x_next).flatten(1).sum(1))
        torch.testing.assert_close(policy.log_prob(x, x_next, k, conds), traj.log_probs[:, k])
    # a per-sample step index gives the same numbers as the scalar one
    ks = torch.tensor([0, 3, 5, 2])
    rows = torch.arange(4)
    flat = policy.log_prob(traj.latents[rows, ks], traj.latents[rows, ks + 1], ks, conds)
    torch.testing.assert_close(flat, traj.log_probs[rows, ks])


def test_ddim_step_matches_diffusers_with_same_noise(generator):
    """Our mean + std * noise equals diffusers' DDIMScheduler.step with eta and the same variance noise."""
    policy = tiny_policy(num_steps=5, eta=1.0)
    sched = DDIMScheduler.from_config({**TINY_SCHEDULER_CONFIG, "set_alpha_to_one": False})
    sched.set_timesteps(5)
    torch.testing.assert_close(policy.timesteps, sched.timesteps.long())
    x = torch.randn(3, 1, 2, 2, generator=generator)
    conds = torch.tensor([0, 1, 2])
    for k, t in enumerate(sched.timesteps):
        noise = torch.randn(3, 1, 2, 2, generator=generator)
        eps = policy.eps(x, k, conds)
        ours = policy.transition(x, k, conds, noise)
        theirs = sched.step(eps, t, x, eta=1.0, variance_noise=noise).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        x = theirs


def test_last_step_std_is_small_but_positive():
    policy = tiny_policy(num_steps=10)
    assert (policy.stds > 0).all()
    assert policy.stds[-1] < policy.stds[0]


def test_kl_zero_to_itself_and_positive_after_change(generator):
    policy = tiny_policy()
    ref = policy.frozen_copy()
    assert not any(p.requires_grad for p in ref.parameters())
    conds = torch.tensor([0, 1])
    traj, kls = policy.rollout(conds, generator, reference=ref)
    assert torch.equal(kls, torch.zeros_like(kls))
    with torch.no_grad():
        for p in policy.denoiser.parameters():
            p.add_(0.05)
    x = traj.latents[:, 2]
    kl = policy.kl_to(ref, x, 2, conds)
    mean, _ = policy.step_mean(x, 2, conds)
    ref_mean, _ = ref.step_mean(x, 2, conds)
    hand = ((mean - ref_mean) ** 2).flatten(1).sum(1) / (2 * policy.stds[2] ** 2)  # nats: summed over dims
    torch.testing.assert_close(kl, hand)
    assert (kl > 0).all()


def test_transition_is_differentiable_and_reparameterized(generator):
    policy = tiny_policy()
    x = torch.randn(2, 1, 2, 2, generator=generator)
    noise = torch.randn(2, 1, 2, 2, generator=generator)
    out = policy.transition(x, 1, torch.tensor([0, 1]), noise)
    out.sum().backward()
    grads = [p.grad for p in policy.denoiser.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_guidance_combines_conditional_and_unconditional(generator):
    policy = tiny_policy(guidance_scale=3.0)
    x = torch.randn(2, 1, 2, 2, generator=generator)
    c = torch.tensor([0, 2])
    t = policy.timesteps[1].expand(2)
    eps_c = policy.denoiser(x, t, c)
    eps_u = policy.denoiser(x, t, torch.full_like(c, 3))
    torch.testing.assert_close(policy.eps(x, 1, c), eps_u + 3.0 * (eps_c - eps_u))


def test_same_generator_same_trajectory():
    policy = tiny_policy()
    a, _ = policy.rollout(None, torch.Generator().manual_seed(3), batch=4)
    b, _ = policy.rollout(None, torch.Generator().manual_seed(3), batch=4)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.log_probs, b.log_probs)


@pytest.mark.parametrize("bad", [{"num_steps": 0}, {"eta": 0.0}])
def test_bad_sampler_settings_raise(bad):
    with pytest.raises(ValueError):
        tiny_policy(**bad)


def test_nfe_counts_policy_and_frozen_copies_once(generator):
    policy = tiny_policy(num_steps=4)
    ref = policy.frozen_copy()
    policy.rollout(None, generator, batch=3)
    assert policy.nfe == 12
    ref.step_mean(torch.zeros(2, 1, 2, 2), 0, None)
    assert policy.nfe == ref.nfe == 14
    guided = tiny_policy(num_steps=2, guidance_scale=2.0)
    guided.rollout(torch.tensor([0, 1]), generator)
    assert guided.nfe == 2 * 2 * 2
