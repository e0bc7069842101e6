"""SQDF's pieces against hand computations on tiny tensors, and its budget and gradient paths."""

import math
from typing import ClassVar

import pytest
import torch

from benchsuite.budget import BudgetedOracle
from benchsuite.errors import ConfigError
from benchsuite.methods.sqdf import (
    SQDF, ReplayBuffer, discount_weights, empirical_cdf, pair_probabilities, predict_x0, shifted_rewards,
    sqdf_loss,
)
from benchsuite.policies.base import DiffusionPolicy, gaussian_kl
from benchsuite.policies.digits import DIGITS_SCHEDULER_CONFIG
from benchsuite.tasks import TaskInfo
from benchsuite.rewards.brightness import MeanBrightness
from benchsuite.testing import TinyDenoiser, tiny_policy


class ShiftedBrightness(MeanBrightness):
    """Brightness minus 2: a differentiable reward that is always negative (like -JPEG kB)."""

    name: ClassVar[str] = "shifted-brightness"

    def _score(self, samples, conditions):
        return super()._score(samples, conditions) - 2.0


def _method(**overrides):
    """An SQDF set up on the tiny policy (3 classes, differentiable toy oracle); ``overrides`` set config fields."""
    cfg = dict(batch_size=8, train_batch_size=8, buffer_capacity=16, lr=1e-2, surrogate_fit_steps=2)
    cfg.update(overrides)
    method = SQDF(SQDF.Config(**cfg))
    info = TaskInfo("toy", torch.tensor([0, 1, 2]), oracle_differentiable=True)
    method.setup(tiny_policy(), info, torch.Generator().manual_seed(0))
    return method


# ---- discount, priorities, shift --------------------------------------------------------------------------
def test_discount_weights_are_gamma_to_the_steps_remaining():
    # T = 3, gamma = 0.5: step 0 has 2 steps after it, step 2 (the last) none
    w = discount_weights(torch.tensor([0, 1, 2]), 3, 0.5)
    assert w.tolist() == [0.25, 0.5, 1.0]
    assert discount_weights(torch.tensor([0, 19]), 20, 0.9).tolist() == pytest.approx([0.9**19, 1.0])


def test_prioritized_probabilities_paper_rule_on_a_hand_made_buffer():
    rewards = torch.tensor([1.0, -0.5, 3.0])
    # max(r, 0) x gamma^(T-1-k), T = 2, gamma = 0.5: [[0.5, 1], [0, 0], [1.5, 3]], total 6
    p = pair_probabilities(rewards, 2, 0.5, "none")
    expected = torch.tensor([[0.5, 1.0], [0.0, 0.0], [1.5, 3.0]]) / 6
    torch.testing.assert_close(p, expected)


def test_prioritized_probabilities_rank_shift_on_negative_rewards():
    rewards = torch.tensor([-0.7, -0.9, -0.5])
    # empirical CDF among the buffer: [2/3, 1/3, 1]; x [0.5, 1]; total (1/3 + 2/3) + (1/6 + 1/3) + (1/2 + 1) = 3
    p = pair_probabilities(rewards, 2, 0.5, "rank")
    expected = torch.tensor([[1 / 3, 2 / 3], [1 / 6, 1 / 3], [1 / 2, 1.0]]) / 3
    torch.testing.assert_close(p, expected)
    # ties share the larger rank
    assert empirical_cdf(torch.tensor([-1.0, -1.0, 0.0]), torch.tensor([-1.0, -1.0, 0.0])).tolist() == pytest.approx(
        [2 / 3, 2 / 3, 1.0])


def test_paper_rule_on_negative_rewards_raises():
    with pytest.raises(ConfigError, match="reward_shift=rank"):
        pair_probabilities(torch.tensor([-0.7, -0.9]), 3, 0.9, "none")


