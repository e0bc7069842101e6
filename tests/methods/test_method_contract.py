"""Contract suite applied to every registered method (listing a method in METHODS enrolls it).

Runs on the toy task (random tiny model, 2x2 images) so the whole suite takes seconds.
"""

import dataclasses
import io

import numpy as np
import pytest
import torch

from benchsuite.testing import deterministic

from benchsuite.config import resolve
from benchsuite.registry import METHODS
from benchsuite.runner import run
from benchsuite.tasks import make_task

TASK = "toy-brightness-v0"
ALL = METHODS.names()


def _run(method, budget, seed=0):
    return run(resolve(TASK, method, seed=seed, budget=budget, eval_fractions=(0.0, 1.0)), write=False)


@pytest.mark.parametrize("method", ALL)
def test_spends_exactly_the_budget_never_more(method):
    cfg = resolve(TASK, method)
    batch = dict(cfg.method_config)["batch_size"]
    budget = 2 * batch + 3  # not a multiple of the batch: the last step must shrink
    result = _run(method, budget)
    assert len(result.query_log) == budget
    assert result.final["queries"] == budget


@pytest.mark.parametrize("method", ALL)
def test_same_seed_same_query_log_and_metrics(method):
    a, b = _run(method, 70, seed=3), _run(method, 70, seed=3)
    np.testing.assert_array_equal(a.query_log.reward, b.query_log.reward)
    np.testing.assert_array_equal(a.query_log.condition, b.query_log.condition)
    assert deterministic(a.final) == deterministic(b.final)
    c = _run(method, 70, seed=4)
    assert not np.array_equal(a.query_log.reward, c.query_log.reward)


@pytest.mark.parametrize("method", ALL)
def test_budget_zero_means_no_update_and_no_query(method):
    cfg = resolve(TASK, method, budget=0)
    task = make_task(TASK)
    policy = task.make_policy()
    before = {k: v.clone() for k, v in policy.denoiser.state_dict().items()}
    result = run(cfg, write=False)
    assert len(result.query_log) == 0
    assert deterministic(result.curve[0]) == deterministic(result.final)  # one evaluation, of the untouched pretrained model
    after = task.make_policy().denoiser.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.final["eval/kl"] == 0.0


@pytest.mark.parametrize("method", ALL)
def test_state_dict_round_trip_resumes_identically(method):
    cls = METHODS.load(method)
    cfg = resolve(TASK, method)
    task = make_task(TASK)

    def fresh():
        m = cls(cls.Config(**dict(cfg.method_config)))
        m.setup(task.make_policy(), task.info, torch.Generator().manual_seed(11))
        return m

    a = fresh()
    oracle_a = task.train_oracle(1000)
    a.step(oracle_a)
    b = fresh()
    # through a file, as the runner's checkpoints do: only tensors and plain containers may be in it
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    oracle_b = task.train_oracle(1000)
    info_a, info_b = a.step(oracle_a), b.step(oracle_b)
    assert info_a == info_b
    for (k, va), (_, vb) in zip(a.policy.denoiser.state_dict().items(), b.policy.denoiser.state_dict().items()):
        assert torch.equal(va, vb), k


@pytest.mark.parametrize("method", ALL)
def test_config_is_frozen_documented_and_validated(method):
    cls = METHODS.load(method)
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    with pytest.raises(ValueError):
        cls.Config(batch_size=0)
    assert cls.__doc__ and cls.name == method


@pytest.mark.parametrize("method", [m for m in ALL if m != "pretrained"])
def test_fine_tuning_changes_the_policy_and_pretrained_does_not(method):
    result = _run(method, 96)
    assert result.final["eval/kl"] > 0
    assert _run("pretrained", 96).final["eval/kl"] == 0.0
