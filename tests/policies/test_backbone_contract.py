"""Contract suite applied to every built-in backbone (listing one in BACKBONES enrolls it): the checks of
``benchsuite.testing.BACKBONE_CHECKS``, which plugins run on their own backbones with ``check_backbone``.

Each backbone is built the way a run builds it: from the first task card that uses it, with that card's sampler
arguments. A backbone that needs downloaded weights must be listed in ``NOT_BUILT_BY_DEFAULT`` with the place
where the same checks run (tiny random models through the same loading code); an unlisted backbone without a
card fails here, so none escapes the suite.
"""

from __future__ import annotations

import pytest
import torch

from benchsuite.registry import BACKBONES
from benchsuite.testing import BACKBONE_CHECKS, built_backbone

torch.set_num_threads(1)

NOT_BUILT_BY_DEFAULT = {
    "sd": "tests/policies/test_sd.py (tiny UNet/VAE/CLIP saved to a temp dir and loaded by sd_policy)",
}
BUILT = [b for b in BACKBONES.builtin_names() if b not in NOT_BUILT_BY_DEFAULT]


def test_exceptions_are_registered():
    assert set(NOT_BUILT_BY_DEFAULT) <= set(BACKBONES.builtin_names())


@pytest.fixture(scope="module", params=BUILT)
def built(request):
    return built_backbone(request.param)


@pytest.mark.parametrize("check", BACKBONE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_backbone_"))
def test_backbone_contract(built, check):
    check(*built)
