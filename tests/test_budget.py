"""Budget accounting properties: never overspends, charges len(batch) up front, exhausted is sticky."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchsuite.budget import BudgetedOracle
from benchsuite.errors import BudgetExhausted, ConfigError
from benchsuite.rewards.base import Reward
from benchsuite.testing import MeanBrightness


class Failing(Reward):
    name = "failing"

    def _score(self, samples, conditions):
        raise RuntimeError("oracle down")


def images(n):
    return torch.rand(n, 1, 2, 2)


@settings(max_examples=200, deadline=None)
@given(budget=st.integers(0, 60), batches=st.lists(st.integers(1, 25), max_size=30))
def test_random_batch_sequences_never_overspend(budget, batches):
    oracle = BudgetedOracle(MeanBrightness(), budget)
    answered = 0
    was_exhausted = False
    for n in batches:
        before = oracle.used
        if n <= oracle.remaining:
            out = oracle(images(n))
            assert out.shape == (n,)
            assert oracle.used == before + n  # charged exactly len(batch)
            answered += n
        else:
            with pytest.raises(BudgetExhausted):
                oracle(images(n))
            assert oracle.used == before  # a refused batch charges nothing
        assert 0 <= oracle.used <= budget
        assert oracle.remaining == budget - oracle.used
        if was_exhausted:
            assert oracle.exhausted  # sticky
        was_exhausted = oracle.exhausted
    log = oracle.query_log()
    assert len(log) == answered == oracle.used
    assert oracle.exhausted == (oracle.used == budget)


def test_charged_before_work_even_if_reward_raises():
    oracle = BudgetedOracle(Failing(), 10)
    with pytest.raises(RuntimeError, match="oracle down"):
        oracle(images(4))
    assert oracle.used == 4 and len(oracle.query_log()) == 0


def test_log_records_conditions_and_rewards():
    oracle = BudgetedOracle(MeanBrightness(), 10)
    x = images(3)
    r = oracle(x, torch.tensor([2, 0, 1]))
    oracle(images(2))
    log = oracle.query_log()
    assert log.call.tolist() == [0, 0, 0, 1, 1]
    assert log.condition.tolist() == [2, 0, 1, -1, -1]
    torch.testing.assert_close(torch.from_numpy(log.reward[:3]).float(), r)


def test_budget_zero_is_exhausted_from_the_start():
    oracle = BudgetedOracle(MeanBrightness(), 0)
    assert oracle.exhausted
    with pytest.raises(BudgetExhausted):
        oracle(images(1))


def test_gradients_pass_through_for_differentiable_rewards():
    oracle = BudgetedOracle(MeanBrightness(), 4)
    x = images(2).requires_grad_()
    oracle(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 1 / 4))


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_bad_budgets_raise(bad):
    with pytest.raises(ConfigError):
        BudgetedOracle(MeanBrightness(), bad)


def test_empty_batch_is_an_error():
    with pytest.raises(ValueError):
        BudgetedOracle(MeanBrightness(), 3)(images(0))
