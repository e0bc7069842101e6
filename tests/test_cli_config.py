"""``benchsuite run --print-config`` and ``run --config FILE``: the resolved config as YAML, run again from it under
the same run id."""

import json

import pytest
import yaml

from benchsuite.cli import main
from benchsuite.config import resolve

FLAGS = ["--task", "toy-brightness-v0", "--method", "ddpo", "--budget", "64", "--seed", "3",
         "--set", "method.lr=0.02", "--set", "task.sampler.num_steps=4"]


def _print_config(capsys, argv) -> str:
    assert main(["run", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


def test_print_config_is_the_resolved_config_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "res"
    text = _print_config(capsys, [*FLAGS, "--output", str(out)])
    config = resolve("toy-brightness-v0", "ddpo", seed=3, budget=64, overrides={"lr": 0.02},
                     task_overrides={"sampler.num_steps": 4}, output_root=str(out))
    data = yaml.safe_load(text)
    assert data["method_config"] == dict(config.method_config) and data["task_digest"] == config.task_digest
    assert data["task_overrides"] == {"sampler.num_steps": 4} and data["output_root"] == str(out)
    assert config.run_id in text.splitlines()[0]
    assert not out.exists()


def test_a_printed_config_runs_under_the_same_run_id(capsys, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(_print_config(capsys, FLAGS))
    again = _print_config(capsys, ["--config", str(path)])
    assert again == path.read_text()  # the round trip is exact
    out = tmp_path / "res"
    assert main(["run", "--config", str(path), "--output", str(out), "--no-mlflow", "--no-progress"]) == 0
    capsys.readouterr()
    (run_dir,) = (out / "runs").iterdir()
    flags = resolve("toy-brightness-v0", "ddpo", seed=3, budget=64, overrides={"lr": 0.02},
                    task_overrides={"sampler.num_steps": 4})
    assert run_dir.name == flags.run_id
    assert json.loads((run_dir / "summary.json").read_text())["config"]["method_config"]["lr"] == 0.02


@pytest.mark.parametrize("edit, expect", [
    (lambda d: d.update(bogus=1), "unknown key(s) ['bogus']"),
    (lambda d: d["method_config"].update(nope=1), "method_config: unknown field 'nope'"),
    (lambda d: d["method_config"].update(lr=float("inf")), "lr must be a finite number"),
    (lambda d: d.update(task_digest="0" * 12), "print the config again with --print-config"),
    (lambda d: d.update(method_config=[1]), "method_config must be a mapping"),
    (lambda d: d.update(task=7), "task must be a name"),
    (lambda d: d.update(budget=10**12), "budget must be an integer from 0 to 10**9"),
    (lambda d: d.update(device=3), "device must be a string"),
])
def test_bad_config_files_are_one_line_errors(edit, expect, capsys, tmp_path):
    data = yaml.safe_load(_print_config(capsys, FLAGS))
    edit(data)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "res"
    assert main(["run", "--config", str(path), "--output", str(out), "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and expect in err, err
    assert not out.exists()


@pytest.mark.parametrize("extra, flag", [(["--seed", "1"], "--seed"), (["--task", "toy-online-v0"], "--task"),
                                         (["--set", "method.lr=0.1"], "--set"), (["--threads", "2"], "--threads")])
def test_config_and_run_flags_do_not_mix(extra, flag, capsys, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(_print_config(capsys, FLAGS))
    assert main(["run", "--config", str(path), *extra, "--output", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"drop {flag}" in err and not (tmp_path / "res").exists()


def test_undecodable_and_missing_config_files(capsys, tmp_path):
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe task")
    for path, expect in ((tmp_path / "bad.yaml", "not UTF-8 text"), (tmp_path / "absent.yaml", "cannot read run config")):
        assert main(["run", "--config", str(path), "--output", str(tmp_path / "res")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expect in err and not (tmp_path / "res").exists()
