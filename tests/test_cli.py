"""CLI: one-line errors with exit code 2 and nothing written; list; a small real run."""

import json
import subprocess
import sys

import pytest

from benchsuite.cli import main


def _error_case(capsys, tmp_path, argv):
    out = tmp_path / "out"
    code = main([*argv, "--output", str(out)] if argv[0] == "run" else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("benchsuite: error: ") and "\n" not in err, err
    assert not out.exists(), "a failed command must write nothing"
    return err


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["run", "--task", "digits-classifer-v1", "--method", "ddpo"], "unknown task 'digits-classifer-v1'; choose one of: digits-classifier-v1"),
        (["run", "--task", "toy-brightness-v0", "--method", "nope"], "unknown method 'nope'; choose one of: "),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--budget", "-5"], "--budget must be >= 0"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--budget", "ten"], "must be an integer"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--budget", "5"], "below one batch"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "method.nope=1"], "unknown field 'nope'"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "method.lr=-1"], "lr must be > 0"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "method.lr=abc"], "must be a number"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "lr=1"], "method.<field>=<value>"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "method.variant=sgd"], "one of"),
        (["run", "--task", "toy-brightness-v0"], "required"),
        (["frobnicate"], "invalid choice"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--oracle-timeout", "nan"], "finite number > 0"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--oracle-backoff", "-1"], "finite number >= 0"),
        (["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--resume", "--restart"], "not allowed with"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(capsys, tmp_path, argv, expect):
    assert expect in _error_case(capsys, tmp_path, argv)


def test_unwritable_output(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--output", str(blocker / "sub"),
                 "--no-mlflow"])
    assert code == 2 and "not writable" in capsys.readouterr().err


def test_scientific_notation_without_dot_is_a_number():
    from benchsuite.config import resolve, parse_overrides

    cfg = resolve("toy-brightness-v0", "ddpo", overrides=parse_overrides(["method.lr=1e-4"]))
    assert dict(cfg.method_config)["lr"] == 1e-4


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "digits-jpeg-compress-v0" in out and "ddpo" in out and "pretrained" in out


def test_run_writes_summary_jsonl_and_mlflow(tmp_path, capsys):
    out = tmp_path / "res"
    code = main(["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--budget", "64", "--seed", "1",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "pretrained" in text and "brightness (headline)" in text and "drift budget of 2 nats" in text
    (run_dir,) = (out / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "FINISHED" and summary["queries_used"] == 64
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert any("eval/brightness_mean" in line for line in lines)
    assert (run_dir / "samples").is_dir()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("toy-brightness-v0")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.status == "FINISHED"
    assert mrun.data.params["method.lr"] and mrun.data.tags["method"] == "ddpo"
    steps = [m.step for m in client.get_metric_history(mrun.info.run_id, "eval/brightness_mean")]
    assert steps[0] == 0 and steps[-1] == 64
    assert client.list_artifacts(mrun.info.run_id, "samples")


def test_console_entry_point_exit_code():
    proc = subprocess.run([sys.executable, "-m", "benchsuite.cli", "run", "--task", "x-v0", "--method", "ddpo"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown task 'x-v0'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_import_stays_light():
    code = ("import sys, benchsuite, benchsuite.cli, benchsuite.tracking, benchsuite.registry; "
            "heavy = [m for m in ('mlflow', 'optuna', 'seaborn', 'diffusers', 'open_clip', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_error_echoing_a_line_break_stays_one_line(capsys):
    """argparse echoes unrecognized arguments back; one that is a line break (hypothesis found argv ['run', '\\n'])
    made the error two lines."""
    from benchsuite.cli import main

    assert main(["run", "\n"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("benchsuite: error: unrecognized arguments")
