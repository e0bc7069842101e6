"""Sweeps: a grid on the toy task in parallel workers, one MLflow parent per (sweep, task), reruns skip finished
runs and resume checkpointed ones, bad input is refused before anything is written."""

import json
from pathlib import Path

import pytest

from benchsuite.cli import main
from benchsuite.config import resolve
from benchsuite.errors import StopRun
from benchsuite.runner import run, run_state
from benchsuite.sweep import SweepSpec, load_sweep_file, plan, sweep
from benchsuite.tracking import default_tracking_uri

TOY = "toy-brightness-v0"


def _tracking(root):
    return default_tracking_uri(root / "mlflow"), str(root / "mlflow" / "artifacts")


def _runs(uri, experiment):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow  # multi-process: two worker processes, about 20 s
def test_parallel_sweep_nests_children_and_rerun_skips_finished(tmp_path):
    spec = SweepSpec(name="toy-grid", tasks=(TOY,), methods=("pretrained", "ddpo"), seeds=(0, 1), budget=64)
    tracking = _tracking(tmp_path)
    outcomes = sweep(spec, tmp_path, workers=2, tracking=tracking)
    assert [(o.config.method, o.config.seed, o.before, o.status) for o in outcomes] == [
        ("pretrained", 0, "new", "FINISHED"), ("pretrained", 1, "new", "FINISHED"),
        ("ddpo", 0, "new", "FINISHED"), ("ddpo", 1, "new", "FINISHED")]
    assert all(run_state(o.config.run_dir) == "finished" and "eval/brightness_mean" in o.final for o in outcomes)

    runs = _runs(tracking[0], TOY)
    (parent,) = [r for r in runs if r.data.tags.get("benchsuite.kind") == "sweep"]
    assert parent.info.run_name == "sweep toy-grid" and parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["run_id"] for r in children) == sorted(o.config.run_id for o in outcomes)
    assert all(r.info.status == "FINISHED" for r in children)

    again = sweep(spec, tmp_path, workers=2, tracking=tracking)
    assert [o.before for o in again] == ["finished"] * 4
    assert [o.final for o in again] == [json.loads((o.config.run_dir / "summary.json").read_text())["final"]
                                        for o in outcomes]
    assert len(_runs(tracking[0], TOY)) == len(runs), "a rerun of a finished sweep creates no MLflow run"


def test_sweep_resumes_a_checkpointed_run_and_restarts_a_broken_one(tmp_path):
    spec = SweepSpec(name="resume", tasks=(TOY,), methods=("ddpo",), seeds=(0, 1), budget=96)
    interrupted, broken = plan(spec, tmp_path)

    def stop(queries, metrics):
        if queries >= 32:
            raise StopRun("interrupted")

    with pytest.raises(StopRun):
        run(interrupted, on_eval=stop)
    broken.run_dir.mkdir(parents=True)
    (broken.run_dir / "run.json").write_text("{}")
    assert (run_state(interrupted.run_dir), run_state(broken.run_dir)) == ("checkpointed", "broken")

    outcomes = sweep(spec, tmp_path, workers=1)
    assert [(o.before, o.status) for o in outcomes] == [("checkpointed", "FINISHED"), ("broken", "FINISHED")]
    for o in outcomes:
        assert json.loads((o.config.run_dir / "summary.json").read_text())["queries_used"] == 96


def test_cli_sweep_from_file_prints_table(tmp_path, capsys):
    path = tmp_path / "toy.yaml"
    path.write_text(f"tasks: [{TOY}]\nmethods: [pretrained]\nseeds: [3]\nbudget: 32\n")
    out = tmp_path / "res"
    assert main(["sweep", str(path), "--output", str(out), "--no-mlflow"]) == 0
    text = capsys.readouterr().out
    assert "sweep toy: 1 runs" in text and "FINISHED" in text
    assert run_state(resolve(TOY, "pretrained", seed=3, budget=32, output_root=str(out)).run_dir) == "finished"


def test_example_sweep_file_is_valid():
    spec = load_sweep_file(Path(__file__).resolve().parents[1] / "results" / "sweeps" / "digits-smoke.yaml")
    assert spec.name == "digits-smoke" and len(plan(spec)) == len(spec.methods) * len(spec.seeds)


