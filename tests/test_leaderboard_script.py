"""scripts/leaderboard.py's tuning stage on the toy task: equal trials per method, the task's objective, exported
presets that later runs pick up, the journal and the cost table written."""

import importlib.util
import shutil
from pathlib import Path

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
    assert lb.tuning_objective("toy-online-v0", "sqdf") == "found"
    out = tmp_path / "tuning"
    lb.tune(["toy-brightness-v0"], ["pretrained", "sqdf"], out, workers=1)  # pretrained: nothing to tune
    table = pd.read_csv(out / "tuning.csv")
    assert list(table.method) == ["sqdf"] and table.trials[0] == 2 and table.cpu_s[0] > 0
    assert (out / "journals" / "sqdf--toy-brightness-v0.log").stat().st_size > 0
    exported = yaml.safe_load((baselines / "sqdf" / "tuned" / "toy-brightness-v0.yaml").read_text())
    assert set(exported) == set(lb.TUNE_PARAMS["sqdf"])
    config = dict(resolve("toy-brightness-v0", "sqdf").method_config)
    assert all(abs(config[k] - v) < 1e-12 for k, v in exported.items())
    assert "| toy-brightness-v0 | sqdf |" in (out / "tuning.md").read_text()
