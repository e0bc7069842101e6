"""Contract suite applied to every built-in reward (listing a reward in REWARDS enrolls it): the checks of
``benchsuite.testing`` (``check_reward_class``, ``check_reward_scores``), which plugins run on their own rewards with
``check_reward``.

A reward that cannot be built with its default arguments on a CI machine (it needs downloaded weights, or a
constructor argument such as a prompt list) must be listed in ``NOT_BUILT_BY_DEFAULT`` with the place where the
same contract is checked instead; an unlisted reward that fails to build fails here, so none escapes the suite.
"""

from __future__ import annotations

import pytest
import torch

from benchsuite.registry import REWARDS
from benchsuite.rewards.base import Reward
from benchsuite.testing import check_reward, check_reward_class, check_reward_scores

NOT_BUILT_BY_DEFAULT = {
    # name -> where its contract runs instead
    "laion-aesthetic": "tests/rewards/test_image_rewards.py (images tier: tiny open_clip models, same loading code)",
    "hpsv2": "tests/rewards/test_image_rewards.py (images tier: tiny open_clip models, same loading code)",
    "hpsv2.1": "tests/rewards/test_image_rewards.py (images tier: tiny open_clip models, same loading code)",
}
ALL = REWARDS.builtin_names()
BUILT = [n for n in ALL if n not in NOT_BUILT_BY_DEFAULT]


def test_listed_exceptions_are_registered():
    assert set(NOT_BUILT_BY_DEFAULT) <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_registered_reward_class_attributes(name):
    check_reward_class(name)


def _kind(name: str) -> str:
    entry = REWARDS.load(name)
    return entry.sample_kind if isinstance(entry, type) else "image"  # a factory: checked when called


# sequence rewards take their backbone's own sample format: tests/sequences pass check_reward their samples
IMAGE_BUILT = [n for n in BUILT if _kind(n) == "image"]


@pytest.mark.parametrize("name", IMAGE_BUILT)
def test_builds_with_defaults_and_scores_an_image_batch(name):
    check_reward(name)


@pytest.mark.parametrize("name", [n for n in BUILT if n not in IMAGE_BUILT])
def test_builds_with_defaults(name):
    reward = REWARDS.make(name)
    assert isinstance(reward, Reward) and reward.name == name


def test_the_checks_can_fail():
    """A reward that declares a gradient it does not have fails the call contract."""

    class Detached(Reward):
        name = "detached"
        differentiable = True

        def _score(self, samples, conditions):
            return samples.detach().flatten(1).mean(1)

    with pytest.raises(AssertionError, match="differentiable"):
        check_reward_scores(Detached(), torch.rand(2, 1, 4, 4))
