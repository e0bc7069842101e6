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
        "methods": {"molecules": ["screening", "graph-ga"], "sequences": ["screening", "sequence-ga", "ddpo"]}}


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
    ({"tuning": {"trials": 2, "tasks": {"molecules": [PMO_TASK]}}}, "maps every method list"),
    ({"tuning": {"trials": 2, "tasks": {"molecules": [], "sequences": [GRID_TASK]}}}, "non-empty list"),
    ({"tuning": {"trials": 2, "tasks": {"molecules": ["nope-v0"], "sequences": [GRID_TASK]}}}, "nope-v0"),
    ({"tuning": {"trials": 2, "on": {}}}, "unknown tuning keys"),
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


def test_topk_curve_pads_a_run_that_stopped_early_to_its_budget():
    # five charged values of a budget of 8 (PMO accounting ended the run on free answers): points every 2 calls up
    # to 8, the last ones repeating the run's final top-k, as PMO pads its AUC; no off-grid point at 5
    curve = bbo.topk_curve(np.array([0.1, 0.5, 0.2, 0.9, 0.3]), freq=2, budget=8)
    assert curve["calls"].tolist() == [2, 4, 6, 8]
    assert curve["top1"].tolist() == [0.5, 0.9, 0.9, 0.9]
    assert np.allclose(curve["top10"], [0.3, 1.7 / 4, 2.0 / 5, 2.0 / 5])
    # a budget that is not a multiple of freq ends on the budget
    assert bbo.topk_curve(np.array([0.1, 0.5, 0.2]), freq=2, budget=3)["calls"].tolist() == [2, 3]


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


def test_read_bbo_runs_pads_each_curve_to_its_runs_budget(tmp_path):
    _fake_run(tmp_path, "made-up-task", "screening", 0, [0.2, 0.4, 0.1], {"pmo/auc_top10": 0.1})
    summary_path = next(tmp_path.glob("runs/*/summary.json"))
    summary = json.loads(summary_path.read_text())
    summary["config"]["budget"] = 250  # 3 charged values, then the run stopped (free answers)
    summary_path.write_text(json.dumps(summary))
    curve = bbo.read_bbo_runs(tmp_path)[1]
    assert curve["calls"].tolist() == [100, 200, 250]  # PMO's freq on a task without a card
    assert curve["top1"].tolist() == [0.4, 0.4, 0.4]


def _fake_tier(root: Path) -> None:
    rng = np.random.default_rng(0)
    for method, shift in (("screening", 0.0), ("graph-ga", 0.2), ("sequence-ga", 0.1), ("ddpo", 0.15)):
        for seed in (0, 1, 2):  # seed 2 lies outside the spec's two seeds: left out of the report
            values = np.clip(rng.uniform(0, 0.6, 250) + shift * np.linspace(0, 1, 250), 0, 1).tolist()
            from benchsuite.metrics.pmo import pmo_summary

            final = {f"pmo/{k}": v for k, v in pmo_summary(values, budget=250).items()}
            if method not in ("sequence-ga", "ddpo"):
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
    assert set(per_run["seed"]) == {0, 1} and len(per_run) == 10  # 2 PMO methods x 2 seeds + 3 grid methods x 2
    assert "| qed | " in text and "0.941" in text and "REINVENT (PMO)" in text  # the published columns
    row = next(line for line in text.splitlines() if line.startswith("| qed |"))
    mine = per_run[(per_run.task == PMO_TASK) & (per_run.method == "graph-ga")]["pmo/auc_top10"]
    assert f"{mine.mean():.3f} ± " in row
    grid_row = next(line for line in text.splitlines() if line.startswith(f"| {GRID_TASK} | sequence-ga"))
    assert "| 0.50 | 120 |" in grid_row  # solve rate 1 of 2 seeds, median queries to solve over the solved
    assert len(result["figures"]) == 3 and all(p.is_file() for p in result["figures"])
    pairs = pd.read_csv(out / "paired_differences.csv")  # ddpo on the grid card against its two baselines
    assert pairs[["task", "method", "baseline", "seeds"]].values.tolist() == [
        [GRID_TASK, "ddpo", "screening", 2], [GRID_TASK, "ddpo", "sequence-ga", 2]]
    assert "| Ehrlich grid (1) | ddpo | screening |" in text
    assert (out / "cost.md").is_file() and (out / "topk_curves.csv").is_file()
    curves = pd.read_csv(out / "topk_curves.csv")
    assert curves.groupby(["task", "method", "seed"])["calls"].max().eq(250).all()  # the cache hit is not a call
    before = text
    bbo.rebuild_bbo_report(out)
    assert (out / "bbo.md").read_text() == before


def test_the_bbo_tier_is_tuned_by_pmos_protocol(tmp_path):
    """One study per (method list, method), on the list's tuning tasks (PMO's: zaleplon and perindopril MPO), whose
    best trial is the preset of every run of the list; the fine-tuning tiers keep one study per (task, method)."""
    spec = lb.load_leaderboard("bbo")
    on = dict(spec.tune_on)
    assert on["molecules"] == ("selfies-chembl-pmo-zaleplon-mpo-v0", "selfies-chembl-pmo-perindopril-mpo-v0")
    assert set(on) == {g for g, _ in spec.groups} and all(set(t) <= set(spec.task_ids) for t in on.values())
    studies = lb.studies(spec, spec.method_names(), tmp_path)
    labels = {label for label, _ in studies}
    assert labels == {"bbo-v1-molecules", "bbo-v1-sequences"}
    for label, study in studies:
        group = label.removeprefix("bbo-v1-")
        assert study.tasks == on[group] and study.preset_name == label and study.method in dict(spec.groups)[group]
        assert study.objectives == ("pmo/auc_top10",) and study.seed == lb.TUNING_SEED and study.budget == spec.budget
    assert sum(s.method == "graph-ga" for _, s in studies) == 1
    assert lb.Tuner(next(s for _, s in studies if s.method == "graph-ga")).pruning is False
    assert spec.preset_name(PMO_TASK) == "bbo-v1-molecules" and spec.preset_name(GRID_TASK) == "bbo-v1-sequences"
    assert lb.tuning_folder(spec) == lb.RESULTS / "tuning-bbo"
    core = lb.load_leaderboard("core")
    assert lb.tuning_folder(core) == lb.RESULTS / "tuning" and core.preset_name(core.task_ids[0]) is None
    assert all(s.preset_name is None and not s.also_on and label == s.task
               for label, s in lb.studies(core, core.method_names(), tmp_path))


