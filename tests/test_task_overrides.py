"""Task overrides (``--set task.sampler.num_steps=50``): validated, applied to the run's task, part of its id."""

import pytest

from benchsuite.cli import main
from benchsuite.config import parse_overrides, resolve
from benchsuite.errors import ConfigError


def test_overrides_change_the_task_and_the_run_id_and_nothing_else():
    base = resolve("toy-brightness-v0", "pretrained", budget=32)
    more = resolve("toy-brightness-v0", "pretrained", budget=32, task_overrides={"sampler.num_steps": 7})
    assert base.task_overrides == () and more.task_overrides == (("sampler.num_steps", 7),)
    assert more.run_id != base.run_id and more.task_digest != base.task_digest
    assert more.make_task().make_policy().num_steps == 7 and base.make_task().make_policy().num_steps == 5
    # a config without overrides keeps the id formula it had before overrides existed
    again = resolve("toy-brightness-v0", "pretrained", budget=32, task_overrides={})
    assert again.run_id == base.run_id


def test_online_overrides_and_a_json_round_trip():
    import json

    from benchsuite.config import RunConfig

    cfg = resolve("toy-online-v0", "ddpo", budget=64, task_overrides={"online.bonus": 0.0, "online.rounds": 2})
    spec = cfg.task_spec()
    assert spec.online.bonus == 0.0 and spec.online.rounds == 2
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), default=str)))
    assert back == cfg and back.run_id == cfg.run_id


@pytest.mark.parametrize("overrides, match", [
    ({"sampler.nope": 1}, "takes sampler arguments"),
    ({"online.bonus": 1.0}, "has no online rounds"),
    ({"judges.x": 1}, "must look like"),
    ({"sampler": 1}, "must look like"),
])
def test_bad_overrides_are_one_line_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve("toy-brightness-v0", "pretrained", budget=32, task_overrides=overrides)


def test_bad_override_values_are_refused_by_the_spec():
    with pytest.raises(ConfigError, match="online.rounds"):
        resolve("toy-online-v0", "ddpo", budget=64, task_overrides={"online.rounds": 0})


def test_cli_parses_task_overrides(tmp_path, capsys):
    assert parse_overrides(["method.lr=0.1", "task.sampler.num_steps=3"], task=True) == (
        {"lr": 0.1}, {"sampler.num_steps": 3})
    with pytest.raises(ConfigError):
        parse_overrides(["task.sampler.num_steps=3"])  # where only method settings make sense
    code = main(["run", "--task", "toy-brightness-v0", "--method", "pretrained", "--budget", "32",
                 "--set", "task.sampler.num_steps=3", "--output", str(tmp_path), "--no-mlflow", "--no-progress"])
    assert code == 0
    [run_dir] = (tmp_path / "runs").iterdir()
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["task_overrides"] == [["sampler.num_steps", 3]]
    code = main(["run", "--task", "toy-brightness-v0", "--method", "pretrained", "--budget", "32",
                 "--set", "task.sampler.bogus=3", "--output", str(tmp_path / "bad"), "--no-mlflow", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sampler arguments" in err[0] and not (tmp_path / "bad").exists()


def test_report_side_card_fields_do_not_change_run_ids():
    """A card's drift_budget (and its changes note) only affect how runs are reported: adding one to a card keeps
    every run id (a finished run stays the same run)."""
    import dataclasses

    from benchsuite.config import task_digest
    from benchsuite.tasks import load_spec

    spec = load_spec("toy-brightness-v0")
    assert task_digest(dataclasses.replace(spec, drift_budget=0.5, changes="x")) == task_digest(spec)
    assert task_digest(dataclasses.replace(spec, default_budget=spec.default_budget + 1)) != task_digest(spec)
