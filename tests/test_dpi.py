"""The data-processing check of the path KL (``benchsuite.metrics.dpi``, ``benchsuite.report.dpi``): the math on
hand-computed numbers, that sampling noise alone never flags a run, real runs of every fine-tuning method, and the
report's refusal of records whose KL is too small."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchsuite.errors import ConfigError
from benchsuite.metrics.dpi import binary_kl, dpi_bound, dpi_check, mean_interval
from benchsuite.report import write_report
from benchsuite.report.dpi import checked_judges, dpi_violations, per_seed_violations


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


# ---- on run records ------------------------------------------------------------------------------------------
FINE_TUNERS = ("ddpo", "draft", "sqdf", "vard", "ctrl")


def _tidy(results) -> pd.DataFrame:
    """The report's tidy frame of in-memory run results."""
    return pd.DataFrame([{"task": r.config.task, "method": r.config.method, "seed": r.config.seed,
                          "queries": int(point["queries"]), "metric": metric, "value": float(value)}
                         for r in results for point in r.curve for metric, value in point.items()
                         if metric != "queries" and isinstance(value, int | float)])


@pytest.fixture(scope="module")
def toy_runs():
    """Every fine-tuning method on the toy task (2x2 images, a brightness judge in [0, 1]), 256 queries, evaluated
    at five points: about 7 s in all."""
    from benchsuite.config import resolve
    from benchsuite.runner import run

    return [run(resolve("toy-brightness-v0", method, seed=0, budget=256, eval_fractions=(0.0, 0.25, 0.5, 0.75, 1.0)),
                write=False) for method in FINE_TUNERS]


def test_every_fine_tuner_passes_the_check_at_every_evaluation_point(toy_runs):
    """The report's check finds nothing on real runs of every fine-tuning method, and their path KL also exceeds
    the plug-in binary KL (the bound without a noise allowance) at every evaluation point after the first."""
    tidy = _tidy(toy_runs)
    assert set(tidy["method"]) == set(FINE_TUNERS)
    assert dpi_violations(tidy).empty
    judges = checked_judges("toy-brightness-v0")
    assert set(judges) == {"eval/brightness_mean"}
    checked = 0
    for result in toy_runs:
        first = result.curve[0]
        assert first["queries"] == 0 and first["eval/kl"] == 0.0  # the pretrained model
        for point in result.curve[1:]:
            p, q = point["eval/brightness_mean"], first["eval/brightness_mean"]
            assert not dpi_check(p, q, 24, point["eval/kl"]).violated
            assert binary_kl(p, q) < point["eval/kl"], (result.config.method, point["queries"])
            checked += 1
    assert checked == 4 * len(FINE_TUNERS)


def _records(task: str, method: str, judge: str, pretrained: float, final: float, kl: float) -> pd.DataFrame:
    """A two-point run record (the pretrained model at 0 queries, one evaluation at 512)."""
    rows = [(0, judge, pretrained), (0, "eval/kl", 0.0), (512, judge, final), (512, "eval/kl", kl)]
    return pd.DataFrame([{"task": task, "method": method, "seed": 3, "queries": q, "metric": m, "value": v}
                         for q, m, v in rows])


def test_records_with_a_per_dim_kl_are_refused(tmp_path):
    """A class-fidelity fall from 0.918 to 0.341 over 160 samples with a per-dim KL (4.2 = 268 nats / 64 dims is
    enough; 0.2 is not): flagged and refused by write_report before it writes anything; the methods that fine-tune
    nothing are exempt; a JPEG judge (no range) is not checked."""
    args = ("digits-jpeg-compress-v1", "ddpo", "eval/class_prob_mean", 0.918, 0.341)
    assert checked_judges("digits-jpeg-compress-v1") == {"eval/class_prob_mean": ("eval/kl", 160, (0.0, 1.0))}
    assert dpi_violations(_records(*args, kl=268.0 / 64)).empty
    bad = dpi_violations(_records(*args, kl=0.2))
    assert len(bad) == 1 and bad.iloc[0][["method", "seed", "queries"]].tolist() == ["ddpo", 3, 512]
    assert bad.iloc[0]["bound"] == pytest.approx(dpi_bound(0.341, 0.918, 160))
    with pytest.raises(ConfigError, match=r"digits-jpeg-compress-v1, method ddpo, seed 3, at 512 queries: "
                                          r"eval/class_prob_mean .* at least 0.35\d* nats .* eval/kl is 0.2"):
        write_report(_records(*args, kl=0.2), tmp_path / "report")
    assert not (tmp_path / "report").exists()
    for method in ("pretrained", "best-of-n", "bo"):
        assert dpi_violations(_records("digits-jpeg-compress-v1", method, *args[2:], kl=0.0)).empty
    assert dpi_violations(_records("digits-jpeg-compress-v1", "ddpo", "eval/jpeg_mean", -0.9, -0.2, 0.0)).empty


def test_per_seed_rows_read_the_pretrained_row_of_their_seed():
    """``per_seed.csv`` has no first evaluation: the pretrained method's row of the same task and seed is the
    reference, at the final and at the matched-drift point."""
    row = {"task": "digits-jpeg-compress-v1", "seed": 0, "cost/queries": 512, "drift_queries": 128}
    per_seed = pd.DataFrame([
        {**row, "method": "pretrained", "eval/class_prob_mean": 0.918, "eval/kl": 0.0},
        {**row, "method": "sqdf", "eval/class_prob_mean": 0.341, "eval/kl": 0.2,
         "eval/class_prob_mean@drift": 0.91, "eval/kl@drift": 0.01},
        {**row, "method": "best-of-n", "eval/class_prob_mean": 0.1, "eval/kl": 0.0},
        {**row, "seed": 1, "method": "ddpo", "eval/class_prob_mean": 0.1, "eval/kl": 0.0},  # no pretrained row
    ])
    bad = per_seed_violations(per_seed)
    assert bad[["method", "seed", "queries", "metric"]].values.tolist() == [["sqdf", 0, 512, "eval/class_prob_mean"]]
