"""Tuning on the toy task with the journal-file storage: seeded studies repeat their parameters, pruning stops
trials at equal query counts, multi-objective studies give a non-dominated front, the exported preset resolves
and `run` picks it up, MLflow shows every trial under one parent, and bad input is refused before anything is
written."""

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from benchsuite.cli import main
from benchsuite.config import resolve
from benchsuite.errors import ConfigError
from benchsuite.tuning import SLOT_ATTR, Tuner, TuneSpec, load_search_space
from benchsuite.tracking import default_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
TOY = "toy-brightness-v0"
SPACE = ("lr", "kl_coef", "discount")


def _spec(root, **kwargs):
    defaults = dict(task=TOY, method="sqdf", n_trials=6, params=SPACE, budget=128, prune_after_trials=1,
                    output_root=str(root))
    return TuneSpec(**{**defaults, **kwargs})


def _study(tuner):
    return optuna.load_study(study_name=tuner.study_name, storage=tuner.storage())


@pytest.fixture(scope="module")
def pruned_study(tmp_path_factory):
    """A 6-trial single-objective study with pruning, logged to MLflow."""
    root = tmp_path_factory.mktemp("tune")
    tracking = default_tracking_uri(root / "mlflow"), str(root / "mlflow" / "artifacts")
    tuner = Tuner(_spec(root))
    report = tuner.tune(1, tracking)
    return root, tracking, tuner, report


def test_single_objective_study_prunes_at_equal_query_counts(pruned_study):
    _, _, tuner, report = pruned_study
    study = _study(tuner)
    trials = study.get_trials()
    assert report.complete and report.done == 6 and len(trials) == 6
    assert sorted(t.user_attrs[SLOT_ATTR] for t in trials) == list(range(6))
    states = {t.state for t in trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED}, states
    points = {0, 26, 64, 90, 128}  # the scheduled evaluation points that batches of 32 reach
    assert all(set(t.intermediate_values) <= points for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(max(t.intermediate_values) < 128 for t in pruned), "a pruned trial stops before its budget"
    assert report.best == [study.best_trial]


def test_every_trial_is_an_mlflow_child_of_one_study_parent(pruned_study):
    from mlflow.tracking import MlflowClient

    _, tracking, tuner, _ = pruned_study
    client = MlflowClient(tracking[0])
    exp = client.get_experiment_by_name(TOY)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("benchsuite.kind") == "study"]
    assert parent.info.run_name == f"study {tuner.study_name}" and parent.info.status == "FINISHED"
    assert parent.data.params["space.kl_coef"] == "float [0.001, 10.0] log"
    assert client.list_artifacts(parent.info.run_id)[0].path == "trials.csv"
    children = {int(r.data.tags["benchsuite.trial"]): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    study = _study(tuner)
    assert sorted(children) == [t.number for t in study.trials]
    for trial in study.trials:
        run = children[trial.number]
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.info.status == {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}[trial.state]
        assert float(run.data.params["method.kl_coef"]) == pytest.approx(trial.params["kl_coef"])


def test_same_sampler_seed_same_parameters_and_rerun_runs_nothing(pruned_study):
    root, _, tuner, _ = pruned_study
    # another study in other folders, same seeds: the same parameters in the same order and the same outcomes
    twin = Tuner(_spec(root / "twin", study_name="twin"))
    twin.tune(1)
    first, second = _study(tuner).trials, _study(twin).trials
    assert [t.params for t in first] == [t.params for t in second]
    assert [t.state for t in first] == [t.state for t in second]

    other = Tuner(_spec(root, study_name="other-seed", sampler_seed=1, n_trials=2))
    other.tune(1)
    assert _study(other).trials[0].params != first[0].params

    again = tuner.tune(1)  # the same study again: complete, so no new trial
    assert again.complete and len(_study(tuner).trials) == 6


def test_export_writes_a_preset_that_run_picks_up(pruned_study, baselines):
    _, _, tuner, _ = pruned_study
    study = _study(tuner)
    path = tuner.export(study)
    assert path == baselines / "sqdf" / "tuned" / f"{TOY}.yaml"
    text = path.read_text()
    assert text.startswith("# Written by `benchsuite tune`") and f"trial {study.best_trial.number} (best)" in text
    assert yaml.safe_load(text) == study.best_trial.params
    config = dict(resolve(TOY, "sqdf").method_config)
    assert all(config[k] == pytest.approx(v) for k, v in study.best_trial.params.items())
    assert dict(resolve(TOY, "sqdf", overrides={"lr": 0.5}).method_config)["lr"] == 0.5, "--set still wins"


def test_exporting_a_finished_study_again_writes_the_same_file(pruned_study, baselines, monkeypatch):
    import datetime as dt

    import benchsuite.tuning as tuning

    _, _, tuner, _ = pruned_study
    study = _study(tuner)
    first = tuner.export(study).read_text()
    last = max(t.datetime_complete for t in study.trials if t.datetime_complete is not None)
    assert f"on {last.date().isoformat()}: study" in first  # the day its last trial finished

    class Later(dt.datetime):  # a later day: the header must not follow the clock
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2099, 1, 1, tzinfo=tz)

    monkeypatch.setattr(tuning, "datetime", Later)
    assert tuner.export(study).read_text() == first


