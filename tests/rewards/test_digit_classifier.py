"""The digit classifier judge: accuracy on real digits and the DigitClassProbability reward contract."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchsuite.policies.digits import NUM_CLASSES, load_digits_images
from benchsuite.rewards.digit_classifier import DigitClassProbability, fit_digit_classifier, predict_digits

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def real_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All real digits as ``N x 1 x 8 x 8`` images in [0, 1] and their labels."""
    images, labels = load_digits_images()
    return (images + 1) / 2, labels


def test_fit_is_cached():
    assert fit_digit_classifier() is fit_digit_classifier()


def test_training_accuracy_is_high(real_digits):
    images, labels = real_digits
    predicted = predict_digits(images)
    assert predicted.dtype == torch.int64 and predicted.shape == labels.shape
    assert (predicted == labels).float().mean().item() > 0.95


def test_cross_validated_accuracy_is_high(real_digits):
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    images, labels = real_digits
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    with threadpool_limits(limits=1, user_api="blas"):
        scores = cross_val_score(clone(fit_digit_classifier()), images.flatten(1).numpy(), labels.numpy(), cv=folds)
    assert scores.mean() > 0.95


def test_reward_attributes():
    reward = DigitClassProbability()
    assert reward.name == "digit-class-probability"
    assert reward.version == "0"
    assert reward.differentiable is False


def test_reward_is_the_probability_of_the_condition_class(real_digits):
    images, labels = real_digits
    reward = DigitClassProbability()
    right = reward(images[:200], labels[:200])
    wrong = reward(images[:200], (labels[:200] + 1) % NUM_CLASSES)
    assert right.shape == (200,) and right.dtype == torch.float32
    assert right.min() >= 0 and right.max() <= 1
    assert right.mean() > 0.8 and wrong.mean() < 0.1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6))
def test_reward_over_all_conditions_sums_to_one(seed, batch):
    images = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    reward = DigitClassProbability()
    per_class = torch.stack([reward(images, torch.full((batch,), k)) for k in range(NUM_CLASSES)], dim=1)
    assert per_class.shape == (batch, NUM_CLASSES)
    assert torch.allclose(per_class.sum(1), torch.ones(batch), atol=1e-5)


def test_reward_requires_conditions():
    with pytest.raises(ValueError, match="conditions are required"):
        DigitClassProbability()(torch.rand(3, 1, 8, 8))


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (2, 1, 8, 9)])
def test_reward_rejects_other_image_sizes(shape):
    with pytest.raises(ValueError, match="8 x 8"):
        DigitClassProbability()(torch.rand(shape), torch.zeros(shape[0], dtype=torch.int64))


def test_reward_rejects_conditions_outside_the_digits():
    with pytest.raises(ValueError, match="0..9"):
        DigitClassProbability()(torch.rand(2, 1, 8, 8), torch.tensor([3, 10]))


def test_predict_digits_rejects_colour_images():
    with pytest.raises(ValueError, match="B x 1 x 8 x 8"):
        predict_digits(torch.rand(2, 3, 8, 8))


# ---- the proxy / gold pair of digits-classifier-v0 ----------------------------------------------------------
from benchsuite.rewards.digit_classifier import (  # noqa: E402
    DigitTargetGold,
    DigitTargetProxy,
    digits_halves,
    fit_gold_classifier,
    fit_proxy_classifier,
)


def test_halves_are_disjoint_and_cover_the_digits():
    (xa, ya), (xb, yb) = digits_halves()
    assert len(xa) + len(xb) == 1797 and abs(len(xa) - len(xb)) <= 1
    rows_a = {tuple(r) for r in xa.tolist()}
    # sklearn's digits hold a few exact duplicate images; all but those must be on one side only
    assert sum(tuple(r) in rows_a for r in xb.tolist()) < 20


def test_proxy_and_gold_generalise_to_the_half_they_never_saw():
    (xa, ya), (xb, yb) = digits_halves()
    proxy_acc = (fit_proxy_classifier()(xb).argmax(1) == yb).float().mean().item()
    gold_acc = (torch.as_tensor(fit_gold_classifier().predict(xa.double().numpy())) == ya).float().mean().item()
    assert proxy_acc > 0.9 and gold_acc > 0.9


def test_proxy_is_the_softmax_probability_of_the_target_and_differentiable():
    (xa, _), _ = digits_halves()
    images = xa[:6].reshape(6, 1, 8, 8).clone().requires_grad_(True)
    r = DigitTargetProxy(target=3)(images)
    by_hand = torch.softmax(fit_proxy_classifier()(xa[:6]), dim=1)[:, 3]
    torch.testing.assert_close(r, by_hand)
    r.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_gold_is_the_svc_probability_and_not_differentiable():
    _, (xb, yb) = digits_halves()
    images = xb[:8].reshape(8, 1, 8, 8)
    r = DigitTargetGold(target=int(yb[0]))(images)
    by_hand = torch.as_tensor(fit_gold_classifier().predict_proba(xb[:8].double().numpy())[:, int(yb[0])]).float()
    torch.testing.assert_close(r, by_hand)
    assert DigitTargetGold.differentiable is False and DigitTargetProxy.differentiable is True


@pytest.mark.parametrize("bad", [-1, 10, 2.5, "3"])
def test_target_must_be_a_digit(bad):
    with pytest.raises(ValueError, match="target"):
        DigitTargetProxy(target=bad)
