"""VARD's pieces against hand computations on tiny tensors, and the black-box property."""

from typing import ClassVar

import pytest
import torch

from benchsuite.budget import BudgetedOracle
from benchsuite.methods.value import ValueFunction, ValueNetwork, monte_carlo_targets, state_timesteps
from benchsuite.methods.vard import VARD, VARDConfig, vard_loss
from benchsuite.rewards.base import Reward
from benchsuite.tasks import TaskInfo
from benchsuite.testing import tiny_policy


class OpaqueBrightness(Reward):
    """A black-box reward: scores through numpy and refuses inputs that carry a graph."""

    name: ClassVar[str] = "opaque-brightness"
    differentiable: ClassVar[bool] = False

    def _score(self, samples, conditions):
        assert not samples.requires_grad, "a black-box oracle must never be asked for gradients"
        return torch.from_numpy(samples.detach().numpy().reshape(len(samples), -1).mean(1)).float()


def _task(differentiable=False):
    return TaskInfo(id="tiny", train_conditions=torch.tensor([0, 1, 2]), oracle_differentiable=differentiable)


def _vard(**overrides):
    cfg = dict(batch_size=4, train_batch_size=4, lr=1e-2, value_steps=5, value_warmup_steps=5, value_batch=16,
               value_width=8)
    method = VARD(VARDConfig(**{**cfg, **overrides}))
    method.setup(tiny_policy(num_steps=3), _task(), torch.Generator().manual_seed(0))
    return method


def test_monte_carlo_targets_give_every_state_its_rollouts_final_reward():
    targets = monte_carlo_targets(torch.tensor([0.5, -1.0]), num_states=3)
    assert targets.tolist() == [[0.5, 0.5, 0.5], [-1.0, -1.0, -1.0]]


def test_value_fit_regresses_each_state_on_its_rollouts_reward():
    # two rollouts of 3 states with well separated states: the fit must send every state to its rollout's reward
    states = torch.stack([torch.full((3, 1, 2, 2), -1.0), torch.full((3, 1, 2, 2), 1.0)])
    value = ValueFunction((1, 2, 2), None, torch.tensor([10, 5, 0]), width=8, lr=1e-2, capacity=8,
                          generator=torch.Generator().manual_seed(0))
    value.add(states, None, torch.tensor([0.0, 2.0]))
    assert value.mean == 0.0 and value(states[0], torch.tensor([10, 5, 0]), None).abs().max() == 0  # zero head
    value.fit(steps=300, batch=6)
    assert value.mean == pytest.approx(1.0) and value.scale == pytest.approx(2**0.5)
    t = torch.tensor([10, 5, 0])
    torch.testing.assert_close(value(states[0], t, None), torch.zeros(3), atol=0.05, rtol=0)
    torch.testing.assert_close(value(states[1], t, None), torch.full((3,), 2.0), atol=0.05, rtol=0)


def test_replay_keeps_the_newest_rollouts():
    value = ValueFunction((1, 2, 2), None, torch.tensor([1, 0]), width=4, lr=1e-3, capacity=3,
                          generator=torch.Generator().manual_seed(0))
    for i in range(3):
        value.add(torch.full((2, 2, 1, 2, 2), float(i)), None, torch.tensor([float(i), float(i)]))
    assert len(value) == 3 and value.rewards.tolist() == [1.0, 2.0, 2.0]


def test_value_network_takes_any_image_shape_and_conditions():
    net = ValueNetwork(3, num_conditions=4, width=8)
    for shape in [(2, 3, 2, 2), (2, 3, 8, 8), (2, 3, 5, 7)]:
        assert net(torch.randn(shape), torch.tensor([0, 999]), torch.tensor([1, 3])).shape == (2,)
    assert net(torch.randn(2, 3, 8, 8), torch.tensor([0.5, 10.0]), None).shape == (2,)


def test_vard_loss_hand_computation():
    v = torch.tensor([1.0, 2.0, 3.0])
    kl = torch.tensor([0.1, 0.2, 0.3])
    k = torch.tensor([0, 1, 2])
    # T = 3, gamma = 0.9: weights gamma^(T-1-k) = 0.81, 0.9, 1
    expected = torch.tensor([-0.81 * 1 + 0.5 * 0.1, -0.9 * 2 + 0.5 * 0.2, -1.0 * 3 + 0.5 * 0.3])
    torch.testing.assert_close(vard_loss(v, kl, k, num_steps=3, discount=0.9, kl_coef=0.5), expected)


