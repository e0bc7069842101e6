"""DRaFT's gradients, KL term and query accounting against hand computations on the tiny policy."""

import io
from typing import ClassVar

import pytest
import torch

from benchsuite.budget import BudgetedOracle
from benchsuite.errors import ConfigError
from benchsuite.methods.draft import DRaFT
from benchsuite.policies.base import gaussian_kl
from benchsuite.tasks import TaskInfo
from benchsuite.rewards.brightness import MeanBrightness
from benchsuite.testing import tiny_policy

T = 5
INFO = TaskInfo("toy", torch.tensor([0, 1, 2]), oracle_differentiable=True)
BLACK_BOX_INFO = TaskInfo("toy", torch.tensor([0, 1, 2]), oracle_differentiable=False)


class BlackBoxBrightness(MeanBrightness):
    """The same scores, declared non-differentiable (as JPEG size is)."""

    name: ClassVar[str] = "black-box-brightness"
    differentiable: ClassVar[bool] = False

    def _score(self, samples, conditions):
        return super()._score(samples.detach(), conditions)


def make(seed=0, info=INFO, **config):
    """A DRaFT method on a fresh tiny policy, its generator seeded with ``seed``."""
    method = DRaFT(DRaFT.Config(**config))
    method.setup(tiny_policy(num_steps=T), info, torch.Generator().manual_seed(seed))
    return method


def loss_grads(method, budget=100, oracle=None):
    """Backpropagate one ``_loss`` (no optimizer step); returns (loss, info, oracle, {param name: grad})."""
    oracle = oracle or BudgetedOracle(MeanBrightness(), budget)
    loss, info = method._loss(oracle)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in method.policy.denoiser.named_parameters()}
    return loss, info, oracle, grads


def replay_chain(policy, g, batch, grad_from, stop=T):
    """The method's random draws in order (conditions, x_T, one noise per step) on a separate policy copy;
    steps before ``grad_from`` run under no_grad. Returns (conditions, the state after ``stop`` steps)."""
    conds = INFO.train_conditions[torch.randint(3, (batch,), generator=g)]
    x = torch.randn((batch, *policy.sample_shape), generator=g)
    for k in range(stop):
        noise = torch.randn((batch, *policy.sample_shape), generator=g)
        with torch.set_grad_enabled(k >= grad_from):
            x = policy.transition(x, k, conds, noise)
    return conds, x


def brightness(policy, x0):
    return policy.decode(x0).flatten(1).mean(1)


@pytest.mark.parametrize("k", [1, 2, T])
def test_gradient_flows_only_through_the_last_k_steps(k):
    method = make(k=k, batch_size=6)
    _, _, _, grads = loss_grads(method)

    hand = tiny_policy(num_steps=T)
    _, x0 = replay_chain(hand, torch.Generator().manual_seed(0), 6, grad_from=T - k)
    (-brightness(hand, x0).mean()).backward()
    for name, p in hand.denoiser.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-7, msg=name)

    if k < T:  # the truncation matters: the untruncated graph gives another gradient
        full = tiny_policy(num_steps=T)
        _, x0 = replay_chain(full, torch.Generator().manual_seed(0), 6, grad_from=0)
        (-brightness(full, x0).mean()).backward()
        assert not torch.allclose(grads["net.0.weight"], full.denoiser.net[0].weight.grad)