def test_rank_indicator_drops_only_rewards_below_every_paid_reward():
    buffer = torch.tensor([-0.8, -0.7, -0.6])
    q = torch.tensor([-0.9, -0.8, -0.65, -0.1])
    keep = shifted_rewards(q, buffer, "rank") > 0
    assert keep.tolist() == [False, True, True, True]
    assert (shifted_rewards(q, buffer, "none") > 0).tolist() == [False] * 4


def test_prioritized_sampler_draws_pairs_with_those_probabilities():
    m = _method(sampling="prioritized", reward_shift="rank", discount=0.5)
    T = m.policy.num_steps
    rewards = torch.tensor([-0.3, -0.1, -0.2])
    m.buffer.push(torch.zeros(3, T + 1, 1, 2, 2), torch.tensor([0, 1, 2]), rewards)
    slots, ks = m._sample_pairs(40000)
    freq = torch.zeros(3, T)
    freq.index_put_((slots, ks), torch.ones(len(slots)), accumulate=True)
    torch.testing.assert_close(freq / len(slots), pair_probabilities(rewards, T, 0.5, "rank"), atol=0.01, rtol=0)


def test_on_policy_sampler_takes_the_newest_chains():
    m = _method(sampling="on-policy")
    T = m.policy.num_steps
    for value in range(3):  # three pushes of 8: slots 0..7 hold the oldest, 16 > capacity evicts them
        m.buffer.push(torch.full((8, T + 1, 1, 2, 2), float(value)), torch.zeros(8, dtype=torch.long),
                      torch.full((8,), float(value)))
    slots, ks = m._sample_pairs(8)
    assert sorted(slots.tolist()) == list(range(8))  # the third push overwrote slots 0..7
    assert (m.buffer.rewards[slots] == 2.0).all() and ((ks >= 0) & (ks < T)).all()


# ---- replay buffer ------------------------------------------------------------------------------------------
def test_replay_buffer_evicts_the_oldest_and_round_trips():
    buf = ReplayBuffer(3, (2, 1), conditional=True)
    buf.push(torch.tensor([[[1.0], [1.0]], [[2.0], [2.0]]]), torch.tensor([1, 2]), torch.tensor([0.1, 0.2]))
    assert len(buf) == 2
    buf.push(torch.tensor([[[3.0], [3.0]], [[4.0], [4.0]]]), torch.tensor([3, 4]), torch.tensor([0.3, 0.4]))
    assert len(buf) == 3 and buf.total == 4
    # chain 1 (the oldest) was overwritten by chain 4 in slot 0
    assert buf.latents[:, 0, 0].tolist() == [4.0, 2.0, 3.0]
    assert buf.conditions.tolist() == [4, 2, 3]
    assert buf.stored_rewards().tolist() == pytest.approx([0.4, 0.2, 0.3])
    assert buf.newest(2).tolist() == [0, 2]  # chain 4 then chain 3
    with pytest.raises(ValueError):
        buf.push(torch.zeros(4, 2, 1), torch.zeros(4, dtype=torch.long), torch.zeros(4))

    other = ReplayBuffer(3, (2, 1), conditional=True)
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.latents, buf.latents) and torch.equal(other.conditions, buf.conditions)
    assert torch.equal(other.rewards, buf.rewards) and other.total == buf.total
    other.push(torch.zeros(1, 2, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1))
    assert buf.total == 4 and buf.latents[1, 0, 0] == 2.0  # the copy is independent


def test_unconditional_buffer_stores_no_conditions():
    buf = ReplayBuffer(2, (1,), conditional=False)
    buf.push(torch.ones(2, 1), None, torch.ones(2))
    assert buf.conditions is None and len(buf) == 2


# ---- the frozen predictor ----------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [None, DIGITS_SCHEDULER_CONFIG], ids=["tiny", "digits-schedule"])
def test_the_output_of_step_k_has_the_noise_level_of_step_k_plus_1(config):
    policy = tiny_policy() if config is None else DiffusionPolicy(
        TinyDenoiser((1, 2, 2)), config, (1, 2, 2), decoder=lambda x: x, num_steps=20, timestep_spacing="trailing")
    torch.testing.assert_close(policy.alpha_prev[:-1], policy.alpha[1:])


