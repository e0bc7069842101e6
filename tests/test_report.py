"""Report: tidy loading, normalization and Pareto/hypervolume by hand, files written from real runs (the
statistics by hand: tests/test_report_stats.py and tests/test_report_tables.py)."""

import numpy as np
import pandas as pd
import pytest

from benchsuite.config import resolve
from benchsuite.errors import ConfigError
from benchsuite.report import final_grids, load_runs, rebuild_report, write_report
from benchsuite.report.plots import front_boundary, hypervolume, pareto_front
from benchsuite.report.stats import paired_t_interval, t_interval
from benchsuite.report.tables import final_values, leaderboard, normalized_scores
from benchsuite.runner import run
from benchsuite.tracking import GIT_SHA_TAG, run_tags


def test_normalized_scores_by_hand():
    final = pd.DataFrame({"task": "t", "method": ["pretrained", "a", "a", "b"], "seed": [0, 0, 1, 0],
                          "r": [1.0, 2.0, 4.0, 2.0]})
    norm = normalized_scores(final, {"t": "r"})  # no reference score: best mean, a at 3 -> span 2
    assert norm.set_index(["method", "seed"])["normalized"].to_dict() == {
        ("pretrained", 0): 0.0, ("a", 0): 0.5, ("a", 1): 1.5, ("b", 0): 0.5}
    norm = normalized_scores(final, {"t": "r"}, reference_scores={"t": 5.0})  # fixed upper anchor: span 4
    assert norm.set_index(["method", "seed"])["normalized"].to_dict() == {
        ("pretrained", 0): 0.0, ("a", 0): 0.25, ("a", 1): 0.75, ("b", 0): 0.25}


def test_pareto_front_and_hypervolume_by_hand():
    pts = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.2]])
    assert pareto_front(pts).tolist() == [True, True, True, False]
    assert hypervolume(pts, np.array([0.0, 0.0])) == pytest.approx(0.25)
    assert hypervolume(np.array([[2.0, 1.0], [1.0, 2.0]]), np.zeros(2)) == pytest.approx(3.0)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    for method in ("pretrained", "ddpo"):
        for seed in (0, 1):
            run(resolve("toy-brightness-v0", method, seed=seed, budget=96, output_root=str(root)))
    return root


def test_front_boundary_by_hand():
    # two front points (1, 3) and (2, 1) above the reference (0, 0): across at 3 to x=1, down to 1, across to
    # x=2, down to the reference
    assert front_boundary(np.array([1.0, 2.0]), np.array([3.0, 1.0]), 0.0, 0.0) == (
        [0.0, 1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 1.0, 1.0, 0.0])
    # a one-point front is an L (it used to be a zero-length step, i.e. invisible)
    assert front_boundary(np.array([1.0]), np.array([2.0]), 0.5, -1.0) == ([0.5, 1.0, 1.0], [2.0, 2.0, -1.0])


def test_report_panels_cut_the_runner_grids_exactly():
    import torch
    from PIL import Image

    from benchsuite.grids import GRID_HEADER_PX, TEXT_ROW_PX, sample_grid, sample_grid_panel, text_grid_panel
    from benchsuite.spaces import SequenceSpace

    imgs = torch.rand(24, 1, 8, 8)
    grid = Image.fromarray(sample_grid(imgs, torch.arange(24) % 3, torch.rand(24)))  # 3 rows of 8, cells of 42
    panel = sample_grid_panel(grid, columns=4)
    assert panel.size == (18 + 4 + 4 * (42 + 4), grid.size[1] - GRID_HEADER_PX)
    samples = torch.nn.functional.one_hot(torch.randint(5, (40, 10)), 5).permute(0, 2, 1).float()
    seqs = Image.fromarray(SequenceSpace(5, 10).render(samples, None, torch.rand(40)))  # best 32 rows of 12 px
    assert seqs.size[1] == GRID_HEADER_PX + 32 * TEXT_ROW_PX + 4
    assert text_grid_panel(seqs, rows=16).size == (seqs.size[0], 16 * TEXT_ROW_PX + 4)


def test_report_from_run_folders(runs_root):
    tidy = load_runs(runs_root)
    assert set(tidy.columns) == {"task", "method", "seed", "queries", "metric", "value", "commit"}
    assert tidy["commit"].nunique() == 1 and tidy["commit"].iloc[0] == run_tags()[GIT_SHA_TAG]  # run.json's tag
    assert set(tidy["method"]) == {"pretrained", "ddpo"} and set(tidy["seed"]) == {0, 1}
    final = final_values(tidy)
    assert len(final) == 4 and (final["cost/queries"] == 96).all()
    board = leaderboard(final, ["eval/brightness_mean"])
    row = board.set_index("method").loc["ddpo"]
    ddpo = final.loc[final["method"] == "ddpo", "eval/brightness_mean"]
    assert tuple(row[["eval/brightness_mean", "eval/brightness_mean_lo", "eval/brightness_mean_hi"]]) == t_interval(
        ddpo)  # the Student-t interval over the two seeds
    out = runs_root / "out"
    report = write_report(tidy, out, allow_dirty=True)  # the runs' commit is this checkout's, which may be dirty
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "aggregate.csv", "per_seed.csv",
                 "curves.csv", "paired_differences.csv", "tasks.csv", "probability_of_improvement.csv"):
        assert (out / name).stat().st_size > 0
    assert "| ddpo | 2 |" in (out / "leaderboard.md").read_text()
    assert r"\toprule" in (out / "leaderboard.tex").read_text()
    assert all(p.exists() and p.with_suffix(".pdf").exists() for p in report["figures"])
    # toy-brightness-v0 has a drift budget: every statistic reads the headline at matched drift, the pretrained
    # model's being its final value
    per_seed = report["per_seed"].sort_values("seed")
    at_drift = {m: per_seed.loc[per_seed["method"] == m, "eval/brightness_mean@drift"] for m in ("ddpo", "pretrained")}
    pre_final = final.loc[final["method"] == "pretrained"].sort_values("seed")["eval/brightness_mean"]
    assert at_drift["pretrained"].tolist() == pre_final.tolist()
    agg = report["aggregate"].set_index("method")
    assert agg.empty or agg.loc["pretrained", "iqm"] == 0.0  # empty when no run leaves the pretrained value
    # one pair (ddpo, pretrained) on the two seeds both ran: separation 1 if its paired t-interval excludes 0
    _, lo, hi = paired_t_interval(at_drift["ddpo"].to_numpy(), at_drift["pretrained"].to_numpy())
    assert report["separation"]["toy-brightness-v0"] == float(lo > 0 or hi < 0)
    per_seed = pd.read_csv(out / "per_seed.csv")
    assert len(per_seed) == 4 and (per_seed["commit"] == tidy["commit"].iloc[0]).all()


