"""Online rounds (surrogate ensemble + UCB), the BO baseline and the sequence metrics, on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchsuite.config import resolve
from benchsuite.errors import ConfigError
from benchsuite.methods.online import EnsembleSurrogate, OnlineRounds, SurrogateOracle
from benchsuite.metrics.sequences import hamming_vendi, mean_pairwise_hamming, novelty, query_metrics
from benchsuite.runner import run
from benchsuite.spaces import ImageSpace
from benchsuite.tasks import OnlineSpec, parse_card

torch.set_num_threads(1)


def test_round_sizes_split_the_budget():
    spec = OnlineSpec(rounds=4)
    assert spec.round_sizes(2048) == [512] * 4
    assert spec.round_sizes(10) == [2, 2, 2, 4]
    assert sum(spec.round_sizes(1001)) == 1001
    assert spec.round_sizes(3) == [3]  # fewer queries than rounds: one round
    assert spec.round_sizes(0) == []
    # queries left in the current round: rounds of 2, 2, 2, 4 end at 2, 4, 6, 10
    assert [spec.round_left(10, used) for used in (0, 1, 2, 5, 6, 9, 10)] == [2, 1, 2, 1, 4, 1, 0]
    assert spec.round_left(0, 0) == 0


def test_refit_steps_are_capped_by_epochs_then_by_steps():
    spec = OnlineSpec(fit_steps=200, fit_epochs=50, fit_batch=128)
    assert spec.refit_steps(128) == 50  # 50 epochs of one minibatch
    assert spec.refit_steps(300) == 118  # ceil(50 * 300 / 128)
    assert spec.refit_steps(512) == spec.refit_steps(4096) == 200
    assert spec.refit_steps(1) == 1


def test_inner_steps_scale_with_the_rounds_queries():
    spec = OnlineSpec(inner_sample_ratio=1.0)
    assert spec.inner_steps(512, 64) == 8  # the cards' default budget: 4 rounds of 512, batch 64
    assert spec.inner_steps(128, 64) == 2  # a 512-query budget
    assert spec.inner_steps(100, 64) == 2  # ceil(100 / 64)
    assert spec.inner_steps(3, 64) == 1  # never 0: every round trains
    assert OnlineSpec(inner_sample_ratio=2.5).inner_steps(128, 64) == 5  # ceil(2.5 * 2)


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"fit_epochs": 0}, {"inner_sample_ratio": 0}, {"inner_steps": 8}, {"ensemble_size": 1}, {"bonus": -1.0}, {"lr": 0}, {"what": 1}])
def test_online_card_values_are_checked(bad):
    """Each bad value is refused with a ConfigError naming the online block (the old inner_steps key also
    says what replaced it)."""
    card = {"id": "x-v0", "backbone": "tiny", "oracle": {"name": "mean-brightness"},
            "judges": {"b": {"name": "mean-brightness"}}, "primary_judge": "b", "eval": {"samples_per_condition": 2},
            "default_budget": 8, "online": bad}
    with pytest.raises(ConfigError, match="online") as info:
        parse_card(card, "card.yaml")
    assert ("inner_steps was replaced by inner_sample_ratio" in str(info.value)) == ("inner_steps" in bad)


class _Const(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, x, c):
        return self.value.expand(len(x)) + 0 * x.flatten(1).sum(1)


def test_ucb_is_mean_plus_bonus_times_member_std_on_the_reward_scale():
    spec = OnlineSpec(ensemble_size=3, bonus=2.0)
    s = EnsembleSurrogate(ImageSpace(1), None, spec, torch.Generator().manual_seed(0))
    s.members = nn.ModuleList([_Const(v) for v in (0.0, 1.0, 2.0)])
    s.mean, s.std = 10.0, 3.0  # standardisation of the targets
    x = torch.zeros(5, 1, 2, 2)
    mean, std = s.predict(x, None)
    # members predict 0, 1, 2 standardised: mean 1, unbiased std 1 -> reward scale 10 + 3*1 = 13, std 3
    torch.testing.assert_close(mean, torch.full((5,), 13.0))
    torch.testing.assert_close(std, torch.full((5,), 3.0))
    torch.testing.assert_close(SurrogateOracle(s)(x), torch.full((5,), 13.0 + 2.0 * 3.0))


def test_ensemble_fit_learns_a_simple_function():
    spec = OnlineSpec(ensemble_size=2, fit_steps=300, fit_epochs=300, width=16, lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    s = EnsembleSurrogate(ImageSpace(1), None, spec, gen)
    x = torch.rand(128, 1, 4, 4, generator=gen)
    y = x.mean((1, 2, 3)) * 4
    s.add(x, None, y)
    s.fit()
    pred, _ = s.predict(x, None)
    assert torch.corrcoef(torch.stack([pred, y]))[0, 1] > 0.9


def test_online_rounds_spend_one_oracle_call_per_round_and_train_on_the_surrogate():
    config = resolve("toy-online-v0", "ddpo", seed=0, budget=100)
    result = run(config, write=False)
    calls = np.unique(result.query_log.call, return_counts=True)[1]
    assert calls.tolist() == [25, 25, 25, 25]  # 4 rounds, one oracle call each: nothing else was charged
    assert [t["train/round"] for t in result.train] == [1.0, 2.0, 3.0, 4.0]
    # 25 queries per round, the toy DDPO batch is 32: ceil(25 / 32) = 1 inner step per round
    assert [t["train/inner_steps"] for t in result.train] == [1.0] * 4
    assert all("inner/loss" in t or any(k.startswith("inner/") for k in t) for t in result.train)


def test_online_wrapper_is_only_for_methods_that_train():
    from benchsuite.registry import METHODS
    from benchsuite.runner import build_method
    from benchsuite.tasks import make_task

    task = make_task("toy-online-v0")
    for name, wrapped in (("ddpo", True), ("best-of-n", False), ("bo", False), ("pretrained", False)):
        config = resolve("toy-online-v0", name, seed=0, budget=64)
        m = build_method(config, task, task.make_policy(), torch.Generator().manual_seed(0))
        assert isinstance(m, OnlineRounds) == wrapped
        assert METHODS.load(name).trains_policy == wrapped


@pytest.mark.parametrize("name", ["best-of-n", "bo"])
def test_reference_baselines_query_in_the_online_rounds(name):
    """On a task with online rounds the baselines spend each round in one oracle call, whatever their preset batch
    (toy-online-v0: 4 rounds; 100 queries -> 25 + 25 + 25 + 25, 103 -> 25 + 25 + 25 + 28)."""
    for budget, sizes in ((100, [25, 25, 25, 25]), (103, [25, 25, 25, 28])):
        result = run(resolve("toy-online-v0", name, seed=0, budget=budget), write=False)
        assert np.unique(result.query_log.call, return_counts=True)[1].tolist() == sizes


def test_bo_queries_distinct_pool_members_and_beats_random_on_a_smooth_reward():
    config = resolve("toy-brightness-v0", "bo", seed=0, budget=192)
    result = run(config, write=False)
    rewards = result.query_log.reward
    first, later = rewards[:32].mean(), rewards[-64:].mean()  # the random start vs GP-chosen batches
    assert later > first
    config_bon = resolve("toy-brightness-v0", "best-of-n", seed=0, budget=192)
    assert rewards.max() >= run(config_bon, write=False).query_log.reward.max() - 0.05


def test_bo_never_queries_a_pool_member_twice():
    from benchsuite.methods.bo import BayesianOptimization
    from benchsuite.runner import build_method
    from benchsuite.tasks import make_task

    task = make_task("toy-brightness-v0")
    config = resolve("toy-brightness-v0", "bo", seed=1, budget=160)
    policy = task.make_policy()
    m = build_method(config, task, policy, torch.Generator().manual_seed(1))
    assert isinstance(m, BayesianOptimization)
    oracle = task.train_oracle(160)
    while not oracle.exhausted:
        m.step(oracle)
    assert len(torch.unique(m.queried)) == len(m.queried) == 160
    np.testing.assert_allclose(m.scores.numpy(), oracle.query_log().reward)


# ---- sequence metrics against hand computations -------------------------------------------------------------
def test_hamming_metrics_by_hand():
    t = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    # pairwise normalised distances: (a,b)=0.5, (a,c)=1.0, (b,c)=0.5 -> mean 2/3
    assert mean_pairwise_hamming(t) == pytest.approx(2 / 3)
    # identical sequences: Vendi 1; n mutually disjoint sequences: K = I, Vendi n
    assert hamming_vendi(torch.zeros(4, 5, dtype=torch.int64)) == pytest.approx(1.0)
    assert hamming_vendi(torch.arange(3)[:, None].expand(3, 6)) == pytest.approx(3.0)
    frac, dist = novelty(t, torch.tensor([[0, 0, 0, 0], [1, 1, 1, 0]]))
    # a is in the reference (0); b: min(0.5, 0.75) = 0.5; c: min(1.0, 0.25) = 0.25
    assert frac == pytest.approx(2 / 3) and dist == pytest.approx((0 + 0.5 + 0.25) / 3)


def test_query_metrics_by_hand():
    r = np.array([0.1, -1.0, 0.7, 0.3, -1.0])
    m = query_metrics(r, top_k=2, infeasible_value=-1.0)
    assert m == {"query/best": 0.7, "query/top2_mean": pytest.approx(0.5), "query/feasible_frac": 0.6}
    assert query_metrics(np.zeros(0)) == {}


def test_sequence_evaluation_measures_novelty_against_the_training_set():
    from benchsuite.evaluation import evaluate
    from benchsuite.policies.sequence import shipped_model, training_tokens
    from benchsuite.tasks import make_task

    train = training_tokens("ehrlich-s32-l32")
    assert train.shape == (shipped_model("ehrlich-s32-l32").train.num_sequences, 32)
    assert novelty(train[:64], train) == (0.0, 0.0)  # training sequences are not novel
    task = make_task("ehrlich-s32-l32-v0")
    policy = task.make_policy()
    metrics, samples, _, _ = evaluate(policy, policy.frozen_copy(), task)
    assert samples.shape[1:] == (32, 32)
    assert 0.0 <= metrics["eval/novelty_frac"] <= 1.0 and 0.0 <= metrics["eval/novelty_hamming"] <= 1.0
    # sampled sequences of length 32 over 32 states are almost never copies of one of 16384 training sequences
    assert metrics["eval/novelty_frac"] > 0.9 and metrics["eval/novelty_hamming"] > 0.0


def test_under_pmo_accounting_the_surrogate_fits_only_the_charged_samples():
    """A round's repeats and invalid samples (free under PMO accounting) add nothing to the surrogate, and a round
    that charged nothing keeps the last fit; with every sample charged (the default) all of them are added."""
    from benchsuite.runner import build_method
    from benchsuite.tasks import make_task

    task = make_task("toy-online-v0")
    config = resolve("toy-online-v0", "ddpo", seed=0, budget=64)
    method = build_method(config, task, task.make_policy(), torch.Generator().manual_seed(0))
    x, y = torch.rand(6, 1, 8, 8), torch.linspace(0, 1, 6)
    conds = torch.arange(6) % 3
    assert np.isfinite(method._learn(x, conds, y, None)) and len(method.surrogate.rewards) == 6
    weights = [p.clone() for p in method.surrogate.members.parameters()]
    assert np.isnan(method._learn(x, conds, y, np.zeros(6, dtype=bool)))  # all free: no data, no refit
    assert len(method.surrogate.rewards) == 6
    assert all(torch.equal(a, b) for a, b in zip(weights, method.surrogate.members.parameters()))
    charged = np.array([True, False, True, False, False, False])
    assert np.isfinite(method._learn(x + 1, conds, y + 1, charged))
    assert method.surrogate.rewards.tolist() == pytest.approx([*y.tolist(), 1.0, 1.4])
    assert method.surrogate.conditions.tolist() == [*conds.tolist(), 0, 2]
