"""benchsuite-example: a benchsuite plugin with one method, one reward and one task card (see pyproject.toml)."""

from pathlib import Path

TASKS = Path(__file__).parent / "tasks"
"""The task-card folder (entry point group ``benchsuite.tasks``)."""
