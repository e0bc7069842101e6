"""Errors and listings repeat at most a few hundred characters of any user input (with an ellipsis and the length),
and a card or sweep file whose fields exceed sane sizes is refused at load with one line, while every other card
still loads and lists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchsuite import tasks
from benchsuite.cli import main
from benchsuite.errors import MAX_MESSAGE, BenchsuiteError, ConfigError, UnknownNameError, clip

ROOT = Path(__file__).resolve().parents[1]
TOY = yaml.safe_load((ROOT / "tasks" / "toy-brightness-v0.yaml").read_text())


@pytest.fixture
def cards(tmp_path, monkeypatch):
    """A task folder beside the built-in one; returns a function that writes a card into it."""
    folder = tmp_path / "cards"
    folder.mkdir()
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(folder))
    tasks._cards.cache_clear()

    def write(task_id: str, **fields) -> Path:
        path = folder / f"{task_id}.yaml"
        # long values go in as written (plain YAML scalars): YAML's emitter is slow, and it would quote a number
        huge = {k: v for k, v in fields.items() if isinstance(v, str) and len(v) > 4000}
        card = yaml.safe_dump({**TOY, "id": task_id, **{k: v for k, v in fields.items() if k not in huge}})
        path.write_text(card + "".join(f"{k}: {v}\n" for k, v in huge.items()))
        tasks._cards.cache_clear()
        return path

    yield write
    tasks._cards.cache_clear()


def test_clip_keeps_the_start_and_says_the_length():
    assert clip("short") == "short"
    assert clip("x" * 10_000) == "x" * 200 + "... (10000 characters)"
    assert clip(["a" * 300], 50) == "['" + "a" * 48 + "... (304 characters)"


def test_every_benchsuite_error_is_bounded():
    text = str(BenchsuiteError("head " + "x" * 1_000_000 + " tail: what to do"))
    assert len(text) < MAX_MESSAGE + 100 and text.startswith("head ") and text.endswith("tail: what to do")
    assert "of 1000022 characters left out" in text
    assert len(str(UnknownNameError("task", "n" * 1_000_000, ["a-v0", "b-v0"]))) < 400


@pytest.mark.parametrize("field, value, expect", [
    ("oracle", "{name: " + "x" * 10_000_000 + "}", "a task card larger than 1024 KiB"),  # the 10 MB name
    ("oracle", "{name: " + "x" * 100_000 + "}", "card.oracle.name is a text of 100000 characters ('xxx"),
    ("description", "d" * 5000, "card.description is a text of 5000 characters"),
    ("default_budget", "1" * 5000, "a value YAML cannot convert"),
    ("primary_judge", "p" * 1500, "primary_judge 'ppp"),  # within the sizes, still bounded where repeated
    ("oracle", {"name": "y" * 1500}, "unknown reward 'yyy"),
])
def test_an_oversized_card_is_refused_in_one_line_and_the_others_still_load_and_list(cards, capsys, field, value,
                                                                                     expect):
    assert main(["list", "tasks"]) == 0
    before = capsys.readouterr().out
    path = cards("huge-v0", **{field: value})
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert len(out) - len(before) < 600, "the listing repeats the card"  # one bounded line more than without it
    (line,) = [row for row in out.splitlines() if "huge-v0" in row]
    assert "[does not load]" in line and expect in line and len(line) < 600
    assert "toy-brightness-v0" in out and "digits-jpeg-compress-v1" in out  # every other card lists
    assert main(["run", "--task", "huge-v0", "--method", "ddpo", "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and expect in err and len(err) < 700
    assert tasks.load_spec("toy-brightness-v0").id == "toy-brightness-v0"


def test_a_long_description_within_the_limits_is_shortened_in_the_listing(cards, capsys):
    cards("wordy-v0", description="w" * 1900)
    assert main(["list", "tasks"]) == 0
    (line,) = [row for row in capsys.readouterr().out.splitlines() if "wordy-v0" in row]
    assert line.endswith("w... (1900 characters)") and len(line) < 300


def test_an_oversized_sweep_file_is_refused_in_one_line(tmp_path, capsys):
    sweep = tmp_path / "big.yaml"
    sweep.write_text(yaml.safe_dump({"tasks": ["t" * 50_000], "methods": ["ddpo"], "seeds": [0]}, width=10**9))
    assert main(["sweep", str(sweep), "--output", str(tmp_path / "out"), "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tasks[0] is a text of 50000 characters" in err and len(err) < 600
    sweep.write_text(yaml.safe_dump({"tasks": ["toy-brightness-v0"], "methods": ["ddpo"],
                                     "seeds": list(range(20_000))}))
    assert main(["sweep", str(sweep), "--output", str(tmp_path / "out"), "--no-mlflow"]) == 2
    assert "seeds holds 20000 entries" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["run", "--task", "t" * 100_000, "--method", "ddpo"],
    ["run", "--task", "toy-brightness-v0", "--method", "m" * 100_000],
    ["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "method.lr=" + "9" * 100_000],
    ["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "method." + "k" * 100_000 + "=1"],
    ["show", "s" * 100_000],
])
def test_long_command_line_input_comes_back_bounded(tmp_path, capsys, argv):
    out = tmp_path / "out"
    assert main([*argv, "--output", str(out)] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "... (1000" in err and len(err) < 1500, err[:300]
    assert not out.exists()


def test_check_sizes_bounds_every_string_and_collection():
    tasks.check_sizes({"a": ["x" * 2000, {"b": list(range(10_000))}]}, "card")
    with pytest.raises(ConfigError, match=r"card\.a\[1\]\.b holds 10001 entries"):
        tasks.check_sizes({"a": ["x", {"b": list(range(10_001))}]}, "card")
    with pytest.raises(ConfigError, match=r"card: a key is a text of 2001 characters"):
        tasks.check_sizes({"k" * 2001: 1}, "card")


def test_a_yaml_file_over_the_size_limit_is_not_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "MAX_YAML_BYTES", 100)
    path = tmp_path / "preset.yaml"
    path.write_text("a: " + "1" * 200)
    with pytest.raises(ConfigError, match=r"preset\.yaml: a preset larger than 0 KiB \(203 bytes\)"):
        tasks.read_yaml(path, "preset")