def test_draft1_gradient_is_the_hand_derivative_of_one_transition():
    # The last step: x0_pred = clip((x_1 - sqrt(1 - a) eps) / sqrt(a)), mu = sqrt(a') x0_pred + sqrt(1 - a' - s^2) eps,
    # x_0 = mu + s z. Per pixel, d x_0 / d eps = sqrt(1 - a' - s^2) - sqrt(a') sqrt(1 - a) / sqrt(a) * 1[x0_pred
    # not clipped] =: c. The reward is the mean over D = 4 pixels of clamp((x_0 + 1) / 2, 0, 1), and the last
    # layer's bias enters eps pixel by pixel with derivative 1, so
    #   d loss / d bias_d = -(1/B) sum_b c[b, d] / (2 D) * 1[-1 < x_0[b, d] < 1].
    method = make(k=1, batch_size=8)
    _, _, _, grads = loss_grads(method)

    p = tiny_policy(num_steps=T)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        conds, x1 = replay_chain(p, g, 8, grad_from=T, stop=T - 1)
        z = torch.randn(x1.shape, generator=g)
        a, a_prev, s = p.alpha[-1].double(), p.alpha_prev[-1].double(), p.stds[-1].double()
        eps = p.eps(x1, T - 1, conds).double()
        x0_pred = (x1.double() - (1 - a).sqrt() * eps) / a.sqrt()
        clip = p.clip_sample if p.clip_sample is not None else float("inf")
        x0 = a_prev.sqrt() * x0_pred.clamp(-clip, clip) + (1 - a_prev - s**2).sqrt() * eps + s * z
    c = (1 - a_prev - s**2).sqrt() - a_prev.sqrt() * (1 - a).sqrt() / a.sqrt() * (x0_pred.abs() < clip).double()
    inside = (x0.abs() < 1).double()
    expected = -(c * inside / (2 * 4)).flatten(1).mean(0)
    torch.testing.assert_close(grads["net.2.bias"].double(), expected, rtol=1e-4, atol=1e-8)


def perturbed(kl_coef, k):
    """A method whose policy has moved away from its reference (so the KL is positive)."""
    method = make(k=k, batch_size=6, kl_coef=kl_coef, reward_norm="none")  # the raw reward: exact differences
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in method.policy.denoiser.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return method


def test_kl_term_adds_exactly_kl_coef_times_the_kl_of_every_step():
    """DRaFT+KL as the SQDF repository has it: the KL of *every* step carries a theta-gradient (the early states are
    detached, the policy's mean at them is not), not only the K steps the reward gradient flows through."""
    k, coef = 2, 0.7
    loss0, info0, _, grads0 = loss_grads(perturbed(0.0, k))
    loss1, info1, _, grads1 = loss_grads(perturbed(coef, k))

    # the KL of every step along the replayed chain, by hand; states before T - k carry no graph
    policy, reference = perturbed(0.0, k).policy, tiny_policy(num_steps=T)
    g = torch.Generator().manual_seed(0)
    conds = INFO.train_conditions[torch.randint(3, (6,), generator=g)]
    x = torch.randn((6, *policy.sample_shape), generator=g)
    kl_early, kl_last = torch.zeros(6), torch.zeros(6)
    for step in range(T):
        noise = torch.randn((6, *policy.sample_shape), generator=g)
        mean, _ = policy.step_mean(x, step, conds)
        ref_mean, _ = reference.step_mean(x, step, conds)  # frozen weights; x carries theta in the last k steps
        kl_step = gaussian_kl(mean, ref_mean, policy.step_std(step, 6))
        if step >= T - k:
            kl_last = kl_last + kl_step
            x = mean + policy.step_std(step, 6) * noise
        else:
            kl_early = kl_early + kl_step
            x = mean.detach() + policy.step_std(step, 6) * noise
    kl = (kl_early + kl_last).mean()

    assert kl_early.mean().item() > 0 and kl_last.mean().item() > 0
    assert info0["train/kl"] == pytest.approx(kl_last.mean().item(), rel=1e-5)  # without a KL term: the K steps
    assert info1["train/kl"] == pytest.approx(kl.item(), rel=1e-5)
    assert (loss1 - loss0).item() == pytest.approx(coef * kl.item(), rel=1e-5)
    # and the gradient changes by exactly kl_coef * d KL / d theta, the early steps' share included
    kl.backward(retain_graph=True)
    every_step = {n: p.grad.clone() for n, p in policy.denoiser.named_parameters()}
    for name, p in policy.denoiser.named_parameters():
        torch.testing.assert_close(grads1[name] - grads0[name], coef * p.grad, rtol=1e-4, atol=2e-5, msg=name)  # float32, KL in nats
    policy.zero_grad()
    kl_last.mean().backward()
    # the early steps change the gradient: it is not the last k steps' KL gradient alone
    assert any(not torch.allclose(every_step[n], p.grad) for n, p in policy.denoiser.named_parameters())


