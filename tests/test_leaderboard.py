"""Leaderboards as data (benchsuite/leaderboard.py): the committed tier specs are sound, a malformed spec is one
line, methods join by declaring themselves, and the stages tune, run, report and verify a toy tier end to end."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchsuite import leaderboard as lb
from benchsuite.cli import main
from benchsuite.errors import BenchsuiteError, ConfigError
from benchsuite.registry import METHODS
from benchsuite.tasks import load_spec

ROOT = Path(__file__).resolve().parents[1]

TOY = {"id": "toy-v1", "description": "toy tier", "tasks": {"toy-brightness-v0": {"seeds": 2}}, "budget": 64,
       "eval_fractions": [0, 0.5, 1], "methods": ["pretrained", "best-of-n", "sqdf"], "tuning": {"trials": 2},
       "verify": [{"task": "toy-brightness-v0", "method": "sqdf", "seed": 1}]}


@pytest.fixture
def tier(leaderboard_spec):
    """``tier(**changes)``: write a leaderboard spec (TOY with changes) to a task folder on the path; its spec."""
    return lambda **changes: leaderboard_spec({**TOY, **changes})


@pytest.mark.parametrize("name", ["core", "full"])
def test_the_committed_tiers_are_sound(name):
    spec = lb.load_leaderboard(name)
    assert spec.id.startswith(name + "-v")
    for t in spec.tasks:
        card = load_spec(t.id)
        # every choice is made on a selection set, every headline at matched drift
        assert card.protocol is not None and card.drift_budget is not None, t.id
        assert spec.budget <= card.default_budget
        if card.online is not None:
            assert min(card.online.round_sizes(spec.budget)) >= 64
    assert {v.task for v in spec.verify} <= set(spec.task_ids)
    methods = spec.method_names()
    assert {"pretrained", "best-of-n", "bo", "ddpo", "draft", "sqdf", "vard", "ctrl"} <= set(methods)
    assert "screening" not in methods  # best-of-N under another name: the black-box tier's


def test_the_core_tier_covers_images_sequences_molecules_and_the_online_setting():
    backbones = {load_spec(t).backbone for t in lb.load_leaderboard("core").task_ids}
    assert {"digits", "ehrlich", "selfies-chembl"} <= backbones
    assert any(load_spec(t).online is not None for t in lb.load_leaderboard("core").task_ids)


def test_every_method_with_a_kl_term_is_tuned_on_the_same_kinds_of_dimension():
    """The KL coefficient and the learning rate for every fine-tuner, from one KL-coefficient range; the timestep
    fraction wherever the method has one."""
    from dataclasses import fields

    from benchsuite.tuning import load_search_space

    ranges = set()
    for m in ("ddpo", "draft", "sqdf", "vard", "ctrl"):
        params = lb.tune_params(m)
        assert {"lr", "kl_coef"} <= set(params), m
        has_fraction = "timestep_fraction" in {f.name for f in fields(METHODS.load(m).Config)}
        assert ("timestep_fraction" in params) == has_fraction, m
        space = {d.name: d for d in load_search_space(m, params)}
        ranges.add((space["kl_coef"].low, space["kl_coef"].high))
    assert len(ranges) == 1
    assert lb.tune_params("pretrained") == () and lb.tune_params("best-of-n") == ()


def test_objectives_are_the_headline_at_matched_drift_or_at_full_budget_without_a_path():
    assert lb.tuning_objective("digits-jpeg-compress-v2", "vard") == "eval/jpeg_mean.matched"
    assert lb.tuning_objective("digits-jpeg-compress-v2", "bo") == "eval/jpeg_mean"
    assert lb.tuning_objective("toy-online-v0", "ddpo") == "eval/brightness_mean"  # no drift budget


@pytest.mark.parametrize("changes, message", [
    ({"tasks": {"toy-brightness-v0": {"seeds": 1}}}, "seeds must be an integer >= 2"),
    ({"tasks": {"no-such-task-v0": {"seeds": 2}}}, "no-such-task-v0"),
    ({"budget": 0}, "budget must be a positive integer"),
    ({"eval_fractions": [0.5, 1]}, "eval_fractions must rise strictly from 0 to 1"),
    ({"methods": ["no-such-method"]}, "no-such-method"),
    ({"tuning": {"trials": 0}}, "tuning.trials"),
    ({"verify": [{"task": "toy-online-v0", "method": "ddpo", "seed": 0}]}, "not one of the tier's tasks"),
    ({"seeds": 3}, "unknown keys"),
])
def test_a_malformed_spec_is_one_line(tier, changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        tier(**changes)
    assert "\n" not in str(info.value)


def test_an_unknown_tier_is_one_line_with_exit_2(capsys):
    assert main(["leaderboard", "show", "--tier", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "core" in err


def test_a_name_means_its_newest_version(tier):
    tier()
    tier(id="toy-v2", budget=32)
    assert lb.load_leaderboard("toy").id == "toy-v2" and lb.load_leaderboard("toy-v1").budget == 64


class _Registered(METHODS.load("best-of-n")):
    """A stand-in for a plugin's method: registered, declaring nothing but its name."""

    name = "plugin-like"


