"""Where the suite's data lives: the ``tasks`` (cards, prompt lists) and ``baselines`` (presets) folders, inside an
installed wheel or at the repository root, and the folders the environment adds. A leaf: ``benchsuite.tasks`` reads
cards from here and ``benchsuite.prompts`` prompt lists."""

from __future__ import annotations

import os
from pathlib import Path


def _extra_dirs(kind: str) -> list[Path]:
    """The folders named in ``BENCHSUITE_<KIND>_DIR`` (separated by ``os.pathsep``; empty entries skipped)."""
    return [Path(item) for item in os.environ.get(f"BENCHSUITE_{kind.upper()}_DIR", "").split(os.pathsep) if item]


def _builtin_dir(kind: str) -> Path:
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / kind
    return packaged if packaged.is_dir() else here.parent / kind


def data_dir(kind: str) -> Path:
    """Folder of ``tasks`` or ``baselines`` data: inside an installed wheel, else at the repository root.

    ``BENCHSUITE_BASELINES_DIR`` replaces the baselines folder (a private copy of the presets; ``benchsuite tune``
    then exports there). ``BENCHSUITE_TASKS_DIR`` adds task folders to the built-in one (``task_dirs``: cards are
    read from all of them); here it gives the first folder it names, where prompt lists (``<folder>/prompts``)
    are read.
    """
    extra = _extra_dirs(kind)
    return extra[0] if extra else _builtin_dir(kind)
