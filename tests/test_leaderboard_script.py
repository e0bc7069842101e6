"""scripts/leaderboard.py's tuning stage on the toy task: equal trials per method, the task's objective, exported
presets that later runs pick up, the journal and the cost table written."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("leaderboard", ROOT / "scripts" / "leaderboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tune_stage_exports_what_runs_then_use(tmp_path, monkeypatch):
    import pandas as pd

    from benchsuite.config import resolve

    baselines = tmp_path / "baselines"
    shutil.copytree(ROOT / "baselines", baselines, ignore=shutil.ignore_patterns("tuned"))
    monkeypatch.setenv("BENCHSUITE_BASELINES_DIR", str(baselines))
    lb = _script()
    monkeypatch.setattr(lb, "TUNE_TRIALS", 2)
    assert lb.tuning_objective("toy-brightness-v0", "sqdf") == "eval/brightness_mean.matched"
    assert lb.tuning_objective("toy-brightness-v0", "bo") == "eval/brightness_mean"  # no path KL to match
    # the online tasks tuned before the v2 report keep their top-10 studies; later online cards tune on the headline
    assert lb.tuning_objective("ehrlich-s32-l32-v1", "sqdf") == "found"
    monkeypatch.setattr(lb, "TOP10_TUNED", frozenset())  # as for an online card tuned after the v2 report
    assert lb.tuning_objective("ehrlich-s32-l32-v1", "sqdf") == "eval/ehrlich_mean.matched"
    assert lb.tuning_objective("ehrlich-s32-l32-v1", "bo") == "eval/ehrlich_mean"
    out = tmp_path / "tuning"
    out.mkdir()
    # a stage of some tasks keeps the other studies' rows and replaces its own
    pd.DataFrame([{"task": "other-task-v0", "method": "ddpo", "trials": 8, "cpu_s": 1.0},
                  {"task": "toy-brightness-v0", "method": "sqdf", "trials": 99, "cpu_s": 1.0}]).to_csv(
        out / "tuning.csv", index=False)
    lb.tune(["toy-brightness-v0"], ["pretrained", "sqdf"], out, workers=1)  # pretrained: nothing to tune
    table = pd.read_csv(out / "tuning.csv")
    assert list(zip(table.task, table.method)) == [("other-task-v0", "ddpo"), ("toy-brightness-v0", "sqdf")]
    table = table[table.task == "toy-brightness-v0"].reset_index(drop=True)
    assert table.trials[0] == 2 and table.cpu_s[0] > 0
    assert (out / "journals" / "sqdf--toy-brightness-v0.log").stat().st_size > 0
    exported = yaml.safe_load((baselines / "sqdf" / "tuned" / "toy-brightness-v0.yaml").read_text())
    assert set(exported) == set(lb.TUNE_PARAMS["sqdf"])
    config = dict(resolve("toy-brightness-v0", "sqdf").method_config)
    assert all(abs(config[k] - v) < 1e-12 for k, v in exported.items())
    assert "| toy-brightness-v0 | sqdf |" in (out / "tuning.md").read_text()


def test_run_stage_records_cost_and_reports_the_suites_methods_only(tmp_path):
    """The run stage appends its worker CPU and wall time to suite.json (one entry per stage, so a suite run in parts
    adds up), cost.md tabulates them, and the report keeps the suite's methods: a finished run of another method in
    the same folder (e.g. an installed plugin's) stays out of the tables."""
    import json

    import pandas as pd

    from benchsuite.config import resolve
    from benchsuite.runner import run

    lb = _script()
    out = tmp_path / "lb"
    run(resolve("toy-brightness-v0", "best-of-n", seed=0, budget=64, output_root=str(out)))  # not in the suite
    lb.run(["toy-brightness-v0"], ["pretrained"], [0], out, workers=1, budget=64, fractions=(0.0, 1.0))
    lb.run(["toy-brightness-v0"], ["pretrained", "ddpo"], [0], out, workers=1, budget=64, fractions=(0.0, 1.0))
    stages = json.loads((out / "suite.json").read_text())
    assert [(s["runs"], s["ran"], s["failed"]) for s in stages] == [(1, 1, 0), (2, 1, 0)]
    assert all(s["cpu_s"] > 0 and s["wall_s"] > 0 and s["commit"] for s in stages)
    lb.report(["toy-brightness-v0"], ["pretrained", "ddpo"], [0], out)
    assert set(pd.read_csv(out / "per_seed.csv")["method"]) == {"pretrained", "ddpo"}
    cost = (out / "cost.md").read_text()
    assert "best-of-n" not in cost and "| toy-brightness-v0 | ddpo | 1 |" in cost
    total = sum(s["cpu_s"] for s in stages) / 60
    assert f"In all {total:.1f} CPU-minutes" in cost


def test_a_partial_rerun_keeps_the_other_tasks_of_the_report(tmp_path):
    """run --tasks A --keep-other-tasks: A's rows come from its run folders, every other task's rows and sample
    grids from the report already in the folder (its curves.csv, grids/), unchanged; a superseded task's are
    dropped."""
    import pandas as pd

    lb = _script()
    out = tmp_path / "lb"
    lb.run(["toy-brightness-v0"], ["pretrained"], [0], out, workers=1, budget=64, fractions=(0.0, 1.0))
    lb.report(["toy-brightness-v0"], ["pretrained"], [0], out)
    before = pd.read_csv(out / "per_seed.csv").dropna(axis=1, how="all")
    # the toy backbone is not in GRID_BACKBONES: a stand-in grid in the report shows that grids are carried over
    grid = out / "grids" / "toy-brightness-v0" / "pretrained.png"
    grid.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(next(out.glob("runs/*/samples/*.png")), grid)
    shutil.rmtree(out / "runs")  # the kept task has no run folders any more: only the report holds it
    # rows of a task whose card has a newer version (here a relabelled copy) leave the leaderboard
    curves = pd.read_csv(out / "curves.csv")
    stale = curves[curves["task"] == "toy-brightness-v0"].assign(task="digits-jpeg-compress-v0")
    pd.concat([curves, stale]).to_csv(out / "curves.csv", index=False)
    lb.run(["toy-online-v0"], ["pretrained"], [0], out, workers=1, budget=64, fractions=(0.0, 1.0))
    lb.report(["toy-online-v0"], ["pretrained"], [0], out, keep_other_tasks=True)
    after = pd.read_csv(out / "per_seed.csv")
    assert set(after["task"]) == {"toy-brightness-v0", "toy-online-v0"}
    kept = after[after["task"] == "toy-brightness-v0"].reset_index(drop=True)[before.columns]
    pd.testing.assert_frame_equal(kept, before, check_dtype=False)
    assert grid.exists() and (out / "figures" / "toy-brightness-v0_samples.png").exists()
    assert "| toy-brightness-v0 | pretrained | 1 |" in (out / "cost.md").read_text()
    with pytest.raises(SystemExit, match="curves.csv"):
        lb.report(["toy-online-v0"], ["pretrained"], [0], tmp_path / "empty", keep_other_tasks=True)
