"""Plugins (entry points in the benchsuite.* groups) through the real CLI, in subprocesses.

1. Broken plugins: distributions written into a temporary folder on PYTHONPATH (a ``*.dist-info`` folder with
   ``entry_points.txt`` is all ``importlib.metadata`` needs), each broken in one way, beside one good plugin.
2. The example plugin (tests/plugins/benchsuite-example, installed by .ci/run) through run, sweep --workers 2,
   tune --workers 2 and ask/tell, list and show. Skipped with the reason when it is not installed, except under
   CI=true, where that is a failure.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchsuite.registry import Plugin, PluginError, Registry
from benchsuite.testing import require_installed

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``benchsuite ARGS`` in a fresh interpreter (so that plugins are discovered as a user's shell would)."""
    full_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", "benchsuite.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=600)


# ---- 1. broken plugins beside a good one -------------------------------------------------------------------------
def _distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]]) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    sections = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
                for group, entries in entry_points.items()]
    (info / "entry_points.txt").write_text("".join(sections))


GOOD_REWARD = '''
from benchsuite.rewards.base import Reward

class Darkness(Reward):
    """1 - mean pixel value."""
    name = "fake-darkness"
    differentiable = True

    def _score(self, samples, conditions):
        return 1 - samples.flatten(1).mean(1)
'''


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """A folder of distributions for PYTHONPATH: one good plugin (a reward and a card using it), five broken ones."""
    site = tmp_path_factory.mktemp("site")
    (site / "fake_good").mkdir()
    (site / "fake_good" / "__init__.py").write_text(GOOD_REWARD)
    card = yaml.safe_load((ROOT / "tasks" / "toy-brightness-v0.yaml").read_text())
    card.update(id="fake-toy-darkness-v0", oracle={"name": "fake-darkness"}, judges={"dark": {"name": "fake-darkness"}},
                primary_judge="dark")
    (site / "fake_good" / "cards").mkdir()
    (site / "fake_good" / "cards" / "fake-toy-darkness-v0.yaml").write_text(yaml.safe_dump(card))
    (site / "fake_wrong.py").write_text("NOT_A_METHOD = 42\n\nclass Nameless:\n    pass\n")
    _distribution(site, "fake-good", {"benchsuite.rewards": {"fake-darkness": "fake_good:Darkness"},
                                      "benchsuite.tasks": {"cards": "fake_good.cards"}})
    _distribution(site, "fake-missing-dep", {"benchsuite.methods": {"needs-dep": "fake_no_such_module:Method"}})
    _distribution(site, "fake-wrong-type", {"benchsuite.methods": {"not-a-method": "fake_wrong:NOT_A_METHOD"},
                                            "benchsuite.backbones": {"not-callable": "fake_wrong:NOT_A_METHOD"}})
    _distribution(site, "fake-clash", {"benchsuite.methods": {"ddpo": "fake_wrong:Nameless"}})
    _distribution(site, "fake-twin-a", {"benchsuite.rewards": {"twin": "fake_good:Darkness"}})
    _distribution(site, "fake-twin-b", {"benchsuite.rewards": {"twin": "fake_good:Darkness"},
                                        "benchsuite.tasks": {"nowhere": "fake_wrong:NOT_A_METHOD"}})
    return {"PYTHONPATH": str(site)}


def test_list_shows_each_broken_plugin_as_one_line_and_everything_else(broken_site):
    out = _cli("list", env=broken_site)
    assert out.returncode == 0, out.stderr
    broken = out.stdout.split("plugins that do not load", 1)[1].splitlines()[1:]
    expected = {  # distribution -> what its line says
        "fake-missing-dep 1.0": "does not import (ModuleNotFoundError: No module named 'fake_no_such_module')",
        "fake-wrong-type 1.0": "must be a subclass of benchsuite.methods.base.Method, got 42",
        "fake-clash 1.0": "'ddpo' is the name of a built-in method",
        "fake-twin-a 1.0": "2 distributions (fake-twin-a 1.0, fake-twin-b 1.0) define reward 'twin'",
    }
    for dist, what in expected.items():
        lines = [line for line in broken if f"distribution {dist})" in line and what in line]
        assert len(lines) == 1, (dist, broken)
        assert f"pip uninstall {dist.split()[0]}" in lines[0]
    assert any("not-callable" in line and "a backbone must be a factory" in line for line in broken)
    assert any("nowhere" in line and "task-card folder entry point" in line for line in broken)
    assert len(broken) == 7  # one per broken entry point, nothing else
    # built-ins and the good plugin's card are listed; the good reward's card loads
    assert "  ddpo " in out.stdout and "fake-toy-darkness-v0" in out.stdout
    assert "[does not load]" not in out.stdout