def test_a_registered_method_joins_a_registered_tier_without_a_protocol_table(tier, monkeypatch):
    names = METHODS.names()
    monkeypatch.setattr(METHODS, "names", lambda: [*names, "plugin-like"])
    real_load = METHODS.load
    monkeypatch.setattr(METHODS, "load", lambda n: _Registered if n == "plugin-like" else real_load(n))
    spec = tier(methods="registered")
    assert "plugin-like" in spec.method_names() and "screening" not in spec.method_names()
    assert "plugin-like" not in tier(methods="builtin").method_names()  # a committed tier: the built-ins
    assert lb.resolve_methods(["builtin", "registered"]).count("ddpo") == 1
    from benchsuite.report.plots import method_colors, method_markers

    colours = method_colors(["ddpo", "plugin-like"])
    assert colours["ddpo"] == METHODS.load("ddpo").colour and colours["plugin-like"] != colours["ddpo"]
    # best-of-N's marker "s" and colour are its own: a subclass that declares none gets the defaults (Method.IDENTITY)
    assert method_markers(["plugin-like"]) == {"plugin-like": "o"} and _Registered.colour is None


def test_the_stages_end_to_end_on_a_toy_tier(tier, tmp_path, monkeypatch, capsys):
    """tune exports presets that the runs use; run writes whole seeds and its record; report keeps the tier's
    methods; verify reruns the slice and agrees, and catches a committed value that moved."""
    baselines = tmp_path / "baselines"
    shutil.copytree(ROOT / "baselines", baselines, ignore=shutil.ignore_patterns("tuned"))
    monkeypatch.setenv("BENCHSUITE_BASELINES_DIR", str(baselines))
    monkeypatch.setattr(lb, "check_clean", lambda allow_dirty: "0" * 40)  # the test tree may hold edits
    spec = tier()
    tuning, out = tmp_path / "tuning", tmp_path / "out"
    lb.tune(spec, spec.method_names(), tuning, workers=1)
    table = pd.read_csv(tuning / "tuning.csv")
    assert list(zip(table.task, table.method)) == [("toy-brightness-v0", "sqdf")] and table.trials[0] == 2
    assert "Written by `benchsuite leaderboard tune --tier toy`" in (tuning / "tuning.md").read_text()
    exported = yaml.safe_load((baselines / "sqdf" / "tuned" / "toy-brightness-v0.yaml").read_text())
    assert set(exported) == {*lb.tune_params("sqdf"), "reward_norm"} and exported["reward_norm"] == "running"
    stage = lb.run(spec, spec.method_names(), out, workers=1)
    assert (stage["runs"], stage["failed"]) == (6, 0)
    assert json.loads((out / "suite.json").read_text())[0]["spec"] == "toy-v1"
    lb.report(spec, spec.method_names(), out, allow_dirty=True)  # the test tree may hold edits
    per_seed = pd.read_csv(out / "per_seed.csv")
    assert set(per_seed["method"]) == {"pretrained", "best-of-n", "sqdf"} and set(per_seed["seed"]) == {0, 1}
    assert "| toy-brightness-v0 | sqdf | 2 |" in (out / "cost.md").read_text()
    # the phase table: the non-overlapping phases and the setup make up each run's wall time
    import importlib.util

    loader = importlib.util.spec_from_file_location("phases", ROOT / "scripts" / "leaderboard_phases.py")
    phases = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(phases)
    table, totals = phases.phase_table(pd.read_csv(out / "curves.csv"))
    assert list(table.index) == [("toy-brightness-v0", m) for m in ("best-of-n", "pretrained", "sqdf")]
    assert ((table[["eval", "step", "setup"]].sum(axis=1) - 1).abs() < 1e-9).all()
    assert table.loc[("toy-brightness-v0", "sqdf"), "step"] > 0 and "Tier:" in phases.markdown(table, totals)
    # the same table from the run folders alone (the bbo tier writes no curves.csv)
    shutil.copytree(out / "runs", tmp_path / "bare" / "runs")
    capsys.readouterr()
    assert phases.main([str(out)]) == 0
    from_curves = capsys.readouterr().out
    assert phases.main([str(tmp_path / "bare")]) == 0 and capsys.readouterr().out == from_curves
    assert phases.main([str(tmp_path / "nothing")]) == 2 and "no finished runs" in capsys.readouterr().err
    assert lb.verify(spec, out, tmp_path / "scratch") == []
    moved = per_seed.copy()
    row = (moved.method == "sqdf") & (moved.seed == 1)
    moved.loc[row, "eval/brightness_mean"] += 1e-3
    moved.to_csv(out / "per_seed.csv", index=False)
    problems = lb.verify(spec, out, tmp_path / "scratch2")
    assert len(problems) == 1 and "eval/brightness_mean committed" in problems[0]


def test_the_run_stage_refuses_a_dirty_tree(tier, monkeypatch, tmp_path):
    monkeypatch.setattr(lb, "current_commit", lambda: "abc123-dirty")
    with pytest.raises(BenchsuiteError, match="--allow-dirty"):
        lb.run(tier(), ["pretrained"], tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()  # nothing written
    assert lb.check_clean(allow_dirty=True) == "abc123-dirty"


def test_a_task_outside_the_tier_is_one_line_with_exit_2(capsys):
    assert main(["leaderboard", "run", "--tier", "core", "--tasks", "toy-online-v0"]) == 2
    assert "not in core-v1" in capsys.readouterr().err