def test_tweedie_predictor_uses_the_next_steps_timestep_and_alpha():
    policy = tiny_policy(num_steps=5)
    ref = policy.frozen_copy()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 2, 2, generator=g)
    cond = torch.tensor([0, 1, 2])
    state = torch.tensor([1, 3, 5])  # outputs of steps 0, 2 and 4 (the last)
    out = predict_x0(ref, x, state, cond, jumps=1)
    for i in range(2):
        j = int(state[i])
        a = ref.alpha[j]
        eps = ref.denoiser(x[i : i + 1], ref.timesteps[j : j + 1], cond[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], (x[i : i + 1] - (1 - a).sqrt() * eps) / a.sqrt())
    assert torch.equal(out[2], x[2])  # after the last step the state is x_0 itself


def test_ddim_two_jumps_by_hand_and_one_jump_is_tweedie():
    policy = tiny_policy(num_steps=5)
    ref = policy.frozen_copy()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 1, 2, 2, generator=g)
    cond = torch.tensor([2, 0, 1])
    state = torch.tensor([1, 4, 5])
    a, t = ref.alpha, ref.timesteps

    def eps(z, j, c):
        return ref.denoiser(z, t[j : j + 1], c)

    # state 1: visits round(1 + 4 * [0, 0.5, 1]) = [1, 3, 5]
    x1, c1 = x[:1], cond[:1]
    e1 = eps(x1, 1, c1)
    x3 = a[3].sqrt() * (x1 - (1 - a[1]).sqrt() * e1) / a[1].sqrt() + (1 - a[3]).sqrt() * e1
    expected = (x3 - (1 - a[3]).sqrt() * eps(x3, 3, c1)) / a[3].sqrt()
    out = predict_x0(ref, x, state, cond, jumps=2)
    torch.testing.assert_close(out[:1], expected)
    # state 4: visits [4, 4, 5] (round half to even): the repeated visit is skipped, one Tweedie step remains
    torch.testing.assert_close(out[1:2], predict_x0(ref, x[1:2], state[1:2], cond[1:2], jumps=1))
    assert torch.equal(out[2], x[2])
    torch.testing.assert_close(predict_x0(ref, x, state, cond, 1)[:1],
                               (x1 - (1 - a[1]).sqrt() * e1) / a[1].sqrt())


# ---- loss, KL and the gradient path ------------------------------------------------------------------------
def test_loss_hand_computation_with_kl_and_indicator():
    q = torch.tensor([-0.5, 0.2, 0.4])
    kl = torch.tensor([0.1, 0.3, 0.05])
    k = torch.tensor([0, 2, 1])
    keep = torch.tensor([1.0, 0.0, 1.0])
    # T = 3, gamma = 0.5: weights [0.25, 1, 0.5]; kl_coef = 2
    # pair 0: -(0.25 * -0.5 - 2 * 0.1) = 0.325; pair 1 dropped; pair 2: -(0.5 * 0.4 - 2 * 0.05) = -0.1
    expected = (0.325 + 0.0 - 0.1) / 3
    assert sqdf_loss(q, kl, k, 3, 0.5, 2.0, keep).item() == pytest.approx(expected, rel=1e-6)


