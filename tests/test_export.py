"""Exported models of the embedded backbones: a finished run's model.safetensors, loaded by benchsuite.load_run,
reproduces the trained policy's samples (the run's own final evaluation)."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

import benchsuite
from benchsuite.config import resolve
from benchsuite.export import MODEL_FILE, export_finished, save_weights

CASES = {
    # digits: the shipped UNet, fully fine-tuned; a task override that load_run must honour (4 sampler steps)
    "digits": ("digits-jpeg-compress-v1", {"budget": 16, "batch_size": 8, "train_batch_size": 8, "lr": 1e-3,
                                           "task_overrides": {"sampler.num_steps": 4}}),
    # a sequence backbone inside online rounds (surrogate training between oracle rounds)
    "ehrlich": ("ehrlich-s32-l32-v1", {"budget": 32, "batch_size": 16, "train_batch_size": 16, "lr": 1e-2,
                                       "task_overrides": {"sampler.num_steps": 4, "online.rounds": 2}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_embedded_run_exports_weights_that_load_run_reproduces(case, tmp_path):
    task_id, settings = CASES[case]
    result = benchsuite.run(task_id, "ddpo", eval_fractions=(0.0, 1.0), output_root=str(tmp_path), **settings)
    path = result.run_dir / MODEL_FILE
    with safe_open(path, "pt") as f:
        assert f.metadata()["run_id"] == result.config.run_id and f.metadata()["method"] == "ddpo"
        keys = set(f.keys())

    done = benchsuite.load_run(result.run_dir)
    assert done.weights == path and done.policy.num_steps == 4
    assert keys == set(done.policy.trainable_state_dict())
    # the policy moved away from the pretrained one ...
    assert result.final["eval/kl"] > 0
    # ... and the loaded policy gives back the samples the run judged last: every judge's mean agrees
    samples = done.sample()
    task = done.make_task()
    conditions = task.eval_conditions()
    for label, judge in task.judges.items():
        assert judge(samples, conditions).mean().item() == pytest.approx(result.final[f"eval/{label}_mean"], rel=1e-5,
                                                                           abs=1e-6), label


def test_only_finished_training_runs_on_the_main_process_export(tmp_path, monkeypatch):
    config = resolve("toy-brightness-v0", "ddpo", budget=64, output_root=str(tmp_path))
    policy = config.make_task().make_policy()
    for status in ("FAILED", "KILLED"):
        assert export_finished(config, policy, tmp_path, status) is None
    assert export_finished(config, policy, None, "FINISHED") is None  # nothing written: no run folder
    monkeypatch.setenv("RANK", "1")  # another process of a distributed launch
    assert export_finished(config, policy, tmp_path, "FINISHED") is None
    sampling = resolve("toy-brightness-v0", "best-of-n", budget=64, output_root=str(tmp_path))
    monkeypatch.setenv("RANK", "0")
    assert export_finished(sampling, policy, tmp_path, "FINISHED") is None  # no trained policy to export
    assert list(tmp_path.iterdir()) == []
    assert export_finished(config, policy, tmp_path, "FINISHED") == tmp_path / MODEL_FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_FILE]  # no temporary left behind


def test_save_weights_replaces_an_older_export(tmp_path):
    config = resolve("toy-brightness-v0", "ddpo", budget=64, output_root=str(tmp_path))
    policy = config.make_task().make_policy()
    (tmp_path / MODEL_FILE).write_bytes(b"old")
    save_weights(policy, tmp_path)
    with safe_open(tmp_path / MODEL_FILE, "pt") as f:
        assert all(torch.equal(f.get_tensor(k), v) for k, v in policy.trainable_state_dict().items())
