"""Shared fixtures. Tests run on the CPU with one thread (measured faster than two on the 2-core machines)."""

import os

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
torch.set_num_threads(1)


@pytest.fixture
def baselines(tmp_path, monkeypatch):
    """A private copy of baselines/ without its tuned presets (exports go there, not into the repository)."""
    import shutil
    from pathlib import Path

    folder = tmp_path / "baselines"
    shutil.copytree(Path(__file__).resolve().parents[1] / "baselines", folder,
                    ignore=shutil.ignore_patterns("tuned"))
    monkeypatch.setenv("BENCHSUITE_BASELINES_DIR", str(folder))
    return folder


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def leaderboard_spec(tmp_path, monkeypatch):
    """``leaderboard_spec(raw)``: write the leaderboard spec ``raw`` (a mapping with ``id``) to a task folder on the
    path (``BENCHSUITE_TASKS_DIR``) and load it."""
    from benchsuite import leaderboard, tasks

    folder = tmp_path / "cards"
    (folder / "leaderboards").mkdir(parents=True)
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", os.fspath(folder))
    tasks._cards.cache_clear()

    def write(raw: dict):
        import yaml

        (folder / "leaderboards" / f"{raw['id']}.yaml").write_text(yaml.safe_dump(raw))
        return leaderboard.load_leaderboard(raw["id"])

    yield write
    tasks._cards.cache_clear()