def test_kl_coef_is_twice_the_official_alpha():
    g = torch.Generator().manual_seed(3)
    mean, ref_mean = torch.randn(4, 1, 2, 2, generator=g), torch.randn(4, 1, 2, 2, generator=g)
    std = torch.tensor(0.3)
    q, k, alpha, gamma = torch.randn(4, generator=g), torch.tensor([0, 1, 2, 4]), 2.0, 0.9
    # official sqdf_scheduler_step: mean over dims of (mu_ref - mu)^2 / sigma^2; loss -(gamma^t r - alpha KL).
    # Ours is the KL in nats, sum over dims of (mu_ref - mu)^2 / (2 sigma^2): kl_coef = 2 alpha / D
    D = 4
    official_kl = (ref_mean - mean).square().flatten(1).mean(1) / std**2
    official = (-(gamma ** (5 - 1 - k).float() * q - alpha * official_kl)).mean()
    ours = sqdf_loss(q, gaussian_kl(mean, ref_mean, std), k, 5, gamma, 2 * alpha / D, torch.ones(4))
    torch.testing.assert_close(ours, official)
    # the default is the official alpha = 2 on SD 1.5's 4 x 64 x 64 latents
    assert SQDF.Config().kl_coef == 2 * 2.0 / (4 * 64 * 64) and SQDF.Config().discount == 0.9


def test_kl_is_zero_at_the_reference_and_matches_the_gaussian_formula():
    policy = tiny_policy()
    ref = policy.frozen_copy()
    x, k, cond = torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 3, 4]), torch.tensor([0, 1, 2, 0])
    assert policy.kl_to(ref, x, k, cond).abs().max() == 0
    with torch.no_grad():
        policy.denoiser.net[0].bias.add_(0.5)
    mean, _ = policy.step_mean(x, k, cond)
    ref_mean, _ = ref.step_mean(x, k, cond)
    std = policy.stds[k].view(-1, 1, 1, 1)
    hand = ((mean - ref_mean).square() / (2 * std.square())).flatten(1).sum(1)  # nats: summed over dims
    torch.testing.assert_close(policy.kl_to(ref, x, k, cond), hand)
    assert (hand > 0).all()


def test_gradient_reaches_theta_through_the_frozen_predictor_and_not_the_reference():
    policy = tiny_policy()
    ref = policy.frozen_copy()
    x, cond = torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
    k = torch.tensor([0, 1, 2, 3])  # none is the last step: every x0_hat goes through the reference
    mean, _ = policy.step_mean(x, k, cond)
    x_next = mean + policy.step_std(k, 4) * torch.randn(4, 1, 2, 2)
    x_next.retain_grad()
    q = MeanBrightness()(policy.decode(predict_x0(ref, x_next, k + 1, cond, 1)))
    sqdf_loss(q, policy.kl_to(ref, x, k, cond, mean=mean), k, 5, 0.9, 0.0, torch.ones(4)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.denoiser.parameters())
    assert all(not p.requires_grad and p.grad is None for p in ref.denoiser.parameters())

    # the path goes through the reference's eps(x_next): detaching it changes d loss / d x_next
    def loss_of(z, detach_eps):
        a = ref.alpha[k + 1].view(-1, 1, 1, 1)
        e = ref.eps(z, k + 1, cond)
        e = e.detach() if detach_eps else e
        x0 = (z - (1 - a).sqrt() * e) / a.sqrt()
        w = discount_weights(k, 5, 0.9)
        return -(w * MeanBrightness()(policy.decode(x0))).mean()

    z = x_next.detach().requires_grad_(True)
    full = torch.autograd.grad(loss_of(z, False), z)[0]
    torch.testing.assert_close(x_next.grad, full)
    assert not torch.allclose(full, torch.autograd.grad(loss_of(z, True), z)[0])


# ---- budget accounting ---------------------------------------------------------------------------------------
def test_surrogate_mode_charges_one_query_per_rollout_only():
    m = _method(reward_gradients="surrogate", updates_per_step=3)
    oracle = BudgetedOracle(MeanBrightness(), 100)
    info = m.step(oracle)
    assert oracle.used == 8 and m.surrogate is not None and len(m.buffer) == 8
    assert info["train/buffer_size"] == 8 and "train/surrogate_loss" in info


