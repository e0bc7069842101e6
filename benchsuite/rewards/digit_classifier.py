"""A digit classifier fitted on the real 8x8 digits, used as an evaluation judge and by tests.

``fit_digit_classifier`` fits an RBF support-vector classifier with Platt-scaled (sigmoid) probabilities on
all 1797 scikit-learn digits (pixel values scaled to [0, 1] = ``pixel / 16``), deterministically and in well
under a second; the fit is cached per process. Its 5-fold cross-validated accuracy on real digits is about
0.99. ``DigitClassProbability`` turns it into a (non-differentiable) reward: the classifier's probability
that an image shows the digit it was conditioned on.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from benchsuite.rewards.base import Reward

IMAGE_SIZE = 8
"""Height and width of the images the classifier accepts."""


@lru_cache(maxsize=1)
def fit_digit_classifier():
    """Fit (once per process) a calibrated RBF ``SVC`` on all 1797 digits.

    Probabilities come from sigmoid (Platt) calibration on deterministic 5-fold cross-validated decision
    values of the SVC (``ensemble=False``: one SVC refitted on all data). The model takes ``N x 64`` float
    arrays with values in [0, 1] (row-major flattened ``8 x 8`` images) and predicts the digit ``0..9``;
    ``predict_proba`` columns are ordered by digit.

    The fit runs with BLAS limited to one thread: the calibration's many tiny L-BFGS problems are about
    8x slower with a multi-threaded OpenBLAS (measured: 1.8 s vs 0.23 s on two cores).
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC
    from threadpoolctl import threadpool_limits

    digits = load_digits()
    clf = CalibratedClassifierCV(SVC(kernel="rbf"), method="sigmoid", cv=5, ensemble=False)
    with threadpool_limits(limits=1, user_api="blas"):
        return clf.fit(digits.data / 16.0, digits.target)


def _features(images: Tensor) -> np.ndarray:
    """``B x 1 x 8 x 8`` images in [0, 1] -> ``B x 64`` float64 array (values clamped to [0, 1])."""
    if images.ndim != 4 or images.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"digit classifier expects B x 1 x {IMAGE_SIZE} x {IMAGE_SIZE} images, got shape {tuple(images.shape)}"
        )
    return images.detach().to("cpu", torch.float64).clamp(0, 1).reshape(len(images), -1).numpy()


def predict_digits(images: Tensor) -> Tensor:
    """The classifier's predicted digit for each image.

    Args:
        images: ``B x 1 x 8 x 8`` float tensor in [0, 1].

    Returns:
        ``B`` int64 tensor of digits ``0..9``.
    """
    return torch.as_tensor(fit_digit_classifier().predict(_features(images)), dtype=torch.int64)


def digit_probabilities(images: Tensor) -> Tensor:
    """The classifier's class probabilities, a ``B x 10`` float32 tensor (column ``k`` is digit ``k``)."""
    return torch.as_tensor(fit_digit_classifier().predict_proba(_features(images)), dtype=torch.float32)


class DigitClassProbability(Reward):
    """Probability, under a classifier fitted on real digits, that each image shows its condition digit.

    Samples are ``B x 1 x 8 x 8`` images in [0, 1]; ``conditions`` (required) is a ``B`` long tensor of
    digits ``0..9``. The reward lies in [0, 1] and is not differentiable (scikit-learn model).
    """

    name = "digit-class-probability"
    version = "0"
    differentiable = False
    value_range = (0.0, 1.0)

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        if conditions is None:
            raise ValueError(
                f"{self.name}: conditions are required (the B digit ids the samples should show); got None"
            )
        if samples.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"{self.name}: expects {IMAGE_SIZE} x {IMAGE_SIZE} images, got shape {tuple(samples.shape)}"
            )
        cond = conditions.detach().to("cpu", torch.int64)
        if bool(((cond < 0) | (cond > 9)).any()):
            raise ValueError(f"{self.name}: conditions must be digits 0..9, got {cond.unique().tolist()}")
        probs = digit_probabilities(samples)
        return probs.gather(1, cond[:, None]).squeeze(1).to(samples.device)


