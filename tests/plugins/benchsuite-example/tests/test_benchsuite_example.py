"""The example plugin passes benchsuite's contract suites (``benchsuite.testing``), as a plugin's own tests would.

Needs the plugin installed (``pip install -e tests/plugins/benchsuite-example``; .ci/run does): skipped with that
reason otherwise, except under CI=true, where a missing install is a failure.
"""

import pytest

from benchsuite.testing import check_method, check_reward, check_task, require_installed


@pytest.fixture(autouse=True)
def _installed():
    require_installed("benchsuite-example", "pip install -e tests/plugins/benchsuite-example")


TASK = "example-toy-contrast-v0"


def test_rwr_passes_the_method_contract():
    check_method("rwr")


def test_rwr_passes_it_on_the_plugins_own_task():
    check_method("rwr", task=TASK)


def test_pixel_contrast_passes_the_reward_contract():
    out = check_reward("pixel-contrast")
    assert ((out >= 0) & (out <= 0.5)).all()


def test_the_card_passes_the_task_contract():
    check_task(TASK)
