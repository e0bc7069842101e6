"""Budget accounting properties: never overspends, charges len(batch) up front, exhausted is sticky."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchsuite.budget import BudgetedOracle
from benchsuite.errors import BudgetExhausted, ConfigError, OracleError
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
    with pytest.raises(OracleError, match="oracle down"):
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


class Flaky(Reward):
    """Fails in scripted ways before answering: 'raise', 'nan', 'inf', 'hang'."""

    name = "flaky"

    def __init__(self, script):
        self.script, self.calls = list(script), 0

    def _score(self, samples, conditions):
        import time

        self.calls += 1
        fault = self.script.pop(0) if self.script else None
        out = samples.flatten(1).mean(1)
        if fault == "raise":
            raise ConnectionError("lab offline")
        if fault == "nan":
            return out * float("nan")
        if fault == "inf":
            return out + float("inf")
        if fault == "hang":
            time.sleep(0.5)
        return out


@pytest.mark.parametrize("fault", ["raise", "nan", "inf", "hang"])
def test_transient_faults_are_retried_and_charged_once(fault):
    reward = Flaky([fault, fault])
    oracle = BudgetedOracle(reward, 10, retries=2, backoff_s=0.0, timeout_s=0.2)
    out = oracle(images(3))
    assert torch.isfinite(out).all()
    assert oracle.used == 3 and reward.calls == 3 and oracle.failures == 2
    assert len(oracle.query_log()) == 3


@pytest.mark.parametrize("fault", ["raise", "nan", "hang"])
def test_persistent_fault_raises_oracle_error_and_nothing_non_finite_escapes(fault):
    oracle = BudgetedOracle(Flaky([fault] * 5), 10, retries=1, backoff_s=0.0, timeout_s=0.2)
    with pytest.raises(OracleError, match="failed 2 time"):
        oracle(images(4))
    assert oracle.used == 4 and len(oracle.query_log()) == 0


def test_backoff_doubles():
    import time

    oracle = BudgetedOracle(Flaky(["raise", "raise"]), 10, retries=2, backoff_s=0.05)
    t0 = time.perf_counter()
    oracle(images(1))
    assert time.perf_counter() - t0 >= 0.05 + 0.1


def test_state_dict_round_trips_through_safe_torch_load(tmp_path):
    oracle = BudgetedOracle(MeanBrightness(), 20)
    oracle(images(3), torch.tensor([0, 1, 2]))
    oracle(images(2))
    torch.save(oracle.state_dict(), tmp_path / "o.pt")
    other = BudgetedOracle(MeanBrightness(), 20)
    other.load_state_dict(torch.load(tmp_path / "o.pt", weights_only=True))
    assert other.used == 5 and other.remaining == 15
    a, b = oracle.query_log(), other.query_log()
    assert (a.reward == b.reward).all() and (a.condition == b.condition).all() and (a.call == b.call).all()
    other(images(1))
    assert other.query_log().call[-1] == 2
