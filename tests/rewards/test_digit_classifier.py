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
