"""Contract suite applied to every registered reward (listing a reward in REWARDS enrolls it).

A reward that cannot be built with its default arguments on a CI machine (it needs downloaded weights, or a
constructor argument such as a prompt list) must be listed in ``NOT_BUILT_BY_DEFAULT`` with the place where the
same contract is checked instead; an unlisted reward that fails to build fails here, so none escapes the suite.
"""

from __future__ import annotations

import pytest
import torch

from benchsuite.registry import REWARDS
from benchsuite.rewards.base import Reward

NOT_BUILT_BY_DEFAULT = {
    # name -> where its contract runs instead
    "laion-aesthetic": "tests/rewards/test_image_rewards.py (images tier: tiny open_clip models, same loading code)",
    "hpsv2": "tests/rewards/test_image_rewards.py (images tier: tiny open_clip models, same loading code)",
    "hpsv2.1": "tests/rewards/test_image_rewards.py (images tier: tiny open_clip models, same loading code)",
}
ALL = REWARDS.names()
BUILT = [n for n in ALL if n not in NOT_BUILT_BY_DEFAULT]


def check_reward_contract(reward: Reward, samples: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
    """The checks every reward passes on a batch it accepts; shared with the images tier. Returns the rewards."""
    out = reward(samples, conditions)
    assert out.shape == (len(samples),) and out.is_floating_point() and torch.isfinite(out).all()
    again = reward(samples, conditions)
    torch.testing.assert_close(out, again)  # a deterministic function of its input
    if reward.differentiable:
        x = samples.clone().requires_grad_(True)
        reward(x, conditions).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    return out


def test_listed_exceptions_are_registered():
    assert set(NOT_BUILT_BY_DEFAULT) <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_registered_reward_class_attributes(name):
    entry = REWARDS.load(name)
    assert callable(entry)
    if isinstance(entry, type):
        assert issubclass(entry, Reward)
        assert entry.name == name
        assert isinstance(entry.version, str) and entry.version
        assert isinstance(entry.differentiable, bool)
        assert entry.sample_kind in ("image", "sequence")


@pytest.mark.parametrize("name", BUILT)
def test_builds_with_defaults(name):
    reward = REWARDS.make(name)
    assert isinstance(reward, Reward) and reward.name == name


def _kind(name: str) -> str:
    entry = REWARDS.load(name)
    return entry.sample_kind if isinstance(entry, type) else "image"  # a factory: checked when called


# sequence rewards take their backbone's own sample format; their call contract is in tests/sequences
IMAGE_BUILT = [n for n in BUILT if _kind(n) == "image"]


@pytest.mark.parametrize("name", IMAGE_BUILT)
def test_scores_an_image_batch(name):
    reward = REWARDS.make(name)
    assert reward.sample_kind == "image"
    samples = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    check_reward_contract(reward, samples, torch.tensor([0, 1, 2]))
