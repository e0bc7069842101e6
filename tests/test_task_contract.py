"""Contract suite applied to every built-in task card (a card in tasks/ enrolls it): the checks of
``benchsuite.testing.TASK_CHECKS``, which plugins run on their own cards with ``check_task``.

Cards on a backbone that needs downloaded weights (``NEEDS_WEIGHTS``) are run end to end where their backbone is
tested with tiny models; here they only have to resolve for every method.
"""

import pytest

from benchsuite.tasks import _builtin_dir, task_specs
from benchsuite.testing import check_task, check_task_loads, check_task_resolves_for_every_method

NEEDS_WEIGHTS = {"sd": "tests/policies/test_sd.py (tiny UNet/VAE/CLIP, every method end to end)"}
BUILTIN = sorted(path.stem for path in _builtin_dir("tasks").glob("*.yaml"))


@pytest.mark.parametrize("task_id", BUILTIN)
def test_task_contract(task_id):
    if task_specs()[task_id].backbone in NEEDS_WEIGHTS:
        check_task_resolves_for_every_method(task_id)
    else:
        check_task(task_id)


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """A card whose judge cannot score its backbone's samples (a sequence reward on images) fails the suite."""
    import yaml

    from benchsuite import tasks

    card = yaml.safe_load((_builtin_dir("tasks") / "toy-brightness-v0.yaml").read_text())
    card.update(id="toy-mismatch-v0", judges={**card["judges"], "fit": {"name": "ehrlich-feasibility"}})
    (tmp_path / "toy-mismatch-v0.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tmp_path))
    tasks._cards.cache_clear()
    try:
        with pytest.raises(AssertionError, match="fit"):
            check_task_loads("toy-mismatch-v0")
    finally:
        tasks._cards.cache_clear()
