"""Continuous-time RL ("score as action"): the VP-SDE quantities, the loss against hand computations, its fixed
point, the trust region, and the signature property: the loss scale does not depend on the number of steps."""

import math
from typing import ClassVar

import pytest
import torch
from diffusers import DDPMScheduler

from benchsuite.budget import BudgetedOracle
from benchsuite.methods.ctrl import ContinuousTimeRL, CTRLConfig, ctrl_loss, score, tweedie_x0, vp_sde_grid
from benchsuite.policies.base import DiffusionPolicy
from benchsuite.rewards.base import Reward
from benchsuite.tasks import TaskInfo
from benchsuite.testing import TINY_SCHEDULER_CONFIG, tiny_policy


class OpaqueBrightness(Reward):
    """A black-box reward: scores through numpy and refuses inputs that carry a graph."""

    name: ClassVar[str] = "opaque-brightness"
    differentiable: ClassVar[bool] = False

    def _score(self, samples, conditions):
        assert not samples.requires_grad, "a black-box oracle must never be asked for gradients"
        return torch.from_numpy(samples.detach().numpy().reshape(len(samples), -1).mean(1)).float()


def _ctrl(num_steps=3, **overrides):
    cfg = dict(batch_size=4, train_batch_size=4, lr=1e-2, value_steps=5, value_warmup_steps=5, value_batch=16,
               value_width=8, surrogate_fit_steps=5)
    method = ContinuousTimeRL(CTRLConfig(**{**cfg, **overrides}))
    task = TaskInfo(id="tiny", train_conditions=torch.tensor([0, 1, 2]), oracle_differentiable=False)
    method.setup(tiny_policy(num_steps=num_steps), task, torch.Generator().manual_seed(0))
    return method