@pytest.mark.parametrize("argv, file_text, expect", [
    (["--tasks", "nope-v0", "--methods", "ddpo"], None, "unknown task 'nope-v0'"),
    (["--tasks", TOY, "--methods", "ddpo,nope"], None, "unknown method 'nope'"),
    (["--tasks", TOY, "--methods", "ddpo", "--budget", "5"], None, "below one batch"),
    (["--tasks", TOY, "--methods", "ddpo", "--seeds", "3-1"], None, "non-negative and increasing"),
    (["--tasks", TOY, "--methods", "ddpo", "--seeds", "a"], None, "--seeds must look like"),
    (["--tasks", TOY, "--methods", "ddpo,ddpo"], None, "repeat an entry"),
    (["--tasks", TOY, "--methods", "ddpo", "--workers", "0"], None, "--workers must be >= 1"),
    (["--tasks", TOY, "--methods", "ddpo", "--name", "a b"], None, "sweep name 'a b'"),
    (["--methods", "ddpo"], None, "both --tasks and --methods"),
    ([], f"tasks: [{TOY}]\nmethods: [ddpo]\nseeds: [0]\nbudgets: 64\n", "unknown key(s) ['budgets']"),
    ([], f"tasks: {TOY}\nmethods: [ddpo]\nseeds: [0]\n", "tasks must be a list"),
    ([], f"tasks: [{TOY}]\nmethods: [ddpo]\nseeds: [-1]\n", "non-negative integers"),
    ([], "tasks: [\n", "malformed YAML"),
])
def test_bad_sweep_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, file_text, expect):
    out = tmp_path / "out"
    if file_text is not None:
        (tmp_path / "s.yaml").write_text(file_text)
        argv = [str(tmp_path / "s.yaml"), *argv]
    code = main(["sweep", *argv, "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("benchsuite: error: ") and "\n" not in err, err
    assert expect in err
    assert not out.exists()


def test_missing_sweep_file(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "absent.yaml"), "--output", str(tmp_path / "out")]) == 2
    assert "cannot read sweep file" in capsys.readouterr().err


def test_run_id_changes_with_the_task_card_and_old_configs_keep_theirs(tmp_path, monkeypatch):
    """A finished run must not be reused for a changed card (its online rounds, judges or sampler): the run id
    carries a digest of the parsed card and of the shipped weights. Configs written before the digest existed
    (task_digest "") keep their old run ids, so old run folders and ask/tell sessions still resolve."""
    import dataclasses
    import hashlib

    from benchsuite.tasks import data_dir

    copy = "toy-copy-v0"  # extra task folders add cards, so the copy takes its own id
    card = (data_dir("tasks") / f"{TOY}.yaml").read_text().replace(f"id: {TOY}", f"id: {copy}")
    ids = []
    changed = card.replace("num_steps: 5", "num_steps: 15")
    assert changed != card
    for name, text in (("a", card), ("b", card), ("c", changed)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{copy}.yaml").write_text(text)
        monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(folder))
        ids.append(resolve(copy, "ddpo", seed=0, budget=64).run_id)
    assert ids[0] == ids[1] and ids[2] != ids[0]  # same card text in another folder: same id; changed card: new
    old = dataclasses.replace(resolve(TOY, "ddpo", seed=0, budget=64), task_digest="")
    payload = old.to_dict()
    payload.pop("output_root")
    payload.pop("task_digest")
    payload.pop("task_overrides")  # added later still, empty here: not part of the formula either
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    assert old.config_hash == hashlib.sha256(blob).hexdigest()[:10]  # the pre-digest formula, unchanged


def test_cli_sweep_file_keeps_its_eval_fractions(tmp_path, capsys):
    """Regression: the CLI rebuilt the sweep spec without the file's eval_fractions (a file with [0, 1] ran 11
    evaluations)."""
    path = tmp_path / "two-points.yaml"
    path.write_text(f"tasks: [{TOY}]\nmethods: [pretrained]\nseeds: [0]\nbudget: 64\neval_fractions: [0, 1]\n")
    out = tmp_path / "res"
    assert main(["sweep", str(path), "--output", str(out), "--no-mlflow"]) == 0
    (run_dir,) = (out / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["config"]["eval_fractions"] == [0.0, 1.0]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in lines if "eval/brightness_mean" in row] == [0, 64]
    # the flags that override the file's grid keep its evaluation schedule too
    assert main(["sweep", str(path), "--seeds", "1", "--output", str(out), "--no-mlflow"]) == 0
    config = resolve(TOY, "pretrained", seed=1, budget=64, output_root=str(out), eval_fractions=(0.0, 1.0))
    assert run_state(config.run_dir) == "finished"