def test_a_list_is_tuned_once_and_its_preset_serves_every_task_of_it(tier, tmp_path, baselines):
    """End to end on two Ehrlich grid cards with the sequence GA: the study's trials run both cards, each trial's
    value is the mean of the two runs' AUC top-10, and the run stage's configs of both cards (a tuning card and
    one that was not tuned on) take the exported preset, while a card's own tuned file is ignored."""
    import optuna
    import yaml

    other = "ehrlich-grid-l32-c4-k4-v0"
    spec = tier(tasks={GRID_TASK: {"seeds": 2, "methods": "sequences"}, other: {"seeds": 2, "methods": "sequences"}},
                methods={"sequences": ["sequence-ga"]}, budget=256,
                tuning={"trials": 2, "tasks": {"sequences": [GRID_TASK]}})
    out = tmp_path / "tuning"
    summary = lb.tune(spec, ["sequence-ga"], out, workers=1)
    table = pd.read_csv(out / "tuning.csv")
    assert table[["task", "method", "trials"]].values.tolist() == [["mini-v1-sequences", "sequence-ga", 2]]
    assert "PMO's protocol" in summary.read_text()
    study = optuna.load_study(study_name="sequence-ga--mini-v1-sequences--pmo_auc_top10",
                              storage=lb.Tuner(lb.studies(spec, ["sequence-ga"], out)[0][1]).storage())
    for trial in study.trials:
        run = out / "optuna" / study.study_name / "runs" / trial.user_attrs["benchsuite.run_id"]
        assert trial.value == pytest.approx(json.loads((run / "summary.json").read_text())["final"]["pmo/auc_top10"])
    preset = baselines / "sequence-ga" / "tuned" / "mini-v1-sequences.yaml"
    assert yaml.safe_load(preset.read_text()) == study.best_trial.params
    (baselines / "sequence-ga" / "tuned" / f"{other}.yaml").write_text("batch_size: 17\n")
    for config in lb.run_configs(spec, ["sequence-ga"], 0, tmp_path / "runs"):
        values = dict(config.method_config)
        assert all(values[k] == pytest.approx(v) for k, v in study.best_trial.params.items()), config.task


def test_paired_differences_by_hand():
    """Each non-baseline method minus each baseline of the task's kind, paired by seed (t(0.975, 2) = 4.303)."""
    per_run = pd.DataFrame({"task": PMO_TASK, "seed": [0, 1, 2] * 3,
                            "method": ["ddpo"] * 3 + ["screening"] * 3 + ["graph-ga"] * 3,
                            "pmo/auc_top10": [0.5, 0.6, 0.7, 0.4, 0.4, 0.4, 0.1, 0.2, 0.3]})
    pairs = bbo.paired_differences(per_run, ["screening", "graph-ga", "ddpo"]).set_index("baseline")
    assert list(pairs.index) == ["screening", "graph-ga"] and set(pairs.method) == {"ddpo"}
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # differences 0.1, 0.2, 0.3: sd 0.1
    assert pairs.loc["screening", "difference"] == pytest.approx(0.2)
    assert pairs.loc["screening", ["low", "high"]].tolist() == pytest.approx([0.2 - half, 0.2 + half])
    assert pairs.loc["screening", "sign"] == 0 and pairs.loc["graph-ga", "sign"] == 1  # 0.4 on every seed
    text = bbo.paired_markdown(pairs.reset_index())
    assert "| PMO oracles (1) | ddpo | graph-ga | 1 | 0 | 0 | +0.400 |" in text
    assert "| qed | ddpo | +0.200 [-0.048, +0.448] | +0.400 [+0.400, +0.400]* |" in text


def test_the_tiers_methods_keep_one_distinct_colour_in_every_figure():
    # the bbo tier's figures draw 9 methods; each built-in declares its own colour, so a task's figure (7 of them on
    # the Ehrlich cards) gives a method the colour it has in every other figure, and no two methods share one
    from benchsuite.report.plots import method_colors

    tier = ["screening", "graph-ga", "sequence-ga", "reinvent", "bo", "ddpo", "sqdf", "vard", "ctrl"]
    everyone = method_colors(tier + ["pretrained", "best-of-n", "draft"])
    assert len(set(everyone.values())) == len(everyone)
    assert method_colors(["screening", "sequence-ga", "ddpo"]) == {m: everyone[m] for m in
                                                                  ["screening", "sequence-ga", "ddpo"]}
    styles = bbo._line_styles(["screening", "ddpo"], tier)
    assert styles["dashes"] == {"screening": (4, 1.5), "ddpo": ""}
    assert styles["palette"] == {"screening": everyone["screening"], "ddpo": everyone["ddpo"]}
