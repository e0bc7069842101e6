"""Contract suite applied to every registered backbone (listing one in BACKBONES enrolls it).

Each backbone is built the way a run builds it: from the first task card that uses it, with that card's sampler
arguments. A backbone that needs downloaded weights must be listed in ``NOT_BUILT_BY_DEFAULT`` with the place
where the same checks run (tiny random models through the same loading code); an unlisted backbone without a
card fails here, so none escapes the suite.
"""

from __future__ import annotations

import pytest
import torch

from benchsuite.registry import BACKBONES
from benchsuite.tasks import make_task, task_specs

torch.set_num_threads(1)

NOT_BUILT_BY_DEFAULT = {
    "sd": "tests/policies/test_sd.py (tiny UNet/VAE/CLIP saved to a temp dir and loaded by sd_policy)",
}


def _card_for(backbone: str) -> str:
    ids = sorted(t for t, s in task_specs().items() if s.backbone == backbone)
    assert ids, f"backbone {backbone!r} has no task card; add one or list it in NOT_BUILT_BY_DEFAULT"
    return ids[0]


BUILT = [b for b in BACKBONES.names() if b not in NOT_BUILT_BY_DEFAULT]


def test_exceptions_are_registered():
    assert set(NOT_BUILT_BY_DEFAULT) <= set(BACKBONES.names())


@pytest.fixture(scope="module", params=BUILT)
def built(request):
    task = make_task(_card_for(request.param))
    return task, task.make_policy()


def _conditions(task, n):
    tc = task.info.train_conditions
    return None if tc is None else tc[torch.arange(n) % len(tc)]


def test_rollout_shapes_and_log_probs_recompute(built):
    task, policy = built
    conds = _conditions(task, 3)
    traj, kls = policy.rollout(conds, torch.Generator().manual_seed(0), batch=3, reference=policy.frozen_copy())
    T, S = policy.num_steps, policy.sample_shape
    assert traj.latents.shape == (3, T + 1, *S) and traj.means.shape == (3, T, *S)
    assert traj.log_probs.shape == (3, T) and torch.isfinite(traj.log_probs).all()
    assert bool((traj.stds > 0).all())
    # the frozen copy is the same model: zero KL along the chain
    assert kls.abs().max().item() < 1e-6
    # log-probs recomputed from the stored chain agree with the sampling ones (the basis of every PG method)
    for k in (0, T - 1):
        lp = policy.log_prob(traj.latents[:, k], traj.latents[:, k + 1], k, traj.conditions)
        torch.testing.assert_close(lp, traj.log_probs[:, k], rtol=1e-4, atol=1e-3)


def test_same_generator_same_samples_and_decode_feeds_the_oracle(built):
    task, policy = built
    conds = _conditions(task, 4)
    a, _ = policy.rollout(conds, torch.Generator().manual_seed(1), batch=4)
    b, _ = policy.rollout(conds, torch.Generator().manual_seed(1), batch=4)
    assert torch.equal(a.x0, b.x0)
    decoded = policy.decode(a.x0)
    assert decoded.is_floating_point() and float(decoded.min()) >= 0 and float(decoded.max()) <= 1
    rewards = task.oracle_reward(decoded, conds)
    assert rewards.shape == (4,) and torch.isfinite(rewards).all()


def test_decode_is_differentiable(built):
    # gradient methods backpropagate rewards through the decoder into the chain
    _, policy = built
    x = torch.randn(2, *policy.sample_shape, requires_grad=True)
    policy.decode(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_trainable_parameters_change_the_step_mean(built):
    task, policy = built
    x = torch.randn(2, *policy.sample_shape, generator=torch.Generator().manual_seed(2))
    conds = _conditions(task, 2)
    mean, _ = policy.step_mean(x, 0, conds)
    params = [p for p in policy.denoiser.parameters() if p.requires_grad]
    assert params
    mean.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