def test_vp_sde_grid_on_a_hand_checkable_schedule():
    # abar_t = exp(-0.5 t) on N = 4 training steps: beta(tau) = -d log abar / d tau = 0.5 * N = 2 everywhere
    timesteps = torch.tensor([3, 1])
    alpha = torch.exp(torch.tensor([-1.5, -0.5]))
    alpha_prev = torch.exp(torch.tensor([-0.5, 0.0]))  # step 0 lands at t = 1, step 1 at t = 0
    tau, dtau, g2 = vp_sde_grid(timesteps, alpha, alpha_prev, num_train_timesteps=4)
    torch.testing.assert_close(tau, torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(dtau, torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(g2, torch.tensor([2.0, 2.0]))


def test_step_weights_integrate_beta_exactly_for_any_number_of_steps():
    totals = []
    for T in (20, 50, 100):
        p = tiny_policy(num_steps=T)
        _, dtau, g2 = vp_sde_grid(p.timesteps, p.alpha, p.alpha_prev, 1000)
        assert dtau.sum().item() == pytest.approx(0.999)  # from tau = 0.999 (t = 999) down to 0
        totals.append((dtau * g2).sum().item())
    # sum_k dtau_k g2_k = log(abar_0 / abar_999), the same on every grid
    assert totals == pytest.approx([totals[0]] * 3, rel=1e-5)
    p = tiny_policy(num_steps=20)
    assert totals[0] == pytest.approx(math.log(p.alpha_prev[-1].item() / p.alpha[0].item()), rel=1e-5)


def test_ctrl_loss_hand_computation():
    s = torch.tensor([[[[1.0, 2.0]]]])  # N = 1, D = 2
    s_ref = torch.tensor([[[[0.0, 1.0]]]])
    s_old = torch.tensor([[[[1.0, 1.0]]]])
    grad_v = torch.tensor([[[[0.5, -1.0]]]])
    w = torch.tensor([2.0])
    # -<s, grad V> = -(0.5 - 2) = 1.5; kl: 0.4 * 0.5 * (1 + 1) = 0.4; trust: 1 * 0.5 * (0 + 1) = 0.5 (sums over dims)
    out = ctrl_loss(s, s_ref, s_old, grad_v, w, kl_coef=0.4, trust_coef=1.0)
    torch.testing.assert_close(out, torch.tensor([2.0 * (1.5 + 0.4 + 0.5)]))
    no_trust = ctrl_loss(s, s_ref, None, grad_v, w, kl_coef=0.4, trust_coef=1.0)
    torch.testing.assert_close(no_trust, torch.tensor([2.0 * (1.5 + 0.4)]))


def test_fixed_point_is_the_reference_score_plus_value_gradient_over_beta():
    g = torch.Generator().manual_seed(0)
    s_ref, grad_v = torch.randn(3, 1, 2, 2, generator=g), torch.randn(3, 1, 2, 2, generator=g)
    w, beta = torch.tensor([0.5, 1.0, 2.0]), 0.8  # kl_coef is the paper's beta (KL in nats, summed over dims)
    closed_form = s_ref + grad_v / beta
    # the loss is a convex quadratic in s per state: gradient descent from s_ref reaches the closed form
    s = s_ref.clone().requires_grad_(True)
    opt = torch.optim.SGD([s], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        ctrl_loss(s, s_ref, None, grad_v, w, beta, 0.0).sum().backward()
        opt.step()
    torch.testing.assert_close(s.detach(), closed_form, atol=1e-4, rtol=1e-4)
    at_opt = closed_form.clone().requires_grad_(True)
    ctrl_loss(at_opt, s_ref, None, grad_v, w, beta, 0.0).sum().backward()
    assert at_opt.grad.abs().max() < 1e-5


def test_trust_region_pulls_the_minimiser_towards_the_sampling_policy():
    g = torch.Generator().manual_seed(1)
    s_ref, s_old, grad_v = (torch.randn(2, 1, 2, 2, generator=g) for _ in range(3))
    w, kl_coef = torch.ones(2), 0.5
    distance = {}
    for trust in (0.0, 1.0, 100.0):
        minimiser = (kl_coef * s_ref + trust * s_old + grad_v) / (kl_coef + trust)
        s = minimiser.clone().requires_grad_(True)
        ctrl_loss(s, s_ref, s_old, grad_v, w, kl_coef, trust).sum().backward()
        assert s.grad.abs().max() < 1e-6 * (kl_coef + trust) * 10  # float32 rounding of terms of size kl + trust
        distance[trust] = (minimiser - s_old).norm().item()
    assert distance[100.0] < 0.01 * distance[0.0] and distance[1.0] < distance[0.0]
    # at s = s_old the trust term has no gradient: the first optimizer step on a batch ignores it
    s = s_old.clone().requires_grad_(True)
    ctrl_loss(s, s_ref, s_old, grad_v, w, kl_coef, 7.0).sum().backward()
    free = s_old.clone().requires_grad_(True)
    ctrl_loss(free, s_ref, None, grad_v, w, kl_coef, 0.0).sum().backward()
    torch.testing.assert_close(s.grad, free.grad)


def test_pair_losses_on_a_tiny_policy_match_the_formula():
    m = _ctrl(num_steps=4, kl_coef=0.3, trust_coef=0.0, reward_norm="none")
    p = m.policy
    with torch.no_grad():
        for w in p.denoiser.parameters():
            w.add_(0.05)
    traj, _ = p.rollout(torch.tensor([0, 2]), torch.Generator().manual_seed(3))
    m.surrogate.add(p.decode(traj.x0), traj.conditions, torch.tensor([0.1, 0.4]))
    m.surrogate.fit()
    rows, ks = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 3])
    terms = m.pair_losses(traj.latents, traj.conditions, rows, ks)
    for i, (r, k) in enumerate(zip(rows.tolist(), ks.tolist())):
        x = traj.latents[r : r + 1, k].clone().requires_grad_(True)
        c = traj.conditions[r : r + 1]
        kk = torch.tensor([k])
        a = p.alpha[k]
        eps_ref = m.reference.denoiser(x, p.timesteps[kk], c)
        v = m.surrogate(p.decode((x - (1 - a).sqrt() * eps_ref) / a.sqrt()), c)  # h_phi starts at zero
        (gv,) = torch.autograd.grad(v.sum(), x)
        with torch.no_grad():
            s = -p.denoiser(x, p.timesteps[kk], c) / (1 - a).sqrt()
            s_ref = -eps_ref / (1 - a).sqrt()
            w = math.log(p.alpha_prev[k].item() / a.item())
            expected = w * (-(s * gv).sum() + 0.3 * 0.5 * ((s - s_ref) ** 2).sum())
        assert terms["loss"][i].item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-7)