def test_multi_objective_front_is_non_dominated(tmp_path, baselines):
    tuner = Tuner(_spec(tmp_path, n_trials=5, budget=64, objectives=("reward", "diversity")))
    assert tuner.metrics == ("eval/brightness_mean", "eval/diversity") and not tuner.pruning
    report = tuner.tune(1)
    study = _study(tuner)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert report.complete and len(complete) == 5

    def dominates(a, b):
        return all(x >= y for x, y in zip(a.values, b.values)) and a.values != b.values

    front = report.best
    assert front and [t.values[0] for t in front] == sorted((t.values[0] for t in front), reverse=True)
    for trial in complete:
        dominated = any(dominates(other, trial) for other in complete)
        assert dominated == (trial.number not in {t.number for t in front})

    with pytest.raises(ConfigError, match="Pareto front"):
        tuner.export(study)
    with pytest.raises(ConfigError, match="no complete trial 99"):
        tuner.export(study, 99)
    path = tuner.export(study, front[-1].number)
    assert "(Pareto-optimal)" in path.read_text()
    assert yaml.safe_load(path.read_text()) == front[-1].params


@pytest.mark.slow  # multi-process: two workers on one journal, about 9 s
def test_parallel_workers_share_one_journal_study(tmp_path):
    tuner = Tuner(_spec(tmp_path, n_trials=4, budget=64, prune=False))
    report = tuner.tune(2)
    trials = _study(tuner).trials
    assert report.complete and not report.dead_workers and len(trials) == 4
    assert sorted(t.user_attrs[SLOT_ATTR] for t in trials) == [0, 1, 2, 3]
    assert len({t.user_attrs["benchsuite.worker"] for t in trials}) == 2, "both workers ran trials"
    assert len({tuple(t.params.values()) for t in trials}) == 4


def test_retry_interrupted_requeues_a_trial_left_running(tmp_path):
    tuner = Tuner(_spec(tmp_path, n_trials=2, budget=64, prune=False))
    study, _ = tuner.open_study(tuner.storage(), None)
    stuck = study.ask()  # a worker took slot 0 and died: the journal file has no heartbeat to notice
    for dim in tuner.space:
        dim.suggest(stuck)
    assert not tuner.tune(1).complete, "without the flag a trial left RUNNING stays so"
    report = tuner.tune(1, retry_interrupted=True)
    trials = _study(tuner).trials
    assert report.complete and [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                                             TrialState.COMPLETE]
    retry = trials[2]
    assert retry.system_attrs["failed_trial"] == stuck.number and retry.params == trials[0].params
    assert retry.user_attrs[SLOT_ATTR] == trials[0].user_attrs[SLOT_ATTR]