# ---- a proxy / gold pair for over-optimisation studies ------------------------------------------------------
# The proxy is what a method trains against (differentiable, fitted on one half of the digits); the gold judge
# is a different kind of model fitted on the other half, used only for evaluation. The gap between the two as
# training proceeds measures how much of the reward gain is exploitation of the proxy (the setup of Gao et al.
# 2023, "Scaling laws for reward model overoptimization", transplanted to digits).

PROXY_CONFIG = {"hidden": 64, "steps": 200, "lr": 2e-2, "weight_decay": 1e-3, "seed": 0, "split_seed": 0}
"""Proxy classifier: an MLP 64 -> hidden -> 10 (SiLU), full-batch AdamW on half A of the digits."""


def digits_halves() -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The real digits split in two disjoint halves by a fixed permutation (``PROXY_CONFIG['split_seed']``):
    ``((images_a, labels_a), (images_b, labels_b))`` with images ``N x 64`` float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(PROXY_CONFIG["split_seed"]))
    a, b = perm[: len(x) // 2], perm[len(x) // 2:]
    return (x[a], y[a]), (x[b], y[b])


@lru_cache(maxsize=1)
def fit_proxy_classifier() -> torch.nn.Module:
    """Fit (once per process, deterministically, well under a second) the proxy MLP on half A; eval mode,
    gradients off for its parameters (gradients still flow to its inputs)."""
    (x, y), _ = digits_halves()
    cfg = PROXY_CONFIG
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = torch.nn.Sequential(torch.nn.Linear(64, cfg["hidden"]), torch.nn.SiLU(), torch.nn.Linear(cfg["hidden"], 10))
    with torch.no_grad():
        for p in model.parameters():  # seeded init independent of the global RNG
            p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if p.ndim == 1 else (1.0 / p.shape[1]) ** 0.5))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    with torch.enable_grad():
        for _ in range(cfg["steps"]):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def fit_gold_classifier():
    """Fit (once per process) the gold judge: a calibrated RBF SVC (as ``fit_digit_classifier``) on half B."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC
    from threadpoolctl import threadpool_limits

    _, (x, y) = digits_halves()
    clf = CalibratedClassifierCV(SVC(kernel="rbf"), method="sigmoid", cv=5, ensemble=False)
    with threadpool_limits(limits=1, user_api="blas"):
        return clf.fit(x.double().numpy(), y.numpy())


class _TargetDigit(Reward):
    """Probability that an (unconditional) sample shows the digit ``target``."""

    version = "0"
    value_range = (0.0, 1.0)

    def __init__(self, target: int = 0):
        if not (isinstance(target, int) and 0 <= target <= 9):
            raise ValueError(f"target must be a digit 0..9, got {target!r}")
        self.target = target

    def _check_size(self, samples: Tensor) -> None:
        if samples.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"{self.name}: expects B x 1 x {IMAGE_SIZE} x {IMAGE_SIZE} images, got {tuple(samples.shape)}")


class DigitTargetProxy(_TargetDigit):
    """Proxy reward: the MLP's probability (fitted on half A of the digits) that the image shows ``target``.
    Differentiable in the pixels; ``conditions`` are ignored (the task is unconditional)."""

    name = "digit-target-proxy"
    differentiable = True

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        self._check_size(samples)
        model = fit_proxy_classifier().to(samples.device)
        logits = model(samples.float().clamp(0, 1).flatten(1))
        return logits.log_softmax(1)[:, self.target].exp()


class DigitTargetGold(_TargetDigit):
    """Gold judge: the calibrated SVC's probability (fitted on half B) that the image shows ``target``.
    Not differentiable; for evaluation only."""

    name = "digit-target-gold"
    differentiable = False

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        self._check_size(samples)
        probs = fit_gold_classifier().predict_proba(_features(samples))
        return torch.as_tensor(probs[:, self.target], dtype=torch.float32, device=samples.device)