def test_sample_grid_figure_uses_each_methods_final_grid_of_its_lowest_seed(runs_root):
    grids = final_grids(runs_root)
    assert set(grids) == {"toy-brightness-v0"} and set(grids["toy-brightness-v0"]) == {"pretrained", "ddpo"}
    png = grids["toy-brightness-v0"]["ddpo"]
    assert "seed0" in png.parent.parent.name and png.name == "queries_0000096.png"
    folder = runs_root / "with_grids"
    report = write_report(load_runs(runs_root), folder, grids=grids, allow_dirty=True)
    assert (folder / "figures" / "toy-brightness-v0_samples.png") in report["figures"]
    # the report keeps its own copy of the grids: rebuilt in place from its files, it draws the same figures
    table = (folder / "leaderboard.md").read_bytes()
    assert rebuild_report(folder)["figures"] == report["figures"] and (folder / "leaderboard.md").read_bytes() == table
    assert sorted(p.name for p in (folder / "grids" / "toy-brightness-v0").iterdir()) == ["ddpo.png", "pretrained.png"]
    assert final_grids(runs_root, tasks=["digits-jpeg-compress-v0"]) == {}


def test_two_configs_of_one_seed_refuse_to_mix(runs_root, tmp_path):
    import shutil

    for d in (runs_root / "runs").iterdir():
        shutil.copytree(d, tmp_path / "runs" / d.name)
    run(resolve("toy-brightness-v0", "ddpo", seed=0, budget=96, overrides={"lr": 1e-3},
                output_root=str(tmp_path)))
    with pytest.raises(ConfigError, match="one config per"):
        load_runs(tmp_path)


def test_report_cli_writes_files_and_rejects_bad_input(runs_root, tmp_path, capsys):
    from benchsuite.cli import main

    out = tmp_path / "rep"
    assert main(["report", "--runs", str(runs_root), "--out", str(out), "--allow-dirty"]) == 0  # checkout: dirty?
    assert "| ddpo | 2 |" in capsys.readouterr().out
    assert (out / "leaderboard.md").exists() and list((out / "figures").glob("*.pdf"))
    empty = tmp_path / "empty"
    assert main(["report", "--runs", str(empty), "--out", str(tmp_path / "x")]) == 2
    assert main(["report", "--mlflow-uri", "sqlite:///nowhere.db", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "no run folders" in err and "needs --tasks" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_report_cli_refuses_an_uncommitted_tree_unless_allowed(runs_root, tmp_path, capsys, monkeypatch):
    """``benchsuite report`` checks the tree making the report too: dirty, it is a one-line error (exit 2) that
    says what to do, and nothing is written; with --allow-dirty the report says where it came from."""
    import benchsuite.report
    from benchsuite.cli import main

    monkeypatch.setattr(benchsuite.report, "current_commit", lambda: "feedc0de-dirty")
    assert main(["report", "--runs", str(runs_root), "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "feedc0de-dirty" in err and "--allow-dirty" in err and "commit" in err
    assert not (tmp_path / "no").exists()
    assert main(["report", "--runs", str(runs_root), "--out", str(tmp_path / "yes"), "--allow-dirty"]) == 0
    assert "made from an uncommitted tree: " in (tmp_path / "yes" / "leaderboard.md").read_text()
    assert "feedc0de-dirty" in (tmp_path / "yes" / "tables" / "main.tex").read_text().splitlines()[0]


def test_report_cli_uses_card_anchors_and_rebuilds_from_its_own_files(runs_root, tmp_path, capsys):
    """``benchsuite report`` anchors normalized scores at the card's reference_score (as scripts/leaderboard.py
    does), and ``--rebuild`` regenerates the written tables from the report folder alone: identical bytes, without
    the run folders; a folder that is not a report is a one-line error and nothing is written."""
    import json
    import shutil

    from benchsuite.cli import main
    from benchsuite.tasks import load_spec

    out = tmp_path / "rep"
    assert main(["report", "--runs", str(runs_root), "--out", str(out), "--allow-dirty"]) == 0
    reference = load_spec("toy-brightness-v0").reference_score
    assert json.loads((out / "report.json").read_text())["reference_scores"] == (
        {} if reference is None else {"toy-brightness-v0": reference})
    moved = tmp_path / "committed"
    shutil.copytree(out, moved)  # as committed: no run folders beside it
    again = tmp_path / "again"
    capsys.readouterr()
    assert main(["report", "--rebuild", str(moved), "--out", str(again)]) == 0
    for name in ("leaderboard.md", "leaderboard.csv", "per_seed.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert main(["report", "--rebuild", str(runs_root), "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a written report" in err and not (tmp_path / "z").exists()
