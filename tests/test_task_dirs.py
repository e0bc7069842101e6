"""Extra task folders (``BENCHSUITE_TASKS_DIR``) add to the built-in cards; a card that does not load leaves the
others usable. Every folder here is a temporary one."""

import os

import pytest
import yaml

from benchsuite import tasks
from benchsuite.cli import main
from benchsuite.errors import ConfigError, UnknownNameError
from benchsuite.registry import plugin_task_folders

TOY = "toy-brightness-v0"
TOY_CARD = yaml.safe_load((tasks.data_dir("tasks") / f"{TOY}.yaml").read_text())


@pytest.fixture
def extra(tmp_path, monkeypatch):
    """``extra(*folders)``: make those folders (under tmp_path) the extra task folders; returns their paths."""

    def use(*names):
        folders = [tmp_path / name for name in names]
        for folder in folders:
            folder.mkdir(exist_ok=True)
        monkeypatch.setenv("BENCHSUITE_TASKS_DIR", os.pathsep.join(map(str, folders)))
        tasks._cards.cache_clear()
        return folders

    yield use
    tasks._cards.cache_clear()


def _card(folder, task_id, text=None, **changes):
    path = folder / f"{task_id}.yaml"
    path.write_text(text if text is not None else yaml.safe_dump({**TOY_CARD, "id": task_id, **changes}))
    return path


def test_extra_folders_add_to_the_built_in_cards(extra):
    """Regression: BENCHSUITE_TASKS_DIR replaced the built-in folder, hiding every built-in task."""
    first, second = extra("mine", "theirs")
    _card(first, "mine-brightness-v0")
    _card(second, "theirs-brightness-v0", default_budget=128)
    specs = tasks.task_specs()
    assert {"mine-brightness-v0", "theirs-brightness-v0", TOY, "digits-jpeg-compress-v1"} <= set(specs)
    assert tasks.load_spec("theirs-brightness-v0").default_budget == 128
    assert tasks.task_dirs()[0] == tasks._builtin_dir("tasks") and tasks.task_dirs()[-2:] == [first, second]
    assert tasks.task_dirs()[1:-2] == plugin_task_folders()  # installed plugins' card folders come in between


def test_prompt_lists_and_presets_keep_their_folders(extra, tmp_path, monkeypatch):
    """Prompt lists are read from the first extra folder (``<folder>/prompts``); BENCHSUITE_BASELINES_DIR still
    replaces the presets folder (a private copy that tuning exports into)."""
    first, _ = extra("mine", "theirs")
    assert tasks.data_dir("tasks") == first
    monkeypatch.setenv("BENCHSUITE_BASELINES_DIR", str(tmp_path / "presets"))
    assert tasks.data_dir("baselines") == tmp_path / "presets"


def test_a_copy_of_a_built_in_card_is_not_a_clash(extra):
    (folder,) = extra("copies")
    _card(folder, TOY, text=(tasks._builtin_dir("tasks") / f"{TOY}.yaml").read_text())
    assert tasks.load_spec(TOY).source == str(tasks._builtin_dir("tasks") / f"{TOY}.yaml")
    assert TOY not in tasks.broken_cards()


def test_an_id_defined_twice_differently_names_both_files(extra, capsys):
    (folder,) = extra("clash")
    path = _card(folder, TOY, default_budget=999)
    with pytest.raises(ConfigError) as info:
        tasks.load_spec(TOY)
    message = str(info.value)
    assert "defined twice" in message and str(path) in message and f"tasks/{TOY}.yaml" in message
    assert "\n" not in message
    assert tasks.load_spec("toy-online-v0").id == "toy-online-v0"  # the other tasks load
    assert main(["run", "--task", TOY, "--method", "pretrained", "--budget", "0", "--no-mlflow",
                 "--output", str(folder / "out")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (folder / "out").exists()


BROKEN = {
    "malformed-v0": ("id: malformed-v0\njudges: [1, 2\n", "malformed YAML"),
    "no-reward-v0": ({"oracle": {"name": "no-such-reward"}}, "unknown reward 'no-such-reward'"),
    "no-backbone-v0": ({"backbone": "no-such-backbone"}, "unknown backbone 'no-such-backbone'"),
    "renamed-v0": ({"id": "other-name-v0"}, "must match the file name"),
    "binary-v0": (b"\xff\xfe\x00", "not UTF-8 text"),
}


def _write_broken(folder):
    for task_id, (content, _) in BROKEN.items():
        path = folder / f"{task_id}.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(yaml.safe_dump({**TOY_CARD, "id": task_id, **content}))


def test_one_broken_card_breaks_neither_list_nor_the_other_tasks(extra, capsys):
    """Regression: one malformed card, or one naming an unregistered reward or backbone, made every command fail."""
    (folder,) = extra("broken")
    _write_broken(folder)
    _card(folder, "fine-brightness-v0")
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "fine-brightness-v0" in out and TOY in out and "digits-jpeg-compress-v1" in out
    for task_id, (_, problem) in BROKEN.items():
        (line,) = [line for line in out.splitlines() if line.strip().startswith(task_id)]
        assert str(folder / f"{task_id}.yaml") in line and problem in line
    assert tasks.load_spec("fine-brightness-v0").id == "fine-brightness-v0"
    assert tasks.load_spec(TOY).id == TOY
    for task_id, (_, problem) in BROKEN.items():
        with pytest.raises(ConfigError, match=problem) as info:
            tasks.load_spec(task_id)
        assert "\n" not in str(info.value) and str(folder / f"{task_id}.yaml") in str(info.value)


def test_running_a_broken_card_is_its_one_line_error(extra, capsys, tmp_path):
    (folder,) = extra("broken")
    _write_broken(folder)
    out = tmp_path / "out"
    assert main(["run", "--task", "no-reward-v0", "--method", "pretrained", "--output", str(out), "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-reward-v0.yaml" in err and "unknown reward" in err and not out.exists()


def test_unknown_ids_still_list_the_valid_ones(extra):
    extra("empty")
    with pytest.raises(UnknownNameError, match=f"choose one of: .*{TOY}"):
        tasks.load_spec("toy-brightnes-v0")  # a long registry names the closest ids
