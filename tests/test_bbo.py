"""The black-box tier: the PMO cards on the ChEMBL prior, the bbo-v1 spec (named method lists, the AUC top-10
headline, the budget override) and its report (AUC top-10 beside PMO's published values, top-k curves, holo-bench's
Ehrlich numbers) on a tiny synthetic run folder."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchsuite import leaderboard as lb
from benchsuite.errors import ConfigError
from benchsuite.report import bbo
from benchsuite.tasks import load_spec

ROOT = Path(__file__).resolve().parents[1]
PMO_TASK, GRID_TASK = "selfies-chembl-pmo-qed-v0", "ehrlich-grid-l32-c2-k4-v0"


def _script():
    loader = importlib.util.spec_from_file_location("make_pmo_cards", ROOT / "scripts" / "make_pmo_cards.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_the_committed_pmo_cards_are_the_generators_and_carry_pmo_accounting():
    script = _script()
    assert script.main(["--check"]) == 0
    ids = list(script.cards())
    assert len(ids) == 20 and script.card_id("deco_hop") == "selfies-chembl-pmo-deco-hop-v0"
    for cid in ids:
        card = load_spec(cid)
        oracle = cid.removeprefix("selfies-chembl-pmo-").removesuffix("-v0")
        assert card.oracle.name == f"pmo-{oracle}" and card.backbone == "selfies-chembl"
        assert card.accounting.mode == "pmo" and card.accounting.freq == 100 and card.default_budget == 10_000
        assert card.drift_budget == 32 and dict(card.judge_tolerance) == {"sa": 0.05}
        assert card.primary_judge == oracle.replace("-", "_") and card.protocol is not None


def test_the_bbo_tier_is_sound():
    spec = lb.load_leaderboard("bbo")
    assert spec.headline == "auc-top10" and spec.budget <= 10_000
    pmo = [t for t in spec.tasks if t.id.startswith("selfies-chembl-pmo-")]
    grid = [t for t in spec.tasks if t.id.startswith("ehrlich-grid-")]
    assert len(pmo) == 20 and len(grid) >= 9 and len(pmo) + len(grid) == len(spec.tasks)
    assert all(t.seeds == 5 for t in pmo)
    methods = spec.method_names()
    # explicit names: the black-box baselines join although they stay out of the fine-tuning tiers
    assert {"screening", "graph-ga", "sequence-ga", "bo", "ddpo"} <= set(methods)
    assert "graph-ga" in spec.task_methods(PMO_TASK, methods)
    assert "graph-ga" not in spec.task_methods(GRID_TASK, methods)  # molecules only
    assert spec.task_methods(GRID_TASK, ["graph-ga"]) == []
    assert lb.tuning_objective(PMO_TASK, "ddpo", spec.headline) == "pmo/auc_top10"
    assert {v.task for v in spec.verify} <= set(spec.task_ids)


def test_the_full_pmo_budget_is_an_override_of_the_same_spec():
    base = lb.load_leaderboard("bbo")
    full = lb.with_budget(base, "default")
    assert full.budget_for(PMO_TASK) == 10_000 and full.budget_for(GRID_TASK) == load_spec(GRID_TASK).default_budget
    assert lb.report_folder(full, base) == lb.RESULTS / "bbo-budget-default"
    assert lb.report_folder(lb.with_budget(base, "2000"), base) == lb.RESULTS / "bbo-budget2000"
    assert lb.report_folder(lb.with_budget(base, None), base) == lb.RESULTS / "bbo"
    configs = lb.run_configs(full, ["graph-ga"], 0, Path("/tmp/unused"), tasks=[PMO_TASK, GRID_TASK])
    assert [(c.task, c.budget) for c in configs] == [(PMO_TASK, 10_000)]
    with pytest.raises(ConfigError, match="positive integer or 'default'"):
        lb.with_budget(base, "lots")


BASE = {"id": "mini-v1", "budget": 200, "eval_fractions": [0, 1], "headline": "auc-top10",
        "tasks": {PMO_TASK: {"seeds": 2, "methods": "molecules"}, GRID_TASK: {"seeds": 2, "methods": "sequences"}},
        "methods": {"molecules": ["screening", "graph-ga"], "sequences": ["screening", "sequence-ga"]}}


@pytest.fixture
def tier(leaderboard_spec):
    """``tier(**changes)``: a two-task auc-top10 spec (BASE with changes) on the path; its spec."""
    return lambda **changes: leaderboard_spec({**BASE, **changes})


@pytest.mark.parametrize("changes, message", [
    ({"headline": "best"}, "headline must be one of"),
    ({"tasks": {"toy-brightness-v0": {"seeds": 2, "methods": "molecules"}}}, "needs PMO accounting"),
    ({"tasks": {PMO_TASK: {"seeds": 2, "methods": "nope"}}}, "must name one of the spec's method lists"),
    ({"tasks": {PMO_TASK: {"seeds": 2}}}, "must name one of the spec's method lists"),
    ({"methods": ["screening"]}, "not a mapping of named lists"),
    ({"methods": {"molecules": []}}, "non-empty lists"),
    ({"tasks": {PMO_TASK: {"seeds": 2, "methods": "molecules", "budget": 3}}}, "unknown keys"),
])
def test_a_malformed_bbo_spec_is_one_line(tier, changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        tier(**changes)
    assert "\n" not in str(info.value)


def test_topk_curve_by_hand():
    curve = bbo.topk_curve(np.array([0.1, 0.5, 0.2, 0.9, 0.3]), freq=2)
    assert curve["calls"].tolist() == [2, 4, 5]
    assert curve["top1"].tolist() == [0.5, 0.9, 0.9]
    assert np.allclose(curve["top10"], [0.3, (0.1 + 0.5 + 0.2 + 0.9) / 4, 2.0 / 5])


def _fake_run(root: Path, task: str, method: str, seed: int, values: list[float], final: dict) -> None:
    """A finished run folder as the runner writes it: summary, run record and query log (charged rows and one
    cache hit)."""
    run_dir = root / "runs" / f"{task}__{method}__seed{seed}__fake"
    run_dir.mkdir(parents=True)
    summary = {"run_id": run_dir.name, "status": "FINISHED", "queries_used": len(values), "wall_time_s": 1.5,
               "config": {"task": task, "method": method, "seed": seed}, "final": final}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "run.json").write_text(json.dumps({"tags": {"benchsuite.git_sha": "0" * 40}}))
    log = pd.DataFrame({"call": range(len(values) + 1), "condition": -1, "reward": [*values, values[0]],
                        "charged": [1] * len(values) + [0], "key": [f"k{i}" for i in range(len(values))] + ["k0"]})
    log.to_csv(run_dir / "query_log.csv", index=False)


def _fake_tier(root: Path) -> None:
    rng = np.random.default_rng(0)
    for method, shift in (("screening", 0.0), ("graph-ga", 0.2), ("sequence-ga", 0.1)):
        for seed in (0, 1, 2):  # seed 2 lies outside the spec's two seeds: left out of the report
            values = np.clip(rng.uniform(0, 0.6, 250) + shift * np.linspace(0, 1, 250), 0, 1).tolist()
            from benchsuite.metrics.pmo import pmo_summary

            final = {f"pmo/{k}": v for k, v in pmo_summary(values, budget=250).items()}
            if method != "sequence-ga":
                _fake_run(root, PMO_TASK, method, seed, values, final)
            if method != "graph-ga":
                solved = seed == 0 and method == "sequence-ga"
                _fake_run(root, GRID_TASK, method, seed, values, {
                    **final, "pmo/simple_regret": 0.0 if solved else 0.4, "pmo/feasible_fraction": 0.9,
                    "pmo/solved": float(solved), "pmo/queries_to_solve": 120.0 if solved else -1.0,
                    "pmo/cumulative_regret": 50.0})


def test_the_report_on_a_tiny_run_folder(tier, tmp_path):
    """report_bbo through the leaderboard: AUC top-10 per oracle beside PMO's values, the Ehrlich table, a top-k
    figure per task and the overview; the whole seeds and each task's methods only; rebuilt from its CSVs alone."""
    spec = tier()
    out = tmp_path / "out"
    _fake_tier(out)
    result = lb.report(spec, spec.method_names(), out, allow_dirty=True)
    text = (out / "bbo.md").read_text()
    per_run = pd.read_csv(out / "per_run.csv")
    assert set(per_run["seed"]) == {0, 1} and len(per_run) == 8  # 2 PMO methods x 2 seeds + 2 grid methods x 2
    assert "| qed | " in text and "0.941" in text and "REINVENT (PMO)" in text  # the published columns
    row = next(line for line in text.splitlines() if line.startswith("| qed |"))
    mine = per_run[(per_run.task == PMO_TASK) & (per_run.method == "graph-ga")]["pmo/auc_top10"]
    assert f"{mine.mean():.3f} ± " in row
    grid_row = next(line for line in text.splitlines() if line.startswith(f"| {GRID_TASK} | sequence-ga"))
    assert "| 0.50 | 120 |" in grid_row  # solve rate 1 of 2 seeds, median queries to solve over the solved
    assert len(result["figures"]) == 3 and all(p.is_file() for p in result["figures"])
    assert (out / "cost.md").is_file() and (out / "topk_curves.csv").is_file()
    curves = pd.read_csv(out / "topk_curves.csv")
    assert curves.groupby(["task", "method", "seed"])["calls"].max().eq(250).all()  # the cache hit is not a call
    before = text
    bbo.rebuild_bbo_report(out)
    assert (out / "bbo.md").read_text() == before
