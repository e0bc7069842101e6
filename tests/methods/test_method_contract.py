"""Contract suite applied to every built-in method (listing a method in METHODS enrolls it): the checks of
``benchsuite.testing.METHOD_CHECKS``, which plugins run on their own methods with ``check_method``.

Runs on the toy task (random tiny model, 2x2 images) so the whole suite takes seconds.
"""

import pytest

from benchsuite.registry import METHODS
from benchsuite.testing import METHOD_CHECKS, check_method_config, contract_task


@pytest.mark.parametrize("check", METHOD_CHECKS, ids=lambda c: c.__name__.removeprefix("check_method_"))
@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_method_contract(method, check):
    check(method, contract_task(method))


def test_the_checks_can_fail():
    """A method whose config accepts batch_size=0 fails the suite."""
    from dataclasses import dataclass

    from benchsuite.methods.base import MethodConfig
    from benchsuite.methods.pretrained import Pretrained

    @dataclass(frozen=True)
    class Lax(MethodConfig):
        def __post_init__(self) -> None:  # no validation
            pass

    class LaxPretrained(Pretrained):
        """A pretrained copy whose config validates nothing."""

        name = "lax-pretrained"
        Config = Lax

    METHODS.register("lax-pretrained", LaxPretrained)
    try:
        with pytest.raises(AssertionError, match="batch_size=0"):
            check_method_config("lax-pretrained")
    finally:
        del METHODS._entries["lax-pretrained"]
