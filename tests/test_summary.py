"""The table every run prints at its end (``cli.format_summary``): each judge from the pretrained model to the
last evaluation, and the path KL against the card's drift budget."""

from __future__ import annotations

from benchsuite.cli import format_summary
from benchsuite.config import resolve
from benchsuite.runner import RunResult


def _result(method: str, points: list[dict]) -> RunResult:
    """A finished run of ``method`` on digits-jpeg-compress-v1 (drift budget 32 nats) with these evaluations."""
    config = resolve("digits-jpeg-compress-v1", method, seed=0, budget=2048)
    return RunResult(config, points[-1], points, [], None, 85.0)


def _point(queries, jpeg, class_prob, kl):
    return {"queries": queries, "eval/jpeg_mean": jpeg, "eval/class_prob_mean": class_prob, "eval/kl": kl,
            "eval/diversity": 0.5}


PRETRAINED = _point(0, -0.736, 0.918, 0.0)


def test_a_run_over_the_drift_budget_says_so_and_where_the_leaderboard_reads_it():
    text = format_summary(_result("ddpo", [PRETRAINED, _point(512, -0.705, 0.915, 27.5),
                                           _point(1024, -0.6, 0.7, 60.0), _point(2048, -0.402, 0.341, 268.0)]))
    lines = text.splitlines()
    assert lines[0] == "ddpo on digits-jpeg-compress-v1, seed 0: 2048 oracle queries, 85.0 s"
    assert "    jpeg (headline) -0.736 -> -0.402 (+0.334)" in lines
    assert "    class_prob      0.918 -> 0.341 (-0.577)" in lines
    assert "  path KL 268 nats: over the card's drift budget of 32 nats" in lines
    assert ("  the leaderboard reads this run at its best evaluation within the budget: 512 queries, jpeg -0.705, "
            "class_prob 0.915") in lines
    assert any(line.startswith("  eval/diversity") for line in lines)


def test_a_run_within_the_budget_and_a_method_that_fine_tunes_nothing():
    within = format_summary(_result("ddpo", [PRETRAINED, _point(512, -0.705, 0.915, 27.5)]))
    assert "  path KL 27.5 nats: within the card's drift budget of 32 nats" in within.splitlines()
    assert "leaderboard" not in within
    first_only = format_summary(_result("ddpo", [PRETRAINED, _point(512, -0.5, 0.5, 40.0)]))
    assert "512 queries" not in first_only and "0 queries (the pretrained model), jpeg -0.736" in first_only
    selection = format_summary(_result("best-of-n", [PRETRAINED, _point(512, -0.6, 0.9, 3.4)]))
    assert "  KL 3.4 nats: of a selection among pretrained samples (best-of-n fine-tunes nothing)" in selection
