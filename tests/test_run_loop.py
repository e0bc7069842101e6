"""The runner's loop, one piece at a time (``runner.RunLoop``): each piece does its own part of a run and nothing
else, on the toy task, without a run folder."""

from __future__ import annotations

import pytest
import torch

from benchsuite.config import resolve
from benchsuite.runner import CHECKPOINT, CHECKPOINT_FORMAT, RunLoop, run
from benchsuite.testing import deterministic

TASK = "toy-brightness-v0"


@pytest.fixture
def loop():
    previous = torch.get_num_threads()
    loop = RunLoop.start(resolve(TASK, "ddpo", seed=0, budget=128, eval_fractions=(0.0, 0.5, 1.0)))
    yield loop
    torch.set_num_threads(previous)


def test_evaluate_appends_one_curve_point_with_eval_and_cost_metrics(loop):
    loop.evaluate()
    (point,) = loop.state.curve
    assert point["queries"] == 0 and point["eval/fd_pretrained"] == 0.0
    assert {"eval/brightness_mean", "cost/queries", "cost/nfe", "cost/time_eval_s"} <= set(point)
    assert [kind for kind, _, _ in loop.state.pending] == ["metrics", "image"]
    assert loop.state.pretrained_images is not None and loop.state.done == {0}
    assert loop.state.train == [] and loop.oracle.used == 0  # evaluation spends no query


def test_step_spends_queries_and_keeps_one_train_row(loop):
    assert loop.evaluation_due()  # the pretrained model's evaluation, at 0 queries
    loop.evaluate()
    loop.state.pending.clear()
    info = loop.step()
    assert loop.used() == dict(loop.config.method_config)["batch_size"] > 0
    assert loop.state.train == [{"queries": loop.used(), **info}]
    assert loop.state.pending == [("metrics", info, loop.used())]
    assert loop.state.phases["step"] > 0 and len(loop.state.curve) == 1
    assert not loop.evaluation_due()  # the next evaluation point is at 64 queries


def test_checkpoint_writes_the_state_and_flushes_the_logs(loop, tmp_path):
    loop.run_dir = tmp_path
    loop.evaluate()
    loop.checkpoint()
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert saved["format"] == CHECKPOINT_FORMAT and saved["run_id"] == loop.config.run_id
    assert {"method", "oracle", "torch_rng", "curve", "train", "done", "pending", "pretrained_images", "nfe",
            "elapsed_s", "phases"} <= set(saved)
    assert saved["done"] == [0] and [kind for kind, _, _ in saved["pending"]] == ["metrics", "image"]
    assert loop.state.pending == []  # saved with the checkpoint, then handed to the trackers


def test_the_pieces_composed_end_as_run_does(loop):
    """``resume``, ``step`` to the end with ``evaluate`` and ``checkpoint`` where due, ``finish``: the curve of
    ``run``."""
    loop.resume()
    while not loop.oracle.exhausted:
        loop.step()
        if loop.evaluation_due():
            loop.evaluate()
            loop.checkpoint()
    result = loop.finish("FINISHED")
    reference = run(loop.config, write=False)
    assert [deterministic(c) for c in result.curve] == [deterministic(c) for c in reference.curve]
    assert [deterministic(t) for t in result.train] == [deterministic(t) for t in reference.train]
