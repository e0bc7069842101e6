"""DDPO's pieces against hand computations on tiny tensors."""

import numpy as np
import pytest
import torch

from benchsuite.methods.ddpo import PerConditionStats, ppo_loss


def test_ppo_loss_hand_computation():
    lp = torch.tensor([0.0, 0.1, -0.1, 0.0])
    old = torch.tensor([0.0, 0.0, 0.0, 0.0])
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0])
    eps = 0.05
    r = torch.exp(lp)  # [1, 1.105, 0.905, 1]
    # per pair max(-A r, -A clip(r)):
    # 0: -1;  1: max(-1.105, -1.05) = -1.05;  2: max(2*0.905, 2*0.95) = 1.9;  3: max(1, 1) = 1
    expected = (-1.0 - 1.05 + 1.9 + 1.0) / 4
    assert ppo_loss(lp, old, adv, eps).item() == pytest.approx(expected, rel=1e-6)
    assert r[1] > 1 + eps and r[2] < 1 - eps


def test_ppo_gradient_vanishes_when_clipped_in_the_advantage_direction():
    lp = torch.tensor([0.2], requires_grad=True)
    ppo_loss(lp, torch.zeros(1), torch.tensor([1.0]), 0.1).backward()
    assert lp.grad.item() == 0.0
    lp = torch.tensor([0.0], requires_grad=True)
    ppo_loss(lp, torch.zeros(1), torch.tensor([1.0]), 0.1).backward()
    assert lp.grad.item() == pytest.approx(-1.0)  # d(-A exp(lp))/dlp at lp = 0


def test_per_condition_stats_fall_back_to_batch_then_use_buffer():
    stats = PerConditionStats(buffer_size=4, min_count=3)
    r = np.array([1.0, 2.0, 3.0, 10.0])
    c = np.array([0, 0, 1, 1])
    adv = stats.advantages(r, c)
    # buffers hold 2 rewards each (< 3): batch stats, mean 4, std sqrt(12.5)
    np.testing.assert_allclose(adv, (r - 4.0) / (np.sqrt(12.5) + 1e-8))
    adv = stats.advantages(np.array([3.0, 0.0]), np.array([0, 1]))
    # condition 0 buffer [1, 2, 3]: mean 2, std sqrt(2/3); condition 1 buffer [3, 10, 0]: mean 13/3
    b1 = np.array([3.0, 10.0, 0.0])
    np.testing.assert_allclose(adv, [(3 - 2) / (np.sqrt(2 / 3) + 1e-8), (0 - b1.mean()) / (b1.std() + 1e-8)])


def test_per_condition_stats_buffer_is_bounded_and_round_trips():
    stats = PerConditionStats(buffer_size=2, min_count=1)
    stats.advantages(np.array([1.0, 2.0, 3.0]), np.array([5, 5, 5]))
    assert list(stats.buffers[5]) == [2.0, 3.0]
    other = PerConditionStats(2, 1)
    other.load_state_dict(stats.state_dict())
    np.testing.assert_allclose(other.advantages(np.array([4.0]), np.array([5])),
                               stats.advantages(np.array([4.0]), np.array([5])))


def test_unconditional_uses_one_buffer():
    stats = PerConditionStats(8, 2)
    adv = stats.advantages(np.array([0.0, 2.0]), None)
    np.testing.assert_allclose(adv, [-1.0, 1.0], atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_log_prob_reduction_matches_torch_normal(reduction):
    """ddpo-pytorch's ratio uses log-probs averaged over dims (its 1e-4 clip assumes that scale); ``sum`` is the
    full density. Both against torch.distributions.Normal on the tiny policy's transition."""
    from benchsuite.methods.ddpo import DDPO, DDPOConfig
    from benchsuite.tasks import make_task

    task = make_task("toy-brightness-v0")
    policy = task.make_policy()
    method = DDPO(DDPOConfig(batch_size=4, log_prob_reduction=reduction))
    method.setup(policy, task.info, torch.Generator().manual_seed(0))
    traj, _ = policy.rollout(torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(1))
    k = torch.tensor([0, 1, 2, 4])
    rows = torch.arange(4)
    x, x_next = traj.latents[rows, k], traj.latents[rows, k + 1]
    with torch.no_grad():
        got = method.log_prob(x, x_next, k, traj.conditions)
        mean, _ = policy.step_mean(x, k, traj.conditions)
    per_dim = torch.distributions.Normal(mean, policy.step_std(k, 4)).log_prob(x_next).flatten(1)
    want = per_dim.mean(1) if reduction == "mean" else per_dim.sum(1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the stored old log-probs take the same scale: at the sampling weights the ratio is exactly 1
    torch.testing.assert_close(traj.log_probs[rows, k] * method.log_prob_scale, got, rtol=1e-5, atol=1e-5)