def test_oracle_mode_charges_scored_predictions_and_spends_exactly_the_budget():
    m = _method(reward_gradients="auto", updates_per_step=2, train_batch_size=5)
    assert m.surrogate is None  # the toy oracle is differentiable
    oracle = BudgetedOracle(MeanBrightness(), 30)
    m.step(oracle)
    assert oracle.used == 8 + 2 * 5
    m.step(oracle)  # 8 rollouts, then only 4 queries are left for scoring pairs
    assert oracle.used == 30 and oracle.exhausted


def test_paper_indicator_on_negative_rewards_raises_with_the_fix():
    m = _method(reward_shift="none")
    with pytest.raises(ConfigError, match="reward_shift=rank"):
        m.step(BudgetedOracle(ShiftedBrightness(), 100))
    m = _method(reward_shift="rank")
    info = m.step(BudgetedOracle(ShiftedBrightness(), 100))
    assert info["train/reward_mean"] < 0 and info["train/keep_frac"] > 0 and math.isfinite(info["train/loss"])


# ---- the consistency-model predictor ----------------------------------------------------------------------------
INFO = TaskInfo("toy", torch.tensor([0, 1, 2]), oracle_differentiable=True)

class HalfX(torch.nn.Module):
    """A stand-in consistency model: f(x, t, c) = 0.5 x + t / 1000 (frozen, differentiable in x)."""

    def forward(self, x, t, cond):
        return 0.5 * x + t.view(-1, 1, 1, 1).float() / 1000


def test_auto_takes_the_backbones_consistency_model_and_tweedie_without_one():
    assert _method().predictor == "tweedie"  # the tiny backbone has none
    policy = tiny_policy()
    policy.x0_predictor = HalfX()
    m = SQDF(SQDF.Config(batch_size=8, train_batch_size=8))
    m.setup(policy, INFO, torch.Generator().manual_seed(0))
    assert m.predictor == "consistency"
    with pytest.raises(ConfigError, match="no consistency model"):
        SQDF(SQDF.Config(predictor="consistency")).setup(tiny_policy(), INFO, torch.Generator().manual_seed(0))


def test_consistency_x0_uses_the_states_timestep_and_leaves_the_final_state():
    policy = tiny_policy(num_steps=5)
    policy.x0_predictor = HalfX()
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(4), requires_grad=True)
    state = torch.tensor([1, 3, 5])
    out = policy.consistency_x0(x, state, torch.tensor([0, 1, 2]))
    for i in range(2):
        t = float(policy.timesteps[int(state[i])])
        torch.testing.assert_close(out[i], 0.5 * x[i] + t / 1000)
    assert torch.equal(out[2], x[2])
    out.sum().backward()
    torch.testing.assert_close(x.grad[:2], torch.full((2, 1, 2, 2), 0.5))


def test_update_scores_the_consistency_prediction_of_the_reparameterized_step():
    """With predictor=consistency the soft-Q estimate is r(f(x_{k+1}, t_{k+1})): the update asks the policy's
    consistency model for its x0_hat at the step's output state (k + 1), and q_mean is the reward of exactly that."""
    policy = tiny_policy()
    policy.x0_predictor = HalfX()
    m = SQDF(SQDF.Config(batch_size=8, train_batch_size=8, reward_gradients="oracle"))
    m.setup(policy, INFO, torch.Generator().manual_seed(0))
    calls = []
    original = policy.consistency_x0

    def spy(x, state, cond):
        out = original(x, state, cond)
        calls.append((state.clone(), out.detach().clone()))
        return out

    policy.consistency_x0 = spy
    oracle = BudgetedOracle(MeanBrightness(), 100)
    info = m.step(oracle)
    [(state, x0_hat)] = calls
    assert m.predictor == "consistency" and oracle.used == 16 and bool((state >= 1).all())
    expected = MeanBrightness()(policy.decode(x0_hat)).mean().item()
    assert info["train/q_mean"] == pytest.approx(expected, rel=1e-6)