@pytest.mark.slow  # multi-process: CLI subprocesses, about 8 s
def test_a_broken_plugin_is_its_one_line_error_and_the_rest_runs(broken_site, tmp_path):
    out = _cli("run", "--task", "toy-brightness-v0", "--method", "needs-dep", "--no-mlflow", env=broken_site)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "plugin needs-dep = 'fake_no_such_module:Method'" in out.stderr and "fake-missing-dep 1.0" in out.stderr
    out = _cli("show", "not-a-method", env=broken_site)
    assert out.returncode == 2 and "fake-wrong-type" in out.stderr and out.stderr.count("\n") == 1
    # the good plugin's reward and card, and the built-in ddpo the clash left alone, run beside the broken ones
    out = _cli("run", "--task", "fake-toy-darkness-v0", "--method", "ddpo", "--budget", "32", "--no-mlflow",
               "--no-progress", "--output", str(tmp_path), env=broken_site)
    assert out.returncode == 0, out.stderr
    assert "dark (headline)" in out.stdout  # the final table names the judge


def test_registry_drops_a_plugin_of_the_wrong_type_and_keeps_the_others():
    registry = Registry("method", "benchsuite.methods", lambda name, obj: None if callable(obj) else "not callable")
    registry._register_builtin("builtin", "builtins:len")
    registry._add_plugins([Plugin("benchsuite.methods", "good", "builtins:abs", "good-dist 1"),
                           Plugin("benchsuite.methods", "bad", "builtins:__doc__", "bad-dist 2"),
                           Plugin("benchsuite.methods", "builtin", "builtins:abs", "clash-dist 3")])
    assert registry.names() == ["bad", "builtin", "good"] and registry.load("builtin") is len
    with pytest.raises(PluginError, match=r"plugin bad = 'builtins:__doc__' .*bad-dist 2\): not callable"):
        registry.load("bad")
    assert registry.names() == ["builtin", "good"] and registry.load("good") is abs
    with pytest.raises(PluginError, match="bad-dist 2"):  # still its own problem, not an unknown name
        registry.check("bad")
    assert [line.split(" (entry point")[0] for line in registry.broken()] == [
        "plugin bad = 'builtins:__doc__'", "plugin builtin = 'builtins:abs'"]


@pytest.mark.parametrize("attr, problem", [
    ("PLAIN", "a method must be a subclass of benchsuite.methods.base.Method, got <class 'object'>"),
    ("NAMELESS", "its class attribute name is None, not the entry point's name 'x'"),
    ("HALF", "Half does not implement step"),
])
def test_method_plugins_of_the_wrong_kind_are_refused(attr, problem, monkeypatch):
    import types

    from benchsuite.methods.base import Method
    from benchsuite.plugin_checks import valid_method

    class Half(Method):
        """A method without its step."""

        name = "x"

    module = types.ModuleType("fake_methods")
    module.PLAIN, module.NAMELESS, module.HALF = object, type("Nameless", (Method,), {"step": lambda s, o: {}}), Half
    monkeypatch.setitem(sys.modules, "fake_methods", module)
    registry = Registry("method", "benchsuite.methods", valid_method)
    registry._add_plugins([Plugin("benchsuite.methods", "x", f"fake_methods:{attr}", "fake 1")])
    with pytest.raises(PluginError, match=re.escape(problem)):
        registry.load("x")


# ---- 2. the example plugin through every command -----------------------------------------------------------------
@pytest.fixture(scope="module")
def example():
    require_installed("benchsuite-example", ".venv/bin/pip install -e tests/plugins/benchsuite-example")
    return "example-toy-contrast-v0"


@pytest.mark.slow  # multi-process: CLI subprocesses, about 5 s
def test_example_in_list_and_show(example):
    out = _cli("list")
    assert out.returncode == 0, out.stderr
    assert example in out.stdout and "(plugin: benchsuite-example 0.1.0)" in " ".join(out.stdout.split())
    assert "plugins that do not load" not in out.stdout
    shown = _cli("show", "rwr")
    assert shown.returncode == 0 and "temperature: float = 0.5" in shown.stdout
    assert "benchsuite_example/baselines/rwr/defaults.yaml" in shown.stdout  # the presets it ships
    assert "oracle: pixel-contrast v0" in _cli("show", example).stdout