class GaussianScore(torch.nn.Module):
    """The exact eps-prediction for data N(0, 0.25 I) under the tiny schedule, plus a bounded score shift:
    s_theta = s_ref + w tanh(x + 0.3). A well-posed problem: finite path KL, smooth integrands in tau."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.register_buffer("acp", DDPMScheduler(**TINY_SCHEDULER_CONFIG).alphas_cumprod)

    def forward(self, x, t, cond):
        a = self.acp[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x / (0.25 * a + 1 - a) - self.w * torch.tanh(x + 0.3))


@pytest.mark.parametrize("spacing", ["trailing", "logsnr"])
def test_loss_scale_does_not_depend_on_the_number_of_steps(spacing):
    """The signature of the continuous-time loss. Same denoiser, reference and value on 20, 50 and 100 sampler
    steps; the states of each grid are x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for the same (x_0, eps)
    pairs (the forward process, so the state distribution is the same on every grid). Each term of the
    per-chain loss, sum_k dtau_k g2_k (...), is a left-point Riemann sum of one integral over tau, so the terms
    agree across grids up to a first-order error in 1/T (the KL term to 1 %, the value term, whose integrand
    rises steeply towards t = 0, to 12 % between 20 and 100 steps and 4 % between 50 and 100 on the trailing grid,
    17 % and 5 % on the log-SNR grid of the -v1 digits cards), while the plain sum over steps grows like T."""
    g = torch.Generator().manual_seed(0)
    n = 500
    x0, noise = 0.5 * torch.randn(n, 1, 1, 2, 2, generator=g), torch.randn(n, 1, 1, 2, 2, generator=g)
    conds = torch.arange(n) % 3
    reward, kl, plain = {}, {}, {}
    for T in (20, 50, 100):
        policy = DiffusionPolicy(GaussianScore(), TINY_SCHEDULER_CONFIG, (1, 2, 2), lambda x: (x + 1) / 2,
                                 num_steps=T, timestep_spacing=spacing)
        m = ContinuousTimeRL(CTRLConfig(batch_size=4, kl_coef=0.5, trust_coef=0.0, value_width=8))
        m.setup(policy, TaskInfo("t", torch.tensor([0, 1, 2]), False), torch.Generator().manual_seed(0))
        m.surrogate = lambda images, cond: 4 * images.flatten(1).mean(1)  # a known smooth r_hat; h_phi = 0
        with torch.no_grad():
            policy.denoiser.w.fill_(0.5)
        a = policy.denoiser.acp[m.state_t].view(1, -1, 1, 1, 1)
        latents = a.sqrt() * x0 + (1 - a).sqrt() * noise  # n x (T+1) x 1 x 2 x 2
        rows, ks = torch.arange(n).repeat_interleave(T), torch.arange(T).repeat(n)
        terms = m.pair_losses(latents, conds, rows, ks)
        reward[T] = terms["reward_term"].sum().item() / n
        kl[T] = terms["kl_path"].sum().item() / n
        torch.testing.assert_close(terms["loss"].detach(), -terms["reward_term"] + 0.5 * terms["kl_path"])
        plain[T] = (terms["loss"].detach() / m.weights[ks]).sum().item() / n
    assert kl[20] == pytest.approx(kl[100], rel=0.01) and kl[50] == pytest.approx(kl[100], rel=0.01)
    # left-point sums lag the steep end: trailing 11 % / 3 %, log-SNR (coarser in tau near the noisy end) 16 % / 5 %
    tol20, tol50 = {"trailing": (0.12, 0.04), "logsnr": (0.17, 0.05)}[spacing]
    assert reward[20] == pytest.approx(reward[100], rel=tol20) and reward[50] == pytest.approx(reward[100], rel=tol50)
    assert abs(reward[100] - reward[50]) < 0.5 * abs(reward[50] - reward[20])  # converging in 1/T
    assert plain[100] / plain[20] > 4  # without the dtau g^2 weights the loss would scale with T


def test_tweedie_and_score_follow_the_schedule():
    p = tiny_policy(num_steps=5)
    x, k = torch.randn(2, 1, 2, 2), torch.tensor([1, 4])
    eps = p.eps(x, k, None)
    a = p.alpha[k].view(-1, 1, 1, 1)
    torch.testing.assert_close(score(p, x, k, None), -eps / (1 - a).sqrt())
    torch.testing.assert_close(tweedie_x0(p, x, k, eps), p.step_mean(x, k, None)[1])


def test_black_box_step_spends_one_query_per_chain_and_updates_the_policy():
    m = _ctrl()
    before = [w.clone() for w in m.params]
    oracle = BudgetedOracle(OpaqueBrightness(), 10)
    for _ in range(2):  # the second step has a trust region around the first step's policy
        info = m.step(oracle)
    assert oracle.used == 8
    assert any(not torch.equal(a, b) for a, b in zip(before, m.params))
    assert info["train/kl_path"] > 0 and math.isfinite(info["train/loss"])
    assert m.x0_hats.shape == m.value.states.shape


def test_step_works_with_a_ddp_wrapped_denoiser(monkeypatch):
    """Under `accelerate launch` the denoiser is DistributedDataParallel-wrapped (state_dict keys "module.*");
    the trust region's copy of the sampling policy must still load. A one-process gloo group stands in."""
    import socket

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from benchsuite import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(distributed, "prepare", lambda module, opt: (DistributedDataParallel(module), opt))
        m = _ctrl()
        assert isinstance(m.policy.denoiser, DistributedDataParallel)
        before = {k: v.clone() for k, v in m.old.denoiser.state_dict().items()}
        oracle = BudgetedOracle(OpaqueBrightness(), budget=8)
        m.step(oracle)  # raised "Missing key(s) ... Unexpected key(s) module.*" before the unwrap
        after_first = {k: v.clone() for k, v in distributed.unwrap(m.policy.denoiser).state_dict().items()}
        assert any(not torch.equal(before[k], after_first[k]) for k in before)  # the first step trained
        m.step(oracle)  # its copy of the sampling policy is the first step's result
        old = m.old.denoiser.state_dict()
        assert all(torch.equal(old[k], after_first[k]) for k in before)
    finally:
        dist.destroy_process_group()