def test_update_loss_is_the_hand_computed_discounted_value_plus_kl():
    # reward_norm none: the raw value (with the default the value term is divided by the rewards' running std)
    methods = [_vard(discount=0.8, kl_coef=0.3, reward_norm="none") for _ in range(2)]  # identical: one updates, one checks
    traj, _ = methods[0].policy.rollout(torch.tensor([0, 1]), torch.Generator().manual_seed(1))
    for m in methods:
        m.value.add(traj.latents, traj.conditions, torch.tensor([0.2, 0.7]))
        m.value.fit(20, 16)
        with torch.no_grad():  # move the policy away from the reference so that the KL is not zero
            for p in m.policy.denoiser.parameters():
                p.add_(0.05)
    m, check = methods
    rows, ks = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 2])
    noise_source = torch.Generator().set_state(m.generator.get_state())
    stats = m._update(traj, rows, ks, num_chains=2, step_scale=1.5)

    x = traj.latents[rows, ks]
    noise = torch.randn(x.shape, generator=noise_source)
    expected = 0.0
    with torch.no_grad():
        for i, (r, k) in enumerate(zip(rows.tolist(), ks.tolist())):
            xi, c = x[i : i + 1], traj.conditions[r : r + 1]
            mean, _ = check.policy.step_mean(xi, k, c)
            ref_mean, _ = check.reference.step_mean(xi, k, c)
            std = check.policy.stds[k]
            kl = ((mean - ref_mean) ** 2 / (2 * std**2)).sum()  # nats: summed over dims
            assert kl > 0
            v = check.value(mean + std * noise[i : i + 1], check.state_t[k + 1 : k + 2], c)[0]
            expected += (-(0.8 ** (3 - 1 - k)) * v + 0.3 * kl).item()  # T = 3
    # the loss is the mean over the 2 chains of the per-chain sum, times the step-subset scale 1.5
    assert stats["loss"] == pytest.approx(expected * 1.5 / 2, rel=1e-5)


def test_chunking_does_not_change_the_gradient():
    grads = []
    for chunk in (1, 64):
        m = _vard(train_chunk=chunk, lr=1e-6)
        traj, _ = m.policy.rollout(torch.tensor([0, 2]), torch.Generator().manual_seed(1))
        m.value.add(traj.latents, traj.conditions, torch.tensor([0.2, 0.7]))
        m.value.fit(5, 16)
        m.generator.manual_seed(5)
        m._update(traj, torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]), num_chains=2, step_scale=1.0)
        grads.append(torch.cat([p.grad.flatten() for p in m.params]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_black_box_oracle_is_never_differentiated_and_only_value_carries_the_reward_gradient():
    m = _vard()
    before = [p.clone() for p in m.params]
    oracle = BudgetedOracle(OpaqueBrightness(), 10)
    info = m.step(oracle)
    assert oracle.used == 4  # one query per rollout's x_0; value fitting is free
    assert all(not p.requires_grad for p in m.value.net.parameters())  # frozen during the policy update
    assert any(not torch.equal(a, b) for a, b in zip(before, m.params))
    assert m.value.reward_grads is None and info["train/grad_norm"] > 0


def test_differentiable_oracle_value_matches_reward_gradient_at_t0():
    # reward r(x) = mean(x) on 2x2 samples: d r / d x = 1/4 everywhere; fit V on random final states
    g = torch.Generator().manual_seed(0)
    states = torch.randn(64, 2, 1, 2, 2, generator=g)
    rewards = states[:, -1].flatten(1).mean(1)
    value = ValueFunction((1, 2, 2), None, torch.tensor([500, 0]), width=16, lr=3e-3, capacity=64, generator=g)
    value.add(states, None, rewards, reward_grads=torch.full((64, 1, 2, 2), 0.25))
    value.fit(steps=300, batch=64, grad_weight=1.0)
    x0 = states[:8, -1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(value(x0, torch.zeros(8), None).sum(), x0)
    torch.testing.assert_close(grad, torch.full_like(grad, 0.25), atol=0.05, rtol=0)


def test_state_timesteps_end_at_zero():
    p = tiny_policy(num_steps=5)
    assert state_timesteps(p).tolist() == [999, 799, 599, 399, 199, 0]
