"""``benchsuite show NAME``: a method's settings with their types, defaults, presets and docs; a task's card."""

import dataclasses
import typing

import pytest
import yaml

from benchsuite.cli import main
from benchsuite.config import field_docs
from benchsuite.registry import METHODS
from benchsuite.tasks import data_dir, task_specs


def _show(capsys, name) -> str:
    assert main(["show", name]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("method", METHODS.names())
def test_every_field_with_its_type_default_and_doc(method, capsys):
    out = _show(capsys, method)
    flat = " ".join(out.split())
    config_cls = METHODS.load(method).Config
    hints, docs = typing.get_type_hints(config_cls), field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        kind = hints[f.name].__name__ if isinstance(hints[f.name], type) else str(hints[f.name])
        assert f"  {f.name}: {kind.replace('typing.', '')} = {f.default!r}\n" in out, f.name
        assert f.name in docs, f"{method}.{f.name} has no docstring"
        assert " ".join(docs[f.name].split()) in flat, f.name


def test_field_docs_come_from_the_class_bodies_and_their_bases():
    ctrl = field_docs(METHODS.load("ctrl").Config)
    assert ctrl["kl_coef"].startswith("beta: the weight of the path KL in nats")  # its own field
    assert ctrl["value_lr"] == "Adam learning rate of the value network."  # a field of the ValueFields mix-in
    assert field_docs(METHODS.load("ddpo").Config)["batch_size"].startswith("Chains sampled")  # the subclass's own


def test_presets_per_backbone_where_they_differ(capsys):
    out = _show(capsys, "ddpo")
    preset = yaml.safe_load((data_dir("baselines") / "ddpo" / "defaults.yaml").read_text())
    lines = out.splitlines()
    field_line = lines.index("  lr: float = 0.0003")
    assert lines[field_line + 1].strip().startswith("presets: ")
    assert f"tiny {preset['tiny']['lr']!r}" in lines[field_line + 1]
    untouched = lines.index("  weight_decay: float = 0.0001")
    assert not lines[untouched + 1].strip().startswith("presets:")  # no backbone changes it


def test_a_task_shows_its_card_settings_and_what_supersedes_it(capsys):
    out = _show(capsys, "digits-jpeg-compress-v0")
    spec = task_specs()["digits-jpeg-compress-v0"]
    for label in ("backbone: digits", "sampler: ", "oracle: jpeg-compressibility v0", "judges: jpeg:", "(primary)",
                  "conditions: train 0..9 (10)", f"eval: {spec.eval_samples_per_condition} samples per condition",
                  f"default budget: {spec.default_budget} queries", "drift budget: none", "online rounds: none",
                  "superseded by: digits-jpeg-compress-v2", spec.source):
        assert label in out, label
    online = _show(capsys, "ehrlich-s32-l32-v1")
    assert "drift budget: path KL 102.4 nats" in online and "online rounds: rounds=4" in online
    assert "superseded by: ehrlich-s32-l32-v3" in online


def test_unknown_name_is_one_line_listing_valid_names(capsys):
    assert main(["show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown name 'nope'" in err and "ddpo" in err and "benchsuite list" in err
    assert main(["show", "toy-brightnes-v0"]) == 2  # a typo: the nearest cards are named, the rest counted
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "toy-brightness-v0" in err and "others that `benchsuite list` shows" in err
