"""Metric functions against hand computations."""

import math

import pytest
import torch

from benchsuite.metrics import frechet_distance, mean_pairwise_distance, reward_summary, vendi_score


def test_reward_summary_by_hand():
    s = reward_summary(torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0]), top_fraction=0.4)
    assert s["mean"] == 4.0 and s["median"] == 3.0 and s["top40"] == 7.0
    assert s["std"] == pytest.approx(math.sqrt(((1 - 4) ** 2 + 4 + 1 + 0 + 36) / 4))
    assert reward_summary(torch.arange(20.0))["top10"] == 18.5  # mean of the best 2 of 20


def test_mean_pairwise_distance_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [0.0, 1.0]])
    assert mean_pairwise_distance(x[:2]) == pytest.approx(5.0)
    # groups {0,1}: 5; {2,3}: 1 -> mean 3
    assert mean_pairwise_distance(x, torch.tensor([0, 0, 1, 1])) == pytest.approx(3.0)
    # three points: pairs 5, 0, 5 -> mean 10/3
    assert mean_pairwise_distance(x[:3]) == pytest.approx(10 / 3)


def test_vendi_extremes():
    assert vendi_score(torch.ones(6, 4)) == pytest.approx(1.0)
    assert vendi_score(torch.eye(5)) == pytest.approx(5.0)
    # two groups: identical (1) and orthogonal (3) -> mean 2
    x = torch.cat([torch.ones(3, 3), torch.eye(3)])
    assert vendi_score(x, torch.tensor([0, 0, 0, 1, 1, 1])) == pytest.approx(2.0)


def test_frechet_distance_by_hand():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 3, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a shift by mu changes only the mean term: ||mu||^2
    assert frechet_distance(a + torch.tensor([1.0, 2.0, 2.0]), a) == pytest.approx(9.0, rel=1e-6)
    # 1-D: (m1-m2)^2 + (s1-s2)^2 for Gaussians
    b = torch.tensor([[0.0], [2.0]])  # mean 1, var 2 (unbiased)
    c = torch.tensor([[0.0], [4.0]])  # mean 2, var 8
    assert frechet_distance(b, c) == pytest.approx(1.0 + (math.sqrt(2) - math.sqrt(8)) ** 2)


def test_gold_proxy_gap_logged_when_the_card_names_a_gold_judge(tmp_path, monkeypatch):
    import yaml

    from benchsuite import tasks
    from benchsuite.evaluation import evaluate

    card = yaml.safe_load(open(tasks.load_spec("toy-brightness-v0").source).read())
    card["judges"]["gold"] = {"name": "mean-brightness", "version": "0"}
    card["gold_judge"] = "gold"
    spec = tasks.parse_card(card, "toy.yaml")
    task = tasks.Task(spec)
    policy = task.make_policy()
    metrics, *_ = evaluate(policy, policy.frozen_copy(), task)
    assert metrics["eval/gold_proxy_gap"] == pytest.approx(metrics["eval/gold_mean"] - metrics["eval/brightness_mean"])
    card["gold_judge"] = "brightness"
    with pytest.raises(Exception, match="other than the primary"):
        tasks.parse_card(card, "toy.yaml")


def test_eval_rollouts_of_the_unchanged_pretrained_policy_are_cached_and_nothing_else():
    """The evaluation cache serves a pretrained policy's rollout again (same samples and metrics, no model call),
    never a policy whose weights changed, and never one sharing weights with its reference."""
    from benchsuite import evaluation
    from benchsuite.tasks import make_task

    task = make_task("toy-brightness-v0")
    policy = task.make_policy()
    reference = policy.frozen_copy()
    evaluation._ROLLOUT_CACHE.clear()
    first, images, _, _ = evaluation.evaluate(policy, reference, task)
    assert len(evaluation._ROLLOUT_CACHE) == 1
    calls = []
    handle = policy.denoiser.register_forward_hook(lambda *a: calls.append(1))
    again, images_again, _, _ = evaluation.evaluate(policy, reference, task)
    assert calls == [] and again == first and torch.equal(images, images_again)

    with torch.no_grad():  # a changed policy is sampled afresh, and its result is not cached
        next(policy.denoiser.parameters()).add_(0.1)
    changed, images_changed, _, _ = evaluation.evaluate(policy, reference, task)
    assert calls and changed["eval/kl"] > 0 and not torch.equal(images, images_changed)
    assert len(evaluation._ROLLOUT_CACHE) == 1
    handle.remove()

    shared = task.make_policy()
    calls.clear()
    shared.denoiser.register_forward_hook(lambda *a: calls.append(1))
    evaluation.evaluate(shared, shared, task)  # shared storage: never cached, always sampled
    evaluation.evaluate(shared, shared, task)
    assert len(calls) >= 2 and len(evaluation._ROLLOUT_CACHE) == 1
    evaluation._ROLLOUT_CACHE.clear()
