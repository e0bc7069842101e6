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


UNIT_INTERVAL = {"digit-class-probability", "digit-target-proxy", "digit-target-gold", "mean-brightness",
                 "ehrlich-feasibility", "selfies-qed", "selfies-sa"}
"""Rewards whose scores lie in [0, 1] (besides the PMO oracles): probabilities, shares, QED, SA rescaled."""
UNBOUNDED = {"jpeg-compressibility", "jpeg-incompressibility", "laion-aesthetic", "hpsv2", "hpsv2.1"}


@pytest.mark.parametrize("name", ALL)
def test_value_ranges_are_declared(name):
    """Each built-in reward's declared range, which the data-processing check of the path KL relies on."""
    declared = REWARDS.load(name).value_range
    if name in UNIT_INTERVAL or name.startswith("pmo-"):
        assert declared == (0.0, 1.0)
    elif name in UNBOUNDED:
        assert declared is None
    else:
        assert name == "ehrlich" and declared == (-1.0, 1.0)  # [0, 1] and the infeasible score


def test_value_range_follows_the_invalid_score():
    """A range that depends on the score of an invalid sample follows the constructor argument."""
    assert REWARDS.load("ehrlich").value_range_of(infeasible_value=0.0, num_states=4) == (0.0, 1.0)
    assert REWARDS.load("ehrlich").value_range_of(infeasible_value=-5.0) == (-5.0, 1.0)
    assert REWARDS.load("ehrlich-feasibility").value_range_of(infeasible_value=-5.0) == (0.0, 1.0)
    assert REWARDS.load("selfies-qed").value_range_of(invalid_value=-1.0, length=32) == (-1.0, 1.0)
    assert REWARDS.load("jpeg-compressibility").value_range_of(quality=95) is None


def test_the_range_check_can_fail(monkeypatch):
    """A reward that scores outside its declared range fails the call contract, and so does a malformed range."""

    class Doubled(Reward):
        name = "doubled"
        value_range = (0.0, 1.0)

        def _score(self, samples, conditions):
            return 2 * samples.flatten(1).mean(1) + 1

    with pytest.raises(AssertionError, match="value_range"):
        check_reward_scores(Doubled(), torch.rand(2, 1, 4, 4))
    check_reward_scores(Doubled(), torch.rand(2, 1, 4, 4), value_range=None)
    monkeypatch.setattr(REWARDS.load("mean-brightness"), "value_range", (1.0, 0.0))
    with pytest.raises(AssertionError, match="low < high"):
        check_reward_class("mean-brightness")
