"""Two evaluation sets per card (``tasks.EvalProtocol``): the selection set every choice reads (``select/``), the
test set the reported numbers come from (``eval/``), their noise drawn from the run's seed."""

from __future__ import annotations

import os

import pytest
import torch

from benchsuite import tasks
from benchsuite.config import resolve, task_digest
from benchsuite.errors import ConfigError
from benchsuite.evaluation import evaluate
from benchsuite.runner import run
from benchsuite.tuning import objective_value

TOY_CARD = """id: toy-sets-v0
description: toy with two evaluation sets
backbone: tiny
sampler: {num_steps: 5, eta: 1.0}
oracle: {name: mean-brightness, version: "0"}
judges:
  brightness: {name: mean-brightness, version: "0"}
primary_judge: brightness
conditions:
  train: [0, 1, 2]
  eval: [0, 1, 2]
%s
allow_eval_on_train_conditions: true
eval: {samples_per_condition: 8, seed: 7%s}
drift_budget: 2
default_budget: 256
"""


@pytest.fixture
def card(tmp_path, monkeypatch):
    """``card(eval_extra, conditions_extra)``: write a toy card with those additions; returns its TaskSpec."""

    def write(selection=", selection: {samples_per_condition: 4}", conditions=""):
        (tmp_path / "toy-sets-v0.yaml").write_text(TOY_CARD % (conditions, selection))
        monkeypatch.setenv("BENCHSUITE_TASKS_DIR", os.fspath(tmp_path))
        tasks._cards.cache_clear()
        return tasks.load_spec("toy-sets-v0")

    yield write
    tasks._cards.cache_clear()


def test_the_card_declares_the_selection_set(card):
    spec = card(conditions="  selection: [1, 2]")
    assert spec.protocol == tasks.EvalProtocol(4, (1, 2))
    task = tasks.Task(spec)
    assert task.eval_conditions("selection").tolist() == [1] * 4 + [2] * 4
    assert task.eval_conditions("test").tolist() == [0] * 8 + [1] * 8 + [2] * 8


@pytest.mark.parametrize("selection, conditions, message", [
    (", selection: {samples_per_condition: 0}", "", "positive integer"),
    (", selection: {samples: 4}", "", "samples_per_condition alone"),
    ("", "  selection: [1]", "needs eval.selection"),
])
def test_a_malformed_selection_set_is_refused_in_one_line(card, selection, conditions, message):
    with pytest.raises(ConfigError, match=message):
        card(selection, conditions)


def test_noise_seeds_differ_by_set_and_run_seed_and_legacy_cards_keep_their_fixed_seed(card):
    task = tasks.Task(card())
    seeds = {(split, s): task.eval_noise_seed(split, s) for split in tasks.SPLITS for s in (0, 1)}
    assert len(set(seeds.values())) == 4  # disjoint sets, a new draw per run seed
    assert seeds[("test", 0)] == tasks.noise_seed(7, "test", 0)  # a function of (card seed, set, run seed) alone
    with pytest.raises(ValueError, match="run_seed"):
        task.eval_noise_seed("test")
    legacy = tasks.make_task("toy-brightness-v0")
    assert legacy.eval_noise_seed("test", 0) == legacy.eval_noise_seed("test", 5) == legacy.spec.eval_seed
    with pytest.raises(ValueError, match="no 'selection'"):
        legacy.eval_samples("selection")


def test_a_card_without_the_protocol_keeps_its_digest(card):
    spec = card()
    import dataclasses

    assert task_digest(dataclasses.replace(spec, protocol=None)) != task_digest(spec)
    v1 = tasks.load_spec("toy-brightness-v0")
    assert v1.protocol is None and "protocol" not in repr(v1)  # the digests of existing cards do not move


def test_the_test_and_selection_sets_are_disjoint_samples_and_paired_across_methods(card):
    task = tasks.Task(card())
    policy = task.make_policy()
    reference = policy.frozen_copy()
    test0, images0, _, _ = evaluate(policy, reference, task, run_seed=0)
    select0, images_sel, _, _ = evaluate(policy, reference, task, split="selection", run_seed=0)
    _, images_again, _, _ = evaluate(task.make_policy(), reference, task, run_seed=0)
    _, images1, _, _ = evaluate(policy, reference, task, run_seed=1)
    assert set(select0) >= {"select/brightness_mean", "select/kl"} and not any(k.startswith("eval/") for k in select0)
    assert "eval/diversity" in test0 and "select/diversity" not in select0  # the selection set: judges and KL
    assert len(images_sel) == 12 and len(images0) == 24
    assert torch.equal(images0, images_again)  # another method's run of seed 0 sees the same test noise
    assert not torch.equal(images0, images1)  # another seed draws new noise (the pretrained row varies too)
    assert not torch.equal(images0[:12], images_sel)


def test_a_run_logs_both_sets_and_tuning_reads_the_selection_set(card):
    card()
    result = run(resolve("toy-sets-v0", "ddpo", seed=0, budget=64, eval_fractions=(0.0, 0.5, 1.0)), write=False)
    assert all({"select/brightness_mean", "select/kl", "eval/brightness_mean", "eval/kl"} <= set(p)
               for p in result.curve)
    curve = result.curve
    best_selection = max(p["select/brightness_mean"] for p in curve if p["select/kl"] <= 2.0)
    assert objective_value("eval/brightness_mean.matched", curve, 2.0) == best_selection
    assert objective_value("eval/brightness_mean", curve, None) == curve[-1]["select/brightness_mean"]
    # a curve without selection metrics (a one-set card) is read as before
    plain = [{k: v for k, v in p.items() if not k.startswith("select/")} for p in curve]
    assert objective_value("eval/brightness_mean", plain, None) == curve[-1]["eval/brightness_mean"]
