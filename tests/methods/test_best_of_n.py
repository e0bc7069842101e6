"""Best-of-N: the kept set, what eval_samples returns, the reported KL and the budget, by hand."""

import io
import math

import pytest
import torch

from benchsuite.budget import BudgetedOracle
from benchsuite.methods.best_of_n import BestOfN, selection_kl_bound
from benchsuite.tasks import TaskInfo
from benchsuite.rewards.brightness import MeanBrightness
from benchsuite.testing import tiny_policy

INFO = TaskInfo("toy", torch.tensor([0, 1, 2]), oracle_differentiable=True)


def make(keep=2, batch=5, info=INFO, seed=0):
    method = BestOfN(BestOfN.Config(batch_size=batch, keep_per_condition=keep))
    method.setup(tiny_policy(), info, torch.Generator().manual_seed(seed))
    return method


def images(values):
    """One 1 x 2 x 2 image per value, filled with it (so an image names where it came from)."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 2, 2).clone()


def test_kept_set_is_the_top_k_per_condition_over_several_batches():
    m = make(keep=2)
    # batch 1: condition 0 gets rewards 0.1, 0.5, 0.3; condition 1 gets 0.2
    m.keep(images([10, 11, 12, 13]), torch.tensor([0, 0, 1, 0]), torch.tensor([0.1, 0.5, 0.2, 0.3]))
    # batch 2: condition 0 gets 0.4 and a tie with the kept 0.3 (the earlier sample wins); condition 1 gets 0.9
    m.keep(images([20, 21, 22]), torch.tensor([0, 1, 0]), torch.tensor([0.4, 0.9, 0.3]))
    imgs0, r0 = m.kept[0]
    imgs1, r1 = m.kept[1]
    assert r0.tolist() == pytest.approx([0.5, 0.4]) and imgs0[:, 0, 0, 0].tolist() == [11, 20]
    assert r1.tolist() == pytest.approx([0.9, 0.2]) and imgs1[:, 0, 0, 0].tolist() == [21, 12]
    assert m.drawn == {0: 5, 1: 2}
    m.keep(images([30, 31]), torch.tensor([0, 0]), torch.tensor([0.3, 0.45]))
    assert m.kept[0][0][:, 0, 0, 0].tolist() == [11, 31]
    m3 = make(keep=3)
    m3.keep(images([1, 2, 3, 4]), torch.tensor([0, 0, 0, 0]), torch.tensor([0.3, 0.1, 0.3, 0.2]))
    assert m3.kept[0][0][:, 0, 0, 0].tolist() == [1, 3, 4]  # tie between the first and third: first wins


def test_eval_samples_returns_kept_images_best_first_and_repeats_when_short():
    m = make(keep=2)
    m.keep(images([10, 11, 12, 13, 14]), torch.tensor([0, 0, 1, 0, 2]), torch.tensor([0.1, 0.5, 0.2, 0.3, 0.0]))
    conds = torch.tensor([1, 0, 0, 0, 1, 2])
    out, kl = m.eval_samples(conds, len(conds))
    # condition 0 keeps [11, 13] (3 drawn); condition 1 keeps [12] (1 drawn), condition 2 keeps [14] (1 drawn)
    assert out[:, 0, 0, 0].tolist() == [12, 11, 13, 11, 12, 14]
    n0 = 3 / 2
    assert kl == pytest.approx(3 * math.log(n0) / 6)  # nats; conditions 1 and 2: n = 1, KL 0


def test_eval_samples_is_none_until_every_requested_condition_has_samples():
    m = make()
    assert m.eval_samples(torch.tensor([0, 1]), 2) is None  # nothing kept yet: the runner judges the pretrained
    m.keep(images([1]), torch.tensor([0]), torch.tensor([0.5]))
    assert m.eval_samples(torch.tensor([0, 1]), 2) is None
    assert m.eval_samples(torch.tensor([0, 0]), 2) is not None


def test_unconditional_task_keeps_one_set():
    m = make(keep=2, info=TaskInfo("toy", None, oracle_differentiable=True))
    oracle = BudgetedOracle(MeanBrightness(), 10)
    while not oracle.exhausted:
        m.step(oracle)
    out, kl = m.eval_samples(None, 3)
    best = torch.from_numpy(oracle.query_log().reward).sort(descending=True).values[:2].float()
    torch.testing.assert_close(out.flatten(1).mean(1), best[[0, 1, 0]])
    assert kl == pytest.approx(math.log(10 / 2))


def test_steps_spend_the_budget_round_robin_and_keep_the_oracle_top_k():
    m = make(keep=2, batch=4)
    oracle = BudgetedOracle(MeanBrightness(), 11)
    steps = 0
    while not oracle.exhausted:
        m.step(oracle)
        steps += 1
    log = oracle.query_log()
    assert steps == 3 and oracle.used == 11 and len(log) == 11  # 4 + 4 + 3
    assert log.condition.tolist() == [0, 1, 2] * 3 + [0, 1]
    assert m.drawn == {0: 4, 1: 4, 2: 3}
    for c in range(3):
        top = torch.from_numpy(log.reward[log.condition == c]).sort(descending=True).values[:2]
        torch.testing.assert_close(m.kept[c][1].double(), top, rtol=1e-6, atol=0)
        # the kept images are the ones that earned those rewards (the oracle is their mean brightness)
        torch.testing.assert_close(m.kept[c][0].flatten(1).mean(1).double(), top, rtol=1e-6, atol=0)


def test_eval_samples_never_queries_the_oracle_nor_draws_randomness():
    m = make(keep=2, batch=6)
    oracle = BudgetedOracle(MeanBrightness(), 12)
    m.step(oracle)
    used, rng = oracle.used, m.generator.get_state()
    out, kl = m.eval_samples(torch.tensor([0, 1, 2, 0]), 4)
    assert oracle.used == used and torch.equal(m.generator.get_state(), rng)
    assert kl == 0.0  # 2 drawn per condition, 2 kept: no selection
    m.step(oracle)
    _, kl = m.eval_samples(torch.tensor([0, 1, 2, 0]), 4)
    assert kl == pytest.approx(math.log(4 / 2))  # 4 drawn per condition, 2 kept


def test_state_survives_a_weights_only_round_trip():
    m = make(keep=2, batch=6)
    m.step(BudgetedOracle(MeanBrightness(), 6))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    other = make(keep=2, batch=6, seed=1)
    other.load_state_dict(torch.load(buf, weights_only=True))
    conds = torch.tensor([0, 1, 2])
    a, b = m.eval_samples(conds, 3), other.eval_samples(conds, 3)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert other.drawn == m.drawn and other.cursor == m.cursor


def test_selection_kl_bound_is_log_candidates_over_kept_and_bounds_the_true_kl():
    assert selection_kl_bound(5, 5) == 0.0
    assert selection_kl_bound(8, 2) == pytest.approx(math.log(4))
    # exact check on a discrete base: N = 4 uniform draws from {0, 1, 2}, keep the top m = 2 by value; the law of a
    # uniformly drawn kept member, computed by enumerating all 3**4 outcomes, has KL to uniform below log(4 / 2)
    import itertools

    law = [0.0, 0.0, 0.0]
    for draws in itertools.product(range(3), repeat=4):
        for x in sorted(draws, reverse=True)[:2]:
            law[x] += 0.5 / 3**4
    kl = sum(p * math.log(p * 3) for p in law if p > 0)
    assert 0 < kl <= selection_kl_bound(4, 2)


def test_keep_zero_keeps_the_tasks_eval_samples_per_condition():
    info = TaskInfo("toy", None, oracle_differentiable=True, eval_samples_per_condition=3)
    m = make(keep=0, info=info)
    m.keep(images([1, 2, 3, 4, 5]), None, torch.tensor([0.1, 0.5, 0.3, 0.2, 0.4]))
    _, rewards = next(iter(m.kept.values()))
    assert rewards.tolist() == pytest.approx([0.5, 0.4, 0.3])  # the top 3, not the old fixed 16
    with pytest.raises(ValueError, match="keep_per_condition"):
        BestOfN.Config(keep_per_condition=-1)