@pytest.mark.slow  # multi-process: two worker processes, about 18 s
def test_example_run_and_sweep_with_two_workers(example, tmp_path):
    out = _cli("run", "--task", example, "--method", "rwr", "--budget", "64", "--no-mlflow", "--no-progress",
               "--output", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "contrast (headline)" in out.stdout
    out = _cli("sweep", "--tasks", example, "--methods", "rwr", "--seeds", "0-1", "--budget", "64",
               "--workers", "2", "--no-mlflow", "--output", str(tmp_path / "sweep"))
    assert out.returncode == 0, out.stdout + out.stderr
    for seed in (0, 1):  # each run in a spawned worker process, which found the plugin on its own
        assert f"{example} rwr seed {seed}: FINISHED" in out.stdout


@pytest.mark.slow  # multi-process: two tuning workers, about 13 s
def test_example_tune_with_two_workers_exports_beside_the_projects_presets(example, tmp_path):
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    out = _cli("tune", "--task", example, "--method", "rwr", "--trials", "2", "--budget", "64", "--workers", "2",
               "--no-mlflow", "--output", str(tmp_path), env={"BENCHSUITE_BASELINES_DIR": str(baselines)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2/2 trials done" in out.stdout
    tuned = yaml.safe_load((baselines / "rwr" / "tuned" / f"{example}.yaml").read_text())
    assert {"lr", "temperature"} <= set(tuned)  # the search space the plugin ships


@pytest.mark.slow  # multi-process: CLI subprocesses, about 8 s
def test_example_ask_tell(example, tmp_path):
    """One batch (the plugin's preset for the tiny backbone: 32) asked in one process, told in another, which
    restores the plugin's method from the session and finishes the budget."""
    state = tmp_path / "session"
    out = _cli("ask", "--state", str(state), "--task", example, "--method", "rwr", "--budget", "32")
    assert out.returncode == 0, out.stderr
    ask = state / "asks" / "ask-0001.csv"
    rows = list(csv.DictReader(ask.read_text().splitlines()))
    assert len(rows) == 32
    with ask.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "score": str(0.1 * (i % 5))} for i, row in enumerate(rows))
    told = _cli("tell", "--state", str(state), str(ask))
    assert told.returncode == 0, told.stderr
    assert "32 of 32 queries used; budget spent, session finished" in told.stdout


def test_ci_installs_the_example_plugin_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    install = "pip install -q --no-deps -e tests/plugins/benchsuite-example"
    assert install in ci and ci.index(install) < ci.index(".venv/bin/python -m pytest")


# ---- in-process registrations and worker processes ---------------------------------------------------------------
def test_entries_registered_in_process_only_are_refused_for_spawned_workers(tmp_path, monkeypatch):
    """Regression: a method registered at runtime ran in one process, but the workers of ``sweep --workers 2``
    failed with UnknownNameError. Now several workers are refused up front, naming the entry and the fix."""
    from benchsuite import tasks
    from benchsuite.config import resolve
    from benchsuite.errors import ConfigError
    from benchsuite.methods.pretrained import Pretrained
    from benchsuite.registry import METHODS, REWARDS
    from benchsuite.sweep import run_many
    from benchsuite.testing import MeanBrightness
    from benchsuite.tuning import Tuner, TuneSpec

    class Mine(Pretrained):
        """Pretrained under another name."""

        name = "mine"

    class Mean(MeanBrightness):
        name = "my-brightness"

    monkeypatch.setitem(METHODS._entries, "mine", Mine)  # as METHODS.register does, undone after the test
    monkeypatch.setitem(REWARDS._entries, "my-brightness", Mean)
    card = yaml.safe_load((ROOT / "tasks" / "toy-brightness-v0.yaml").read_text())
    card.update(id="my-toy-v0", oracle={"name": "my-brightness"})
    (tmp_path / "my-toy-v0.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tmp_path))
    tasks._cards.cache_clear()
    monkeypatch.chdir(tmp_path)
    try:
        config = resolve("toy-brightness-v0", "mine", budget=64, output_root=str(tmp_path))
        with pytest.raises(ConfigError, match="method 'mine' is registered in this process only.*benchsuite.methods"):
            run_many([config], "local", workers=2)
        assert not (tmp_path / "runs").exists()
        assert [o.status for o in run_many([config], "local", workers=1)] == ["FINISHED"]  # one process: fine
        tuner = Tuner(TuneSpec(task="my-toy-v0", method="ddpo", n_trials=1, budget=32, output_root=str(tmp_path)))
        with pytest.raises(ConfigError, match="reward 'my-brightness' is registered in this process only"):
            tuner.tune(workers=2)
        assert not (tmp_path / "optuna").exists()
    finally:
        tasks._cards.cache_clear()


def test_require_installed_skips_here_and_fails_under_ci(monkeypatch):
    """The install check of plugin tests: a skip that says how to install, a failure where CI installs it."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-dist is not installed \(pip install x\)"):
        require_installed("no-such-dist", "pip install x")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but no-such-dist is not installed"):
        require_installed("no-such-dist", "pip install x")
    require_installed("torch", "pip install torch")  # installed: nothing happens
