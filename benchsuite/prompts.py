"""Prompt lists of text-conditioned tasks: ``tasks/prompts/<name>.txt``, one prompt per line.

A task's condition ids index its prompt list: training conditions are ids of the training prompts, evaluation
conditions the ids of held-out prompts (in the same file, after the training ones).
"""

from __future__ import annotations

from functools import lru_cache

from .errors import ConfigError
from .data import data_dir


@lru_cache(maxsize=None)
def load_prompts(name: str) -> tuple[str, ...]:
    """The prompts of ``tasks/prompts/<name>.txt`` (blank lines and ``#`` comments skipped)."""
    path = data_dir("tasks") / "prompts" / f"{name}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise ConfigError(f"unknown prompt list {name!r} (no {path}); choose one of: {', '.join(available) or 'none'}")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = tuple(ln for ln in lines if ln and not ln.startswith("#"))
    if not prompts:
        raise ConfigError(f"prompt list {path} is empty")
    return prompts