def test_lv_averages_rewards_of_renoised_one_step_results():
    n, chains = 3, 4
    method = make(variant="lv", lv_samples=n, batch_size=n * chains)
    _, _, oracle, grads = loss_grads(method)
    assert oracle.used == n * chains  # every re-noised copy went to the (differentiable) oracle

    p = tiny_policy(num_steps=T)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        conds, x0 = replay_chain(p, g, chains, grad_from=T)
    rows = torch.arange(chains).repeat_interleave(n)
    abar = p.alpha[-1]  # alphas_cumprod at t_{T-1}, the last step's input timestep
    x1 = abar.sqrt() * x0[rows] + (1 - abar).sqrt() * torch.randn((n * chains, *p.sample_shape), generator=g)
    x0_lv = p.transition(x1, T - 1, conds[rows], torch.randn((n * chains, *p.sample_shape), generator=g))
    (-brightness(p, x0_lv).mean()).backward()
    for name, param in p.denoiser.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_lv_on_the_oracle_charges_each_copy_and_shrinks_the_last_chain():
    method = make(variant="lv", lv_samples=2, batch_size=5)
    oracle = BudgetedOracle(MeanBrightness(), 5)
    method.step(oracle)
    log = oracle.query_log()
    assert oracle.used == 5 and len(log) == 5
    c = log.condition
    assert c[0] == c[1] and c[2] == c[3]  # chains 0 and 1 with two copies each, chain 2 with one


@pytest.mark.parametrize("variant", ["k", "lv"])
def test_black_box_oracle_uses_a_surrogate_fit_to_the_paid_for_final_samples(variant):
    method = make(info=BLACK_BOX_INFO, variant=variant, lv_samples=3, batch_size=7, surrogate_fit_steps=2)
    assert method.surrogate is not None
    oracle = BudgetedOracle(BlackBoxBrightness(), 100)
    _, info, _, grads = loss_grads(method, oracle=oracle)
    assert oracle.used == 7  # one query per chain's x_0; DRaFT-LV's copies are scored by the surrogate for free
    assert len(method.surrogate.rewards) == 7
    torch.testing.assert_close(method.surrogate.rewards.double(), torch.from_numpy(oracle.query_log().reward))
    assert "train/surrogate_loss" in info
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_oracle_mode_on_a_black_box_oracle_fails_at_setup():
    with pytest.raises(ConfigError, match="not differentiable.*reward_gradients=surrogate"):
        make(info=BLACK_BOX_INFO, reward_gradients="oracle")


def test_config_and_setup_validation():
    with pytest.raises(ValueError, match="k = 1"):
        DRaFT.Config(variant="lv", k=2)
    with pytest.raises(ValueError, match="k must"):
        DRaFT.Config(k=0)
    with pytest.raises(ConfigError, match="exceeds"):
        make(k=T + 1)


def test_gradient_checkpointing_gives_the_same_gradients():
    _, _, _, plain = loss_grads(make(k=3, batch_size=4, kl_coef=0.5))
    _, _, _, ckpt = loss_grads(make(k=3, batch_size=4, kl_coef=0.5, gradient_checkpointing=True))
    for name in plain:
        torch.testing.assert_close(plain[name], ckpt[name], msg=name)


def test_state_with_surrogate_survives_a_weights_only_round_trip():
    a = make(info=BLACK_BOX_INFO, batch_size=4, surrogate_fit_steps=2)
    a.step(BudgetedOracle(BlackBoxBrightness(), 4))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = make(info=BLACK_BOX_INFO, batch_size=4, surrogate_fit_steps=2, seed=5)
    b.load_state_dict(torch.load(buf, weights_only=True))
    info_a = a.step(BudgetedOracle(BlackBoxBrightness(), 4))
    info_b = b.step(BudgetedOracle(BlackBoxBrightness(), 4))
    assert info_a == info_b
