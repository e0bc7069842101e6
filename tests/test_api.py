"""The Python API: benchsuite.make / run / load_run / load_config on the toy task."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import benchsuite
from benchsuite.config import resolve
from benchsuite.errors import BenchsuiteError, ConfigError, MissingWeightsError, UnknownNameError
from benchsuite.weights import WeightsFormatError

TOY = "toy-brightness-v0"
SMALL = {"budget": 64, "batch_size": 16, "eval_fractions": (0.0, 1.0)}


def test_import_is_light_and_api_names_load_on_first_use():
    code = ("import sys, benchsuite; assert 'torch' not in sys.modules and 'benchsuite.api' not in sys.modules; "
            "make = benchsuite.make; assert 'benchsuite.api' in sys.modules; "
            "heavy = [m for m in ('mlflow', 'optuna', 'seaborn', 'diffusers') if m in sys.modules]; assert not heavy, heavy; "
            "assert set(benchsuite.__all__) <= set(dir(benchsuite))")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'maek'"):
        benchsuite.maek  # noqa: B018


def test_make_resolves_like_the_cli(tmp_path):
    exp = benchsuite.make(TOY, method="ddpo", seed=3, lr=0.02, task_overrides={"sampler.num_steps": 3},
                          output_root=str(tmp_path), **SMALL)
    same = resolve(TOY, "ddpo", seed=3, budget=64, overrides={"lr": 0.02, "batch_size": 16},
                   task_overrides={"sampler.num_steps": 3}, eval_fractions=(0.0, 1.0), output_root=str(tmp_path))
    assert exp.config == same and exp.run_id == same.run_id and exp.run_dir == same.run_dir
    assert exp.settings["lr"] == 0.02 and exp.settings["batch_size"] == 16
    assert exp.config.task_overrides == (("sampler.num_steps", 3),)
    assert benchsuite.make(TOY).config.method == "pretrained"  # gymnasium.make(id) style default
    # the YAML is the --print-config format and reads back into the same experiment
    path = tmp_path / "exp.yaml"
    path.write_text(exp.to_yaml())
    assert benchsuite.Experiment.from_file(path).run_id == exp.run_id
    assert not (tmp_path / "runs").exists()  # make writes nothing


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "ddpo", "learning_rate": 0.1}, "make(): unknown field 'learning_rate'"),
    ({"method": "ddpo", "lr": float("inf")}, "lr"),
    ({"method": "ddpo", "budget": -1}, "budget must be"),
    ({"method": "ddpo", "task_overrides": {"sampler.num_stepz": 3}}, "num_stepz"),
])
def test_make_refuses_bad_settings_in_one_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        benchsuite.make(TOY, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_make_unknown_names():
    with pytest.raises(UnknownNameError, match="unknown task 'toy-v9'"):
        benchsuite.make("toy-v9", method="ddpo")
    with pytest.raises(UnknownNameError, match="unknown method 'ddpoo'"):
        benchsuite.make(TOY, method="ddpoo")


def test_run_and_load_run_round_trip(tmp_path):
    exp = benchsuite.make(TOY, method="ddpo", output_root=str(tmp_path), **SMALL)
    result = exp.run()
    assert result.run_dir == exp.run_dir and len(result.query_log) == 64
    done = benchsuite.load_run(result.run_dir)
    assert done.config == exp.config and done.summary["status"] == "FINISHED"
    assert done.final["eval/brightness_mean"] == pytest.approx(result.final["eval/brightness_mean"])
    assert done.weights == result.run_dir / "model.safetensors"
    assert not done.policy.training
    # the trained weights, not the pretrained ones: the final evaluation's samples come back exactly
    images = done.sample()
    assert images.shape == (3 * 8, 1, 2, 2)
    assert images.flatten(1).mean(1).mean().item() == pytest.approx(result.final["eval/brightness_mean"], abs=1e-6)
    pretrained = done.config.make_task().make_policy()
    trained = done.policy.trainable_state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in pretrained.trainable_state_dict().items())
    # other conditions and seeds
    assert done.sample([0, 2], seed=1).shape == (2, 1, 2, 2)
    assert torch.equal(done.sample([1, 1], seed=5), done.sample([1, 1], seed=5))
    # an existing run folder is never overwritten; resume of a finished run only finalises it again
    with pytest.raises(ConfigError, match="already exists"):
        benchsuite.run(exp)
    again = benchsuite.run(exp, resume=True)
    assert again.final == result.final
    assert benchsuite.load_config(result.run_dir) == exp.config


def test_run_takes_a_task_id_or_a_config(tmp_path):
    result = benchsuite.run(TOY, "best-of-n", output_root=str(tmp_path), budget=64, batch_size=16,
                            keep_per_condition=8, eval_fractions=(0.0, 1.0), write=False)
    assert result.run_dir is None and not (tmp_path / "runs").exists()
    config = resolve(TOY, "pretrained", budget=32, eval_fractions=(0.0, 1.0), output_root=str(tmp_path))
    assert benchsuite.run(config).run_dir == config.run_dir
    done = benchsuite.load_run(config.run_dir)  # a method that never trains: the pretrained policy, no file
    assert done.weights is None and not (config.run_dir / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="takes no method or settings"):
        benchsuite.run(benchsuite.make(TOY), "ddpo")
    with pytest.raises(ConfigError, match="takes an Experiment"):
        benchsuite.run(tmp_path)


def test_run_logs_to_mlflow_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # mlflow=True: the CLI's choice of store (a URI string also works)
    benchsuite.run(TOY, "pretrained", budget=32, eval_fractions=(0.0, 1.0), output_root=str(tmp_path), mlflow=True)
    with pytest.raises(BenchsuiteError, match="bogus"):  # an unsupported store: refused before anything is written
        benchsuite.run(TOY, "pretrained", budget=32, output_root=str(tmp_path / "other"), mlflow="bogus://x")
    assert not (tmp_path / "other").exists()
    import mlflow

    runs = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name(TOY).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and "eval/brightness_mean" in runs[0].data.metrics


def test_load_run_errors_are_one_line(tmp_path):
    def one_line(exc_type, folder, *words):
        with pytest.raises(exc_type) as err:
            benchsuite.load_run(folder)
        assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)

    one_line(ConfigError, tmp_path / "nowhere", "no summary.json")
    result = benchsuite.run(TOY, "ddpo", output_root=str(tmp_path), **SMALL)
    summary_path = result.run_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    weights = result.run_dir / "model.safetensors"
    trained = {k: v.clone() for k, v in load_file(weights).items()}  # not a view of the file, rewritten below

    weights.write_bytes(b"not safetensors")
    one_line(WeightsFormatError, result.run_dir, "does not fit the run's policy")
    weights.unlink()
    one_line(MissingWeightsError, result.run_dir, "no exported weights", "resume=True")
    # ... and resuming the finished run writes them (the checkpoint holds the trained policy)
    benchsuite.run(benchsuite.load_config(result.run_dir), resume=True)
    again = load_file(weights)
    assert again.keys() == trained.keys() and all(torch.equal(again[k], v) for k, v in trained.items())

    summary_path.write_text(json.dumps({**summary, "status": "KILLED"}))
    one_line(ConfigError, result.run_dir, "is KILLED, not finished")
    summary_path.write_text(json.dumps({**summary, "config": {"task": TOY}}))
    one_line(ConfigError, result.run_dir, "no valid run config")
    summary_path.write_text("{not json")
    one_line(ConfigError, result.run_dir, "unreadable")
    summary_path.write_text(json.dumps({**summary, "config": {**summary["config"], "task_digest": "0" * 12}}))
    one_line(ConfigError, result.run_dir, "changed since run")
