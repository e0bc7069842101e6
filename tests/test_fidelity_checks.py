"""scripts/fidelity.py's matched-drift checks on hand-made curves: the point is chosen on the selection set within
the card's drift budget (8 nats) and class-judge tolerance (0.05), and the value is read on the test set."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fidelity():
    spec = importlib.util.spec_from_file_location("fidelity", ROOT / "scripts" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _points(arm, seed, rows):
    """rows: (queries, select/jpeg, eval/jpeg, select/kl, select/class_prob) per evaluation."""
    out = []
    for q, sel, test, kl, cls in rows:
        for metric, value in (("select/jpeg_mean", sel), ("eval/jpeg_mean", test), ("select/kl", kl),
                              ("eval/kl", kl), ("select/class_prob_mean", cls), ("eval/class_prob_mean", cls)):
            out.append({"claim": "x", "arm": arm, "seed": seed, "queries": q, "metric": metric, "value": value})
    return out


def test_matched_drift_values_choose_on_the_selection_set_and_report_the_test_set():
    fid = _fidelity()
    rows = []
    for seed in (0, 1, 2):
        # vard: the last point's selection reward is best but drifts 10 nats (seed 0) or drops the class judge by
        # 0.1 (seeds 1, 2): the half-budget point is chosen, its test value -0.62 + 0.01 seed reported
        last = (512, -0.4, -0.3, 10.0, 0.9) if seed == 0 else (512, -0.4, -0.3, 7.0, 0.8)
        rows += _points("vard", seed, [(0, -0.7, -0.71, 0.0, 0.9), (256, -0.6, -0.62 + 0.01 * seed, 5.0, 0.88), last])
        # ddpo: within both bounds at the end, test value -0.66 + 0.02 seed
        rows += _points("ddpo", seed, [(0, -0.7, -0.71, 0.0, 0.9), (512, -0.65, -0.66 + 0.02 * seed, 6.0, 0.9)])
        rows += _points("pretrained", seed, [(0, -0.7, -0.70 - 0.01 * seed, 0.0, 0.9)])
    c = pd.DataFrame(rows)
    v = fid.at_drift(c, fid.DIGITS_V2, fid.JPEG)
    assert v["vard"].tolist() == pytest.approx([-0.62, -0.61, -0.60])
    assert v["ddpo"].tolist() == pytest.approx([-0.66, -0.64, -0.62])
    assert v["pretrained"].tolist() == pytest.approx([-0.70, -0.71, -0.72])
    mean, lo, hi = fid.drift_diff(v, "vard", "ddpo")  # differences 0.04, 0.03, 0.02: sd 0.01, t(0.975, 2) 4.303
    assert mean == pytest.approx(0.03) and hi - mean == pytest.approx(4.302652729911275 * 0.01 / 3 ** 0.5)
    verdict, evidence = fid.check_vard_matched(c)
    assert verdict == "reproduced" and "VARD - DDPO: +0.030 [" in evidence