def test_step_gradient_shares_hand_computation():
    from benchsuite.methods.ctrl import step_gradient_shares

    grads = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # norms 3, 1, 1
    out = step_gradient_shares(grads)
    assert out["train/grad_share_max"] == pytest.approx(0.6)
    assert out["train/grad_share_step"] == 0.0
    # step 1 against steps 0 + 2 = (3, -1): cos = -1 / sqrt(10); step 2 against (3, 1): -1 / sqrt(10); step 0: 1
    assert out["train/grad_cos_min"] == pytest.approx(-1 / math.sqrt(10), rel=1e-6)


def test_step_gradients_sum_to_the_full_loss_gradient():
    method = _ctrl(num_steps=4, grad_share_every=0)
    oracle = BudgetedOracle(OpaqueBrightness(), 8)
    method.step(oracle)
    traj, _ = method.policy.rollout(torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(3))
    per_step = method.step_gradients(traj.latents, traj.conditions)
    assert per_step.shape[0] == 4
    rows, ks = torch.arange(4).repeat_interleave(4), torch.arange(4).repeat(4)
    method.optimizer.zero_grad()
    (method.pair_losses(traj.latents, traj.conditions, rows, ks)["loss"].sum() / 4).backward()
    full = torch.cat([p.grad.flatten() for p in method.params])
    torch.testing.assert_close(per_step.sum(0), full, rtol=1e-4, atol=1e-7)


@pytest.mark.slow  # 11 s: the digits backbone's full grid
def test_no_sampler_step_dominates_the_gradient_on_the_v1_digits_grid():
    """The review's finding on the trailing grid of the -v0 cards (step 0: 74 % of the weight, 82 % of the
    parameter gradient, pointing against the rest), and that the log-SNR grid of the -v1 cards removes it. After
    two iterations of the digits preset, over the same 16 chains."""
    from benchsuite.diagnostics import gradient_shares_on_task

    shares = {}
    for task_id in ("digits-jpeg-compress-v0", "digits-jpeg-compress-v1"):
        _, grads = gradient_shares_on_task(task_id, iterations=2, batch_size=32, chains=16)
        norms = grads.norm(dim=1)
        shares[task_id] = (norms / norms.sum()).max().item()
    assert shares["digits-jpeg-compress-v0"] > 0.6
    assert shares["digits-jpeg-compress-v1"] < 0.35
