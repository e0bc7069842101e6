"""The digits backbone as the tasks use it: through DiffusionPolicy (trailing DDIM spacing, eta 1)."""

import torch

from benchsuite.policies.embedded import digits_policy
from benchsuite.rewards.digit_classifier import predict_digits


def test_policy_samples_are_recognised_per_class():
    policy = digits_policy(num_steps=20)
    labels = torch.arange(10).repeat_interleave(16)
    traj, _ = policy.rollout(labels, torch.Generator().manual_seed(0))
    images = policy.decode(traj.x0)
    assert images.shape == (160, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    predicted = predict_digits(images)
    accuracy = [(predicted[labels == k] == k).float().mean().item() for k in range(10)]
    assert min(accuracy) >= 0.8, accuracy
    assert torch.isfinite(traj.log_probs).all()


def test_policy_stds_decrease_and_end_small():
    policy = digits_policy(num_steps=20)
    assert (policy.stds[1:] <= policy.stds[:-1]).all()
    assert 0 < policy.stds[-1] < 0.05