def test_reward_objective_is_the_gold_judge_when_the_task_has_one(tmp_path, monkeypatch):
    from benchsuite.tuning import objective_metric

    assert objective_metric("reward", TOY) == "eval/brightness_mean"
    card = yaml.safe_load((ROOT / "tasks" / f"{TOY}.yaml").read_text())
    card.update(id="toy-gold-v0", judges={**card["judges"], "held_out": card["judges"]["brightness"]},
                gold_judge="held_out")
    (tmp_path / "toy-gold-v0.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tmp_path))
    assert objective_metric("reward", "toy-gold-v0") == "eval/held_out_mean"
    assert objective_metric("eval/brightness_mean", "toy-gold-v0") == "eval/brightness_mean"


def test_search_space_files_load():
    for method in ("ddpo", "sqdf", "vard"):
        assert load_search_space(method)
    assert [d.name for d in load_search_space("sqdf", ("discount", "kl_coef"))] == ["discount", "kl_coef"]


@pytest.mark.parametrize("entry, expect", [
    ("{type: float, low: 1.0, high: 0.5}", "low < high"),
    ("{type: float, low: 0.0, high: 1.0, log: true}", "log needs low > 0"),
    ("{type: int, low: 1.5, high: 4}", "must be a finite integer"),
    ("{type: categorical, choices: []}", "non-empty list"),
    ("{type: uniform, low: 0, high: 1}", "type one of"),
    ("{type: float, low: 0.1, high: 1, choices: [1]}", "unknown key(s) ['choices']"),
    ("{type: float, low: -1.0, high: 1.0}", "lr must be > 0"),
])
def test_bad_search_space_is_refused_before_a_study(baselines, tmp_path, entry, expect):
    (baselines / "sqdf" / "search_space.yaml").write_text(f"lr: {entry}\n")
    with pytest.raises(ConfigError, match=expect.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Tuner(_spec(tmp_path, params=None))
    assert not (tmp_path / "optuna").exists()


@pytest.mark.parametrize("argv, expect", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--params", "lr,nope"], "has no entry 'nope'"),
    (["--objective", "eval/kl"], "not a metric to maximise"),
    (["--objective", "reward", "--objective", "eval/brightness_mean"], "objectives repeat a metric"),
    (["--storage", "sqlite:///x.db"], "sqlite is not a tuning storage"),
    (["--storage", "redis://host"], "redis:// is not supported"),
    (["--set", "method.kl_coef=1"], "both tuned and fixed"),
    (["--set", "method.nope=1"], "unknown field 'nope'"),
    (["--budget", "5"], "below one batch"),
    (["--trials", "-1"], "--trials must be >= 0"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--sampler", "cmaes"], "invalid choice"),
    (["--export-trial", "1", "--no-export"], "not allowed with"),
    (["--study-name", "../x"], "study name '../x' must use only"),
])
def test_bad_tune_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, expect):
    out = tmp_path / "out"
    base = {"--task": TOY, "--method": "sqdf", "--params": "lr,kl_coef"}
    for flag in argv[::2]:
        base.pop(flag, None)
    code = main(["tune", *[x for kv in base.items() for x in kv], *argv, "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("benchsuite: error: ") and "\n" not in err, err
    assert expect in err
    assert not out.exists()


def test_cli_tune_prints_front_and_exports_on_request(tmp_path, capsys, baselines):
    out = tmp_path / "out"
    argv = ["tune", "--task", TOY, "--method", "sqdf", "--params", "kl_coef,discount", "--trials", "3", "--budget",
            "32", "--objective", "reward", "--objective", "diversity", "--output", str(out), "--no-mlflow"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "3/3 trials done (COMPLETE 3)" in text and "Pareto front" in text and "--export-trial N" in text
    assert not (baselines / "sqdf" / "tuned").exists()
    assert main([*argv, "--export-trial", "0"]) == 0
    assert (baselines / "sqdf" / "tuned" / f"{TOY}.yaml").exists()


def test_matched_drift_objective_is_the_best_reward_within_the_cards_drift_budget():
    from benchsuite.tuning import MATCHED, objective_metric, objective_value

    curve = [{"eval/r": 0.1, "eval/kl": 0.0}, {"eval/r": 0.4, "eval/kl": 0.3}, {"eval/r": 0.9, "eval/kl": 2.0},
             {"eval/r": 0.5, "eval/kl": 0.5}]
    assert objective_value("eval/r" + MATCHED, curve, 0.5) == 0.5  # the inclusive bound; 0.9 lies beyond it
    assert objective_value("eval/r" + MATCHED, curve, 0.1) == 0.1  # only the pretrained evaluation qualifies
    assert objective_value("eval/r", curve, 0.5) == 0.5  # a plain objective is the last evaluation's
    assert objective_metric("found", "toy-online-v0") == "query/top10_mean"
    with pytest.raises(ConfigError, match="no drift_budget"):
        objective_metric("matched", "toy-online-v0")


def test_a_matched_drift_study_scores_each_trial_by_its_run_curve(tmp_path, baselines):
    """End to end on the toy task (drift_budget 2 nats): each trial's value is the best reward among its run's
    evaluations within the budget, read back from the trial's run folder."""
    import json

    from benchsuite.tracking import read_metrics
    from benchsuite.tuning import objective_value

    tuner = Tuner(_spec(tmp_path, n_trials=2, objectives=("matched",), prune=False, study_name="matched"))
    assert tuner.metrics == ("eval/brightness_mean.matched",)
    tuner.tune(1)
    for trial in _study(tuner).trials:
        run_dir = tuner.study_dir / "runs" / trial.user_attrs["benchsuite.run_id"]
        metrics = read_metrics(run_dir)
        evals = metrics.dropna(subset=["eval/kl"])[["eval/brightness_mean", "eval/kl"]].to_dict("records")
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "FINISHED"
        assert trial.value == pytest.approx(objective_value("eval/brightness_mean.matched", evals, 2.0))
        within = [e["eval/brightness_mean"] for e in evals if e["eval/kl"] <= 2.0]
        assert trial.value == pytest.approx(max(within))


def test_a_backbone_section_of_the_search_space_replaces_its_entries(tmp_path, monkeypatch):
    folder = tmp_path / "baselines" / "sqdf"
    folder.mkdir(parents=True)
    (folder / "search_space.yaml").write_text(
        "lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}\n"
        "discount: {type: float, low: 0.8, high: 1.0}\n"
        "ehrlich:\n  lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}\n")
    monkeypatch.setenv("BENCHSUITE_BASELINES_DIR", str(tmp_path / "baselines"))
    plain = {d.name: d for d in load_search_space("sqdf")}
    seq = {d.name: d for d in load_search_space("sqdf", backbone="ehrlich")}
    assert (plain["lr"].low, plain["lr"].high) == (1e-5, 1e-3) and (seq["lr"].low, seq["lr"].high) == (1e-4, 3e-2)
    assert seq["discount"] == plain["discount"] and "ehrlich" not in plain
    (folder / "search_space.yaml").write_text("digits:\n  lr: 3\n")
    with pytest.raises(ConfigError, match="backbone section"):
        load_search_space("sqdf", backbone="digits")


def test_a_study_on_several_tasks_scores_each_trial_by_the_mean_over_them(tmp_path, baselines):
    """PMO's protocol (``also_on``): every trial runs each task with the same parameters and seed; its value is the
    mean of the tasks' objective values, each read back from its own run folder; the best trial is exported under
    the study's preset name, which a run takes only when it names the preset."""
    import json

    from benchsuite.tuning import PER_TASK_ATTR, RUN_ATTR

    other = "toy-online-v0"
    tuner = Tuner(_spec(tmp_path, n_trials=2, budget=64, also_on=(other,), preset_name="toys", study_name="two"))
    assert tuner.metrics == ("eval/brightness_mean",) and not tuner.pruning
    assert json.loads(tuner.fingerprint)["also_on"] == [other]
    tuner.tune(1)
    study = _study(tuner)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        finals = []
        for task, attr in ((TOY, RUN_ATTR), (other, f"{RUN_ATTR}.{other}")):
            summary = json.loads((tuner.study_dir / "runs" / trial.user_attrs[attr] / "summary.json").read_text())
            assert summary["config"]["task"] == task and summary["status"] == "FINISHED"
            finals.append(summary["final"]["eval/brightness_mean"])
        assert trial.user_attrs[PER_TASK_ATTR] == {TOY: [pytest.approx(finals[0])], other: [pytest.approx(finals[1])]}
        assert trial.value == pytest.approx((finals[0] + finals[1]) / 2)
    path = tuner.export(study)
    assert path == baselines / "sqdf" / "tuned" / "toys.yaml"
    assert yaml.safe_load(path.read_text()) == study.best_trial.params
    assert "mean objective over toy-brightness-v0, toy-online-v0" in path.read_text()
    named = dict(resolve(other, "sqdf", preset="toys").method_config)
    assert all(named[k] == pytest.approx(v) for k, v in study.best_trial.params.items())
    assert dict(resolve(other, "sqdf").method_config) != named, "without the preset's name, the defaults"


@pytest.mark.parametrize("kwargs, message", [
    ({"also_on": ("toy-selfies-chembl-qed-v0",)}, "mean .* on toy-brightness-v0 but"),
    ({"also_on": (TOY,)}, "tasks repeat"),
    ({"also_on": "toy-online-v0"}, "tuple of task ids"),
    ({"also_on": ("no-such-task-v0",)}, "no-such-task-v0"),
    ({"objectives": ("pmo/auc_top10",)}, "not a metric to maximise on toy-brightness-v0"),
    ({"preset_name": "../escape"}, "preset name"),
])
def test_a_bad_multi_task_study_is_refused_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        Tuner(_spec(tmp_path, **kwargs))
    assert "\n" not in str(info.value) and not any(tmp_path.iterdir())


def test_pmo_metrics_are_objectives_on_cards_with_pmo_accounting():
    from benchsuite.tuning import objective_metric

    assert objective_metric("pmo/auc_top10", "selfies-chembl-pmo-zaleplon-mpo-v0") == "pmo/auc_top10"
    assert objective_metric("pmo/top100", "ehrlich-grid-l32-c2-k4-v0") == "pmo/top100"
    with pytest.raises(ConfigError, match="not a metric to maximise"):
        objective_metric("pmo/auc_top10", "selfies-chembl-qed-v1")


def test_rejoining_a_finished_study_leaves_its_journal_as_it_was(tmp_path, baselines):
    tuner = Tuner(_spec(tmp_path, n_trials=1, budget=32, prune=False))
    tuner.tune(1)
    journal = Path(tuner.storage_url)
    before = journal.read_bytes()
    report = Tuner(_spec(tmp_path, n_trials=1, budget=32, prune=False)).tune(1, retry_interrupted=True)
    assert report.complete and journal.read_bytes() == before
