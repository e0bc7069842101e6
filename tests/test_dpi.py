"""The data-processing check of the path KL (``benchsuite.metrics.dpi``): the math on hand-computed numbers, and
that sampling noise alone never flags a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchsuite.metrics.dpi import binary_kl, dpi_bound, dpi_check, mean_interval


def test_binary_kl_by_hand():
    # 0.5 log(0.5 / 0.25) + 0.5 log(0.5 / 0.75) = 0.5 log 2 + 0.5 log(2 / 3)
    assert binary_kl(0.5, 0.25) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert binary_kl(0.5, 0.25) == pytest.approx(0.143841, abs=1e-6)
    assert binary_kl(0.8, 0.2) == pytest.approx(0.6 * math.log(4))  # 0.8 log 4 + 0.2 log(1 / 4)
    assert binary_kl(0.3, 0.3) == 0.0
    assert binary_kl(0.0, 0.5) == pytest.approx(math.log(2))  # 0 log 0 = 0
    assert binary_kl(1.0, 0.25) == pytest.approx(math.log(4))
    assert binary_kl(0.5, 1.0) == math.inf and binary_kl(1.0, 1.0) == 0.0


def test_wilson_interval_by_hand():
    # z = 3, n = 9: shrink = 1 + 9 / 9 = 2
    lo, hi = mean_interval(0.0, 9)  # center (0 + 0.5) / 2 = 0.25, half 1.5 sqrt(9 / 324) = 0.25
    assert (lo, hi) == pytest.approx((0.0, 0.5))
    assert mean_interval(1.0, 9) == pytest.approx((0.5, 1.0))
    lo, hi = mean_interval(0.5, 9)  # center 0.5, half 1.5 sqrt(1 / 36 + 1 / 36)
    assert (lo, hi) == pytest.approx((0.5 - 1.5 / math.sqrt(18), 0.5 + 1.5 / math.sqrt(18)))
    # n = 36: shrink 1.25, center 0.125 / 1.25 = 0.1, half 2.4 sqrt(9 / 5184) = 0.1
    assert mean_interval(0.0, 36) == pytest.approx((0.0, 0.2))
    assert mean_interval(0.7, 10, z=0) == (0.7, 0.7)
    with pytest.raises(ValueError):
        mean_interval(0.5, 0)


def test_bound_shrinks_the_move_by_the_noise():
    # every sample moved from 0 to 1, 36 each: true means within [0.8, 1] and [0, 0.2], so at least kl(0.8 || 0.2)
    assert dpi_bound(1.0, 0.0, 36) == pytest.approx(0.6 * math.log(4))
    assert dpi_bound(0.0, 1.0, 36) == pytest.approx(0.6 * math.log(4))  # downward alike
    assert dpi_bound(1.0, 0.0, 9) == 0.0  # 9 samples: [0.5, 1] and [0, 0.5] touch
    assert dpi_bound(0.5, 0.25, 10**9, z=0) == pytest.approx(binary_kl(0.5, 0.25))  # z = 0: the plug-in value
    # the bound grows with the samples towards the plug-in value and stays below it
    bounds = [dpi_bound(0.5, 0.25, n) for n in (64, 256, 1024, 10**6)]
    assert bounds[0] == 0.0 and bounds == sorted(bounds) and bounds[-1] < binary_kl(0.5, 0.25)
    assert bounds[-1] == pytest.approx(binary_kl(0.5, 0.25), rel=0.05)
    # another range enters rescaled: [-1, 1] -> [0, 1]
    assert dpi_bound(1.0, -1.0, 36, value_range=(-1.0, 1.0)) == pytest.approx(0.6 * math.log(4))
    # separate sample counts: the pretrained mean from 9 samples, [0, 0.5]; the fine-tuned one from 36, [0.8, 1]
    assert dpi_bound(1.0, 0.0, 36, n_ref=9) == pytest.approx(binary_kl(0.8, 0.5))


def test_check_flags_a_kl_below_the_bound():
    """The class-fidelity judge falling from 0.918 to 0.341 on 160 samples needs at least 0.35 nats (plug-in: 1.0);
    a per-dim KL of 0.2 (a path KL of 13 nats divided by 64) is below it."""
    check = dpi_check(0.341, 0.918, 160, kl=0.2)
    assert check.violated and check.bound == pytest.approx(0.3504, abs=1e-4)
    assert binary_kl(0.341, 0.918) == pytest.approx(1.035, abs=1e-3)
    assert not dpi_check(0.341, 0.918, 160, kl=12.8).violated
    assert not dpi_check(0.9, 0.9, 160, kl=0.0).violated


def test_noise_alone_never_flags():
    """Pairs of sample means of the same judge (Bernoulli, the widest variance in [0, 1]; means near 0, 1 and in
    between; 16 to 640 samples) at zero KL: none is flagged, while the plug-in binary KL would flag nearly all."""
    rng = np.random.default_rng(0)
    flagged = plug_in = 0
    for m in (0.001, 0.02, 0.3, 0.5, 0.9, 0.995):
        for n in (16, 160, 640):
            p, q = rng.binomial(n, m, size=(2, 300)) / n
            flagged += sum(dpi_check(a, b, n, kl=0.0).violated for a, b in zip(p, q, strict=True))
            plug_in += int((p != q).sum())
    assert flagged == 0 and plug_in > 1500
